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

import json
import math
import os
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional


from .atomic import atomic_write_text
from .config import EpisodeConfig, FewShotConfig, dataclass_from_dict
from .data import FewShotDataset
from .episodes import Episode, file_sha256, load_episodes, save_episodes
from .evaluation import evaluate, mean_ci95
from .provenance import PROJECT_ROOT, collect_provenance, git_commit, json_sha256
from .published import cite, figures_for

FORMAT = "fewshot-bench/1"
REPORT_JSON, REPORT_MD = "report.json", "report.md"


@dataclass
class BenchLearner:
    """One learner column of the grid: a frozen pretrained encoder, or a checkpoint folder."""

    label: str = ""
    learner: Any = None  # a name or {name = ..., options}; default protonet, or the checkpoint's own learner
    encoder: Optional[str] = None  # None: minilm for text, mobilenetv2 for images
    encoder_options: dict = field(default_factory=dict)
    checkpoint: Optional[str] = None

    def __post_init__(self) -> None:
        from .learners import learner_config

        if self.learner is None:
            self.learner = self._checkpoint_record()["learner_config"] if self.checkpoint else "protonet"
        if isinstance(self.learner, str):
            self.learner = {"name": self.learner}
        self.learner = learner_config(dict(self.learner)).to_dict()  # validates, fills defaults
        if not self.label:
            what = Path(self.checkpoint).name if self.checkpoint else (self.encoder or "default-encoder")
            self.label = f"{self.learner['name']}-{what}"

    def _checkpoint_record(self) -> dict:
        from .checkpoint import read_record

        return read_record(self.checkpoint)

    def weights_sha256(self) -> Optional[str]:
        """The checkpoint's weights hash (a retrained checkpoint in the same folder is a different learner)."""
        return self._checkpoint_record()["weights_sha256"] if self.checkpoint else None


@dataclass
class BenchConfig:
    """A benchmark grid. ``[[learners]]`` tables become :class:`BenchLearner`."""

    name: str = "bench"
    datasets: list[str] = field(default_factory=lambda: ["wn33"])
    learners: list = field(default_factory=list)
    ways: list[int] = field(default_factory=lambda: [5])
    shots: list[int] = field(default_factory=lambda: [1, 5])
    query: int = 15
    episodes: int = 600
    seed: int = 0
    classes: str = "test"
    data_root: Optional[str] = None
    device: str = "auto"
    batch_size: int = 128
    episodes_dir: Optional[str] = None  # default: the project's episodes/

    def __post_init__(self) -> None:
        self.learners = [_bench_learner(x, i) for i, x in enumerate(self.learners or [{}])]
        labels = [x.label for x in self.learners]
        if len(set(labels)) != len(labels):
            raise ValueError(f"learner labels must be unique, got {labels}; give each [[learners]] a `label`")
        if not self.datasets:
            raise ValueError("bench config: `datasets` is empty; list at least one dataset, e.g. datasets = [\"wn33\"]")
        for w in self.ways:
            for s in self.shots:  # reuse the episode checks and their messages
                EpisodeConfig(way=w, shot=s, query=self.query, episodes=self.episodes, seed=self.seed,
                              classes=self.classes)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")

    @classmethod
    def from_dict(cls, d: dict, strict: bool = True) -> "BenchConfig":
        return dataclass_from_dict(cls, d, strict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["learners"] = [asdict(x) for x in self.learners]
        return d


def _bench_learner(x, i: int) -> BenchLearner:
    if isinstance(x, BenchLearner):
        return x
    if isinstance(x, str):
        x = {"learner": x}
    if not isinstance(x, dict):
        raise TypeError(f"learners[{i}]: expected a table like {{learner = \"protonet\", encoder = \"minilm\"}}, "
                        f"got {type(x).__name__} {x!r}")
    return dataclass_from_dict(BenchLearner, x, strict=True, where=f"learners[{i}].")


def load_bench_config(path: str | os.PathLike) -> BenchConfig:
    from .config import load_config

    return BenchConfig.from_dict(load_config(path))


# ----------------------------------------------------------------------------- cells


@dataclass(frozen=True)
class CellSpec:
    dataset: str
    learner: BenchLearner
    way: Optional[int]  # None: the dataset's protocol episodes
    shot: Optional[int]

    @property
    def protocol(self) -> bool:
        return self.way is None

    @property
    def key(self) -> str:
        shape = "protocol" if self.protocol else f"{self.way}w{self.shot}s"
        return f"{self.dataset}/{self.learner.label}/{shape}"

    def config_hash(self, cfg: BenchConfig) -> str:
        """What decides the cell's numbers; a resumed run reuses a saved cell only if this matches."""
        return json_sha256({"dataset": self.dataset, "data_root": cfg.data_root, "learner": asdict(self.learner),
                            "weights_sha256": self.learner.weights_sha256(),
                            "way": self.way, "shot": self.shot, "query": cfg.query, "episodes": cfg.episodes,
                            "seed": cfg.seed, "classes": cfg.classes, "device": cfg.device,
                            "batch_size": cfg.batch_size})

    def run_config(self, cfg: BenchConfig, episodes_file: Optional[str]) -> FewShotConfig:
        b = self.learner
        return FewShotConfig.from_dict({
            "data": {"dataset": self.dataset, "data_root": cfg.data_root},
            "episodes": {"way": self.way or 2, "shot": self.shot or 1, "query": cfg.query,
                         "episodes": cfg.episodes, "seed": cfg.seed, "classes": cfg.classes,
                         "episodes_file": episodes_file},
            "encoder": b.encoder, "encoder_options": b.encoder_options, "learner": dict(b.learner),
            "checkpoint": b.checkpoint, "device": cfg.device, "batch_size": cfg.batch_size,
        })


def protocol_episodes(dataset: FewShotDataset) -> list[Episode]:
    """The episodes a dataset prescribes (e.g. the 20 official Omniglot runs); empty if none."""
    return list(getattr(dataset, "episodes", None) or [])


def grid(cfg: BenchConfig, datasets: dict[str, FewShotDataset]) -> list[CellSpec]:
    """Every cell, in run order: dataset, then learner, then way, then shot."""
    cells = []
    for name in cfg.datasets:
        for b in cfg.learners:
            if protocol_episodes(datasets[name]):
                cells.append(CellSpec(name, b, None, None))
            else:
                cells.extend(CellSpec(name, b, w, s) for w in cfg.ways for s in cfg.shots)
    return cells


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(name).name if os.sep in name else name).strip("_") or "data"


def episodes_path(cfg: BenchConfig, cell: CellSpec, dataset: FewShotDataset) -> Path:
    """Deterministic file name of a cell's frozen episodes."""
    folder = Path(cfg.episodes_dir) if cfg.episodes_dir else \
        Path(os.environ.get("FEWSHOT_EPISODES", PROJECT_ROOT / "episodes"))
    if cell.protocol:
        return folder / f"{_safe(cell.dataset)}-protocol-{len(protocol_episodes(dataset))}ep.jsonl"
    split = "" if cfg.classes == "test" else f"-{cfg.classes}"
    return folder / (f"{_safe(cell.dataset)}{split}-{cell.way}w{cell.shot}s{cfg.query}q-{cfg.episodes}ep"
                     f"-seed{cfg.seed}.jsonl")


def frozen_episodes(cfg: BenchConfig, cell: CellSpec, dataset: FewShotDataset) -> tuple[Path, list[Episode], str]:
    """(path, episodes, sha256) of a cell's episode file, writing it from the seed on first use."""
    from .experiment import build_episodes

    path = episodes_path(cfg, cell, dataset)
    if not path.is_file():
        if cell.protocol:
            eps = protocol_episodes(dataset)
            meta = {"sampler": "protocol", "seed": None}
        else:
            eps, meta = build_episodes(cell.run_config(cfg, episodes_file=None), dataset)
        save_episodes(path, eps, {"dataset": dataset.name, "dataset_fingerprint": dataset.fingerprint(),
                                  "classes": cfg.classes, **meta})
    header, eps = load_episodes(path)
    if header.get("dataset_fingerprint") != dataset.fingerprint():
        raise ValueError(f"episode file {path} was made from dataset fingerprint {header.get('dataset_fingerprint')} "
                         f"but {dataset.name!r} now has {dataset.fingerprint()}; the data changed: delete the file "
                         "to make new episodes (results will not be comparable with older reports)")
    if not cell.protocol and (header.get("way"), header.get("shot"), header.get("query"), header.get("seed"),
                              len(eps)) != (cell.way, cell.shot, cfg.query, cfg.seed, cfg.episodes):
        raise ValueError(f"episode file {path} holds {header.get('way')}-way {header.get('shot')}-shot "
                         f"{header.get('query')}-query seed {header.get('seed')} x {len(eps)} episodes, not what its "
                         "name says; delete it to make it again")
    return path, eps, file_sha256(path)


def protocol_errors(accuracies: Sequence[float], episodes: Sequence[Episode]) -> tuple[int, int]:
    """(wrong, total) query counts over episodes, from per-episode accuracies (the official scorer's count)."""
    wrong = sum(int(round((1.0 - a) * len(ep.query))) for a, ep in zip(accuracies, episodes))
    return wrong, sum(len(ep.query) for ep in episodes)


def score_cell(learner, dataset: FewShotDataset, episodes: Sequence[Episode], batch_size: int = 128,
               protocol: bool = False, progress: bool = True) -> dict:
    """Accuracy (mean, 95% CI, per episode) and timing of ``learner`` on ``episodes``.

    With ``protocol`` also the error rate = wrong / total queries, as Lake et
    al.'s official Omniglot scorer computes it over its 20 runs x 20 test items.
    """
    result = evaluate(learner, dataset, episodes, batch_size=batch_size, progress=progress)
    mean, ci = mean_ci95(result.accuracies)
    out = {"accuracy_mean": mean, "accuracy_ci95": ci, "accuracies": [float(a) for a in result.accuracies],
           "episodes": len(episodes), "seconds": round(result.elapsed_s, 4),
           "seconds_per_episode": result.elapsed_s / len(episodes), "embedded_examples": result.n_embedded}
    if protocol:
        wrong, total = protocol_errors(result.accuracies, episodes)
        out.update({"errors": wrong, "queries": total, "error_rate": wrong / total})
    return out


# ----------------------------------------------------------------------------- report


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
        self.updated_at = _now()
        path = Path(folder) / REPORT_JSON
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n")
        return path

    def to_markdown(self, command: str | None = None) -> str:
        return render_markdown(self, command)


def _now() -> str:
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


# ----------------------------------------------------------------------------- runner


class BenchResources:
    """Datasets and learners built once per benchmark run and shared by its cells."""

    def __init__(self, cfg: BenchConfig):
        self.cfg = cfg
        self.datasets: dict[str, FewShotDataset] = {}
        self.learners: dict[tuple[str, str], object] = {}

    def dataset(self, name: str) -> FewShotDataset:
        if name not in self.datasets:
            from .experiment import build_dataset

            self.datasets[name] = build_dataset(FewShotConfig.from_dict(
                {"data": {"dataset": name, "data_root": self.cfg.data_root}}))
        return self.datasets[name]

    def learner(self, cell: CellSpec, run_cfg: FewShotConfig, modality: str):
        key = (cell.learner.label, modality)
        if key not in self.learners:
            from .experiment import build_learner

            self.learners = {key: build_learner(run_cfg, modality)}  # keep one learner in memory
        run_cfg.learner = self.learners[key].cfg  # the resolved options (e.g. the encoder's metric)
        return self.learners[key]


def run_cell(cfg: BenchConfig, cell: CellSpec, res: BenchResources, progress: bool = True) -> dict:
    """Score one cell and return its report entry."""
    dataset = res.dataset(cell.dataset)
    path, eps, digest = frozen_episodes(cfg, cell, dataset)
    run_cfg = cell.run_config(cfg, str(path))
    learner = res.learner(cell, run_cfg, dataset.modality)
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
        **scored, "published": [dict(f.to_dict(), short=f.short()) for f in figures], "finished_at": _now(),
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
    from .evaluation import progress_bar
    from .plots import write_plots

    start = time.perf_counter()
    out = Path(out_dir) if out_dir is not None else None
    previous = BenchmarkReport.load(out) if out is not None and resume and (out / REPORT_JSON).is_file() else None
    report = BenchmarkReport(config=cfg.to_dict(), provenance=collect_provenance(cfg.device),
                             started_at=previous.started_at if previous else _now())
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


# ----------------------------------------------------------------------------- check


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
