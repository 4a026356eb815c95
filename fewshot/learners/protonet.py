"""Prototypical networks (Snell, Swersky & Zemel 2017, "Prototypical Networks for Few-shot Learning").

Each class is the mean of its support embeddings; a query is scored by its
negative squared Euclidean distance (or scaled cosine similarity) to each
prototype. At evaluation time the prototypes go into a FAISS
:class:`~fewshot.index.SupportIndex` and queries are classified by
nearest-prototype search.

Meta-training (:meth:`ProtoNet.episode_loss`, driven by
:class:`fewshot.training.Trainer`) minimises the cross-entropy of query
logits ``-T * d(z_q, c_k)`` with a learned temperature ``T`` over episodes of
the train classes; ``trainable`` chooses what of the encoder learns (``full``,
``last:K``, ``lora``, ``bitfit``, ``none``; see :mod:`fewshot.adapters`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..adapters import apply_trainable, check_trainable
from ..index import METRICS, SupportIndex
from .base import Learner, LearnerConfig, prototypes


@dataclass
class ProtoNetConfig(LearnerConfig):
    name = "protonet"
    metric: str = "euclidean"  # euclidean | cosine
    trainable: str = "full"  # full | last:K | lora | bitfit | none (what meta-training updates)
    temperature: float = 0.0  # initial T; 0 = 0.1 for euclidean, 10 for cosine
    learn_temperature: bool = True
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"--metric must be one of {METRICS}, got {self.metric!r}")
        check_trainable(self.trainable)
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = automatic), got {self.temperature}")


class ProtoNetModule(nn.Module):
    """The encoder plus the log-temperature: what protonet trains and saves."""

    def __init__(self, encoder: nn.Module, temperature: float, learn: bool):
        super().__init__()
        self.encoder = encoder
        self.log_temperature = nn.Parameter(torch.tensor(math.log(temperature)), requires_grad=learn)


def prototype_logits(z_query: torch.Tensor, protos: torch.Tensor, metric: str,
                     log_temperature: torch.Tensor) -> torch.Tensor:
    """(n_query, n_way): ``-T * squared distance`` (euclidean) or ``T * cosine`` (cosine)."""
    t = log_temperature.exp()
    if metric == "cosine":
        zq = nn.functional.normalize(z_query, dim=1)
        return t * zq @ nn.functional.normalize(protos, dim=1).T
    d = (z_query.pow(2).sum(1, keepdim=True) - 2 * z_query @ protos.T + protos.pow(2).sum(1)).clamp_min(0)
    return -t * d


class ProtoNet(Learner):
    name = "protonet"
    config_class = ProtoNetConfig
    adapts_encoder = False

    def __init__(self, encoder, cfg: ProtoNetConfig | None = None):
        super().__init__(encoder, cfg)
        apply_trainable(encoder, self.cfg.trainable, self.cfg.lora_r, self.cfg.lora_alpha, self.cfg.lora_dropout)
        t = self.cfg.temperature or (10.0 if self.cfg.metric == "cosine" else 0.1)
        self._module = ProtoNetModule(encoder, t, self.cfg.learn_temperature)

    @property
    def module(self) -> nn.Module:
        return self._module

    @property
    def temperature(self) -> float:
        return float(self._module.log_temperature.detach().exp())

    def episode_loss(self, support_x, support_y, query_x, query_y):
        """Cross-entropy of the queries against the support prototypes, and the (n_query, n_way) logits."""
        n_support = len(support_x)
        z = self.encoder.embed(list(support_x) + list(query_x)).float()
        support_y = support_y.to(z.device)
        protos = prototypes(z[:n_support], support_y, int(support_y.max()) + 1)
        logits = prototype_logits(z[n_support:], protos, self.cfg.metric, self._module.log_temperature)
        loss = nn.functional.cross_entropy(logits, query_y.to(z.device))
        return loss, logits

    def adapt_features(self, z_support: torch.Tensor, y_support: torch.Tensor) -> None:
        protos = prototypes(z_support.float(), y_support).cpu().numpy()
        self._n_way = protos.shape[0]
        self._index = SupportIndex(protos.shape[1], self.cfg.metric)
        self._index.add(np.arange(self._n_way), protos)

    def logits_features(self, z_query: torch.Tensor) -> torch.Tensor:
        """(n_query, n_way): FAISS scores of every prototype (negative squared distance or cosine)."""
        scores, ids = self._index.search(z_query.float().cpu().numpy(), k=self._n_way)
        out = np.empty_like(scores)
        np.put_along_axis(out, ids, scores, axis=1)
        return torch.from_numpy(out)
