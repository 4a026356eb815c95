"""SupportStore: the on-disk folder of a persistent support index, crash-safe and lockable.

A store folder holds

- ``manifest.json``: the JSON metadata (whatever the caller passes: class
  names, counts, metric, encoder identity, ...), the fewshot version, a
  generation counter, and for every data file its name, size and SHA-256; the
  manifest carries a SHA-256 of its own body too; the body also holds
  ``index_id``, the store's identity: a random UUID chosen by the first save
  and kept by every later one (a folder written before ``index_id`` existed
  gets one on its next save), so that a prediction log can name the index;
- data files named ``<key>-<token>.<ext>`` (e.g. ``index-1f3a....faiss``,
  ``state-1f3a....safetensors``), one set per saved generation;
- ``.pending``: the names of the data files a write is about to create (written
  before them, so that the files of a write killed before its commit can be
  collected later).

Writing a new state (:meth:`SupportStore.write`) never touches the files the
current manifest names: it records the new names in ``.pending``, writes the
new data files under those fresh names (temp file, fsync, rename), then
atomically replaces ``manifest.json`` (the commit point; its ``retired`` list
names the previous generation's files), then deletes the retired files and
the uncommitted files and temp files ``.pending`` names. The store only ever
deletes a file its own records name (the manifest's ``retired`` list, the
``.pending`` record, or a temp file of its own ``manifest.json``), never a file
because its name looks like a data file: a user's file left in the folder stays.
No file the store writes may be a symbolic link (a link planted in the folder
is refused, never written through). A process killed
at any instant therefore leaves the old manifest with its intact files, or the
new one with its intact files. A reader that finds a named file missing (an
older generation deleted under it) re-reads the manifest and retries.

:meth:`SupportStore.locked` is an exclusive, re-entrant (within one process)
``fcntl`` lock on ``DIR/.lock``: hold it around load-modify-save so that
concurrent writers lose no update. :meth:`write` takes it too.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import mmap
import os
import re
import secrets
import threading
import uuid
from pathlib import Path

from . import __version__
from .atomic import atomic_write_bytes, atomic_write_text, fsync_dir

MANIFEST = "manifest.json"
LOCK = ".lock"
FORMAT = "fewshot-support-store"
FORMAT_VERSION = 1
PENDING = ".pending"
DATA_FILE = re.compile(r"^[A-Za-z_]\w*-\d{8}-[0-9a-f]{8}\.[A-Za-z0-9]+$")  # what the store's own names look like
MANIFEST_TMP = re.compile(r"^\.manifest\.json\.tmp-\d+$")  # atomic_write_text's temp file of the manifest

_held: dict[tuple[str, int], int] = {}  # (lock path, thread) -> depth: re-entrant within a thread
_held_guard = threading.Lock()


def _read_file(path: Path, writable: bool):
    """The bytes of ``path``; when ``writable``, a private copy-on-write memory map of it (an ``mmap``, pages
    read in at once where the OS allows): a buffer of the caller's own that costs no copy.

    Not ``bytearray(n)`` plus ``readinto``: zeroing 1.5 GB first took longer than reading it. Data files are
    never rewritten in place (each generation writes new names), so the mapping sees what was hashed."""
    if not writable:
        return path.read_bytes()
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if not size:
            return bytearray()
        flags = mmap.MAP_PRIVATE | getattr(mmap, "MAP_POPULATE", 0)
        return mmap.mmap(f.fileno(), size, flags=flags, prot=mmap.PROT_READ | mmap.PROT_WRITE)


def _sha256(data) -> str:
    """Hex SHA-256 of ``data``: bytes, or a list of buffers taken one after the other."""
    h = hashlib.sha256()
    for part in data if isinstance(data, list) else [data]:
        h.update(part)
    return h.hexdigest()


def _nbytes(data) -> int:
    return sum(memoryview(part).nbytes for part in data) if isinstance(data, list) else len(data)


def _body_digest(body: dict) -> str:
    return _sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())


class StoreError(ValueError):
    """A store folder is missing, corrupted, truncated or of an unknown format."""


class ConcurrentUpdateError(StoreError):
    """A write expected the folder at one generation and found another writer's newer one."""


class SupportStore:
    """The folder ``path``; see the module docstring for its layout and guarantees.

    ``required``: metadata keys every manifest of this folder must hold (a manifest
    without them is refused with :class:`StoreError`); ``remedy``: what the error
    messages tell the user to do about a damaged folder.
    """

    def __init__(self, path: str | os.PathLike, required: tuple[str, ...] = (),
                 remedy: str = "restore the folder from a backup or rebuild the index"):
        self.path = Path(path)
        self.generation: int | None = None  # of the last manifest read or written through this object
        self.required = tuple(required)
        self.remedy = remedy
        self.index_id: str | None = None  # of the last manifest read or written (None: written before index_id)

    def __repr__(self) -> str:
        return f"SupportStore({str(self.path)!r})"

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    # -- locking ----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self):
        """Exclusive lock on the folder (blocks until free); re-entrant within one process."""
        if self.path.exists() and not self.path.is_dir():
            raise StoreError(f"expected a folder at {self.path} but it is a file; choose another path "
                             "(or move the file away)")
        for parent in self.path.parents:
            if parent.exists() and not parent.is_dir():
                raise StoreError(f"cannot create {self.path}: {parent} is a file, not a folder; choose a path "
                                 "under a folder")
        with self._os_errors("create or lock"):
            self.path.mkdir(parents=True, exist_ok=True)
            self.refuse_symlink(self.path / LOCK)
            os.close(os.open(self.path / LOCK, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644))
        path = str((self.path / LOCK).resolve())
        key = (path, threading.get_ident())
        with _held_guard:
            depth = _held.get(key, 0)
            if depth:
                _held[key] = depth + 1
        if depth:
            try:
                yield self
            finally:
                with _held_guard:
                    _held[key] -= 1
            return
        with open(os.open(path, os.O_RDWR | os.O_NOFOLLOW), "r+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            with _held_guard:
                _held[key] = 1
            try:
                yield self
            finally:
                with _held_guard:
                    del _held[key]
                fcntl.flock(fh, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def _os_errors(self, action: str):
        """An OSError (permissions, a read-only disk, ...) becomes a StoreError saying what could not be done."""
        try:
            yield
        except FileNotFoundError:
            raise  # read() retries on it; read_manifest reports it itself
        except OSError as exc:
            raise StoreError(f"cannot {action} {self.path} ({exc.strerror or exc}"
                             f"{': ' + str(exc.filename) if exc.filename else ''}); check that the folder is "
                             f"{'readable' if action == 'read' else 'writable'} by this user, or use another "
                             "folder") from exc

    @staticmethod
    def refuse_symlink(path: Path) -> None:
        """Refuse (StoreError) to write ``path`` when it is a symbolic link: writing through a link planted in
        the folder would change a file elsewhere."""
        if path.is_symlink():
            raise StoreError(f"{path} is a symbolic link (to {os.readlink(path)}); fewshot never writes through a "
                             "link: replace it with a plain file or remove it")

    @classmethod
    def locked(cls, path: str | os.PathLike):
        """``with SupportStore.locked(DIR):`` hold DIR's lock around load-modify-save."""
        return cls(path).lock()

    # -- reading ----------------------------------------------------------------------------------
    def read_manifest(self) -> dict:
        """The verified manifest: format, version and self-checksum checked."""
        if not self.path.is_dir():
            raise FileNotFoundError(f"no index folder at {self.path}; create it first (fewshot index create DIR)")
        if not self.exists():
            raise FileNotFoundError(f"{self.path} holds no {MANIFEST}: it is not a fewshot index folder "
                                    "(create one with `fewshot index create DIR` or FewShotClassifier.save)")
        with self._os_errors("read"):
            raw = self.manifest_path.read_bytes()
        try:
            doc = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise StoreError(f"{self.manifest_path} is corrupted (not valid JSON: {exc}); "
                             f"{self.remedy}") from exc
        if not isinstance(doc, dict) or doc.get("format") != FORMAT or "body" not in doc:
            raise StoreError(f"{self.manifest_path} is not a {FORMAT} manifest")
        if doc.get("format_version") != FORMAT_VERSION:
            raise StoreError(f"{self.manifest_path} has format version {doc.get('format_version')!r}; this fewshot "
                             f"({__version__}) reads version {FORMAT_VERSION}: upgrade fewshot or rebuild the index")
        if _body_digest(doc["body"]) != doc.get("sha256"):
            raise StoreError(f"{self.manifest_path} is corrupted (its checksum does not match its content); "
                             f"{self.remedy}")
        body = doc["body"]
        missing = [k for k in self.required if not isinstance(body, dict) or k not in body]
        if missing or not isinstance(doc.get("files"), dict) or not isinstance(doc.get("generation"), int) \
                or not all(isinstance(f, dict) and isinstance(f.get("name"), str) and DATA_FILE.match(f["name"])
                           and isinstance(f.get("bytes"), int) and isinstance(f.get("sha256"), str)
                           for f in doc["files"].values()) \
                or not all(isinstance(n, str) and DATA_FILE.match(n) for n in doc.get("retired", [])):
            what = f"the keys {missing}" if missing else "its file list or generation"
            raise StoreError(f"{self.manifest_path} lacks {what} (expected {sorted(self.required)}); the folder "
                             f"was altered or written by another program: {self.remedy}")
        self.generation = doc["generation"]
        self.index_id = body.get("index_id")
        return doc

    def read(self, retries: int = 5, writable: tuple[str, ...] = ()) -> tuple[dict, dict[str, bytes]]:
        """(metadata, {key: file bytes}) of the current generation, every file checksum-verified.

        The metadata is what the writer passed (without ``index_id``: see :attr:`index_id`). The files of the
        keys in ``writable`` come as a writable buffer of the caller's own (a private memory map), to use in
        place.
        """
        for attempt in range(retries + 1):
            doc = self.read_manifest()
            try:
                with self._os_errors("read"):
                    blobs = {key: _read_file(self.path / f["name"], key in writable)
                             for key, f in doc["files"].items()}
            except FileNotFoundError:
                if attempt < retries and self.read_manifest()["generation"] != doc["generation"]:
                    continue  # a writer replaced the generation while we read: read the new one
                raise StoreError(f"{self.path}: a file named by {MANIFEST} is missing; {self.remedy}") from None
            for key, f in doc["files"].items():
                data = blobs[key]
                if len(data) != f["bytes"] or _sha256(data) != f["sha256"]:
                    why = "truncated" if len(data) < f["bytes"] else "corrupted"
                    raise StoreError(f"{self.path / f['name']} is {why} ({len(data)} bytes, expected {f['bytes']}; "
                                     f"checksum mismatch); {self.remedy}")
            return {k: v for k, v in doc["body"].items() if k != "index_id"}, blobs
        raise AssertionError("unreachable")

    # -- writing ----------------------------------------------------------------------------------
    def write(self, meta: dict, blobs: dict[str, tuple[str, bytes]], expect_generation: int | None = None) -> int:
        """Commit a new generation: ``meta`` (JSON-able) and ``blobs`` {key: (extension, data)}, where data is bytes
        or a list of buffers that make the file one after the other (written and hashed without joining them).

        Returns the new generation number. Holds the folder lock while writing.
        ``expect_generation``: refuse (:class:`ConcurrentUpdateError`, nothing written)
        unless the folder is still at that generation (optimistic concurrency).
        """
        for key, (ext, _) in blobs.items():
            if not key.isidentifier() or not ext.isalnum():
                raise ValueError(f"blob key {key!r} / extension {ext!r} must be plain words")
        if "index_id" in meta:
            raise ValueError("write: meta must not hold 'index_id'; the store chooses and keeps the index identity "
                             "itself (read it from SupportStore.index_id)")
        with self.lock(), self._os_errors("write to"):
            old = self.read_manifest() if self.exists() else None
            current = old["generation"] if old else 0
            index_id = (old["body"].get("index_id") if old else None) or uuid.uuid4().hex
            if expect_generation is not None and current != expect_generation:
                raise ConcurrentUpdateError(
                    f"{self.path} was changed by another writer (generation {current}, this copy was loaded at "
                    f"{expect_generation}); saving would lose that update. Load it again and re-apply the "
                    "change, or make changes under `with FewShotClassifier.update(DIR) as clf:`, which locks")
            generation = current + 1
            token = f"{generation:08d}-{secrets.token_hex(4)}"
            names = {key: f"{key}-{token}.{ext}" for key, (ext, _) in blobs.items()}
            self.refuse_symlink(self.manifest_path)
            self.refuse_symlink(self.path / PENDING)
            pending = self._read_pending()
            try:
                self._record_pending(sorted(names.values()) + pending)
                files = {}
                for key, (ext, data) in blobs.items():
                    atomic_write_bytes(self.path / names[key], data)
                    files[key] = {"name": names[key], "bytes": _nbytes(data), "sha256": _sha256(data)}
                body = {**meta, "index_id": index_id}
                retired = sorted({f["name"] for f in old["files"].values()} - set(names.values())) if old else []
                doc = {"format": FORMAT, "format_version": FORMAT_VERSION, "fewshot_version": __version__,
                       "generation": generation, "files": files, "retired": retired, "body": body,
                       "sha256": _body_digest(body)}
                # compact: json's indented form is encoded in pure Python, 10x slower on a 10^6-class manifest
                atomic_write_text(self.manifest_path, json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n")
            except BaseException:  # not committed: take back what this write made, as far as the disk lets us
                with contextlib.suppress(OSError):
                    for name in names.values():
                        (self.path / name).unlink(missing_ok=True)
                    if pending:
                        self._record_pending(pending)
                    else:
                        (self.path / PENDING).unlink(missing_ok=True)
                raise
            self._collect_garbage(doc, (old or {}).get("retired", []))
        self.generation, self.index_id = generation, index_id
        return generation

    def collect_garbage(self) -> int:
        """Delete what killed writers left (see the module docstring); returns how many files went.

        Takes the lock; a folder without a manifest, or one this user cannot write, is left alone.
        """
        if not self.exists() or not os.access(self.path, os.W_OK):
            return 0
        with self.lock(), self._os_errors("clean up"):
            return self._collect_garbage(self.read_manifest())

    def _read_pending(self) -> list[str]:
        """The names ``.pending`` records (only names the store itself would choose); [] if none or damaged."""
        path = self.path / PENDING
        if path.is_symlink() or not path.is_file():
            return []
        try:
            names = json.loads(path.read_bytes())
        except (UnicodeDecodeError, json.JSONDecodeError):
            return []  # torn by a kill while it was written: the files it named were not written yet
        return [n for n in names if isinstance(n, str) and DATA_FILE.match(n)] if isinstance(names, list) else []

    def _record_pending(self, names: list[str]) -> None:
        self.refuse_symlink(self.path / PENDING)
        fd = os.open(self.path / PENDING, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        try:
            os.write(fd, json.dumps(sorted(set(names))).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(self.path)

    def _collect_garbage(self, doc: dict, also_retired: list[str] = ()) -> int:
        """Delete (lock held) the retired files of ``doc`` (the committed manifest), the files ``.pending``
        names that ``doc`` does not, their temp files, and temp files of the manifest: never a file ``doc``
        names, never a file no record of this store names."""
        keep = {f["name"] for f in doc["files"].values()}
        own = (set(doc.get("retired", [])) | set(also_retired) | set(self._read_pending())) - keep
        removed = 0
        for p in self.path.iterdir():
            tmp_of = p.name[1:].rsplit(".tmp-", 1)[0] if p.name.startswith(".") and ".tmp-" in p.name else None
            if (p.name in own or tmp_of in own or MANIFEST_TMP.match(p.name)) and p.is_file() \
                    and not p.is_symlink():
                p.unlink(missing_ok=True)
                removed += 1
        (self.path / PENDING).unlink(missing_ok=True)
        fsync_dir(self.path)
        return removed
