"""SetFit's per-task recipe (Tunstall et al. 2022, "Efficient Few-Shot Learning Without Prompts").

Per task, a copy of the encoder body is fine-tuned contrastively on pairs of support
examples, then a head is fitted on the tuned body's embeddings of the support set:

1. **Pairs** (:func:`contrastive_pairs`), exactly as ``setfit.sampler.ContrastiveDataset``
   (SetFit 1.2.0) draws them: every unordered pair of support examples *with replacement*
   (an example paired with itself is a positive), shuffled by ``numpy.random.RandomState(42)``;
   same class = target 1, different = target 0. ``sampling="oversampling"`` (SetFit's
   default) cycles the smaller of the two lists up to the size of the larger; ``undersampling``
   cuts the larger to the smaller; ``unique`` keeps each pair once. ``iterations`` N > 0
   (SetFit's ``num_iterations``; its 0.x default and the paper's setting was 20) overrides the
   strategy with N x n_support positives and as many negatives. Positives and negatives alternate.
2. **Body**: ``epochs`` passes over the pairs in shuffled batches of ``batch_size`` pairs,
   the loss of sentence-transformers' ``CosineSimilarityLoss`` (squared error between the
   cosine of the two embeddings and the target), AdamW at ``lr`` with ``weight_decay``
   (not on biases and LayerNorm weights) and a linear schedule after a warmup of
   ``warmup_proportion`` of the steps, gradients clipped to norm ``max_grad_norm``, dropout on:
   SetFit's defaults (batch 16, 1 epoch, lr 2e-5, weight decay 0.01, warmup 0.1) as the Hugging
   Face Trainer runs them (clipping at 1.0 is the Trainer's).
3. **Head**: ``head="logreg"`` (SetFit's default) is scikit-learn's ``LogisticRegression()``
   with its defaults on the L2-normalised embeddings (the sentence-transformers pipelines of
   MiniLM and mpnet end in a Normalize module, so that is what SetFit's head sees);
   ``head="prototype"`` scores queries by cosine to the class means (:mod:`fewshot.prototypes`).

At 1-shot SetFit has no two examples of one class: its only positives are each example
paired with itself (whose target 1 the body almost meets already; only dropout makes the two
embeddings differ), so a 5-way 1-shot task gets 5 positives and 10 negatives, oversampled to
10 + 10 = 20 pairs: 2 steps of batch 16, the first of which has learning rate 0 (warmup). In
effect SetFit at 1-shot is a logistic-regression head on the (almost) frozen encoder. This
learner does the same. At 5-way 5-shot: 75 positives (25 of them self-pairs) and 250
negatives, oversampled to 500 pairs, 32 steps.

The original encoder is never changed (``adapts_encoder`` is True: each task tunes a copy,
so an evaluation embeds every task's items with that task's copy). ``epochs=0`` skips the
body: the head alone on the frozen encoder, which then takes cached embeddings
(:meth:`adapt_features`).

Why the recipe is here and the setfit package is not wrapped: the package takes a
sentence-transformers model, not a fewshot :class:`~fewshot.encoders.Encoder` (so no checkpoint of
``fewshot train``, no entity pooling, no fewshot device handling would reach it); it needs
sentence-transformers, datasets and pyarrow, which fewshot does not depend on and the GPU machine
lacks; and per task it builds a ``datasets.Dataset`` and a Hugging Face Trainer. The recipe is
the pair sampler, a loss and a loop; ``bin/bench-setfit`` checks it against the package itself
on the same episodes (BENCHMARKS.md "setfit").
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from itertools import zip_longest

import numpy as np
import torch
from torch import nn

from ..prototypes import class_means, scores
from .base import Learner, LearnerConfig
from .registry import register_learner

HEADS = ("logreg", "prototype")
SAMPLINGS = ("oversampling", "undersampling", "unique")
PAIR_SEED = 42  # setfit.sampler.shuffle_combinations: np.random.RandomState(seed=42)


def contrastive_pairs(labels, sampling: str = "oversampling", iterations: int = 0) -> np.ndarray:
    """SetFit's pairs of ``labels``' positions: an (n_pairs, 3) array of (i, j, target) rows, target 1.0
    for the same class and 0.0 for different ones, in SetFit's order (positive, negative, positive, ...).

    See the module docstring for ``sampling`` and ``iterations``. Two labels [0, 0, 1, 1] give 6
    positives (4 self-pairs and 2 others) and 4 negatives: 12 pairs oversampled, 8 undersampled,
    10 unique, and 2 x 4 x N with ``iterations=N``.
    """
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) == 0:
        raise ValueError(f"contrastive_pairs expects a 1-d sequence of support labels, got shape {y.shape}")
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0 (0: pairs by sampling), got {iterations}")
    if len(np.unique(y)) < 2:
        raise ValueError(f"contrastive pairs need two or more classes (negatives), got labels {sorted(set(y.tolist()))}; "
                         "give a support set of two or more classes")
    idx = np.stack(np.triu_indices(len(y), 0), axis=-1)  # with replacement: (i, i) is a pair
    idx = idx[np.random.RandomState(seed=PAIR_SEED).permutation(len(idx))]
    same = y[idx[:, 0]] == y[idx[:, 1]]
    pos, neg = idx[same], idx[~same]
    if iterations:
        n_pos = n_neg = iterations * len(y)
    elif sampling == "unique":
        n_pos, n_neg = len(pos), len(neg)
    else:
        n_pos = n_neg = (max if sampling == "oversampling" else min)(len(pos), len(neg))
    pos = [(i, j, 1.0) for i, j in pos[np.arange(n_pos) % len(pos)]]
    neg = [(i, j, 0.0) for i, j in neg[np.arange(n_neg) % len(neg)]]
    rows = [r for pair in zip_longest(pos, neg) for r in pair if r is not None]
    return np.asarray(rows, dtype=np.float64).reshape(-1, 3)


@dataclass
class SetFitConfig(LearnerConfig):
    name = "setfit"
    iterations: int = 0  # SetFit's num_iterations: 0 = pairs by `sampling`; N = N x n_support pairs of each kind
    sampling: str = "oversampling"  # oversampling | undersampling | unique (SetFit's sampling_strategy)
    epochs: int = 1  # passes over the pairs (SetFit's num_epochs for the body); 0 = frozen body, head only
    batch_size: int = 16  # pairs per step
    lr: float = 2e-5  # body learning rate (SetFit's body_learning_rate)
    weight_decay: float = 0.01  # SetFit's l2_weight
    warmup_proportion: float = 0.1
    max_grad_norm: float = 1.0  # gradient clipping, as the Hugging Face Trainer's default
    head: str = "logreg"  # logreg (SetFit's LogisticRegression) | prototype (cosine to the class means)
    seed: int = 42  # the batches' shuffle and dropout (SetFit's seed)

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ValueError(f"setfit head must be one of {HEADS}, got {self.head!r}")
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"setfit sampling must be one of {SAMPLINGS}, got {self.sampling!r}")
        for name, low in (("iterations", 0), ("epochs", 0), ("batch_size", 1)):
            if getattr(self, name) < low:
                raise ValueError(f"setfit {name} must be at least {low}, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)) or self.weight_decay < 0:
            raise ValueError(f"setfit lr must be a finite number > 0 and weight_decay >= 0, got {self.lr}, "
                             f"{self.weight_decay}")
        if not self.max_grad_norm > 0:
            raise ValueError(f"setfit max_grad_norm must be > 0, got {self.max_grad_norm}")
        if not 0 <= self.warmup_proportion <= 1:
            raise ValueError(f"setfit warmup_proportion must be in [0, 1], got {self.warmup_proportion}")


@register_learner
class SetFit(Learner):
    name = "setfit"
    config_class = SetFitConfig

    def __init__(self, encoder, cfg: SetFitConfig | None = None):
        super().__init__(encoder, cfg)
        if getattr(encoder, "precision", "fp32") != "fp32":
            raise ValueError(f"learner 'setfit' fine-tunes the encoder, which needs precision 'fp32'; got "
                             f"{encoder.precision!r}: drop --precision, or use --learner protonet")
        self._adapted = None  # the task's tuned encoder copy
        self._head = None
        self.support_losses: list[float] = []  # of the last task's body tuning, step by step

    @property
    def adapts_encoder(self) -> bool:  # type: ignore[override]
        return self.cfg.epochs > 0

    # ------------------------------------------------------------ the body
    def tuned_encoder(self, x: list, y: np.ndarray):
        """A copy of the encoder after SetFit's contrastive tuning on the pairs of ``x`` (labels ``y``)."""
        cfg = self.cfg
        pairs = contrastive_pairs(y, cfg.sampling, cfg.iterations)
        enc = copy.deepcopy(self.encoder)
        for p in enc.parameters():
            p.requires_grad_(True)
        enc.train()  # dropout on, as the Trainer runs SetFit's body
        n_steps = cfg.epochs * math.ceil(len(pairs) / cfg.batch_size)
        params = list(enc.parameters())
        # fused: the Trainer's default optimizer (adamw_torch_fused); on the CPU 6x faster a step than foreach
        opt = torch.optim.AdamW(_decay_groups(enc, cfg.weight_decay), lr=cfg.lr, fused=_fusable(params))
        warmup = math.ceil(cfg.warmup_proportion * n_steps)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: s / max(1, warmup) if s < warmup
                                                  else max(0.0, (n_steps - s) / max(1, n_steps - warmup)))
        gen = torch.Generator().manual_seed(cfg.seed)
        rng_state = torch.random.get_rng_state()
        torch.manual_seed(cfg.seed)  # dropout: the same masks every run
        losses = []
        try:
            with torch.enable_grad():
                for _ in range(cfg.epochs):
                    order = torch.randperm(len(pairs), generator=gen).numpy()
                    for start in range(0, len(pairs), cfg.batch_size):
                        batch = pairs[order[start:start + cfg.batch_size]]
                        a, b = batch[:, 0].astype(int), batch[:, 1].astype(int)
                        z = enc.embed([x[i] for i in a] + [x[j] for j in b]).float()
                        cos = nn.functional.cosine_similarity(z[:len(a)], z[len(a):], dim=1)
                        target = torch.as_tensor(batch[:, 2], dtype=cos.dtype, device=cos.device)
                        loss = nn.functional.mse_loss(cos, target)
                        opt.zero_grad(set_to_none=True)
                        loss.backward()
                        nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                        opt.step()
                        sched.step()
                        losses.append(loss.detach())
        finally:
            torch.random.set_rng_state(rng_state)
        self.support_losses = torch.stack(losses).cpu().tolist()
        for p in enc.parameters():
            p.requires_grad_(False)
        return enc.eval()

    # ------------------------------------------------------------ the head
    def adapt_features(self, z_support: torch.Tensor, y_support: torch.Tensor) -> None:
        z = nn.functional.normalize(z_support.float().cpu(), dim=1)
        y = torch.as_tensor(y_support, dtype=torch.long)
        if self.cfg.head == "prototype":
            self._head = class_means(z, y)
            return
        from sklearn.linear_model import LogisticRegression

        self._head = LogisticRegression().fit(z.numpy(), y.numpy())

    def logits_features(self, z_query: torch.Tensor) -> torch.Tensor:
        """(n_query, n_way): cosine to each class mean (prototype head), or the head's log-probabilities."""
        if self._head is None:
            raise ValueError("learner 'setfit' has no task yet: call adapt(support_x, support_y) first")
        z = nn.functional.normalize(z_query.float().cpu(), dim=1)
        if self.cfg.head == "prototype":
            return scores(z, self._head, "cosine")
        return torch.from_numpy(self._head.predict_log_proba(z.numpy())).float()

    # ------------------------------------------------------------ per task
    def adapt(self, support_x, support_y) -> None:
        x, y = list(support_x), np.asarray(support_y)
        self._adapted = self.tuned_encoder(x, y) if self.cfg.epochs else None
        enc = self.encoder if self._adapted is None else self._adapted
        self.adapt_features(torch.from_numpy(enc.encode(x, device=self.device)), torch.from_numpy(y))

    def logits(self, query_x) -> torch.Tensor:
        enc = self.encoder if self._adapted is None else self._adapted
        return self.logits_features(torch.from_numpy(enc.encode(list(query_x), device=self.device)))


def _decay_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups as the Hugging Face Trainer builds them: no weight decay on biases and LayerNorm weights."""
    no_decay = {id(p) for m in module.modules() if isinstance(m, nn.LayerNorm) for p in m.parameters()}
    decay, rest = [], []
    for name, p in module.named_parameters():
        (rest if name.endswith("bias") or id(p) in no_decay else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def _fusable(params: list[nn.Parameter]) -> bool:
    """Whether torch's fused AdamW takes these parameters (floating point, on the CPU or CUDA)."""
    return all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
