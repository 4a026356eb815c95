"""Dataset registry: ``load_dataset("clinc150")``, ``load_dataset("my.csv")``.

Named datasets read the publishers' own files under a data root
(``--data-root``, ``$FEWSHOT_DATA``, else ``../shared/data`` beside the
project) and take their class split from ``episodes/splits/<name>.json``.
A path to a user's file or folder is loaded by :mod:`fewshot.datasets.files`.
"""
from __future__ import annotations

import difflib
import json
import os
from collections.abc import Callable
from pathlib import Path

from ..data import FewShotDataset

DATASETS: dict[str, Callable[..., FewShotDataset]] = {}
DEFAULT_DATASET = "wn33"

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def register_dataset(name: str):
    def wrap(fn):
        DATASETS[name] = fn
        return fn

    return wrap


def list_datasets() -> list[str]:
    _import_loaders()
    return sorted(DATASETS)


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Where named datasets live: ``root``, else ``$FEWSHOT_DATA``, else ``../shared/data``."""
    if root:
        return Path(root)
    if os.environ.get("FEWSHOT_DATA"):
        return Path(os.environ["FEWSHOT_DATA"])
    return PROJECT_ROOT.parent / "shared" / "data"


def episodes_dir() -> Path:
    """The project's ``episodes/`` folder (splits and frozen episode files)."""
    return Path(os.environ.get("FEWSHOT_EPISODES", PROJECT_ROOT / "episodes"))


def load_split(name: str) -> dict[str, list[str]]:
    """The versioned class split of dataset ``name`` from ``episodes/splits/<name>.json``."""
    path = episodes_dir() / "splits" / f"{name}.json"
    if not path.is_file():
        raise ValueError(f"no class split for dataset {name!r}: expected the file {path}")
    d = json.loads(path.read_text())
    return {k: list(d[k]) for k in ("train", "val", "test") if k in d}


def require_file(path: Path, dataset: str, source: str) -> Path:
    """``path`` if it exists, else a ValueError naming where the publisher distributes it."""
    if not path.exists():
        raise ValueError(
            f"dataset {dataset!r}: expected {path} but it does not exist. Download it from {source} "
            "and point --data-root (or FEWSHOT_DATA) at the folder that holds it"
        )
    return path


def load_dataset(name: str, data_root_dir: str | os.PathLike | None = None, **kw) -> FewShotDataset:
    """Load a registered dataset by name, or a user's file or folder by path."""
    _import_loaders()
    if name in DATASETS:
        return DATASETS[name](data_root(data_root_dir), **kw)
    if os.path.exists(name):
        from .files import load_path

        return load_path(name, **kw)
    close = difflib.get_close_matches(name, sorted(DATASETS), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(
        f"unknown dataset {name!r}: expected one of {sorted(DATASETS)} or a path to a CSV/TSV/JSONL file, "
        f"an .npz file or a folder of images with one subfolder per class.{hint}"
    )


def _import_loaders() -> None:
    from . import embedded  # noqa: F401  (registers on import)

    for module in ("text", "images"):
        try:
            __import__(f"{__name__}.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{module}":
                raise


__all__ = ["DATASETS", "DEFAULT_DATASET", "data_root", "episodes_dir", "list_datasets", "load_dataset",
           "load_split", "register_dataset", "require_file"]
