"""Encoder registry: encoder classes register by ``kind``, named presets by name.

A module that defines an encoder decorates its class with
:func:`register_encoder_kind` and its ready-made configurations with
:func:`register_encoder`; :mod:`fewshot.encoders` imports every module of the
package once, so adding an encoder is one new file.
"""
from __future__ import annotations

import difflib
from collections.abc import Callable

from .base import Encoder

ENCODERS: dict[str, Callable[..., dict]] = {}  # preset name -> spec factory
ENCODER_KINDS: dict[str, type[Encoder]] = {}  # spec["kind"] -> class
DEFAULT_ENCODER = {"text": "minilm", "image": "mobilenetv2"}  # per dataset modality


def register_encoder(name: str):
    """Register a function returning the spec (a JSON-able dict with a "kind") of preset ``name``."""

    def wrap(fn: Callable[..., dict]) -> Callable[..., dict]:
        if name in ENCODERS and ENCODERS[name] is not fn:
            raise ValueError(f"encoder {name!r} is already registered; choose another name")
        ENCODERS[name] = fn
        return fn

    return wrap


def register_encoder_kind(cls: type[Encoder]) -> type[Encoder]:
    """Class decorator: specs whose "kind" is ``cls.kind`` build ``cls``."""
    if not cls.kind:
        raise ValueError(f"{cls.__name__} must set a class attribute `kind` to be registered")
    ENCODER_KINDS[cls.kind] = cls
    return cls


def default_encoder(modality: str) -> str:
    """The encoder fewshot uses for a dataset of ``modality`` ("text" or "image") when none is named."""
    if modality not in DEFAULT_ENCODER:
        raise ValueError(f"no default encoder for modality {modality!r}; expected one of {sorted(DEFAULT_ENCODER)}")
    return DEFAULT_ENCODER[modality]


def unknown_encoder(name: str) -> ValueError:
    close = difflib.get_close_matches(name, list(ENCODERS), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ValueError(f"unknown encoder {name!r}: expected one of {sorted(ENCODERS)}, a folder holding a "
                      f"transformers model (with config.json), or a hub id like 'org/model'.{hint}")
