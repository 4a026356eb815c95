"""SupportIndex: class prototypes in a FAISS index for nearest-prototype search.

Wraps ``faiss.IndexIDMap2`` over ``IndexFlatL2`` (metric "euclidean") or
``IndexFlatIP`` on L2-normalised vectors (metric "cosine"), so vectors carry
stable int64 ids that survive removals. Scores are "larger is closer":
negative squared distance for euclidean, cosine similarity for cosine.
"""
from __future__ import annotations

import numpy as np

METRICS = ("euclidean", "cosine")


class SupportIndex:
    """Exact nearest-prototype search over ``dim``-dimensional float32 vectors."""

    def __init__(self, dim: int, metric: str = "euclidean"):
        import faiss

        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        if not isinstance(dim, (int, np.integer)) or dim < 1:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        self.dim, self.metric = int(dim), metric
        flat = faiss.IndexFlatL2(self.dim) if metric == "euclidean" else faiss.IndexFlatIP(self.dim)
        self._index = faiss.IndexIDMap2(flat)

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal)

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

    def add(self, ids, vectors) -> None:
        """Add ``vectors`` (n, dim) under int64 ``ids`` (n,); an id already present raises."""
        x = self._check(vectors, "SupportIndex.add")
        ids = np.ascontiguousarray(np.asarray(ids, dtype=np.int64).reshape(-1))
        if len(ids) != len(x):
            raise ValueError(f"SupportIndex.add: {len(ids)} ids for {len(x)} vectors")
        if len(np.unique(ids)) != len(ids) or any(self.contains(i) for i in ids):
            raise ValueError("SupportIndex.add: ids must be unique and not already in the index; remove() first")
        self._index.add_with_ids(x, ids)

    def contains(self, id_: int) -> bool:
        try:
            self._index.reconstruct(int(id_))
            return True
        except RuntimeError:
            return False

    def remove(self, ids) -> int:
        """Remove vectors by id; returns how many were removed."""
        import faiss

        ids = np.ascontiguousarray(np.asarray(ids, dtype=np.int64).reshape(-1))
        return int(self._index.remove_ids(faiss.IDSelectorBatch(ids)))

    def search(self, queries, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` closest ids of each query: (scores (n, k), ids (n, k)); missing ids are -1."""
        q = self._check(queries, "SupportIndex.search")
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if self.ntotal == 0:
            raise ValueError("SupportIndex.search: the index is empty; add classes first")
        dist, ids = self._index.search(q, int(k))
        return (-dist if self.metric == "euclidean" else dist), ids

    def vectors(self, ids) -> np.ndarray:
        """The stored (normalised, for cosine) vectors of ``ids``: (n, dim)."""
        return np.stack([self._index.reconstruct(int(i)) for i in np.asarray(ids).reshape(-1)])

    @property
    def faiss_index(self):
        return self._index
