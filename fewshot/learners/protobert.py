"""ProtoBERT for few-shot NER (Fritzler et al. 2019, "Few-shot classification in named entity
recognition task"; the Few-NERD baseline, Ding et al. 2021).

One prototype per entity type of the episode plus one for ``O``: the mean of the support
words' embeddings with that label (:func:`fewshot.prototypes.class_means`). A query word is
scored by negative squared Euclidean distance to each prototype (``metric``, as Few-NERD;
cosine is the option) and tagged with the nearest. Words are embedded by
:mod:`fewshot.encoders.words` (mean of sub-word tokens); the learner sees flat rows of word
embeddings, so it fits the :class:`~fewshot.learners.base.Learner` interface unchanged:
``adapt_features`` takes (n_support_words, dim) and local labels (0 = O, j + 1 = type j),
``logits_features`` gives (n_query_words, n_way + 1).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..prototypes import check_metric, class_means, scores
from .base import Learner, LearnerConfig
from .registry import register_learner


@dataclass
class ProtoBERTConfig(LearnerConfig):
    name = "protobert"
    metric: str = "euclidean"  # euclidean (Few-NERD) | cosine

    def __post_init__(self) -> None:
        check_metric(self.metric, "--metric")


@register_learner
class ProtoBERT(Learner):
    name = "protobert"
    config_class = ProtoBERTConfig
    tasks = ("ner",)

    def __init__(self, encoder, cfg: ProtoBERTConfig | None = None):
        super().__init__(encoder, cfg)
        self._protos: torch.Tensor | None = None

    def adapt_features(self, z_support: torch.Tensor, y_support: torch.Tensor) -> None:
        """Prototypes of O and of each type; a type with no support word raises (the sampler gives each K)."""
        self._protos = class_means(z_support.float().cpu(), torch.as_tensor(y_support))

    def logits_features(self, z_query: torch.Tensor) -> torch.Tensor:
        """(n_query_words, n_way + 1) scores against the prototypes of the last adapted task."""
        if self._protos is None:
            raise ValueError("protobert: call adapt (or adapt_features) on a support set before scoring")
        return scores(z_query.float().cpu(), self._protos, self.cfg.metric)
