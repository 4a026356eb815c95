"""Labelled datasets as fewshot sees them: items, class names, class splits.

Every loader in :mod:`fewshot.datasets` returns a :class:`FewShotDataset`.
Items are strings (text) or ``uint8`` arrays of shape (H, W) or (H, W, C)
(images). Labels are class *names* (strings); nothing assumes 0..n-1.
"""
from __future__ import annotations

import hashlib
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

SPLITS = ("train", "val", "test")


class ClassVocabulary:
    """A bijection between class names and indices 0..n-1, in first-seen order."""

    def __init__(self, names: Iterable[Hashable] = ()):
        self._names: list[Hashable] = []
        self._index: dict[Hashable, int] = {}
        for name in names:
            self.add(name)

    def add(self, name: Hashable) -> int:
        if name not in self._index:
            self._index[name] = len(self._names)
            self._names.append(name)
        return self._index[name]

    def encode(self, names: Iterable[Hashable]) -> np.ndarray:
        try:
            return np.asarray([self._index[n] for n in names], dtype=np.int64)
        except KeyError as exc:
            raise ValueError(
                f"unknown class {exc.args[0]!r}; known classes: {self._names[:20]}"
                + (" ..." if len(self._names) > 20 else "")
            ) from None

    def decode(self, indices: Iterable[int]) -> list[Hashable]:
        return [self._names[int(i)] for i in indices]

    @property
    def names(self) -> list[Hashable]:
        return list(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._index


@dataclass
class FewShotDataset:
    """Items with class-name labels and an optional train/val/test class split.

    ``splits`` maps "train"/"val"/"test" to disjoint lists of class names.
    ``source`` says where the data came from (a path or a package), for reports.
    ``episodes``, when set, are the dataset's own fixed evaluation protocol
    (e.g. the 20 official Omniglot one-shot runs): ``fewshot run`` scores
    exactly these instead of sampling, unless an episodes file is given.
    ``encoder_options`` are the encoder options these items call for, which a fresh
    encoder takes unless the config sets them (FewRel's entity-marked sentences:
    ``{"pooling": "entities"}``; see :func:`fewshot.experiment.build_learner`).
    ``class_items`` maps a class name to one item that describes the class, in the
    dataset's own item format (CLINC150: the intent's name in words; FewRel: the
    relation's name and definition as an entity-marked text), where the publisher
    gives one; evaluation with ``class_names`` adds it to the class's support set
    (:func:`fewshot.evaluation.evaluate`).
    """

    name: str
    modality: str  # "text" or "image"
    items: Sequence
    labels: list[str]
    splits: dict[str, list[str]] = field(default_factory=dict)
    source: str = ""
    episodes: list | None = None  # protocol episodes (fewshot.episodes.Episode), if the dataset has them
    encoder_options: dict = field(default_factory=dict)
    class_items: dict = field(default_factory=dict)
    task = "classify"  # what its labels are: one class per item (fewshot.tagged.TaggedDataset: "ner")

    def __post_init__(self) -> None:
        if self.modality not in ("text", "image"):
            raise ValueError(f"modality must be 'text' or 'image', got {self.modality!r}")
        if len(self.items) != len(self.labels):
            raise ValueError(
                f"dataset {self.name!r}: {len(self.items)} items but {len(self.labels)} labels; "
                "every item needs exactly one label"
            )
        if len(self.items) == 0:
            raise ValueError(f"dataset {self.name!r} is empty: expected at least one labelled example")
        known = set(self.labels)
        seen: dict[str, str] = {}
        for split, names in self.splits.items():
            if split not in SPLITS:
                raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
            missing = [n for n in names if n not in known]
            if missing:
                raise ValueError(
                    f"dataset {self.name!r}: split {split!r} names classes with no examples: {missing[:5]}"
                )
            for n in names:
                if n in seen:
                    raise ValueError(
                        f"dataset {self.name!r}: class {n!r} is in both {seen[n]!r} and {split!r}; "
                        "class splits must be disjoint"
                    )
                seen[n] = split
        unknown = [c for c in self.class_items if c not in known]
        if unknown:
            raise ValueError(f"dataset {self.name!r}: class_items describes classes with no examples: {unknown[:5]}")

    def class_item(self, name: str):
        """The item describing class ``name`` (:attr:`class_items`); a clear error if it has none."""
        try:
            return self.class_items[name]
        except KeyError:
            raise ValueError(
                f"dataset {self.name!r} gives no description of class {name!r} (it describes "
                f"{len(self.class_items)} of its {len(set(self.labels))} classes); drop --class-names "
                "(train.class_names, episodes.class_names), or use a dataset whose classes are described "
                "(clinc150, fewrel*)"
            ) from None

    @property
    def classes(self) -> list[str]:
        """All class names, sorted."""
        return sorted(set(self.labels))

    def split_classes(self, split: str) -> list[str]:
        """Class names of ``split`` ("train", "val", "test" or "all")."""
        if split == "all":
            return self.classes
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS + ('all',)}")
        if split not in self.splits:
            raise ValueError(
                f"dataset {self.name!r} has no {split!r} split (it has {sorted(self.splits) or 'none'}); "
                "use --classes all to evaluate on every class"
            )
        return list(self.splits[split])

    def ids_by_class(self, classes: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Example ids (indices into ``items``) of each class, in dataset order."""
        wanted = None if classes is None else set(classes)
        out: dict[str, list[int]] = {}
        for i, label in enumerate(self.labels):
            if wanted is None or label in wanted:
                out.setdefault(label, []).append(i)
        return {c: np.asarray(v, dtype=np.int64) for c, v in out.items()}

    def take(self, ids: Sequence[int]) -> list:
        """The items with these example ids."""
        return [self.items[int(i)] for i in ids]

    def fingerprint(self) -> str:
        """A short hash of labels and items, stored with frozen episodes."""
        h = hashlib.sha256(self.name.encode())
        for label in self.labels:
            h.update(label.encode() + b"\0")
        step = max(1, len(self.items) // 512)
        for i in range(0, len(self.items), step):
            item = self.items[i]
            h.update(item.encode() if isinstance(item, str) else np.ascontiguousarray(item).tobytes())
        return h.hexdigest()[:16]


class LazyItems(Sequence):
    """A read-only view of items computed on access: ints (negative too) and slices, like a list.

    Subclasses define ``__len__`` and :meth:`item` for ``0 <= index < len(self)``.
    """

    def item(self, index: int):
        raise NotImplementedError

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self.item(i) for i in range(*index.indices(len(self)))]
        index = int(index)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self.item(index)


class ConcatItems(LazyItems):
    """A lazy view of several item sequences, one after another (nothing is copied)."""

    def __init__(self, parts: Sequence[Sequence]):
        self.parts = list(parts)
        self.offsets = np.cumsum([0] + [len(p) for p in self.parts])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def item(self, index: int):
        part = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return self.parts[part][index - int(self.offsets[part])]


def with_val_as_train(dataset: FewShotDataset) -> FewShotDataset:
    """``dataset`` whose val classes have joined its train split (and whose val split is empty).

    For a final model once the validated run has fixed the recipe and its step count
    (``train.include_val``): more classes to learn from, the test classes untouched.
    """
    val = list(dataset.splits.get("val", []))
    if not val:
        raise ValueError(f"dataset {dataset.name!r} has no val classes to train on; drop include_val "
                         "(--include-val)")
    splits = {**dataset.splits, "train": dataset.split_classes("train") + val, "val": []}
    return replace(dataset, splits=splits)


def with_extra_classes(dataset: FewShotDataset, train: Sequence[FewShotDataset] = (),
                       val: Sequence[FewShotDataset] = ()) -> FewShotDataset:
    """``dataset`` whose train split also holds the TRAIN classes of each of ``train``, and whose
    val split the VAL classes of each of ``val`` (more validation classes: wider validation episodes).

    Labels name classes across datasets (FewRel's files share Wikidata relation ids): an extra
    class with the name of one of ``dataset``'s classes of the same split merges into it. One
    that would cross splits is left out (``dropped``): an extra train class that is one of
    ``dataset``'s val or test classes, or an extra val class that is a train or test class, so no
    example of a test class ever reaches training or validation and no validation class is
    trained on. Every other extra example is kept under a label prefixed with its dataset's name
    (``"fewrel-nyt:P40"``) that belongs to no split. ``dataset``'s test classes and their examples
    are unchanged, and so is everything when both lists are empty. Returns the new dataset; its
    ``source`` lists the left-out classes.
    """
    extras = list({e.name: e for e in [*train, *val]}.values())
    for extra in extras:
        if extra.modality != dataset.modality:
            raise ValueError(f"extra dataset {extra.name!r} is {extra.modality} but {dataset.name!r} is "
                             f"{dataset.modality}; extra training and validation data must be of the same modality")
        if extra.name == dataset.name:
            raise ValueError(f"extra dataset {extra.name!r} is the dataset itself; drop it from extra_train/extra_val")
    test = set(dataset.splits.get("test", []))
    splits = {split: list(dataset.splits.get(split, [])) for split in ("train", "val")}
    joins: dict[str, set] = {e.name: set() for e in extras}
    dropped: list[str] = []
    for split, other, sources in (("val", "train", val), ("train", "val", train)):  # val first: it must stay clean
        for extra in sources:
            for c in extra.splits.get(split, []):
                if c in test or c in splits[other]:
                    dropped.append(f"{extra.name}:{c} ({split})")
                    continue
                joins[extra.name].add(c)
                if c not in splits[split]:
                    splits[split].append(c)
    items, labels, class_items = [dataset.items], list(dataset.labels), {}
    for extra in extras:
        renamed = {c: c if c in joins[extra.name] else f"{extra.name}:{c}" for c in set(extra.labels)}
        items.append(extra.items)
        labels += [renamed[label] for label in extra.labels]
        class_items.update({renamed[c]: item for c, item in extra.class_items.items()})
    class_items.update(dataset.class_items)  # a merged class keeps the dataset's own description
    name = "+".join([dataset.name] + [e.name for e in extras])
    source = "; ".join([dataset.source] + [e.source for e in extras])
    if dropped:
        source += f" (left out as classes of another split of {dataset.name}: {', '.join(dropped)})"
    splits = {**dataset.splits, **{k: v for k, v in splits.items() if v or k in dataset.splits}}
    return FewShotDataset(name, dataset.modality, ConcatItems(items), labels, splits, source=source,
                          encoder_options=dict(dataset.encoder_options), class_items=class_items)
