"""Learner registry: each learner registers itself with its own config class.

``create_learner("protonet", encoder, cfg)``; ``learner_config({"name": "maml", ...})``.
"""
from __future__ import annotations

import difflib

from .base import Learner, LearnerConfig

LEARNERS: dict[str, type[Learner]] = {}


def register_learner(cls: type[Learner]) -> type[Learner]:
    LEARNERS[cls.name] = cls
    return cls


def _ensure_registered() -> None:
    if LEARNERS:
        return
    from .protonet import ProtoNet

    register_learner(ProtoNet)
    for module, cls in (("finetune", "FineTune"), ("maml", "MAMLLearner")):
        try:
            mod = __import__(f"{__name__}.{module}", fromlist=[cls])
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{module}":
                raise
            continue
        register_learner(getattr(mod, cls))


def list_learners() -> list[str]:
    _ensure_registered()
    return sorted(LEARNERS)


def learner_class(name: str) -> type[Learner]:
    _ensure_registered()
    if name not in LEARNERS:
        close = difflib.get_close_matches(name, list(LEARNERS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown learner {name!r}: expected one of {sorted(LEARNERS)}.{hint}")
    return LEARNERS[name]


def learner_config(spec: str | dict | LearnerConfig | None = None, strict: bool = True) -> LearnerConfig:
    """A validated LearnerConfig from a name, a dict with a "name" key, or None (protonet)."""
    if isinstance(spec, LearnerConfig):
        return spec
    from ..config import dataclass_from_dict

    d = {"name": spec} if isinstance(spec, str) else dict(spec or {})
    cls = learner_class(d.pop("name", "protonet")).config_class
    return dataclass_from_dict(cls, d, strict, where="learner.")


def create_learner(name: str, encoder, cfg: LearnerConfig | dict | None = None) -> Learner:
    cls = learner_class(name)
    if cfg is None or isinstance(cfg, dict):
        cfg = learner_config({"name": name, **(cfg or {})})
    return cls(encoder, cfg)


__all__ = ["LEARNERS", "Learner", "LearnerConfig", "create_learner", "learner_class", "learner_config",
           "list_learners", "register_learner"]
