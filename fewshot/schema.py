"""Typed dataclasses from plain dicts (config files, JSON records).

:func:`dataclass_from_dict` coerces each value by its field's type (YAML reads
``1e-3`` as a string, TOML as a float: both become floats) and rejects an
unknown key, naming the closest valid one.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import fields
from typing import Any


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    try:
        if tp is bool:
            if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
                return value.lower() in ("true", "1", "yes")
            if isinstance(value, bool):
                return value
            raise TypeError
        if tp is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError
            return int(value)
        if tp is float:
            if isinstance(value, bool):
                raise TypeError
            number = float(value)
            if math.isfinite(number):
                return number
        if tp is str:
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise TypeError
            return str(value)
        if origin in (list, tuple):
            if not isinstance(value, (list, tuple)):
                raise TypeError
            return [_coerce(v, args[0], key) for v in value] if args else list(value)
        if origin is dict or tp is dict:
            if not isinstance(value, dict):
                raise TypeError
            return dict(value)
    except (TypeError, ValueError):
        name = getattr(tp, "__name__", str(tp))
        raise ValueError(f"config key {key!r}: expected {name}, got {type(value).__name__} {value!r}") from None
    if tp is float:
        return finite(number, key)
    return value


def finite(value: float, key: str) -> float:
    """``value`` if it is a finite number: inf and nan are never a meaningful setting."""
    if not math.isfinite(value):
        raise ValueError(f"config key {key!r}: expected a finite number, got {value!r}; give a number such as 1e-3")
    return value


def _unknown_key(key: str, valid: list[str], where: str) -> ValueError:
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ValueError(f"unknown config key {where}{key!r}; valid keys are {sorted(valid)}.{hint}")


def dataclass_from_dict(cls, d: dict, strict: bool = True, where: str = ""):
    """Build dataclass ``cls`` from ``d``, coercing by field type; unknown keys raise."""
    hints = typing.get_type_hints(cls)
    valid = {f.name: f for f in fields(cls) if f.init}
    kwargs = {}
    for key, value in d.items():
        if key not in valid:
            if strict:
                raise _unknown_key(key, list(valid), where)
            continue
        tp = hints[key]
        if dataclasses.is_dataclass(tp) and isinstance(value, dict):
            kwargs[key] = dataclass_from_dict(tp, value, strict, f"{where}{key}.")
        else:
            kwargs[key] = _coerce(value, tp, where + key)
    return cls(**kwargs)
