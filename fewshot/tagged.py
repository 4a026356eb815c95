"""Tagged datasets for named-entity recognition: sentences of tokens, one tag per token.

A :class:`TaggedDataset` holds sentences (tuples of word tokens) and their tags in
the **IO** scheme, fewshot's one internal form: ``"O"`` or an entity type
(``"person-actor"``, ``"location"``). An entity is a maximal run of tokens with one
type (Few-NERD's rule; two adjacent entities of one type merge). BIO files are
converted on reading (:func:`bio_to_io`) and IO tags can be written back as BIO
(:func:`io_to_bio`, each run opening with ``B-``).

Its ``splits`` map "train"/"val"/"test" to disjoint lists of entity *types*, as a
:class:`~fewshot.data.FewShotDataset`'s map to classes. ``origins[i]`` names the
file and line where sentence ``i`` starts, so that an error about a sentence (e.g.
one longer than the encoder's window) can say where to fix it. ``domains`` (optional)
names each type's domain where types come in families that an episode keeps together
(SNIPS: ``GetWeather:city`` is of ``GetWeather``), for Hou et al. 2020's episodes that
hold every type of one domain (:class:`fewshot.tag_episodes.GreedyTypeSampler`).

Raw text becomes words in one way, :func:`split_words` (used by ``fewshot index tag``).
"""
from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from .data import SPLITS

OUTSIDE = "O"
SCHEMES = ("io", "bio")
# a number with inner "." or "," (3.5, 1,000); a run of letters/digits/underscore, joined across an inner
# hyphen or apostrophe (state-of-the-art, O'Brien); any other non-blank character alone (punctuation)
WORD = re.compile(r"\d+(?:[.,]\d+)+|\w+(?:[-'\u2019]\w+)*|[^\w\s]")


def type_name(entity_type: str) -> tuple[str, ...]:
    """The words of an entity type's name, read from the type itself: what follows its last ``:`` (a SNIPS
    slot's domain prefix), split at ``-``, ``_`` and lower-to-upper case changes (``GetWeather:timeRange`` ->
    ``("time", "Range")``, ``person-actor`` -> ``("person", "actor")``, ``playlist_owner`` -> ``("playlist",
    "owner")``). It joins a support set as a sentence of its own, every word tagged with the type (Hou et al.
    2020's label-enhanced prototypes, ``--class-names`` for tagging)."""
    last = entity_type.rsplit(":", 1)[-1]
    words = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", last)
    return tuple(w for w in re.split(r"[-_\s]+", words) if w) or (entity_type,)


def check_tag(tag: str, scheme: str, where: str) -> None:
    """A ValueError unless ``tag`` is a tag of ``scheme`` ("io": O or a type; "bio": O, B-type or I-type)."""
    if scheme not in SCHEMES:
        raise ValueError(f"tag scheme must be one of {SCHEMES}, got {scheme!r}")
    if not tag or tag != tag.strip():
        raise ValueError(f"{where}: empty or blank-padded tag {tag!r}; write one tag per token")
    if tag == OUTSIDE:
        return
    if scheme == "bio" and not (tag[:2] in ("B-", "I-") and len(tag) > 2):
        raise ValueError(f"{where}: tag {tag!r} is not BIO (expected O, B-<type> or I-<type>); fix the tag, "
                         "or read the file as IO (scheme='io')")
    if scheme == "io" and tag[:2] in ("B-", "I-"):
        raise ValueError(f"{where}: tag {tag!r} looks BIO but the file is read as IO; read it as BIO "
                         "(scheme='bio') or drop the B-/I- prefixes")


def split_words(text: str) -> tuple[str, ...]:
    """The words of raw ``text``, as tagged corpora (CoNLL, Few-NERD) tokenise: whitespace separates words and
    punctuation is a word of its own, but for an inner hyphen or apostrophe (``state-of-the-art``, ``O'Brien``)
    and a number's inner ``.`` or ``,`` (``3.5``, ``1,000``); an abbreviation splits at its full stops (``U.S.``
    is four words). ``"Ada's code, in 1843."`` gives ``("Ada's", "code", ",", "in", "1843", ".")``."""
    if not isinstance(text, str):
        raise TypeError(f"split_words: expected a str, got {type(text).__name__}")
    return tuple(WORD.findall(text))


def bio_to_io(tags: Sequence[str]) -> tuple[str, ...]:
    """IO tags of BIO ``tags``: the prefix dropped (``B-x I-x B-x`` becomes one run ``x x x``)."""
    return tuple(t if t == OUTSIDE else t[2:] for t in tags)


def io_to_bio(tags: Sequence[str]) -> tuple[str, ...]:
    """BIO tags of IO ``tags``: each maximal run of one type opens with ``B-``, continues with ``I-``."""
    out, prev = [], OUTSIDE
    for t in tags:
        out.append(OUTSIDE if t == OUTSIDE else ("I-" if t == prev else "B-") + t)
        prev = t
    return tuple(out)


def io_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Entities of IO ``tags`` as ``(type, start, end)`` (end inclusive): maximal runs of one type.

    Counted by seqeval (``get_entities``, the field's standard) on the tags written ``I-<type>``:
    a run of ``I-x`` is one chunk and a change of type starts another, which is Few-NERD's rule
    (tests/test_tagged.py checks the two agree).
    """
    from seqeval.metrics.sequence_labeling import get_entities

    return [(t, int(a), int(b)) for t, a, b in get_entities([t if t == OUTSIDE else "I-" + t for t in tags])]


def bio_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Entities of BIO ``tags`` as ``(type, start, end)`` (end inclusive), as seqeval's ``get_entities`` reads
    them (conlleval's rule: ``B-`` opens a chunk, and so does an ``I-`` after ``O`` or after another type)."""
    from seqeval.metrics.sequence_labeling import get_entities

    return [(t, int(a), int(b)) for t, a, b in get_entities(list(tags))]


def types_of(tags: Sequence[Sequence[str]]) -> list[str]:
    """Every entity type of IO tag sequences ``tags``, sorted."""
    return sorted({t for seq in tags for t in seq} - {OUTSIDE})


@dataclass
class TaggedDataset:
    """Sentences with IO tags and an optional train/val/test split of entity types."""

    name: str
    sentences: list[tuple[str, ...]]
    tags: list[tuple[str, ...]]
    splits: dict[str, list[str]] = field(default_factory=dict)
    source: str = ""
    origins: list[str] = field(default_factory=list)  # "file:line" where each sentence starts
    encoder_options: dict = field(default_factory=dict)
    domains: dict[str, str] = field(default_factory=dict)  # type -> its domain (optional; all types or none)
    modality = "text"
    task = "ner"
    episodes = None  # no fixed protocol of its own: episodes are sampled (fewshot.tag_episodes) or read from a file

    def __post_init__(self) -> None:
        if not self.sentences:
            raise ValueError(f"dataset {self.name!r} has no sentences: expected at least one tagged sentence")
        if len(self.sentences) != len(self.tags):
            raise ValueError(f"dataset {self.name!r}: {len(self.sentences)} sentences but {len(self.tags)} tag "
                             "sequences; every sentence needs one tag per token")
        for i, (words, tags) in enumerate(zip(self.sentences, self.tags)):
            if len(words) != len(tags) or not words:
                raise ValueError(f"{self.where(i)}: sentence of {len(words)} tokens has {len(tags)} tags; "
                                 "give every token exactly one tag")
        known, seen = set(self.types), {}
        for split, names in self.splits.items():
            if split not in SPLITS:
                raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
            missing = [n for n in names if n not in known]
            if missing:
                raise ValueError(f"dataset {self.name!r}: split {split!r} names types with no entity: {missing[:5]}")
            for n in names:
                if n in seen:
                    raise ValueError(f"dataset {self.name!r}: type {n!r} is in both {seen[n]!r} and {split!r}; "
                                     "type splits must be disjoint")
                seen[n] = split
        if self.domains and sorted(self.domains) != sorted(known):
            extra, lacking = sorted(set(self.domains) - known), sorted(known - set(self.domains))
            raise ValueError(f"dataset {self.name!r}: domains must name the domain of every type and nothing else; "
                             f"types without a domain: {lacking[:5]}, domains of unknown types: {extra[:5]}")

    @property
    def items(self) -> list[tuple[str, ...]]:
        """The sentences: what episodes' ids index, as a FewShotDataset's items."""
        return self.sentences

    def where(self, i: int) -> str:
        """Where sentence ``i`` comes from (``file:line``), or its index when the origin is unknown."""
        return self.origins[i] if i < len(self.origins) else f"dataset {self.name!r}, sentence {i}"

    @property
    def types(self) -> list[str]:
        """Every entity type, sorted."""
        return types_of(self.tags)

    def entity_counts(self) -> list[Counter]:
        """Per sentence, the number of entities (maximal IO runs) of each type."""
        return [Counter(t for t, _, _ in io_spans(tags)) for tags in self.tags]

    def split_classes(self, split: str) -> list[str]:
        """Entity types of ``split`` ("train", "val", "test" or "all")."""
        if split == "all":
            return self.types
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS + ('all',)}")
        if split not in self.splits:
            raise ValueError(f"dataset {self.name!r} has no {split!r} split of types (it has "
                             f"{sorted(self.splits) or 'none'}); use --classes all to sample from every type")
        return list(self.splits[split])

    def with_type_names(self) -> "TaggedDataset":
        """This dataset with one more sentence per type after its own: the type's name (:func:`type_name`), every
        word tagged with the type (a support set given its types' names, as ``--class-names`` gives them)."""
        names = [type_name(t) for t in self.types]
        return replace(self, sentences=[*self.sentences, *names],
                       tags=[*self.tags, *(tuple([t] * len(n)) for t, n in zip(self.types, names))],
                       origins=[*(self.where(i) for i in range(len(self.sentences))),
                                *(f"the name of type {t!r}" for t in self.types)])

    def take(self, ids: Sequence[int]) -> list[tuple[str, ...]]:
        """The sentences with these ids."""
        return [self.sentences[int(i)] for i in ids]

    def fingerprint(self) -> str:
        """A short hash of the sentences and tags, stored with frozen episodes."""
        h = hashlib.sha256(self.name.encode())
        for words, tags in zip(self.sentences, self.tags):
            h.update("\t".join(words).encode() + b"\n" + "\t".join(tags).encode() + b"\0")
        return h.hexdigest()[:16]
