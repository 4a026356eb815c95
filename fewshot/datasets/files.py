"""A user's own labelled data: ``fewshot run --dataset my.csv --classes all``.

:func:`load_path` reads

* a ``.csv`` / ``.tsv`` file with a header row, or a ``.jsonl`` file of one JSON
  object per line, with a text column and a label column (``text_column`` /
  ``label_column``, default ``text`` and ``label``);
* a folder of images with one subfolder per class (any format PIL decodes:
  png, jpg, jpeg, bmp, gif, tif, tiff, webp; other files are ignored);
* an ``.npz`` file with items under ``x`` or ``images`` (uint8 (n, H, W) or
  (n, H, W, C) images, or a 1-D array of strings for text) and labels under
  ``y`` or ``labels`` (any values; used as strings).

A user's file has no versioned class split, so :func:`class_split` makes a
deterministic one: class names sorted, shuffled by ``numpy default_rng(0)``,
60% train / 20% val / 20% test (at least 2 classes each). With fewer than
:data:`MIN_SPLIT_CLASSES` classes the split is empty and ``--classes all``
is the way to use the file.
"""
from __future__ import annotations

import csv
import itertools
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..data import FewShotDataset
from ..inputs import MAX_TEXT_CHARS, check_label, check_labels, check_text, check_texts

MAX_FILE_BYTES = 1 << 30  # the largest text file read (1 GiB: some million examples); refused before reading
MAX_LINE_CHARS = 8 * MAX_TEXT_CHARS  # a line holds one example: its text (at most MAX_TEXT_CHARS), label, escapes
TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
NPZ_ITEM_KEYS = ("x", "images")
NPZ_LABEL_KEYS = ("y", "labels")
MIN_SPLIT_CLASSES = 10


def class_split(classes, seed: int = 0) -> dict[str, list[str]]:
    """60/20/20 train/val/test split of ``classes`` (sorted, then permuted by ``default_rng(seed)``).

    Returns ``{}`` when there are fewer than MIN_SPLIT_CLASSES classes.
    """
    names = sorted(set(classes))
    n = len(names)
    if n < MIN_SPLIT_CLASSES:
        return {}
    n_val = n_test = max(2, round(0.2 * n))
    order = [names[i] for i in np.random.default_rng(seed).permutation(n)]
    n_train = n - n_val - n_test
    return {"train": sorted(order[:n_train]), "val": sorted(order[n_train:n_train + n_val]),
            "test": sorted(order[n_train + n_val:])}


def load_path(path: str | os.PathLike, text_column: str = "text", label_column: str = "label",
              **_) -> FewShotDataset:
    """A :class:`FewShotDataset` from a user's CSV/TSV/JSONL file, .npz file or folder of class folders."""
    p = Path(path)
    if p.is_dir():
        items, labels = read_image_folder(p)
        modality = "image"
    elif not p.is_file():
        raise ValueError(f"expected a file or folder at {str(p)!r} but there is none")
    elif p.suffix.lower() in TABLE_SUFFIXES:
        items, labels = read_table(p, text_column, label_column)
        modality = "text"
    elif p.suffix.lower() == ".jsonl":
        items, labels = read_jsonl(p, text_column, label_column)
        modality = "text"
    elif p.suffix.lower() == ".npz":
        items, labels, modality = read_npz(p)
    else:
        raise ValueError(
            f"{p}: expected a .csv, .tsv, .jsonl or .npz file or a folder with one subfolder per class, "
            f"got a {p.suffix or 'suffix-less'} file; convert it to one of these"
        )
    return FewShotDataset(name=p.name, modality=modality, items=items, labels=labels,
                          splits=class_split(labels), source=str(p.resolve()))


def _text_row(path: Path, lineno: int, row: dict, text_column: str, label_column: str | None) -> tuple[str, str]:
    text = row.get(text_column)
    label = row.get(label_column) if label_column is not None else ""
    if text is None or label is None:
        wanted = f"{text_column!r}" + (f" and {label_column!r}" if label_column is not None else "")
        raise ValueError(f"{path}:{lineno}: expected values for {wanted}, got {row!r}; fix or remove the line")
    text = check_text(str(text), f"{path}:{lineno}: {text_column!r}")
    if label_column is not None:
        label = check_label(str(label), f"{path}:{lineno}: {label_column!r}")
    return text.strip(), label


def _checked_labels(path: Path, labels: list[str]) -> list[str]:
    """The file's labels, stripped of surrounding spaces once no two differ only by them."""
    return [label.strip() for label in check_labels(labels, str(path))]


def open_text(path: Path, **kw):
    """``path`` opened as UTF-8 text; OSError (unreadable, a folder, ...) becomes a ValueError naming the file,
    and a file of more than :data:`MAX_FILE_BYTES` is refused before any of it is read. Every reader of a user's
    text file (here and in :mod:`fewshot.datasets.ner`) opens it here and reads it through :func:`bounded_lines`:
    memory stays bounded by the examples kept."""
    try:
        size = os.stat(path).st_size
        if size > MAX_FILE_BYTES:
            raise ValueError(f"{path} holds {size:,} bytes, more than the {MAX_FILE_BYTES:,} fewshot reads from one "
                             "file; split it into smaller files")
        return open(path, encoding="utf-8-sig", **kw)
    except OSError as exc:
        raise ValueError(f"cannot read {path} ({exc.strerror or exc}); check that it is a readable file") from exc


def bounded_lines(path: Path, f) -> Iterator[str]:
    """The lines of the text file ``f`` (opened from ``path``), each read with a bound: a line longer than
    :data:`MAX_LINE_CHARS` is refused when met, never read whole (one line of a file is one example)."""
    for lineno in itertools.count(1):
        line = f.readline(MAX_LINE_CHARS + 1)
        if not line:
            return
        if len(line) > MAX_LINE_CHARS:
            raise ValueError(f"{path}:{lineno}: the line is longer than {MAX_LINE_CHARS:,} characters, but a line "
                             f"holds one example, whose text may have at most {MAX_TEXT_CHARS:,}; split long "
                             "documents into passages, one per line")
        yield line


def _not_utf8(path: Path, exc: UnicodeDecodeError) -> ValueError:
    with open(path, "rb") as f:
        head = f.read(4)
    hint = (" it starts with a UTF-16 byte-order mark: save it as UTF-8" if head[:2] in (b"\xff\xfe", b"\xfe\xff")
            else " save it as UTF-8 (e.g. iconv -t UTF-8)")
    return ValueError(f"{path}: expected UTF-8 text, but byte {exc.start} ({exc.object[exc.start:exc.start + 1]!r}) "
                      f"is not valid UTF-8;{hint}")


def _missing_columns(path: Path, present: list, text_column: str, label_column: str | None, where: str) -> None:
    missing = [c for c in (text_column, label_column) if c is not None and c not in present]
    if missing:
        wanted = f"columns {text_column!r} (text) and {label_column!r} (label)" if label_column is not None \
            else f"a column {text_column!r} (text)"
        raise ValueError(f"{path}: expected {wanted} but {where} has {present}; pass --text-column"
                         f"{'/--label-column' if label_column is not None else ''} to name yours")


def read_table(path: Path, text_column: str = "text", label_column: str = "label") -> tuple[list[str], list[str]]:
    """Texts and labels of a CSV (comma) or TSV (tab) file with a header row."""
    delimiter = TABLE_SUFFIXES[path.suffix.lower()]
    texts, labels = [], []
    with open_text(path, newline="") as f:
        try:
            texts, labels = _read_rows(path, f, delimiter, text_column, label_column)
        except UnicodeDecodeError as exc:
            raise _not_utf8(path, exc) from exc
    return texts, _checked_labels(path, labels)


def _csv_error(path: Path, line: int, exc: csv.Error) -> ValueError:
    if "field larger than field limit" in str(exc):
        return ValueError(f"{path}:{line}: a field is longer than the CSV reader's limit of {csv.field_size_limit()} "
                          "characters; shorten that text (split long documents), or check for a quote that is "
                          "opened and never closed, which makes the rest of the file one field")
    return ValueError(f"{path}:{line}: malformed line ({exc}); fix the quoting")


def _read_rows(path: Path, f, delimiter: str, text_column: str, label_column: str) -> tuple[list[str], list[str]]:
    texts, labels = [], []
    reader = csv.reader(bounded_lines(path, f), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise ValueError(f"{path} is empty: expected a header row naming the columns, then one example "
                         "per line") from None
    except csv.Error as exc:
        raise _csv_error(path, 1, exc) from exc
    header = [h.strip() for h in header]
    _missing_columns(path, header, text_column, label_column, "the header")
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise _csv_error(path, reader.line_num, exc) from exc
        lineno = reader.line_num
        if not fields or all(not x.strip() for x in fields):
            continue
        if len(fields) != len(header):
            raise ValueError(
                f"{path}:{lineno}: expected {len(header)} fields (columns {header}) but the line has "
                f"{len(fields)}; quote values that contain {delimiter!r}"
            )
        text, label = _text_row(path, lineno, dict(zip(header, fields)), text_column, label_column)
        texts.append(text)
        labels.append(label)
    if not texts:
        raise ValueError(f"{path}: expected examples after the header but found none")
    return texts, labels


def read_jsonl(path: Path, text_column: str = "text", label_column: str = "label") -> tuple[list[str], list[str]]:
    """Texts and labels of a JSON-lines file, one ``{"text": ..., "label": ...}`` object per line."""
    with open_text(path) as f:
        try:
            texts, labels = _read_objects(path, f, text_column, label_column)
        except UnicodeDecodeError as exc:
            raise _not_utf8(path, exc) from exc
    return texts, _checked_labels(path, labels)


def json_records(path: Path, f) -> Iterator[tuple[int, object]]:
    """(line number, parsed value) of each non-blank line of the JSON-lines file ``f`` (opened from ``path``);
    a line that is not JSON raises ValueError naming the file and line."""
    for lineno, line in enumerate(bounded_lines(path, f), start=1):
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{lineno}: malformed JSON ({exc.msg}); expected one object per "
                             "line") from exc


def _read_objects(path: Path, f, text_column: str, label_column: str) -> tuple[list[str], list[str]]:
    texts, labels = [], []
    for lineno, row in json_records(path, f):
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
        _missing_columns(path, sorted(row), text_column, label_column, f"line {lineno}")
        text, label = _text_row(path, lineno, row, text_column, label_column)
        texts.append(text)
        labels.append(label)
    if not texts:
        raise ValueError(f"{path} is empty: expected one JSON object per line")
    return texts, labels


TEXT_FILES = (".txt", ".csv", ".tsv", ".jsonl")


def read_texts(path: str | Path, text_column: str = "text") -> list[str]:
    """The texts of a .txt (one per non-blank line), .csv/.tsv (column ``text_column``) or .jsonl file (key
    ``text_column``): unlabelled texts to classify, with the same checks and messages as :func:`read_table`
    and :func:`read_jsonl`."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in TEXT_FILES:
        raise ValueError(f"{p}: expected a .txt, .csv, .tsv or .jsonl file of texts, got a {suffix or 'suffix-less'} "
                         "file")
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file")
    with open_text(p, newline="" if suffix in TABLE_SUFFIXES else None) as f:
        try:
            if suffix == ".txt":
                texts = [check_text(line.rstrip("\r\n"), f"{p}:{n}").strip()
                         for n, line in enumerate(bounded_lines(p, f), start=1) if line.strip()]
            elif suffix == ".jsonl":
                texts = _read_objects(p, f, text_column, None)[0]
            else:
                texts = _read_rows(p, f, TABLE_SUFFIXES[suffix], text_column, None)[0]
        except UnicodeDecodeError as exc:
            raise _not_utf8(p, exc) from exc
    if not texts:
        raise ValueError(f"{p}: found no texts; put one text per line")
    return texts


def read_image_folder(folder: Path) -> tuple[list[np.ndarray], list[str]]:
    """Images of ``folder/<class>/<image>``; the subfolder name is the label."""
    from .images import decode_image

    try:
        entries = sorted(folder.iterdir())
    except OSError as exc:
        raise ValueError(f"cannot list {folder} ({exc.strerror or exc}); check the folder's permissions") from exc
    loose = [f.name for f in entries if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES]
    if loose:
        raise ValueError(f"{folder}: expected one subfolder per class holding its images, but images lie "
                         f"directly in the folder ({loose[:3]}); move them into class subfolders")
    items, labels = [], []
    for sub in (d for d in entries if d.is_dir() and not d.name.startswith(".")):
        check_label(sub.name, f"{folder}: class folder {sub.name!r}")
        for f in _image_files(sub):
            try:
                data = f.read_bytes()
            except OSError as exc:
                raise ValueError(f"cannot read {f} ({exc.strerror or exc}); fix its permissions or remove it") from exc
            items.append(decode_image(data, str(f)))
            labels.append(sub.name)
    if not items:
        raise ValueError(f"{folder}: expected one subfolder per class holding images "
                         f"({', '.join(sorted(IMAGE_SUFFIXES))}) but found none")
    return items, labels


def _image_files(sub: Path) -> list[Path]:
    """Image files under class folder ``sub``, sorted; a subfolder that cannot be listed is an error, not skipped."""
    def fail(exc: OSError):
        raise ValueError(f"cannot list {exc.filename} ({exc.strerror or exc}): its images would be silently "
                         f"left out of class {sub.name!r}; fix its permissions or remove it") from exc

    found = []
    for root, dirs, files in os.walk(sub, onerror=fail):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [Path(root) / n for n in files if Path(n).suffix.lower() in IMAGE_SUFFIXES and not n.startswith(".")]
    return sorted(found)


def _npz_key(npz, keys: tuple[str, ...], path: Path, what: str) -> np.ndarray:
    for k in keys:
        if k in npz.files:
            return npz[k]
    raise ValueError(f"{path}: expected the {what} under one of the keys {list(keys)} but the file has "
                     f"{npz.files}; save them as np.savez(path, x=..., y=...)")


def read_npz(path: Path) -> tuple[list, list[str], str]:
    """Items, labels and modality of an .npz file with ``x``/``images`` and ``y``/``labels``."""
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable .npz file ({exc}); write it with numpy.savez") from exc
    with npz:
        x = _npz_key(npz, NPZ_ITEM_KEYS, path, "items")
        y = _npz_key(npz, NPZ_LABEL_KEYS, path, "labels")
    if y.ndim != 1 or len(y) != len(x):
        raise ValueError(f"{path}: expected labels of shape ({len(x)},), one per item, got {y.shape}")
    labels = check_labels([str(v) for v in y.tolist()], str(path))
    if x.dtype.kind == "U" and x.ndim == 1:
        return check_texts([str(t) for t in x.tolist()], str(path)), labels, "text"
    if x.dtype not in (np.uint8, np.bool_) or x.ndim not in (3, 4):
        raise ValueError(
            f"{path}: expected images as a uint8 array of shape (n, H, W) or (n, H, W, C), or texts as a "
            f"1-D string array, got {x.dtype} {x.shape}; convert images with (x * 255).astype(np.uint8)"
        )
    if x.dtype == np.bool_:
        x = x.astype(np.uint8) * 255
    return list(x), labels, "image"


__all__ = ["MAX_FILE_BYTES", "MAX_LINE_CHARS", "MIN_SPLIT_CLASSES", "bounded_lines", "class_split", "load_path",
           "open_text", "read_image_folder", "read_jsonl", "read_npz", "read_table"]
