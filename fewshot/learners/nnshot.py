"""NNShot for few-shot NER (Yang & Katiyar 2020, "Simple and Effective Few-Shot Named Entity
Recognition with Structured Nearest Neighbor Learning").

A query word takes the label of its nearest support word: the score of a label is the
negative squared Euclidean distance (``metric``; cosine similarity is the option) to the
closest support word with that label (0 = O, j + 1 = the episode's type j). Words are
embedded by :mod:`fewshot.encoders.words` (mean of sub-word tokens). Fits the
:class:`~fewshot.learners.base.Learner` interface on flat rows of word embeddings.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..prototypes import check_metric, scores
from .base import Learner, LearnerConfig
from .registry import register_learner


@dataclass
class NNShotConfig(LearnerConfig):
    name = "nnshot"
    metric: str = "euclidean"  # euclidean (the paper's) | cosine

    def __post_init__(self) -> None:
        check_metric(self.metric, "--metric")


@register_learner
class NNShot(Learner):
    name = "nnshot"
    config_class = NNShotConfig
    tasks = ("ner",)

    def __init__(self, encoder, cfg: NNShotConfig | None = None):
        super().__init__(encoder, cfg)
        self._support: tuple[torch.Tensor, torch.Tensor] | None = None

    def adapt_features(self, z_support: torch.Tensor, y_support: torch.Tensor) -> None:
        y = torch.as_tensor(y_support).long()
        missing = sorted(set(range(int(y.max()) + 1)) - set(y.tolist()))
        if missing:
            raise ValueError(f"nnshot: labels {missing} have no support word; labels must cover 0..{int(y.max())}")
        self._support = (z_support.float().cpu(), y)

    def logits_features(self, z_query: torch.Tensor) -> torch.Tensor:
        """(n_query_words, n_way + 1): for each label, the score of the nearest support word with it."""
        if self._support is None:
            raise ValueError("nnshot: call adapt (or adapt_features) on a support set before scoring")
        z, y = self._support
        s = scores(z_query.float().cpu(), z, self.cfg.metric)  # (n_query, n_support)
        out = torch.full((s.shape[0], int(y.max()) + 1), float("-inf"))
        return out.scatter_reduce(1, y.expand(s.shape[0], -1), s, reduce="amax")
