"""Benchmark grids: datasets x learners x way x shot on frozen episode files.

``run_benchmark(BenchConfig, out_dir)`` scores every cell of the grid on the
same frozen episodes (``episodes/<dataset>-<way>w<shot>s<query>q-<n>ep-seed<seed>.jsonl``,
written on first use and reused afterwards) and returns a :class:`BenchmarkReport`:
mean, 95% CI, per-episode accuracies, seconds per episode, episode-file
hashes, encoder fingerprints and provenance, written to ``out_dir/report.json``
(atomically after every cell, so an interrupted run continues where it
stopped) and ``out_dir/report.md``. :func:`check_report` reruns a report's
recorded config and says whether every cell matches.

Datasets that carry their own protocol episodes (``dataset.episodes``, e.g. the
20 official Omniglot runs of Lake et al.) are scored on exactly those, once
per learner, and reported as error rate (wrong / total queries, as the
official scorer does) and accuracy.
"""
from __future__ import annotations

from .cells import (
           CellSpec,
           episodes_path,
           frozen_episodes,
           grid,
           protocol_episodes,
           protocol_errors,
           score_cell,
)
from .check import CellCheck, check_report, compare_cell
from .config import (
           FORMAT,
           REPORT_JSON,
           REPORT_MD,
           BenchConfig,
           BenchLearner,
           load_bench_config,
)
from .report import BenchmarkReport, render_markdown
from .runner import BenchResources, run_benchmark, run_cell

__all__ = ["FORMAT", "REPORT_JSON", "REPORT_MD", "BenchConfig", "BenchLearner", "BenchResources", "BenchmarkReport",
           "CellCheck", "CellSpec", "check_report", "compare_cell", "episodes_path", "frozen_episodes", "grid",
           "load_bench_config", "protocol_episodes", "protocol_errors", "render_markdown", "run_benchmark",
           "run_cell", "score_cell"]
