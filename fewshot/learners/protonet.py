"""Prototypical networks (Snell, Swersky & Zemel 2017, "Prototypical Networks for Few-shot Learning").

Each class is the mean of its support embeddings; a query is scored by its
negative squared Euclidean distance (or scaled cosine similarity) to each
prototype. At evaluation time the prototypes go into a FAISS
:class:`~fewshot.index.SupportIndex` and queries are classified by
nearest-prototype search.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..index import METRICS, SupportIndex
from .base import Learner, LearnerConfig, prototypes


@dataclass
class ProtoNetConfig(LearnerConfig):
    name = "protonet"
    metric: str = "euclidean"  # euclidean | cosine

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"--metric must be one of {METRICS}, got {self.metric!r}")


class ProtoNet(Learner):
    name = "protonet"
    config_class = ProtoNetConfig
    adapts_encoder = False

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
