"""Encoders: ``create_encoder("minilm")``, ``create_encoder("/path/to/hf-model")``.

Each registered name maps to a spec (a JSON-able dict) that fully describes
the architecture; checkpoints store the spec and the weights (safetensors).
Every module of this package registers its encoders when imported
(:mod:`fewshot.encoders.registry`); this module imports them all once.
"""
from __future__ import annotations

import importlib
import pkgutil

from .base import Encoder
from .registry import (DEFAULT_ENCODER, ENCODER_KINDS, ENCODERS, default_encoder, register_encoder,
                       register_encoder_kind, unknown_encoder)

_CORE = {"base", "registry"}


def _discover() -> None:
    """Import every encoder module of this package (each registers itself)."""
    for mod in pkgutil.iter_modules(__path__):
        if mod.name not in _CORE:
            importlib.import_module(f"{__name__}.{mod.name}")


_discover()


def list_encoders() -> list[str]:
    return sorted(ENCODERS)


def encoder_spec(name: str, **kw) -> dict:
    """The spec for a registered name, a transformers model folder, or a hub id."""
    if name in ENCODERS:
        return ENCODERS[name](**kw)
    from pathlib import Path

    if (Path(name) / "config.json").is_file() or (name.count("/") == 1 and not name.startswith((".", "/"))):
        return {"kind": "text", "name": name, "path": name, **kw}  # a folder, or a hub id (may download)
    raise unknown_encoder(name)


def local_spec(spec: dict) -> dict:
    """A stored spec (in a checkpoint or an index) for this machine: a registered text encoder's model folder is
    where its package installed it here, not where it was on the machine that stored the spec."""
    spec = dict(spec)
    if spec.get("name") in ENCODERS and spec.get("kind") == "text":
        spec["path"] = encoder_spec(spec["name"])["path"]
    return spec


def build_encoder(spec: dict) -> Encoder:
    """Instantiate an encoder from a spec (as stored in a checkpoint), in eval mode."""
    kind = spec.get("kind")
    if kind not in ENCODER_KINDS:
        raise ValueError(f"encoder spec has unknown kind {kind!r}; expected one of {sorted(ENCODER_KINDS)}")
    return ENCODER_KINDS[kind](spec).eval()


def create_encoder(name: str, **kw) -> Encoder:
    """Build encoder ``name`` (a registered name, a model folder or a hub id) with overrides ``kw``."""
    return build_encoder(encoder_spec(name, **kw))


__all__ = ["DEFAULT_ENCODER", "ENCODERS", "ENCODER_KINDS", "Encoder", "build_encoder", "create_encoder",
           "default_encoder", "encoder_spec", "list_encoders", "local_spec", "register_encoder", "register_encoder_kind"]
