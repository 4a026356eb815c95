"""The ``fewshot`` command line (click). It parses, builds a config and calls the package.

Heavy libraries (torch, transformers, faiss) are imported inside commands, so
``fewshot --help`` is instant. Bad input (ValueError, a missing
optional package, a missing file) becomes one clear message and exit code 2;
anything else (a TypeError included) is a bug and keeps its traceback.
"""
from __future__ import annotations

from . import bench, catalog, episodes, index, run, serve, train  # noqa: F401  (each registers its commands on main)
from .app import main

__all__ = ["main"]
