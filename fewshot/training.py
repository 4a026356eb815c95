"""The training loop every learner shares: episodes (or batches) -> AdamW -> validation -> checkpoints.

:class:`Trainer` draws training episodes from the TRAIN classes only (train way
may differ from test way) and validates on a fixed set of VAL-class episodes
through :func:`fewshot.evaluation.evaluate` every ``eval_every`` steps, keeping
the best checkpoint and stopping after ``patience`` evaluations without
improvement. Step ``s`` of a run is a pure function of ``(seed, s)`` (episode,
augmentation and dropout), so a run resumed from its last evaluation ends
exactly where an uninterrupted run would. Under ``torchrun`` the model is
wrapped in DistributedDataParallel (gloo on CPU, nccl on GPU); rank ``r`` takes
episode ``s * world + r`` and rank 0 alone validates and writes.

A joint dataset (:class:`fewshot.utterances.JointDataset`, ``task = "joint"``: utterances with
an intent and slot tags, split into train / val / test *sentences*) trains a joint learner on
batches of its train part, whose targets are the packed rows of
:meth:`~fewshot.utterances.JointDataset.targets`, and validates on its val part with
:func:`fewshot.joint_evaluation.evaluate_joint`: the log's ``val_accuracy`` is then the
learner's ``selection_metric`` (named by ``val_metric``) and ``val_ci95`` half its bootstrap
interval. The test part is never read here.

A tagged dataset (:class:`fewshot.tagged.TaggedDataset`, ``task = "ner"``: sentences with IO tags, split
into train / val / test entity *types*) trains a tagging learner (protobert, nnshot, structshot, decomposed:
:mod:`fewshot.learners.tagging`) on Few-NERD's N-way K~2K episodes of its train types
(:class:`fewshot.tag_episodes.GreedyTypeSampler`, ``train_way`` / ``train_shot``, the query set K~2K
too; or, with ``tag_episodes="domain"``, every type of one domain, Hou et al. 2020's), whose items are
sentences and whose labels are their words' local labels (``class_names``: each type's name joins the
support set as a sentence of its own, as evaluation adds it); it validates on
episodes of its val types (``val_way`` / ``val_shot``) with :func:`fewshot.tag_evaluation.evaluate_tagging`:
the log's ``val_accuracy`` is then span micro F1 (``val_metric`` "span_f1") and ``val_ci95`` half its
bootstrap interval. The test types are never read here; ``include_val`` trains on the train and val
types together and validates nothing, as for classes.

Why one module of ~600 lines: :class:`Trainer` is one state machine (step, optimizer, schedule, best
score, resume state, the DDP wrap) whose parts read and write that shared state at every step; the
pieces that stand alone already live elsewhere (episodes, evaluation, checkpoints, the process group
in :mod:`fewshot.distributed`). The resident-input helpers (``_make_resident`` to ``_device_labels``)
are the next candidate to move out, as a train-inputs object, if the module grows.

``include_val`` trains a final model once a validated run has fixed the recipe:
the val classes join the train classes, nothing validates (the log's
``val_accuracy`` is null, ``patience`` does nothing) and the checkpoint is the
latest evaluation step, so ``steps`` should be the validated run's best step.

Resident inputs (``resident``, on by default when they fit): the train split is
preprocessed once (images resized and converted, texts tokenised) and held on
the training device as a :class:`fewshot.encoders.base.ResidentItems`; each step
hands learners views of it, gathered on the device, instead of raw items, with
the same results. Augmentation works on raw items, so ``augment`` turns it off.
Steps do not wait for the device: losses stay there and are read (and checked
for NaN, naming the step) every ``SYNC_EVERY`` steps and at each evaluation.

Output folder: ``manifest.json`` + ``model-*.safetensors``, ``config.json`` (the
best checkpoint, see :mod:`fewshot.checkpoint`), ``train_log.jsonl`` (one line
per evaluation) and ``last/`` (resume state: weights, optimizer, counters).

The resume state (weights plus AdamW's two moments: about 3x the weights, 260 MB for MiniLM,
1.3-1.8 s to write on CPU against 0.4-0.7 s for the checkpoint) is written at an evaluation only
when the time since the last write is at least ``RESUME_COST_RATIO`` times what that write took,
and always at the first and the last evaluation: its cost stays under 1/RESUME_COST_RATIO of the
run (a small model still writes it at nearly every evaluation). A run killed in between resumes
from the last state written; steps being pure functions of ``(seed, s)``, it replays the steps
since then (the log is cut back to that state's step) and ends where an uninterrupted run would.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .checkpoint import check_out_folder
from .config import TrainConfig
from .data import ClassVocabulary, FewShotDataset, with_val_as_train
from .device import autocast
from .distributed import ProcessGroup, param_checksum
from .encoders.base import join_items
from .episodes import EpisodeSampler
from .tag_episodes import GreedyTypeSampler


def step_seed(seed: int, step: int, rank: int = 0, stream: int = 0) -> int:
    """A 63-bit seed for step ``step`` of rank ``rank``."""
    return int(np.random.SeedSequence([int(seed), int(step), int(rank), int(stream)]).generate_state(2, np.uint64)[0]
               >> np.uint64(1))


class _LossModule(nn.Module):
    """Routes DDP's forward to the learner's loss, so DDP sees every parameter of ``learner.module``."""

    def __init__(self, learner):
        super().__init__()
        self.inner = learner.module
        self._learner = [learner]  # not a submodule

    def forward(self, kind: str, *args):
        learner = self._learner[0]
        if kind == "episode":
            return learner.episode_loss(*args)
        return learner.batch_loss(*args), None


SYNC_EVERY = 32  # steps between reads of the device-side losses (progress bar, NaN check)
RESUME_COST_RATIO = 20.0  # at most 1/20 of the time between resume-state writes goes to writing it


def meta_train(learner, dataset: FewShotDataset, cfg: TrainConfig | None = None, out_dir=None,
               resume: bool = False, *, run_config: dict | None = None, progress: bool = False,
               resident: bool | str = "auto") -> dict:
    """Train ``learner.module`` on ``dataset``'s train classes, validating on its val classes.

    ``out_dir`` receives the best checkpoint, the resume state and the training
    log; ``run_config`` (the resolved FewShotConfig as a dict) is written beside
    the weights. Returns the final metrics (see :meth:`Trainer.fit`).
    """
    return Trainer(learner, dataset, cfg, out_dir=out_dir, resume=resume, run_config=run_config,
                   progress=progress, resident=resident).fit()


def _refuse_item_options(cfg: TrainConfig, changed: tuple[str, ...], what: str, allowed: tuple[str, ...] = ()) -> None:
    """ValueError naming the options of classification episodes that ``cfg`` sets although they do not apply to
    ``what``: the item flags (--include-val, --rotations, --class-names, --augment; but those ``allowed``) when
    on, and the fields ``changed`` when off their defaults."""
    given = [f"--{k.replace('_', '-')}" for k in ("include_val", "rotations", "class_names", "augment")
             if getattr(cfg, k) and k not in allowed]
    given += [f"--{k.replace('_', '-')} {getattr(cfg, k)}" for k in changed if getattr(cfg, k) != getattr(TrainConfig(), k)]
    if given:
        raise ValueError(f"{', '.join(given)} do not apply to {what}; drop them")


class Trainer:
    """Trains ``learner.module`` on ``dataset`` following ``cfg``; :meth:`fit` runs it.

    ``resident``: "auto" (train inputs held on the device when they fit and ``augment`` is off),
    True (required: ValueError when impossible) or False (raw items every step).
    """

    def __init__(self, learner, dataset: FewShotDataset, cfg: TrainConfig | None = None, out_dir=None,
                 resume: bool = False, run_config: dict | None = None, progress: bool = False,
                 resident: bool | str = "auto"):
        cfg = cfg if cfg is not None else TrainConfig()
        if not isinstance(cfg, TrainConfig):
            raise TypeError(f"cfg must be a fewshot.config.TrainConfig, got {type(cfg).__name__}")
        if learner.train_mode not in ("episodic", "supervised"):
            raise ValueError(f"learner {learner.name!r} has train_mode {learner.train_mode!r}; "
                             "expected 'episodic' or 'supervised'")
        if resume and out_dir is None:
            raise ValueError("resume=True needs out_dir, the folder of the interrupted run")
        if out_dir is not None:
            check_out_folder(out_dir, "out_dir")
        self.learner, self.dataset, self.cfg = learner, dataset, cfg
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.resume, self.progress = resume, progress
        self.run_config = run_config
        self.device = learner.device
        self.group = ProcessGroup.current(self.device)
        self.rank, self.world = self.group.rank, self.group.world
        self._sampling(dataset, cfg)
        learner.prepare_training(self.train_ds, cfg)
        learner.module.to(self.device)
        self.resident = self._make_resident(resident)
        self._labels: dict[bytes, torch.Tensor] = {}
        self._optimizer(cfg)
        self.wrapped = self.group.wrap(_LossModule(learner))

        self.step = 0
        self.best = -math.inf
        self.best_step = 0
        self.bad_evals = 0
        self.stopped_early = False
        self.log: list[dict] = []
        self.elapsed_before = 0.0
        self._state_written: tuple[float, float] | None = None  # (when, how long it took) of the last resume write
        if resume:
            self._load_state()

    def _sampling(self, dataset: FewShotDataset, cfg: TrainConfig) -> None:
        """What training draws from (train classes, their episodes or batches) and the val episodes."""
        learner = self.learner
        if dataset.task == "joint":
            return self._joint_sampling(dataset, cfg)
        if dataset.task == "ner":
            return self._tag_sampling(dataset, cfg)
        if "classify" not in learner.tasks:
            raise ValueError(f"learner {learner.name!r} scores {' and '.join(learner.tasks)} data, but dataset "
                             f"{dataset.name!r} is classified (one class per item); train a classification "
                             "learner on it (e.g. --learner protonet), or this learner on a tagged dataset (e.g. "
                             "--dataset fewnerd-inter)")
        if cfg.tag_episodes != TrainConfig.tag_episodes:
            raise ValueError(f"--tag-episodes {cfg.tag_episodes} shapes episodes of tagged (NER) data, but dataset "
                             f"{dataset.name!r} is classified; drop it")
        train_ds = dataset
        if cfg.include_val:
            train_ds = with_val_as_train(dataset)
        if cfg.rotations:
            from .augment import with_rotations

            train_ds = with_rotations(train_ds)
        self.train_ds = train_ds
        self.train_classes = train_ds.split_classes("train")
        val_classes = train_ds.split_classes("val")
        if cfg.class_names:
            if learner.train_mode != "episodic":
                raise ValueError(f"train.class_names (--class-names) adds class descriptions to episodes' support "
                                 f"sets, but learner {learner.name!r} trains on plain batches; drop --class-names")
            for c in [*self.train_classes, *val_classes]:
                train_ds.class_item(c)  # a clear error now, not at the first episode that lacks one
        self.augmenter = None
        if cfg.augment:
            from .augment import make_augmenter

            self.augmenter = make_augmenter(dataset.modality, learner.encoder)
        if learner.train_mode == "episodic":
            self.sampler = EpisodeSampler(train_ds.labels, cfg.train_way, cfg.train_shot, cfg.train_query,
                                          seed=cfg.seed, classes=self.train_classes)
        else:
            vocab = ClassVocabulary(self.train_classes)
            ids = train_ds.ids_by_class(self.train_classes)
            self.train_ids = np.concatenate([ids[c] for c in self.train_classes])
            self.train_targets = vocab.encode([train_ds.labels[int(i)] for i in self.train_ids])
            if cfg.batch_size > len(self.train_ids):
                raise ValueError(f"--batch-size {cfg.batch_size} exceeds the {len(self.train_ids)} training "
                                 "examples; lower it")
        self.val_episodes = []
        if not cfg.include_val:
            val_sampler = EpisodeSampler(dataset.labels, cfg.val_way, cfg.val_shot, cfg.val_query,
                                         seed=cfg.val_seed, classes=val_classes)
            self.val_episodes = list(val_sampler.episodes(cfg.val_episodes))

    def _joint_sampling(self, dataset, cfg: TrainConfig) -> None:
        """Batches of a joint dataset's train sentences (packed targets); its val sentences validate."""
        learner = self.learner
        if "joint" not in learner.tasks or learner.train_mode != "supervised":
            raise ValueError(f"dataset {dataset.name!r} holds utterances with intents and slot tags; learner "
                             f"{learner.name!r} cannot train on them: use --learner joint")
        _refuse_item_options(cfg, ("tag_episodes",), f"joint intent + slot training (dataset {dataset.name!r})")
        self.train_ds, self.augmenter, self.val_episodes = dataset, None, []
        self.train_ids = dataset.part_ids("train")
        self.train_targets = dataset.targets(self.train_ids)
        self.val_ids = dataset.part_ids("val")
        if cfg.batch_size > len(self.train_ids):
            raise ValueError(f"--batch-size {cfg.batch_size} exceeds the {len(self.train_ids)} training "
                             "sentences; lower it")

    def _tag_sampling(self, dataset, cfg: TrainConfig) -> None:
        """Few-NERD's N-way K~2K episodes of a tagged dataset's train types (the query set K~2K too), or with
        ``tag_episodes="domain"`` Hou et al.'s (every type of one domain, minimum-including K-shot sets); episodes
        of its val types, drawn the same way, validate, scored by span F1."""
        learner = self.learner
        if "ner" not in learner.tasks or learner.train_mode != "episodic":
            raise ValueError(f"dataset {dataset.name!r} is tagged (NER: an entity type per word); learner "
                             f"{learner.name!r} does not tag words: use --learner protobert, nnshot, structshot or "
                             "decomposed")
        _refuse_item_options(cfg, ("train_query", "val_query"), f"tagging episodes (dataset {dataset.name!r}: the "
                             "query set is drawn like the support set, K~2K entities per type)",
                             allowed=("include_val", "class_names"))
        types = {part: dataset.split_classes(part) for part in ("train", "val")}
        if cfg.include_val:  # the final model of a validated recipe: the val types train too, nothing validates
            types = {"train": types["train"] + types["val"], "val": []}
        if cfg.tag_episodes == "domain":
            if not dataset.domains:
                raise ValueError(f"--tag-episodes domain draws every type of one domain per episode, but dataset "
                                 f"{dataset.name!r} names no domains of its types; use --tag-episodes fewnerd "
                                 "(N-way episodes), or a dataset with domains (e.g. snips-getweather)")
            _refuse_item_options(cfg, ("train_way", "val_way"), "whole-domain tagging episodes (--tag-episodes "
                                 "domain: an episode holds every type of one domain)",
                                 allowed=("include_val", "class_names"))
            shape = {"rule": "minimum-including", "domains": dataset.domains}
            way = {"train": None, "val": None}
        else:
            shape, way = {}, {"train": cfg.train_way, "val": cfg.val_way}
            for part in ("train", "val"):
                if way[part] > len(types[part]) and not (part == "val" and cfg.include_val):
                    raise ValueError(f"--{part}-way {way[part]} needs {way[part]} entity types but dataset "
                                     f"{dataset.name!r} has {len(types[part])} {part} types {types[part][:6]}; "
                                     f"pass --{part}-way {len(types[part])} or fewer")
        self.train_ds, self.augmenter, self.train_classes = dataset, None, types["train"]
        self.sampler = GreedyTypeSampler(dataset, way["train"], cfg.train_shot, seed=cfg.seed, types=types["train"],
                                         **shape)
        self.val_episodes = [] if cfg.include_val else list(GreedyTypeSampler(
            dataset, way["val"], cfg.val_shot, seed=cfg.val_seed, types=types["val"], **shape
        ).episodes(cfg.val_episodes))

    def _optimizer(self, cfg: TrainConfig) -> None:
        """AdamW over the trainable parameters: encoder and learner groups at their own learning rates, no weight
        decay on biases and norms."""
        learner = self.learner
        params = learner.trainable_parameters()
        if not params:
            raise ValueError(f"learner {learner.name!r} has no trainable parameters (trainable='none' and no "
                             "learner parameters); choose --trainable full, last:K, lora or bitfit")
        enc_ids = {id(p) for p in learner.encoder.parameters()}
        groups = []
        for is_enc, lr in ((True, cfg.lr), (False, cfg.head_lr)):
            ps = [p for p in params if (id(p) in enc_ids) == is_enc]
            if not ps:
                continue
            groups.append({"params": [p for p in ps if p.ndim >= 2], "lr": lr, "weight_decay": cfg.weight_decay})
            groups.append({"params": [p for p in ps if p.ndim < 2], "lr": lr, "weight_decay": 0.0})
        groups = [g for g in groups if g["params"]]
        self.params = [p for g in groups for p in g["params"]]
        self.optimizer = torch.optim.AdamW(groups)
        self.base_lrs = [g["lr"] for g in groups]

    # ----------------------------------------------------------------- one step
    def _lr_factor(self, step: int) -> float:
        return min(1.0, (step + 1) / self.cfg.warmup) if self.cfg.warmup else 1.0

    def episode_index(self, step: int) -> int:
        """The training episode rank ``self.rank`` draws at ``step``."""
        return step * self.world + self.rank

    def _make_resident(self, resident: bool | str):
        """The train split's inputs preprocessed once onto the device (None: raw items each step)."""
        if resident not in ("auto", True, False):
            raise ValueError(f"resident must be 'auto', True or False, got {resident!r}")
        if resident is False:
            return None
        if self.dataset.task in ("joint", "ner"):  # sentences of words: tokenised with their word map at each step
            if resident is True:
                raise ValueError("training on tagged sentences reads them raw; train with resident off")
            return None
        if self.augmenter is not None:
            if resident is True:
                raise ValueError("resident inputs cannot be augmented (augmentation works on raw items); "
                                 "turn off --augment or resident")
            return None
        by_class = self.train_ds.ids_by_class(self.train_classes)
        ids = np.concatenate([by_class[c] for c in self.train_classes])
        described = [self.train_ds.class_item(c) for c in self.train_classes] if self.cfg.class_names else []
        items = self.learner.encoder.resident(self.train_ds.take(ids) + described, self.device)
        if items is None:
            if resident is True:
                raise ValueError(f"the {len(ids)} training items do not fit resident on {self.device} (see "
                                 "fewshot.device.resident_budget); train with resident off")
            return None
        self._row_of = np.full(len(self.train_ds.items), -1, dtype=np.int64)
        self._row_of[ids] = np.arange(len(ids))
        self._described_row = dict(zip(self.train_classes, range(len(ids), len(ids) + len(described))))
        return items

    def _items(self, ids: np.ndarray):
        """Training items ``ids`` of ``train_ds``: raw, or a view of the resident inputs."""
        if self.resident is not None:
            return self.resident.take(self._row_of[ids])
        return self.train_ds.take(ids)

    def _descriptions(self, classes) -> object:
        """The descriptions of train ``classes`` (``class_names``): raw, or a view of the resident inputs."""
        if self.resident is not None:
            return self.resident.take([self._described_row[c] for c in classes])
        return [self.train_ds.class_item(c) for c in classes]

    def _device_labels(self, labels: np.ndarray) -> torch.Tensor:
        """``labels`` as a LongTensor on the device, copied once per distinct labelling (episodes repeat them)."""
        key = labels.tobytes()
        if key not in self._labels:
            if len(self._labels) > 64:
                self._labels.clear()
            self._labels[key] = torch.as_tensor(labels, dtype=torch.long, device=self.device)
        return self._labels[key]

    def episode_inputs(self, ep, aug_rng=None) -> tuple:
        """``(support items, support labels, query items, query labels)`` of training episode ``ep``; labels are
        host LongTensors (learners' checks then cost no device sync). A tagging episode's items are its sentences
        and its labels their words' local labels, sentence after sentence. ``aug_rng``: the augmenter's generator
        (None: the episode as sampled, as a test or an evaluation of the training loss reads it)."""
        if self.dataset.task == "ner":
            tags = self.train_ds.tags
            labels = [torch.from_numpy(np.concatenate(ep.token_labels([tags[int(i)] for i in ids])))
                      for ids in (ep.support, ep.query)]
            support = self.train_ds.take(ep.support)
            if self.cfg.class_names:  # the types' names join the support set, as evaluation adds them
                support, labels[0] = ep.with_type_names(support, labels[0])
            return support, labels[0], self.train_ds.take(ep.query), labels[1]
        sx, qx = self._items(ep.support), self._items(ep.query)
        if self.augmenter is not None and aug_rng is not None:
            sx, qx = self.augmenter(sx, aug_rng), self.augmenter(qx, aug_rng)
        sy, qy = torch.from_numpy(ep.support_labels), torch.from_numpy(ep.query_labels)
        if self.cfg.class_names:  # as evaluation adds them: one more support example per class, never augmented
            sx = join_items(sx, self._descriptions(ep.classes))
            sy = torch.from_numpy(ep.described_support_labels())
        return sx, sy, qx, qy

    def _train_step(self, step: int) -> tuple[torch.Tensor, torch.Tensor | None, int]:
        """One optimizer step; (loss, accuracy or None) stay on the device (no host sync)."""
        cfg = self.cfg
        torch.manual_seed(step_seed(cfg.seed, step, self.rank))
        aug_rng = np.random.default_rng([cfg.seed, step, self.rank, 1]) if self.augmenter is not None else None
        self.learner.module.train()
        for g, base in zip(self.optimizer.param_groups, self.base_lrs):
            g["lr"] = base * self._lr_factor(step)
        index = self.episode_index(step)
        if self.learner.train_mode == "episodic":
            sx, sy, qx, qy = self.episode_inputs(self.sampler.sample(index), aug_rng)
            with autocast(self.device):
                loss, logits = self.wrapped("episode", sx, sy, qx, qy)
            target = self._device_labels(qy.numpy())
        else:
            rng = np.random.default_rng([cfg.seed, step, self.rank, 2])
            pick = rng.choice(len(self.train_ids), size=cfg.batch_size, replace=False)
            x = self._items(self.train_ids[pick])
            if self.augmenter is not None:
                x = self.augmenter(x, aug_rng)
            target = torch.as_tensor(self.train_targets[pick], dtype=torch.long, device=self.device)
            with autocast(self.device):
                loss, logits = self.wrapped("batch", x, target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
        self.optimizer.step()
        acc = (logits.argmax(1) == target).float().mean().detach() if logits is not None else None
        return loss.detach().float(), acc, index

    def train_steps(self, n: int) -> dict[str, list]:
        """Run ``n`` training steps from :attr:`step` without validating; their losses, accuracies, episodes.

        Reads the device once at the end; raises FloatingPointError (naming the step) on a non-finite loss.
        """
        start, out = self.step, []
        for _ in range(n):
            out.append(self._train_step(self.step))
            self.step += 1
        if not out:
            return {"losses": [], "accuracies": [], "indices": []}
        losses = torch.stack([o[0] for o in out]).cpu().tolist()
        bad = [i for i, v in enumerate(losses) if not math.isfinite(v)]
        if bad:
            raise FloatingPointError(f"training loss became {losses[bad[0]]} at step {start + bad[0]}; lower --lr")
        accs = [o[1] for o in out]
        if all(a is not None for a in accs):
            accs = torch.stack(accs).cpu().tolist()
        else:
            accs = [float("nan")] * len(out)
        return {"losses": losses, "accuracies": accs, "indices": [o[2] for o in out]}

    # ----------------------------------------------------------------- validation
    @property
    def val_metric(self) -> str | None:
        """What validation maximises when it is not the val episodes' mean accuracy (None): the joint learner's
        ``selection_metric``, or ``"span_f1"`` on tagged data. The log names it (``val_metric``)."""
        return {"joint": getattr(self.learner, "selection_metric", None), "ner": "span_f1"}.get(self.dataset.task)

    def validate(self) -> tuple[float, float]:
        """Mean accuracy and 95% CI on the fixed validation episodes (joint data: the learner's selection metric
        on the val sentences; tagged data: span F1 on the val types' episodes; each with half its bootstrap
        interval)."""
        from .evaluation import evaluate

        self.learner.module.eval()
        if self.dataset.task == "joint":
            from .joint_evaluation import evaluate_joint

            result = evaluate_joint(self.learner, self.dataset, self.val_ids)
            metric = self.learner.selection_metric
            low, high = result.intervals()[metric]
            return getattr(result, metric), (high - low) / 2
        if self.dataset.task == "ner":
            from .tag_evaluation import evaluate_tagging

            result = evaluate_tagging(self.learner, self.dataset, self.val_episodes, progress=False,
                                      type_names=self.cfg.class_names)
            low, high = result.f1_interval()
            return result.f1, (high - low) / 2
        with torch.no_grad():
            result = evaluate(self.learner, self.dataset, self.val_episodes, progress=False,
                              class_names=self.cfg.class_names)
        return result.mean, result.ci95

    # ----------------------------------------------------------------- the loop
    def fit(self) -> dict:
        cfg = self.cfg
        start = time.perf_counter()
        losses, accs, seen = [], [], []
        bar = None
        if self.progress and self.rank == 0:
            from .evaluation import progress_bar

            bar = progress_bar(cfg.steps - self.step, "training")
        try:
            while self.step < cfg.steps and not self.stopped_early:
                next_eval = min(cfg.steps, (self.step // cfg.eval_every + 1) * cfg.eval_every)
                done = self.train_steps(min(SYNC_EVERY, next_eval - self.step))
                losses += done["losses"]
                accs += done["accuracies"]
                seen += done["indices"]
                if bar is not None:
                    bar.update(len(done["losses"]))
                    bar.set_postfix(loss=f"{done['losses'][-1]:.3f}")
                if self.step % cfg.eval_every == 0 or self.step == cfg.steps:
                    self._evaluate_and_save(losses, accs, seen, time.perf_counter() - start)
                    losses, accs, seen = [], [], []
        finally:
            if bar is not None:
                bar.close()
        self.group.barrier()
        return {
            "steps": self.step,
            "best_val_accuracy": self.best if math.isfinite(self.best) else None,
            "best_step": self.best_step,
            "final_val_accuracy": self.log[-1]["val_accuracy"] if self.log else float("nan"),
            "stopped_early": self.stopped_early,
            "train_time_s": round(self.elapsed_before + time.perf_counter() - start, 3),
            "world_size": self.world,
        }

    def _evaluate_and_save(self, losses, accs, seen, elapsed) -> None:
        cfg = self.cfg
        rank_episodes = self.group.gather(seen, torch.int64)
        rank_checksums = [r[0] for r in self.group.gather([param_checksum(self.learner.module)])]
        if self.rank == 0:
            if cfg.include_val:  # no class is held out: the latest step is the checkpoint
                val_acc = val_ci = None
                improved, self.best_step = True, self.step
            else:
                val_acc, val_ci = self.validate()
                improved = val_acc > self.best
                if improved:
                    self.best, self.best_step, self.bad_evals = val_acc, self.step, 0
                else:
                    self.bad_evals += 1
            if cfg.patience and self.bad_evals >= cfg.patience:
                self.stopped_early = True
            known = [a for a in accs if not math.isnan(a)]
            entry = {"step": self.step, "train_loss": float(np.mean(losses)),
                     "train_accuracy": float(np.mean(known)) if known else None, "val_accuracy": val_acc, "val_ci95": val_ci,
                     "best_val_accuracy": self.best if math.isfinite(self.best) else None,
                     "best_step": self.best_step, "elapsed_s": round(self.elapsed_before + elapsed, 3),
                     "lr": self.optimizer.param_groups[0]["lr"]}
            if self.val_metric:
                entry["val_metric"] = self.val_metric
            if self.world > 1:
                entry["rank_episodes"] = rank_episodes
                entry["rank_param_checksums"] = rank_checksums
            self.log.append(entry)
            if self.out_dir is not None:
                if improved:
                    from .checkpoint import save_checkpoint

                    save_checkpoint(self.out_dir, self.learner, self._run_config(),
                                    {"step": self.step, "val_accuracy": val_acc, "val_ci95": val_ci})
                self._save_state(elapsed, final=self.step >= cfg.steps or self.stopped_early)
        self.stopped_early = self.group.broadcast_flag(self.stopped_early)

    def _run_config(self) -> dict:
        if self.run_config is not None:
            return self.run_config
        return {"train": dataclasses.asdict(self.cfg), "learner": self.learner.cfg.to_dict()}

    # ----------------------------------------------------------------- resume state
    def _save_state(self, elapsed: float, final: bool) -> None:
        """The resume state (first, last, and whenever its cost has been earned: see RESUME_COST_RATIO),
        then the log (every evaluation; a resume cuts it back to the state's step)."""
        from .atomic import atomic_write_text
        from .checkpoint import save_training_state

        now = time.perf_counter()
        if final or self._state_written is None or \
                now - self._state_written[0] >= RESUME_COST_RATIO * self._state_written[1]:
            state = {"step": self.step, "best": self.best if math.isfinite(self.best) else None,
                     "best_step": self.best_step, "bad_evals": self.bad_evals, "stopped_early": self.stopped_early,
                     "elapsed_s": self.elapsed_before + elapsed, "train": dataclasses.asdict(self.cfg)}
            save_training_state(self.out_dir / "last", self.learner, self.optimizer, state)
            self._state_written = (time.perf_counter(), time.perf_counter() - now)
        lines = "".join(json.dumps(e, sort_keys=True) + "\n" for e in self.log)
        atomic_write_text(self.out_dir / "train_log.jsonl", lines)

    def _load_state(self) -> None:
        from .checkpoint import has_training_state, load_training_state

        last = self.out_dir / "last"
        if not has_training_state(last):
            raise ValueError(f"--resume: {self.out_dir} holds no resume state (expected {last}/manifest.json); "
                             "start without --resume")
        state = load_training_state(last, self.learner, self.optimizer)
        saved_train = dict(state.get("train", {}))
        mine = dataclasses.asdict(self.cfg)
        changed = [k for k in mine if k not in ("steps", "patience") and saved_train.get(k, mine[k]) != mine[k]]
        if changed:
            raise ValueError(f"--resume: training options {changed} differ from the interrupted run "
                             f"({ {k: saved_train[k] for k in changed} }); only --steps and --patience may change")
        self.step = int(state["step"])
        self.best = state["best"] if state["best"] is not None else -math.inf
        self.best_step = int(state["best_step"])
        self.bad_evals = int(state["bad_evals"])
        self.stopped_early = bool(state["stopped_early"]) and self.bad_evals >= self.cfg.patience > 0
        self.elapsed_before = float(state.get("elapsed_s", 0.0))
        log_path = self.out_dir / "train_log.jsonl"
        if log_path.is_file():
            entries = [json.loads(ln) for ln in log_path.read_text().splitlines() if ln.strip()]
            self.log = [e for e in entries if e["step"] <= self.step]
