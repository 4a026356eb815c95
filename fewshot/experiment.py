"""One evaluation run from a FewShotConfig: dataset -> episodes -> learner -> accuracy.

This is what ``fewshot run`` calls; it holds no CLI code.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from .checkpoint import check_scored_classes, load_learner
from .config import DEFAULT_EPISODES, EpisodeConfig, FewShotConfig
from .data import FewShotDataset, with_extra_classes
from .datasets import load_dataset
from .device import resolve_device
from .encoders import create_encoder, default_encoder
from .episodes import Episode, EpisodeSampler, VariableEpisodeSampler, load_episodes
from .evaluation import EvalResult, evaluate
from .joint_episodes import JointEpisodeSampler
from .joint_evaluation import evaluate_joint, evaluate_joint_episodes
from .learners import Ensemble, create_learner, default_learner, learner_config
from .seed import seed_everything
from .tag_episodes import GreedyTypeSampler
from .tag_evaluation import evaluate_tagging


def build_dataset(cfg: FewShotConfig, training: bool = False) -> FewShotDataset:
    """``cfg.data``'s dataset; for ``training``, with the train classes of ``data.extra_train`` and the
    val classes of ``data.extra_val`` added."""
    d = cfg.data
    kw = {}
    if d.text_column != "text" or d.label_column != "label":
        kw = {"text_column": d.text_column, "label_column": d.label_column}
    dataset = load_dataset(d.dataset, d.data_root, **kw)
    if dataset.task in ("joint", "ner") and (d.extra_train or d.extra_val):
        kind = "joint intent + slot data" if dataset.task == "joint" else "tagged (NER) data"
        raise ValueError(f"dataset {dataset.name!r} is {kind}: data.extra_train / extra_val add "
                         "classes to class-split datasets and do not apply; drop them")
    if training and (d.extra_train or d.extra_val):
        extras = {name: load_dataset(name, d.data_root) for name in dict.fromkeys(d.extra_train + d.extra_val)}
        dataset = with_extra_classes(dataset, train=[extras[n] for n in d.extra_train],
                                     val=[extras[n] for n in d.extra_val])
    return dataset


def build_episodes(cfg: FewShotConfig, dataset: FewShotDataset) -> tuple[Sequence[Episode], dict]:
    """The episodes to score, sampled from ``cfg.episodes`` or read from its episodes_file.

    Sampled episodes come as a lazy :class:`~fewshot.episodes.SampledEpisodes`: none is
    sampled before it is read, so ``--episodes 10000000`` starts scoring at once.
    """
    e = cfg.episodes
    if dataset.task == "joint" and not dataset.splits:
        raise ValueError(f"dataset {dataset.name!r} is joint intent + slot data: it is scored on its test sentences, "
                         f"not on episodes; train with `fewshot train --dataset {dataset.name}` and score with "
                         f"`fewshot run --dataset {dataset.name} --checkpoint DIR`")
    if e.episodes_file:
        header, episodes = load_episodes(e.episodes_file)
        fp = header.get("dataset_fingerprint")
        if fp and fp != dataset.fingerprint():
            raise ValueError(
                f"episode file {e.episodes_file} was made from dataset {header.get('dataset')!r} "
                f"(fingerprint {fp}) but the loaded dataset {dataset.name!r} has fingerprint "
                f"{dataset.fingerprint()}; make the episodes again for this dataset"
            )
        n = len(dataset.items)
        bad = [ep.index for ep in episodes if ep.support.max() >= n or ep.query.max() >= n]
        if bad:
            raise ValueError(f"episode file {e.episodes_file}: episode {bad[0]} names examples past the "
                             f"dataset's {n} items")
        if e.episodes is not None:
            if e.episodes > len(episodes):
                raise ValueError(f"--episodes {e.episodes} asks for more episodes than episode file "
                                 f"{e.episodes_file} holds ({len(episodes)}); pass --episodes {len(episodes)} or "
                                 "fewer, or make a larger file with `fewshot episodes make`")
            episodes = episodes[: e.episodes]  # the first N, in the file's order
        return episodes, {"episodes_file": str(e.episodes_file), **header, "episodes_in_file": header["n_episodes"]}
    n_episodes = DEFAULT_EPISODES if e.episodes is None else e.episodes
    if dataset.episodes:
        eps = list(dataset.episodes)
        shape = {"way": eps[0].n_way, "shot": len(eps[0].support) // eps[0].n_way,
                 "query": len(eps[0].query) // eps[0].n_way, "episodes": len(eps)}
        default = EpisodeConfig()
        for key, fixed in shape.items():
            asked = getattr(e, key)
            if asked not in (fixed, getattr(default, key)) and not (key == "episodes" and asked == DEFAULT_EPISODES):
                raise ValueError(
                    f"dataset {dataset.name!r} is a fixed protocol of {len(eps)} episodes of {shape['way']}-way "
                    f"{shape['shot']}-shot with {shape['query']} queries per class, but --{key} {asked} was asked "
                    f"for; drop --{key} (or use another dataset to sample your own episodes)"
                )
        shape.pop("episodes")
        return eps, {"sampler": "protocol", **shape, "seed": None}
    for ckpt in filter(None, [cfg.checkpoint, *cfg.ensemble]):  # final models never score the val classes
        check_scored_classes(ckpt, e.classes)
    classes = dataset.split_classes(e.classes)
    if dataset.task == "joint":  # few-shot joint episodes of intents (Krone et al. 2020)
        if e.sampler != "fixed":
            raise ValueError(f"--sampler {e.sampler} does not apply to joint episodes, which draw --shot and "
                             "--query utterances per intent; drop --sampler")
        sampler = JointEpisodeSampler(dataset.intents, e.way, e.shot, e.query, seed=e.seed, intents=classes)
        return sampler.episodes(n_episodes), sampler.describe()
    if dataset.task == "ner":  # Few-NERD's N-way K~2K episodes; the query set is K~2K too
        if e.query != EpisodeConfig().query:
            raise ValueError(f"--query {e.query} does not apply to NER data: the query set is drawn like the "
                             f"support set, {e.shot}~{2 * e.shot} entities per type (Few-NERD's protocol); drop --query")
        if e.sampler == "variable":
            raise ValueError("--sampler variable does not apply to NER data; use fixed (Few-NERD's K~2K) or "
                             "minimum-including (Hou et al.'s K-shot)")
        rule = "minimum-including" if e.sampler == "minimum-including" else "greedy"
        sampler = GreedyTypeSampler(dataset, e.way, e.shot, seed=e.seed, types=classes, rule=rule)
        return sampler.episodes(n_episodes), sampler.describe()
    if e.sampler == "minimum-including":
        raise ValueError(f"--sampler minimum-including is a rule for tagged (NER) data, but dataset "
                         f"{dataset.name!r} is classified; use --sampler fixed or variable")
    if e.sampler == "variable":
        sampler = VariableEpisodeSampler(dataset.labels, seed=e.seed, classes=classes)
    else:
        sampler = EpisodeSampler(dataset.labels, e.way, e.shot, e.query, seed=e.seed, classes=classes)
    return sampler.episodes(n_episodes), sampler.describe()


def build_learner(cfg: FewShotConfig, dataset: FewShotDataset, seed: int | None = None, encoder=None):
    """The learner of ``cfg`` for ``dataset``: from a checkpoint folder, or a fresh pretrained
    encoder, or ``encoder`` (an Encoder instance, e.g. a support index's; cfg.encoder and
    cfg.checkpoint are then ignored).

    A fresh encoder takes ``dataset.encoder_options`` (what its items call for, e.g. FewRel's
    entity pooling) under ``cfg.encoder_options``, which win; a checkpoint's encoder keeps its
    own options but for ``cfg.encoder_options``.

    ``seed`` seeds every generator first (identical initial heads and adapters on
    every rank of a distributed run). Under torchrun on CUDA each rank takes its
    own device. ``cfg.learner`` and ``cfg.encoder_options`` become the resolved options
    actually used (e.g. the encoder's metric), for reports and checkpoints.
    """
    import torch

    modality = dataset.modality

    if seed is not None:
        seed_everything(seed)
    device = resolve_device(cfg.device)
    if device.type == "cuda" and torch.distributed.is_available() and torch.distributed.is_initialized():
        device = torch.device("cuda", torch.cuda.current_device())
    if encoder is not None:
        learner = create_learner(cfg.learner.name, encoder, cfg.learner)
    elif cfg.checkpoint:
        asked = cfg.asked_learner()  # None: the checkpoint's own learner, as saved
        learner = load_learner(cfg.checkpoint, learner_cfg=asked, encoder_options=cfg.encoder_options)
        if cfg.ensemble:  # every member takes the same asked options (e.g. test-time fine-tuning)
            learner = Ensemble([learner] + [load_learner(c, learner_cfg=asked, encoder_options=cfg.encoder_options)
                                            for c in cfg.ensemble])
    else:
        name = cfg.encoder or default_encoder(modality)
        cfg.encoder_options = {**dataset.encoder_options, **cfg.encoder_options}
        encoder = create_encoder(name, **cfg.encoder_options)
        if encoder.modality != modality:
            raise ValueError(f"encoder {name!r} reads {encoder.modality} but the dataset is {modality}; choose "
                             f"a {modality} encoder with --encoder ({default_encoder(modality)!r})")
        learner = create_learner(cfg.learner.name, encoder, cfg.learner)
    if learner.encoder.modality != modality:
        raise ValueError(
            f"encoder {learner.encoder.name!r} reads {learner.encoder.modality} but the dataset is "
            f"{modality}; choose a {modality} encoder with --encoder ({default_encoder(modality)!r})"
        )
    cfg.learner = learner.cfg
    return learner.to(device)


@dataclass
class RunReport:
    cfg: FewShotConfig
    dataset: FewShotDataset
    result: EvalResult
    sampler: dict
    encoder: str
    encoder_fingerprint: str
    elapsed_s: float

    def to_dict(self) -> dict:
        if self.dataset.task == "joint" and "part" in self.sampler:  # no episodes: the dataset's test sentences
            return {"dataset": self.dataset.name, "learner": self.cfg.learner.name, "encoder": self.encoder,
                    "encoder_fingerprint": self.encoder_fingerprint, "part": self.sampler["part"],
                    **self.result.summary(), "elapsed_s": round(self.elapsed_s, 3),
                    "checkpoint": self.cfg.checkpoint, "config": self.cfg.to_dict()}
        e = self.cfg.episodes
        shape = ({"way": e.way, "shot": e.shot, "query": e.query} if self.sampler.get("sampler") == "fixed"
                 else {k: self.sampler.get(k) for k in ("way", "shot", "query")})
        return {
            "dataset": self.dataset.name,
            "learner": self.cfg.learner.name,
            "encoder": self.encoder,
            "encoder_fingerprint": self.encoder_fingerprint,
            **shape,
            "episodes": self.result.n_episodes,
            "seed": self.sampler.get("seed", e.seed),
            **self.result.summary(),
            "elapsed_s": round(self.elapsed_s, 3),
            "embedded_examples": self.result.n_embedded,
            "classes": e.classes,
            "class_names": e.class_names,
            "sampler": self.sampler.get("sampler", "file"),
            "episodes_file": self.sampler.get("episodes_file"),
            "episodes_in_file": self.sampler.get("episodes_in_file"),
            "checkpoint": self.cfg.checkpoint,
            "config": self.cfg.to_dict(),
        }


_EPISODE_FLAGS = {"episodes_file": "episodes-file", "class_names": "class-names"}  # EpisodeConfig field -> flag


def run_experiment(cfg: FewShotConfig, progress: bool = True, cache: bool = True,
                   predictions: bool = False, asked: Sequence[str] = ()) -> RunReport:
    """``predictions``: keep every query's class and prediction, for ``result.class_report()``. ``asked``: the
    episode settings the caller gave explicitly, as flags (``--way``), even at their defaults: a run that
    cannot honour them (joint data) refuses them."""
    start = time.perf_counter()
    dataset = build_dataset(cfg)
    if dataset.task == "joint" and not dataset.splits:
        return _run_joint(cfg, dataset, progress, start, asked)
    episodes, sampler = build_episodes(cfg, dataset)
    default = default_learner("joint-episodes" if dataset.task == "joint" else dataset.task)
    if not cfg.learner_named and not cfg.checkpoint and cfg.learner.name != default:  # e.g. tagging data
        cfg.learner = learner_config(default)
    learner = build_learner(cfg, dataset)
    if dataset.task == "joint":
        result = evaluate_joint_episodes(learner, dataset, episodes, batch_size=min(cfg.batch_size, 32),
                                         progress=progress)
    elif dataset.task == "ner":
        result = evaluate_tagging(learner, dataset, episodes, batch_size=min(cfg.batch_size, 32), progress=progress,
                                  cache=None if cache else False, type_names=cfg.episodes.class_names)
    else:
        result = evaluate(learner, dataset, episodes, batch_size=cfg.batch_size, cache=cache, progress=progress,
                          predictions=predictions, class_names=cfg.episodes.class_names)
    return RunReport(cfg=cfg, dataset=dataset, result=result, sampler=sampler, encoder=learner.encoder_name,
                     encoder_fingerprint=learner.fingerprint(), elapsed_s=time.perf_counter() - start)


def _run_joint(cfg: FewShotConfig, dataset, progress: bool, start: float, asked: Sequence[str] = ()) -> RunReport:
    """A trained joint model (``cfg.checkpoint``) scored on a joint dataset's test sentences: no episodes, so any
    episode setting asked for (``asked``, or one off its default in ``cfg``) is refused rather than ignored."""
    default = EpisodeConfig()
    changed = [f"--{_EPISODE_FLAGS.get(k, k)}" for k in vars(default) if getattr(cfg.episodes, k) != getattr(default, k)]
    flags = list(dict.fromkeys([*asked, *changed]))
    if flags:
        n = len(dataset.part_ids("test"))
        raise ValueError(f"dataset {dataset.name!r} is joint intent + slot data, scored on its whole test split "
                         f"({n} sentences), not on episodes, so {', '.join(flags)} cannot apply; drop "
                         f"{'it' if len(flags) == 1 else 'them'}. For few-shot slot tagging in N-way K-shot "
                         "episodes, run one SNIPS domain, whose slots are the test types: `fewshot run --dataset "
                         "snips-<intent> --way W --shot K` (e.g. snips-getweather; `fewshot datasets` lists them)")
    if not cfg.checkpoint:
        raise ValueError(f"dataset {dataset.name!r} is joint intent + slot data: score a trained joint model, "
                         f"--checkpoint DIR (from fewshot train --dataset {dataset.name} --learner joint --out DIR)")
    learner = build_learner(cfg, dataset)
    result = evaluate_joint(learner, dataset, dataset.part_ids("test"), batch_size=min(cfg.batch_size, 64),
                            progress=progress)
    return RunReport(cfg=cfg, dataset=dataset, result=result, sampler={"part": "test"}, encoder=learner.encoder_name,
                     encoder_fingerprint=learner.fingerprint(), elapsed_s=time.perf_counter() - start)
