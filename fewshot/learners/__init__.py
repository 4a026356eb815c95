"""Learners: protonet, finetune, maml, and any module added to this package.

Every module here registers its learner with
:func:`~fewshot.learners.registry.register_learner` when imported; this
module imports them all once, so adding a learner is one new file (plus its
test). :mod:`~fewshot.learners.ensemble` is the exception: it combines trained
learners (several checkpoints) and is built from them, never from a name.
``create_learner("protonet", encoder, cfg)``; ``learner_config({"name": "maml", ...})``.
"""
from __future__ import annotations

import importlib
import pkgutil

from .base import Learner, LearnerConfig, Serving
from .ensemble import Ensemble
from .registry import (
    DEFAULT_LEARNER,
    LEARNERS,
    create_learner,
    default_learner,
    learner_class,
    learner_config,
    register_learner,
)

_CORE = {"base", "registry", "ensemble"}

for _mod in pkgutil.iter_modules(__path__):
    if _mod.name not in _CORE:
        importlib.import_module(f"{__name__}.{_mod.name}")


def list_learners() -> list[str]:
    return sorted(LEARNERS)


__all__ = ["DEFAULT_LEARNER", "LEARNERS", "Ensemble", "Learner", "LearnerConfig", "Serving", "create_learner", "default_learner", "learner_class",
           "learner_config", "list_learners", "register_learner"]
