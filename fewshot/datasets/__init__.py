"""Datasets: ``load_dataset("clinc150")``, ``load_dataset("my.csv")``.

Named datasets read the publishers' own files under a data root
(``--data-root``, ``$FEWSHOT_DATA``, else ``../shared/data`` beside a source
checkout) and take their class split from the package's ``splits/<name>.json``.
A path to a user's file or folder is loaded by :mod:`fewshot.datasets.files`.
Every loader module of this package registers its datasets when imported
(:mod:`fewshot.datasets.registry`); this module imports them all once.
"""
from __future__ import annotations

import difflib
import importlib
import os
import pkgutil

from ..data import FewShotDataset
from .files import load_path
from .ner import is_tagged_path, read_tagged_path
from .registry import DATASETS, DEFAULT_DATASET, cache_dir, data_root, load_split, register_dataset, require_file

for _mod in pkgutil.iter_modules(__path__):
    if _mod.name not in ("registry", "files"):
        importlib.import_module(f"{__name__}.{_mod.name}")


def list_datasets() -> list[str]:
    return sorted(DATASETS)


def load_dataset(name: str, data_root_dir: str | os.PathLike | None = None, **kw) -> FewShotDataset:
    """Load a registered dataset by name, or a user's file or folder by path."""
    if name in DATASETS:
        return DATASETS[name](data_root(data_root_dir), **kw)
    if os.path.exists(name):
        return read_tagged_path(name) if is_tagged_path(name) else load_path(name, **kw)
    close = difflib.get_close_matches(name, sorted(DATASETS), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(
        f"unknown dataset {name!r}: expected one of {sorted(DATASETS)} or a path to a CSV/TSV/JSONL file, "
        "a tagged .conll file or .jsonl file of tokens and tags, "
        f"an .npz file or a folder of images with one subfolder per class.{hint}"
    )


__all__ = ["DATASETS", "DEFAULT_DATASET", "cache_dir", "data_root", "list_datasets", "load_dataset", "load_split",
           "register_dataset", "require_file"]
