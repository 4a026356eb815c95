"""Episodic evaluation: accuracy per episode, mean and 95% confidence interval.

With a learner that leaves the encoder untouched during adaptation, every
example the episodes touch is embedded exactly once, in one batched pass
(the physical floor for a frozen encoder), and episodes work on those
embeddings. ``cache=False`` re-embeds every episode, for comparison.

Besides accuracies, :class:`EvalResult` keeps every query's global true and
predicted class name (``y_true``, ``y_pred``, pooled over all episodes) for
the per-class table of :mod:`fewshot.report`.
"""
from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .data import FewShotDataset
from .episodes import Episode, unique_ids


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

    def class_report(self, top_k: int = 10):
        """Per-class precision/recall/F1 over the pooled queries (:func:`fewshot.report.class_report`)."""
        from .report import class_report

        return class_report(self.y_true, self.y_pred, top_k=top_k)


def progress_bar(total: int, desc: str, enabled: bool = True):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, file=sys.stderr, disable=not enabled, leave=False,
                dynamic_ncols=True, mininterval=0.5)


def episode_accuracy(logits: torch.Tensor, episode: Episode, y_true: list, y_pred: list) -> float:
    """The accuracy of ``logits`` (n_query, n_way) on ``episode``; appends its queries' global
    true and predicted class names to ``y_true`` and ``y_pred``."""
    pred = logits.argmax(dim=1).cpu().numpy()
    names = np.asarray(episode.classes, dtype=object)
    y_true.append(names[episode.query_labels])
    y_pred.append(names[pred])
    return float((pred == episode.query_labels).mean())


def evaluate(learner, dataset: FewShotDataset, episodes: Sequence[Episode], batch_size: int = 128,
             cache: bool = True, progress: bool = True) -> EvalResult:
    """Score ``learner`` on ``episodes`` of ``dataset``."""
    start = time.perf_counter()
    accs = np.empty(len(episodes), dtype=np.float64)
    n_embedded = 0
    y_true: list = []
    y_pred: list = []
    if cache and not learner.adapts_encoder:
        ids = unique_ids(episodes)
        with progress_bar(len(ids), "embedding", progress) as bar:
            z = learner.encoder.encode(dataset.take(ids), batch_size=batch_size, device=learner.device,
                                       progress=bar)
        n_embedded = len(ids)
        row = {int(i): r for r, i in enumerate(ids)}
        z = torch.from_numpy(z)
        for k, ep in enumerate(_iter(episodes, "episodes", progress)):
            learner.adapt_features(z[[row[int(i)] for i in ep.support]], torch.from_numpy(ep.support_labels))
            accs[k] = episode_accuracy(learner.logits_features(z[[row[int(i)] for i in ep.query]]), ep,
                                       y_true, y_pred)
    else:
        for k, ep in enumerate(_iter(episodes, "episodes", progress)):
            learner.adapt(dataset.take(ep.support), ep.support_labels)
            accs[k] = episode_accuracy(learner.logits(dataset.take(ep.query)), ep, y_true, y_pred)
            n_embedded += len(ep.support) + len(ep.query)
    return EvalResult(accuracies=accs, elapsed_s=time.perf_counter() - start, n_embedded=n_embedded,
                      y_true=_pooled(y_true), y_pred=_pooled(y_pred))


def _pooled(parts: list) -> np.ndarray:
    return np.concatenate(parts) if parts else np.empty(0, dtype=object)


def _iter(items, desc, enabled):
    with progress_bar(len(items), desc, enabled) as bar:
        for item in items:
            yield item
            bar.update(1)
