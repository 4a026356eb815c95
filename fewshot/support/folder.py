"""The folder format of a support index: what a saved FewShotClassifier is on disk.

A support index folder is a :class:`~fewshot.store.SupportStore` (atomic manifest swap, checksummed
files, a lock) of kind ``"fewshot-classifier"`` holding

- the manifest body: classes, counts, ids, next id, metric, dim, scale, unknown label, open-set
  threshold and calibration, index kind and options, the search index's config, and the encoder's
  identity (name, spec, modality, dim, weights fingerprint, and the checkpoint it came from);
- ``state-*.safetensors``: the (n, dim) float32 class means (``means``), which come back bit for bit and
  are used in place, not copied (:func:`_state_arrays`; a class's running float64 sum is its mean times its
  count once it changes after the load); older folders hold the float64 ``sums`` instead, and still load;
- ``support-*.json``: each class's support texts (or null where unknown), in the order of the classes;
- ``index-*.faiss``: the search index (faiss's own serialisation) when it is approximate (IVF, HNSW);
  an exact flat index is the means themselves, so it is not stored twice but rebuilt from them on load
  (at 10^6 classes of 384-d: 1.5 GB of means, plus 0.06 GB of product-quantizer codes and ids for ``auto``'s
  index);
- ``predictions.jsonl`` beside them: the prediction log (:mod:`fewshot.support.log`), not part of
  the manifest.

The folder is self-contained as far as weights allow: a registered encoder is found again by its
name on any machine; a checkpoint's encoder is re-opened from the checkpoint folder it names, and
every encoder, however found, must match the stored weights fingerprint (a moved or retrained
checkpoint is refused with the fix: pass the encoder, or its checkpoint's new place, to ``load``).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..checkpoint import is_checkpoint, load_encoder
from ..encoders import ENCODERS, Encoder, build_encoder, create_encoder, local_spec
from ..index import CODES, SupportIndex
from ..store import StoreError, SupportStore
from .classbook import ClassBook

STORE_KIND = "fewshot-classifier"
TAGGER_KIND = "fewshot-tagger"  # a FewShotTagger: its classes are entity types (and O), its examples words
STORE_KEYS = ("kind", "classes", "counts", "ids", "next_id", "fitted", "metric", "dim",
              "unknown_label", "threshold", "calibration", "index_kind", "index_options", "index", "encoder")
TAGGER_KEYS = ("kind", "classes", "counts", "ids", "next_id", "metric", "dim", "index", "encoder")


def write(path, meta: dict, book: ClassBook, index: SupportIndex | None,
          expect_generation: int | None, kind: str = STORE_KIND) -> SupportStore:
    """Commit ``meta`` (the classifier's settings, without its classes) and the classes of ``book`` with
    the search ``index`` as the folder's next generation; returns the store (its generation and index_id)."""
    body = {"kind": kind, **meta, "classes": list(book.labels), "counts": book.counts.tolist(),
            "ids": book.ids.tolist(), "next_id": book.next_id, "dim": book.dim,
            "index": index.config() if index is not None else None}
    blobs = {"state": ("safetensors", _state_parts(book)),
             "support": ("json", support_bytes(book))}
    if index is not None and index.kind != "flat":
        blobs["index"] = ("faiss", index.to_bytes())
    store = SupportStore(path)
    store.write(body, blobs, expect_generation=expect_generation)
    return store


class Saved(NamedTuple):
    """A support index folder's current generation, read and checked (:func:`open_saved`)."""

    settings: dict  # FewShotClassifier keyword arguments: metric, unknown_label, scale, index_kind, index_options
    encoder: Encoder  # the encoder it was built with (weights fingerprint checked)
    checkpoint: str | None
    book: ClassBook
    index: SupportIndex | None
    fitted: bool
    threshold: float | None
    calibration: dict | None
    log_corrections: list[int] | None  # the logged corrections this index holds (None: saved before they were)
    store: SupportStore


def open_saved(path, encoder=None) -> Saved:
    """Read the folder ``path``; ``encoder`` (an Encoder, a name, a model or checkpoint folder) must be the
    one it was built with; None rebuilds it from the stored identity."""
    meta, book, index, store = read(path)
    ident = meta["encoder"]
    encoder = resolve_encoder(encoder_from_identity(ident, path) if encoder is None else encoder)
    check_encoder(encoder, meta, path)
    scale = meta.get("scale")
    if scale is None and meta.get("temperature"):  # written by fewshot 0.1: softmax(score / temperature)
        scale = 1.0 / meta["temperature"]
    settings = {"metric": meta["metric"], "unknown_label": meta["unknown_label"], "scale": scale,
                "index_kind": meta["index_kind"], "index_options": meta["index_options"]}
    corrections = meta.get("log_corrections")
    if corrections is not None and not (isinstance(corrections, list) and all(
            isinstance(i, int) and not isinstance(i, bool) for i in corrections)):
        raise StoreError(f"{path}: log_corrections must be a list of prediction ids, got {str(corrections)[:80]}; "
                         "restore the folder from a backup")
    return Saved(settings, encoder, ident.get("checkpoint"), book, index, bool(meta["fitted"]), meta["threshold"],
                 meta["calibration"], corrections, store)


@contextlib.contextmanager
def creating(path):
    """Hold the lock of a folder that must not hold an index yet; on failure remove what was created."""
    existed = Path(path).exists()
    if existed and Path(path).is_dir() and not SupportStore(path).exists():
        others = sorted(p.name for p in Path(path).iterdir() if p.name != ".lock")
        if others:  # refused before the lock file is made: the folder is left exactly as it was
            raise ValueError(f"{path} is not empty ({len(others)} entries, e.g. {others[:3]}) and holds no index; an "
                             "index is created in a new or empty folder only, so that nothing of yours is mixed "
                             "with it: choose a new folder")
    store = SupportStore(path)
    try:
        with store.lock():
            if store.exists():
                raise ValueError(f"{path} already holds an index; change it with FewShotClassifier.update "
                                 "(CLI: `fewshot index add`), or choose a new folder")
            yield
    except BaseException:
        if not existed and Path(path).is_dir() and not store.exists():  # remove what this call created
            (Path(path) / ".lock").unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                Path(path).rmdir()
        raise


def read(path, kind: str = STORE_KIND) -> tuple[dict, ClassBook, SupportIndex | None, SupportStore]:
    """(manifest body, classes, search index or None, store) of the folder's current generation."""
    store = SupportStore(path, required=STORE_KEYS if kind == STORE_KIND else TAGGER_KEYS)
    try:
        meta, blobs = store.read(writable=("state",))
    except StoreError:  # a folder of the other kind lacks this kind's keys: say what it is instead
        _check_kind(SupportStore(path).read_manifest()["body"], path, kind)
        raise
    _check_kind(meta, path, kind)
    check_body(meta, path)
    labels = list(meta["classes"])
    counts = np.asarray(meta["counts"], dtype=np.int64).reshape(-1)
    try:
        state = _state_arrays(blobs["state"], len(counts), int(meta["dim"]))
    except Exception as exc:  # safetensors raises its own error type on bad bytes
        raise StoreError(f"{path}: the class means file cannot be read ({exc}); restore the folder from a "
                         "backup") from exc
    texts = _support_from_bytes(blobs.get("support"), labels, counts, path)
    try:
        book = ClassBook.restore(int(meta["dim"]), labels, state.get("sums"), counts, meta["ids"],
                                 int(meta["next_id"]), texts, means=state.get("means"))
    except ValueError as exc:
        raise StoreError(f"{path}: {exc}; restore the folder from a backup") from None
    config = meta["index"]
    if config is None:
        index = None
    elif "index" in blobs or config.get("kind") != "flat":
        index = SupportIndex.from_bytes(blobs.get("index", b""), config)
    else:  # an exact flat index is its means: rebuilt, not stored
        index = SupportIndex(book.dim, config["metric"], "flat")
        index.add(book.ids, book.prototypes())
    return meta, book, index, store


def describe(path, kind: str = STORE_KIND) -> dict:
    """What a support index folder of ``kind`` holds, from its manifest alone (see FewShotClassifier.describe
    and FewShotTagger.describe): a classifier's adds ``threshold`` and ``log_corrections``."""
    try:
        doc = SupportStore(path, required=STORE_KEYS if kind == STORE_KIND else TAGGER_KEYS).read_manifest()
    except StoreError:  # a folder of the other kind lacks this kind's keys: say what it is instead
        _check_kind(SupportStore(path).read_manifest()["body"], path, kind)
        raise
    meta = doc["body"]
    _check_kind(meta, path, kind)
    check_body(meta, path)
    info = {"encoder": meta["encoder"]["name"], "fingerprint": meta["encoder"]["fingerprint"],
            "metric": meta["metric"], "dim": meta["dim"], "generation": doc["generation"],
            "index_id": meta.get("index_id"),
            "classes": [{"label": c, "count": n} for c, n in zip(meta["classes"], meta["counts"])]}
    if kind == STORE_KIND:
        info.update(threshold=meta["threshold"], log_corrections=meta.get("log_corrections"),
                    search=search_summary(meta["index"]))
    return info


def kind_of(path) -> str | None:
    """The kind of the support index folder ``path`` (STORE_KIND, TAGGER_KIND, or None when its manifest names
    none); a folder without a valid manifest is refused as :meth:`SupportStore.read_manifest` refuses it."""
    body = SupportStore(path).read_manifest()["body"]
    return body.get("kind") if isinstance(body, dict) else None


def search_summary(config: dict | None) -> dict | None:
    """The search index a folder holds, in brief: kind, its IVF settings and codes, and the recall@1 measured
    when nprobe was tuned (None: no classes yet)."""
    if config is None:
        return None
    out = {"kind": config.get("kind")}
    if out["kind"] == "ivf":
        out.update({k: config.get(k) for k in ("nlist", "nprobe")}, codes=config.get("codes", "flat"))
        tuning = config.get("tuning") or {}
        out.update({k: tuning[k] for k in ("recall_at_1", "target_recall", "queries") if k in tuning})
    elif out["kind"] == "hnsw":
        out.update({k: config.get(k) for k in ("hnsw_m", "ef_search")})
    return out


def encoder_identity(encoder: Encoder, checkpoint: str | None) -> dict:
    """JSON-able identity of an encoder: name, spec, modality, dim, weights fingerprint, checkpoint."""
    return {"name": encoder.name, "spec": encoder.spec, "modality": encoder.modality, "dim": int(encoder.dim),
            "fingerprint": encoder.fingerprint(), "checkpoint": checkpoint}


def resolve_encoder(encoder) -> Encoder:
    """An Encoder from an Encoder, a registered name, a transformers model folder or a checkpoint folder."""
    if isinstance(encoder, Encoder):
        return encoder
    if isinstance(encoder, (str, os.PathLike)):
        ckpt = checkpoint_path(encoder)
        return load_encoder(ckpt) if ckpt else create_encoder(str(encoder))
    raise TypeError(f"encoder must be an encoder name (e.g. 'minilm'), a model or checkpoint folder, or an "
                    f"Encoder instance, got {type(encoder).__name__}")


def checkpoint_path(encoder) -> str | None:
    """The absolute path of the checkpoint folder an encoder argument names (a path, not a registered encoder
    name), else None: what a saved index records so that it re-opens that checkpoint."""
    if isinstance(encoder, (str, os.PathLike)) and not (isinstance(encoder, str) and encoder in ENCODERS) \
            and is_checkpoint(encoder):
        return os.path.abspath(encoder)
    return None


def encoder_from_identity(ident: dict, path) -> Encoder:
    """Rebuild the encoder an index was saved with: from its checkpoint, else from its spec."""
    ckpt = ident.get("checkpoint")
    if ckpt:
        if not is_checkpoint(ckpt):
            raise ValueError(f"the index in {path} was built over the checkpoint {ckpt}, which is no longer "
                             f"there (encoder {ident['name']!r}, weights fingerprint {ident['fingerprint']}); "
                             "pass the checkpoint's new place as the encoder (FewShotClassifier.load(DIR, "
                             "encoder=CKPT)); its weights are checked against the fingerprint")
        return load_encoder(ckpt)
    try:
        return build_encoder(local_spec(ident["spec"]))
    except (OSError, ValueError, ImportError) as exc:
        raise ValueError(f"cannot rebuild encoder {ident['name']!r} of the index in {path} ({exc}); pass "
                         "encoder= to FewShotClassifier.load") from exc


def check_encoder(encoder: Encoder, meta: dict, path) -> None:
    """Refuse an encoder that is not the one the index in ``path`` was built with."""
    ident = meta["encoder"]
    if int(encoder.dim) != int(meta["dim"]):
        raise ValueError(f"the index in {path} holds {meta['dim']}-d prototypes but encoder {encoder.name!r} "
                         f"gives {encoder.dim}-d embeddings; load it with the encoder it was built with "
                         f"({ident['name']!r})")
    if encoder.fingerprint() != ident["fingerprint"]:
        raise ValueError(f"the index in {path} was built with encoder {ident['name']!r} (weights fingerprint "
                         f"{ident['fingerprint']}), but the given encoder {encoder.name!r} has fingerprint "
                         f"{encoder.fingerprint()}; load it with the same encoder weights or rebuild the index")


def check_body(meta: dict, path) -> None:
    """Refuse a manifest body whose keys (:data:`STORE_KEYS`, :data:`TAGGER_KEYS` and the optional ones) have
    the wrong type or shape: StoreError naming the key, the type expected and the value found. The manifest's
    checksums show it was written whole, not that fewshot wrote it (a hand edit can recompute them)."""
    def is_int(v, lo=0):
        return isinstance(v, int) and not isinstance(v, bool) and v >= lo

    def is_label(v):
        return isinstance(v, (str, int, float)) and not (isinstance(v, float) and not math.isfinite(v))

    def is_number(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    classes = meta.get("classes")
    n = len(classes) if isinstance(classes, list) else None
    def ints(lo):  # a list of n ints >= lo, checked in numpy (10^6 classes: milliseconds, not seconds)
        def ok(v):
            if not isinstance(v, list) or len(v) != n:
                return False
            a = np.asarray(v) if v else np.zeros(0, dtype=np.int64)
            return a.dtype.kind == "i" and a.ndim == 1 and (not len(a) or int(a.min()) >= lo)
        return ok
    schema = {  # key -> (check, what it must be)
        "classes": (lambda v: isinstance(v, list) and (set(map(type, v)) <= {str, int}  # C speed at 10^6
                                                       or all(is_label(x) for x in v)),
                    "a list of class labels (strings or numbers)"),
        "counts": (ints(1), f"a list of {n} positive integers, one per class"),
        "ids": (ints(0), f"a list of {n} non-negative integers, one per class"),
        "next_id": (is_int, "a non-negative integer"),
        "fitted": (lambda v: isinstance(v, bool), "true or false"),
        "metric": (lambda v: isinstance(v, str), "a string (a metric name)"),
        "dim": (lambda v: is_int(v, 1), "a positive integer"),
        "unknown_label": (lambda v: v is None or is_label(v), "null or a label (a string or number)"),
        "threshold": (lambda v: v is None or is_number(v), "null or a finite number"),
        "scale": (lambda v: v is None or is_number(v), "null or a finite number"),
        "temperature": (lambda v: v is None or is_number(v), "null or a finite number"),
        "calibration": (lambda v: v is None or isinstance(v, dict), "null or an object"),
        "index_kind": (lambda v: isinstance(v, str), "a string (an index kind)"),
        "index_options": (lambda v: isinstance(v, dict), "an object"),
        "index": (lambda v: (v is None and not (n and meta.get("kind") == STORE_KIND)) or (
                      isinstance(v, dict) and is_int(v.get("dim"), 1) and isinstance(v.get("metric"), str)
                      and isinstance(v.get("kind"), str) and all(v.get(k) is None or is_int(v[k]) for k in (
                          "nlist", "nprobe", "hnsw_m", "ef_search", "n_trained"))
                      and v.get("codes", "flat") in CODES and isinstance(v.get("tuning") or {}, dict)),
                  "the search index's config (an object with dim, metric and kind, codes 'flat', 'sq8' or 'pq'), or "
                  "null while there are no classes"),
        "index_id": (lambda v: v is None or isinstance(v, str), "null or a string"),
        "encoder": (lambda v: isinstance(v, dict) and isinstance(v.get("name"), str)
                    and isinstance(v.get("fingerprint"), str) and isinstance(v.get("spec", {}), dict)
                    and is_int(v.get("dim", 1), 1) and isinstance(v.get("checkpoint"), (str, type(None)))
                    and isinstance(v.get("modality", ""), str),
                    "an object with the encoder's name and fingerprint (strings), spec (an object), dim (a "
                    "positive integer) and checkpoint (null or a path)"),
    }
    for key, (ok, expected) in schema.items():
        if key in meta and not ok(meta[key]):
            raise StoreError(f"{path}: manifest.json key {key!r}: expected {expected}, got "
                             f"{json.dumps(meta[key], default=repr)[:80]}; the folder was altered after fewshot "
                             "wrote it: restore the folder from a backup")


def _check_kind(meta: dict, path, kind: str = STORE_KIND) -> None:
    if meta.get("kind") != kind:
        what = {STORE_KIND: "a classifier (FewShotClassifier)", TAGGER_KIND: "a tagger (FewShotTagger)"}
        raise StoreError(f"{path} holds {what.get(meta.get('kind'), repr(meta.get('kind')))}, not "
                         f"{what[kind]}; load it with the class that saved it")


def _state_parts(book: ClassBook) -> list:
    """The class means file as the buffers that make it: a safetensors file of one F32 tensor ``means`` (n, dim),
    written from the book's own blocks. safetensors' writer would copy the means twice (19 of a 38 s save at
    10^6 classes); the layout (an 8-byte little-endian header length, the JSON header padded with spaces to 8
    bytes, the data) is safetensors' documented one, and a test reads the file back with safetensors itself."""
    blocks = book.mean_blocks()
    size = 4 * len(book) * book.dim
    header = json.dumps({"means": {"dtype": "F32", "shape": [len(book), book.dim], "data_offsets": [0, size]}},
                        separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    return [len(header).to_bytes(8, "little"), header, *(np.ascontiguousarray(b, dtype="<f4") for b in blocks)]


def _state_arrays(data, n: int, dim: int) -> dict:
    """{"means": (n, dim) float32} over ``data`` itself (a safetensors file in a writable buffer of our own, see
    :meth:`SupportStore.read`: the class means are used in place, not copied), or {"sums": float64} from an
    older folder.

    The means are located from the file's own header (safetensors' documented layout: an 8-byte little-endian
    header length, a JSON header naming each tensor's dtype, shape and byte offsets, then the data), because
    safetensors' numpy loader copies every tensor (6 s of a 10^6-class load on this machine)."""
    from safetensors.numpy import load as load_arrays

    size = int.from_bytes(bytes(data[:8]), "little") if len(data) >= 8 else -1
    if not 0 < size <= len(data) - 8:
        raise ValueError(f"a header of {size} bytes in a file of {len(data)}")
    header = json.loads(bytes(data[8:8 + size]))
    means = header.get("means") if isinstance(header, dict) else None
    if means is None:  # an older folder: the float64 sums themselves (copied by safetensors)
        return {"sums": load_arrays(bytes(data))["sums"]}
    begin, end = (means.get("data_offsets") or [0, -1]) if isinstance(means, dict) else (0, -1)
    if means.get("dtype") != "F32" or means.get("shape") != [n, dim] or end - begin != 4 * n * dim \
            or begin < 0 or 8 + size + end > len(data):
        raise ValueError(f"means of dtype {means.get('dtype')} and shape {means.get('shape')} at bytes "
                         f"{begin}..{end}, expected F32 ({n}, {dim}) within the file")
    return {"means": np.frombuffer(data, dtype="<f4", count=n * dim, offset=8 + size + begin).reshape(n, dim)}


def support_bytes(book: ClassBook) -> bytes:
    """The support texts as one JSON object ``{"texts": [...]}``: per class, in the manifest's order of classes,
    its texts or null where unknown (one encoder call for the whole list: 10^6 classes save in about a second)."""
    return json.dumps({"texts": [book.texts(lab) for lab in book.labels]}, ensure_ascii=False,
                      separators=(",", ":")).encode("utf-8")


def _support_from_bytes(data: bytes | None, classes: list, counts: np.ndarray, path) -> dict:
    """Each class's support texts from the "support" blob; a folder saved before it existed knows none. Folders
    written before the one-object format hold JSON lines ``{"label", "texts"}`` instead, and still load."""
    if data is None:
        return {lab: None for lab in classes}
    try:
        text = data.decode("utf-8")
        if text.startswith('{"texts":'):
            doc = json.loads(text)
            rows = doc.get("texts") if isinstance(doc, dict) else None
            labels = classes
        else:
            lines = json.loads("[" + ",".join(text.splitlines()) + "]")  # one parse, not one per line
            ok = all(isinstance(r, dict) for r in lines)
            rows = [r.get("texts") for r in lines] if ok else None
            labels = [r.get("label") for r in lines] if ok else None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoreError(f"{path}: the support texts file cannot be read ({exc}); restore the folder from a "
                         "backup") from exc
    ok = isinstance(rows, list) and len(rows) == len(classes) and labels == classes and all(
        r is None or (isinstance(r, list) and len(r) == n and all(isinstance(t, str) for t in r))
        for r, n in zip(rows, counts.tolist()))
    if not ok:
        raise StoreError(f"{path}: the support texts do not match the classes and counts of the manifest "
                         f"({len(rows) if isinstance(rows, list) else 'no'} rows for {len(classes)} classes); "
                         "restore the folder from a backup")
    return dict(zip(classes, rows))
