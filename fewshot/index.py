"""SupportIndex: class prototypes in a FAISS index for nearest-prototype search.

Vectors carry stable int64 ids that survive removals. Scores are "larger is
closer": negative squared distance for metric "euclidean", cosine similarity
for metric "cosine" (vectors are L2-normalised on the way in and searched by
inner product).

Three kinds of index (``kind``):

- ``"flat"`` (default): exact search, ``IndexIDMap2`` over ``IndexFlatL2`` /
  ``IndexFlatIP``.
- ``"ivf"``: approximate, an inverted-file index with its own ids and a hash-table
  direct map (so removal and :meth:`SupportIndex.vectors` work). ``codes`` says how a
  list stores its vectors: ``"flat"`` (``IndexIVFFlat``, exact float32 vectors),
  ``"sq8"`` (``IndexIVFScalarQuantizer``, one byte per dimension: a quarter of the
  memory and disk) or ``"pq"`` (``IndexIVFPQ``, a product quantizer of
  :func:`pq_subquantizers` 8-bit codes, one per 8 dimensions: 1/32 of the memory and disk of
  float32 and, at 10^6 classes of 384-d, twice as fast a scan as ``"sq8"`` at the same recall
  after re-scoring; bin/bench-index). Both are approximate: :attr:`SupportIndex.exact_scores`
  is False, and the owner re-scores the candidates exactly. (PQ's faster 4-bit "fast scan" lists
  cannot remove one id without scanning every list, so they are not offered.) The coarse
  quantizer is trained on the first vectors added (on at most
  ``IVF_TRAIN_PER_LIST * nlist`` of them); ``nlist`` defaults to ``2 sqrt(n)``
  (at most ``n / 39``) and ``nprobe`` to ``nlist / 16`` (at least 8).
- ``"hnsw"``: approximate, ``IndexIDMap2`` over ``IndexHNSWFlat``. HNSW cannot
  delete, so :meth:`SupportIndex.remove` rebuilds the graph from the stored
  vectors of the ids that stay (O(n log n); fine for occasional removals). ``hnsw_m``
  defaults to 32 and ``ef_search`` to 128.

:meth:`SupportIndex.to_bytes` / :meth:`SupportIndex.from_bytes` use FAISS's own
serialisation format (``faiss.serialize_index``).
"""
from __future__ import annotations

import math

import numpy as np

METRICS = ("euclidean", "cosine")
KINDS = ("flat", "ivf", "hnsw")
CODES = ("flat", "sq8", "pq")
PQ_DIMS_PER_CODE = 8
PQ_MIN_TRAIN = 256  # vectors an 8-bit product quantizer needs to train (one per centroid)
IVF_TRAIN_PER_LIST = 64
IVF_LISTS_PER_SQRT = 2  # nlist = 2 sqrt(n): at 10^6 classes 2000 lists (bin/bench-index; 1000 lists needed twice the probes)


def pq_subquantizers(dim: int) -> int:
    """How many 8-bit codes ``codes="pq"`` stores per vector: one per :data:`PQ_DIMS_PER_CODE` dimensions (the
    largest divisor of ``dim`` not above ``dim / 8``; 48 at 384-d)."""
    m = max(1, dim // PQ_DIMS_PER_CODE)
    while dim % m:
        m -= 1
    return m


def _faiss():
    import faiss

    return faiss


class SupportIndex:
    """Nearest-prototype search over ``dim``-dimensional float32 vectors.

    ``kind`` is ``"flat"`` (exact), ``"ivf"`` or ``"hnsw"`` (approximate; see
    the module docstring). ``nlist``/``nprobe`` tune IVF, ``hnsw_m`` and
    ``ef_search`` tune HNSW; None picks a default from the size; ``codes`` (IVF only) is
    ``"flat"``, ``"sq8"`` or ``"pq"``.
    """

    def __init__(self, dim: int, metric: str = "euclidean", kind: str = "flat", *, nlist: int | None = None,
                 nprobe: int | None = None, hnsw_m: int = 32, ef_search: int = 128, codes: str = "flat"):
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        if kind not in KINDS:
            raise ValueError(f"index kind must be one of {KINDS}, got {kind!r}")
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        for name, value in (("nlist", nlist), ("nprobe", nprobe), ("hnsw_m", hnsw_m), ("ef_search", ef_search)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))
                                      or value < 1):
                raise ValueError(f"{name} must be a positive int or None, got {value!r}")
        if codes not in CODES or (codes != "flat" and kind != "ivf"):
            raise ValueError(f"codes must be one of {CODES} ('sq8' and 'pq' with kind='ivf' only), got {codes!r} "
                             f"for kind {kind!r}")
        self.dim, self.metric, self.kind, self.codes = int(dim), metric, kind, codes
        self.nlist, self.nprobe, self.hnsw_m, self.ef_search = nlist, nprobe, int(hnsw_m), int(ef_search)
        self._sorted = _SortedIds()  # the ids present in the index
        # flat: whether FAISS holds the vectors in ascending id order, so an id's row is its rank in the ids
        # (true while ids are added above the rest; FAISS keeps the order on removal)
        self._in_id_order = True
        self.n_trained = 0  # IVF: how many vectors the coarse quantizer was trained on
        self.tuning: dict | None = None  # JSON-able record of how nprobe was chosen (set_nprobe)
        self._index = None if kind == "ivf" else self._new_index()

    # -- construction -----------------------------------------------------------------------------
    def _faiss_metric(self):
        faiss = _faiss()
        return faiss.METRIC_L2 if self.metric == "euclidean" else faiss.METRIC_INNER_PRODUCT

    def _new_index(self, train: np.ndarray | None = None):
        faiss = _faiss()
        if self.kind == "flat":
            flat = faiss.IndexFlatL2(self.dim) if self.metric == "euclidean" else faiss.IndexFlatIP(self.dim)
            return faiss.IndexIDMap2(flat)
        if self.kind == "hnsw":
            hnsw = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, self._faiss_metric())
            hnsw.hnsw.efSearch = self.ef_search
            return faiss.IndexIDMap2(hnsw)
        n = len(train)
        nlist = self.nlist or max(1, min(int(IVF_LISTS_PER_SQRT * math.sqrt(n)), n // 39))
        if nlist > n:
            raise ValueError(f"an IVF index with nlist={nlist} needs at least {nlist} vectors to train on, got {n}; "
                             "add more classes at once, lower nlist or use kind='flat'")
        if self.codes == "pq" and n < PQ_MIN_TRAIN:
            raise ValueError(f"an IVF index with codes='pq' needs at least {PQ_MIN_TRAIN} vectors to train its "
                             f"product quantizer, got {n}; add more classes at once or use codes='sq8'")
        quantizer = faiss.IndexFlatL2(self.dim) if self.metric == "euclidean" else faiss.IndexFlatIP(self.dim)
        if self.codes == "pq":
            ivf = faiss.IndexIVFPQ(quantizer, self.dim, nlist, pq_subquantizers(self.dim), 8, self._faiss_metric())
        elif self.codes == "sq8":
            ivf = faiss.IndexIVFScalarQuantizer(quantizer, self.dim, nlist, faiss.ScalarQuantizer.QT_8bit,
                                                self._faiss_metric())
        else:
            ivf = faiss.IndexIVFFlat(quantizer, self.dim, nlist, self._faiss_metric())
        ivf.own_fields = True
        quantizer.this.disown()
        sample = train
        if n > IVF_TRAIN_PER_LIST * nlist:
            pick = np.random.default_rng(0).choice(n, IVF_TRAIN_PER_LIST * nlist, replace=False)
            sample = np.ascontiguousarray(train[np.sort(pick)])
        ivf.train(sample)
        ivf.nprobe = min(nlist, self.nprobe or max(8, nlist // 16))
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
        self.nlist, self.nprobe, self.n_trained = nlist, int(ivf.nprobe), n
        return ivf

    @property
    def exact_scores(self) -> bool:
        """Whether :meth:`search` returns exact scores of the ids it finds (False for ``codes`` "sq8" and "pq")."""
        return self.codes == "flat"

    def set_nprobe(self, nprobe: int, tuning: dict | None = None) -> None:
        """IVF: how many lists a search visits (more: higher recall, slower); ``tuning``: a JSON-able record
        of how that value was chosen, kept in :meth:`config` (None leaves the last record)."""
        if self.kind != "ivf" or isinstance(nprobe, bool) or not isinstance(nprobe, (int, np.integer)) \
                or nprobe < 1:
            raise ValueError(f"set_nprobe: needs an IVF index and a positive int, got {nprobe!r} for {self.kind!r}")
        self.nprobe = int(nprobe)
        if tuning is not None:
            self.tuning = dict(tuning)
        if self._index is not None:
            self._index.nprobe = min(self.nlist, self.nprobe)

    @property
    def ntotal(self) -> int:
        return 0 if self._index is None else int(self._index.ntotal)

    def _check(self, vectors, what: str) -> np.ndarray:
        x = np.asarray(vectors)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"{what}: expected shape (n, {self.dim}), got {tuple(np.shape(vectors))}")
        if not np.issubdtype(x.dtype, np.floating):
            raise TypeError(f"{what}: expected floating-point vectors, got dtype {x.dtype}")
        x = np.ascontiguousarray(x, dtype=np.float32)
        if not np.isfinite(x).all():
            raise ValueError(f"{what}: vectors contain NaN or inf")
        if self.metric == "cosine":
            x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        return x

    def _check_ids(self, ids, what: str) -> np.ndarray:
        arr = np.asarray(ids)
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"{what}: ids must be integers, got dtype {arr.dtype}")
        return np.ascontiguousarray(arr.astype(np.int64).reshape(-1))

    # -- mutation ---------------------------------------------------------------------------------
    def add(self, ids, vectors) -> None:
        """Add ``vectors`` (n, dim) under int64 ``ids`` (n,); an id already present raises."""
        x = self._check(vectors, "SupportIndex.add")
        ids = self._check_ids(ids, "SupportIndex.add")
        if len(ids) != len(x):
            raise ValueError(f"SupportIndex.add: {len(ids)} ids for {len(x)} vectors")
        if len(np.unique(ids)) != len(ids) or self._present(ids).any():
            raise ValueError("SupportIndex.add: ids must be unique and not already in the index; remove() first")
        if len(ids) == 0:
            return
        if self._index is None:  # IVF: train on the first vectors
            self._index = self._new_index(train=x)
        self._index.add_with_ids(x, ids)
        ascending = bool(np.all(np.diff(ids) > 0))
        self._in_id_order &= self._sorted.add(ids if ascending else np.sort(ids)) and ascending

    def replace(self, ids, vectors) -> None:
        """Replace the vectors of present ``ids`` (n,) with ``vectors`` (n, dim).

        A flat index whose vectors are in id order is written in place (O(n)); otherwise the ids are
        removed and added again."""
        x = self._check(vectors, "SupportIndex.replace")
        ids = self._check_ids(ids, "SupportIndex.replace")
        if len(ids) != len(x):
            raise ValueError(f"SupportIndex.replace: {len(ids)} ids for {len(x)} vectors")
        if not self._present(ids).all() or len(np.unique(ids)) != len(ids):
            raise ValueError("SupportIndex.replace: ids must be unique and in the index; add() new ones")
        if not len(ids):
            return
        if self.kind == "flat" and self._in_id_order:
            faiss = _faiss()
            flat = faiss.downcast_index(self._index.index)
            xb = faiss.rev_swig_ptr(flat.get_xb(), self.ntotal * self.dim).reshape(self.ntotal, self.dim)
            xb[np.searchsorted(self._sorted.view, ids)] = x
            return
        if self.kind == "ivf":  # out of its list and into the (maybe other) list of its new vector: O(list)
            faiss = _faiss()
            if int(self._index.remove_ids(faiss.IDSelectorArray(ids))) != len(ids):
                raise RuntimeError(f"FAISS did not find all of the {len(ids)} ids to replace")
            self._index.add_with_ids(x, ids)
            return
        self.remove(ids)
        self.add(ids, x)

    def _present(self, ids: np.ndarray) -> np.ndarray:
        """Whether each of ``ids`` is in the index: a binary search of the sorted ids (O(k log n))."""
        present = self._sorted.view
        pos = np.minimum(np.searchsorted(present, ids), max(len(present) - 1, 0))
        return (present[pos] == ids) if len(present) else np.zeros(len(ids), dtype=bool)

    def contains(self, id_: int) -> bool:
        present = self._sorted.view
        i = np.searchsorted(present, int(id_))
        return bool(i < len(present) and present[i] == int(id_))

    def ids(self) -> np.ndarray:
        """The ids in the index, sorted: (ntotal,) int64."""
        return self._sorted.view.copy()

    def remove(self, ids) -> int:
        """Remove vectors by id (ids not present are ignored); returns how many were removed."""
        ids = self._check_ids(ids, "SupportIndex.remove")
        present = np.unique(ids[self._present(ids)])
        if len(present) == 0:
            return 0
        if self.kind == "hnsw":  # HNSW cannot delete: rebuild from the vectors that stay
            keep = self._sorted.view[~np.isin(self._sorted.view, present)]
            kept = self.vectors(keep) if len(keep) else np.zeros((0, self.dim), np.float32)
            self._index = self._new_index()
            if len(keep):
                self._index.add_with_ids(np.ascontiguousarray(kept, dtype=np.float32), keep)
        else:
            faiss = _faiss()
            # an IVF hash-table direct map only accepts an IDSelectorArray
            sel = faiss.IDSelectorArray(present) if self.kind == "ivf" else faiss.IDSelectorBatch(present)
            removed = int(self._index.remove_ids(sel))
            if removed != len(present):
                raise RuntimeError(f"FAISS removed {removed} vectors, expected {len(present)}")
        self._sorted.remove(present)
        return len(present)

    # -- search -----------------------------------------------------------------------------------
    def search(self, queries, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` closest ids of each query: (scores (n, k), ids (n, k)); missing ids are -1."""
        q = self._check(queries, "SupportIndex.search")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        if self.ntotal == 0:
            raise ValueError("SupportIndex.search: the index is empty; add classes first")
        dist, ids = self._index.search(q, int(k))
        return (-dist if self.metric == "euclidean" else dist), ids

    def vectors(self, ids) -> np.ndarray:
        """The stored (normalised, for cosine) vectors of ``ids``: (n, dim)."""
        ids = self._check_ids(ids, "SupportIndex.vectors")
        missing = ids[~np.isin(ids, self._sorted.view)]
        if len(missing):
            raise ValueError(f"SupportIndex.vectors: ids {missing[:5].tolist()} are not in the index")
        if len(ids) == 0:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([self._index.reconstruct(int(i)) for i in ids])

    # -- persistence ------------------------------------------------------------------------------
    def config(self) -> dict:
        """JSON-able settings that :meth:`from_bytes` needs besides the FAISS bytes."""
        return {"dim": self.dim, "metric": self.metric, "kind": self.kind, "nlist": self.nlist,
                "nprobe": self.nprobe, "hnsw_m": self.hnsw_m, "ef_search": self.ef_search,
                "n_trained": self.n_trained, "codes": self.codes, "tuning": self.tuning}

    def to_bytes(self) -> bytes:
        """The index in FAISS's own format (empty bytes for an IVF index that holds nothing yet)."""
        if self._index is None:
            return b""
        return _faiss().serialize_index(self._index).tobytes()

    @classmethod
    def from_bytes(cls, data: bytes, config: dict) -> "SupportIndex":
        """Rebuild from :meth:`to_bytes` and :meth:`config`; checks dimension, metric and kind."""
        faiss = _faiss()
        self = cls(config["dim"], config["metric"], config["kind"], nlist=config.get("nlist"),
                   nprobe=config.get("nprobe"), hnsw_m=config.get("hnsw_m", 32),
                   ef_search=config.get("ef_search", 128), codes=config.get("codes", "flat"))
        self.n_trained = int(config.get("n_trained", 0))
        self.tuning = config.get("tuning")
        if not data:
            if self.kind != "ivf":
                raise ValueError(f"SupportIndex.from_bytes: no index bytes for a {self.kind!r} index")
            return self
        try:
            index = faiss.read_index(_reader(data))
        except RuntimeError as exc:
            raise ValueError(f"SupportIndex.from_bytes: FAISS could not read the index ({exc})") from exc
        if index.d != self.dim:
            raise ValueError(f"SupportIndex.from_bytes: the index holds {index.d}-d vectors, expected {self.dim}")
        if int(index.metric_type) != int(self._faiss_metric()):
            raise ValueError(f"SupportIndex.from_bytes: the index metric does not match {self.metric!r}")
        if self.kind == "ivf":
            ivf = faiss.extract_index_ivf(index)
            ids = [faiss.rev_swig_ptr(ivf.invlists.get_ids(i), ivf.invlists.list_size(i)).copy()
                   for i in range(ivf.nlist) if ivf.invlists.list_size(i)]
            self._sorted = _SortedIds(np.sort(np.concatenate(ids)) if ids else None)
            if ivf.direct_map.type != faiss.DirectMap.Hashtable:
                ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
        else:
            if not isinstance(index, faiss.IndexIDMap2):
                raise ValueError(f"SupportIndex.from_bytes: expected an IndexIDMap2, got {type(index).__name__}")
            stored = faiss.vector_to_array(index.id_map).astype(np.int64)
            self._sorted = _SortedIds(np.sort(stored))
            self._in_id_order = bool(np.array_equal(stored, self._sorted.view))
            if self.kind == "hnsw":
                faiss.downcast_index(index.index).hnsw.efSearch = self.ef_search
        self._index = index
        return self


class _SortedIds:
    """The sorted int64 ids present in an index, in a buffer with room to grow: ids above the rest (a ClassBook's
    are) are appended in place (amortised O(ids added), the buffer doubling when full), removals shift the ids
    after them in place in bounded chunks (no allocation of the whole array), anything else is an O(n) insert."""

    _CHUNK = 1 << 16

    def __init__(self, ids: np.ndarray | None = None):
        ids = np.zeros(0, np.int64) if ids is None else np.asarray(ids, dtype=np.int64)
        self._buf, self._n = np.array(ids, dtype=np.int64), len(ids)

    @property
    def view(self) -> np.ndarray:
        """The ids, sorted (a view: valid until the next change)."""
        return self._buf[: self._n]

    def __len__(self) -> int:
        return self._n

    def add(self, ids: np.ndarray) -> bool:
        """Add sorted unique ``ids`` not present; True when they all lay above the rest (appended)."""
        n, k = self._n, len(ids)
        if n and ids[0] <= self._buf[n - 1]:
            merged = np.insert(self.view, np.searchsorted(self.view, ids), ids)
            self._buf, self._n = merged, len(merged)
            return False
        if n + k > len(self._buf):
            grown = np.empty(max(2 * len(self._buf), n + k, 16), dtype=np.int64)
            grown[:n] = self.view
            self._buf = grown
        self._buf[n:n + k] = ids
        self._n = n + k
        return True

    def remove(self, present: np.ndarray) -> None:
        """Remove sorted unique ``present`` ids (all present): each run between two removed ids moves left."""
        pos = np.searchsorted(self.view, present)
        write, ends = int(pos[0]), pos[1:].tolist() + [self._n]
        for start, stop in zip((pos + 1).tolist(), ends):
            for a in range(start, stop, self._CHUNK):
                b = min(stop, a + self._CHUNK)
                self._buf[write:write + b - a] = self._buf[a:b]
                write += b - a
        self._n = write


def _reader(data: bytes):
    """A FAISS reader over ``data`` in 1 MiB pieces: ``deserialize_index`` first copies every byte into a vector
    of its own (0.4 GB at 10^6 classes)."""
    view, pos = memoryview(data), [0]

    def read(n: int) -> bytes:
        start = pos[0]
        pos[0] = min(len(view), start + n)
        return bytes(view[start:pos[0]])

    return _faiss().PyCallbackIOReader(read, 1 << 20)
