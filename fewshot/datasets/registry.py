"""The dataset registry: named loaders register here; class splits and caches are found here.

Each loader module of :mod:`fewshot.datasets` decorates its loaders with
:func:`register_dataset`. Class splits ship inside the package
(``fewshot/splits``, the same files as the project's ``episodes/splits``), so an
installed wheel reads them without the source tree.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from ..data import FewShotDataset

DATASETS: dict[str, Callable[..., FewShotDataset]] = {}
DEFAULT_DATASET = "wn33"

# A source checkout (setup.cfg beside the package) keeps ../shared/data beside it; an installed package has none.
_CHECKOUT = Path(__file__).resolve().parents[2]


def register_dataset(name: str):
    """Register ``fn(data_root, **kw) -> FewShotDataset`` under ``name``."""

    def wrap(fn):
        if name in DATASETS and DATASETS[name] is not fn:
            raise ValueError(f"dataset {name!r} is already registered; choose another name")
        DATASETS[name] = fn
        return fn

    return wrap


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Where named datasets live: ``root``, else ``$FEWSHOT_DATA``, else ``../shared/data`` beside a source
    checkout."""
    if root:
        return Path(root)
    if os.environ.get("FEWSHOT_DATA"):
        return Path(os.environ["FEWSHOT_DATA"])
    if (_CHECKOUT / "setup.cfg").is_file():
        return _CHECKOUT.parent / "shared" / "data"
    raise ValueError("named datasets read the publishers' files from a data folder: pass --data-root DIR "
                     "(or set FEWSHOT_DATA) to the folder that holds clinc150/, huffpost/, omniglot/, ...")


def cache_dir() -> Path:
    """Where decoded datasets are cached: ``$FEWSHOT_CACHE``, else ``$XDG_CACHE_HOME/fewshot`` (~/.cache/fewshot)."""
    if os.environ.get("FEWSHOT_CACHE"):
        return Path(os.environ["FEWSHOT_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fewshot"


def load_split(name: str) -> dict[str, list[str]]:
    """The versioned class split of dataset ``name`` (``fewshot/splits/<name>.json``, shipped in the package)."""
    path = resources.files("fewshot") / "splits" / f"{name}.json"
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
