"""N-way K-shot few-shot joint episodes: new intents and their slots taught by one support set.

Krone et al. 2020 ("Learning to Classify Intents and Slot Labels Given a Handful of Examples")
define few-shot intent classification + slot filling: a task draws intents unseen in training,
and its support set of a few utterances per intent, each with its intent and BIO slot tags,
teaches both. A :class:`JointEpisode` names ``n_way`` intents and holds sentence ids (indices
into a :class:`~fewshot.utterances.JointDataset`) of its support and query sets.

:class:`JointEpisodeSampler`: draw ``n_way`` intents of a split, then for each intent
``n_shot + n_query`` distinct utterances of it, the first ``n_shot`` the support set, the rest the
query set (so the two are disjoint). Episode ``i`` depends only on ``(seed, i)``.

The episode's **slot types** are those that occur in its support set (:meth:`JointEpisode.slot_types`):
what the support teaches. A query's gold slot of a type absent from the support stays in the gold
tags and is scored as a **miss** (a gold span no prediction can match: it lowers slot recall, and the
query's exact match fails), not rewritten to O: the task asks for that slot, the support did not show it.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .episodes import EPISODE_KINDS, SampledEpisodes
from .seed import episode_rng
from .tagged import OUTSIDE


@dataclass(frozen=True)
class JointEpisode:
    """One few-shot joint task: ``intents[j]`` is local intent label ``j``; sentence ids of support and query
    (``n_shot`` / ``n_query`` per intent, intent by intent)."""

    index: int
    intents: tuple[str, ...]
    support: np.ndarray
    query: np.ndarray
    kind = "joint"

    @property
    def n_way(self) -> int:
        return len(self.intents)

    @staticmethod
    def slot_types(support_tags: Sequence[Sequence[str]]) -> tuple[str, ...]:
        """The slot types (BIO prefix dropped) of the support sentences' tags, sorted."""
        return tuple(sorted({t[2:] for seq in support_tags for t in seq if t != OUTSIDE}))

    def to_json(self) -> dict:
        return {"index": int(self.index), "kind": self.kind, "intents": list(self.intents),
                "support": self.support.tolist(), "query": self.query.tolist()}

    @classmethod
    def from_json(cls, d: Mapping) -> "JointEpisode":
        return cls(index=int(d["index"]), intents=tuple(d["intents"]),
                   support=np.asarray(d["support"], dtype=np.int64), query=np.asarray(d["query"], dtype=np.int64))


EPISODE_KINDS["joint"] = JointEpisode


class JointEpisodeSampler:
    """N-way K-shot episodes of intents over a JointDataset (module docstring).

    Args:
        intents_of: the intent of every sentence (``dataset.intents``).
        n_way, n_shot, n_query: intents per episode, support and query utterances per intent.
        seed: episode ``i`` is a pure function of ``(seed, i)``.
        intents: the intents to draw from (e.g. the test split); default all.
    """

    def __init__(self, intents_of: Sequence[str], n_way: int, n_shot: int, n_query: int, seed: int = 0,
                 intents: Sequence[str] | None = None):
        for name, value in (("n_way", n_way), ("n_shot", n_shot), ("n_query", n_query)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
                raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        self.n_way, self.n_shot, self.n_query, self.seed = int(n_way), int(n_shot), int(n_query), int(seed)
        self.intents = sorted(set(intents_of)) if intents is None else sorted(intents)
        if self.n_way > len(self.intents):
            raise ValueError(f"--way {n_way} needs {n_way} intents but the split has {len(self.intents)} "
                             f"({self.intents}); lower --way to at most {len(self.intents)} or use --classes all")
        labels = np.asarray(intents_of)
        self.ids = {i: np.flatnonzero(labels == i) for i in self.intents}
        need = self.n_shot + self.n_query
        small = {i: len(v) for i, v in self.ids.items() if len(v) < need}
        if small:
            name, have = next(iter(small.items()))
            raise ValueError(f"--shot {n_shot} + --query {n_query} = {need} utterances per intent, but intent "
                             f"{name!r} has {have}; lower --shot or --query")

    def sample(self, index: int) -> JointEpisode:
        rng = episode_rng(self.seed, index)
        chosen = [self.intents[j] for j in np.sort(rng.choice(len(self.intents), size=self.n_way, replace=False))]
        picks = [rng.choice(self.ids[i], size=self.n_shot + self.n_query, replace=False) for i in chosen]
        return JointEpisode(index=index, intents=tuple(chosen),
                            support=np.concatenate([p[:self.n_shot] for p in picks]).astype(np.int64),
                            query=np.concatenate([p[self.n_shot:] for p in picks]).astype(np.int64))

    def episodes(self, n: int, start: int = 0) -> SampledEpisodes:
        """Episodes ``start .. start + n - 1``, sampled lazily."""
        return SampledEpisodes(self, n, start)

    def describe(self) -> dict:
        return {"sampler": "joint-intents", "task": "joint", "way": self.n_way, "shot": self.n_shot,
                "query": self.n_query, "seed": self.seed}
