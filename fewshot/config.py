"""Typed configuration: file (TOML/YAML), then CLI flags, then validation.

``FewShotConfig.from_dict(d, strict=True)`` rejects unknown keys with the
closest valid key; values are coerced by field type (YAML reads ``1e-3`` as a
string, TOML as a float: both become floats). The ``[learner]`` table is
validated by the config class the learner registered (see
:mod:`fewshot.learners`).
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

from . import __version__
from .atomic import atomic_write_text
from .learners import learner_config
from .schema import dataclass_from_dict, finite


@dataclass
class DataConfig:
    """Which dataset and how to read it."""

    dataset: str = "wn33"
    data_root: Optional[str] = None
    text_column: str = "text"
    label_column: str = "label"
    extra_train: list[str] = field(default_factory=list)  # datasets whose train classes join training
    extra_val: list[str] = field(default_factory=list)  # datasets whose val classes join validation

    def __post_init__(self) -> None:
        if not self.dataset:
            raise ValueError("data.dataset is empty: give a dataset name or a path to a file or folder")
        for key in ("extra_train", "extra_val"):
            names = getattr(self, key)
            if len(set(names)) != len(names) or self.dataset in names:
                raise ValueError(f"data.{key} must name other datasets, each once; got {names} "
                                 f"(dataset {self.dataset!r})")


def check_seed(seed: int, option: str) -> None:
    """A ValueError naming ``option`` unless ``seed`` is an integer numpy and torch both take (0 .. 2**32 - 1)."""
    if not 0 <= seed < 2**32:
        raise ValueError(f"{option} must be an integer from 0 to {2**32 - 1}, got {seed}; pass e.g. {option} 0"
                         if option.startswith("--") else f"{option} must be from 0 to {2**32 - 1}, got {seed}")


DEFAULT_EPISODES = 600  # episodes sampled when --episodes is not given


@dataclass
class EpisodeConfig:
    """Shape and number of evaluation episodes."""

    way: int = 5
    shot: int = 1
    query: int = 15
    episodes: Optional[int] = None  # None: DEFAULT_EPISODES sampled, or every episode of episodes_file / a protocol
    seed: int = 0
    sampler: str = "fixed"  # fixed | variable (Meta-Dataset) | minimum-including (NER: Hou et al. 2020)
    classes: str = "test"  # train | val | test | all
    episodes_file: Optional[str] = None
    class_names: bool = False  # each class's description joins its support set (FewShotDataset.class_items)

    def __post_init__(self) -> None:
        check_seed(self.seed, "--seed")
        for name, low in (("way", 2), ("shot", 1), ("query", 1), ("episodes", 1)):
            if getattr(self, name) is not None and getattr(self, name) < low:
                raise ValueError(f"--{name} must be at least {low}, got {getattr(self, name)}")
        if self.sampler not in ("fixed", "variable", "minimum-including"):
            raise ValueError(f"--sampler must be 'fixed', 'variable' or 'minimum-including', got {self.sampler!r}")
        if self.classes not in ("train", "val", "test", "all"):
            raise ValueError(f"--classes must be train, val, test or all, got {self.classes!r}")


TAG_EPISODES = ("fewnerd", "domain")


@dataclass
class TrainConfig:
    """How ``fewshot train`` trains: episodes (or batches), optimiser, validation, early stopping.

    Training episodes come from the train classes only; validation episodes from
    the val classes, shaped like the evaluation episodes (``[episodes]`` way/shot/query).
    Episode ``i`` of the run is a pure function of ``(seed, i)``.
    """

    steps: int = 500
    eval_every: int = 50
    patience: int = 5  # evaluations without improvement before stopping; 0 = never stop early
    lr: float = 2e-5
    head_lr: float = 1e-2  # the learner's own parameters (temperature, head)
    weight_decay: float = 0.01
    warmup: int = 0  # linear warm-up steps, then constant (so resuming changes nothing)
    grad_clip: float = 1.0  # max global grad norm; 0 = off
    train_way: int = 5
    train_shot: int = 1
    train_query: int = 5
    batch_size: int = 32  # supervised learners (finetune pretraining)
    val_way: int = 5
    val_shot: int = 1
    val_query: int = 15
    val_episodes: int = 100
    val_seed: int = 12345
    seed: int = 0
    augment: bool = False
    rotations: bool = False  # images: 90-degree rotations as new train classes (Snell 2017, Finn 2017)
    class_names: bool = False  # episodic: each class's description joins the support set of train and val episodes
    include_val: bool = False  # the val classes train too; nothing validates, the last step is the checkpoint
    # tagged data: "fewnerd" (N-way K~2K episodes, Few-NERD) or "domain" (every type of one domain, minimum-
    # including K-shot sets: Hou et al. 2020; the dataset names each type's domain; train/val way unused)
    tag_episodes: str = "fewnerd"

    def __post_init__(self) -> None:
        check_seed(self.seed, "--seed")
        check_seed(self.val_seed, "train.val_seed")
        for name, low in (("steps", 1), ("eval_every", 1), ("patience", 0), ("warmup", 0), ("train_way", 2),
                          ("train_shot", 1), ("train_query", 1), ("batch_size", 1), ("val_way", 2), ("val_shot", 1),
                          ("val_query", 1), ("val_episodes", 1)):
            if getattr(self, name) < low:
                flag = name.replace("_", "-")
                raise ValueError(f"train.{name} (--{flag}) must be at least {low}, got {getattr(self, name)}")
        for f in fields(self):
            if f.type in (float, "float"):
                finite(float(getattr(self, f.name)), f"train.{f.name}")
        for name in ("lr", "head_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"train.{name} must be positive, got {getattr(self, name)}")
        if self.tag_episodes not in TAG_EPISODES:
            raise ValueError(f"train.tag_episodes (--tag-episodes) must be one of {TAG_EPISODES}, got "
                             f"{self.tag_episodes!r}")
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise ValueError(f"train.weight_decay and train.grad_clip must be >= 0, got "
                             f"{self.weight_decay} and {self.grad_clip}")


@dataclass
class FewShotConfig:
    """Everything a run needs. ``learner`` is validated by the learner's own config class."""

    data: DataConfig = field(default_factory=DataConfig)
    episodes: EpisodeConfig = field(default_factory=EpisodeConfig)
    encoder: Optional[str] = None  # None: minilm for text, mobilenetv2 for images
    encoder_options: dict = field(default_factory=dict)
    learner: Any = None  # a LearnerConfig subclass instance; default protonet
    checkpoint: Optional[str] = None
    # more checkpoint folders scoring with `checkpoint`'s learner: an ensemble (fewshot.learners.ensemble)
    ensemble: list = field(default_factory=list)
    device: str = "auto"
    batch_size: int = 128
    train: TrainConfig = field(default_factory=TrainConfig)
    # whether the learner was named (a [learner] name, --learner): a checkpoint's own learner is kept unless it was
    learner_named: bool = field(default=False, init=False, repr=False, compare=False)
    # the learner options given by key (a [learner] table, -L KEY=VALUE), even at their defaults: each overrides
    # what a checkpoint saved (a LearnerConfig instance names none: its fields off their defaults override)
    learner_keys: tuple = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.learner_named = _names_learner(self.learner)
        self.learner_keys = _learner_keys(self.learner)
        if self.learner is None or isinstance(self.learner, (str, dict)):
            self.learner = learner_config(self.learner)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        self.ensemble = [str(c) for c in ([self.ensemble] if isinstance(self.ensemble, str) else self.ensemble)]
        if self.ensemble and not self.checkpoint:
            raise ValueError(f"ensemble {self.ensemble} adds checkpoints to a first one, but no checkpoint was "
                             "given; pass --checkpoint DIR for the first member")
        members = [str(self.checkpoint), *self.ensemble] if self.ensemble else []
        if len({os.path.realpath(m) for m in members}) < len(members):  # ck and ck/. are one member
            raise ValueError(f"the ensemble names a checkpoint twice ({members}); give each member once")

    @classmethod
    def from_dict(cls, d: dict, strict: bool = True) -> "FewShotConfig":
        d = dict(d)
        d.pop("fewshot_version", None)
        learner = d.pop("learner", None)
        cfg = dataclass_from_dict(cls, d, strict)
        cfg.learner = learner_config(learner, strict=strict)
        cfg.learner_named = _names_learner(learner)
        cfg.learner_keys = _learner_keys(learner)
        return cfg

    def asked_learner(self) -> dict | Any:
        """What :func:`fewshot.checkpoint.load_learner` takes to override a checkpoint's saved learner: the
        options given by key, as a dict with the learner's name (each overrides, even at its default); else the
        learner config (its fields off their defaults override); None when nothing was asked (the checkpoint's
        own learner, as saved)."""
        if self.learner_keys:
            return {"name": self.learner.name, **{k: getattr(self.learner, k) for k in self.learner_keys}}
        if self.learner_named or self.learner != learner_config(None):
            return self.learner
        return None

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        del d["learner_named"], d["learner_keys"]
        d["learner"] = self.learner.to_dict()
        d["fewshot_version"] = __version__
        return d

    def save(self, path: str | os.PathLike) -> None:

        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")


def _learner_keys(spec) -> tuple:
    """The option keys a learner spec gives by name (a dict's, but its name)."""
    return tuple(k for k in spec if k != "name") if isinstance(spec, dict) else ()


def _names_learner(spec) -> bool:
    """Whether a learner spec (None, a name, a dict, a LearnerConfig) names its learner."""
    return spec is not None and (not isinstance(spec, dict) or "name" in spec)


def load_config(path: str | os.PathLike) -> dict:
    """Read a TOML, YAML or JSON config file into a plain dict (its top level must be a table/mapping)."""
    d = _parse_config(Path(path))
    if not isinstance(d, dict):
        raise ValueError(f"config file {path}: expected a table of settings at the top level (e.g. `[episodes]` "
                         f"with `way = 5`), got a {type(d).__name__}; see configs/ for examples")
    return d


def _parse_config(path: Path):
    if not path.is_file():
        raise ValueError(f"config file {str(path)!r} does not exist")
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            import tomllib

            return tomllib.loads(text)
        if path.suffix in (".yaml", ".yml"):
            import yaml

            return yaml.safe_load(text) or {}
        if path.suffix == ".json":
            return json.loads(text)
    except Exception as exc:  # each parser has its own error type
        raise ValueError(f"config file {path} could not be parsed: {exc}") from exc
    raise ValueError(f"config file {path}: expected a .toml, .yaml, .yml or .json file, got {path.suffix!r}")
