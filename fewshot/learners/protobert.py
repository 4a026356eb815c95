"""ProtoBERT for few-shot NER (Fritzler et al. 2019, "Few-shot classification in named entity
recognition task"; the Few-NERD baseline, Ding et al. 2021).

One prototype per entity type of the episode plus one for ``O``: the mean of the support
words' embeddings with that label (:func:`fewshot.prototypes.class_means`). A query word is
scored by negative squared Euclidean distance to each prototype (``metric``, as Few-NERD;
cosine is the option) and tagged with the nearest. Words are embedded by
:mod:`fewshot.encoders.words` (mean of sub-word tokens); the learner sees flat rows of word
embeddings, so it fits the :class:`~fewshot.learners.base.Learner` interface unchanged:
``adapt_features`` takes (n_support_words, dim) and local labels (0 = O, j + 1 = type j),
``logits_features`` gives (n_query_words, n_way + 1). ``fewshot train`` meta-trains it as Few-NERD
does: cross-entropy of the query words' prototype scores (:mod:`fewshot.learners.tagging`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..prototypes import class_means, scores
from .registry import register_learner
from .tagging import TaggingConfig, TaggingLearner


@dataclass
class ProtoBERTConfig(TaggingConfig):
    name = "protobert"


@register_learner
class ProtoBERT(TaggingLearner):
    name = "protobert"
    config_class = ProtoBERTConfig

    def word_scores(self, z_support: torch.Tensor, y_support: torch.Tensor, z_query: torch.Tensor) -> torch.Tensor:
        """(n_query_words, n_way + 1) scores against the prototypes of O and of each type."""
        return scores(z_query, class_means(z_support, y_support), self.cfg.metric)
