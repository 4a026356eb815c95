"""Which search index a classifier's prototypes live in, and keeping it in step with its classes.

``index_kind="auto"`` is exact flat search below :data:`AUTO_APPROX_MIN` classes and IVF from there (IVF
rather than HNSW: on bin/bench-index's 10^5-class rows it has the higher recall@1, 0.995 against 0.77,
builds about 15x faster and deletes without a rebuild). An IVF index is retrained once the class count
has doubled since its training (:data:`IVF_RETRAIN_GROWTH`), unless ``nlist`` was fixed.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..index import KINDS, SupportIndex
from ..prototypes import NearestPrototypes, check_metric, check_scale
from .classbook import ClassBook

AUTO_APPROX_MIN = 50_000
IVF_RETRAIN_GROWTH = 2
INDEX_OPTIONS = ("nlist", "nprobe", "hnsw_m", "ef_search")


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
        SupportIndex(1, self.metric, "flat" if self.index_kind == "auto" else self.index_kind,
                     **self.index_options)  # validates the options' values

    def kind_for(self, n_classes: int) -> str:
        if self.index_kind != "auto":
            return self.index_kind
        return "flat" if n_classes < AUTO_APPROX_MIN else "ivf"

    def build(self, book: ClassBook) -> NearestPrototypes | None:
        """A new head holding every prototype of ``book`` (None when it has no class)."""
        if not len(book):
            return None
        head = NearestPrototypes(book.dim, self.metric, self.scale, self.kind_for(len(book)), **self.index_options)
        head.add(book.ids, book.prototypes())
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
        head.replace(book.ids[changed], book.prototypes(changed))
        head.add(book.ids[added], book.prototypes(added))
        return head
