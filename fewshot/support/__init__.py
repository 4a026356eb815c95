"""The run-time side of fewshot: classes added, updated and removed at run time over a trained model.

- :mod:`~fewshot.support.classifier`: :class:`FewShotClassifier`, the in-memory classifier (the public object);
- :mod:`~fewshot.support.classbook`: its class bookkeeping (labels, running sums, counts, ids, support texts);
- :mod:`~fewshot.support.search`: which FAISS index holds the prototypes, kept in step with the classes;
- :mod:`~fewshot.support.calibration`: the open-set threshold;
- :mod:`~fewshot.support.checks`: what it accepts as items, labels and embeddings;
- :mod:`~fewshot.support.folder`: the folder format of a saved classifier (a *support index*);
- :mod:`~fewshot.support.log`: the prediction log beside it;
- :mod:`~fewshot.support.curation`: learning from use (corrections, confirmations, training on an index,
  rebuilding it with a new encoder).
"""
from ..store import ConcurrentUpdateError, StoreError
from .classifier import FewShotClassifier, NotFittedError, Ranking

__all__ = ["ConcurrentUpdateError", "FewShotClassifier", "NotFittedError", "Ranking", "StoreError"]
