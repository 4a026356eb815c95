"""BenchmarkReport: the results of a grid with their provenance, as JSON and Markdown."""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ..atomic import atomic_write_text
from ..provenance import json_sha256
from ..published import cite, figures_for
from .config import FORMAT, REPORT_JSON


@dataclass
class BenchmarkReport:
    """The results of a grid, with everything needed to reproduce them."""

    config: dict
    provenance: dict
    cells: list[dict] = field(default_factory=list)
    wall_time_s: float = 0.0
    started_at: str = ""
    updated_at: str = ""
    complete: bool = False

    def to_dict(self) -> dict:
        return {"format": FORMAT, "config": self.config, "config_sha256": json_sha256(self.config),
                "provenance": self.provenance, "cells": self.cells, "wall_time_s": round(self.wall_time_s, 3),
                "started_at": self.started_at, "updated_at": self.updated_at, "complete": self.complete}

    @classmethod
    def from_dict(cls, d: dict) -> "BenchmarkReport":
        if d.get("format") != FORMAT:
            raise ValueError(f"expected a {FORMAT!r} report, got format {d.get('format')!r}; "
                             "was it written by `fewshot bench`?")
        return cls(config=d["config"], provenance=d["provenance"], cells=list(d["cells"]),
                   wall_time_s=float(d.get("wall_time_s", 0.0)), started_at=d.get("started_at", ""),
                   updated_at=d.get("updated_at", ""), complete=bool(d.get("complete", False)))

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "BenchmarkReport":
        path = Path(folder) / REPORT_JSON
        if not path.is_file():
            raise ValueError(f"no benchmark report at {path}: expected a folder written by `fewshot bench --out`")
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON ({exc.msg}); rerun `fewshot bench`") from exc
        return cls.from_dict(d)

    def cell(self, key: str) -> dict | None:
        return next((c for c in self.cells if c["key"] == key), None)

    def save_json(self, folder: str | os.PathLike) -> Path:
        self.updated_at = now()
        path = Path(folder) / REPORT_JSON
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n")
        return path

    def to_markdown(self, command: str | None = None) -> str:
        return render_markdown(self, command)


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _pct(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}"


def render_markdown(report: BenchmarkReport, command: str | None = None) -> str:
    """The report as a Markdown table with provenance underneath."""
    cfg, prov = report.config, report.provenance
    lines = [f"## {cfg.get('name', 'bench')}", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    lines += ["| dataset | learner | task | episodes | accuracy % (95% CI) | error % | s/episode | "
              "published / reference |", "|---|---|---|---:|---:|---:|---:|---|"]
    for c in report.cells:
        task = "protocol" if c["protocol"] else f"{c['way']}-way {c['shot']}-shot, {c['query']} q"
        err = f"{_pct(c['error_rate'])} ({c['errors']}/{c['queries']})" if c["protocol"] else ""
        figures = figures_for(c["dataset"], c["way"], c["shot"], c["protocol"])
        pub = cite(figures) or "-"
        lines.append(f"| {c['dataset']} | {c['learner']} | {task} | {c['episodes']} | "
                     f"{_pct(c['accuracy_mean'])} +- {_pct(c['accuracy_ci95'])} | {err} | "
                     f"{c['seconds_per_episode']:.4f} | {pub} |")
    if cfg.get("notes"):
        lines += ["", cfg["notes"].strip()]
    kinds = {f.kind for c in report.cells for f in figures_for(c["dataset"], c["way"], c["shot"], c["protocol"])}
    if "reference" in kinds:
        lines += ["", "Figures marked *reference* were measured by the data's curators with the same frozen encoder "
                  "but on their own random class split (one third of the classes held out), not on fewshot's "
                  "versioned split (`episodes/splits/`); they show the order of magnitude, not the same protocol."]
    if "published" in kinds:
        lines += ["", "Figures marked *published* come from the cited paper on the same protocol; error = wrong / "
                  "total test items, as the official scorer counts."]
    commits = sorted({c["git_commit"] for c in report.cells if c.get("git_commit")})
    git = prov.get("git", {})
    libs = prov.get("libraries", {})
    mach = prov.get("machine", {})
    sampled = [c for c in report.cells if not c["protocol"]]
    episodes_line = (f"Sampled episodes: seed {cfg.get('seed')}, {cfg.get('query')} queries per class, classes "
                     f"{cfg.get('classes')!r}. " if sampled else "")
    if len(sampled) < len(report.cells):
        episodes_line += "Protocol cells score exactly the dataset's own protocol episodes. "
    lines += ["", f"{episodes_line}95% CI = 1.96 s / sqrt(episodes). "
              f"fewshot {prov.get('fewshot_version')} at commit {str(git.get('commit'))[:12]}"
              f"{' (dirty)' if git.get('dirty') else ''}; "
              + ", ".join(f"{k} {v}" for k, v in libs.items() if v) + "; "
              f"device {mach.get('device')} ({mach.get('cpu')}, {mach.get('torch_threads')} threads"
              f"{', ' + mach['gpu'] if mach.get('gpu') else ''}); wall time {report.wall_time_s:.1f} s."
              + (f" Cells computed at commit(s) {', '.join(c[:12] for c in commits)}." if commits else ""), "",
              "| cell | episode file | sha256 | encoder fingerprint | checkpoint (weights sha256) |",
              "|---|---|---|---|---|"]
    for c in report.cells:
        ckpt = f"{c['checkpoint']} ({c['checkpoint_sha256'][:16]})" if c.get("checkpoint_sha256") else "-"
        lines.append(f"| {c['key']} | {Path(c['episodes_file']).name} | {c['episodes_sha256'][:16]} | "
                     f"{c['encoder']} {c['encoder_fingerprint']} | {ckpt} |")
    return "\n".join(lines) + "\n"
