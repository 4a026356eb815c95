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

Learning from use on a saved index lives in :mod:`fewshot.support.curation`, the folder format in
:mod:`fewshot.support.folder`, the class bookkeeping (exact running means, stable ids, support texts:
``book_``) in :mod:`fewshot.support.classbook`. The prototypes live in a
:class:`~fewshot.prototypes.NearestPrototypes` head (``head_``: metric, scale, FAISS index), the same
code the protonet learner scores episodes with; one search (:meth:`FewShotClassifier.rank_embeddings`)
serves :meth:`predict`, :meth:`predict_topk`, open-set calibration and the prediction log. Scores are
"larger is closer" (cosine similarity or negative squared distance; the metric defaults to the
encoder's); :meth:`predict_proba` is an exact softmax of ``scale * score`` over all classes. Labels are
any hashable values (``None`` is reserved for "out of scope"), in order of first appearance; :meth:`save`
needs ``str`` or ``int`` labels.

Saving is atomic and locked (:class:`~fewshot.store.SupportStore`); :meth:`FewShotClassifier.update`
is the safe way to change a saved classifier from several processes (lock, load, change, save).
"""
from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Hashable, Sequence
from typing import NamedTuple

import numpy as np
import torch

from ..checkpoint import load_learner
from ..encoders import DEFAULT_ENCODER
from ..index import SupportIndex
from ..prototypes import NearestPrototypes, check_metric
from ..prototypes import scores as prototype_scores
from ..report import ClassReport, class_report
from ..store import ConcurrentUpdateError, StoreError, SupportStore
from . import calibration, folder
from .checks import check_embeddings, check_items, check_label, check_label_list, plain
from .classbook import ClassBook
from .search import SearchPolicy

__all__ = ["ConcurrentUpdateError", "FewShotClassifier", "NotFittedError", "Ranking", "StoreError"]


class NotFittedError(ValueError):
    """The classifier was used before :meth:`FewShotClassifier.fit` (or add_classes)."""


class Ranking(NamedTuple):
    """One search of the index: the ``k`` nearest classes of each query and the decision of :meth:`predict`.

    ``labels``: n lists of k labels, best first (``unknown_label`` where an approximate index left a slot
    empty); ``scores``: (n, k), ``-inf`` in such slots; ``predictions``: the top label, or ``unknown_label``
    when its score is below the calibrated threshold.
    """

    labels: list
    scores: np.ndarray
    predictions: list


class FewShotClassifier:
    """Nearest-class-mean classifier over a frozen encoder, with classes added and removed at run time.

    Parameters
    ----------
    encoder: a registered encoder name (``"minilm"``, ``"mobilenetv2"``, ...), a transformers model
        folder, a ``fewshot train`` checkpoint folder, or an :class:`~fewshot.encoders.Encoder`.
    metric: ``"cosine"`` or ``"euclidean"``; None (default): the encoder's own (``encoder.metric``).
    unknown_label: what :meth:`predict` answers for a query beyond the calibrated threshold
        (default None). It cannot also be a class name.
    scale: logit scale of :meth:`predict_proba`, ``softmax(scale * score)`` (None: 10 for cosine,
        0.1 for euclidean; the learner's own in :meth:`from_checkpoint`).
    index_kind: ``"flat"`` (exact), ``"ivf"``, ``"hnsw"`` (approximate) or ``"auto"`` (default:
        flat below 50,000 classes, from there IVF with 8-bit codes re-scored exactly and nprobe tuned to
        recall@1 0.99 (:mod:`fewshot.support.search`); IVF is retrained when the class count doubles).
    index_options: extra SupportIndex settings (``nlist``, ``nprobe``, ``hnsw_m``, ``ef_search``, ``codes``).
    batch_size, device: passed to ``Encoder.encode``.
    """

    def __init__(self, encoder=DEFAULT_ENCODER["text"], metric: str | None = None, *,
                 unknown_label: Hashable = None, scale: float | None = None, index_kind: str = "auto",
                 index_options: dict | None = None, batch_size: int = 128, device: str | None = None):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if metric is not None:
            check_metric(metric)
        self.encoder = folder.resolve_encoder(encoder)
        self.policy = SearchPolicy(metric or self.encoder.metric, scale, index_kind, index_options)
        try:
            hash(unknown_label)
        except TypeError as exc:
            raise TypeError(f"unknown_label must be hashable, got {type(unknown_label).__name__}") from exc
        self.unknown_label = plain(unknown_label)
        self.batch_size = batch_size
        self.device = device
        self.checkpoint = None  # set by from_checkpoint: where the encoder's weights came from
        self.path_: str | None = None  # the folder this was last loaded from or saved to
        self.generation_: int | None = None  # the store generation it was then at
        self.index_id_: str | None = None  # identity of that store
        # ids of the logged predictions whose correction this index holds: the commit point of a correction
        # (fewshot.support.curation.correct); None for a folder saved before it was recorded
        self.log_corrections_: list[int] | None = []
        self._reset()

    # -- state ------------------------------------------------------------------------------------
    def _reset(self) -> None:
        self.book_ = ClassBook(self.dim)
        self.head_: NearestPrototypes | None = None
        self.threshold_: float | None = None
        self.calibration_: dict | None = None
        self.fitted_ = False

    metric = property(lambda self: self.policy.metric, doc="cosine or euclidean")
    scale = property(lambda self: self.policy.scale, doc="predict_proba's logit scale (None: the metric's default)")
    index_kind = property(lambda self: self.policy.index_kind, doc="flat, ivf, hnsw or auto")
    index_options = property(lambda self: dict(self.policy.index_options), doc="extra SupportIndex settings")

    @property
    def dim(self) -> int:
        return int(self.encoder.dim)

    n_classes = property(lambda self: len(self.book_), doc="how many classes it holds")
    classes_ = property(lambda self: list(self.book_.labels), doc="the labels, in order of first appearance "
                        "(a removal moves the newest class into the removed one's place: ClassBook)")
    counts_ = property(lambda self: self.book_.counts, doc="(n_classes,) examples per class")
    sums_ = property(lambda self: self.book_.sums, doc="(n_classes, dim) float64 sums of each class's embeddings")
    ids_ = property(lambda self: self.book_.ids, doc="(n_classes,) stable search ids, like classes_")
    prototypes_ = property(lambda self: self.book_.prototypes(), doc="(n_classes, dim) float32 class means")
    support_ = property(lambda self: {lab: self.book_.texts(lab) for lab in self.book_.labels},
                        doc="label -> its support texts in order of arrival, or None where unknown")

    @property
    def index_(self) -> SupportIndex | None:
        """The FAISS index of the prototypes (None before the first class)."""
        return self.head_.index if self.head_ is not None else None

    def __repr__(self) -> str:
        return (f"FewShotClassifier(encoder={self.encoder.name!r}, metric={self.metric!r}, "
                f"n_classes={self.n_classes}, index_kind={self.index_kind!r})")

    # -- input checks -----------------------------------------------------------------------------
    def items(self, x, what: str) -> list:
        """``x`` as a list of items this classifier's encoder reads; TypeError/ValueError otherwise."""
        return check_items(x, self.encoder, what)

    def label(self, value, what: str):
        """``value`` as a class label of this classifier; TypeError/ValueError when it cannot be one."""
        return check_label(value, self.unknown_label, what)

    def _labels(self, y, n: int, what: str, existing=()) -> list:
        return check_label_list(y, n, self.unknown_label, what, existing)

    def _embeddings(self, z, what: str) -> np.ndarray:
        return check_embeddings(z, self.dim, what)

    def check_fitted(self, what: str) -> None:
        """NotFittedError before :meth:`fit`; ValueError when every class was removed."""
        if not self.fitted_:
            raise NotFittedError(f"{what}: this FewShotClassifier is not fitted yet; call fit(x, y) "
                                 "(or add_classes) first")
        if not self.n_classes:
            raise ValueError(f"{what}: the classifier has no classes left; add_classes() first")

    # -- learning ---------------------------------------------------------------------------------
    def embed(self, x: Sequence) -> np.ndarray:
        """(n, dim) float32 embeddings of raw items (texts or images)."""
        return self._encode(self.items(x, "embed"))

    def _encode(self, items: list) -> np.ndarray:
        return self.encoder.encode(items, batch_size=self.batch_size, device=self.device)

    def fit(self, x: Sequence, y: Sequence) -> "FewShotClassifier":
        """Forget every class, then learn one prototype per label of ``y`` from items ``x``."""
        items = self.items(x, "fit")
        labels = self._labels(y, len(items), "fit")
        z = self._encode(items)
        self._reset()
        return self._add(z, labels, replace=False, items=items)

    def add_classes(self, x: Sequence, y: Sequence, replace: bool = False) -> "FewShotClassifier":
        """Add examples ``x`` under labels ``y``.

        A new label adds a class. An existing label's new examples update its prototype to the
        exact mean over all its examples so far (old ones are not re-embedded), unless
        ``replace=True``, which resets that class to the new examples only.
        """
        items = self.items(x, "add_classes")
        labels = self._labels(y, len(items), "add_classes", self.book_.keys)
        return self._add(self._encode(items), labels, replace, items=items)

    def add_embeddings(self, z, y: Sequence, replace: bool = False) -> "FewShotClassifier":
        """Like :meth:`add_classes`, from precomputed (n, dim) embeddings of this classifier's encoder."""
        z = self._embeddings(z, "add_embeddings")
        return self._add(z, self._labels(y, len(z), "add_embeddings", self.book_.keys), replace)

    def _add(self, z: np.ndarray, labels: list, replace: bool, items: list | None = None) -> "FewShotClassifier":
        if not isinstance(replace, bool):
            raise TypeError(f"replace must be True or False, got {replace!r}")
        texts = items if items is not None and self.encoder.modality == "text" else None
        changed, added = self.book_.add(z, labels, texts, replace)
        self.fitted_ = True
        self.head_ = self.policy.sync(self.head_, self.book_, changed, added)
        return self

    def remove_classes(self, names) -> "FewShotClassifier":
        """Forget the classes ``names`` (a list of labels, or one label); unknown names raise."""
        if not self.fitted_:
            raise NotFittedError("remove_classes: this FewShotClassifier is not fitted yet; call fit(x, y) first")
        if isinstance(names, (str, bytes)) or not isinstance(names, (list, tuple, set, frozenset, np.ndarray)):
            names = [names]
        names = [plain(n) for n in names]
        if not names:
            raise ValueError("remove_classes: got no class names; pass at least one")
        missing = [n for n in names if n not in self.book_]
        if missing:
            shown = ", ".join(repr(c) for c in self.book_.labels[:10]) + (", ..." if self.n_classes > 10 else "")
            raise ValueError(f"remove_classes: unknown class(es) {missing!r}; the classifier has {self.n_classes} "
                             f"classes: {shown}")
        gone = self.book_.remove(names)
        if self.head_ is not None:
            self.head_.remove(gone)
        if not self.n_classes:
            self.head_ = None
        return self

    def rebuild_index(self) -> None:
        """Rebuild ``head_`` and its index from the stored prototypes (retrains IVF)."""
        self.head_ = self.policy.build(self.book_)

    # -- inference --------------------------------------------------------------------------------
    def scores(self, x: Sequence) -> np.ndarray:
        """(n, n_classes) exact scores (cosine similarity or negative squared distance), like ``classes_``."""
        self.check_fitted("scores")
        return self.scores_of(self.embed(x))

    def scores_of(self, z: np.ndarray, prototypes: np.ndarray | None = None) -> np.ndarray:
        """Exact scores of embeddings ``z`` against every prototype (or against ``prototypes``)."""
        protos = self.book_.prototypes() if prototypes is None else prototypes
        return prototype_scores(torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32)),
                                torch.from_numpy(np.ascontiguousarray(protos, dtype=np.float32)), self.metric).numpy()

    def predict_proba(self, x: Sequence) -> np.ndarray:
        """(n, n_classes) float64 softmax of ``scale * score``; columns ordered like ``classes_``.

        Always exact over all classes; it has no "unknown" column (see :meth:`predict`).
        """
        self.check_fitted("predict_proba")
        s = self.scores_of(self.embed(x)).astype(np.float64) * self.head_.scale
        s -= s.max(1, keepdims=True)
        e = np.exp(s)
        return e / e.sum(1, keepdims=True)

    def rank_embeddings(self, z, k: int = 1) -> Ranking:
        """One search for embeddings ``z`` (n, dim): the ``k`` nearest classes and the thresholded top-1."""
        self.check_fitted("rank_embeddings")
        self._check_k(k, "rank_embeddings")
        scores, rows = self.policy.search(self.head_, self.book_, self._embeddings(z, "rank_embeddings"), int(k))
        labels = [[self.book_.labels[r] if r >= 0 else self.unknown_label for r in row] for row in rows]
        t = self.threshold_
        predictions = [self.unknown_label if r < 0 or (t is not None and s < t) else self.book_.labels[r]
                       for s, r in zip(scores[:, 0], rows[:, 0])]
        return Ranking(labels, scores, predictions)

    def predict(self, x: Sequence) -> list:
        """The nearest class of each item (a list), or ``unknown_label`` when its score is below
        the calibrated ``threshold_`` (no threshold: always a class)."""
        self.check_fitted("predict")
        return self.rank_embeddings(self.embed(x)).predictions

    def predict_embeddings(self, z) -> list:
        """Like :meth:`predict`, from precomputed (n, dim) embeddings."""
        return self.rank_embeddings(z).predictions

    def predict_topk(self, x: Sequence, k: int) -> tuple[list[list], np.ndarray]:
        """The ``k`` nearest classes of each item: (labels, a list of n lists of k; scores (n, k)).

        Sorted best first; no threshold is applied. With an approximate index, a slot the
        index could not fill holds ``unknown_label`` with score ``-inf``.
        """
        self.check_fitted("predict_topk")
        self._check_k(k, "predict_topk")
        return self.predict_topk_embeddings(self.embed(x), k)

    def predict_topk_embeddings(self, z, k: int) -> tuple[list[list], np.ndarray]:
        """Like :meth:`predict_topk`, from precomputed (n, dim) embeddings."""
        ranking = self.rank_embeddings(z, k)
        return ranking.labels, ranking.scores

    def _check_k(self, k, what: str) -> None:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= self.n_classes:
            raise ValueError(f"{what}: k must be an int from 1 to the number of classes "
                             f"({self.n_classes}), got {k!r}")

    def evaluate(self, x: Sequence, y: Sequence) -> ClassReport:
        """Per-class precision, recall and F1 of :meth:`predict` on labelled items ``x``, ``y``, and
        the costliest confusions (:func:`fewshot.report.class_report`). A prediction of
        ``unknown_label`` (beyond the calibrated threshold) counts as wrong."""
        self.check_fitted("evaluate")
        items = self.items(x, "evaluate")
        truth = self._labels(y, len(items), "evaluate")
        return class_report(truth, self.predict(items))

    # -- open set ---------------------------------------------------------------------------------
    def calibrate(self, x: Sequence, y: Sequence, target_precision: float = 0.95) -> "FewShotClassifier":
        """Choose ``threshold_`` (a top-1 score) from held-out data, for open-set :meth:`predict`.

        ``y`` holds a known class for in-scope examples and ``None`` (or ``unknown_label``) for
        out-of-scope ones; :func:`fewshot.support.calibration.choose_threshold` picks the lowest
        threshold whose accepted predictions reach ``target_precision``. ``calibration_`` records
        the precision, in-scope coverage and accuracy, and out-of-scope recall on these examples.
        """
        self.check_fitted("calibrate")
        return self.calibrate_embeddings(self.embed(self.items(x, "calibrate")), y, target_precision)

    def calibrate_embeddings(self, z, y: Sequence, target_precision: float = 0.95) -> "FewShotClassifier":
        """Like :meth:`calibrate`, from precomputed (n, dim) embeddings."""
        self.check_fitted("calibrate")
        self.calibration_ = calibration.calibrate(self, self._embeddings(z, "calibrate"), y, target_precision)
        self.threshold_ = self.calibration_["threshold"]
        return self

    # -- persistence ------------------------------------------------------------------------------
    def encoder_identity(self) -> dict:
        """JSON-able identity of the encoder: name, spec, modality, dim and weights fingerprint."""
        return folder.encoder_identity(self.encoder, self.checkpoint)

    def save(self, path: str | os.PathLike, *, replacing: "FewShotClassifier | None" = None) -> None:
        """Write the classifier to folder ``path`` atomically (see :mod:`fewshot.support.folder`).

        Holds the folder's lock while writing. Labels must be ``str`` or ``int``. If this classifier
        (or ``replacing``, the classifier this one replaces) was loaded from ``path`` and another writer
        saved there since, nothing is written and :class:`ConcurrentUpdateError` says so (use
        :meth:`update` to change a shared folder).
        """
        for v in self.book_.labels + [self.unknown_label]:
            if v is not None and (isinstance(v, bool) or not isinstance(v, (str, int))):
                raise TypeError(f"save: labels must be str or int to be stored as JSON, got {type(v).__name__} "
                                f"{v!r}; map your labels to strings first")
        meta = {"fitted": self.fitted_, "metric": self.metric, "scale": self.scale,
                "unknown_label": self.unknown_label, "threshold": self.threshold_, "calibration": self.calibration_,
                "index_kind": self.index_kind, "index_options": self.index_options,
                "encoder": self.encoder_identity(), "log_corrections": self.log_corrections_}
        key = os.path.realpath(path)
        source = replacing if replacing is not None else self
        expect = source.generation_ if source.path_ == key else None
        store = folder.write(path, meta, self.book_, self.index_, expect)
        self.path_, self.generation_, self.index_id_ = key, store.generation, store.index_id

    def create(self, path: str | os.PathLike) -> None:
        """:meth:`save` into a folder that holds no index yet; one that does is refused, unchanged."""
        with folder.creating(path):
            self.path_ = self.generation_ = None
            self.save(path)

    @classmethod
    @contextlib.contextmanager
    def update(cls, path: str | os.PathLike, encoder=None, **load_kwargs):
        """``with FewShotClassifier.update(DIR) as clf: clf.add_classes(...)``: the safe way to change
        a saved classifier while other processes may do the same.

        Holds DIR's lock from load to save, so concurrent updates are applied one after the other and
        none is lost; saves only if the block ends without an exception (then DIR is left exactly as
        it was).
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
        return folder.describe(path)

    @classmethod
    def load(cls, path: str | os.PathLike, encoder=None, *, batch_size: int = 128,
             device: str | None = None) -> "FewShotClassifier":
        """Read a classifier saved by :meth:`save`.

        ``encoder`` (an Encoder, a name, a model or checkpoint folder) must be the one the index was
        built with (same weights fingerprint and dimension); None rebuilds it from the stored spec (or
        the checkpoint it names).
        """
        saved = folder.open_saved(path, encoder)
        clf = cls(saved.encoder, **saved.settings, batch_size=batch_size, device=device)
        clf.checkpoint, clf.book_, clf.fitted_ = saved.checkpoint, saved.book, saved.fitted
        clf.threshold_, clf.calibration_ = saved.threshold, saved.calibration
        clf.log_corrections_ = saved.log_corrections
        if saved.index is not None:
            try:
                clf.head_ = NearestPrototypes.from_index(saved.index, saved.book.ids, clf.scale)
            except ValueError as exc:
                raise StoreError(f"{path}: {exc} (the {len(saved.book)} classes of the metadata); restore the "
                                 "folder from a backup") from None
        clf.path_, clf.generation_, clf.index_id_ = os.path.realpath(path), saved.store.generation, saved.store.index_id
        return clf

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, **kwargs) -> "FewShotClassifier":
        """A new, empty classifier over the model saved in checkpoint folder ``path``.

        The learner says how it is served (:meth:`fewshot.learners.Learner.serving`). One that
        scores by nearest prototypes (protonet) is served as trained: its metric and its learned
        scale (temperature) become the classifier's, unless ``metric=`` / ``scale=`` are given.
        One that adapts a head per task (finetune, maml) cannot be kept by a classifier whose
        classes change at run time: its meta-trained encoder is served with nearest prototypes
        (the encoder's metric) and a UserWarning says so.
        """
        learner = load_learner(path)
        serving = learner.serving()
        if serving.as_trained:
            kwargs.setdefault("metric", serving.metric)
            if kwargs["metric"] == serving.metric and serving.scale is not None:
                kwargs.setdefault("scale", serving.scale)
        else:
            warnings.warn(f"{path} holds a {learner.name!r} checkpoint, which adapts a head per task; "
                          "FewShotClassifier serves its meta-trained encoder with nearest prototypes "
                          f"({kwargs.get('metric') or learner.encoder.metric} metric) instead", UserWarning,
                          stacklevel=2)
        clf = cls(learner.encoder, **kwargs)
        clf.checkpoint = str(os.path.abspath(path))
        return clf
