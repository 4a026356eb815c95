"""Encoder registry: ``create_encoder("minilm")``, ``create_encoder("/path/to/hf-model")``.

Each registered name maps to a spec (a JSON-able dict) that fully describes
the architecture; checkpoints store the spec and the weights (safetensors).
"""
from __future__ import annotations

import difflib
from collections.abc import Callable

from .base import Encoder

ENCODERS: dict[str, Callable[..., dict]] = {}


def register_encoder(name: str):
    """Register a function returning the default spec of encoder ``name``."""

    def wrap(fn):
        ENCODERS[name] = fn
        return fn

    return wrap


@register_encoder("minilm")
def _minilm(**kw) -> dict:
    from .text import minilm_path

    return {"kind": "text", "name": "minilm", "path": minilm_path(), **kw}


@register_encoder("conv4")
def _conv4(**kw) -> dict:
    return {"kind": "conv4", "name": "conv4", "image_size": 28, "channels": 1, "hidden": 64, **kw}


@register_encoder("mobilenetv2")
def _mobilenetv2(**kw) -> dict:
    return {"kind": "mobilenetv2", "name": "mobilenetv2", "image_size": 84, **kw}


def list_encoders() -> list[str]:
    return sorted(ENCODERS)


def encoder_spec(name: str, **kw) -> dict:
    """The spec for a registered name, a transformers model folder, or a hub id."""
    if name in ENCODERS:
        return ENCODERS[name](**kw)
    from .text import is_transformers_folder

    if is_transformers_folder(name):
        return {"kind": "text", "name": name, "path": name, **kw}
    if name.count("/") == 1 and not name.startswith((".", "/")):
        return {"kind": "text", "name": name, "path": name, **kw}  # hub id; transformers may download
    close = difflib.get_close_matches(name, list_encoders(), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(
        f"unknown encoder {name!r}: expected one of {list_encoders()}, a folder holding a transformers "
        f"model (with config.json), or a hub id like 'org/model'.{hint}"
    )


def build_encoder(spec: dict) -> Encoder:
    """Instantiate an encoder from a spec (as stored in a checkpoint), in eval mode."""
    return _instantiate(spec).eval()


def _instantiate(spec: dict) -> Encoder:
    kind = spec.get("kind")
    if kind == "text":
        from .text import TextEncoder

        return TextEncoder(spec)
    if kind == "conv4":
        from .image import Conv4Encoder

        return Conv4Encoder(spec)
    if kind == "mobilenetv2":
        from .image import MobileNetV2Encoder

        return MobileNetV2Encoder(spec)
    raise ValueError(f"encoder spec has unknown kind {kind!r}; expected text, conv4 or mobilenetv2")


def create_encoder(name: str, **kw) -> Encoder:
    """Build encoder ``name`` (a registered name, a model folder or a hub id) with overrides ``kw``."""
    return build_encoder(encoder_spec(name, **kw))


__all__ = ["ENCODERS", "Encoder", "build_encoder", "create_encoder", "encoder_spec", "list_encoders",
           "register_encoder"]
