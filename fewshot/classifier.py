"""FewShotClassifier: a nearest-prototype classifier whose classes come and go at run time.

The public API (scikit-learn shaped, learned state ends in ``_``)::

    clf = FewShotClassifier(encoder="minilm")            # or an Encoder instance
    clf.fit(texts, labels)                               # -> self
    clf.add_classes(more_texts, more_labels)             # -> self
    clf.remove_classes(["refund"])                       # -> self
    clf.predict(queries)                                 # list of class names (or the unknown label)
    clf.predict_proba(queries)                           # (n, n_classes), columns ordered like clf.classes_
    clf.predict_topk(queries, k=3)                       # (labels (n lists of k), scores (n, k))
    clf.calibrate(held_out_x, held_out_y, target_precision=0.95)   # open-set threshold
    clf.evaluate(held_out_x, held_out_y)                 # ClassReport: per-class P/R/F1, confusions
    clf.save(DIR); FewShotClassifier.load(DIR)

Learning from use (a saved index ``DIR`` and its prediction log ``DIR/predictions.jsonl``)::

    log = FewShotClassifier.prediction_log(DIR, create=True)   # named by the store's index_id
    FewShotClassifier.correct(DIR, id, "refund")   # logged query -> support example of "refund"
    FewShotClassifier.confirm(DIR, id)             # the logged top label was right
    clf.to_dataset(val_share=0.2, seed=0)          # the support texts as a train/val FewShotDataset
    FewShotClassifier.rebuild(DIR, CKPT, margin=0.02)  # re-embed with a new encoder, guarded by the log

Each class is the exact mean of all the embeddings ever added under its
label: the classifier keeps per-class float64 sums and counts, so adding
examples to an existing label updates its prototype without re-embedding the
old ones (``replace=True`` resets the class to the new examples only). The
prototypes live in a :class:`~fewshot.prototypes.NearestPrototypes` head
(``head_``: metric, scale, FAISS index), the same code the protonet learner
scores episodes with; :meth:`~FewShotClassifier.predict` and
:meth:`~FewShotClassifier.predict_topk` search its index.

Scores are "larger is closer": cosine similarity or negative squared
Euclidean distance. The metric defaults to the encoder's
(:attr:`~fewshot.encoders.Encoder.metric`: cosine for sentence encoders).
:meth:`~FewShotClassifier.predict_proba` is a softmax of ``scale * score``
over all classes, computed exactly even when the index is approximate;
``scale`` defaults to :data:`fewshot.prototypes.DEFAULT_SCALE` (10 for
cosine, 0.1 for euclidean), and a classifier built from a protonet checkpoint
uses the scale (temperature) it learned.

Labels are any hashable values (``None`` is reserved for "out of scope");
``classes_`` lists them in order of first appearance. :meth:`save` needs labels
that JSON can hold exactly: ``str`` or ``int``.

The classifier also keeps each class's support texts (``support_``: label -> texts in
order of arrival, None where unknown: examples added as embeddings or images, or
saved before texts were kept), stored in the index folder for re-training.

Persistence goes through :class:`~fewshot.store.SupportStore` (atomic,
checksummed, lockable); loading with a different encoder (weights fingerprint)
or dimension is refused. :meth:`FewShotClassifier.update` is the safe way to
change a saved classifier from several processes (lock, load, change, save);
:meth:`save` refuses to overwrite a folder that another writer changed since
this classifier was loaded from it.
"""
from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Hashable, Sequence
from pathlib import Path

import numpy as np
import torch

from .checkpoint import load_encoder, load_learner, read_record
from .encoders import ENCODERS, Encoder, build_encoder, create_encoder, encoder_spec
from .index import KINDS, SupportIndex
from .inputs import check_labels, check_texts
from .prototypes import NearestPrototypes, check_metric, check_scale
from .prototypes import scores as prototype_scores
from .report import ClassReport, class_report
from .store import ConcurrentUpdateError, StoreError, SupportStore

# index_kind="auto": exact flat search below this many classes, IVF from there. IVF rather than HNSW:
# on bin/bench-index's 10^5-class rows it has the higher recall@1 (0.995 vs 0.77), builds ~15x
# faster and deletes without a rebuild.
AUTO_APPROX_MIN = 50_000
IVF_RETRAIN_GROWTH = 2  # an IVF index is retrained once the class count doubles since its training
STORE_KIND = "fewshot-classifier"
STORE_KEYS = ("kind", "classes", "counts", "ids", "next_id", "fitted", "metric", "dim",
              "unknown_label", "threshold", "calibration", "index_kind", "index_options", "index", "encoder")


__all__ = ["ConcurrentUpdateError", "FewShotClassifier", "NotFittedError", "StoreError"]


class NotFittedError(ValueError):
    """The classifier was used before :meth:`FewShotClassifier.fit` (or add_classes)."""


class FewShotClassifier:
    """Nearest-class-mean classifier over a frozen encoder, with classes added and removed at run time.

    Parameters
    ----------
    encoder: a registered encoder name (``"minilm"``, ``"mobilenetv2"``, ...), a transformers
        model folder, or an :class:`~fewshot.encoders.Encoder` instance.
    metric: ``"cosine"`` or ``"euclidean"``; None (default): the encoder's own (``encoder.metric``).
    unknown_label: what :meth:`predict` answers for a query beyond the calibrated threshold
        (default None). It cannot also be a class name.
    scale: logit scale of :meth:`predict_proba`, ``softmax(scale * score)`` (None: 10 for cosine,
        0.1 for euclidean; a protonet checkpoint's learned temperature in :meth:`from_checkpoint`).
    index_kind: ``"flat"`` (exact), ``"ivf"``, ``"hnsw"`` (approximate) or ``"auto"`` (default:
        flat below 50,000 classes, IVF from there; IVF is retrained when the class count doubles).
    index_options: extra SupportIndex settings (``nlist``, ``nprobe``, ``hnsw_m``, ``ef_search``).
    batch_size, device: passed to ``Encoder.encode``.
    """

    def __init__(self, encoder="minilm", metric: str | None = None, *, unknown_label: Hashable = None,
                 scale: float | None = None, index_kind: str = "auto",
                 index_options: dict | None = None,
                 batch_size: int = 128, device: str | None = None):
        if metric is not None:
            check_metric(metric)
        if index_kind not in KINDS + ("auto",):
            raise ValueError(f"index_kind must be one of {KINDS + ('auto',)}, got {index_kind!r}")
        if scale is not None:
            check_scale(scale)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        index_options = dict(index_options or {})
        unknown_opts = set(index_options) - {"nlist", "nprobe", "hnsw_m", "ef_search"}
        if unknown_opts:
            raise ValueError(f"unknown index_options {sorted(unknown_opts)}; valid: nlist, nprobe, hnsw_m, ef_search")
        SupportIndex(1, metric or "cosine", "flat" if index_kind == "auto" else index_kind,
                     **index_options)  # validates the options
        try:
            hash(unknown_label)
        except TypeError as exc:
            raise TypeError(f"unknown_label must be hashable, got {type(unknown_label).__name__}") from exc
        self.encoder = _resolve_encoder(encoder)
        self.metric = metric or self.encoder.metric
        self.unknown_label = _plain(unknown_label)
        self.scale = scale  # None: the metric's default (fewshot.prototypes.DEFAULT_SCALE)
        self.index_kind = index_kind
        self.index_options = index_options
        self.batch_size = batch_size
        self.device = device
        self.checkpoint = None  # set by from_checkpoint: where the encoder's weights came from
        self._generation: tuple[str, int] | None = None  # (folder, store generation) this was loaded from
        self.index_id_: str | None = None  # identity of the store this was loaded from / saved to
        # ids of the logged predictions whose correction this index holds: the commit point of a correction
        # (fewshot.curation.correct); None for a folder saved before it was recorded
        self.log_corrections_: list[int] | None = []
        self._reset()

    # -- state ------------------------------------------------------------------------------------
    def _reset(self) -> None:
        self.classes_: list = []
        self.counts_ = np.zeros(0, dtype=np.int64)
        self.ids_ = np.zeros(0, dtype=np.int64)  # stable FAISS id of each class, ascending
        self.sums_ = np.zeros((0, self.dim), dtype=np.float64)
        self.head_: NearestPrototypes | None = None
        self.support_: dict = {}  # label -> its support texts in order of arrival, or None where unknown
        self.threshold_: float | None = None
        self.calibration_: dict | None = None
        self._next_id = 0
        self._pos: dict = {}
        self._fitted = False

    @property
    def dim(self) -> int:
        return int(self.encoder.dim)

    @property
    def n_classes(self) -> int:
        return len(self.classes_)

    @property
    def prototypes_(self) -> np.ndarray:
        """(n_classes, dim) float32 class means, rows ordered like ``classes_``."""
        return (self.sums_ / self.counts_[:, None]).astype(np.float32) if self.n_classes else \
            np.zeros((0, self.dim), np.float32)

    @property
    def index_(self) -> SupportIndex | None:
        """The FAISS index of the prototypes (None before the first class)."""
        return self.head_.index if self.head_ is not None else None

    def __repr__(self) -> str:
        return (f"FewShotClassifier(encoder={self.encoder.name!r}, metric={self.metric!r}, "
                f"n_classes={self.n_classes}, index_kind={self.index_kind!r})")

    # -- input checks -----------------------------------------------------------------------------
    def _items(self, x, what: str) -> list:
        if isinstance(x, (str, bytes)):
            raise TypeError(f"{what}: expected a list of items, got a single {type(x).__name__}; wrap it in a list")
        if isinstance(x, np.ndarray) and self.encoder.modality == "image" and x.ndim in (3, 4):
            items = list(x)
        else:
            try:
                items = list(x)
            except TypeError as exc:
                raise TypeError(f"{what}: expected a list of items, got {type(x).__name__}") from exc
        if not items:
            raise ValueError(f"{what}: got no items; pass at least one")
        if self.encoder.modality == "text":
            bad = next((i for i, t in enumerate(items) if not isinstance(t, str)), None)
            if bad is not None:
                raise TypeError(f"{what}: encoder {self.encoder.name!r} reads text, but item {bad} is a "
                                f"{type(items[bad]).__name__}; pass strings (or use an image encoder)")
            check_texts(items, what)
        elif self.encoder.modality == "image":
            bad = next((i for i, t in enumerate(items) if not (isinstance(t, np.ndarray) and t.ndim in (2, 3))), None)
            if bad is not None:
                raise TypeError(f"{what}: encoder {self.encoder.name!r} reads images (uint8 arrays (H, W) or "
                                f"(H, W, C)), but item {bad} is a {type(items[bad]).__name__}; pass images "
                                "(or use a text encoder)")
        return items

    def _label(self, value, what: str):
        value = _plain(value)
        try:
            hash(value)
        except TypeError as exc:
            raise TypeError(f"{what}: labels must be hashable (str, int, ...), got {type(value).__name__}") from exc
        if value is None:
            raise ValueError(f"{what}: None is not a class label (it marks out-of-scope examples in calibrate()); "
                             "give every example a class name")
        if value == self.unknown_label:
            raise ValueError(f"{what}: {value!r} is this classifier's unknown_label, so it cannot name a class; "
                             "rename the class or choose another unknown_label")
        return value

    def _labels(self, y, n: int, what: str, existing: Sequence = ()) -> list:
        if isinstance(y, (str, bytes)):
            raise TypeError(f"{what}: expected one label per item (a list), got a single {type(y).__name__}")
        try:
            labels = list(y)
        except TypeError as exc:
            raise TypeError(f"{what}: expected a list of labels, got {type(y).__name__}") from exc
        if len(labels) != n:
            raise ValueError(f"{what}: got {n} items but {len(labels)} labels; give exactly one label per item")
        return check_labels([self._label(v, what) for v in labels], what, existing)

    def _embeddings(self, z, what: str) -> np.ndarray:
        z = np.asarray(z)
        if z.ndim != 2 or z.shape[1] != self.dim:
            raise ValueError(f"{what}: expected embeddings of shape (n, {self.dim}), got {z.shape}")
        if not np.issubdtype(z.dtype, np.floating):
            raise TypeError(f"{what}: expected floating-point embeddings, got dtype {z.dtype}")
        if len(z) == 0:
            raise ValueError(f"{what}: got no embeddings; pass at least one")
        if not np.isfinite(z).all():
            raise ValueError(f"{what}: embeddings contain NaN or inf")
        return np.ascontiguousarray(z, dtype=np.float32)

    def _check_fitted(self, what: str) -> None:
        if not self._fitted:
            raise NotFittedError(f"{what}: this FewShotClassifier is not fitted yet; call fit(x, y) "
                                 "(or add_classes) first")
        if not self.n_classes:
            raise ValueError(f"{what}: the classifier has no classes left; add_classes() first")

    # -- learning ---------------------------------------------------------------------------------
    def embed(self, x: Sequence) -> np.ndarray:
        """(n, dim) float32 embeddings of raw items (texts or images)."""
        items = self._items(x, "embed")
        return self.encoder.encode(items, batch_size=self.batch_size, device=self.device)

    def fit(self, x: Sequence, y: Sequence) -> "FewShotClassifier":
        """Forget every class, then learn one prototype per label of ``y`` from items ``x``."""
        items = self._items(x, "fit")
        labels = self._labels(y, len(items), "fit")
        z = self.encoder.encode(items, batch_size=self.batch_size, device=self.device)
        self._reset()
        return self._add(z, labels, replace=False, items=items)

    def add_classes(self, x: Sequence, y: Sequence, replace: bool = False) -> "FewShotClassifier":
        """Add examples ``x`` under labels ``y``.

        A new label adds a class. An existing label's new examples update its prototype to the
        exact mean over all its examples so far (old ones are not re-embedded), unless
        ``replace=True``, which resets that class to the new examples only.
        """
        items = self._items(x, "add_classes")
        labels = self._labels(y, len(items), "add_classes", self.classes_)
        z = self.encoder.encode(items, batch_size=self.batch_size, device=self.device)
        return self._add(z, labels, replace, items=items)

    def add_embeddings(self, z, y: Sequence, replace: bool = False) -> "FewShotClassifier":
        """Like :meth:`add_classes`, from precomputed (n, dim) embeddings of this classifier's encoder."""
        z = self._embeddings(z, "add_embeddings")
        return self._add(z, self._labels(y, len(z), "add_embeddings", self.classes_), replace)

    def _add(self, z: np.ndarray, labels: list, replace: bool, items: list | None = None) -> "FewShotClassifier":
        """Add embeddings ``z`` under ``labels``; ``items``: their texts, kept in ``support_`` (None:
        embeddings or images, whose texts are unknown: those classes' support texts become None)."""
        if not isinstance(replace, bool):
            raise TypeError(f"replace must be True or False, got {replace!r}")
        texts = items if items is not None and self.encoder.modality == "text" else None
        order: dict = {}
        for i, lab in enumerate(labels):
            order.setdefault(lab, []).append(i)
        changed, new_labels, new_sums, new_counts = [], [], [], []
        sums, counts = self.sums_.copy(), self.counts_.copy()
        for lab, rows in order.items():
            s = z[rows].astype(np.float64).sum(0)
            pos = self._pos.get(lab)
            if pos is None:
                new_labels.append(lab)
                new_sums.append(s)
                new_counts.append(len(rows))
            else:
                sums[pos] = s if replace else sums[pos] + s
                counts[pos] = len(rows) if replace else counts[pos] + len(rows)
                changed.append(pos)
        n_old = self.n_classes
        self.sums_ = np.concatenate([sums, np.asarray(new_sums, np.float64).reshape(-1, self.dim)])
        self.counts_ = np.concatenate([counts, np.asarray(new_counts, np.int64)])
        self.ids_ = np.concatenate([self.ids_, np.arange(self._next_id, self._next_id + len(new_labels))])
        self._next_id += len(new_labels)
        for lab in new_labels:
            self._pos[lab] = len(self.classes_)
            self.classes_.append(lab)
        for lab, rows in order.items():
            kept = [] if replace or lab not in self.support_ else self.support_[lab]
            self.support_[lab] = None if texts is None or kept is None else kept + [texts[i] for i in rows]
        self._fitted = True
        self._sync_index(changed, list(range(n_old, self.n_classes)))
        return self

    def remove_classes(self, names) -> "FewShotClassifier":
        """Forget the classes ``names`` (a list of labels, or one label); unknown names raise."""
        if not self._fitted:
            raise NotFittedError("remove_classes: this FewShotClassifier is not fitted yet; call fit(x, y) first")
        if isinstance(names, (str, bytes)) or not isinstance(names, (list, tuple, set, frozenset, np.ndarray)):
            names = [names]
        names = [_plain(n) for n in names]
        if not names:
            raise ValueError("remove_classes: got no class names; pass at least one")
        missing = [n for n in names if _safe_get(self._pos, n) is None]
        if missing:
            shown = ", ".join(repr(c) for c in self.classes_[:10]) + (", ..." if self.n_classes > 10 else "")
            raise ValueError(f"remove_classes: unknown class(es) {missing!r}; the classifier has {self.n_classes} "
                             f"classes: {shown}")
        drop = sorted({self._pos[n] for n in names})
        keep = np.setdiff1d(np.arange(self.n_classes), drop)
        if self.head_ is not None:
            self.head_.remove(self.ids_[drop])
        self.classes_ = [self.classes_[i] for i in keep]
        self.sums_, self.counts_, self.ids_ = self.sums_[keep], self.counts_[keep], self.ids_[keep]
        self._pos = {lab: i for i, lab in enumerate(self.classes_)}
        self.support_ = {lab: self.support_.get(lab) for lab in self.classes_}
        if not self.n_classes:
            self.head_ = None
        return self

    def _resolved_kind(self) -> str:
        if self.index_kind != "auto":
            return self.index_kind
        return "flat" if self.n_classes < AUTO_APPROX_MIN else "ivf"

    def _sync_index(self, changed: list[int], new: list[int]) -> None:
        kind = self._resolved_kind()
        ix = self.index_
        stale = ix is None or ix.kind != kind or (
            kind == "ivf" and "nlist" not in self.index_options and ix.n_trained
            and self.n_classes >= IVF_RETRAIN_GROWTH * ix.n_trained)
        if stale:
            self.rebuild_index()
            return
        rows = changed + new
        if rows:
            self.head_.set(self.ids_[rows], self.prototypes_[rows])

    def rebuild_index(self) -> None:
        """Rebuild ``head_`` and its index from the stored prototypes (retrains IVF)."""
        self.head_ = NearestPrototypes(self.dim, self.metric, self.scale, self._resolved_kind(),
                                       **self.index_options)
        if self.n_classes:
            self.head_.set(self.ids_, self.prototypes_)

    # -- inference --------------------------------------------------------------------------------
    def scores(self, x: Sequence) -> np.ndarray:
        """(n, n_classes) exact scores (cosine similarity or negative squared distance), like ``classes_``."""
        self._check_fitted("scores")
        return self._scores(self.embed(x))

    def _scores(self, z: np.ndarray) -> np.ndarray:
        """Exact scores against every prototype, columns ordered like ``classes_``."""
        return prototype_scores(torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32)),
                                torch.from_numpy(self.prototypes_), self.metric).numpy()

    def predict_proba(self, x: Sequence) -> np.ndarray:
        """(n, n_classes) float64 softmax of ``scale * score``; columns ordered like ``classes_``.

        Always exact over all classes; it has no "unknown" column (see :meth:`predict`).
        """
        self._check_fitted("predict_proba")
        s = self._scores(self.embed(x)).astype(np.float64) * self.head_.scale
        s -= s.max(1, keepdims=True)
        e = np.exp(s)
        return e / e.sum(1, keepdims=True)

    def _search(self, z: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, ids = self.head_.search(z, k)
        pos = np.searchsorted(self.ids_, ids)
        found = (ids >= 0) & (pos < self.n_classes)
        found &= self.ids_[np.minimum(pos, self.n_classes - 1)] == ids
        return np.where(found, scores, -np.inf), np.where(found, pos, -1)

    def predict(self, x: Sequence) -> list:
        """The nearest class of each item (a list), or ``unknown_label`` when its score is below
        the calibrated ``threshold_`` (no threshold: always a class)."""
        self._check_fitted("predict")
        return self.predict_embeddings(self.embed(x))

    def predict_embeddings(self, z) -> list:
        """Like :meth:`predict`, from precomputed (n, dim) embeddings."""
        self._check_fitted("predict_embeddings")
        scores, pos = self._search(self._embeddings(z, "predict_embeddings"), 1)
        t = self.threshold_
        return [self.unknown_label if p < 0 or (t is not None and s < t) else self.classes_[p]
                for s, p in zip(scores[:, 0], pos[:, 0])]

    def predict_topk(self, x: Sequence, k: int) -> tuple[list[list], np.ndarray]:
        """The ``k`` nearest classes of each item: (labels, a list of n lists of k; scores (n, k)).

        Sorted best first; no threshold is applied. With an approximate index, a slot the
        index could not fill holds ``unknown_label`` with score ``-inf``.
        """
        self._check_fitted("predict_topk")
        self._check_k(k, "predict_topk")
        return self.predict_topk_embeddings(self.embed(x), k)

    def _check_k(self, k, what: str) -> None:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= self.n_classes:
            raise ValueError(f"{what}: k must be an int from 1 to the number of classes "
                             f"({self.n_classes}), got {k!r}")

    def predict_topk_embeddings(self, z, k: int) -> tuple[list[list], np.ndarray]:
        """Like :meth:`predict_topk`, from precomputed (n, dim) embeddings."""
        self._check_fitted("predict_topk_embeddings")
        self._check_k(k, "predict_topk_embeddings")
        scores, pos = self._search(self._embeddings(z, "predict_topk_embeddings"), int(k))
        labels = [[self.classes_[p] if p >= 0 else self.unknown_label for p in row] for row in pos]
        return labels, scores

    def evaluate(self, x: Sequence, y: Sequence) -> ClassReport:
        """Per-class precision, recall and F1 of :meth:`predict` on labelled items ``x``, ``y``, and
        the costliest confusions (:func:`fewshot.report.class_report`). A prediction of
        ``unknown_label`` (beyond the calibrated threshold) counts as wrong."""
        self._check_fitted("evaluate")
        items = self._items(x, "evaluate")
        truth = self._labels(y, len(items), "evaluate")
        return class_report(truth, self.predict(items))

    # -- open set ---------------------------------------------------------------------------------
    def calibrate(self, x: Sequence, y: Sequence, target_precision: float = 0.95) -> "FewShotClassifier":
        """Choose ``threshold_`` (a top-1 score) from held-out data, for open-set :meth:`predict`.

        ``y`` holds a known class for in-scope examples and ``None`` (or ``unknown_label``) for
        out-of-scope ones. Among thresholds whose accepted predictions (score >= threshold) have
        precision >= ``target_precision`` (an out-of-scope example accepted counts as an error),
        the lowest is chosen, which keeps the most in-scope answers. ``calibration_`` records the
        precision, in-scope coverage and accuracy, and out-of-scope recall on these examples.
        """
        self._check_fitted("calibrate")
        return self.calibrate_embeddings(self.embed(self._items(x, "calibrate")), y, target_precision)

    def calibrate_embeddings(self, z, y: Sequence, target_precision: float = 0.95) -> "FewShotClassifier":
        """Like :meth:`calibrate`, from precomputed (n, dim) embeddings."""
        self._check_fitted("calibrate")
        if isinstance(target_precision, bool) or not isinstance(target_precision, (int, float)) or \
                not 0 < target_precision <= 1:
            raise ValueError(f"calibrate: target_precision must be in (0, 1], got {target_precision!r}")
        z = self._embeddings(z, "calibrate")
        if isinstance(y, (str, bytes)):
            raise TypeError("calibrate: expected one label per item (a list), got a single string")
        raw = [_plain(v) for v in y]
        if len(raw) != len(z):
            raise ValueError(f"calibrate: got {len(z)} items but {len(raw)} labels; give exactly one per item")
        oos = np.array([v is None or v == self.unknown_label for v in raw])
        unknown = list({repr(v): v for v, o in zip(raw, oos) if not o and _safe_get(self._pos, v) is None}.values())
        if unknown:
            raise ValueError(f"calibrate: labels {unknown[:5]!r} are not classes of this classifier; label "
                             f"out-of-scope examples None (or {self.unknown_label!r}) and in-scope ones with a class")
        if oos.all():
            raise ValueError("calibrate: every example is out of scope; include in-scope examples with their class")
        scores, pos = self._search(z, 1)
        scores, pos = scores[:, 0], pos[:, 0]
        truth = np.array([-1 if o else self._pos[v] for v, o in zip(raw, oos)])
        correct = (~oos) & (pos == truth)
        order = np.argsort(-scores, kind="stable")
        s_sorted, c_sorted = scores[order], correct[order]
        precision = np.cumsum(c_sorted) / np.arange(1, len(order) + 1)
        last_of_tie = np.r_[s_sorted[1:] != s_sorted[:-1], True]  # a threshold accepts all equal scores
        ok = np.flatnonzero(last_of_tie & (precision >= target_precision) & np.isfinite(s_sorted))
        if not len(ok):
            valid = np.flatnonzero(last_of_tie & np.isfinite(s_sorted))
            best = valid[np.argmax(precision[valid])]
            raise ValueError(f"calibrate: no threshold reaches precision {target_precision} on these examples "
                             f"(the best is {precision[best]:.3f} at threshold {s_sorted[best]:.4f}); lower "
                             "target_precision or give more examples per class")
        i = ok[-1]
        threshold = float(s_sorted[i])
        accepted = scores >= threshold
        self.threshold_ = threshold
        self.calibration_ = {
            "target_precision": float(target_precision), "threshold": threshold,
            "precision": float(precision[i]),
            "in_scope_coverage": float(accepted[~oos].mean()),
            "in_scope_accuracy": float((correct & accepted)[~oos].mean()),
            "out_of_scope_recall": float((~accepted[oos]).mean()) if oos.any() else None,
            "n_in_scope": int((~oos).sum()), "n_out_of_scope": int(oos.sum()),
        }
        return self

    # -- persistence ------------------------------------------------------------------------------
    def encoder_identity(self) -> dict:
        """JSON-able identity of the encoder: name, spec, modality, dim and weights fingerprint."""
        return {"name": self.encoder.name, "spec": self.encoder.spec, "modality": self.encoder.modality,
                "dim": self.dim, "fingerprint": self.encoder.fingerprint(), "checkpoint": self.checkpoint}

    def save(self, path: str | os.PathLike) -> None:
        """Write the classifier to folder ``path`` atomically (see :class:`~fewshot.store.SupportStore`).

        Holds the folder's lock while writing. Labels must be ``str`` or ``int``. If this
        classifier was loaded from ``path`` and another writer saved there since, nothing is
        written and :class:`ConcurrentUpdateError` says so (use :meth:`update` to change a
        shared folder).
        """
        from safetensors.numpy import save as save_arrays

        for v in self.classes_ + [self.unknown_label]:
            if v is not None and (isinstance(v, bool) or not isinstance(v, (str, int))):
                raise TypeError(f"save: labels must be str or int to be stored as JSON, got {type(v).__name__} "
                                f"{v!r}; map your labels to strings first")
        meta = {
            "kind": STORE_KIND, "classes": list(self.classes_), "counts": self.counts_.tolist(),
            "ids": self.ids_.tolist(), "next_id": self._next_id, "fitted": self._fitted,
            "metric": self.metric, "dim": self.dim, "scale": self.scale,
            "unknown_label": self.unknown_label, "threshold": self.threshold_, "calibration": self.calibration_,
            "index_kind": self.index_kind, "index_options": self.index_options,
            "index": self.index_.config() if self.index_ is not None else None,
            "encoder": self.encoder_identity(), "log_corrections": self.log_corrections_,
        }
        blobs = {"state": ("safetensors", save_arrays({"sums": np.ascontiguousarray(self.sums_)})),
                 "support": ("jsonl", _support_bytes(self.classes_, self.support_))}
        if self.index_ is not None:
            blobs["index"] = ("faiss", self.index_.to_bytes())
        key = os.path.realpath(path)
        expect = self._generation[1] if self._generation and self._generation[0] == key else None
        store = SupportStore(path)
        generation = store.write(meta, blobs, expect_generation=expect)
        self._generation = (key, generation)
        self.index_id_ = store.index_id

    def create(self, path: str | os.PathLike) -> None:
        """:meth:`save` into a folder that holds no index yet; one that does is refused, unchanged."""
        existed = Path(path).exists()
        store = SupportStore(path)
        if existed and Path(path).is_dir() and not store.exists():
            others = sorted(p.name for p in Path(path).iterdir() if p.name != ".lock")
            if others:  # refused before the lock file is made: the folder is left exactly as it was
                raise ValueError(f"{path} is not empty ({len(others)} entries, e.g. {others[:3]}) and holds no "
                                 "index; an index is created in a new or empty folder only, so that nothing of "
                                 "yours is mixed with it: choose a new folder")
        try:
            with store.lock():
                if store.exists():
                    raise ValueError(f"{path} already holds an index; change it with FewShotClassifier.update "
                                     "(CLI: `fewshot index add`), or choose a new folder")
                self._generation = None
                self.save(path)
        except BaseException:
            if not existed and Path(path).is_dir() and not store.exists():  # remove what this call created
                (Path(path) / ".lock").unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    Path(path).rmdir()
            raise

    @classmethod
    @contextlib.contextmanager
    def update(cls, path: str | os.PathLike, encoder=None, **load_kwargs):
        """``with FewShotClassifier.update(DIR) as clf: clf.add_classes(...)``: the safe way to change
        a saved classifier while other processes may do the same.

        Holds DIR's lock from load to save, so concurrent updates are applied one after
        the other and none is lost; saves only if the block ends without an exception
        (then DIR is left exactly as it was).
        """
        with SupportStore.locked(path):
            clf = cls.load(path, encoder, **load_kwargs)
            yield clf
            clf.save(path)

    @staticmethod
    def describe(path: str | os.PathLike) -> dict:
        """What a saved classifier holds, read from its manifest alone (the index is not loaded):
        ``encoder``, ``fingerprint``, ``metric``, ``dim``, ``threshold``, ``generation``, ``index_id``
        (None for a folder saved before index identities existed) and ``classes`` (a list of
        {"label", "count"})."""
        doc = SupportStore(path, required=STORE_KEYS).read_manifest()
        meta = doc["body"]
        if meta.get("kind") != STORE_KIND:
            raise StoreError(f"{path} holds a {meta.get('kind')!r} store, not a {STORE_KIND!r}")
        return {"encoder": meta["encoder"]["name"], "fingerprint": meta["encoder"]["fingerprint"],
                "metric": meta["metric"], "dim": meta["dim"], "threshold": meta["threshold"],
                "generation": doc["generation"], "index_id": meta.get("index_id"),
                "log_corrections": meta.get("log_corrections"),
                "classes": [{"label": c, "count": n} for c, n in zip(meta["classes"], meta["counts"])]}

    @classmethod
    def load(cls, path: str | os.PathLike, encoder=None, *, batch_size: int = 128,
             device: str | None = None) -> "FewShotClassifier":
        """Read a classifier saved by :meth:`save`.

        ``encoder`` (an Encoder or a name) must be the one the index was built with (same weights
        fingerprint and dimension); None rebuilds it from the stored spec (or checkpoint).
        """
        from safetensors.numpy import load as load_arrays

        store = SupportStore(path, required=STORE_KEYS)
        meta, blobs = store.read()
        if meta.get("kind") != STORE_KIND:
            raise StoreError(f"{path} holds a {meta.get('kind')!r} store, not a {STORE_KIND!r}")
        ident = meta["encoder"]
        if encoder is None:
            encoder = _encoder_from_identity(ident, path)
        encoder = _resolve_encoder(encoder)
        if int(encoder.dim) != int(meta["dim"]):
            raise ValueError(f"the index in {path} holds {meta['dim']}-d prototypes but encoder {encoder.name!r} "
                             f"gives {encoder.dim}-d embeddings; load it with the encoder it was built with "
                             f"({ident['name']!r})")
        if encoder.fingerprint() != ident["fingerprint"]:
            raise ValueError(f"the index in {path} was built with encoder {ident['name']!r} (weights fingerprint "
                             f"{ident['fingerprint']}), but the given encoder {encoder.name!r} has fingerprint "
                             f"{encoder.fingerprint()}; load it with the same encoder weights or rebuild the index")
        scale = meta.get("scale")
        if scale is None and meta.get("temperature"):  # written by fewshot 0.1: softmax(score / temperature)
            scale = 1.0 / meta["temperature"]
        clf = cls(encoder, meta["metric"], unknown_label=meta["unknown_label"], scale=scale,
                  index_kind=meta["index_kind"], index_options=meta["index_options"], batch_size=batch_size,
                  device=device)
        clf.checkpoint = ident.get("checkpoint")
        try:
            sums = load_arrays(blobs["state"])["sums"]
        except Exception as exc:  # safetensors raises its own error type on bad bytes
            raise StoreError(f"{path}: the prototype sums file cannot be read ({exc})") from exc
        n = len(meta["classes"])
        if sums.shape != (n, clf.dim) or len(meta["counts"]) != n or len(meta["ids"]) != n:
            raise StoreError(f"{path}: inconsistent state ({n} classes, sums {sums.shape}, {len(meta['counts'])} "
                             f"counts, {len(meta['ids'])} ids); restore the folder from a backup")
        clf.classes_ = list(meta["classes"])
        clf.sums_ = sums.astype(np.float64)
        clf.counts_ = np.asarray(meta["counts"], dtype=np.int64).reshape(-1)
        clf.ids_ = np.asarray(meta["ids"], dtype=np.int64).reshape(-1)
        clf._next_id = int(meta["next_id"])
        clf._pos = {lab: i for i, lab in enumerate(clf.classes_)}
        clf._fitted = bool(meta["fitted"])
        clf.support_ = _support_from_bytes(blobs.get("support"), clf.classes_, clf.counts_, path)
        clf.threshold_ = meta["threshold"]
        clf.calibration_ = meta["calibration"]
        clf.log_corrections_ = meta.get("log_corrections")
        if clf.log_corrections_ is not None and not (isinstance(clf.log_corrections_, list) and all(
                isinstance(i, int) and not isinstance(i, bool) for i in clf.log_corrections_)):
            raise StoreError(f"{path}: log_corrections must be a list of prediction ids, got "
                             f"{str(clf.log_corrections_)[:80]}; restore the folder from a backup")
        if meta["index"] is not None:
            index = SupportIndex.from_bytes(blobs.get("index", b""), meta["index"])
            try:
                clf.head_ = NearestPrototypes.from_index(index, clf.ids_, clf.scale)
            except ValueError as exc:
                raise StoreError(f"{path}: {exc} (the {n} classes of the metadata); restore the folder from a "
                                 "backup") from None
        clf._generation = (os.path.realpath(path), store.generation)
        clf.index_id_ = store.index_id
        return clf

    @property
    def generation_(self) -> int | None:
        """The store generation this classifier was last loaded from or saved as (None: never)."""
        return self._generation[1] if self._generation else None

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, **kwargs) -> "FewShotClassifier":
        """A new, empty classifier over the model saved in checkpoint folder ``path``.

        A protonet checkpoint is served as trained: its metric and its learned scale
        (temperature) become the classifier's, unless ``metric=`` / ``scale=`` are given.
        finetune and maml checkpoints adapt a new head to each task's support set, which a
        classifier whose classes change at run time cannot do: their meta-trained encoder
        is served with nearest prototypes (the encoder's metric) and a UserWarning says so.
        """
        record = read_record(path)
        learner = load_learner(path)
        if record["learner"] == "protonet":
            kwargs.setdefault("metric", learner.cfg.metric)
            if kwargs["metric"] == learner.cfg.metric:
                kwargs.setdefault("scale", learner.temperature)
        else:
            warnings.warn(f"{path} holds a {record['learner']!r} checkpoint, which adapts a head per task; "
                          "FewShotClassifier serves its meta-trained encoder with nearest prototypes "
                          f"({kwargs.get('metric') or learner.encoder.metric} metric) instead", UserWarning,
                          stacklevel=2)
        clf = cls(learner.encoder, **kwargs)
        clf.checkpoint = str(os.path.abspath(path))
        return clf


def _support_bytes(classes: list, support: dict) -> bytes:
    """The support texts as JSON lines, one per class in ``classes`` order: {"label", "texts": [...] or null}."""
    return b"".join((json.dumps({"label": lab, "texts": support.get(lab)}, ensure_ascii=False,
                                separators=(",", ":")) + "\n").encode("utf-8") for lab in classes)


def _support_from_bytes(data: bytes | None, classes: list, counts: np.ndarray, path) -> dict:
    """``support_`` from the "support" blob; a folder saved before it existed knows no texts (None)."""
    if data is None:
        return {lab: None for lab in classes}
    try:
        rows = [json.loads(line) for line in data.decode("utf-8").splitlines()]
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoreError(f"{path}: the support texts file cannot be read ({exc}); restore the folder from a "
                         "backup") from exc
    ok = len(rows) == len(classes) and all(
        isinstance(r, dict) and r.get("label") == lab and (r.get("texts") is None or len(r["texts"]) == n)
        for r, lab, n in zip(rows, classes, counts.tolist()))
    if not ok:
        raise StoreError(f"{path}: the support texts do not match the classes and counts of the manifest "
                         f"({len(rows)} rows for {len(classes)} classes); restore the folder from a backup")
    return {r["label"]: r["texts"] for r in rows}


def _plain(value):
    """NumPy scalars -> Python scalars, so np.int64(3) and 3 are the same label."""
    return value.item() if isinstance(value, np.generic) else value


def _safe_get(mapping: dict, key):
    try:
        return mapping.get(key)
    except TypeError:  # unhashable
        return None


def _resolve_encoder(encoder):
    if isinstance(encoder, str):
        return create_encoder(encoder)
    if isinstance(encoder, Encoder):
        return encoder
    raise TypeError(f"encoder must be an encoder name (e.g. 'minilm') or an Encoder instance, "
                    f"got {type(encoder).__name__}")


def _encoder_from_identity(ident: dict, path) -> object:
    """Rebuild the encoder an index was saved with: from its checkpoint, else from its spec."""
    if ident.get("checkpoint"):
        return load_encoder(ident["checkpoint"])
    spec = dict(ident["spec"])
    try:
        if spec.get("name") in ENCODERS and spec.get("kind") == "text":
            spec["path"] = encoder_spec(spec["name"])["path"]  # the package folder on this machine
        return build_encoder(spec)
    except (OSError, ValueError, ImportError) as exc:
        raise ValueError(f"cannot rebuild encoder {ident['name']!r} of the index in {path} ({exc}); pass "
                         "encoder= to FewShotClassifier.load") from exc
