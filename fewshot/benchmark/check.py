"""check_report: rerun a saved report's config and compare every cell."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

from .config import BenchConfig
from .report import BenchmarkReport
from .runner import run_benchmark


@dataclass
class CellCheck:
    key: str
    ok: bool
    how: str  # "exact" or "within CI"
    recorded: float
    rerun: float
    message: str


def compare_cell(recorded: dict, rerun: dict) -> CellCheck:
    """Exact per-episode equality for deterministic cells; otherwise means within the recorded 95% CI."""
    key, a, b = recorded["key"], recorded["accuracy_mean"], rerun["accuracy_mean"]
    if recorded["episodes_sha256"] != rerun["episodes_sha256"]:
        return CellCheck(key, False, "episodes", a, b, f"episode file changed: sha256 "
                         f"{recorded['episodes_sha256'][:16]} recorded, {rerun['episodes_sha256'][:16]} now")
    if recorded.get("deterministic") and rerun.get("deterministic"):
        same = recorded["accuracies"] == rerun["accuracies"]
        diff = sum(x != y for x, y in zip(recorded["accuracies"], rerun["accuracies"]))
        return CellCheck(key, same, "exact", a, b, "identical per-episode accuracies" if same
                         else f"{diff} of {len(recorded['accuracies'])} episodes differ")
    ci = recorded["accuracy_ci95"]
    ok = not math.isnan(ci) and abs(a - b) <= ci
    return CellCheck(key, ok, "within CI", a, b, f"|{100 * a:.2f} - {100 * b:.2f}| "
                     f"{'<=' if ok else '>'} CI {100 * ci:.2f}")


def check_report(folder: str | os.PathLike, progress: bool = True) -> list[CellCheck]:
    """Rerun the config recorded in ``folder/report.json`` (nothing is written) and compare every cell."""
    recorded = BenchmarkReport.load(folder)
    cfg = BenchConfig.from_dict(recorded.config)
    rerun = run_benchmark(cfg, out_dir=None, progress=progress)
    checks = []
    for old in recorded.cells:
        new = rerun.cell(old["key"])
        if new is None:
            checks.append(CellCheck(old["key"], False, "missing", old["accuracy_mean"], float("nan"),
                                    "cell not produced by the rerun"))
        else:
            checks.append(compare_cell(old, new))
    return checks
