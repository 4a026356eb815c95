"""What a line of a prediction log may hold (:mod:`fewshot.support.log`): the record types, and reading
complete lines into checked records, keeping a torn last line out.

Separate from the log's file handling (locks, appends, truncation of a torn tail) because it is pure:
bytes in, records or a ValueError naming the file and line out.
"""
from __future__ import annotations

import json
from pathlib import Path

FORMAT = "fewshot-predictions/1"
RECORD_TYPES = ("header", "prediction", "correction", "confirmation")


class RecordIds:
    """The prediction ids seen so far and the largest of them."""

    def __init__(self):
        self.seen: set[int] = set()
        self.last = -1

    def add_all(self, ids: list[int]) -> None:
        self.seen.update(ids)
        self.last = max(self.last, *ids)


def parse_records(data: bytes, path: Path, first_line: int, ids: RecordIds) -> tuple[list[dict], int]:
    """The complete lines of ``data`` as checked records, and the byte length they span.

    ``first_line`` is the line number of ``data``'s first line (1 at the start of the file);
    ``ids`` holds the prediction ids already seen and is updated. Bytes after the last newline
    (a torn line) are left out; a complete line that is not a valid record raises ValueError.
    """
    end = data.rfind(b"\n") + 1
    lines = data[:end].split(b"\n")[:-1]
    if end < len(data) and _complete(data[end:]):
        lines, end = lines + [data[end:]], len(data)  # a complete record that lacks only its newline: kept
    records = []
    for n, raw in enumerate(lines, start=first_line):
        try:
            r = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(
                f"{path}, line {n}: not a complete JSON record ({raw[:60]!r}); only the last line can be torn by a "
                "crash, so the log is corrupted: restore it from a copy or move it aside to start a new log"
            ) from exc
        _check_record(r, n, path, ids)
        records.append(r)
    return records, end


def _complete(tail: bytes) -> bool:
    """Whether a last line without its newline is a whole JSON object (a torn line never is: a record's
    closing brace is its last byte before the newline)."""
    try:
        return isinstance(json.loads(tail), dict)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False


def _is_label(x) -> bool:
    return isinstance(x, (str, int)) and not isinstance(x, bool)


def _check_record(r, n: int, path: Path, ids: RecordIds) -> None:
    where = f"{path}, line {n}"
    if not isinstance(r, dict) or r.get("type") not in RECORD_TYPES:
        raise ValueError(f"{where}: expected a record with a type in {RECORD_TYPES}, got {str(r)[:80]}; "
                         "this is not a fewshot prediction log")
    if (n == 1) != (r["type"] == "header"):
        raise ValueError(f"{where}: the header must be line 1 and only line 1, got a {r['type']!r} record; "
                         "this is not a fewshot prediction log (or it was edited)")
    if r["type"] == "header":
        if r.get("format") != FORMAT or not isinstance(r.get("index"), str):
            raise ValueError(f"{where}: expected a header of format {FORMAT!r} naming the index, got {r}")
        return
    if isinstance(r.get("id"), bool) or not isinstance(r.get("id"), int):
        raise ValueError(f"{where}: expected an integer id, got {r.get('id')!r}")
    if r["type"] == "prediction":
        labels, scores = r.get("labels"), r.get("scores")
        if not isinstance(labels, list) or not labels or not all(_is_label(x) for x in labels) \
                or not isinstance(scores, list) or len(scores) != len(labels) \
                or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in scores) \
                or not isinstance(r.get("query"), str):
            raise ValueError(f"{where}: expected a prediction with a query text, a non-empty list of labels (str "
                             f"or int) and one score per label, got {str(r)[:120]}; the log was edited: restore "
                             "it or move it aside to start a new log")
    elif r["type"] == "correction" and not _is_label(r.get("label")):
        raise ValueError(f"{where}: expected a correction whose label is a str or int, got {r.get('label')!r}; "
                         "the log was edited: restore it or move it aside to start a new log")
    if r["type"] == "prediction":
        if r["id"] <= ids.last:
            raise ValueError(f"{where}: prediction id {r['id']} after id {ids.last}; ids must increase "
                             "(the log was edited or merged): restore it or move it aside")
        ids.add_all([r["id"]])
    elif r["id"] not in ids.seen:
        raise ValueError(f"{where}: {r['type']} of prediction id {r['id']}, which no earlier line holds")
