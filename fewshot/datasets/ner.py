"""Tagged (NER) datasets: CoNLL ``token<TAB>tag`` files, SNIPS chunk JSON, a user's JSONL.

=====================  =====  ==================================================  =======================
name                   types  files (under the data root)                         type split
=====================  =====  ==================================================  =======================
``fewnerd-inter``      30     ner/few-nerd/inter/dev.txt + test.txt (IO)          dev types: 10 train / 3
                                                                                  val (episodes/splits/
                                                                                  fewnerd-inter.json);
                                                                                  test: the 17 test types
``wnut17``             6      ner/wnut17/emerging.test.annotated (BIO)            test: all 6
``crossner-<domain>``  9-17   ner/crossner/<domain>/test.txt (BIO); ai,           test: all the domain's
                              literature, music, politics, science                types
``snips``              39     snips/validate_*.json (chunk JSON)                  test: all slot types
``snips-<intent>``     2-14   snips/train_*_full.json of all 7 intents;           test: the intent's
                              intent: addtoplaylist, bookrestaurant, getweather,  slots; val: the next
                              playmusic, ratebook, searchcreativework,            intent's; train: the
                              searchscreeningevent                                other 5 intents' slots
``snips-joint``        39     snips/train_*_full.json + validate_*.json (BIO,     sentences, not types:
                              with intents; a :class:`~fewshot.utterances.       train / val (held out
                              JointDataset`)                                      of train_*) / test
                                                                                  (validate_*)
=====================  =====  ==================================================  =======================

A ``snips-<intent>`` type is ``<Intent>:<slot>`` (``GetWeather:city``): a slot of one domain is a
type of its own, as in Hou et al.'s cross-domain protocol (learn on the other domains, test on the 7th);
its domain (``TaggedDataset.domains``) is the intent, so that training episodes can hold every slot of
one source domain, as the test episodes hold every slot of the target (``fewshot train --tag-episodes
domain``). Of the 6 source domains, the next intent in SNIPS's order (cyclically: :func:`snips_val_domain`)
validates and the other 5 train.

WNUT-17's published few-shot protocol (Yang & Katiyar 2020) is not a registered dataset but two
readers: :func:`wnut17_support_sets` (StructShot's five 1-shot or 5-shot support sets, each to tag
the whole test set ``wnut17`` with) and :func:`wnut17_train` (the training set, all 6 types train).

``snips-joint`` is joint intent detection + slot filling (Goo et al. 2018's SNIPS split):
the test part is the 7 x 100 ``validate_*`` queries (the standard SNIPS test set) and the
val part, for validation and early stopping, is 100 queries per intent held out of its
``train_*_full`` file: the 100 with the smallest SHA-256 of ``"<query index>\t<text>"``
(a fifth of the file when it holds fewer than 500 queries), so the split is fixed by the
files alone; the other 13,084 train. 6 test queries also occur verbatim in the training
files, as published; they are kept.

``snips-joint-fewshot`` is the same queries for few-shot *joint episodes* (Krone et al. 2020,
:mod:`fewshot.joint_episodes`): the 13,784 ``train_*_full`` queries (BIO, with intents), whose
intents, not sentences, are split: 3 train / 1 val / 3 test (``episodes/splits/snips-joint-fewshot.json``).

Every reader returns a :class:`~fewshot.tagged.TaggedDataset` in IO tags (BIO is
converted, :func:`fewshot.tagged.bio_to_io`). Bad input stops with one ValueError
naming the file, the line and the fix: a token line without a tag, a tag outside
the declared scheme, an empty file. SNIPS files are UTF-8 but for
``train_PlayMusic_full.json``, which is Latin-1: a file that is not valid UTF-8 is
read as Latin-1 (every byte string is valid Latin-1). SNIPS queries are split on
whitespace (the publisher's chunks respect it) and a slot's tokens take its type.

A user's file: ``.conll`` (CoNLL, IO or BIO, told apart by its tags) or
``.jsonl`` with one ``{"tokens": [...], "tags": [...]}`` object per line
(:func:`read_tagged_path`).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ..tagged import OUTSIDE, TaggedDataset, bio_to_io, check_tag, types_of
from ..utterances import JointDataset
from .files import bounded_lines, class_split, json_records, open_text
from .registry import load_split, register_dataset, require_file

FEWNERD_SOURCE = "https://github.com/thunlp/Few-NERD (bash data/download.sh inter: inter/dev.txt, inter/test.txt)"
WNUT_SOURCE = "https://github.com/leondz/emerging_entities_17 (emerging.test.annotated)"
CROSSNER_SOURCE = "https://github.com/zliucr/CrossNER (ner_data/<domain>/test.txt)"
WNUT_SUPPORT_SOURCE = "https://github.com/asappresearch/structshot (data/support-wnut-{1,5}shot/{0..4}.txt)"
SNIPS_SOURCE = "https://github.com/sonos/nlu-benchmark (2017-06-custom-intent-engines/*/validate_*.json)"
CROSSNER_DOMAINS = ("ai", "literature", "music", "politics", "science")
SNIPS_INTENTS = ("AddToPlaylist", "BookRestaurant", "GetWeather", "PlayMusic", "RateBook", "SearchCreativeWork",
                 "SearchScreeningEvent")


def guess_scheme(path: Path) -> str:
    """"bio" if any tag of the CoNLL file ``path`` starts with B- or I-, else "io"."""
    with open_text(path) as f:
        for line in bounded_lines(path, f):
            parts = line.rstrip("\n").split("\t")
            if len(parts) == 2 and parts[1][:2] in ("B-", "I-"):
                return "bio"
    return "io"


def read_conll(path: str | Path, scheme: str | None = None) -> tuple[list, list, list]:
    """``(sentences, io_tags, origins)`` of a CoNLL file: ``token<TAB>tag`` lines, a blank line between
    sentences. ``scheme`` "io" or "bio" (None: :func:`guess_scheme`)."""
    path = Path(path)
    scheme = scheme or guess_scheme(path)
    sentences, tags, origins = [], [], []
    words, labels, start = [], [], 0
    with open_text(path) as f:
        for lineno, line in enumerate(bounded_lines(path, f), start=1):
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip():
                if words:
                    sentences.append(tuple(words)); tags.append(tuple(labels)); origins.append(f"{path}:{start}")
                    words, labels = [], []
                continue
            parts = line.split("\t")
            if len(parts) != 2 or not parts[0]:
                raise ValueError(f"{path}:{lineno}: expected `token<TAB>tag`, got {line[:60]!r}; give every "
                                 "token line exactly one tab and one tag (a blank line ends a sentence)")
            check_tag(parts[1], scheme, f"{path}:{lineno}")
            if not words:
                start = lineno
            words.append(parts[0]); labels.append(parts[1])
    if words:
        sentences.append(tuple(words)); tags.append(tuple(labels)); origins.append(f"{path}:{start}")
    if not sentences:
        raise ValueError(f"{path}:1: the file holds no tagged sentence; expected `token<TAB>tag` lines")
    if scheme == "bio":
        tags = [bio_to_io(t) for t in tags]
    return sentences, tags, origins


def read_jsonl_tags(path: str | Path, scheme: str | None = None) -> tuple[list, list, list]:
    """Like :func:`read_conll`, from a JSONL file of ``{"tokens": [...], "tags": [...]}`` objects."""
    path = Path(path)
    rows = []
    with open_text(path) as f:
        for lineno, row in json_records(path, f):
            try:
                tokens, labels = [str(t) for t in row["tokens"]], [str(t) for t in row["tags"]]
            except (KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{lineno}: expected a JSON object with lists \"tokens\" and \"tags\" "
                                 f"({exc!r}); write one tagged sentence per line") from exc
            if len(tokens) != len(labels) or not tokens:
                raise ValueError(f"{path}:{lineno}: {len(tokens)} tokens but {len(labels)} tags; give every "
                                 "token exactly one tag")
            rows.append((lineno, tokens, labels))
    if not rows:
        raise ValueError(f"{path}:1: the file holds no tagged sentence; expected one JSON object per line")
    if scheme is None:
        scheme = "bio" if any(t[:2] in ("B-", "I-") for _, _, labels in rows for t in labels) else "io"
    for lineno, _, labels in rows:
        for t in labels:
            check_tag(t, scheme, f"{path}:{lineno}")
    tags = [tuple(labels) for _, _, labels in rows]
    if scheme == "bio":
        tags = [bio_to_io(t) for t in tags]
    return [tuple(r[1]) for r in rows], tags, [f"{path}:{r[0]}" for r in rows]


def read_snips(path: str | Path, scheme: str = "io") -> tuple[list, list, list, list]:
    """``(sentences, tags, origins, intents)`` of a SNIPS file ``{"<Intent>": [{"data": [chunks]}]}``; tags IO,
    or BIO with ``scheme="bio"`` (each slot chunk opens with ``B-``)."""
    if scheme not in ("io", "bio"):
        raise ValueError(f"read_snips: scheme must be 'io' or 'bio', got {scheme!r}")
    path = Path(path)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:  # train_PlayMusic_full.json is Latin-1, as published
        text = raw.decode("latin-1")
    try:
        d = json.loads(text)
        queries = [(intent, q["data"]) for intent, qs in d.items() for q in qs]
    except (json.JSONDecodeError, AttributeError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}:1: expected SNIPS JSON {{\"<Intent>\": [{{\"data\": [chunks]}}]}} ({exc!r}); "
                         "download the file again") from exc
    sentences, tags, origins, intents = [], [], [], []
    for n, (intent, chunks) in enumerate(queries):
        words, labels = [], []
        for chunk in chunks:
            tokens = str(chunk.get("text", "")).split()
            entity = chunk.get("entity")
            words += tokens
            if entity and scheme == "bio":
                labels += [f"B-{entity}"] + [f"I-{entity}"] * (len(tokens) - 1) if tokens else []
            else:
                labels += [entity or OUTSIDE] * len(tokens)
        if words:
            sentences.append(tuple(words)); tags.append(tuple(labels))
            origins.append(f"{path}: query {n}"); intents.append(intent)
    if not sentences:
        raise ValueError(f"{path}:1: the file holds no query; expected SNIPS chunk JSON")
    return sentences, tags, origins, intents


def read_tagged_path(path: str | Path, scheme: str | None = None) -> TaggedDataset:
    """A user's tagged file: CoNLL (``.conll``) or JSONL with tokens and tags. Its type split is
    :func:`fewshot.datasets.files.class_split` of its types (none under 10 types: use --classes all)."""
    p = Path(path)
    reader = read_jsonl_tags if p.suffix.lower() == ".jsonl" else read_conll
    sentences, tags, origins = reader(p, scheme)
    return TaggedDataset(p.name, sentences, tags, splits=class_split(types_of(tags)), source=str(p.resolve()),
                         origins=origins)


def is_tagged_path(path: str | Path) -> bool:
    """Whether ``path`` is a tagged file: a ``.conll`` file, or a ``.jsonl`` file whose first object has
    ``tokens`` and ``tags``."""
    path = Path(path)
    if path.suffix.lower() == ".conll":
        return True
    if path.suffix.lower() != ".jsonl" or not path.is_file():
        return False
    with open_text(path) as f:
        for line in bounded_lines(path, f):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    return False
                return isinstance(row, dict) and "tokens" in row and "tags" in row
    return False


def _all_test(name: str, sentences: list, tags: list, origins: list, source: str) -> TaggedDataset:
    """A dataset whose every type is a test type (a corpus scored as a whole, no training types)."""
    return TaggedDataset(name, sentences, tags, splits={"test": types_of(tags)}, source=source, origins=origins)


@register_dataset("fewnerd-inter")
def fewnerd_inter(root: Path, **_) -> TaggedDataset:
    """Few-NERD INTER dev (train/val types) + test (test types) sentences, IO tags."""
    folder = root / "ner" / "few-nerd" / "inter"
    parts = [read_conll(require_file(folder / f, "fewnerd-inter", FEWNERD_SOURCE), "io")
             for f in ("dev.txt", "test.txt")]
    return TaggedDataset("fewnerd-inter", parts[0][0] + parts[1][0], parts[0][1] + parts[1][1],
                         splits=load_split("fewnerd-inter"), source=str(folder), origins=parts[0][2] + parts[1][2])


@register_dataset("wnut17")
def wnut17(root: Path, **_) -> TaggedDataset:
    """WNUT-17 gold test set (BIO read as IO), all 6 types as test types."""
    path = require_file(root / "ner" / "wnut17" / "emerging.test.annotated", "wnut17", WNUT_SOURCE)
    return _all_test("wnut17", *read_conll(path, "bio"), source=str(path))


def _crossner(domain: str):
    def load(root: Path, **_) -> TaggedDataset:
        path = require_file(root / "ner" / "crossner" / domain / "test.txt", f"crossner-{domain}", CROSSNER_SOURCE)
        return _all_test(f"crossner-{domain}", *read_conll(path, "bio"), source=str(path))

    load.__doc__ = f"CrossNER {domain} test set (BIO read as IO), all its types as test types."
    return load


for _domain in CROSSNER_DOMAINS:
    register_dataset(f"crossner-{_domain}")(_crossner(_domain))


@register_dataset("snips")
def snips(root: Path, **_) -> TaggedDataset:
    """SNIPS's 7 x 100 validate queries with their slots (IO), all slot types as test types."""
    sentences, tags, origins = [], [], []
    for intent in SNIPS_INTENTS:
        path = require_file(root / "snips" / f"validate_{intent}.json", "snips", SNIPS_SOURCE)
        s, t, o, _ = read_snips(path)
        sentences += s; tags += t; origins += o
    return _all_test("snips", sentences, tags, origins, source=str(root / "snips"))


def wnut17_support_sets(root: Path, shot: int) -> list[TaggedDataset]:
    """StructShot's five WNUT-17 support sets of ``shot`` (1 or 5) entities per type (Yang & Katiyar 2020,
    drawn from the dev set), files ``0.txt`` .. ``4.txt`` in order, each a TaggedDataset (IO) whose types are
    all test types."""
    if shot not in (1, 5):
        raise ValueError(f"StructShot's WNUT-17 support sets are 1-shot and 5-shot, got shot={shot!r}; use 1 or 5")
    folder = Path(root) / "ner" / "wnut17" / "structshot-support" / f"support-wnut-{shot}shot"
    sets = []
    for i in range(5):
        path = require_file(folder / f"{i}.txt", f"wnut17 {shot}-shot support set {i}", WNUT_SUPPORT_SOURCE)
        sets.append(_all_test(f"wnut17-support-{shot}shot-{i}", *read_conll(path, "bio"), source=str(path)))
    return sets


def wnut17_train(root: Path) -> TaggedDataset:
    """WNUT-17's training set (BIO read as IO), its 6 types as train types."""
    path = require_file(Path(root) / "ner" / "wnut17" / "wnut17train.conll", "wnut17 train",
                        "https://github.com/leondz/emerging_entities_17 (wnut17train.conll)")
    sentences, tags, origins = read_conll(path, "bio")
    return TaggedDataset("wnut17-train", sentences, tags, splits={"train": types_of(tags)}, source=str(path),
                         origins=origins)


def snips_val_domain(target: str) -> str:
    """The source domain that validates when ``target`` is tested: the next intent of :data:`SNIPS_INTENTS`
    (cyclically), so each of the 7 domains validates exactly once."""
    return SNIPS_INTENTS[(SNIPS_INTENTS.index(target) + 1) % len(SNIPS_INTENTS)]


def _snips_domain(target: str):
    def load(root: Path, **_) -> TaggedDataset:
        sentences, tags, origins = [], [], []
        splits, domains = {"train": [], "val": [], "test": []}, {}
        for intent in SNIPS_INTENTS:
            path = require_file(root / "snips" / f"train_{intent}_full.json", f"snips-{target.lower()}",
                                SNIPS_SOURCE.replace("validate_*", "train_*_full"))
            s, t, o, _ = read_snips(path)
            t = [tuple(x if x == OUTSIDE else f"{intent}:{x}" for x in seq) for seq in t]
            sentences += s; tags += t; origins += o
            part = "test" if intent == target else "val" if intent == snips_val_domain(target) else "train"
            splits[part] += types_of(t)
            domains.update(dict.fromkeys(types_of(t), intent))
        return TaggedDataset(f"snips-{target.lower()}", sentences, tags, splits=splits, source=str(root / "snips"),
                             origins=origins, domains=domains)

    load.__doc__ = (f"SNIPS cross-domain slot tagging with target domain {target}: the 7 intents' full training "
                    f"queries, {target}'s slots the test types, {snips_val_domain(target)}'s the val types, the "
                    "other 5 intents' slots the train types; each type's domain is its intent.")
    return load


for _intent in SNIPS_INTENTS:
    register_dataset(f"snips-{_intent.lower()}")(_snips_domain(_intent))


VAL_PER_INTENT = 100  # snips-joint: queries held out of each train_<Intent>_full.json for validation


def held_out(sentences: list) -> set[int]:
    """Indices of the validation queries of one SNIPS training file: the VAL_PER_INTENT (a fifth of a file under
    500 queries) with the smallest SHA-256 of ``"<index>\\t<text>"``."""
    n = VAL_PER_INTENT if len(sentences) >= 5 * VAL_PER_INTENT else len(sentences) // 5
    keys = [hashlib.sha256(f"{i}\t{' '.join(s)}".encode()).hexdigest() for i, s in enumerate(sentences)]
    return set(int(i) for i in np.argsort(keys, kind="stable")[:n])


@register_dataset("snips-joint")
def snips_joint(root: Path, **_) -> JointDataset:
    """SNIPS for joint intent + slot training: train / val (held out of train_*_full) / test (validate_*), BIO."""
    sentences, tags, origins, intents, parts = [], [], [], [], {"train": [], "val": [], "test": []}
    for intent in SNIPS_INTENTS:
        for kind, name in (("train", f"train_{intent}_full.json"), ("test", f"validate_{intent}.json")):
            path = require_file(root / "snips" / name, "snips-joint", SNIPS_SOURCE.replace("validate_*", name))
            s, t, o, i = read_snips(path, "bio")
            val = held_out(s) if kind == "train" else set()
            for j in range(len(s)):
                parts["val" if j in val else kind].append(len(sentences) + j)
            sentences += s; tags += t; origins += o; intents += i
    return JointDataset("snips-joint", sentences, tags, intents, parts, source=str(root / "snips"), origins=origins)


@register_dataset("snips-joint-fewshot")
def snips_joint_fewshot(root: Path, **_) -> JointDataset:
    """SNIPS for few-shot joint episodes (Krone et al. 2020): the 7 intents' train_*_full queries (BIO) with
    their intents split 3 train / 1 val / 3 test (episodes/splits/snips-joint-fewshot.json)."""
    sentences, tags, origins, intents = [], [], [], []
    for intent in SNIPS_INTENTS:
        name = f"train_{intent}_full.json"
        path = require_file(root / "snips" / name, "snips-joint-fewshot", SNIPS_SOURCE.replace("validate_*", name))
        s, t, o, i = read_snips(path, "bio")
        sentences += s; tags += t; origins += o; intents += i
    return JointDataset("snips-joint-fewshot", sentences, tags, intents, parts={}, source=str(root / "snips"),
                        origins=origins, splits=load_split("snips-joint-fewshot"))
