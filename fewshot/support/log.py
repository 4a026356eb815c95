"""PredictionLog: an append-only JSON-lines log of predictions and the feedback they got.

The log of a support index is the file ``predictions.jsonl`` inside the index
folder (:meth:`PredictionLog.in_index`); it is not part of the index manifest.
Every line is one JSON object with a ``type``:

- ``header`` (line 1 only): ``{"type": "header", "format": ..., "index": <index identity>, "created": <UTC>}``;
  the identity is whatever string the caller uses to name its index, and
  :meth:`PredictionLog.open` refuses a log whose header names another index;
- ``prediction``: ``{"type": "prediction", "id": N, "query": text, "labels": [top-k labels],
  "scores": [top-k scores], "generation": <index generation>, "time": <UTC>}``;
  ids are 0, 1, 2, ... in file order, never reused;
- ``correction``: ``{"type": "correction", "id": N, "label": L, "time": ...}``: the true class of
  prediction N is L;
- ``confirmation``: ``{"type": "confirmation", "id": N, "time": ...}``: prediction N's top label is right.

The latest correction or confirmation of a prediction decides its true label.

Crash safety and concurrency: writers hold an exclusive ``fcntl`` lock on the
sidecar file ``.predictions.jsonl.lock`` (readers a shared one), write each
complete line with one ``os.write`` on a descriptor opened with ``O_APPEND``,
then ``fsync``. Ids are assigned under the lock from the file itself, so
processes appending at once never collide and lose no line. A process killed
mid-write can only leave a torn *last* line (no final newline). A last line
that lacks only its newline but is a complete, valid record (written by hand
or by another tool) is kept: :meth:`read` counts it and the next append adds
the newline. A last line that does not parse is torn: :meth:`read` skips it
with a warning and the next append truncates it away, warning again. The log
and its lock file are never written through a symbolic link. A folder this user may read but
not write (``index stats`` on a read-only index) is read under a shared lock taken on a read-only
descriptor (unlocked when no lock file exists, none being creatable there); a write there is
refused with a ValueError before anything is written. A bad line
anywhere else is corruption no crash can cause, and reading refuses it.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import math
import os
import warnings
from collections.abc import Callable, Hashable, Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path

from ..atomic import fsync_dir
from .log_records import FORMAT, RecordIds, parse_records

FILENAME = "predictions.jsonl"
ENTRY_KEYS = ("query", "labels", "scores", "generation")
READ_ONLY_ERRNOS = (errno.EACCES, errno.EPERM, errno.EROFS)  # a folder or file this user may read, not write


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _line(record: dict) -> bytes:
    return (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


class PredictionLog:
    """The prediction log at ``path`` (see the module docstring for the format).

    ``index_identity``, when given, is checked against the header before any
    write; it is required to create a new log. Use :meth:`open` to create or
    check the log up front.
    """

    def __init__(self, path: str | os.PathLike, index_identity: str | None = None,
                 committed_corrections: Callable[[], Iterable[int] | None] | None = None):
        self.path = Path(path)
        self.lock_path = self.path.with_name(f".{self.path.name}.lock")
        if index_identity is not None and (not isinstance(index_identity, str) or not index_identity):
            raise ValueError(f"index_identity must be a non-empty string naming the index, got {index_identity!r}")
        self.index_identity = index_identity
        # what this process has already scanned of the file, so an append reads only new lines
        self._file_id: tuple[int, int] | None = None
        self._offset = 0
        self._lines = 0
        self._ids = RecordIds()
        # called at each read: the prediction ids whose correction the index has committed (None: all count);
        # a correction record of any other id (its writer was killed before the index took it) does not
        # count: see fewshot.support.curation.correct
        self.committed_corrections = committed_corrections

    def __repr__(self) -> str:
        return f"PredictionLog({str(self.path)!r})"

    @classmethod
    def open(cls, path: str | os.PathLike, index_identity: str,
             committed_corrections: Callable[[], Iterable[int] | None] | None = None) -> "PredictionLog":
        """The log at ``path`` for the index ``index_identity``: created with its header if missing,
        refused (ValueError) if its header names another index."""
        if index_identity is None:
            raise ValueError("PredictionLog.open needs the index identity (a string naming the index); got None")
        log = cls(path, index_identity, committed_corrections)
        with log._lock(exclusive=True):
            log._sync()
        return log

    @classmethod
    def in_index(cls, folder: str | os.PathLike, index_identity: str) -> "PredictionLog":
        """The log of the index stored in ``folder``: ``folder/predictions.jsonl``."""
        return cls.open(Path(folder) / FILENAME, index_identity)

    # -- writing ----------------------------------------------------------------------------------
    def append(self, entries: Iterable[Mapping]) -> list[int]:
        """Append predictions; returns their ids, in order.

        Each entry is a mapping with ``query`` (the text), ``labels`` (the top-k labels, best
        first), ``scores`` (their scores, same length) and ``generation`` (the index generation
        or store identity that made the prediction, a string or int). The time is added here.
        Every entry is checked before anything is written.
        """
        entries = [self._check_entry(e, k) for k, e in enumerate(entries)]
        if not entries:
            return []
        with self._lock(exclusive=True):
            self._sync()
            first = self._ids.last + 1
            now = utc_now()
            ids = list(range(first, first + len(entries)))
            self._write([_line({"type": "prediction", "id": i, **e, "time": now}) for i, e in zip(ids, entries)])
            self._ids.add_all(ids)
        return ids

    def append_correction(self, id: int, label: Hashable) -> None:
        """Record that the true class of prediction ``id`` is ``label``."""
        self._check_label(label, "append_correction: label")
        self._feedback({"type": "correction", "id": self._check_id(id), "label": label})

    def append_confirmation(self, id: int) -> None:
        """Record that the top label of prediction ``id`` is right."""
        self._feedback({"type": "confirmation", "id": self._check_id(id)})

    def _feedback(self, record: dict) -> None:
        with self._lock(exclusive=True):
            self._sync()
            if record["id"] not in self._ids.seen:
                raise ValueError(
                    f"{record['type']} of prediction id {record['id']}, but {self.path} holds no such prediction "
                    f"({_describe_ids(self._ids.seen)}); correct an id returned by append()"
                )
            self._write([_line({**record, "time": utc_now()})])

    # -- reading ----------------------------------------------------------------------------------
    @property
    def header(self) -> dict | None:
        """The header record, or None while the log does not exist."""
        records, _ = self._read_records()
        return records[0] if records else None

    def read(self) -> list[dict]:
        """Every prediction, in id order, with its feedback resolved.

        Each dict holds the prediction record (``id``, ``query``, ``labels``, ``scores``,
        ``generation``, ``time``) plus ``feedback`` (None, "correction" or "confirmation": the
        latest one), ``true_label`` (the corrected label, the top label when confirmed, else None)
        and ``correct`` (whether the top label equals ``true_label``; None when unconfirmed).
        A missing file reads as an empty log. While :attr:`committed_corrections` is set, a
        correction of a prediction id outside what it returns is left out.
        """
        records, _ = self._read_records()
        out: dict[int, dict] = {}
        committed = self.committed_corrections() if self.committed_corrections is not None else None
        committed = None if committed is None else set(committed)
        for r in records[1:]:
            if r["type"] == "correction" and committed is not None and r["id"] not in committed:
                continue  # never committed by the index: as if not written
            if r["type"] == "prediction":
                out[r["id"]] = {k: v for k, v in r.items() if k != "type"}
                out[r["id"]].update(feedback=None, true_label=None, correct=None)
            else:
                p = out[r["id"]]
                p["feedback"] = r["type"]
                p["true_label"] = r["label"] if r["type"] == "correction" else p["labels"][0]
                p["correct"] = p["true_label"] == p["labels"][0]
        return list(out.values())

    def get(self, id: int) -> dict:
        """Prediction ``id`` as :meth:`read` gives it."""
        self._check_id(id)
        preds = self.read()
        for p in preds:
            if p["id"] == id:
                return p
        raise ValueError(f"{self.path} holds no prediction id {id} ({_describe_ids([p['id'] for p in preds])}); "
                         "use an id returned by append()")

    def stats(self) -> dict:
        """Counts of the logged predictions and the accuracy of those that got feedback.

        Returns ``{"predictions", "reviewed", "unconfirmed", "correct", "accuracy", "labels"}``
        where ``accuracy`` is correct / reviewed (None when nothing was reviewed) and
        ``labels[L]`` holds, for the predictions whose top label was L: ``predicted``,
        ``confirmed`` (feedback says L was right, including a correction to L itself),
        ``corrected`` (feedback names another class), ``unconfirmed`` and ``accuracy``
        (confirmed / (confirmed + corrected): L's precision on reviewed predictions), plus
        ``corrected_to``: how many predictions were corrected to L from another label.
        """
        preds = self.read()
        labels: dict = {}

        def row(label):
            return labels.setdefault(label, {"predicted": 0, "confirmed": 0, "corrected": 0, "unconfirmed": 0,
                                             "accuracy": None, "corrected_to": 0})

        for p in preds:
            r = row(p["labels"][0])
            r["predicted"] += 1
            if p["correct"] is None:
                r["unconfirmed"] += 1
            elif p["correct"]:
                r["confirmed"] += 1
            else:
                r["corrected"] += 1
                row(p["true_label"])["corrected_to"] += 1
        for r in labels.values():
            reviewed = r["confirmed"] + r["corrected"]
            r["accuracy"] = r["confirmed"] / reviewed if reviewed else None
        correct = sum(r["confirmed"] for r in labels.values())
        reviewed = correct + sum(r["corrected"] for r in labels.values())
        return {"predictions": len(preds), "reviewed": reviewed, "unconfirmed": len(preds) - reviewed,
                "correct": correct, "accuracy": correct / reviewed if reviewed else None, "labels": labels}

    # -- internals --------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _lock(self, exclusive: bool):
        if self.path.is_dir() and not self.path.is_symlink():
            raise ValueError(f"the prediction log {self.path} is a folder, expected a file (or nothing yet); "
                             "move that folder away")
        if not self.path.parent.is_dir():
            raise ValueError(f"the folder of the prediction log {self.path} does not exist; the log lives inside "
                             "an index folder: create the index first or fix the path")
        _refuse_symlink(self.lock_path)
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            if exc.errno not in READ_ONLY_ERRNOS:
                raise
            if exclusive:
                raise self._unwritable(exc) from exc
            try:  # a reader: a shared lock needs only a read-only descriptor
                fd = os.open(self.lock_path, os.O_RDONLY | os.O_NOFOLLOW)
            except FileNotFoundError:  # no lock file, and none can be made here: read unlocked (appends are
                fd = None  # whole lines; a torn last line is skipped)
        try:
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            if fd is not None:
                os.close(fd)  # releases the lock

    def _unwritable(self, exc: OSError) -> ValueError:
        return ValueError(f"cannot write the prediction log {self.path} ({exc.strerror or exc}): the index folder "
                          f"{self.path.parent} is read-only for this user; nothing was written: predict without "
                          "--log, or make the folder writable (or work on a writable copy of it)")

    def _read_records(self) -> tuple[list[dict], int]:
        """All complete records (header first) and the byte length they span, under a shared lock."""
        if not self.path.parent.is_dir() or not self.path.exists():
            return [], 0
        with self._lock(exclusive=False):
            data = self.path.read_bytes()
        records, end = parse_records(data, self.path, first_line=1, ids=RecordIds())
        if records:
            self._check_header(records[0])
        if end < len(data):
            warnings.warn(f"{self.path}: skipped a torn last line ({len(data) - end} bytes without a final newline, "
                          "left by a writer that stopped mid-line); the next append removes it", stacklevel=3)
        return records, end

    def _sync(self) -> None:
        """Under the exclusive lock: create the log if needed, check its header, read lines written
        since the last call, and cut a torn last line."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            st = None
        if st is None or st.st_size == 0:
            if self.index_identity is None:
                raise ValueError(f"{self.path} does not exist and no index identity was given to create it; "
                                 "use PredictionLog.open(path, index_identity)")
            self._write([_line({"type": "header", "format": FORMAT, "index": self.index_identity,
                                "created": utc_now()})])
            fsync_dir(self.path.parent)
            st = os.stat(self.path)
            self._file_id, self._offset, self._lines, self._ids = (st.st_dev, st.st_ino), st.st_size, 1, RecordIds()
            return
        if self._file_id != (st.st_dev, st.st_ino) or st.st_size < self._offset:  # another file, or rewritten
            self._file_id, self._offset, self._lines, self._ids = (st.st_dev, st.st_ino), 0, 0, RecordIds()
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            data = f.read()
        try:
            records, end = parse_records(data, self.path, first_line=self._lines + 1, ids=self._ids)
        except ValueError:
            self._file_id = None  # rescan from the start next time
            raise
        if self._lines == 0 and not records:  # only a torn header: the creating writer stopped mid-line
            warnings.warn(f"{self.path}: removing a torn header line left by a writer that stopped mid-line",
                          stacklevel=4)
            os.truncate(self.path, 0)
            self._sync()
            return
        if self._lines == 0:
            self._check_header(records[0])
        if end < len(data):
            warnings.warn(f"{self.path}: removing a torn last line ({len(data) - end} bytes) left by a writer "
                          "that stopped mid-line", stacklevel=4)
            os.truncate(self.path, self._offset + end)
        self._offset += end
        self._lines += len(records)
        if data and end == len(data) and not data.endswith(b"\n"):  # complete the unterminated last record
            self._write([b"\n"])
            self._lines -= 1

    def _write(self, lines: list[bytes]) -> None:
        _refuse_symlink(self.path)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            if exc.errno not in READ_ONLY_ERRNOS:
                raise
            raise self._unwritable(exc) from exc
        try:
            for line in lines:
                n = os.write(fd, line)
                if n != len(line):
                    raise OSError(f"{self.path}: wrote {n} of {len(line)} bytes (disk full?); the torn line is "
                                  "removed by the next append once space is free")
            os.fsync(fd)
        finally:
            os.close(fd)
        self._offset += sum(len(x) for x in lines)
        self._lines += len(lines)

    def _check_header(self, header: dict) -> None:
        if self.index_identity is not None and header["index"] != self.index_identity:
            raise ValueError(
                f"{self.path} is the prediction log of index {header['index']!r}, not of "
                f"{self.index_identity!r}; open the log of that index, or move this file aside to start a new log"
            )

    @staticmethod
    def _check_id(id) -> int:
        if isinstance(id, bool) or not isinstance(id, int):
            raise TypeError(f"a prediction id is an int returned by append(), got {type(id).__name__} {id!r}")
        return id

    @staticmethod
    def _check_label(label, what: str) -> None:
        if isinstance(label, bool) or not isinstance(label, (str, int)):
            raise TypeError(f"{what} must be a class name (str) or int, got {type(label).__name__} {label!r}")

    def _check_entry(self, e, k: int) -> dict:
        what = f"append: entry {k}"
        if not isinstance(e, Mapping):
            raise TypeError(f"{what} must be a mapping with keys {list(ENTRY_KEYS)}, got {type(e).__name__}")
        if set(e) != set(ENTRY_KEYS):
            missing, extra = sorted(set(ENTRY_KEYS) - set(e)), sorted(set(e) - set(ENTRY_KEYS), key=str)
            raise ValueError(f"{what} must have exactly the keys {list(ENTRY_KEYS)}; missing {missing}, "
                             f"unknown {extra}")
        if not isinstance(e["query"], str):
            raise TypeError(f"{what}: query must be the query text (str), got {type(e['query']).__name__}")
        labels, scores = list(e["labels"]), [float(s) for s in e["scores"]]
        if not labels or len(labels) != len(scores):
            raise ValueError(f"{what}: expected one score per label and at least one label, got {len(labels)} "
                             f"labels and {len(scores)} scores; pass the top-k labels with their scores")
        for label in labels:
            self._check_label(label, f"{what}: label")
        if not all(math.isfinite(s) for s in scores):
            raise ValueError(f"{what}: scores must be finite numbers, got {scores}")
        if isinstance(e["generation"], bool) or not isinstance(e["generation"], (str, int)):
            raise TypeError(f"{what}: generation must be the index generation or store identity (str or int), "
                            f"got {type(e['generation']).__name__} {e['generation']!r}")
        return {"query": e["query"], "labels": labels, "scores": scores, "generation": e["generation"]}


def _describe_ids(ids) -> str:
    return f"its ids run from {min(ids)} to {max(ids)}" if ids else "it holds no predictions"


def _refuse_symlink(path: Path) -> None:
    if path.is_symlink():
        raise ValueError(f"{path} is a symbolic link (to {os.readlink(path)}); the prediction log is never written "
                         "through a link: replace it with a plain file or remove it")
