"""run_benchmark: score every cell of a grid, saving after each, continuing a saved report."""
from __future__ import annotations

import os
import time
from pathlib import Path

from ..atomic import atomic_write_text
from ..config import FewShotConfig
from ..data import FewShotDataset
from ..episodes import file_sha256
from ..provenance import PROJECT_ROOT, collect_provenance, git_commit
from ..published import figures_for
from .cells import CellSpec, episodes_path, frozen_episodes, grid, score_cell
from .config import REPORT_JSON, REPORT_MD, BenchConfig
from .report import BenchmarkReport, now


class BenchResources:
    """Datasets and learners built once per benchmark run and shared by its cells."""

    def __init__(self, cfg: BenchConfig):
        self.cfg = cfg
        self.datasets: dict[str, FewShotDataset] = {}
        self.learners: dict[tuple[str, str, str], object] = {}

    def dataset(self, name: str) -> FewShotDataset:
        if name not in self.datasets:
            from ..experiment import build_dataset

            self.datasets[name] = build_dataset(FewShotConfig.from_dict(
                {"data": {"dataset": name, "data_root": self.cfg.data_root}}))
        return self.datasets[name]

    def learner(self, cell: CellSpec, run_cfg: FewShotConfig, dataset: FewShotDataset):
        key = (cell.learner.label, dataset.modality, repr(sorted(dataset.encoder_options.items())))
        if key not in self.learners:
            from ..experiment import build_learner

            self.learners = {key: build_learner(run_cfg, dataset)}  # keep one learner in memory
        run_cfg.learner = self.learners[key].cfg  # the resolved options (e.g. the encoder's metric)
        return self.learners[key]


def run_cell(cfg: BenchConfig, cell: CellSpec, res: BenchResources, progress: bool = True) -> dict:
    """Score one cell and return its report entry."""
    dataset = res.dataset(cell.dataset)
    path, eps, digest = frozen_episodes(cfg, cell, dataset)
    run_cfg = cell.run_config(cfg, str(path))
    learner = res.learner(cell, run_cfg, dataset)
    shape = {"way": cell.way, "shot": cell.shot, "query": cfg.query}
    if cell.protocol:
        shape = {"way": eps[0].n_way, "shot": int(len(eps[0].support) // eps[0].n_way),
                 "query": int(len(eps[0].query) // eps[0].n_way)}
    scored = score_cell(learner, dataset, eps, batch_size=cfg.batch_size, protocol=cell.protocol,
                        progress=progress)
    figures = figures_for(cell.dataset, cell.way, cell.shot, cell.protocol)
    return {
        "key": cell.key, "config_hash": cell.config_hash(cfg), "dataset": cell.dataset,
        "dataset_fingerprint": dataset.fingerprint(), "learner": cell.learner.label,
        "learner_config": dict(cell.learner.learner), "checkpoint": cell.learner.checkpoint,
        "checkpoint_sha256": cell.learner.weights_sha256(),
        "encoder": learner.encoder.name, "encoder_fingerprint": learner.encoder.fingerprint(),
        "deterministic": _deterministic(learner, cfg), "protocol": cell.protocol, **shape,
        "seed": None if cell.protocol else cfg.seed, "episodes_file": _display_path(path), "episodes_sha256": digest,
        **scored, "published": [dict(f.to_dict(), short=f.short()) for f in figures], "finished_at": now(),
        "git_commit": git_commit()["commit"],
    }


def _still_valid(old: dict, cfg: BenchConfig, cell: CellSpec, res: BenchResources) -> bool:
    """A saved cell is reused when its config hash matches and its episode file is unchanged."""
    if old.get("config_hash") != cell.config_hash(cfg):
        return False
    path = episodes_path(cfg, cell, res.dataset(cell.dataset))
    return path.is_file() and file_sha256(path) == old.get("episodes_sha256")


def _display_path(path: Path) -> str:
    """``path`` relative to the project root when inside it (reports stay valid in another checkout)."""

    try:
        return str(path.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)


def _deterministic(learner, cfg: BenchConfig) -> bool:
    """A frozen encoder on the CPU gives bit-identical accuracies on a rerun."""
    return str(learner.device) == "cpu" and not learner.adapts_encoder


def run_benchmark(cfg: BenchConfig, out_dir: str | os.PathLike | None = None, progress: bool = True,
                  resume: bool = True, command: str | None = None) -> BenchmarkReport:
    """Run every cell of ``cfg``; with ``out_dir`` save after each cell and skip cells saved before.

    A cell is reused from ``out_dir/report.json`` when its key and config hash
    match. KeyboardInterrupt propagates after the finished cells are saved.
    """
    from ..evaluation import progress_bar
    from ..plots import write_plots

    start = time.perf_counter()
    out = Path(out_dir) if out_dir is not None else None
    previous = BenchmarkReport.load(out) if out is not None and resume and (out / REPORT_JSON).is_file() else None
    report = BenchmarkReport(config=cfg.to_dict(), provenance=collect_provenance(cfg.device),
                             started_at=previous.started_at if previous else now())
    prior_wall = previous.wall_time_s if previous else 0.0
    res = BenchResources(cfg)
    cells = grid(cfg, {name: res.dataset(name) for name in cfg.datasets})
    with progress_bar(len(cells), "cells", progress) as bar:
        for cell in cells:
            old = previous.cell(cell.key) if previous else None
            if old is not None and _still_valid(old, cfg, cell, res):
                report.cells.append(old)
            else:
                bar.set_postfix_str(cell.key)
                report.cells.append(run_cell(cfg, cell, res, progress))
            report.wall_time_s = prior_wall + time.perf_counter() - start
            if out is not None:
                report.save_json(out)
            bar.update(1)
    report.complete = True
    report.wall_time_s = prior_wall + time.perf_counter() - start
    if out is not None:
        report.save_json(out)
        atomic_write_text(out / REPORT_MD, report.to_markdown(command))
        write_plots(report, out)
    return report
