"""What the tagging learners (protobert, nnshot, structshot; decomposed reuses the options and checks) share: word scores, and their meta-training.

A tagging learner scores word rows: :meth:`TaggingLearner.word_scores` maps support word embeddings
(n_support_words, dim) with local labels (0 = O, j + 1 = the episode's type j) and query word
embeddings (n_query_words, dim) to (n_query_words, n_way + 1) scores, differentiably. The same
function serves the frozen evaluation (:meth:`~TaggingLearner.adapt_features` keeps the support
rows, :meth:`~TaggingLearner.logits_features` scores against them) and meta-training
(:meth:`~TaggingLearner.episode_loss`), so what is trained is what is scored.

Meta-training (Few-NERD's, Ding et al. 2021, thunlp/Few-NERD ``model/proto.py``, ``model/nnshot.py``):
on an episode of the training types, the support and query sentences are embedded in one
differentiable pass (:func:`fewshot.encoders.words.word_embeddings`: a word is the mean of its
sub-word tokens, the one rule) and the loss is the cross-entropy over every query word of its
scores (ProtoBERT: against the type prototypes and O's; NNShot: against the nearest support word
of each label). StructShot trains as NNShot does (its transitions are estimated, not learned).
``trainable`` chooses what of the encoder learns (:mod:`fewshot.adapters`); a frozen evaluation
never reads it.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..adapters import apply_trainable, check_trainable
from ..encoders.words import word_embeddings
from ..prototypes import check_metric
from .base import Learner, LearnerConfig


@dataclass
class TaggingConfig(LearnerConfig):
    """Options every tagging learner has: the word metric and what of the encoder meta-training updates."""

    metric: str = "euclidean"  # euclidean (Few-NERD's) | cosine
    trainable: str = "full"  # full | last:K | lora | bitfit (fewshot train only)
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.1

    def __post_init__(self) -> None:
        check_metric(self.metric, "--metric")
        check_trainable(self.trainable)


class TaggingLearner(Learner):
    """A learner of word rows; subclasses give :meth:`word_scores` (and may check the support labels)."""

    tasks = ("ner",)

    def __init__(self, encoder, cfg: TaggingConfig | None = None):
        super().__init__(encoder, cfg)
        if encoder is not None:  # None: a learner of given word features (tests, a caller's own embeddings)
            apply_trainable(encoder, self.cfg.trainable, self.cfg.lora_r, self.cfg.lora_alpha, self.cfg.lora_dropout)
        self._support: tuple[torch.Tensor, torch.Tensor] | None = None

    def word_scores(self, z_support: torch.Tensor, y_support: torch.Tensor, z_query: torch.Tensor) -> torch.Tensor:
        """(n_query_words, n_way + 1) scores of the query words against the support words (labels (n_support_words,),
        on any device); differentiable."""
        raise NotImplementedError

    def check_support(self, y_support: torch.Tensor) -> None:
        """A ValueError unless every label 0..max has a support word."""
        missing = sorted(set(range(int(y_support.max()) + 1)) - set(y_support.tolist()))
        if missing:
            raise ValueError(f"{self.name}: labels {missing} have no support word; labels must cover "
                             f"0..{int(y_support.max())} (0 = O, j + 1 = the episode's type j)")

    def adapt_features(self, z_support: torch.Tensor, y_support: torch.Tensor,
                       lengths: Sequence[int] | None = None) -> None:
        """Keep the support rows; ``lengths`` (the support sentences' word counts, which the tagging evaluations
        pass) matter only to a learner that reads spans (decomposed)."""
        y = torch.as_tensor(y_support).long()
        self.check_support(y)
        self._support = (z_support.float().cpu(), y)

    def logits_features(self, z_query: torch.Tensor) -> torch.Tensor:
        """(n_query_words, n_way + 1) scores against the support set of the last adapted task."""
        if self._support is None:
            raise ValueError(f"{self.name}: call adapt (or adapt_features) on a support set before scoring")
        return self.word_scores(*self._support, z_query.float().cpu())

    def episode_loss(self, support_x: Sequence[Sequence[str]], support_y: torch.Tensor,
                     query_x: Sequence[Sequence[str]], query_y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(cross-entropy over the query words, their (n_query_words, n_way + 1) scores) of one episode whose
        items are sentences (tuples of words) and whose labels are the words' local labels, sentence after
        sentence: (n_support_words,) and (n_query_words,)."""
        n_support = sum(len(s) for s in support_x)
        if len(support_y) != n_support or len(query_y) != sum(len(s) for s in query_x):
            raise ValueError(f"{self.name}: {len(support_y)} support and {len(query_y)} query labels for "
                             f"{n_support} support and {sum(len(s) for s in query_x)} query words; give one local "
                             "label per word")
        y = torch.as_tensor(support_y).long()
        self.check_support(y)
        z = torch.cat(word_embeddings(self.encoder, [*support_x, *query_x], self.device)).float()
        # the encoder may run under bf16 autocast (GPU); squared distances are differences of large terms, so the
        # scores and the loss are computed in float32
        with torch.autocast(z.device.type, enabled=False):
            logits = self.word_scores(z[:n_support], y, z[n_support:])  # labels on the host: checks cost no sync
            loss = nn.functional.cross_entropy(logits, torch.as_tensor(query_y).long().to(z.device))
        return loss, logits
