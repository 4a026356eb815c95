"""Cells of a grid: their frozen episode files, and scoring one cell."""
from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from ..config import FewShotConfig
from ..data import FewShotDataset
from ..episodes import Episode, file_sha256, load_episodes, save_episodes
from ..evaluation import evaluate, mean_ci95
from ..provenance import PROJECT_ROOT, json_sha256
from .config import BenchConfig, BenchLearner


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
    from ..experiment import build_episodes

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
