"""Which search index a classifier's prototypes live in, keeping it in step with its classes, and
searching it.

``index_kind="auto"`` is exact flat search below :data:`AUTO_APPROX_MIN` classes and from there an IVF
index with product-quantizer codes (``codes="pq"``, :data:`AUTO_CODES`) whose candidates are re-scored exactly from the class means
(:data:`RERANK`), with ``nprobe`` tuned at build time to the smallest that reaches
:data:`TARGET_RECALL` recall@1 on calibration queries drawn from the classes themselves
(:meth:`SearchPolicy.tune`); the measured recall is written into the index's config (the folder's
manifest, ``fewshot index describe``). IVF rather than HNSW: on bin/bench-index's 10^5-class rows it has
the higher recall@1, 0.995 against 0.77, builds about 15x faster and deletes without a rebuild. An IVF
index is retrained once the class count has doubled since its training (:data:`IVF_RETRAIN_GROWTH`),
unless ``nlist`` was fixed.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..index import CODES, KINDS, SupportIndex
from ..prototypes import NearestPrototypes, check_metric, check_scale
from ..prototypes import scores as prototype_scores
from .classbook import ClassBook

AUTO_APPROX_MIN = 50_000
IVF_RETRAIN_GROWTH = 2
INDEX_OPTIONS = ("nlist", "nprobe", "hnsw_m", "ef_search", "codes")
AUTO_CODES = "pq"  # at 10^6 x 384-d: recall@1 0.996 at nprobe 48 in 3.5 ms CPU, against 6.6 ms for "sq8" (bin/bench-index)
RERANK = 32  # candidates an index with approximate scores returns per query, re-scored exactly
TARGET_RECALL = 0.99
REFINE_STEPS = 8
CALIBRATION_QUERIES = 256
_RERANK_CHUNK = 256


@dataclass
class SearchPolicy:
    """The search settings of a classifier: ``metric``, ``scale`` (None: the metric's default),
    ``index_kind`` (flat, ivf, hnsw or auto) and ``index_options``; validated on creation."""

    metric: str
    scale: float | None = None
    index_kind: str = "auto"
    index_options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_metric(self.metric)
        if self.index_kind not in KINDS + ("auto",):
            raise ValueError(f"index_kind must be one of {KINDS + ('auto',)}, got {self.index_kind!r}")
        if self.scale is not None:
            check_scale(self.scale)
        self.index_options = dict(self.index_options or {})
        unknown = set(self.index_options) - set(INDEX_OPTIONS)
        if unknown:
            raise ValueError(f"unknown index_options {sorted(unknown)}; valid: {', '.join(INDEX_OPTIONS)}")
        if self.index_options.get("codes", "flat") not in CODES:
            raise ValueError(f"index_options codes must be one of {CODES}, got {self.index_options['codes']!r}")
        kind = "flat" if self.index_kind == "auto" else self.index_kind
        SupportIndex(1, self.metric, kind, **{k: v for k, v in self.index_options.items()
                                              if k != "codes" or kind == "ivf"})  # validates the options' values

    def kind_for(self, n_classes: int) -> str:
        if self.index_kind != "auto":
            return self.index_kind
        return "flat" if n_classes < AUTO_APPROX_MIN else "ivf"

    def options_for(self, kind: str) -> dict:
        """The SupportIndex options of a ``kind`` index: the given ones, and :data:`AUTO_CODES` for auto's IVF."""
        opts = dict(self.index_options)
        if kind == "ivf" and self.index_kind == "auto":
            opts.setdefault("codes", AUTO_CODES)
        if kind != "ivf":
            opts.pop("codes", None)
        return opts

    def build(self, book: ClassBook) -> NearestPrototypes | None:
        """A new head holding every prototype of ``book`` (None when it has no class); an IVF index whose
        nprobe was not fixed is tuned to :data:`TARGET_RECALL` (:meth:`tune`)."""
        if not len(book):
            return None
        kind = self.kind_for(len(book))
        head = NearestPrototypes(book.dim, self.metric, self.scale, kind, **self.options_for(kind))
        protos = book.prototypes()
        head.add(book.ids, protos)
        if kind == "ivf" and "nprobe" not in self.index_options:
            self.tune(head, book, protos)
        return head

    def sync(self, head: NearestPrototypes | None, book: ClassBook, changed: list[int],
             added: list[int]) -> NearestPrototypes | None:
        """``head`` updated for the rows of ``book`` that changed or were added (O(rows)), or a rebuilt head
        when the index kind no longer fits the class count."""
        kind = self.kind_for(len(book))
        ix = head.index if head is not None else None
        stale = ix is None or ix.kind != kind or (
            kind == "ivf" and "nlist" not in self.index_options and ix.n_trained
            and len(book) >= IVF_RETRAIN_GROWTH * ix.n_trained)
        if stale:
            return self.build(book)
        head.replace(book.ids_of(changed), book.prototypes(changed))
        head.add(book.ids_of(added), book.prototypes(added))
        return head

    def search(self, head: NearestPrototypes, book: ClassBook, z: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores (n, k), rows (n, k)) of the ``k`` nearest classes of embeddings ``z``: one index search;
        an index with approximate scores returns :data:`RERANK` candidates, re-scored exactly from the class
        means and re-sorted. -inf / -1 where a slot stayed empty."""
        exact = head.index.exact_scores
        scores, ids = head.search(z, k if exact else max(k, RERANK))
        rows = book.rows_of_ids(ids)
        if not exact:
            scores = np.empty(rows.shape, dtype=np.float32)
            zt = torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32))
            for a in range(0, len(rows), _RERANK_CHUNK):
                r = rows[a:a + _RERANK_CHUNK]
                protos = torch.from_numpy(book.prototypes(np.maximum(r, 0)).reshape(*r.shape, book.dim))
                scores[a:a + _RERANK_CHUNK] = prototype_scores(zt[a:a + _RERANK_CHUNK], protos, self.metric).numpy()
            scores = np.where(rows >= 0, scores, -np.inf)
            order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
            scores, rows = np.take_along_axis(scores, order, 1), np.take_along_axis(rows, order, 1)
        return np.where(rows >= 0, scores, -np.inf), rows

    def tune(self, head: NearestPrototypes, book: ClassBook, protos: np.ndarray, seed: int = 0) -> None:
        """Set the IVF ``nprobe`` of ``head`` to the smallest whose recall@1 reaches :data:`TARGET_RECALL`, on a
        grid of 1/:data:`REFINE_STEPS` of the first power of two that does (at 10^6 classes 48, not 64: a quarter
        less scanning), else nlist; and record what was measured (every nprobe tried) in its config.

        Calibration queries: :data:`CALIBRATION_QUERIES` classes drawn at random, each moved away from its
        mean in a random direction by half the distance to its nearest other class (a query about halfway
        to the boundary); recall@1 is agreement of the top-1 with exact search over every class mean."""
        import faiss

        n = len(protos)
        rng = np.random.default_rng(seed)
        pick = np.sort(rng.choice(n, min(n, CALIBRATION_QUERIES), replace=False))
        base = protos if self.metric == "euclidean" else protos / np.maximum(
            np.linalg.norm(protos, axis=1, keepdims=True), 1e-12)
        fmetric = faiss.METRIC_L2 if self.metric == "euclidean" else faiss.METRIC_INNER_PRODUCT
        d2, nn = faiss.knn(np.ascontiguousarray(base[pick]), np.ascontiguousarray(base), 2, metric=fmetric)
        gap = np.sqrt(np.maximum(d2[:, 1], 0)) if self.metric == "euclidean" else np.sqrt(
            np.maximum(2 - 2 * d2[:, 1], 0))
        u = rng.standard_normal((len(pick), book.dim)).astype(np.float32)
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        queries = np.ascontiguousarray(base[pick] + 0.5 * gap[:, None].astype(np.float32) * u, dtype=np.float32)
        qn = queries if self.metric == "euclidean" else queries / np.linalg.norm(queries, axis=1, keepdims=True)
        _, truth = faiss.knn(np.ascontiguousarray(qn), np.ascontiguousarray(base), 1, metric=fmetric)
        truth_rows = truth[:, 0]  # rows: protos is in row order
        ix = head.index
        tried: list[list] = []

        def recall_at(nprobe: int) -> float:
            ix.set_nprobe(nprobe)
            got = float(np.mean(self.search(head, book, queries, 1)[1][:, 0] == truth_rows))
            tried.append([nprobe, round(got, 4)])
            return got

        low, nprobe, recall = 0, 1, recall_at(1)  # low: the largest nprobe known to fall short
        while recall < TARGET_RECALL and nprobe < ix.nlist:  # doubling to the first that reaches the target
            low, nprobe = nprobe, min(2 * nprobe, ix.nlist)
            recall = recall_at(nprobe)
        step = max(1, nprobe // REFINE_STEPS)  # then bisect (low, nprobe] on a grid of nprobe / REFINE_STEPS
        while recall >= TARGET_RECALL and nprobe - low > step:
            mid = low + max(step, (nprobe - low) // 2 // step * step)
            got = recall_at(mid)
            if got >= TARGET_RECALL:
                nprobe, recall = mid, got
            else:
                low = mid
        ix.set_nprobe(nprobe, tuning={"target_recall": TARGET_RECALL, "recall_at_1": round(recall, 4),
                                      "queries": len(pick), "tried": tried,
                                      "how": "class means moved halfway to their nearest other class"})
