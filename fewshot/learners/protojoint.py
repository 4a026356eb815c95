"""Joint prototypes for few-shot intent classification + slot filling with a frozen encoder: the
prototypical-network learner of Krone et al. 2020 ("Learning to Classify Intents and Slot Labels Given a
Handful of Examples"), without their meta-training.

From one joint episode's support set (:mod:`fewshot.joint_episodes`) it builds two sets of prototypes
with :func:`fewshot.prototypes.class_means`:

- **intent prototypes**: the mean of each intent's pooled support utterance embeddings
  (:meth:`~fewshot.learners.base.Learner.embed` of the words joined by spaces), scored with
  ``intent_metric`` (default the encoder's: cosine for sentence encoders), as protonet does;
- **slot prototypes**: ``O`` plus one per slot type of the support set, the mean of the support words'
  embeddings (:mod:`fewshot.encoders.words`) with that label, BIO collapsed to types (``B-x`` and ``I-x``
  are both ``x``), scored with ``slot_metric`` (default negative squared Euclidean, as protobert).

A query's intent is its nearest intent prototype; each query word takes its nearest slot prototype, and
the word labels are read back as BIO tags, each maximal run of one type a span
(:func:`fewshot.tagged.io_to_bio`, the runs the tagging evaluation counts). The encoder is never updated,
so ``fewshot run`` embeds each sentence once (the evaluation's embedding caches).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from ..prototypes import check_metric, class_means, scores
from ..tagged import OUTSIDE, io_to_bio
from .base import Learner, LearnerConfig
from .registry import register_learner


@dataclass
class ProtoJointConfig(LearnerConfig):
    name = "protojoint"
    intent_metric: Optional[str] = None  # cosine | euclidean; None: the encoder's (Encoder.metric)
    slot_metric: str = "euclidean"  # protobert's default

    def __post_init__(self) -> None:
        if self.intent_metric is not None:
            check_metric(self.intent_metric, "intent_metric")
        check_metric(self.slot_metric, "slot_metric")


@register_learner
class ProtoJoint(Learner):
    name = "protojoint"
    config_class = ProtoJointConfig
    tasks = ("joint-episodes",)

    def __init__(self, encoder, cfg: ProtoJointConfig | None = None):
        super().__init__(encoder, cfg)
        if self.cfg.intent_metric is None:  # resolved once, so reports name the metric used
            self.cfg = dataclasses.replace(self.cfg, intent_metric=encoder.metric if encoder is not None else "cosine")
        self._intents: torch.Tensor | None = None
        self._slots: torch.Tensor | None = None
        self._types: tuple[str, ...] = ()

    def embed(self, x: Sequence, batch_size: int = 128, progress=None) -> np.ndarray:
        """(n, dim) pooled embeddings of items; an utterance given as a tuple of words is joined by spaces."""
        return super().embed([" ".join(s) if isinstance(s, tuple) else s for s in x], batch_size, progress)

    # -- intents: the Learner interface ----------------------------------------------------------
    def adapt_features(self, z_support: torch.Tensor, y_support: torch.Tensor) -> None:
        """Intent prototypes from (n_support, dim) utterance embeddings and local intents (n_support,)."""
        self._intents = class_means(z_support.float().cpu(), torch.as_tensor(y_support))

    def logits_features(self, z_query: torch.Tensor) -> torch.Tensor:
        """(n_query, n_way) intent scores against the last support set's intent prototypes."""
        if self._intents is None:
            raise ValueError(f"{self.name}: call adapt_joint (or adapt_features) on a support set before scoring")
        return scores(z_query.float().cpu(), self._intents, self.cfg.intent_metric)

    # -- slots -------------------------------------------------------------------------------------
    def adapt_words(self, z_words: torch.Tensor, tags: Sequence[Sequence[str]]) -> None:
        """Slot prototypes (O first, then each slot type of ``tags`` sorted) from the (n_words, dim) support word
        embeddings of all support sentences in order and their BIO ``tags``."""
        self._types = tuple(sorted({t[2:] for seq in tags for t in seq if t != OUTSIDE}))
        local = {t: j + 1 for j, t in enumerate(self._types)}
        y = torch.as_tensor([0 if t == OUTSIDE else local[t[2:]] for seq in tags for t in seq])
        if len(y) != len(z_words):
            raise ValueError(f"{self.name}: {len(z_words)} support word embeddings but {len(y)} tags; give one "
                             "tag per word")
        self._slots = class_means(z_words.float().cpu(), y, len(self._types) + 1)

    def word_tags(self, z_words: torch.Tensor, lengths: Sequence[int]) -> list[tuple[str, ...]]:
        """BIO tags of sentences of ``lengths`` words from their (sum(lengths), dim) word embeddings."""
        if self._slots is None:
            raise ValueError(f"{self.name}: call adapt_joint (or adapt_words) on a support set before tagging")
        labels = (OUTSIDE, *self._types)
        best = scores(z_words.float().cpu(), self._slots, self.cfg.slot_metric).argmax(1).tolist()
        bounds = np.cumsum([0, *lengths])
        return [io_to_bio([labels[j] for j in best[a:b]]) for a, b in zip(bounds[:-1], bounds[1:])]

    # -- both ------------------------------------------------------------------------------------------
    def adapt_joint(self, z_support: torch.Tensor, y_support: torch.Tensor, z_words: torch.Tensor,
                    tags: Sequence[Sequence[str]]) -> None:
        """Fit to one joint episode: utterance embeddings with local intents, word embeddings with BIO tags."""
        self.adapt_features(z_support, y_support)
        self.adapt_words(z_words, tags)

    def predict_joint_features(self, z_query: torch.Tensor, z_words: torch.Tensor,
                               lengths: Sequence[int]) -> tuple[list[int], list[tuple[str, ...]]]:
        """Local intents (n_query,) and BIO tags of each query from its utterance and word embeddings."""
        return self.logits_features(z_query).argmax(1).tolist(), self.word_tags(z_words, lengths)
