"""N-way K~2K-shot NER episodes: Few-NERD's greedy sampler, and their frozen files.

A :class:`TaggedEpisode` names ``n_way`` entity types and holds sentence ids (indices
into a :class:`~fewshot.tagged.TaggedDataset`) of its support and query sets. Token
labels are local: 0 is ``O``, ``j + 1`` is ``types[j]``; a token whose type is not one
of the episode's is ``O`` (it never happens with this sampler: see below).

:class:`GreedyTypeSampler` follows the publisher's rule (Ding et al. 2021, thunlp/Few-NERD
``util/fewshotsampler.py``):

1. draw ``n_way`` types; a sentence is a *candidate* if it has at least one entity and
   all its entities are of these types (no candidate: draw the types again);
2. grow the support set greedily from candidates in random order: keep a sentence if no
   type would exceed ``2 * n_shot`` entities and it adds to some type still below
   ``n_shot``; stop when every type has at least ``n_shot`` entities;
3. build the query set the same way (with ``n_query``; Few-NERD uses ``n_query = n_shot``)
   from the candidates not in the support set, in a fresh random order.

``rule="minimum-including"`` builds both sets by Hou et al. 2020's rule for few-shot slot tagging
(the SNIPS cross-domain benchmark, where a slot such as AddToPlaylist's ``playlist`` is in every
sentence, so no K~2K set exists): keep a sentence if it adds to some type still below ``n_shot``
(no upper bound) until every type has ``n_shot``, then drop, in the order kept, each sentence
whose removal leaves every type at ``n_shot`` or more (:func:`minimum_including_set`).

``domains`` (a map from type to domain, e.g. a :class:`~fewshot.tagged.TaggedDataset`'s) draws, instead of
``n_way`` types, one domain uniformly among those of ``types`` and takes every one of its types in ``types``
(Hou et al. 2020's episodes: a task is a domain with all its slots); ``n_way`` is then not used.

Entities are counted as maximal IO runs (:func:`fewshot.tagged.io_spans`). The publisher
draws candidates with replacement until done; since a sentence refused once is refused
for good (counts only grow), scanning one random permutation of the candidates keeps
exactly the same sentences in the same order and always ends. A permutation that runs
out before every type has ``n_shot`` entities draws new types (at most
:data:`MAX_TRIES` times, then a ValueError). Episode ``i`` depends only on ``(seed, i)``.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .episodes import EPISODE_KINDS, SampledEpisodes
from .seed import episode_rng
from .tagged import OUTSIDE, TaggedDataset, type_name

MAX_TRIES = 100


@dataclass(frozen=True)
class TaggedEpisode:
    """One few-shot NER task: ``types[j]`` is local label ``j + 1`` (0 is O); sentence ids."""

    index: int
    types: tuple[str, ...]
    support: np.ndarray
    query: np.ndarray
    kind = "ner"

    @property
    def n_way(self) -> int:
        return len(self.types)

    @property
    def classes(self) -> tuple[str, ...]:
        """The episode's labels by local index: ``("O", *types)``."""
        return (OUTSIDE, *self.types)

    def token_labels(self, tags: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """Local labels (0 = O) of each sentence's IO ``tags``; other types count as O."""
        local = {t: j + 1 for j, t in enumerate(self.types)}
        return [np.asarray([local.get(t, 0) for t in s], dtype=np.int64) for s in tags]

    def type_name_support(self) -> tuple[list[tuple[str, ...]], list[np.ndarray]]:
        """One more support sentence per type, its name (:func:`fewshot.tagged.type_name`), and their words'
        local labels (every word the type's): what ``--class-names`` adds to a tagging episode's support set."""
        names = [type_name(t) for t in self.types]
        return names, [np.full(len(n), j + 1, dtype=np.int64) for j, n in enumerate(names)]

    def with_type_names(self, sentences: Sequence, y: torch.Tensor) -> tuple[list, torch.Tensor]:
        """Support ``sentences`` and their words' labels ``y`` with :meth:`type_name_support` after them."""
        names, y_names = self.type_name_support()
        return [*sentences, *names], torch.cat([y, torch.from_numpy(np.concatenate(y_names))])

    def to_json(self) -> dict:
        return {"index": int(self.index), "kind": self.kind, "types": list(self.types),
                "support": self.support.tolist(), "query": self.query.tolist()}

    @classmethod
    def from_json(cls, d: Mapping) -> "TaggedEpisode":
        return cls(index=int(d["index"]), types=tuple(d["types"]),
                   support=np.asarray(d["support"], dtype=np.int64), query=np.asarray(d["query"], dtype=np.int64))


EPISODE_KINDS["ner"] = TaggedEpisode


def greedy_set(counts: np.ndarray, order: np.ndarray, k: int, exclude: set) -> list[int] | None:
    """Sentence ids kept by the greedy rule, scanning ``order``; None if the types do not all reach ``k``.

    ``counts``: (n_sentences, n_way) entities of each episode type per sentence.
    """
    have = np.zeros(counts.shape[1], dtype=np.int64)
    kept = []
    for i in order:
        if i in exclude:
            continue
        c = counts[i]
        if (have + c > 2 * k).any() or not ((c > 0) & (have < k)).any():
            continue
        have += c
        kept.append(int(i))
        if (have >= k).all():
            return kept
    return None


def minimum_including_set(counts: np.ndarray, order: np.ndarray, k: int, exclude: set) -> list[int] | None:
    """Sentence ids kept by Hou et al.'s minimum-including rule, scanning ``order``; None if the types do not
    all reach ``k``. ``counts`` as for :func:`greedy_set`."""
    have = np.zeros(counts.shape[1], dtype=np.int64)
    kept = []
    for i in order:
        if i in exclude or not ((counts[i] > 0) & (have < k)).any():
            continue
        have += counts[i]
        kept.append(int(i))
        if (have >= k).all():
            break
    else:
        return None
    for i in list(kept):
        if (have - counts[i] >= k).all():
            have -= counts[i]
            kept.remove(i)
    return kept


RULES = {"greedy": greedy_set, "minimum-including": minimum_including_set}


class GreedyTypeSampler:
    """Few-NERD's N-way K~2K-shot episodes over the entity types ``types`` of ``dataset``.

    Args:
        dataset: a TaggedDataset.
        n_way, n_shot: types per episode and the K of K~2K.
        n_query: the K of the query set (default ``n_shot``, as Few-NERD).
        seed: episode ``i`` is a pure function of ``(seed, i)``.
        types: the types to draw from (e.g. the test split); default all.
        rule: "greedy" (Few-NERD's K~2K) or "minimum-including" (Hou et al. 2020's, at least K).
        domains: type -> domain: each episode holds every type (of ``types``) of one domain drawn at random,
            and ``n_way`` (None) is not used.
    """

    def __init__(self, dataset: TaggedDataset, n_way: int | None, n_shot: int, n_query: int | None = None,
                 seed: int = 0, types: Sequence[str] | None = None, rule: str = "greedy",
                 domains: Mapping[str, str] | None = None):
        if rule not in RULES:
            raise ValueError(f"episode rule must be one of {sorted(RULES)}, got {rule!r}")
        self.rule = rule
        if domains is not None and n_way is not None:
            raise ValueError(f"episodes of whole domains take every type of one domain; n_way={n_way!r} would "
                             "be ignored: pass n_way=None (or no domains for N-way episodes)")
        if domains is None and n_way is None:
            raise ValueError("n_way is required (types per episode) unless episodes are whole domains (domains=)")
        checks = (("n_shot", n_shot, 1), ("n_query", n_query or n_shot, 1))
        for name, value, low in ((("n_way", n_way, 1),) if n_way is not None else ()) + checks:
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
                raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
            if value < low:
                raise ValueError(f"{name} must be at least {low}, got {value}")
        self.n_way, self.n_shot = (int(n_way) if n_way is not None else None), int(n_shot)
        self.n_query, self.seed = int(n_query or n_shot), int(seed)
        self.types = sorted(types) if types is not None else dataset.types
        self.groups = None  # whole-domain episodes: each domain's columns
        if domains is not None:
            lacking = [t for t in self.types if t not in domains]
            if lacking:
                raise ValueError(f"episodes of whole domains need the domain of every type; no domain for "
                                 f"{lacking[:5]}: give every type one (TaggedDataset.domains)")
            by_domain: dict[str, list[int]] = {}
            for j, t in enumerate(self.types):
                by_domain.setdefault(domains[t], []).append(j)
            self.groups = [np.asarray(by_domain[d]) for d in sorted(by_domain)]
        elif self.n_way > len(self.types):
            raise ValueError(f"--way {n_way} needs {n_way} entity types but only {len(self.types)} are available; "
                             f"lower --way to at most {len(self.types)} or use more types (--classes all)")
        column = {t: j for j, t in enumerate(self.types)}
        counts = np.zeros((len(dataset.sentences), len(self.types) + 1), dtype=np.int64)  # last: other types
        for i, c in enumerate(dataset.entity_counts()):
            for t, n in c.items():
                counts[i, column.get(t, len(self.types))] += n
        self.counts = counts
        self.dataset_size = len(dataset.sentences)

    def sample(self, index: int) -> TaggedEpisode:
        rng = episode_rng(self.seed, index)
        for _ in range(MAX_TRIES):
            if self.groups is not None:
                chosen = self.groups[int(rng.integers(len(self.groups)))]
            else:
                chosen = np.sort(rng.choice(len(self.types), size=self.n_way, replace=False))
            counts = self.counts[:, chosen]
            others = self.counts.sum(1) - counts.sum(1)
            candidates = np.flatnonzero((others == 0) & (counts.sum(1) > 0))
            if not len(candidates):
                continue
            order = rng.permutation(candidates)
            build = RULES[self.rule]
            support = build(counts, order, self.n_shot, set())
            if support is None:
                continue
            query = build(counts, rng.permutation(candidates), self.n_query, set(support))
            if query is None:
                continue
            return TaggedEpisode(index=index, types=tuple(self.types[j] for j in chosen),
                                 support=np.asarray(support, dtype=np.int64), query=np.asarray(query, dtype=np.int64))
        shots = f"{self.n_shot}~{2 * self.n_shot}" if self.rule == "greedy" else f"{self.n_shot}+"
        hint = " (or the minimum-including rule, which sets no upper bound)" if self.rule == "greedy" else ""
        way = "whole-domain" if self.groups is not None else f"{self.n_way}-way"
        raise ValueError(f"no {way} {shots}-shot episode could be drawn in {MAX_TRIES} tries of types "
                         "(too few sentences whose entities are all of the drawn types, or a type in most of "
                         f"them); lower --way or --shot, or use more types{hint}")

    def episodes(self, n: int, start: int = 0) -> SampledEpisodes:
        """Episodes ``start .. start + n - 1``, sampled lazily."""
        return SampledEpisodes(self, n, start)

    def describe(self) -> dict:
        out = {"sampler": "greedy-types", "task": "ner", "way": self.n_way, "shot": self.n_shot,
               "query": self.n_query, "seed": self.seed}
        if self.groups is not None:
            out["types"] = "domain"
        return out if self.rule == "greedy" else {**out, "rule": self.rule}
