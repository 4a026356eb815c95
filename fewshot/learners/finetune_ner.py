"""Fine-tuning baseline for few-shot NER (the Few-NERD baseline family, Ding et al. 2021; Chen et al. 2019's
"Baseline" on words): a token-classification head fitted to each episode's support set.

Per episode a fresh linear head (``head="cosine"``: Baseline++'s scaled cosine) over ``O`` and the episode's
types reads each word's embedding (:mod:`fewshot.encoders.words`: the mean of its sub-word tokens) and is
trained on every support word with AdamW and weight decay for at most ``steps`` steps, stopping early once
the support loss stops improving (:func:`fewshot.learners.finetune.fit_head`, the classification
fine-tuning's own loop); then every query word is tagged with its best label. ``adapt`` chooses what else
adapts per episode: nothing (``head``, the default: the encoder is frozen, so an evaluation embeds each
sentence once), or the encoder's last blocks, a LoRA adapter (through peft), its biases or all of it, always
on a copy (:func:`fewshot.learners.finetune.adapted_copy`), so no episode leaks into the next or into the
encoder. Labels are local, as for every tagging learner: 0 = O, j + 1 = the episode's type j.

No meta-training: ``fewshot train`` does not train tagging learners yet; this is the baseline that adapts
from the support set alone.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..encoders.words import embed_words, word_embeddings
from .base import Learner
from .finetune import EpisodeHeadConfig, adapted_copy, fit_feature_head, fit_head, new_head
from .registry import register_learner


@dataclass
class FineTuneNERConfig(EpisodeHeadConfig):
    name = "finetune-ner"


@register_learner
class FineTuneTagger(Learner):
    name = "finetune-ner"
    config_class = FineTuneNERConfig
    tasks = ("ner",)

    def __init__(self, encoder, cfg: FineTuneNERConfig | None = None):
        super().__init__(encoder, cfg)
        self._head: torch.nn.Module | None = None
        self._adapted = None  # the encoder copy the last task tuned (adapt != "head")
        self.support_losses: list[float] = []  # of the last adaptation, step by step

    @property
    def adapts_encoder(self) -> bool:  # type: ignore[override]
        return self.cfg.adapt != "head"

    def adapt_features(self, z_support: torch.Tensor, y_support: torch.Tensor,
                       lengths: Sequence[int] | None = None) -> None:
        """A head fitted on fixed (n_support_words, dim) word embeddings (the frozen-encoder path); every word is a
        row of its own, so the sentences' ``lengths`` are not needed."""
        self._head, self.support_losses = fit_feature_head(self.cfg, z_support, y_support)
        self._adapted = None

    def logits_features(self, z_query: torch.Tensor) -> torch.Tensor:
        """(n_query_words, n_way + 1) head scores of the last adapted task."""
        if self._head is None:
            raise ValueError(f"{self.name}: call adapt_features (or adapt_sentences) on a support set before scoring")
        with torch.no_grad():
            return self._head(z_query.float().to(next(self._head.parameters()).device)).cpu()

    def adapt_sentences(self, sentences: Sequence[Sequence[str]], y_words: torch.Tensor) -> None:
        """Fit the head, and with ``adapt`` other than ``head`` a copy of the encoder, on the support sentences'
        words (``y_words``: their local labels, in order)."""
        if not self.adapts_encoder:
            return super().adapt_sentences(sentences, y_words)
        y = torch.as_tensor(y_words, dtype=torch.long)
        n_words = sum(len(s) for s in sentences)
        if len(y) != n_words:
            raise ValueError(f"{self.name}: the support sentences have {n_words} words but {len(y)} labels were "
                             "given; give one label per word")
        enc, device = adapted_copy(self.encoder, self.cfg), self.device
        self._head = new_head(self.cfg, enc.dim, int(y.max()) + 1, device)
        self.support_losses = fit_head(self.cfg, self._head,
                                       lambda: torch.cat(word_embeddings(enc, sentences, device)),
                                       y.to(device), enc.parameters())
        self._head.eval()
        self._adapted = enc

    def logits_sentences(self, sentences: Sequence[Sequence[str]]) -> torch.Tensor:
        """The :meth:`tag_scores` rows of all the words of ``sentences``, by the last task's encoder and head."""
        if not self.adapts_encoder or self._adapted is None:
            return super().logits_sentences(sentences)
        z = embed_words(self._adapted, sentences, device=self.device)
        return self.tag_scores(torch.from_numpy(np.concatenate(z)))
