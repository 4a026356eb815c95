"""NNShot for few-shot NER (Yang & Katiyar 2020, "Simple and Effective Few-Shot Named Entity
Recognition with Structured Nearest Neighbor Learning").

A query word takes the label of its nearest support word: the score of a label is the
negative squared Euclidean distance (``metric``; cosine similarity is the option) to the
closest support word with that label (0 = O, j + 1 = the episode's type j). Words are
embedded by :mod:`fewshot.encoders.words` (mean of sub-word tokens). Fits the
:class:`~fewshot.learners.base.Learner` interface on flat rows of word embeddings; ``fewshot
train`` meta-trains it on the cross-entropy of those scores (:mod:`fewshot.learners.tagging`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..prototypes import scores
from .registry import register_learner
from .tagging import TaggingConfig, TaggingLearner


@dataclass
class NNShotConfig(TaggingConfig):
    name = "nnshot"


@register_learner
class NNShot(TaggingLearner):
    name = "nnshot"
    config_class = NNShotConfig

    def word_scores(self, z_support: torch.Tensor, y_support: torch.Tensor, z_query: torch.Tensor) -> torch.Tensor:
        """(n_query_words, n_way + 1): for each label, the score of the nearest support word with it."""
        s = scores(z_query, z_support, self.cfg.metric)  # (n_query, n_support)
        y = torch.as_tensor(y_support).long().to(s.device)
        out = s.new_full((s.shape[0], int(y_support.max()) + 1), float("-inf"))
        return out.scatter_reduce(1, y.expand(s.shape[0], -1), s, reduce="amax")
