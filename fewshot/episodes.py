"""N-way K-shot episodes: sampling, and freezing them to JSONL files.

An :class:`Episode` names its classes (position = local label) and holds
example ids (indices into a :class:`~fewshot.data.FewShotDataset`). Episode
``i`` of a sampler depends only on ``(seed, i)``, so samplers can be resumed,
split across processes, and frozen to files that every learner is scored on.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_write_bytes
from .seed import episode_rng

FORMAT = "fewshot-episodes/1"


@dataclass(frozen=True)
class Episode:
    """One few-shot task.

    ``classes[j]`` is the class name of local label ``j``; ``support`` and
    ``query`` are example ids, ``support_labels`` / ``query_labels`` local labels.
    """

    index: int
    classes: tuple[str, ...]
    support: np.ndarray
    support_labels: np.ndarray
    query: np.ndarray
    query_labels: np.ndarray

    @property
    def n_way(self) -> int:
        return len(self.classes)

    def described_support_labels(self) -> np.ndarray:
        """Support labels when each class's description follows the support examples (``class_names``):
        ``support_labels`` then ``0 .. n_way - 1``, the descriptions in the order of ``classes``."""
        return np.concatenate([self.support_labels, np.arange(self.n_way, dtype=self.support_labels.dtype)])

    def to_json(self) -> dict:
        return {
            "index": int(self.index),
            "classes": list(self.classes),
            "support": self.support.tolist(),
            "support_labels": self.support_labels.tolist(),
            "query": self.query.tolist(),
            "query_labels": self.query_labels.tolist(),
        }

    @classmethod
    def from_json(cls, d: Mapping) -> "Episode":
        return cls(
            index=int(d["index"]),
            classes=tuple(d["classes"]),
            support=np.asarray(d["support"], dtype=np.int64),
            support_labels=np.asarray(d["support_labels"], dtype=np.int64),
            query=np.asarray(d["query"], dtype=np.int64),
            query_labels=np.asarray(d["query_labels"], dtype=np.int64),
        )


class SampledEpisodes(Sequence):
    """Episodes ``start .. start + n - 1`` of a sampler, sampled when read (never all held at once).

    A re-iterable, indexable view: ``len``, ``eps[i]`` and ``iter`` call
    ``sampler.sample(i)``; episode ``i`` is a pure function of ``(seed, i)``, so
    reading it twice gives the same episode.
    """

    def __init__(self, sampler, n: int, start: int = 0):
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 0:
            raise ValueError(f"the number of episodes must be an int >= 0, got {n!r}")
        self.sampler, self.n, self.start = sampler, int(n), int(start)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self.n))]
        if i < 0:
            i += self.n
        if not 0 <= i < self.n:
            raise IndexError(f"episode {i} of {self.n}")
        return self.sampler.sample(self.start + i)

    def __iter__(self) -> Iterator[Episode]:
        for i in range(self.start, self.start + self.n):
            yield self.sampler.sample(i)

    def __repr__(self) -> str:
        return f"SampledEpisodes({self.sampler.describe()}, n={self.n}, start={self.start})"


def _class_index(labels: Sequence, classes: Sequence | None) -> dict[str, np.ndarray]:
    wanted = None if classes is None else set(classes)
    by_class: dict = {}
    for i, label in enumerate(labels):
        if wanted is None or label in wanted:
            by_class.setdefault(label, []).append(i)
    if classes is not None:
        missing = [c for c in classes if c not in by_class]
        if missing:
            raise ValueError(f"classes {missing[:5]} have no examples in the dataset")
        order = list(classes)
    else:
        order = sorted(by_class, key=str)
    return {c: np.asarray(by_class[c], dtype=np.int64) for c in order}


class EpisodeSampler:
    """Fixed N-way K-shot episodes: ``n_way`` classes, ``n_shot`` + ``n_query`` per class.

    Args:
        labels: the class name of every example (any hashable values).
        n_way, n_shot, n_query: the task shape.
        seed: episode ``i`` is a pure function of ``(seed, i)``.
        classes: restrict sampling to these classes (e.g. the test split).
    """

    def __init__(self, labels: Sequence, n_way: int, n_shot: int, n_query: int = 15,
                 seed: int = 0, classes: Sequence | None = None):
        for name, value, low in (("n_way", n_way, 2), ("n_shot", n_shot, 1), ("n_query", n_query, 1)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
                raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
            if value < low:
                raise ValueError(f"{name} must be at least {low}, got {value}")
        self.n_way, self.n_shot, self.n_query, self.seed = int(n_way), int(n_shot), int(n_query), int(seed)
        self.by_class = _class_index(labels, classes)
        if n_way > len(self.by_class):
            raise ValueError(
                f"--way {n_way} needs {n_way} classes but only {len(self.by_class)} are available; "
                f"lower --way to at most {len(self.by_class)} or use more classes"
            )
        need = n_shot + n_query
        small = [(c, len(ids)) for c, ids in self.by_class.items() if len(ids) < need]
        if small:
            c, have = small[0]
            more = f" (and {len(small) - 1} more classes)" if len(small) > 1 else ""
            raise ValueError(
                f"n_shot + n_query = {n_shot} + {n_query} = {need} but class {c!r} has {have} examples{more}; "
                "lower --shot/--query or drop the class"
            )
        self.classes = list(self.by_class)

    def sample(self, index: int) -> Episode:
        rng = episode_rng(self.seed, index)
        chosen = rng.choice(len(self.classes), size=self.n_way, replace=False)
        support, query = [], []
        for ids_index in chosen:
            ids = self.by_class[self.classes[ids_index]]
            picked = rng.choice(len(ids), size=self.n_shot + self.n_query, replace=False)
            support.append(ids[picked[: self.n_shot]])
            query.append(ids[picked[self.n_shot:]])
        return Episode(
            index=index,
            classes=tuple(self.classes[j] for j in chosen),
            support=np.concatenate(support),
            support_labels=np.repeat(np.arange(self.n_way), self.n_shot),
            query=np.concatenate(query),
            query_labels=np.repeat(np.arange(self.n_way), self.n_query),
        )

    def episodes(self, n: int, start: int = 0) -> SampledEpisodes:
        """Episodes ``start .. start + n - 1``, sampled lazily (see :class:`SampledEpisodes`)."""
        return SampledEpisodes(self, n, start)

    def describe(self) -> dict:
        return {"sampler": "fixed", "way": self.n_way, "shot": self.n_shot, "query": self.n_query,
                "seed": self.seed}


class VariableEpisodeSampler:
    """Variable-way variable-shot episodes, as in Meta-Dataset (Triantafillou et al. 2020).

    Way is uniform in [5, min(max_way, classes)]; each class contributes
    ``n_query`` queries (at most half its examples, at most ``max_query``) and an
    imbalanced share of a support budget of at most ``max_support`` examples,
    with at most ``max_shot`` per class and at least one.
    """

    def __init__(self, labels: Sequence, seed: int = 0, classes: Sequence | None = None,
                 min_way: int = 5, max_way: int = 50, max_query: int = 10,
                 max_support: int = 500, max_shot: int = 100):
        self.seed = int(seed)
        self.by_class = _class_index(labels, classes)
        self.classes = list(self.by_class)
        if len(self.classes) < min_way:
            raise ValueError(
                f"variable-way episodes need at least {min_way} classes, the data has {len(self.classes)}"
            )
        small = [(c, len(v)) for c, v in self.by_class.items() if len(v) < 2]
        if small:
            raise ValueError(
                f"class {small[0][0]!r} has {small[0][1]} example; variable-shot episodes need at least 2 "
                "per class (one support, one query)"
            )
        self.min_way, self.max_way = min_way, min(max_way, len(self.classes))
        self.max_query, self.max_support, self.max_shot = max_query, max_support, max_shot

    def sample(self, index: int) -> Episode:
        rng = episode_rng(self.seed, index)
        way = int(rng.integers(self.min_way, self.max_way + 1))
        chosen = rng.choice(len(self.classes), size=way, replace=False)
        pools = [self.by_class[self.classes[j]] for j in chosen]
        n_query = min(self.max_query, *(len(p) // 2 for p in pools))
        n_query = max(n_query, 1)
        budget = min(self.max_support, sum(min(self.max_shot, len(p) - n_query) for p in pools))
        budget = max(budget, way)
        # Imbalanced shares (log-uniform weights), at least one shot per class.
        weights = np.exp(rng.uniform(np.log(0.5), np.log(2.0), size=way))
        shots = []
        for w, p in zip(weights, pools):
            cap = min(self.max_shot, len(p) - n_query)
            shots.append(int(max(1, min(cap, np.floor(budget * w / weights.sum())))))
        support, s_labels, query, q_labels = [], [], [], []
        for j, (p, k) in enumerate(zip(pools, shots)):
            picked = p[rng.permutation(len(p))[: n_query + k]]
            query.append(picked[:n_query]); q_labels.append(np.full(n_query, j))
            support.append(picked[n_query:]); s_labels.append(np.full(k, j))
        return Episode(index=index, classes=tuple(self.classes[j] for j in chosen),
                       support=np.concatenate(support), support_labels=np.concatenate(s_labels),
                       query=np.concatenate(query), query_labels=np.concatenate(q_labels))

    def episodes(self, n: int, start: int = 0) -> SampledEpisodes:
        """Episodes ``start .. start + n - 1``, sampled lazily (see :class:`SampledEpisodes`)."""
        return SampledEpisodes(self, n, start)

    def describe(self) -> dict:
        return {"sampler": "variable", "seed": self.seed, "max_way": self.max_way,
                "max_query": self.max_query, "max_support": self.max_support, "max_shot": self.max_shot}


EPISODE_KINDS: dict[str, type] = {"classify": Episode}  # an episode line's "kind" -> its class (from_json)


def unique_ids(episodes: Iterable[Episode]) -> np.ndarray:
    """Sorted example ids used by any of ``episodes`` (what a frozen encoder must embed)."""
    ids = [np.concatenate([e.support, e.query]) for e in episodes]
    return np.unique(np.concatenate(ids)) if ids else np.zeros(0, dtype=np.int64)


def save_episodes(path: str | os.PathLike, episodes: Sequence[Episode], meta: Mapping) -> str:
    """Write ``episodes`` to a JSONL file: one header line (``meta``), one line per episode.

    Written to a temporary file and renamed, so a crash never leaves half a file.
    Returns the SHA-256 of the file.
    """
    header = {"format": FORMAT, "n_episodes": len(episodes), **meta}
    lines = [json.dumps(header, sort_keys=True)]
    lines += [json.dumps(e.to_json(), separators=(",", ":")) for e in episodes]
    data = ("\n".join(lines) + "\n").encode()
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def load_episodes(path: str | os.PathLike) -> tuple[dict, list[Episode]]:
    """Read a file written by :func:`save_episodes`; returns ``(header, episodes)``."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"episode file {str(path)!r} does not exist; create one with `fewshot episodes make`")
    with open(path, encoding="utf-8") as f:
        lines = [ln for ln in f.read().splitlines() if ln.strip()]
    if not lines:
        raise ValueError(f"episode file {str(path)!r} is empty; expected a header line and one line per episode")
    try:
        header = json.loads(lines[0])
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:1: header is not JSON ({exc.msg}); was this written by `fewshot episodes make`?") from exc
    if header.get("format") != FORMAT:
        raise ValueError(f"{path}:1: expected format {FORMAT!r}, got {header.get('format')!r}")
    episodes = []
    for lineno, line in enumerate(lines[1:], start=2):
        try:
            d = json.loads(line)
            kind = EPISODE_KINDS.get(d.get("kind", "classify")) if isinstance(d, dict) else Episode
            if kind is not None:
                episodes.append(kind.from_json(d))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}:{lineno}: malformed episode ({exc}); the file is damaged, make it again") from exc
        if kind is None:
            raise ValueError(f"{path}:{lineno}: episode kind {d.get('kind')!r} is not known (known: "
                             f"{sorted(EPISODE_KINDS)}); a kind is known once its module is imported: fewshot.tag_episodes "
                             "(ner), fewshot.joint_episodes (joint)")
    if len(episodes) != header.get("n_episodes"):
        raise ValueError(
            f"{path}: header says {header.get('n_episodes')} episodes but the file holds {len(episodes)}; "
            "the file is truncated, make it again"
        )
    return header, episodes


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks (data files can be hundreds of MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
