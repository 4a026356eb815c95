"""Abstract tag transitions and Viterbi decoding: StructShot's collapsed dependency transfer.

Yang & Katiyar 2020 ("Simple and Effective Few-Shot Named Entity Recognition with Structured
Nearest Neighbor Learning"), after Hou et al. 2020's collapsed dependency transfer: the entity
types of a test episode are new, so transitions between *types* cannot be learned; transitions
between *abstract* tags can, on the training types' tagged sentences, and are then spread over
whatever types an episode has. On fewshot's IO tags (:mod:`fewshot.tagged`) the abstract tags
are O and "an entity" (IO has no B-/I- variants to tell apart: an entity is a maximal run of one
type), and the transitions are

==============  ===============================================================
from            to
==============  ===============================================================
start           O, entity
O               O, entity, end
an entity       O, the same entity (the run goes on), another entity, end
==============  ===============================================================

:meth:`AbstractTransitions.estimate` counts them on tag sequences with add-``smoothing``
(Laplace) smoothing within each row, so every probability is positive.
:meth:`AbstractTransitions.expand` turns them into log-probabilities over an episode's labels
(0 = O, j = type j, j = 1..n_types): "O -> entity" and "start -> entity" are shared equally
by the ``n_types`` types, "entity -> another entity" by the ``n_types - 1`` others.

:func:`viterbi` finds the best label path of one sentence under per-word emission scores plus
those transition scores.
"""
from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from .tagged import OUTSIDE

# (row, outcome) of every abstract transition, in the order of AbstractTransitions' fields
ROWS = {"start": ("o", "entity"), "o": ("o", "entity", "end"), "entity": ("o", "same", "other", "end")}


@dataclass(frozen=True)
class AbstractTransitions:
    """Probabilities of the abstract transitions (each row sums to 1) and the counts they came from."""

    start_o: float
    start_entity: float
    o_o: float
    o_entity: float
    o_end: float
    entity_o: float
    entity_same: float
    entity_other: float
    entity_end: float
    counts: dict
    n_sentences: int

    def __post_init__(self) -> None:
        for row, outcomes in ROWS.items():
            p = [getattr(self, f"{row}_{o}") for o in outcomes]
            if min(p) < 0 or abs(sum(p) - 1) > 1e-6:
                raise ValueError(f"transitions from {row!r} must be probabilities summing to 1, got "
                                 f"{dict(zip(outcomes, p))}")

    @classmethod
    def estimate(cls, tags: Iterable[Sequence[str]], types: Collection[str] | None = None,
                 require_entity: bool = False, smoothing: float = 1.0) -> "AbstractTransitions":
        """Count the abstract transitions of IO tag sequences ``tags`` with add-``smoothing`` smoothing.

        Only sentences whose every entity is of ``types`` (default: any type) are counted, and with
        ``require_entity`` only those with at least one entity (the sentences an N-way episode draws).
        """
        if smoothing < 0:
            raise ValueError(f"smoothing must be >= 0, got {smoothing}")
        types = None if types is None else set(types)
        counts = {f"{row}_{o}": 0 for row, outcomes in ROWS.items() for o in outcomes}
        n = 0
        for seq in tags:
            kinds = set(seq) - {OUTSIDE}
            if (types is not None and not kinds <= types) or (require_entity and not kinds) or not seq:
                continue
            n += 1
            prev = "start"
            for i, t in enumerate(seq):
                if t == OUTSIDE:
                    counts[f"{prev}_o"] += 1
                elif prev == "entity":
                    counts["entity_same" if t == seq[i - 1] else "entity_other"] += 1
                else:
                    counts[f"{prev}_entity"] += 1
                prev = "o" if t == OUTSIDE else "entity"
            counts[f"{prev}_end"] += 1
        if not n:
            raise ValueError(f"no tagged sentence to estimate transitions from (types {sorted(types or [])[:5]}, "
                             f"require_entity={require_entity}); give sentences whose entities are of these types")
        probs = {}
        for row, outcomes in ROWS.items():
            total = sum(counts[f"{row}_{o}"] for o in outcomes) + smoothing * len(outcomes)
            if total == 0:
                raise ValueError(f"no transition from {row!r} was seen and smoothing is 0; use smoothing > 0")
            for o in outcomes:
                probs[f"{row}_{o}"] = (counts[f"{row}_{o}"] + smoothing) / total
        return cls(**probs, counts=counts, n_sentences=n)

    def expand(self, n_types: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(start, transition, end)`` log-probabilities over labels 0 = O, 1..n_types: shapes (L,), (L, L)
        (``transition[i, j]``: from label i to label j) and (L,), L = n_types + 1."""
        if n_types < 1:
            raise ValueError(f"n_types must be at least 1, got {n_types}")
        n = n_types
        start = np.array([self.start_o] + [self.start_entity / n] * n)
        end = np.array([self.o_end] + [self.entity_end] * n)
        trans = np.full((n + 1, n + 1), self.entity_other / (n - 1) if n > 1 else 0.0)
        trans[0, 0], trans[0, 1:], trans[1:, 0] = self.o_o, self.o_entity / n, self.entity_o
        np.fill_diagonal(trans[1:, 1:], self.entity_same)
        with np.errstate(divide="ignore"):  # one type: no "other entity" to go to (log 0 = -inf)
            return np.log(start), np.log(trans), np.log(end)


def viterbi(emissions: np.ndarray, transition: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """The label path ``y`` of one sentence maximising
    ``start[y0] + sum_t emissions[t, y_t] + sum_t transition[y_{t-1}, y_t] + end[y_last]``.

    ``emissions``: (n_words, L) scores (e.g. log-probabilities); ``transition``: (L, L), from row to column;
    ``start``, ``end``: (L,). Returns (n_words,) int64 labels; ties go to the lower label.
    """
    emissions = np.asarray(emissions, dtype=np.float64)
    if emissions.ndim != 2 or not len(emissions):
        raise ValueError(f"emissions must be (n_words >= 1, n_labels), got shape {emissions.shape}")
    n_words, n_labels = emissions.shape
    if transition.shape != (n_labels, n_labels) or start.shape != (n_labels,) or end.shape != (n_labels,):
        raise ValueError(f"transition {transition.shape}, start {start.shape} and end {end.shape} do not fit "
                         f"{n_labels} labels; expected ({n_labels}, {n_labels}), ({n_labels},), ({n_labels},)")
    score = start + emissions[0]
    back = np.zeros((n_words, n_labels), dtype=np.int64)
    for t in range(1, n_words):
        cand = score[:, None] + transition  # (from, to)
        back[t] = cand.argmax(0)
        score = cand[back[t], np.arange(n_labels)] + emissions[t]
    path = np.empty(n_words, dtype=np.int64)
    path[-1] = int(np.argmax(score + end))
    for t in range(n_words - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path
