"""An ensemble of trained learners that score each task together.

Every member adapts to the task's support set on its own (its own encoder, metric,
temperature and test-time fine-tuning), and the task's scores are the mean of the
members' log-probabilities over the task's classes: up to a constant, the log of the
normalised geometric mean of their predictive distributions (a product of experts).
Deep ensembles (Lakshminarayanan et al. 2017) average the probabilities instead; the
geometric mean lets a member that is sure a class is wrong weigh more, and both pick
the same class whenever the members agree.

It is built from several checkpoints (``fewshot run --checkpoint A --ensemble B
--ensemble C``; :func:`fewshot.experiment.build_learner`), scores and is never
trained: it has no module of its own to save. Members need not share an
architecture, only the dataset's modality. Its embedding of an item is the
members' embeddings side by side, so an evaluation's embedding cache embeds each
item once per member; when a member fine-tunes at test time (``adapts_encoder``)
every member embeds each task's items itself.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from .base import Learner


class Ensemble(Learner):
    """Several trained learners scoring one task: the mean of their log-softmax scores."""

    name = "ensemble"

    def __init__(self, members: Sequence[Learner]):
        members = list(members)
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 learners, got {len(members)}; score a single "
                             "checkpoint without --ensemble")
        modalities = {m.encoder.modality for m in members}
        if len(modalities) > 1:
            raise ValueError(f"ensemble members read different inputs ({sorted(modalities)}); combine "
                             "checkpoints trained on the same kind of data")
        super().__init__(members[0].encoder, members[0].cfg)  # the first member names the run's learner options
        self.members = members
        self._modules = nn.ModuleList(m.module for m in members)

    @property
    def adapts_encoder(self) -> bool:  # type: ignore[override]
        return any(m.adapts_encoder for m in self.members)

    @property
    def module(self) -> nn.Module:
        return self._modules

    @property
    def encoder_name(self) -> str:
        return "+".join(m.encoder_name for m in self.members)

    def fingerprint(self) -> str:
        """SHA-256 (first 16 hex) of the members' fingerprints, in order."""
        return hashlib.sha256(" ".join(m.fingerprint() for m in self.members).encode()).hexdigest()[:16]

    def embed(self, x: Sequence, batch_size: int = 128, progress=None) -> np.ndarray:
        """(n, sum of the members' dims): each member's embeddings of ``x``, side by side."""
        z = np.concatenate([m.embed(x, batch_size=batch_size) for m in self.members], axis=1)
        if progress is not None:
            progress.update(len(x))
        return z

    def _split(self, z: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return torch.split(z, [m.encoder.dim for m in self.members], dim=1)

    @staticmethod
    def _combine(logits) -> torch.Tensor:
        return torch.stack([torch.log_softmax(t.float().cpu(), dim=1) for t in logits]).mean(0)

    def adapt(self, support_x: Sequence, support_y: Sequence[int]) -> None:
        for m in self.members:
            m.adapt(support_x, support_y)

    def logits(self, query_x: Sequence) -> torch.Tensor:
        """(n_query, n_way): the members' mean log-probability of each class."""
        return self._combine(m.logits(query_x) for m in self.members)

    def adapt_features(self, z_support: torch.Tensor, y_support: torch.Tensor) -> None:
        for m, z in zip(self.members, self._split(z_support)):
            m.adapt_features(z, y_support)

    def logits_features(self, z_query: torch.Tensor) -> torch.Tensor:
        return self._combine(m.logits_features(z) for m, z in zip(self.members, self._split(z_query)))
