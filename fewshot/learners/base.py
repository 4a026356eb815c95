"""The Learner interface shared by protonet, maml and finetune.

A learner holds its encoder. Per task it is given a labelled support set
(:meth:`Learner.adapt`) and scores queries (:meth:`Learner.logits`, shape
(n_query, n_way)). Tagging learners (``tasks = ("ner",)``: protobert, nnshot, structshot, decomposed,
finetune-ner) take the same calls on word embeddings (:meth:`Learner.embed_words`): rows are words,
labels 0 = O and j + 1 = the episode's type j; one that tunes its encoder per task takes the sentences
themselves (:meth:`Learner.adapt_sentences`, :meth:`Learner.logits_sentences`).
:meth:`Learner.decode_tags` turns one sentence's scores into its labels and
:meth:`Learner.prepare_tagging` sees the training types' tags once per run; the shared part of the
prototype learners, meta-training included (:meth:`Learner.episode_loss` on sentences and per-word
labels), is :mod:`fewshot.learners.tagging`. Learners whose per-task adaptation leaves the encoder
untouched (``adapts_encoder = False``: protonet, head-only finetune, ANIL) also
take precomputed embeddings through :meth:`adapt_features` and
:meth:`logits_features`, so an evaluation embeds each example once.

Training interface (used by :class:`fewshot.training.Trainer`):

- :attr:`Learner.module`: the ``nn.Module`` holding everything that is trained
  and saved (the encoder plus the learner's own parameters). Default: the encoder.
- :attr:`Learner.train_mode`: ``"episodic"`` (the trainer feeds episodes to
  :meth:`Learner.episode_loss`) or ``"supervised"`` (plain batches of base-class
  examples to :meth:`Learner.batch_loss`).
- Learners hold no loops: :func:`fewshot.training.meta_train` drives them.

Serving interface (used by :class:`fewshot.support.FewShotClassifier`, whose classes
change at run time): :meth:`Learner.serving` says how the learner's trained model scores
against nearest prototypes (its metric and logit scale), or that it adapts a head per task
and is served by its encoder alone. The classifier and the CLI ask the learner; none of
them tests a learner's name.
"""
from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from ..encoders import Encoder
from ..encoders.words import embed_words


@dataclass(frozen=True)
class Serving:
    """How a trained learner is served by nearest prototypes (:meth:`Learner.serving`).

    ``as_trained``: True when nearest prototypes with ``metric`` and ``scale`` are exactly how
    the learner scores a task (protonet); False when it adapts something per task that a
    classifier with run-time classes cannot keep (a finetune head, MAML's inner loop), so only
    its encoder is served, with the encoder's metric and the default scale (None).
    """

    as_trained: bool
    metric: str | None = None
    scale: float | None = None


@dataclass
class LearnerConfig:
    """Options common to every learner; each learner subclasses this."""

    name: ClassVar[str] = ""

    def to_dict(self) -> dict:
        return {"name": self.name, **dataclasses.asdict(self)}


class Learner(ABC):
    name: ClassVar[str] = ""
    config_class: ClassVar[type[LearnerConfig]] = LearnerConfig
    adapts_encoder: bool = False
    train_mode: ClassVar[str] = "episodic"  # "episodic" | "supervised"
    tasks: ClassVar[tuple[str, ...]] = ("classify",)  # what it scores: "classify" (items) | "ner" (words)

    def __init__(self, encoder: Encoder, cfg: LearnerConfig | None = None):
        self.encoder = encoder
        self.cfg = cfg if cfg is not None else self.config_class()

    @property
    def module(self) -> nn.Module:
        """Everything that is trained and saved: the encoder plus the learner's own parameters."""
        return self.encoder

    @property
    def device(self) -> torch.device:
        return next(self.encoder.parameters()).device

    def to(self, device) -> "Learner":
        self.module.to(device)
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters of :attr:`module` that training updates (``requires_grad``)."""
        return [p for p in self.module.parameters() if p.requires_grad]

    @property
    def encoder_name(self) -> str:
        """The name of what embeds the items, for reports."""
        return self.encoder.name

    def fingerprint(self) -> str:
        """What scores the tasks, as a short hash: the encoder's weights fingerprint."""
        return self.encoder.fingerprint()

    def embed(self, x: Sequence, batch_size: int = 128, progress=None) -> np.ndarray:
        """(n, dim) float32 embeddings of raw items: what :meth:`adapt_features` and :meth:`logits_features`
        take (an evaluation's embedding cache, a SupportIndex)."""
        return self.encoder.encode(x, batch_size=batch_size, device=self.device, progress=progress)

    def serving(self) -> Serving:
        """How this learner's model scores with nearest prototypes; default: only its encoder serves."""
        return Serving(as_trained=False)

    def embed_words(self, sentences: Sequence[Sequence[str]], batch_size: int = 32, where=None,
                    progress=None) -> list[np.ndarray]:
        """Each sentence's (n_words, dim) float32 word embeddings (:mod:`fewshot.encoders.words`): what a
        tagging learner's :meth:`adapt_features` and :meth:`logits_features` take, row by row."""
        return embed_words(self.encoder, sentences, batch_size=batch_size, device=self.device, where=where,
                           progress=progress)

    def adapt_sentences(self, sentences: Sequence[Sequence[str]], y_words: torch.Tensor) -> None:
        """Fit to one tagging task's support sentences, ``y_words`` the local labels of all their words in order
        (0 = O, j + 1 = type j). Default: :meth:`adapt_features` on their word embeddings; a learner that tunes
        its encoder per task (``adapts_encoder``) overrides it, and the evaluation then calls this, not that."""
        self.adapt_features(torch.from_numpy(np.concatenate(self.embed_words(sentences))), torch.as_tensor(y_words))

    def logits_sentences(self, sentences: Sequence[Sequence[str]]) -> torch.Tensor:
        """The :meth:`tag_scores` rows of all the words of ``sentences``, in order, for the last adapted task."""
        return self.tag_scores(torch.from_numpy(np.concatenate(self.embed_words(sentences))))

    def prepare_tagging(self, dataset) -> None:
        """Called once before a tagging evaluation, with its :class:`~fewshot.tagged.TaggedDataset`: a tagging
        learner that learns something from the training types' tags (structshot's transitions) does it here,
        reading only ``dataset.splits["train"]``'s types. Default: nothing."""

    def tag_scores(self, z_query: torch.Tensor) -> torch.Tensor:
        """The (n_query_words, k) rows :meth:`decode_tags` reads, for the last adapted task. Default: the
        (n_query_words, n_way + 1) label scores of :meth:`logits_features`; decomposed adds its detector's
        O/B/I rows, which label scores cannot carry."""
        return self.logits_features(z_query)

    def decode_tags(self, scores: torch.Tensor) -> torch.Tensor:
        """One sentence's (n_words,) local labels from its :meth:`tag_scores` rows. Default: each word's best
        label (argmax); structshot and decomposed decode the sentence as a whole."""
        return scores.argmax(1)

    def prepare_training(self, dataset, cfg) -> None:
        """Called once before the optimizer is built (e.g. to size a head over the train classes)."""

    def episode_loss(self, support_x: Sequence, support_y: torch.Tensor, query_x: Sequence,
                     query_y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(scalar loss, (n_query, n_way) logits) on one training episode.

        Items are raw, or views of the train split's resident inputs
        (:class:`fewshot.encoders.base.ResidentItems`): pass them to ``encoder.embed`` /
        ``encoder.inputs`` and join two with :func:`fewshot.encoders.base.join_items`.

        Labels are local (0..n_way-1) LongTensors; the loss is differentiable with
        respect to the trainable parameters of :attr:`module`.
        """
        raise NotImplementedError(f"learner {self.name!r} does not train on episodes")

    def batch_loss(self, x: Sequence, y: torch.Tensor) -> torch.Tensor:
        """Scalar loss on a plain batch of raw items with global train-class labels (supervised mode)."""
        raise NotImplementedError(f"learner {self.name!r} does not train on plain batches")

    def checkpoint_meta(self) -> dict:
        """JSON-able facts needed to rebuild :attr:`module` before loading its weights."""
        return {}

    def restore_meta(self, meta: dict) -> None:
        """Rebuild :attr:`module`'s structure from :meth:`checkpoint_meta` (before weights load)."""

    def adapt(self, support_x: Sequence, support_y: Sequence[int]) -> None:
        """Fit to one task's support set (local labels 0..n_way-1)."""
        self.adapt_features(torch.from_numpy(self.embed(support_x)), torch.as_tensor(support_y))

    def logits(self, query_x: Sequence) -> torch.Tensor:
        """(n_query, n_way) scores for the last adapted task."""
        return self.logits_features(torch.from_numpy(self.embed(query_x)))

    @abstractmethod
    def adapt_features(self, z_support: torch.Tensor, y_support: torch.Tensor) -> None:
        """Like :meth:`adapt`, from (n_support, dim) embeddings."""

    @abstractmethod
    def logits_features(self, z_query: torch.Tensor) -> torch.Tensor:
        """Like :meth:`logits`, from (n_query, dim) embeddings."""

