"""PNG plots of a benchmark report (matplotlib, Agg backend: no display needed).

- ``accuracy_vs_shot.png``: one panel per dataset, accuracy against shot for
  each learner and way, with 95% CI error bars.
- ``accuracy_by_dataset.png``: grouped bars per dataset, one bar per learner
  and task, with 95% CI error bars.
"""
from __future__ import annotations

import io
import math
import os
from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: str | os.PathLike) -> Path:
    """PNG bytes rendered in memory, then written atomically."""
    from .atomic import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def _ci(c: dict) -> float:
    ci = c["accuracy_ci95"]
    return 0.0 if ci is None or math.isnan(ci) else 100 * ci


def plot_accuracy_vs_shot(cells: list[dict], path: str | os.PathLike) -> Path:
    plt = _pyplot()
    datasets = list(dict.fromkeys(c["dataset"] for c in cells))
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.5 * len(datasets), 3.6), squeeze=False)
    for ax, name in zip(axes[0], datasets):
        series: dict[tuple, list[dict]] = {}
        for c in cells:
            if c["dataset"] == name:
                series.setdefault((c["learner"], c["way"]), []).append(c)
        for (learner, way), pts in series.items():
            pts = sorted(pts, key=lambda c: c["shot"])
            ax.errorbar([c["shot"] for c in pts], [100 * c["accuracy_mean"] for c in pts],
                        yerr=[_ci(c) for c in pts], marker="o", capsize=3, label=f"{learner}, {way}-way")
        ax.set_title(name)
        ax.set_xlabel("shot")
        ax.set_ylabel("accuracy % (95% CI)")
        ax.set_xticks(sorted({c["shot"] for c in cells if c["dataset"] == name}))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(plt, fig, path)


def plot_accuracy_by_dataset(cells: list[dict], path: str | os.PathLike) -> Path:
    plt = _pyplot()
    datasets = list(dict.fromkeys(c["dataset"] for c in cells))
    bars = list(dict.fromkeys((c["learner"], c["way"], c["shot"]) for c in cells))
    width = 0.8 / max(1, len(bars))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(datasets) * max(1, len(bars)) ** 0.5), 3.8))
    for j, (learner, way, shot) in enumerate(bars):
        xs, ys, es = [], [], []
        for i, name in enumerate(datasets):
            c = next((c for c in cells if c["dataset"] == name and (c["learner"], c["way"], c["shot"])
                      == (learner, way, shot)), None)
            if c is not None:
                xs.append(i + (j - (len(bars) - 1) / 2) * width)
                ys.append(100 * c["accuracy_mean"])
                es.append(_ci(c))
        ax.bar(xs, ys, width, yerr=es, capsize=2, label=f"{learner} {way}w{shot}s")
    ax.set_xticks(range(len(datasets)))
    ax.set_xticklabels(datasets)
    ax.set_ylabel("accuracy % (95% CI)")
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return _save(plt, fig, path)


def write_plots(report, folder: str | os.PathLike) -> list[Path]:
    """Both plots of ``report`` (a BenchmarkReport) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return [plot_accuracy_vs_shot(report.cells, folder / "accuracy_vs_shot.png"),
            plot_accuracy_by_dataset(report.cells, folder / "accuracy_by_dataset.png")]
