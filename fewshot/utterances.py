"""Utterances with an intent and slot tags: the data of joint intent detection and slot filling.

A :class:`JointDataset` holds sentences (tuples of word tokens), one **BIO** slot tag per
word (``B-artist``, ``I-artist``, ``O``: the scheme of the joint-SNIPS literature, which keeps
two adjacent slots of one type apart) and one intent per sentence, with the sentence ids of
its three ``parts``: "train" (what the model learns from), "val" (held out from the training
files, for validation and early stopping) and "test" (held out for the final figures only).
Unlike a :class:`~fewshot.data.FewShotDataset`, the parts split *sentences*, not classes:
every intent and slot type is seen in training.

A dataset for few-shot *joint episodes* (Krone et al. 2020; :mod:`fewshot.joint_episodes`) splits its
intents instead: ``splits`` names the "train" / "val" / "test" intents (a versioned file in
``episodes/splits/``), and :meth:`JointDataset.split_classes` gives those of one split, as a tagged
dataset's does for entity types. Such a dataset is scored on N-way K-shot episodes of intents.

The label vocabularies are fixed by the dataset: ``intents`` (sorted intent names) and
``tag_names`` (``O`` first, then ``B-``/``I-`` of each slot type, sorted by type), over all
parts, so a checkpoint records them and predicts names. :meth:`JointDataset.targets` packs
each sentence's labels into one row, ``[intent, tag_1 .. tag_n, IGNORE ...]`` (IGNORE = -100
pads to the longest sentence), which is what a joint learner's ``batch_loss`` receives.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .tagged import OUTSIDE, check_tag

PARTS = ("train", "val", "test")
IGNORE = -100  # torch's cross_entropy ignore_index: padding of a target row


def tag_vocabulary(types: Sequence[str]) -> list[str]:
    """``["O", "B-t1", "I-t1", "B-t2", ...]`` for slot ``types`` sorted."""
    return [OUTSIDE] + [f"{p}-{t}" for t in sorted(set(types)) for p in ("B", "I")]


@dataclass
class JointDataset:
    """Sentences with BIO slot tags and an intent each, split into train / val / test sentence ids."""

    name: str
    sentences: list[tuple[str, ...]]
    tags: list[tuple[str, ...]]
    intents: list[str]
    parts: dict[str, np.ndarray]
    source: str = ""
    origins: list[str] = field(default_factory=list)  # where each sentence comes from ("file: query n")
    encoder_options: dict = field(default_factory=dict)
    splits: dict = field(default_factory=dict)  # intent split ("train" / "val" / "test" -> intents): episodic use
    modality = "text"
    task = "joint"
    episodes = None

    def __post_init__(self) -> None:
        if not self.sentences:
            raise ValueError(f"dataset {self.name!r} has no sentences: expected at least one utterance")
        if not len(self.sentences) == len(self.tags) == len(self.intents):
            raise ValueError(f"dataset {self.name!r}: {len(self.sentences)} sentences, {len(self.tags)} tag "
                             f"sequences and {len(self.intents)} intents; give each sentence its tags and intent")
        for i, (words, tags) in enumerate(zip(self.sentences, self.tags)):
            if len(words) != len(tags) or not words:
                raise ValueError(f"{self.where(i)}: sentence of {len(words)} words has {len(tags)} tags; give "
                                 "every word exactly one tag")
            for t in tags:
                check_tag(t, "bio", self.where(i))
        self.parts = {k: np.asarray(v, dtype=np.int64) for k, v in self.parts.items()}
        unknown = sorted(set(self.parts) - set(PARTS))
        if unknown:
            raise ValueError(f"dataset {self.name!r}: unknown parts {unknown}; expected some of {PARTS}")
        seen = np.concatenate(list(self.parts.values())) if self.parts else np.zeros(0, np.int64)
        if len(np.unique(seen)) != len(seen) or (len(seen) and (seen.min() < 0 or seen.max() >= len(self.sentences))):
            raise ValueError(f"dataset {self.name!r}: the parts must name distinct sentence ids from 0 to "
                             f"{len(self.sentences) - 1}")
        self.intent_names = sorted(set(self.intents))
        self.splits = {k: sorted(v) for k, v in self.splits.items()}
        bad = sorted(set(self.splits) - set(PARTS)) or sorted({i for v in self.splits.values() for i in v}
                                                              - set(self.intent_names))
        if bad:
            raise ValueError(f"dataset {self.name!r}: the intent split names {bad}, which are neither splits "
                             f"{PARTS} nor intents of the data ({self.intent_names}); fix the split file")
        self.tag_names = tag_vocabulary({t[2:] for seq in self.tags for t in seq if t != OUTSIDE})

    @property
    def items(self) -> list[tuple[str, ...]]:
        """The sentences (what ``take`` returns and learners embed)."""
        return self.sentences

    @property
    def labels(self) -> list[str]:
        """The intents, one per sentence."""
        return self.intents

    def where(self, i: int) -> str:
        """Where sentence ``i`` comes from, or its index when the origin is unknown."""
        return self.origins[i] if i < len(self.origins) else f"dataset {self.name!r}, sentence {i}"

    def part_ids(self, part: str) -> np.ndarray:
        """The sentence ids of ``part`` ("train", "val" or "test")."""
        if part not in PARTS:
            raise ValueError(f"unknown part {part!r}; expected one of {PARTS}")
        if part not in self.parts or not len(self.parts[part]):
            raise ValueError(f"dataset {self.name!r} has no {part!r} sentences (it has "
                             f"{sorted(k for k, v in self.parts.items() if len(v))})")
        return self.parts[part]

    def split_classes(self, split: str) -> list[str]:
        """The intents of ``split`` ("train", "val", "test" or "all") for episodes of intents."""
        if split == "all":
            return list(self.intent_names)
        if split not in PARTS:
            raise ValueError(f"unknown split {split!r}; expected one of {PARTS + ('all',)}")
        if split not in self.splits:
            raise ValueError(f"dataset {self.name!r} has no {split!r} split of intents (it has "
                             f"{sorted(self.splits) or 'none'}); use --classes all to sample from every intent")
        return list(self.splits[split])

    def take(self, ids: Sequence[int]) -> list[tuple[str, ...]]:
        """The sentences with these ids."""
        return [self.sentences[int(i)] for i in ids]

    def targets(self, ids: Sequence[int]) -> np.ndarray:
        """(len(ids), 1 + longest sentence) int64 rows ``[intent, tag_1 .. tag_n, IGNORE ...]`` (module docstring)."""
        intent_of = {n: j for j, n in enumerate(self.intent_names)}
        tag_of = {n: j for j, n in enumerate(self.tag_names)}
        width = 1 + max(len(self.tags[int(i)]) for i in ids)
        out = np.full((len(ids), width), IGNORE, dtype=np.int64)
        for r, i in enumerate(ids):
            tags = self.tags[int(i)]
            out[r, 0] = intent_of[self.intents[int(i)]]
            out[r, 1:1 + len(tags)] = [tag_of[t] for t in tags]
        return out

    def fingerprint(self) -> str:
        """A short hash of the sentences, tags, intents and parts."""
        h = hashlib.sha256(self.name.encode())
        for words, tags, intent in zip(self.sentences, self.tags, self.intents):
            h.update("\t".join(words).encode() + b"\n" + "\t".join(tags).encode() + b"\n" + intent.encode() + b"\0")
        for k in sorted(self.parts):
            h.update(k.encode() + self.parts[k].tobytes())
        for k in sorted(self.splits):  # nothing for a dataset without an intent split: its hash is unchanged
            h.update(k.encode() + "\t".join(self.splits[k]).encode())
        return h.hexdigest()[:16]
