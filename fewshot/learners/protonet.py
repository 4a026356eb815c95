"""Prototypical networks (Snell, Swersky & Zemel 2017, "Prototypical Networks for Few-shot Learning").

Each class is the mean of its support embeddings; a query is scored by the
encoder's metric (cosine similarity for sentence encoders, negative squared
Euclidean distance for Conv4; ``metric`` overrides) against each prototype,
times a learned scale ``T``. Prototypes, metric, scale and search are
:mod:`fewshot.prototypes`, the same code that serves
:class:`~fewshot.support.FewShotClassifier` and ``fewshot index``.

Meta-training (:meth:`ProtoNet.episode_loss`, driven by
:class:`fewshot.training.Trainer`) minimises the cross-entropy of query
logits ``T * score(z_q, c_k)`` over episodes of the train classes;
``trainable`` chooses what of the encoder learns (``full``, ``last:K``,
``lora``, ``bitfit``, ``none``; see :mod:`fewshot.adapters`).

``transductive`` (off by default) refines each task's prototypes with its
unlabelled queries (soft k-means, Ren et al. 2018); it scores the queries as a
set, a different protocol, so its figures are reported apart.

``finetune_steps`` (off by default) fine-tunes a copy of the encoder on each
task's support set before scoring its queries (the "fine-tune" stage of Hu et
al. 2022, "Pushing the Limits of Simple Pipelines for Few-Shot Learning",
P>M>F): every step, augmented copies of the support examples are pseudo-queries
scored against the prototypes of the un-augmented support (leaving the query's
own example out when every class has two or more), with the protonet loss and
SGD with momentum; ``finetune_trainable`` chooses what of the copy adapts. It uses only the
support set, so the protocol is unchanged; it costs a few backward passes per
task.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch import nn

from ..adapters import apply_trainable, check_trainable
from ..augment import make_augmenter
from ..encoders.base import join_items
from ..prototypes import (
    DEFAULT_SCALE,
    check_metric,
    class_means,
    refine_with_queries,
    scores,
)
from .base import Learner, LearnerConfig, Serving
from .registry import register_learner


@dataclass
class ProtoNetConfig(LearnerConfig):
    name = "protonet"
    metric: Optional[str] = None  # cosine | euclidean; None: the encoder's (Encoder.metric)
    trainable: str = "full"  # full | last:K | lora | bitfit | none (what meta-training updates)
    temperature: float = 0.0  # initial scale T; 0 = fewshot.prototypes.DEFAULT_SCALE[metric]
    learn_temperature: bool = True
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.1
    transductive: int = 0  # soft k-means steps over each task's queries (0: off; changes the protocol)
    finetune_steps: int = 0  # test-time fine-tuning steps on each task's support set (0: off)
    finetune_lr: float = 1e-3  # SGD (momentum 0.9) learning rate of test-time fine-tuning
    finetune_trainable: str = "full"  # full | last:K | bitfit: what of the encoder's copy adapts per task
    finetune_seed: int = 0  # the augmentation of every task's pseudo-queries starts from this seed

    def __post_init__(self) -> None:
        if self.transductive < 0:
            raise ValueError(f"transductive must be >= 0 (refinement steps; 0 = off), got {self.transductive}")
        if self.finetune_steps < 0:
            raise ValueError(f"finetune_steps must be >= 0 (test-time fine-tuning steps; 0 = off), "
                             f"got {self.finetune_steps}")
        if not (self.finetune_lr > 0 and math.isfinite(self.finetune_lr)):
            raise ValueError(f"finetune_lr must be a finite number > 0, got {self.finetune_lr}")
        if check_trainable(self.finetune_trainable) in ("lora", "none"):
            raise ValueError(f"finetune_trainable must be full, last:K or bitfit (what of the encoder adapts to "
                             f"each task), got {self.finetune_trainable!r}")
        if self.metric is not None:
            check_metric(self.metric, "--metric")
        check_trainable(self.trainable)
        if not (self.temperature >= 0 and math.isfinite(self.temperature)):
            raise ValueError(f"temperature must be a finite number >= 0 (0 = automatic), got {self.temperature}")


class ProtoNetModule(nn.Module):
    """The encoder plus the log-temperature: what protonet trains and saves."""

    def __init__(self, encoder: nn.Module, temperature: float, learn: bool):
        super().__init__()
        self.encoder = encoder
        self.log_temperature = nn.Parameter(torch.tensor(math.log(temperature)), requires_grad=learn)


@register_learner
class ProtoNet(Learner):
    name = "protonet"
    config_class = ProtoNetConfig
    adapts_encoder = False

    def __init__(self, encoder, cfg: ProtoNetConfig | None = None):
        super().__init__(encoder, cfg)
        if self.cfg.metric is None:  # resolved once, so checkpoints and reports name the metric used
            self.cfg = dataclasses.replace(self.cfg, metric=encoder.metric)
        apply_trainable(encoder, self.cfg.trainable, self.cfg.lora_r, self.cfg.lora_alpha, self.cfg.lora_dropout)
        t = self.cfg.temperature or DEFAULT_SCALE[self.cfg.metric]
        self._module = ProtoNetModule(encoder, t, self.cfg.learn_temperature)
        self._support: tuple[torch.Tensor, torch.Tensor] | None = None
        self._protos: torch.Tensor | None = None
        self._adapted = None  # the task's fine-tuned encoder copy (finetune_steps > 0)
        self.support_losses: list[float] = []  # of the last test-time fine-tuning, step by step

    @property
    def adapts_encoder(self) -> bool:  # type: ignore[override]
        return self.cfg.finetune_steps > 0

    @property
    def module(self) -> nn.Module:
        return self._module

    @property
    def temperature(self) -> float:
        """The logit scale T (learned when ``learn_temperature``)."""
        return float(self._module.log_temperature.detach().exp())

    def serving(self) -> Serving:
        """Nearest prototypes are exactly how protonet scores: its metric and learned scale serve as trained."""
        return Serving(as_trained=True, metric=self.cfg.metric, scale=self.temperature)

    def episode_loss(self, support_x, support_y, query_x, query_y):
        """Cross-entropy of the queries against the support prototypes, and the (n_query, n_way) logits."""
        n_support = len(support_x)
        z = self.encoder.embed(join_items(support_x, query_x)).float()
        protos = class_means(z[:n_support], support_y)  # labels checked where they lie (CPU: no device sync)
        logits = self._module.log_temperature.exp() * scores(z[n_support:], protos, self.cfg.metric)
        loss = nn.functional.cross_entropy(logits, query_y.to(z.device))
        return loss, logits

    def adapt_features(self, z_support: torch.Tensor, y_support: torch.Tensor) -> None:
        self._support = (z_support.float().cpu(), torch.as_tensor(y_support))
        self._protos = class_means(*self._support)

    def logits_features(self, z_query: torch.Tensor) -> torch.Tensor:
        """(n_query, n_way): ``T * score`` against every prototype of the last adapted task.

        With ``transductive`` > 0 the prototypes are first refined with these queries
        (:func:`fewshot.prototypes.refine_with_queries`): the queries are scored as a set.
        """
        z_query = z_query.float().cpu()
        protos = self._protos
        if self.cfg.transductive:
            protos = refine_with_queries(*self._support, z_query, self.cfg.metric, self.temperature,
                                         self.cfg.transductive)
        return self.temperature * scores(z_query, protos, self.cfg.metric)

    # ------------------------------------------------------------ test-time fine-tuning
    def adapt(self, support_x, support_y) -> None:
        """Fit to one task; with ``finetune_steps`` the task's prototypes come from a fine-tuned encoder copy."""
        if not self.cfg.finetune_steps:
            self._adapted = None
            return super().adapt(support_x, support_y)
        x, y = list(support_x), torch.as_tensor(np.asarray(support_y), dtype=torch.long)
        enc = self._finetuned(x, y)
        self._adapted = enc
        self.adapt_features(torch.from_numpy(enc.encode(x, device=self.device)), y)

    def logits(self, query_x) -> torch.Tensor:
        enc = self._adapted if self._adapted is not None else self.encoder
        return self.logits_features(torch.from_numpy(enc.encode(list(query_x), device=self.device)))

    def _finetuned(self, x: list, y: torch.Tensor):
        """A copy of the encoder after ``finetune_steps`` protonet steps on augmented copies of ``x``."""
        cfg = self.cfg
        enc = copy.deepcopy(self.encoder)
        apply_trainable(enc, cfg.finetune_trainable)
        enc.eval()  # no dropout or batch-norm statistics from a handful of examples
        params = [p for p in enc.parameters() if p.requires_grad]
        opt = torch.optim.SGD(params, lr=cfg.finetune_lr, momentum=0.9)  # as P>M>F; AdamW's state costs more
        augment = make_augmenter(enc.modality, enc)
        rng = np.random.default_rng(cfg.finetune_seed)
        scale = self._module.log_temperature.detach().exp()
        y_dev = y.to(self.device)
        n, n_way = len(x), int(y.max()) + 1
        onehot = nn.functional.one_hot(y, n_way).float().to(self.device)  # (n, way)
        counts = onehot.sum(0)
        # leave one out when every class has 2+ examples: a pseudo-query's own example is not in its prototype
        leave_one_out = bool((counts > 1).all())
        losses = []
        with torch.enable_grad():
            for _ in range(cfg.finetune_steps):
                z = enc.embed(join_items(x, augment(x, rng))).float()
                if leave_one_out:
                    sums = onehot.T @ z[:n]  # (way, dim)
                    protos = (sums.unsqueeze(0) - onehot.unsqueeze(2) * z[:n].unsqueeze(1)) \
                        / (counts - onehot).unsqueeze(2)  # (n, way, dim)
                else:
                    protos = class_means(z[:n], y)
                loss = nn.functional.cross_entropy(scale * scores(z[n:], protos, cfg.metric), y_dev)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(loss.detach())  # read once after the loop: no device sync per step
        self.support_losses = torch.stack(losses).cpu().tolist() if losses else []
        for p in params:
            p.requires_grad_(False)
        return enc
