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
architecture, only the dataset's modality. Each member embeds the raw items of
every task (``adapts_encoder``), so an ensemble of k members costs about k times
one member's evaluation and the frozen-encoder embedding cache does not apply.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
from torch import nn

from .base import Learner


class Ensemble(Learner):
    """Several trained learners scoring one task: the mean of their log-softmax scores."""

    name = "ensemble"
    adapts_encoder = True  # members embed the raw items themselves: no shared embedding space

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
    def module(self) -> nn.Module:
        return self._modules

    def fingerprint(self) -> str:
        """SHA-256 (first 16 hex) of the members' fingerprints, in order."""
        return hashlib.sha256(" ".join(m.fingerprint() for m in self.members).encode()).hexdigest()[:16]

    def adapt(self, support_x: Sequence, support_y: Sequence[int]) -> None:
        for m in self.members:
            m.adapt(support_x, support_y)

    def logits(self, query_x: Sequence) -> torch.Tensor:
        """(n_query, n_way): the members' mean log-probability of each class."""
        return torch.stack([torch.log_softmax(m.logits(query_x).float().cpu(), dim=1)
                            for m in self.members]).mean(0)

    def adapt_features(self, z_support: torch.Tensor, y_support: torch.Tensor) -> None:
        raise TypeError("an ensemble has no single embedding space: its members embed raw items; call adapt()")

    def logits_features(self, z_query: torch.Tensor) -> torch.Tensor:
        raise TypeError("an ensemble has no single embedding space: its members embed raw items; call logits()")
