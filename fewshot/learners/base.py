"""The Learner interface shared by protonet, maml and finetune.

A learner holds its encoder. Per task it is given a labelled support set
(:meth:`Learner.adapt`) and scores queries (:meth:`Learner.logits`, shape
(n_query, n_way)). Learners whose per-task adaptation leaves the encoder
untouched (``adapts_encoder = False``: protonet, head-only finetune, ANIL) also
take precomputed embeddings through :meth:`adapt_features` and
:meth:`logits_features`, so an evaluation embeds each example once.
"""
from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from ..encoders import Encoder


@dataclass
class LearnerConfig:
    """Options common to every learner; each learner subclasses this."""

    name: ClassVar[str] = ""

    def to_dict(self) -> dict:
        return {"name": self.name, **dataclasses.asdict(self)}


class Learner(ABC):
    name: ClassVar[str] = ""
    config_class: ClassVar[type[LearnerConfig]] = LearnerConfig
    adapts_encoder: bool = False

    def __init__(self, encoder: Encoder, cfg: LearnerConfig | None = None):
        self.encoder = encoder
        self.cfg = cfg if cfg is not None else self.config_class()

    @property
    def device(self) -> torch.device:
        return next(self.encoder.parameters()).device

    def to(self, device) -> "Learner":
        self.encoder.to(device)
        return self

    def embed(self, x: Sequence) -> np.ndarray:
        """(n, dim) float32 embeddings of raw items, for a SupportIndex."""
        return self.encoder.encode(x, device=self.device)

    def meta_train(self, *args, **kwargs) -> dict:
        raise NotImplementedError(f"learner {self.name!r} has no training loop; use it frozen")

    def adapt(self, support_x: Sequence, support_y: Sequence[int]) -> None:
        """Fit to one task's support set (local labels 0..n_way-1)."""
        self.adapt_features(torch.from_numpy(self.embed(support_x)), torch.as_tensor(support_y))

    def logits(self, query_x: Sequence) -> torch.Tensor:
        """(n_query, n_way) scores for the last adapted task."""
        return self.logits_features(torch.from_numpy(self.embed(query_x)))

    @abstractmethod
    def adapt_features(self, z_support: torch.Tensor, y_support: torch.Tensor) -> None:
        """Like :meth:`adapt`, from (n_support, dim) embeddings."""

    @abstractmethod
    def logits_features(self, z_query: torch.Tensor) -> torch.Tensor:
        """Like :meth:`logits`, from (n_query, dim) embeddings."""


def prototypes(z: torch.Tensor, y: torch.Tensor, n_way: int | None = None) -> torch.Tensor:
    """Class means (n_way, dim) of embeddings ``z`` with local labels ``y`` in 0..n_way-1.

    Raises if a label in 0..n_way-1 has no example (easyfsl gives NaN there).
    """
    y = y.long().to(z.device)
    n_way = int(y.max()) + 1 if n_way is None else n_way
    counts = torch.bincount(y, minlength=n_way)
    if (counts == 0).any():
        missing = torch.nonzero(counts == 0).flatten().tolist()
        raise ValueError(f"local labels {missing} have no support example; labels must cover 0..{n_way - 1}")
    sums = torch.zeros(n_way, z.shape[1], dtype=z.dtype, device=z.device).index_add_(0, y, z)
    return sums / counts.unsqueeze(1).to(z.dtype)


def as_numpy_labels(y) -> np.ndarray:
    return np.asarray(y.cpu() if isinstance(y, torch.Tensor) else y, dtype=np.int64)
