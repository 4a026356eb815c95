"""Nearest prototypes: the one implementation of class means, metric, scale and search.

Used by the protonet learner (per episode, and differentiably while it
meta-trains), by :class:`~fewshot.support.FewShotClassifier` and so by
``fewshot index``. Nothing else in fewshot computes a prototype distance.

- **metric**: ``"cosine"`` (cosine similarity of L2-normalised vectors) or
  ``"euclidean"`` (negative squared Euclidean distance). Scores are always
  "larger is closer". The default metric belongs to the encoder
  (:attr:`fewshot.encoders.Encoder.metric`): sentence encoders are trained for
  cosine similarity, Conv4 for squared distance (Snell et al. 2017).
- **scale**: ``logits = scale * score``; protonet learns it (its
  "temperature"), the classifier uses it for :meth:`predict_proba`.
  :data:`DEFAULT_SCALE` is the starting value per metric.
- **search**: :class:`NearestPrototypes`, a FAISS :class:`~fewshot.index.SupportIndex`
  (exact flat, or approximate IVF/HNSW) over the prototypes, under stable int64 ids;
  what the classifier and ``fewshot index`` search. A learner scoring one episode's
  few prototypes computes :func:`scores` directly.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .index import KINDS, METRICS, SupportIndex

# Initial logit scale per metric: cosine similarities lie in [-1, 1], squared distances of
# sentence/conv embeddings are tens to hundreds.
DEFAULT_SCALE = {"cosine": 10.0, "euclidean": 0.1}


def check_metric(metric: str, where: str = "metric") -> str:
    if metric not in METRICS:
        raise ValueError(f"{where} must be one of {METRICS}, got {metric!r}")
    return metric


def check_scale(scale, where: str = "scale") -> float:
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"{where} must be a positive finite number, got {scale!r}")
    return float(scale)


def class_means(z: torch.Tensor, y: torch.Tensor, n_classes: int | None = None) -> torch.Tensor:
    """Prototypes (n_classes, dim): the mean of the rows of ``z`` (n, dim) with each label of ``y`` (n,).

    Labels are 0..n_classes-1; a label with no example raises (easyfsl gives NaN there).
    """
    y = torch.as_tensor(y).long()  # checked where it lies: labels on the CPU cost the device no sync
    n_classes = int(y.max()) + 1 if n_classes is None else int(n_classes)
    counts = torch.bincount(y, minlength=n_classes)
    if (counts == 0).any():
        missing = torch.nonzero(counts == 0).flatten().tolist()
        raise ValueError(f"labels {missing} have no example; labels must cover 0..{n_classes - 1}")
    y, counts = y.to(z.device, non_blocking=True), counts.to(z.device, non_blocking=True)
    sums = torch.zeros(n_classes, z.shape[1], dtype=z.dtype, device=z.device).index_add_(0, y, z)
    return sums / counts.unsqueeze(1).to(z.dtype)


def scores(z: torch.Tensor, protos: torch.Tensor, metric: str) -> torch.Tensor:
    """(n, k) exact scores of queries ``z`` (n, dim) against prototypes (k, dim); differentiable.

    Cosine similarity, or negative squared Euclidean distance: larger is closer. Prototypes
    of shape (n, k, dim) give each query its own k prototypes (e.g. leave-one-out means).
    """
    if protos.ndim == 3:
        if metric == "cosine":
            return torch.einsum("nd,nkd->nk", torch.nn.functional.normalize(z, dim=1),
                                torch.nn.functional.normalize(protos, dim=2))
        return -(z.unsqueeze(1) - protos).pow(2).sum(2)
    if metric == "cosine":
        return torch.nn.functional.normalize(z, dim=1) @ torch.nn.functional.normalize(protos, dim=1).T
    d = z.pow(2).sum(1, keepdim=True) - 2 * z @ protos.T + protos.pow(2).sum(1)
    return -d.clamp_min(0)


def refine_with_queries(z_support: torch.Tensor, y_support: torch.Tensor, z_query: torch.Tensor, metric: str,
                        scale: float, steps: int = 1) -> torch.Tensor:
    """Transductive prototypes (n_classes, dim): soft k-means over the unlabelled queries.

    Starts from the support class means; each step gives every query a soft class assignment
    ``softmax(scale * score)`` and recomputes each prototype as the weighted mean of its support
    examples (weight 1) and all queries (their assignment). Ren et al. 2018, "Meta-Learning for
    Semi-Supervised Few-Shot Classification". It uses the query set of a task together, so it
    changes the protocol: report it apart from inductive results.
    """
    y = torch.as_tensor(y_support).long()
    n_classes = int(y.max()) + 1
    onehot = torch.nn.functional.one_hot(y, n_classes).to(z_support.dtype)  # (n_support, n_classes)
    protos = class_means(z_support, y, n_classes)
    for _ in range(steps):
        w = torch.softmax(scale * scores(z_query, protos, metric), dim=1)  # (n_query, n_classes)
        protos = (onehot.T @ z_support + w.T @ z_query) / (onehot.sum(0) + w.sum(0)).unsqueeze(1)
    return protos


class NearestPrototypes:
    """Prototypes under stable int64 ids in a FAISS index, with a metric and a logit scale.

    It holds no copy of the ids: the owner (a :class:`fewshot.support.classbook.ClassBook`) knows
    which are present, and says so by calling :meth:`add` for new ids and :meth:`replace` for
    present ones. :meth:`search` asks the index (approximate for IVF/HNSW). Exact scores over
    every prototype are :func:`scores` of the prototypes themselves.
    """

    def __init__(self, dim: int, metric: str, scale: float | None = None, kind: str = "flat",
                 **index_options):
        check_metric(metric)
        if kind not in KINDS:
            raise ValueError(f"index kind must be one of {KINDS}, got {kind!r}")
        self.dim, self.metric, self.kind = int(dim), metric, kind
        self.scale = DEFAULT_SCALE[metric] if scale is None else check_scale(scale)
        self.index_options = dict(index_options)
        self.index = SupportIndex(self.dim, metric, kind, **self.index_options)

    @classmethod
    def from_index(cls, index: SupportIndex, ids, scale: float | None = None) -> "NearestPrototypes":
        """Wrap a loaded index that holds exactly the prototypes of ``ids`` (n,)."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if not np.array_equal(np.sort(ids), index.ids()):
            raise ValueError(f"the index holds {index.ntotal} prototypes that do not match the {len(ids)} ids given")
        head = cls(index.dim, index.metric, scale, index.kind)
        head.index_options = {k: v for k, v in index.config().items() if k in ("nlist", "nprobe", "hnsw_m",
                                                                                "ef_search", "codes")}
        head.index = index
        return head

    def __len__(self) -> int:
        return self.index.ntotal

    # -- mutation ---------------------------------------------------------------------------------
    def add(self, ids, prototypes) -> None:
        """Add prototypes (n, dim) under new ``ids`` (n,)."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if len(ids):
            self.index.add(ids, np.ascontiguousarray(prototypes, dtype=np.float32).reshape(len(ids), self.dim))

    def replace(self, ids, prototypes) -> None:
        """Replace the prototypes of present ``ids`` (n,) with ``prototypes`` (n, dim)."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if len(ids):
            self.index.replace(ids, np.ascontiguousarray(prototypes, dtype=np.float32).reshape(len(ids), self.dim))

    def remove(self, ids) -> None:
        self.index.remove(np.asarray(ids, dtype=np.int64).reshape(-1))

    # -- search ---------------------------------------------------------------------------------
    def search(self, z, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest prototypes of each query through the index: (scores (n, k), ids (n, k))."""
        return self.index.search(z, k)
