"""Learner registry: each learner module registers its class with :func:`register_learner`.

The class carries its name and its config class (``name``, ``config_class``),
so ``create_learner("maml", encoder, {"inner_lr": 0.4})`` and
``learner_config({"name": "maml", ...})`` need nothing else.
"""
from __future__ import annotations

import difflib

from ..schema import dataclass_from_dict
from .base import Learner, LearnerConfig

LEARNERS: dict[str, type[Learner]] = {}
DEFAULT_LEARNER = "protonet"
# per dataset task ("joint-episodes": a joint dataset with an intent split, scored on few-shot episodes)
DEFAULT_LEARNERS = {"classify": DEFAULT_LEARNER, "ner": "protobert", "joint": "joint", "joint-episodes": "protojoint"}


def default_learner(task: str) -> str:
    """The learner a run on a dataset of ``task`` ("classify", "ner") uses when none is named."""
    if task not in DEFAULT_LEARNERS:
        raise ValueError(f"no default learner for task {task!r}; expected one of {sorted(DEFAULT_LEARNERS)}")
    return DEFAULT_LEARNERS[task]


def register_learner(cls: type[Learner]) -> type[Learner]:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} must set a class attribute `name` to be registered")
    if cls.name in LEARNERS and LEARNERS[cls.name] is not cls:
        raise ValueError(f"learner {cls.name!r} is already registered by {LEARNERS[cls.name].__qualname__}; "
                         "choose another name")
    LEARNERS[cls.name] = cls
    return cls


def learner_class(name: str) -> type[Learner]:
    if name not in LEARNERS:
        close = difflib.get_close_matches(str(name), list(LEARNERS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown learner {name!r}: expected one of {sorted(LEARNERS)}.{hint}")
    return LEARNERS[name]


def learner_config(spec: str | dict | LearnerConfig | None = None, strict: bool = True) -> LearnerConfig:
    """A validated LearnerConfig from a name, a dict with a "name" key, or None (protonet)."""
    if isinstance(spec, LearnerConfig):
        return spec
    d = {"name": spec} if isinstance(spec, str) else dict(spec or {})
    cls = learner_class(d.pop("name", DEFAULT_LEARNER)).config_class
    return dataclass_from_dict(cls, d, strict, where="learner.")


def create_learner(name: str, encoder, cfg: LearnerConfig | dict | None = None) -> Learner:
    cls = learner_class(name)
    if cfg is None or isinstance(cfg, dict):
        cfg = learner_config({"name": name, **(cfg or {})})
    return cls(encoder, cfg)
