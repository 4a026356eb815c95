"""Joint intent detection and slot filling with one encoder (Chen, Zhuo & Wang 2019, "BERT for Joint Intent
Classification and Slot Filling"; multi-task learning as in Liu & Lane 2016).

One pretrained text encoder reads each sentence once
(:func:`fewshot.encoders.words.sentence_and_word_embeddings`). A **sentence head** (linear)
scores the intents from the mean-pooled sentence embedding; a **token head** (linear) scores
the BIO slot tags of each word from its word embedding (the mean of its sub-word tokens, the
one rule of :mod:`fewshot.encoders.words`). Dropout (``dropout``) precedes both heads. The
loss is

    ``w_intent * CE(intent logits, intents) + w_slot * CE(slot logits, tags)``

the slot term a mean over every word of the batch. ``w_slot = 0`` trains an intent-only
model and ``w_intent = 0`` a slot-only one (the single-task baselines at the same step
budget). A word's tag is the argmax of its scores (no CRF, no BIO repair: an ``I-`` opening
a chunk is read as seqeval reads it).

``fewshot train --dataset snips-joint --learner joint`` trains it on the dataset's train part
(:class:`fewshot.utterances.JointDataset`, ``train_mode = "supervised"``: plain batches whose
targets are packed rows, :meth:`~fewshot.utterances.JointDataset.targets`); the trainer
validates on the val part with :func:`fewshot.joint_evaluation.evaluate_joint`, choosing the
checkpoint by :attr:`JointIntentSlot.selection_metric`. The checkpoint records the intent and
tag names, so a loaded model predicts names. It has no per-task adaptation: it predicts the
intents and slot types it was trained on.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..adapters import apply_trainable, check_trainable
from ..encoders.words import sentence_and_word_embeddings
from ..utterances import IGNORE
from .base import Learner, LearnerConfig
from .registry import register_learner

NO_SUPPORT = ("learner 'joint' does not adapt to a support set: it predicts the intents and slot types it was "
              "trained on (fewshot run --dataset snips-joint --checkpoint DIR)")


@dataclass
class JointConfig(LearnerConfig):
    name = "joint"
    w_intent: float = 1.0  # weight of the intent cross-entropy
    w_slot: float = 1.0  # weight of the slot-tag cross-entropy
    dropout: float = 0.1  # before both heads, in training
    trainable: str = "full"  # what of the encoder trains: full, last:K, lora, bitfit, none
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.1

    def __post_init__(self) -> None:
        for key in ("w_intent", "w_slot"):
            value = float(getattr(self, key))
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"joint {key} must be a finite number >= 0, got {value}; e.g. -L {key}=1")
        if self.w_intent == 0 and self.w_slot == 0:
            raise ValueError("joint w_intent and w_slot are both 0: nothing would train; give one of them a "
                             "positive weight (-L w_intent=1 or -L w_slot=1)")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"joint dropout must be in [0, 1), got {self.dropout}")
        check_trainable(self.trainable)


class JointModule(nn.Module):
    """The encoder plus, once the label names are known, the intent head and the slot-tag head."""

    def __init__(self, encoder: nn.Module, dropout: float):
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.intent_head: nn.Linear | None = None
        self.slot_head: nn.Linear | None = None


@register_learner
class JointIntentSlot(Learner):
    name = "joint"
    config_class = JointConfig
    train_mode = "supervised"
    tasks = ("joint",)

    def __init__(self, encoder, cfg: JointConfig | None = None):
        super().__init__(encoder, cfg)
        apply_trainable(encoder, self.cfg.trainable, self.cfg.lora_r, self.cfg.lora_alpha, self.cfg.lora_dropout)
        self._module = JointModule(encoder, self.cfg.dropout)
        self.intents_: list[str] = []
        self.tags_: list[str] = []

    @property
    def module(self) -> nn.Module:
        return self._module

    @property
    def selection_metric(self) -> str:
        """What validation maximises: exact match when both heads train, else the one trained head's metric."""
        if self.cfg.w_slot == 0:
            return "intent_accuracy"
        if self.cfg.w_intent == 0:
            return "slot_f1"
        return "exact_match"

    # ------------------------------------------------------------ structure
    def prepare_training(self, dataset, cfg) -> None:
        if getattr(dataset, "task", None) != "joint":
            raise ValueError(f"learner 'joint' trains on utterances with intents and slot tags (a joint dataset, "
                             f"e.g. --dataset snips-joint), got dataset {dataset.name!r} of task "
                             f"{getattr(dataset, 'task', '?')!r}; choose another learner for it")
        self.restore_meta({"intents": list(dataset.intent_names), "tags": list(dataset.tag_names)})

    def checkpoint_meta(self) -> dict:
        return {"intents": list(self.intents_), "tags": list(self.tags_)}

    def restore_meta(self, meta: dict) -> None:
        intents, tags = list(meta.get("intents") or []), list(meta.get("tags") or [])
        if not intents or not tags or (intents, tags) == (self.intents_, self.tags_):
            return
        device = self.device
        self.intents_, self.tags_ = intents, tags
        self._module.intent_head = nn.Linear(self.encoder.dim, len(intents)).to(device)
        self._module.slot_head = nn.Linear(self.encoder.dim, len(tags)).to(device)

    def _require_heads(self) -> None:
        if self._module.intent_head is None:
            raise ValueError("learner 'joint' has no heads yet: train it (fewshot train --learner joint --dataset "
                             "snips-joint) or load a trained checkpoint (--checkpoint DIR)")

    # ------------------------------------------------------------ scoring
    def forward(self, sentences: Sequence[Sequence[str]], where=None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """((n, n_intents) intent logits, each sentence's (n_words, n_tags) slot-tag logits)."""
        self._require_heads()
        m = self._module
        pooled, words = sentence_and_word_embeddings(self.encoder, sentences, self.device, where)
        intent = m.intent_head(m.dropout(pooled))
        slots = m.slot_head(m.dropout(torch.cat(words))) if words else pooled.new_zeros((0, len(self.tags_)))
        return intent, list(torch.split(slots, [len(w) for w in words]))

    def losses(self, x: Sequence[Sequence[str]], y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(intent cross-entropy, slot cross-entropy over every word) of a batch with packed targets ``y``
        (:meth:`fewshot.utterances.JointDataset.targets`)."""
        intent_logits, slot_logits = self.forward(list(x))
        y = y.to(intent_logits.device)
        if y.ndim != 2 or len(y) != len(slot_logits):
            raise ValueError(f"joint targets must be (n_sentences, 1 + n_words) rows, got shape {tuple(y.shape)} "
                             f"for {len(slot_logits)} sentences")
        tags = torch.cat([y[b, 1:1 + len(s)] for b, s in enumerate(slot_logits)])
        ce_intent = nn.functional.cross_entropy(intent_logits.float(), y[:, 0])
        ce_slot = nn.functional.cross_entropy(torch.cat(slot_logits).float(), tags, ignore_index=IGNORE)
        return ce_intent, ce_slot

    def batch_loss(self, x, y: torch.Tensor) -> torch.Tensor:
        ce_intent, ce_slot = self.losses(x, y)
        return self.cfg.w_intent * ce_intent + self.cfg.w_slot * ce_slot

    def predict_joint(self, sentences: Sequence[Sequence[str]], batch_size: int = 64, where=None,
                      progress=None) -> tuple[list[str], list[tuple[str, ...]]]:
        """Each sentence's intent name and BIO tags (argmax of each head), without gradients, in batches of
        similar length; ``where(i)`` names sentence ``i`` in errors."""
        self._require_heads()
        where = where or (lambda i: f"sentence {i}")
        order = np.argsort([sum(len(w) for w in s) for s in sentences], kind="stable")
        intents: list = [None] * len(sentences)
        tags: list = [None] * len(sentences)
        was_training = self._module.training
        self._module.eval()
        try:
            with torch.no_grad():
                for start in range(0, len(order), batch_size):
                    idx = order[start:start + batch_size]
                    intent, slots = self.forward([sentences[i] for i in idx], where=lambda b: where(int(idx[b])))
                    for i, a, s in zip(idx, intent.argmax(1).tolist(), slots):
                        intents[int(i)] = self.intents_[a]
                        tags[int(i)] = tuple(self.tags_[t] for t in s.argmax(1).tolist())
                    if progress is not None:
                        progress.update(len(idx))
        finally:
            self._module.train(was_training)
        return intents, tags

    def adapt_features(self, z_support: torch.Tensor, y_support: torch.Tensor) -> None:
        raise ValueError(NO_SUPPORT)

    def logits_features(self, z_query: torch.Tensor) -> torch.Tensor:
        raise ValueError(NO_SUPPORT)
