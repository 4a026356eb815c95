"""What fewshot accepts as a text and as a class label, checked the same way at every entry point.

The dataset readers (:mod:`fewshot.datasets.files`), ``fewshot index add`` and
``FewShotClassifier.fit`` / ``add_classes`` / ``predict`` all call these, so a
text or label refused by one is refused by all, with the same message.

- A text is a ``str`` with some non-whitespace character, no NUL byte (NUL
  marks binary data, e.g. a UTF-16 file read as UTF-8) and at most
  :data:`MAX_TEXT_CHARS` characters. A longer text is refused, not truncated: the
  text encoders read only its first ``max_length`` tokens (128 by default, a few
  hundred characters) anyway, fewshot stores what it is given verbatim (support
  texts, the prediction log), and tokenising a 50 MB text costs gigabytes before
  any truncation; a long document is split into passages by its owner, who knows
  where they break.
- A label is hashable and not ``None``; a string label is not blank, is at most
  :data:`MAX_LABEL_CHARS` characters long and holds no control character (newline,
  tab, NUL, ...: they would break one-line outputs and the CSV/JSON files fewshot
  writes) and no format character (Unicode category Cf: U+202E right-to-left
  override, U+200B zero-width space, ...: invisible, they make two names that
  print alike); two string labels may not differ only by whitespace or Unicode
  compatibility forms (:func:`label_key`: ``"cat"``, ``"cat "``, ``" cat"`` and
  ``"cat\u00a0"`` would otherwise be classes that print alike): that is refused,
  naming the existing class, within one call and against the classes a
  classifier already has; never merged silently.

A text may mark the two entities of a relation, head then tail, as
``[E1] head words [/E1]`` and ``[E2] tail words [/E2]`` (Baldini Soares et al.
2019); :data:`ENTITY_MARKERS` is that convention, :func:`entity_spans` reads it
back. The FewRel loaders write it; text encoders with ``pooling="entities"`` read it.

This module imports nothing from fewshot: it is the bottom layer.
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Hashable, Iterable, Mapping

ENTITY_MARKERS = (("[E1]", "[/E1]"), ("[E2]", "[/E2]"))  # (open, close) of the head, then of the tail
MAX_LABEL_CHARS = 200  # the longest class name accepted
MAX_TEXT_CHARS = 100_000  # the longest text accepted (about 50 pages; a text encoder reads its first ~128 tokens)


def label_key(label: str) -> str:
    """What a string label reads as: NFKC form, Unicode whitespace stripped and runs of it made one space."""
    return " ".join(unicodedata.normalize("NFKC", label).split())


_NOT_SPACE_WHITESPACE = re.compile(r"[^\S ]")  # whitespace that str.split() splits on, other than " "


def irregular_label_keys(labels: list) -> dict[str, str]:
    """{label_key(label): label} of the string ``labels`` that differ from their key. At 10^6 classes a check of
    all of them joined (NFKC form; whitespace only as single spaces inside a label) replaces a million calls of
    label_key (1.2 s) when, as usual, none differs. The check holds label_key's rules, so it lives beside it."""
    strs = labels if set(map(type, labels)) == {str} else [lab for lab in labels if isinstance(lab, str)]
    joined = "\x00".join(strs)
    spaces_ok = not ("  " in joined or " \x00" in joined or "\x00 " in joined or joined.startswith(" ")
                     or joined.endswith(" ")) and not (
        any(c in joined for c in "\t\n\v\f\r\x1c\x1d\x1e\x1f") if joined.isascii()
        else _NOT_SPACE_WHITESPACE.search(joined))
    if spaces_ok and joined.count("\x00") == max(len(strs) - 1, 0) and unicodedata.is_normalized("NFKC", joined):
        return {}
    return {key: lab for lab in strs if (key := label_key(lab)) != lab}


def check_text(text, where: str) -> str:
    """``text`` unchanged if it is an acceptable text; else TypeError/ValueError naming ``where``."""
    if not isinstance(text, str):
        raise TypeError(f"{where}: expected a text (str), got {type(text).__name__} {text!r:.60}; pass strings")
    if len(text) > MAX_TEXT_CHARS:
        raise ValueError(f"{where}: expected a text of at most {MAX_TEXT_CHARS:,} characters, got {len(text):,} "
                         f"({text[:40]!r}...); a text encoder reads only the first few hundred words of a text: "
                         "split long documents into passages (one example each)")
    if not text.strip():
        raise ValueError(f"{where}: expected a text with some non-whitespace character, got {text!r:.60}; "
                         "remove the empty example or give it text")
    if "\x00" in text:
        raise ValueError(f"{where}: the text contains a NUL byte (at character {text.index(chr(0))}), which "
                         "marks binary data, not text (a UTF-16 file read as UTF-8 looks like this); save the "
                         "data as UTF-8 text")
    return text


def check_texts(texts: Iterable, where: str) -> list[str]:
    """``list(texts)`` if every item passes :func:`check_text`; the message names the first bad item."""
    texts = list(texts)
    for i, t in enumerate(texts):
        check_text(t, f"{where}: item {i}")
    return texts


def check_label(label, where: str):
    """``label`` unchanged if it can name a class; else TypeError/ValueError naming ``where``."""
    if label is None:
        raise ValueError(f"{where}: expected a class label, got None; give every example a class name")
    if not isinstance(label, Hashable):
        raise TypeError(f"{where}: labels must be hashable (str, int, ...), got {type(label).__name__}")
    if isinstance(label, str):
        if not label.strip():
            raise ValueError(f"{where}: expected a class label with some non-whitespace character, got {label!r}; "
                             "give the example a class name")
        if len(label) > MAX_LABEL_CHARS:
            raise ValueError(f"{where}: expected a class label of at most {MAX_LABEL_CHARS} characters, got "
                             f"{len(label)} ({label[:40]!r}...); use a shorter class name")
        bad = next((c for c in label if unicodedata.category(c) in ("Cc", "Cf")), None)
        if bad is not None:
            kind = "control" if unicodedata.category(bad) == "Cc" else "invisible format"
            raise ValueError(f"{where}: the label {label!r:.60} contains the {kind} character {bad!r} "
                             f"(U+{ord(bad):04X}); class names must be one line of printable text: remove it")
    return label


def check_labels(labels: Iterable, where: str, existing: Iterable | Mapping = ()) -> list:
    """``list(labels)`` if each passes :func:`check_label` and no two strings, among them and the ``existing``
    class labels, read the same (:func:`label_key`) without being equal. ``existing``: the class labels, or a
    mapping {label_key: label} of them kept up to date by their owner (a ClassBook's ``keys``), so a check
    costs the labels given, not the classes held."""
    labels = list(labels)
    keys = existing if isinstance(existing, Mapping) else {label_key(x): x for x in existing if isinstance(x, str)}
    local: dict[str, str] = {}
    for i, label in enumerate(labels):
        check_label(label, f"{where}: label {i}")
        if isinstance(label, str):
            k = label_key(label)
            other = local.setdefault(k, keys.get(k, label))
            if other != label:
                pair = (f"the label {label!r} (label {i}) and the existing class {other!r}" if keys.get(k) == other
                        else f"the labels {other!r} and {label!r} (label {i})")
                raise ValueError(f"{where}: {pair} differ only by surrounding whitespace, runs of spaces or Unicode "
                                 f"form; they would be two classes that print alike: use {other!r} (or rename "
                                 "the class)")
    return labels


def entity_spans(text: str, where: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """Character spans ``(start, end)`` of the head's and the tail's words in an entity-marked text.

    A span covers what lies between the open and close markers, without the spaces
    next to them. Each marker must occur exactly once, the close after its open, and
    hold some word; else ValueError naming ``where``.
    """
    spans = []
    for open_, close in ENTITY_MARKERS:
        counts = (text.count(open_), text.count(close))
        start, end = text.find(open_) + len(open_), text.find(close)
        if counts != (1, 1) or end < start or not text[start:end].strip():
            raise ValueError(
                f"{where}: expected the head entity marked once as '{ENTITY_MARKERS[0][0]} words {ENTITY_MARKERS[0][1]}' "
                f"and the tail as '{ENTITY_MARKERS[1][0]} words {ENTITY_MARKERS[1][1]}', got {counts[0]} x {open_!r} and "
                f"{counts[1]} x {close!r}{' (empty or in the wrong order)' if counts == (1, 1) else ''} in {text!r:.80}; mark "
                "both entities of every text, or use pooling='mean'")
        while text[start].isspace():
            start += 1
        while text[end - 1].isspace():
            end -= 1
        spans.append((start, end))
    return spans[0], spans[1]
