"""Decomposed few-shot NER: find the entities, then type them (Ma et al. 2022, "Decomposed Meta-Learning for
Few-Shot Named Entity Recognition", Findings of ACL; the DecomposedMetaNER row of Few-NERD).

What an entity looks like (its boundaries) transfers across entity types better than what each type looks
like, so the task is split in two stages over one encoder's word embeddings (:mod:`fewshot.encoders.words`:
a word is the mean of its sub-word tokens):

1. **Detection.** A linear head scores each word ``O`` / ``B`` / ``I``, whatever its type (an entity begins,
   continues, or none). A sentence is decoded by Viterbi under BIO's hard rule (``I`` never opens a
   sentence nor follows ``O``), so every detected span is well formed.
2. **Typing.** Each support span's embedding is the mean of its words'; a type's prototype is the mean of
   its support spans' embeddings (each span counts once, however long). A detected span takes the type
   whose prototype its words score best on average (``metric``): for squared Euclidean distance the mean
   of the words' scores is the score of the span's mean embedding less the spread of its words around that
   mean, the same for every type, so this is exactly the nearest prototype of the span's mean. Every
   detected span gets a type: there is no ``O`` prototype, detection decides what is an entity.

Meta-training (``fewshot train --learner decomposed``), per episode of the training types: the detector's
cross-entropy over its type-agnostic BIO tags plus ``typing_weight`` times the cross-entropy of each gold
query span's type against the support-span prototypes, both through the encoder. With ``detector_steps`` = 0
the detection loss covers every support and query word and the head is used as trained. With
``detector_steps`` > 0 the head adapts to each task as in Ma et al.'s MAML (here the detector alone; the
typing stage needs no inner loop): that many gradient steps of size ``detector_lr`` on the support words
(:func:`fit_head`), the detection loss then on the query words, differentiated through the steps; evaluation
takes the same steps on the support words' fixed embeddings, on a copy of the head, so it still embeds each
sentence once. A frozen encoder's head starts at zero (every word ``O``) and is refused at 0 steps. The
default, 5 steps of 0.01, is the meta-training setting that scored best on Few-NERD's val types.

Scores: :meth:`~DecomposedNER.tag_scores` (what :meth:`~DecomposedNER.decode_tags` reads) are
``(n_words, 3 + n_way)`` rows, the detector's log-probabilities of ``O``, ``B``, ``I`` and then the word's
score against each type's prototype; :meth:`~DecomposedNER.logits_features` are every learner's
``(n_words, n_way + 1)`` label log-probabilities (:func:`label_scores`). Local labels are those of every
tagging learner: 0 = O, j + 1 = the episode's type j.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..encoders.words import word_embeddings
from ..prototypes import class_means, scores
from ..transitions import viterbi
from .registry import register_learner
from .tagging import TaggingConfig, TaggingLearner

O_TAG, B_TAG, I_TAG = 0, 1, 2
FORBIDDEN = -1e9  # a log-score no path takes: I after O, or I opening a sentence
_TRANSITION = np.zeros((3, 3))
_TRANSITION[O_TAG, I_TAG] = FORBIDDEN
_START = np.asarray([0.0, 0.0, FORBIDDEN])
_END = np.zeros(3)


@dataclass
class DecomposedConfig(TaggingConfig):
    name = "decomposed"
    typing_weight: float = 1.0  # weight of the span-typing cross-entropy beside the detection one
    dropout: float = 0.1  # before the detection head, in training
    # per task: gradient steps of the detection head on the support words (0: the head as trained), and their size;
    # 5 x 0.01 in meta-training beat 0 on Few-NERD's val types (BENCHMARKS.md "ner-fewnerd-trained-decomposed")
    detector_steps: int = 5
    detector_lr: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("typing_weight", "detector_lr"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"decomposed: {key} must be a finite number >= 0, got {value!r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"decomposed: dropout must be in [0, 1), got {self.dropout!r}")
        if isinstance(self.detector_steps, bool) or not isinstance(self.detector_steps, int) or self.detector_steps < 0:
            raise ValueError(f"decomposed: detector_steps must be an integer >= 0, got {self.detector_steps!r}; "
                             "e.g. -L detector_steps=20")


class DecomposedModule(nn.Module):
    """The encoder and the type-agnostic O/B/I detection head over its word embeddings."""

    def __init__(self, encoder: nn.Module, dim: int, dropout: float):
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.detector = zero_head(dim)


def zero_head(dim: int) -> nn.Linear:
    """A detection head scoring O/B/I alike for every word (zero weights): what training or ``detector_steps``
    starts from."""
    head = nn.Linear(dim, 3)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    return head


def fit_head(weight: torch.Tensor, bias: torch.Tensor, z: torch.Tensor, target: torch.Tensor, steps: int, lr: float,
             create_graph: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """A linear O/B/I head ``(weight, bias)`` after ``steps`` plain gradient steps of size ``lr`` on the
    cross-entropy of words ``z`` against their tags ``target``: what each task's support set makes of the trained
    head, in meta-training (``create_graph``: the steps are differentiated through, MAML's second order; cheap for
    a linear head) and in evaluation alike."""
    with torch.enable_grad():
        if not weight.requires_grad:  # evaluation: a detached copy to differentiate
            weight, bias = weight.detach().requires_grad_(), bias.detach().requires_grad_()
        for _ in range(steps):
            loss = nn.functional.cross_entropy(z @ weight.T + bias, target)
            g_w, g_b = torch.autograd.grad(loss, (weight, bias), create_graph=create_graph)
            weight, bias = weight - lr * g_w, bias - lr * g_b
    return weight, bias


def spans_of(y: torch.Tensor, lengths: Sequence[int]) -> list[tuple[int, int, int]]:
    """``(start, end exclusive, label)`` of every maximal run of one label > 0 in the flat local labels ``y`` of
    sentences of ``lengths`` (a run never crosses a sentence's end)."""
    y = np.asarray(torch.as_tensor(y).cpu(), dtype=np.int64)
    if sum(lengths) != len(y):
        raise ValueError(f"{len(y)} word labels for sentences of {sum(lengths)} words; give one label per word")
    out, offset = [], 0
    for n in lengths:
        w = offset
        while w < offset + n:
            if y[w] == 0:
                w += 1
                continue
            end = w + 1
            while end < offset + n and y[end] == y[w]:
                end += 1
            out.append((w, end, int(y[w])))
            w = end
        offset += n
    return out


def bio_tags(y: torch.Tensor, lengths: Sequence[int]) -> torch.Tensor:
    """The type-agnostic O/B/I tags (0/1/2) of flat local labels ``y``: a word of a type opens an entity (B)
    where the sentence starts or the label before it differs, else continues it (I)."""
    out = torch.zeros(len(y), dtype=torch.long)
    for start, end, _ in spans_of(y, lengths):
        out[start] = B_TAG
        out[start + 1:end] = I_TAG
    return out


def span_means(spans: Sequence[tuple[int, int, int]], n_words: int, device=None) -> torch.Tensor:
    """(n_spans, n_words) rows that average a span's words: ``span_means(...) @ z`` is each span's mean row."""
    m = torch.zeros(len(spans), n_words, device=device)
    for i, (a, b, _) in enumerate(spans):
        m[i, a:b] = 1.0 / (b - a)
    return m


def label_scores(detect: torch.Tensor, word_types: torch.Tensor) -> torch.Tensor:
    """(n_words, n_way + 1) label log-probabilities of words from their detector O/B/I log-probabilities
    ``detect`` and their scores against each type ``word_types``: log P(O), then log P(B or I) plus the word's
    log-softmax over the types. Per word only: a sentence's spans come from :meth:`DecomposedNER.decode_tags`."""
    entity = torch.logsumexp(detect[:, 1:], 1, keepdim=True)
    return torch.cat([detect[:, :1], entity + torch.log_softmax(word_types, 1)], 1)


@register_learner
class DecomposedNER(TaggingLearner):
    name = "decomposed"
    config_class = DecomposedConfig

    def __init__(self, encoder, cfg: DecomposedConfig | None = None):
        super().__init__(encoder, cfg)
        self._module = DecomposedModule(encoder, int(encoder.dim), self.cfg.dropout) if encoder is not None else None
        self.head_: nn.Linear | None = None  # the last adapted task's detection head
        self.prototypes_: torch.Tensor | None = None  # and its (n_way, dim) type prototypes

    @property
    def module(self) -> nn.Module:
        return self._module

    def prototypes(self, z_support: torch.Tensor, y_support: torch.Tensor, lengths: Sequence[int]) -> torch.Tensor:
        """(n_way, dim): each type's mean support-span embedding (a span's embedding: the mean of its words)."""
        spans = spans_of(y_support, lengths)
        present = {label for _, _, label in spans}
        missing = sorted(set(range(1, int(torch.as_tensor(y_support).max()) + 1)) - present)
        if not spans or missing:
            raise ValueError(f"{self.name}: types {missing or 'all'} have no support span; every type of the "
                             "episode needs at least one annotated entity in the support set")
        z_spans = span_means(spans, len(z_support), z_support.device) @ z_support
        return class_means(z_spans, torch.tensor([label - 1 for _, _, label in spans]))

    def adapt_features(self, z_support: torch.Tensor, y_support: torch.Tensor,
                       lengths: Sequence[int] | None = None) -> None:
        """The type prototypes from the support words (``lengths``: the support sentences' word counts, so that
        no span runs across two sentences; None reads them as one), and with ``detector_steps`` a detection head
        tuned on them."""
        y = torch.as_tensor(y_support).long()
        self.check_support(y)
        z = z_support.float().cpu()
        lengths = [len(y)] if lengths is None else [int(n) for n in lengths]
        protos = self.prototypes(z, y, lengths)
        # a learner of given features (no encoder) has no trained head: it starts from zero
        head = copy.deepcopy(self._module.detector).float().cpu() if self._module is not None else zero_head(z.shape[1])
        if not self.cfg.detector_steps and not (head.weight.any() or head.bias.any()):
            raise ValueError(f"{self.name}: the detection head is untrained (all zero) and detector_steps=0, so no "
                             "word would be found an entity; load a checkpoint of `fewshot train --learner "
                             "decomposed`, or fit the head on each support set: -L detector_steps=30 "
                             "-L detector_lr=0.01 (bin/bench-ner chooses them on Few-NERD's val types)")
        if self.cfg.detector_steps:
            weight, bias = fit_head(head.weight, head.bias, z, bio_tags(y, lengths), self.cfg.detector_steps,
                                    self.cfg.detector_lr)
            with torch.no_grad():
                head.weight.copy_(weight)
                head.bias.copy_(bias)
        self.head_, self.prototypes_ = head.eval(), protos

    def tag_scores(self, z_query: torch.Tensor) -> torch.Tensor:
        """(n_query_words, 3 + n_way): the detector's O/B/I log-probabilities, then each type's word score
        (what :meth:`decode_tags` reads)."""
        if self.head_ is None:
            raise ValueError(f"{self.name}: call adapt_features on a support set before scoring")
        z = z_query.float().cpu()
        with torch.no_grad():
            return torch.cat([torch.log_softmax(self.head_(z), 1), scores(z, self.prototypes_, self.cfg.metric)], 1)

    def logits_features(self, z_query: torch.Tensor) -> torch.Tensor:
        """(n_query_words, n_way + 1) word label log-probabilities (:func:`label_scores`), every learner's
        contract; a sentence's tags come from :meth:`tag_scores`, whose B/I rows these cannot carry."""
        rows = self.tag_scores(z_query)
        return label_scores(rows[:, :3], rows[:, 3:])

    def decode_tags(self, scores: torch.Tensor) -> torch.Tensor:
        """One sentence's local labels from its :meth:`tag_scores` rows: its spans by Viterbi over the detector's
        O/B/I log-probabilities (BIO's rule enforced), each span the type its words score best on average."""
        scores = torch.as_tensor(scores).double()
        path = viterbi(scores[:, :3].numpy(), _TRANSITION, _START, _END)
        labels = torch.zeros(len(path), dtype=torch.long)
        w = 0
        while w < len(path):
            if path[w] == O_TAG:
                w += 1
                continue
            end = w + 1
            while end < len(path) and path[end] == I_TAG:
                end += 1
            labels[w:end] = int(scores[w:end, 3:].mean(0).argmax()) + 1
            w = end
        return labels

    def episode_loss(self, support_x: Sequence[Sequence[str]], support_y: torch.Tensor,
                     query_x: Sequence[Sequence[str]], query_y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(detection cross-entropy over every word + typing_weight x span-typing cross-entropy over the gold
        query spans, each query word's (n_query_words, n_way + 1) label scores): log P(O) from the detector,
        and log P(entity) plus the word's log-softmax over the types, for the trainer's word accuracy."""
        s_len, q_len = [len(s) for s in support_x], [len(s) for s in query_x]
        if len(support_y) != sum(s_len) or len(query_y) != sum(q_len):
            raise ValueError(f"{self.name}: {len(support_y)} support and {len(query_y)} query labels for "
                             f"{sum(s_len)} support and {sum(q_len)} query words; give one local label per word")
        sy, qy = torch.as_tensor(support_y).long(), torch.as_tensor(query_y).long()
        self.check_support(sy)
        z = torch.cat(word_embeddings(self.encoder, [*support_x, *query_x], self.device))
        m, n_s = self._module, sum(s_len)
        with torch.autocast(z.device.type, enabled=False):  # squared distances in float32 (see tagging.py)
            z = z.float()
            target = torch.cat([bio_tags(sy, s_len), bio_tags(qy, q_len)]).to(z.device)
            if self.cfg.detector_steps:  # MAML on the head: fitted to the support words, judged on the query's
                dropped = m.dropout(z)
                weight, bias = fit_head(m.detector.weight, m.detector.bias, dropped[:n_s], target[:n_s],
                                        self.cfg.detector_steps, self.cfg.detector_lr, create_graph=True)
                detect = dropped @ weight.T + bias
                loss = nn.functional.cross_entropy(detect[n_s:], target[n_s:])
            else:
                detect = m.detector(m.dropout(z))
                loss = nn.functional.cross_entropy(detect, target)
            protos = self.prototypes(z[:n_s], sy, s_len)
            word_types = scores(z[n_s:], protos, self.cfg.metric)  # (n_query_words, n_way)
            q_spans = spans_of(qy, q_len)
            if q_spans and self.cfg.typing_weight:
                span_scores = span_means(q_spans, len(qy), z.device) @ word_types
                span_types = torch.tensor([label - 1 for _, _, label in q_spans], device=z.device)
                loss = loss + self.cfg.typing_weight * nn.functional.cross_entropy(span_scores, span_types)
            logits = label_scores(torch.log_softmax(detect[n_s:], 1), word_types)
        return loss, logits
