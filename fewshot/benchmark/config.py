"""The benchmark config: a grid of datasets x learners x way x shot (``configs/bench-*.toml``)."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..config import EpisodeConfig
from ..schema import dataclass_from_dict

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
        from ..learners import learner_config

        if self.learner is None:
            self.learner = self._checkpoint_record()["learner_config"] if self.checkpoint else "protonet"
        if isinstance(self.learner, str):
            self.learner = {"name": self.learner}
        self.learner = learner_config(dict(self.learner)).to_dict()  # validates, fills defaults
        if not self.label:
            what = Path(self.checkpoint).name if self.checkpoint else (self.encoder or "default-encoder")
            self.label = f"{self.learner['name']}-{what}"

    def _checkpoint_record(self) -> dict:
        from ..checkpoint import read_record

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
    notes: str = ""  # printed under the report's table (e.g. earlier figures of the same cells); not a setting

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
        from ..checkpoint import check_scored_classes

        for learner in self.learners:
            if learner.checkpoint:
                check_scored_classes(learner.checkpoint, self.classes)

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
    from ..config import load_config

    return BenchConfig.from_dict(load_config(path))
