"""Episodic NER evaluation: exact-span, exact-type micro precision / recall / F1.

Few-NERD's rule (Ding et al. 2021, thunlp/Few-NERD ``util/framework.py``): in every query
sentence, the predicted and the gold entities are the maximal runs of one label of the IO
tags (:func:`fewshot.tagged.io_spans`, counted by seqeval); a predicted entity is correct
when a gold one has the same start, end and type. The counts (correct, predicted, gold)
are **summed over all episodes** before precision, recall and F1 are computed (micro).

The 95% interval is a **bootstrap over episodes**: :data:`BOOTSTRAP` resamples of the
episodes with replacement (numpy ``default_rng(0)``), each giving the F1 of its summed
counts; the interval is their 2.5th and 97.5th percentiles. It resamples the unit the
protocol draws (the episode), and it is the interval of the very statistic reported
(pooled counts), which a normal interval of per-episode F1 is not.

The per-type report gives each type's precision, recall, F1 and gold count, pooled over
the episodes where the type was drawn. Word embeddings of a frozen encoder are cached by
sentence id (each sentence embedded once per chunk of episodes, as the classification
evaluation caches its examples).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence, Sized
from dataclasses import dataclass, field

import numpy as np
import torch

from .evaluation import CHUNK, chunks, progress_bar
from .tag_episodes import TaggedEpisode
from .tagged import OUTSIDE, TaggedDataset, io_spans

BOOTSTRAP = 1000


def span_counts(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]],
                read_spans: Callable[[Sequence[str]], list] = io_spans) -> dict[str, np.ndarray]:
    """Per type, ``[correct, predicted, gold]`` entity counts over the sentences' tag sequences, IO (``read_spans``
    :func:`~fewshot.tagged.io_spans`) or BIO (:func:`~fewshot.tagged.bio_spans`)."""
    out: dict[str, np.ndarray] = {}
    for g, p in zip(gold, pred):
        if len(g) != len(p):
            raise ValueError(f"a sentence has {len(g)} gold tags but {len(p)} predicted; predict one tag per word")
        gs, ps = set(read_spans(g)), set(read_spans(p))
        for spans, col in ((gs & ps, 0), (ps, 1), (gs, 2)):
            for t, _, _ in spans:
                out.setdefault(t, np.zeros(3, dtype=np.int64))[col] += 1
    return out


def prf(counts: np.ndarray) -> tuple[float, float, float]:
    """Precision, recall, F1 of ``[correct, predicted, gold]`` (0 where undefined)."""
    c, p, g = (float(x) for x in counts)
    precision, recall = (c / p if p else 0.0), (c / g if g else 0.0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def bootstrap_picks(n_units: int, n: int = BOOTSTRAP, seed: int = 0) -> np.ndarray:
    """(n, n_units) indices: ``n`` resamples with replacement of ``n_units`` units (numpy ``default_rng(seed)``)."""
    return np.random.default_rng(seed).integers(0, n_units, size=(n, n_units))


def bootstrap_f1(episode_counts: np.ndarray, n: int = BOOTSTRAP, seed: int = 0) -> tuple[float, float]:
    """2.5th and 97.5th percentiles of the micro F1 of ``n`` resamples of the episodes' (n_episodes, 3) counts."""
    if len(episode_counts) < 2:
        return float("nan"), float("nan")
    picks = bootstrap_picks(len(episode_counts), n, seed)
    sums = episode_counts[picks].sum(1)  # (n, 3)
    f1 = [prf(s)[2] for s in sums]
    low, high = np.percentile(f1, [2.5, 97.5])
    return float(low), float(high)


@dataclass
class TagEvalResult:
    """Span counts of every episode (``episode_counts``, (n_episodes, 3): correct, predicted, gold) and
    per type (``type_counts``), with the run's time and the number of sentences embedded."""

    episode_counts: np.ndarray
    type_counts: dict[str, np.ndarray]
    elapsed_s: float
    n_embedded: int
    extra: dict = field(default_factory=dict)

    @property
    def precision(self) -> float:
        return prf(self.episode_counts.sum(0))[0]

    @property
    def recall(self) -> float:
        return prf(self.episode_counts.sum(0))[1]

    @property
    def f1(self) -> float:
        return prf(self.episode_counts.sum(0))[2]

    @property
    def n_episodes(self) -> int:
        return int(len(self.episode_counts))

    def f1_interval(self) -> tuple[float, float]:
        """The bootstrap 95% interval of :attr:`f1` over episodes (see the module's docstring)."""
        return bootstrap_f1(self.episode_counts)

    def per_type(self) -> dict[str, dict]:
        """Per type: precision, recall, F1, and the correct / predicted / gold counts."""
        out = {}
        for t in sorted(self.type_counts):
            c = self.type_counts[t]
            p, r, f = prf(c)
            out[t] = {"precision": p, "recall": r, "f1": f, "correct": int(c[0]), "predicted": int(c[1]),
                      "gold": int(c[2])}
        return out

    def summary(self) -> dict:
        """The run's figures as JSON-able values (what ``fewshot run --json`` prints for NER)."""
        low, high = self.f1_interval()
        c = self.episode_counts.sum(0)
        return {"task": "ner", "precision": self.precision, "recall": self.recall, "f1": self.f1,
                "f1_ci95_low": low, "f1_ci95_high": high, "ci95_method": f"bootstrap over episodes ({BOOTSTRAP} "
                "resamples, summed counts)", "correct": int(c[0]), "predicted": int(c[1]), "gold": int(c[2])}


def tags_of(pred: torch.Tensor, episode: TaggedEpisode) -> tuple[str, ...]:
    """IO tags of local label predictions (0 = O, j + 1 = ``episode.types[j]``)."""
    names = episode.classes
    return tuple(names[int(j)] for j in pred)


def evaluate_tagging(learner, dataset: TaggedDataset, episodes: Iterable[TaggedEpisode], batch_size: int = 32,
                     progress: bool = True, chunk: int = CHUNK) -> TagEvalResult:
    """Score a tagging ``learner`` (``"ner" in learner.tasks``) on ``episodes`` of ``dataset``."""
    if "ner" not in getattr(learner, "tasks", ()):
        raise ValueError(f"learner {learner.name!r} does not tag words; choose a tagging learner for NER data "
                         "(--learner protobert or nnshot)")
    start = time.perf_counter()
    total = len(episodes) if isinstance(episodes, Sized) else None
    cache: dict[int, np.ndarray] = {}
    rows, types = [], {}
    with progress_bar(total, "episodes", progress) as bar:
        for block in chunks(episodes, chunk):
            new = sorted({int(i) for ep in block for i in np.concatenate([ep.support, ep.query])} - set(cache))
            with progress_bar(len(new), "embedding", progress) as ebar:
                z = learner.embed_words(dataset.take(new), batch_size=batch_size,
                                        where=lambda b: dataset.where(new[b]), progress=ebar)
            cache.update(zip(new, z))
            for ep in block:
                support_tags = [dataset.tags[int(i)] for i in ep.support]
                learner.adapt_features(torch.from_numpy(np.concatenate([cache[int(i)] for i in ep.support])),
                                       torch.from_numpy(np.concatenate(ep.token_labels(support_tags))))
                query_z = [cache[int(i)] for i in ep.query]
                pred = learner.logits_features(torch.from_numpy(np.concatenate(query_z))).argmax(1)
                gold = [tuple(t if t in ep.types else OUTSIDE for t in dataset.tags[int(i)]) for i in ep.query]
                bounds = np.cumsum([0] + [len(q) for q in query_z])
                predicted = [tags_of(pred[a:b], ep) for a, b in zip(bounds[:-1], bounds[1:])]
                counts = span_counts(gold, predicted)
                for t, c in counts.items():
                    types[t] = types.get(t, 0) + c
                rows.append(sum(counts.values(), np.zeros(3, dtype=np.int64)))
                bar.update(1)
    return TagEvalResult(episode_counts=np.asarray(rows, dtype=np.int64).reshape(-1, 3), type_counts=types,
                         elapsed_s=time.perf_counter() - start, n_embedded=len(cache))
