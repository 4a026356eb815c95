"""Episodic evaluation: accuracy per episode, mean and 95% confidence interval.

Episodes are read once, as they come (a list, a lazy
:class:`~fewshot.episodes.SampledEpisodes` or a generator), so memory does
not grow with their number beyond one float per episode. With a learner that
leaves the encoder untouched during adaptation, episodes are scored in chunks
of ``chunk`` episodes: the examples a chunk touches that no earlier chunk did
are embedded in one batched pass, and cached by example id, so every example
is embedded exactly once (the physical floor for a frozen encoder): :class:`EmbeddingCache`, which
the tagging evaluation (:mod:`fewshot.tag_evaluation`) uses too, for word embeddings by sentence. A run of
at most ``chunk`` episodes embeds everything in a single pass. ``cache=False``
re-embeds every episode, for comparison.

With ``class_names=True``, each class's description
(:attr:`fewshot.data.FewShotDataset.class_items`: its name, or name and definition,
in the dataset's item format) joins the class's support set as one more labelled
example, for every learner alike; it uses no query, so the protocol stays
inductive, but it is side information the support-only protocol does not have, and
its figures are reported apart. Descriptions are embedded once per class.

With ``predictions=True``, :class:`EvalResult` also keeps every query's global
true and predicted class name (``y_true``, ``y_pred``, pooled over all
episodes) for the per-class table of :mod:`fewshot.report`; that grows with
the number of episodes, so it is off unless a report is asked for.
"""
from __future__ import annotations

import math
import sys
import time
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from dataclasses import dataclass, field

import numpy as np
import torch

from .data import FewShotDataset
from .episodes import Episode, unique_ids
from .report import class_report


def mean_ci95(accuracies: Sequence[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% normal interval, 1.96 * s / sqrt(n).

    ``s`` is the sample standard deviation (ddof=1); a single episode has no
    interval and gives ``nan``.
    """
    a = np.asarray(accuracies, dtype=np.float64)
    if a.size == 0:
        raise ValueError("no episodes to summarise")
    if a.size == 1:
        return float(a[0]), float("nan")
    return float(a.mean()), float(1.96 * a.std(ddof=1) / math.sqrt(a.size))


@dataclass
class EvalResult:
    accuracies: np.ndarray
    elapsed_s: float
    n_embedded: int
    extra: dict = field(default_factory=dict)
    y_true: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object))  # class names, all queries
    y_pred: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object))

    @property
    def mean(self) -> float:
        return mean_ci95(self.accuracies)[0]

    @property
    def ci95(self) -> float:
        return mean_ci95(self.accuracies)[1]

    @property
    def n_episodes(self) -> int:
        return int(len(self.accuracies))

    def summary(self) -> dict:
        """The run's figures for reports: mean accuracy and its 95% interval's half-width."""
        return {"accuracy_mean": self.mean, "accuracy_ci95": self.ci95}

    def class_report(self, top_k: int = 10):
        """Per-class precision/recall/F1 over the pooled queries (:func:`fewshot.report.class_report`)."""
        if not len(self.y_true):
            raise ValueError("this result kept no per-query predictions; evaluate(..., predictions=True)")
        return class_report(self.y_true, self.y_pred, top_k=top_k)


def progress_bar(total: int | None, desc: str, enabled: bool = True):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, file=sys.stderr, disable=not enabled, leave=False,
                dynamic_ncols=True, mininterval=0.5)


def episode_accuracy(logits: torch.Tensor, episode: Episode, kept: tuple[list, list] | None = None) -> float:
    """The accuracy of ``logits`` (n_query, n_way) on ``episode``; with ``kept`` = (y_true, y_pred),
    appends its queries' global true and predicted class names to them."""
    pred = logits.argmax(dim=1).cpu().numpy()
    if kept is not None:
        names = np.asarray(episode.classes, dtype=object)
        kept[0].append(names[episode.query_labels])
        kept[1].append(names[pred])
    return float((pred == episode.query_labels).mean())


CHUNK = 10_000  # episodes scored per embedding pass: runs up to this size embed in one pass


def example_cache(learner, dataset: FewShotDataset, batch_size: int = 128, progress: bool = True) -> EmbeddingCache:
    """An :class:`EmbeddingCache` of ``learner``'s embeddings of ``dataset``'s examples, keyed by example id. Pass
    one to several :func:`evaluate` calls on that dataset whose learners share one frozen encoder (the 1-shot and
    5-shot episodes of one dataset, say) and each example is embedded once for all of them."""
    return EmbeddingCache(lambda ids, bar: learner.embed(dataset.take(ids), batch_size=batch_size, progress=bar),
                          progress)


def evaluate(learner, dataset: FewShotDataset, episodes: Iterable[Episode], batch_size: int = 128,
             cache: EmbeddingCache | bool = True, progress: bool = True, chunk: int = CHUNK,
             predictions: bool = False, class_names: bool = False) -> EvalResult:
    """Score ``learner`` on ``episodes`` of ``dataset``, reading ``episodes`` once.

    ``cache``: True (the default) embeds each example once for this run; an :class:`EmbeddingCache` of this
    dataset's examples (:func:`example_cache`) once for every run given it, and ``n_embedded`` then counts
    what this run added; False re-embeds every episode. A learner that adapts its encoder per task embeds
    every episode itself, whatever ``cache`` says. ``predictions``: also keep every query's global true and
    predicted class (for :meth:`EvalResult.class_report`). ``class_names``: each class's description joins
    its support set (see the module's docstring).
    """
    if class_names and not dataset.class_items:
        raise ValueError(f"dataset {dataset.name!r} gives no class descriptions, so --class-names has nothing "
                         "to add; drop --class-names, or use a dataset whose classes are described "
                         "(clinc150, fewrel*)")
    start = time.perf_counter()
    total = len(episodes) if isinstance(episodes, Sized) else None
    accs = array("d")
    n_embedded = 0
    kept: tuple[list, list] | None = ([], []) if predictions else None
    if cache is not False and not learner.adapts_encoder:
        embedded = cache if isinstance(cache, EmbeddingCache) else example_cache(learner, dataset, batch_size,
                                                                                 progress)
        before = embedded.n
        described = EmbeddingCache(lambda names, bar: learner.embed([dataset.class_item(c) for c in names],
                                                                    batch_size=batch_size, progress=bar), progress)
        with progress_bar(total, "episodes", progress) as bar:
            for block in chunks(episodes, chunk):
                embedded.add(unique_ids(block).tolist())
                if class_names:
                    described.add(sorted({c for ep in block for c in ep.classes}))
                for ep in block:
                    if class_names:
                        z = torch.cat([embedded.take(ep.support), described.take(ep.classes)])
                        y = ep.described_support_labels()
                    else:
                        z, y = embedded.take(ep.support), ep.support_labels
                    learner.adapt_features(z, torch.from_numpy(y))
                    accs.append(episode_accuracy(learner.logits_features(embedded.take(ep.query)), ep, kept))
                    bar.update(1)
        n_embedded = embedded.n - before + described.n
    else:
        with progress_bar(total, "episodes", progress) as bar:
            for ep in episodes:
                x, y = dataset.take(ep.support), ep.support_labels
                if class_names:
                    x, y = x + [dataset.class_item(c) for c in ep.classes], ep.described_support_labels()
                learner.adapt(x, y)
                accs.append(episode_accuracy(learner.logits(dataset.take(ep.query)), ep, kept))
                n_embedded += len(x) + len(ep.query)
                bar.update(1)
    result = EvalResult(accuracies=np.frombuffer(accs, dtype=np.float64).copy(),
                        elapsed_s=time.perf_counter() - start, n_embedded=n_embedded)
    if kept is not None and kept[0]:
        result.y_true, result.y_pred = np.concatenate(kept[0]), np.concatenate(kept[1])
    return result


class EmbeddingCache:
    """Embeddings of a frozen encoder by key, each key embedded once: for every episode of a run, and for several
    runs whose learners share that encoder when they are given the same cache.

    ``embed(keys, progress)`` embeds new keys' items and gives either an (n_keys, dim) array (one row per key:
    an example id, a class name) or a list of (n_rows, dim) arrays, one per key (a sentence id, one row per
    word: the tagging evaluation's word embeddings). :meth:`take` gives the rows of some keys, in their order,
    as one tensor; :attr:`n` counts the keys embedded so far.
    """

    def __init__(self, embed: Callable[[list, object], np.ndarray | list[np.ndarray]], progress: bool = True):
        self.embed, self.progress = embed, progress
        self.first: dict = {}  # key -> its first row
        self.rows: dict = {}  # key -> its number of rows
        self.z = torch.zeros(0)
        self.n = 0
        self._one_row_each = True

    def __contains__(self, key) -> bool:
        return key in self.first

    def add(self, keys: Sequence) -> None:
        """Embed the keys not embedded yet, in one call of ``embed``."""
        new = [k for k in dict.fromkeys(keys) if k not in self.first]
        if not new:
            return
        with progress_bar(len(new), "embedding", self.progress) as bar:
            z = self.embed(new, bar)
        counts = [1] * len(new) if isinstance(z, np.ndarray) else [len(zi) for zi in z]
        flat = torch.from_numpy(np.ascontiguousarray(z if isinstance(z, np.ndarray) else np.concatenate(z)))
        start = len(self.z)
        for k, c in zip(new, counts):
            self.first[k], self.rows[k] = start, c
            start += c
        self._one_row_each = self._one_row_each and all(c == 1 for c in counts)
        self.z = flat if not len(self.z) else torch.cat([self.z, flat])
        self.n += len(new)

    def take(self, keys: Sequence) -> torch.Tensor:
        """The rows of ``keys`` (each embedded by :meth:`add` before), concatenated in their order."""
        if self._one_row_each:
            return self.z[[self.first[k] for k in keys]]
        return self.z[[r for k in keys for r in range(self.first[k], self.first[k] + self.rows[k])]]


def chunks(items: Iterable, size: int) -> Iterator[list]:
    """Lists of ``size`` consecutive items of ``items`` (the last one shorter), reading ``items`` once."""
    if size < 1:
        raise ValueError(f"chunk must be at least 1 episode, got {size}")
    block = []
    for item in items:
        block.append(item)
        if len(block) == size:
            yield block
            block = []
    if block:
        yield block
