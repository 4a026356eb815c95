"""Text datasets read in place from their publishers' files under the data root.

========================  =======  ===========================  ==============================
name                      classes  examples per class           class split (episodes/splits/)
========================  =======  ===========================  ==============================
``clinc150``              150      150 (train+val+test pooled)  by domain: 5 / 2 / 3 domains
                                                                (75 / 30 / 45 intents)
``huffpost``              41       900                          published: 5-24 / 0-4 / 25-40
``reuters``               31       20                           published: 0-14 / 15-19 / 20-30
``fewrel``                16       700 (val_wiki.json)          seeded: 6 / 2 / 8 relations
``fewrel-nyt``            25       100 (val_nyt.json)           seeded: 10 / 2 / 13
``fewrel-pubmed``         10       100 (val_pubmed.json)        seeded: 4 / 1 / 5
``fewrel-semeval``        17       110-1,135                    seeded: 6 / 2 / 9
``trec``                  50       4-1,017 (fine labels)        seeded over the 35 classes with
                                                                >= 20 questions: 15 / 5 / 15
``wordnet``               45       42-14,435 (supersenses)      same as ``wn33``: 25 / 5 / 15
``wordnet-hypernym``      623      20-664                       seeded 60/20/20: 373 / 125 / 125
========================  =======  ===========================  ==============================

Each split file says in its ``how`` field exactly how it was made. Labels are
strings: CLINC150 intent names, HuffPost/Reuters label ids as strings
("0".."40"), FewRel Wikidata property ids ("P177"), TREC ``COARSE:fine``,
WordNet lexicographer file names or hypernym synset offsets.

CLINC150's out-of-scope queries (``oos_*``) are not a class here; they are
returned by :func:`clinc150_out_of_scope` for open-set evaluation.

Class descriptions (:attr:`fewshot.data.FewShotDataset.class_items`, used by
``--class-names``): CLINC150's intent names in words (``"book flight"``); FewRel's
relation names and definitions, from ``pid2name.json`` for Wikidata ids and from
the label itself for the FewRel 2.0 files' named relations, written as an
entity-marked text (:func:`fewrel_class_text`). HuffPost and Reuters labels are
bare ids, TREC's and WordNet's are codes: they have none.
"""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from ..data import FewShotDataset
from ..inputs import ENTITY_MARKERS
from .files import json_records
from .registry import data_root, load_split, register_dataset, require_file

CLINC_SOURCE = "https://github.com/clinc/oos-eval (data/data_full.json and data/domains.json)"
METAPROMPTER_SOURCE = "https://github.com/ws-jiang/MetaPrompter_public (data/{name}.json)"
FEWREL_SOURCE = "https://github.com/thunlp/FewRel (data/{name})"
TREC_SOURCE = "https://cogcomp.seas.upenn.edu/Data/QA/QC/ (train_5500.label and TREC_10.label)"
WORDNET_SOURCE = "the project's WordNet 3.0 extraction (wordnet/{name}), made from Debian's wordnet-base"

FEWREL_FILES = {"fewrel": "val_wiki.json", "fewrel-nyt": "val_nyt.json", "fewrel-pubmed": "val_pubmed.json",
                "fewrel-semeval": "val_semeval.json"}


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: expected JSON but line {exc.lineno} is malformed ({exc.msg}); "
                         "download the file again") from exc


def _read_json_lines(path: Path, text_key: str = "raw", label_key: str = "label") -> tuple[list[str], list[str]]:
    """``(texts, labels)`` of a JSON-lines file of ``{"raw": text, "label": int}`` objects."""
    texts, labels = [], []
    with open(path, encoding="utf-8") as f:
        for lineno, row in json_records(path, f):
            try:
                texts.append(str(row[text_key]))
                labels.append(str(row[label_key]))
            except (KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{lineno}: expected a JSON object with keys {text_key!r} and "
                                 f"{label_key!r} ({exc!r}); download the file again") from exc
    return texts, labels


def _clinc_file(root: Path) -> Path:
    return require_file(Path(root) / "clinc150" / "data_full.json", "clinc150", CLINC_SOURCE)


@register_dataset("clinc150")
def load_clinc150(root: Path, **_) -> FewShotDataset:
    """The 150 in-scope intents, train+val+test pooled (150 queries each)."""
    data = _read_json(_clinc_file(root))
    require_file(Path(root) / "clinc150" / "domains.json", "clinc150", CLINC_SOURCE)
    texts, labels = [], []
    for part in ("train", "val", "test"):
        for text, intent in data[part]:
            texts.append(text)
            labels.append(intent)
    return FewShotDataset(name="clinc150", modality="text", items=texts, labels=labels,
                          splits=load_split("clinc150"), source=str(_clinc_file(root)),
                          class_items={intent: intent.replace("_", " ") for intent in set(labels)})


def clinc150_out_of_scope(root: Path | str | None = None) -> list[str]:
    """CLINC150's 1,200 out-of-scope queries (oos_train + oos_val + oos_test, in that order)."""

    data = _read_json(_clinc_file(data_root(root)))
    return [text for part in ("oos_train", "oos_val", "oos_test") for text, _ in data[part]]


def clinc150_domains(root: Path | str | None = None) -> dict[str, list[str]]:
    """CLINC150's 10 domains, each mapped to its 15 intents (domains.json)."""

    path = require_file(data_root(root) / "clinc150" / "domains.json", "clinc150", CLINC_SOURCE)
    return {d: list(v) for d, v in _read_json(path).items()}


def _metaprompter(name: str, root: Path) -> FewShotDataset:
    path = require_file(Path(root) / name / f"{name}.json", name, METAPROMPTER_SOURCE.format(name=name))
    texts, labels = _read_json_lines(path)
    return FewShotDataset(name=name, modality="text", items=texts, labels=labels, splits=load_split(name),
                          source=str(path))


@register_dataset("huffpost")
def load_huffpost(root: Path, **_) -> FewShotDataset:
    """HuffPost headlines, 41 categories x 900; labels are the integer ids as strings."""
    return _metaprompter("huffpost", root)


@register_dataset("reuters")
def load_reuters(root: Path, **_) -> FewShotDataset:
    """Reuters-21578 few-shot subset, 31 topics x 20 documents."""
    return _metaprompter("reuters", root)


def fewrel_text(instance: dict) -> str:
    """The sentence with its first head mention in ``[E1] .. [/E1]`` and tail in ``[E2] .. [/E2]``
    (:data:`fewshot.inputs.ENTITY_MARKERS`)."""
    tokens = list(instance["tokens"])
    marks: dict[int, list[str]] = {}
    for (open_, close), key in zip(ENTITY_MARKERS, ("h", "t")):
        positions = instance[key][2][0]
        marks.setdefault(min(positions), []).append(open_)
        marks.setdefault(max(positions) + 1, []).append(close)
    out = []
    for i in range(len(tokens) + 1):
        # closing tags before opening tags at the same position
        out.extend(sorted(marks.get(i, []), key=lambda m: not m.startswith("[/")))
        if i < len(tokens):
            out.append(tokens[i])
    return " ".join(out)


_SEMEVAL = re.compile(r"^([\w ]+)-([\w ]+)\((e[12]),(e[12])\)$")  # "Content-Container(e2,e1)"


def fewrel_class_text(relation: str, names: dict) -> str | None:
    """A relation's description as an entity-marked text, for ``--class-names`` (None: a Wikidata id
    that ``names`` lacks, which has nothing to describe it).

    ``"[E1] head [/E1] name [E2] tail [/E2] : definition"``. Wikidata ids take the name and
    definition of ``names`` (pid2name.json: ``{id: [name, definition]}``) with "subject" and
    "object" as the entities; SemEval's ``X-Y(e1,e2)`` gives the head the role X and the tail
    the role Y (``(e2,e1)``: the other way round); other labels are names with underscores
    (FewRel 2.0's PubMed relations). Chosen on FewRel's val relations against the name alone
    (frozen MiniLM, 5-way 1-shot, 300 episodes: 76.48 -> 82.98 with the name, 84.90 with the
    definition; BENCHMARKS.md "class-names").
    """
    (h_open, h_close), (t_open, t_close) = ENTITY_MARKERS
    head, tail, definition = "subject", "object", ""
    semeval = _SEMEVAL.match(relation)
    if semeval:
        first, second, e1, _ = semeval.groups()
        name = f"{first} {second}".lower()
        head, tail = (first.lower(), second.lower()) if e1 == "e1" else (second.lower(), first.lower())
    elif relation in names:
        name, definition = names[relation]
        definition = "" if definition == "No description defined" else definition
    elif re.fullmatch(r"P\d+", relation):
        return None
    else:
        name = relation.replace("_", " ")
    text = f"{h_open} {head} {h_close} {name} {t_open} {tail} {t_close}"
    return f"{text} : {definition}" if definition.strip() else text


def _fewrel(name: str, root: Path) -> FewShotDataset:
    fname = FEWREL_FILES[name]
    path = require_file(Path(root) / "fewrel" / fname, name, FEWREL_SOURCE.format(name=fname))
    names_path = Path(root) / "fewrel" / "pid2name.json"
    names = _read_json(names_path) if names_path.is_file() else {}  # without it, Wikidata ids go undescribed
    data = _read_json(path)
    texts, labels = [], []
    for relation in sorted(data):
        for instance in data[relation]:
            texts.append(fewrel_text(instance))
            labels.append(relation)
    # entity pooling: frozen 5-way on the 7 val relations of the FewRel files, 1-shot 71.25 -> 76.48,
    # 5-shot 88.12 -> 90.39 (bin/bench-pooling, BENCHMARKS.md "pooling")
    described = {r: fewrel_class_text(r, names) for r in data}
    return FewShotDataset(name=name, modality="text", items=texts, labels=labels, splits=load_split(name),
                          source=str(path), encoder_options={"pooling": "entities"},
                          class_items={r: text for r, text in described.items() if text is not None})


def _register_fewrel(name: str) -> None:
    @register_dataset(name)
    def load(root: Path, **_) -> FewShotDataset:
        return _fewrel(name, root)

    load.__name__ = f"load_{name.replace('-', '_')}"
    load.__doc__ = (f"FewRel relation classification from {FEWREL_FILES[name]}; labels are relation ids; "
                    "entity-marked sentences, pooled with their entities by default.")


for _name in FEWREL_FILES:
    _register_fewrel(_name)


@register_dataset("trec")
def load_trec(root: Path, **_) -> FewShotDataset:
    """TREC questions (train_5500 + TREC_10 pooled) labelled with their 50 fine classes ``COARSE:fine``."""
    texts, labels = [], []
    for fname in ("train_5500.label", "TREC_10.label"):
        path = require_file(Path(root) / "trec" / fname, "trec", TREC_SOURCE)
        with open(path, encoding="latin-1") as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                label, _, question = line.rstrip("\n").partition(" ")
                if ":" not in label or not question.strip():
                    raise ValueError(f"{path}:{lineno}: expected 'COARSE:fine question', got {line[:60]!r}")
                texts.append(question.strip())
                labels.append(label)
    return FewShotDataset(name="trec", modality="text", items=texts, labels=labels, splits=load_split("trec"),
                          source=str(Path(root) / "trec"))


def _read_csv(path: Path, text_column: str, label_column: str) -> tuple[list[str], list[str]]:
    texts, labels = [], []
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in (text_column, label_column) if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: expected columns {missing} but the header has {reader.fieldnames}")
        for row in reader:
            texts.append(row[text_column])
            labels.append(row[label_column])
    return texts, labels


def _wordnet(name: str, fname: str, label_column: str, root: Path) -> FewShotDataset:
    path = require_file(Path(root) / "wordnet" / fname, name, WORDNET_SOURCE.format(name=fname))
    texts, labels = _read_csv(path, "definition", label_column)
    return FewShotDataset(name=name, modality="text", items=texts, labels=labels, splits=load_split(name),
                          source=str(path))


@register_dataset("wordnet")
def load_wordnet(root: Path, **_) -> FewShotDataset:
    """WordNet 3.0 synset definitions labelled with their 45 supersenses (lexicographer files)."""
    return _wordnet("wordnet", "wordnet30_supersense.csv", "supersense", root)


@register_dataset("wordnet-hypernym")
def load_wordnet_hypernym(root: Path, **_) -> FewShotDataset:
    """WordNet 3.0 noun definitions grouped under their direct hypernym (623 classes of >= 20)."""
    return _wordnet("wordnet-hypernym", "wordnet30_noun_hypernym_k20.csv", "hypernym", root)


__all__ = ["clinc150_domains", "clinc150_out_of_scope", "fewrel_text"]
