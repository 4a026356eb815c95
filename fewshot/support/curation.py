"""Learning from use on a saved index: review logged predictions, train on the index, rebuild it.

- :func:`prediction_log`: the index's :class:`~fewshot.support.log.PredictionLog`, bound to its identity;
  :func:`predict`: one search of a loaded index, optionally logged there.
- :func:`correct` / :func:`confirm`: feedback on a logged prediction; a correction adds the query to
  its true class as a support example (a running-mean update; only that one text is embedded).
- :func:`index_dataset`: the stored support texts as a dataset with a train/val class split;
  :func:`training_data`: that dataset checked against a training config, for ``fewshot train --from-index``.
- :func:`rebuild`: re-embed every stored text with a re-trained encoder into a new generation of
  the folder, behind a drift guard that scores old and new on held-out labelled logged queries.

Every function that changes a folder holds its lock (:meth:`FewShotClassifier.update`).
"""
from __future__ import annotations

import os
import warnings
from typing import NamedTuple

import numpy as np
from ..data import FewShotDataset
from ..encoders import Encoder
from ..store import SupportStore
from .classifier import FewShotClassifier
from .log import FILENAME as LOG_FILENAME
from .log import PredictionLog

MIN_DRIFT_QUERIES = 20  # rebuild's drift guard needs this many labelled logged queries (or force=True)
# Logged predictions whose id is divisible by GUARD_EVERY belong to the drift guard: their corrected texts
# never train an encoder (index_dataset leaves them out), so rebuild scores old and new on unseen queries.
GUARD_EVERY = 5


def prediction_log(path: str | os.PathLike, create: bool = False, committed=None) -> PredictionLog:
    """The prediction log of the index in folder ``path`` (``path/predictions.jsonl``), bound to
    the store's ``index_id``: a log whose header names another index is refused (ValueError).

    ``committed``: what says which logged corrections the index holds (default: its manifest, read at
    each read of the log). ``create=True`` creates the log if missing; a folder saved before index identities
    existed is first saved once (under its lock) so that it gets one. Without ``create``,
    nothing is written and a missing log reads as empty.
    """
    about = FewShotClassifier.describe(path)
    if about["index_id"] is None and create:
        with FewShotClassifier.update(path):
            pass  # the save gives the store its index_id
        about = FewShotClassifier.describe(path)
    index_id = about["index_id"]
    log_path = os.path.join(path, LOG_FILENAME)
    if index_id is None:
        if os.path.exists(log_path):
            raise ValueError(f"{log_path} belongs to another index: the index in {path} has no identity "
                             "yet, so it never wrote a log; move that file aside")
        return PredictionLog(log_path, "unsaved-identity")  # empty: reads only, never written
    if committed is None:  # the index's committed corrections, read from its manifest at each read of the log
        committed = lambda: FewShotClassifier.describe(path)["log_corrections"]  # noqa: E731
    return PredictionLog.open(log_path, index_id, committed) if create else PredictionLog(log_path, index_id,
                                                                                           committed)


def predict(clf: FewShotClassifier, texts: list, top_k: int = 1, log: bool = False, z=None) -> list[dict]:
    """Classify ``texts`` with a loaded index ``clf`` in one search: per text ``{"text", "label", "score",
    "top_k": [{"label", "score"}, ...]}`` (``label``: the thresholded prediction, None for unknown), and
    ``"id"`` first when ``log``: then each query, its top-k labels and scores are appended to the
    prediction log of the folder ``clf`` was loaded from (created if missing, and only once the search
    succeeded: a refused input leaves no log behind). ``z``: the (n, dim) embeddings of ``texts`` when the
    caller computed them already. ``fewshot index predict`` and ``fewshot serve`` call it.
    """
    z = clf.embed(texts) if z is None else z
    top_labels, top_scores, labels = clf.rank_embeddings(z, top_k)  # one search serves all three
    if log and clf.path_ is None:
        raise ValueError("predict: log=True needs a classifier loaded from (or saved to) an index folder; the "
                         "prediction log lives beside the index")
    tops = [[{"label": lab, "score": round(float(s), 6)} for lab, s in zip(top_labels[i], top_scores[i])
             if np.isfinite(s)] for i in range(len(texts))]
    rows = [{"text": text, "label": labels[i], "score": top[0]["score"], "top_k": top}
            for i, (text, top) in enumerate(zip(texts, tops))]
    if log:
        ids = prediction_log(clf.path_, create=True).append(
            [{"query": r["text"], "labels": [t["label"] for t in r["top_k"]],
              "scores": [t["score"] for t in r["top_k"]], "generation": clf.generation_} for r in rows])
        rows = [{"id": i, **r} for i, r in zip(ids, rows)]
    return rows


def correct(path: str | os.PathLike, id: int, label, encoder=None) -> dict:
    """Record that logged prediction ``id`` of the index in ``path`` is of class ``label``, and
    add its query to that class as a support example; returns the log entry.

    The prototype is updated as a running mean: only this one query text is embedded
    again (the log keeps texts, not embeddings); old examples are not. A new label adds a
    class. Runs under :meth:`FewShotClassifier.update` (the folder lock): the correction is appended to
    the log, then the index is saved with the id in its ``log_corrections``. That save is the one commit
    point: a correction record whose id the index does not name (a process killed between the two
    writes) does not count anywhere (:attr:`PredictionLog.committed_corrections`), so the prediction can
    be corrected again. (A folder saved before ``log_corrections`` existed counts every correction its log
    holds, then records them with its first correction.) Refused (ValueError, nothing changed): an id the
    log does not hold, a log of another index, a blank label, a prediction that already
    got feedback.
    """
    if isinstance(label, str) and not label.strip():
        raise ValueError(f"correct: expected a class name, got the blank label {label!r}; pass the true class "
                         "of the logged query")
    with FewShotClassifier.update(path, encoder) as clf:
        committed = clf.log_corrections_
        log = prediction_log(path, committed=lambda: committed)  # what the loaded index holds (the lock is ours)
        if clf.log_corrections_ is None:  # saved before corrections were committed: all the log's count
            clf.log_corrections_ = sorted(p["id"] for p in log.read() if p["feedback"] == "correction")
        entry = _unreviewed(log, id, "correct")
        label = clf.label(label, "correct")
        clf.add_classes([entry["query"]], [label])
        log.append_correction(id, label)
        clf.log_corrections_ = sorted(set(clf.log_corrections_) | {id})  # committed by update's save
    return entry


def confirm(path: str | os.PathLike, id: int) -> dict:
    """Record that the top label of logged prediction ``id`` was right; returns the log entry.

    Only the log changes (the index is not); refused (ValueError) like :meth:`correct`.
    """
    log = prediction_log(path)
    with SupportStore.locked(path):
        entry = _unreviewed(log, id, "confirm")
        log.append_confirmation(id)
    return entry


def require_texts(clf: FewShotClassifier, what: str, path=None) -> None:
    """Refuse (ValueError) a classifier some of whose classes have no stored support texts."""
    missing = [lab for lab in clf.book_.labels if clf.book_.texts(lab) is None]
    if missing:
        shown = ", ".join(repr(c) for c in missing[:10]) + (", ..." if len(missing) > 10 else "")
        where = f"the index in {path}" if path is not None else "this classifier"
        raise ValueError(
            f"{what}: expected stored support texts for every class, but {len(missing)} of the "
            f"{clf.n_classes} classes of {where} have none ({shown}): they were added as embeddings or "
            "images, or saved by a fewshot version that did not keep texts. Add those classes again from "
            "their texts with replace (CLI: `fewshot index add DIR --file F --replace`), or remove them")


def index_dataset(clf: FewShotClassifier, val_share: float = 0.2, seed: int = 0, min_examples: int = 1,
                  name: str | None = None, log_entries: list[dict] | None = None):
    """The stored support texts as a :class:`~fewshot.data.FewShotDataset` with a train/val class
    split, for meta-training on this index's own classes (``fewshot train --from-index``).

    Classes with fewer than ``min_examples`` texts are left out (compare ``dataset.classes``
    with ``classes_``). Of the others, ``max(2, round(val_share * n))`` classes, drawn by
    ``seed``, validate and the rest train; labels become strings. Refused (ValueError): a class
    without stored texts, fewer than 4 usable classes, labels that collide as strings.

    ``log_entries`` (the index's :meth:`PredictionLog.read`): the texts that corrections of the
    drift guard's share of logged predictions (:data:`GUARD_EVERY`) put into the support are
    left out, so that :func:`rebuild` can later score a re-trained encoder on queries it never
    trained on.
    """
    clf.check_fitted("index_dataset")
    require_texts(clf, "index_dataset", clf.path_)
    if isinstance(val_share, bool) or not isinstance(val_share, (int, float)) or not 0 < val_share < 1:
        raise ValueError(f"index_dataset: val_share must be a fraction in (0, 1), got {val_share!r}")
    if isinstance(min_examples, bool) or not isinstance(min_examples, int) or min_examples < 1:
        raise ValueError(f"index_dataset: min_examples must be a positive int, got {min_examples!r}")
    names = [str(lab) for lab in clf.classes_]
    if len(set(names)) != len(names):
        raise ValueError("index_dataset: two class labels read the same as text (e.g. 3 and '3'); rename one")
    texts = {lab: clf.book_.texts(lab) for lab in clf.book_.labels}
    for query, lab, added in zip(*_labelled_queries(clf, log_entries or [])):
        if added:
            texts[lab].remove(query)  # one occurrence: the one its correction added
    usable = [(n, lab) for n, lab in zip(names, clf.classes_) if len(texts[lab]) >= min_examples]
    if len(usable) < 4:
        counts = sorted(int(c) for c in clf.counts_)
        raise ValueError(f"index_dataset: expected at least 4 classes with {min_examples} or more support texts "
                         f"(2 to train, 2 to validate), got {len(usable)} of {clf.n_classes} (the classes have "
                         f"{counts[0]} to {counts[-1]} texts); lower the episodes' shot and query (fewshot train "
                         "--train-shot/--train-query/--val-shot/--val-query), or add examples")
    order = [usable[i] for i in np.random.default_rng(seed).permutation(len(usable))]
    n_val = min(len(usable) - 2, max(2, int(round(val_share * len(usable)))))
    val = sorted(n for n, _ in order[:n_val])
    train = sorted(n for n, _ in order[n_val:])
    items, labels = [], []
    for n, lab in usable:
        items += texts[lab]
        labels += [n] * len(texts[lab])
    return FewShotDataset(name or "index", clf.encoder.modality, items, labels,
                          splits={"train": train, "val": val}, source=name or "")


def rebuild(path: str | os.PathLike, encoder, margin: float = 0.02, force: bool = False,
            min_queries: int = MIN_DRIFT_QUERIES, *, batch_size: int = 128, device: str | None = None) -> dict:
    """Re-embed every stored support text of the index in folder ``path`` with a new encoder and
    save the result as a new generation of the same folder (the same ``index_id`` and log).

    ``encoder``: a ``fewshot train`` checkpoint folder (served like :meth:`FewShotClassifier.from_checkpoint`:
    a protonet's metric and learned scale) or an :class:`~fewshot.encoders.Encoder` (the
    index's metric, default scale). The class order, labels, counts, texts, unknown label
    and index kind are kept; the calibrated threshold is dropped (it is a score of the old
    encoder: calibrate again).

    Drift guard, before the swap: the guard's share of the logged predictions (ids divisible
    by :data:`GUARD_EVERY`, which :func:`index_dataset` never trains on) whose true label is
    known (confirmed or corrected) and whose class is in the index are scored by the old and new
    classifiers, each held out (the texts that corrections added to the support are taken
    out of their class means first). The rebuild is refused (:class:`DriftError`, nothing
    changed) when the new accuracy is lower than the old by more than ``margin``, or when
    fewer than ``min_queries`` labelled queries exist, unless ``force``. Holds the folder
    lock from load to save. Returns ``{"old_accuracy", "new_accuracy", "n_queries",
    "swapped", "generation", "old_fingerprint", "new_fingerprint", "n_texts", "n_classes",
    "threshold_reset"}``.
    """
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin <= 1:
        raise ValueError(f"rebuild: margin must be an accuracy difference in [0, 1], got {margin!r}")
    with SupportStore.locked(path):
        old = FewShotClassifier.load(path, batch_size=batch_size, device=device)
        if not old.n_classes:
            raise ValueError(f"rebuild: the index in {path} has no classes, so there is nothing to re-embed; "
                             "create a new index with the new encoder instead (`fewshot index create "
                             "--checkpoint CKPT`)")
        require_texts(old, "rebuild", path)
        kw = dict(unknown_label=old.unknown_label, index_kind=old.index_kind, index_options=old.index_options,
                  batch_size=batch_size, device=device)
        if isinstance(encoder, Encoder):
            new = FewShotClassifier(encoder, old.metric, **kw)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # finetune/maml: served with prototypes
                new = FewShotClassifier.from_checkpoint(encoder, **kw)
        if new.encoder.modality != old.encoder.modality:
            raise ValueError(f"rebuild: the index in {path} holds {old.encoder.modality} (encoder "
                             f"{old.encoder.name!r}) but the new encoder {new.encoder.name!r} reads "
                             f"{new.encoder.modality}; give a {old.encoder.modality} checkpoint")
        support = {lab: old.book_.texts(lab) for lab in old.book_.labels}
        texts = [t for lab in old.book_.labels for t in support[lab]]
        labels = [lab for lab in old.book_.labels for _ in support[lab]]
        new.fit(texts, labels)
        queries, truth, added = _labelled_queries(old, prediction_log(path).read())
        report = {"n_queries": len(queries), "old_accuracy": None, "new_accuracy": None,
                  "old_fingerprint": old.encoder.fingerprint(), "new_fingerprint": new.encoder.fingerprint(),
                  "n_texts": len(texts), "n_classes": new.n_classes, "swapped": False, "generation": None,
                  "threshold_reset": old.threshold_ is not None}
        if queries:
            report["old_accuracy"] = held_out_accuracy(old, queries, truth, added)
            report["new_accuracy"] = held_out_accuracy(new, queries, truth, added)
        accs = (f"old accuracy {_fmt(report['old_accuracy'])}, new accuracy {_fmt(report['new_accuracy'])} "
                f"on {len(queries)} labelled logged queries (held out)")
        if not force and len(queries) < min_queries:
            raise DriftError(f"rebuild: the drift guard needs at least {min_queries} logged queries with a "
                             f"known true label (confirmed or corrected), got {len(queries)} ({accs}); confirm "
                             "or correct more logged predictions, or pass --force to rebuild unchecked", report)
        if not force and queries and report["old_accuracy"] - report["new_accuracy"] > margin:
            raise DriftError(f"rebuild: refused, the new encoder is worse: {accs}, a drop of "
                             f"{report['old_accuracy'] - report['new_accuracy']:.3f} > margin {margin}; the "
                             "index is unchanged. Train a better checkpoint, raise --margin, or pass --force",
                             report)
        new.log_corrections_ = old.log_corrections_  # the corrections the rebuilt index still holds
        new.save(path, replacing=old)  # refused if anybody wrote in between (we hold the lock)
    report.update(swapped=True, generation=new.generation_)
    return report


def held_out_accuracy(clf: FewShotClassifier, queries: list, truth: list, added: list) -> float:
    """Top-1 accuracy (no threshold) on ``queries`` with true labels ``truth``, the queries whose
    ``added`` flag is set being taken out of their true class's mean first; a class left empty
    is dropped (its queries count as wrong)."""
    z = clf.encoder.encode(queries, batch_size=clf.batch_size, device=clf.device)
    keep, protos = clf.book_.held_out_prototypes(z[np.asarray(added, dtype=bool)],
                                                 [lab for lab, a in zip(truth, added) if a])
    pred = keep[clf.scores_of(z, protos).argmax(1)]
    return float(np.mean([p == clf.book_.row(lab) for p, lab in zip(pred, truth)]))


class DriftError(ValueError):
    """:meth:`FewShotClassifier.rebuild` refused a new encoder (worse on the logged queries, or too few
    of them to tell); ``report`` holds both accuracies and the query count."""

    def __init__(self, message: str, report: dict):
        super().__init__(message)
        self.report = report


def _fmt(acc: float | None) -> str:
    return "n/a" if acc is None else f"{acc:.3f}"


def _labelled_queries(clf: FewShotClassifier, entries: list[dict]) -> tuple[list, list, list]:
    """The drift guard's logged queries (ids divisible by :data:`GUARD_EVERY`) with a known true label
    that is a class of ``clf``: (texts, labels, added), ``added[i]`` telling whether a correction put
    query i into its class's support texts (each correction accounts for one occurrence of its text)."""
    queries, truth, added = [], [], []
    left: dict = {}
    for e in entries:
        lab = e["true_label"]
        if e["id"] % GUARD_EVERY or e["feedback"] is None or lab not in clf.book_:
            continue
        in_support = False
        if e["feedback"] == "correction":
            pool = left.setdefault(lab, clf.book_.texts(lab) or [])
            if e["query"] in pool:
                pool.remove(e["query"])
                in_support = True
        queries.append(e["query"])
        truth.append(lab)
        added.append(in_support)
    return queries, truth, added


def _unreviewed(log: PredictionLog, id: int, what: str) -> dict:
    """Log entry ``id``, refused if it already got a correction or confirmation."""
    entry = log.get(id)
    if entry["feedback"] is not None:
        raise ValueError(f"{what}: prediction {id} already got a {entry['feedback']} (true label "
                         f"{entry['true_label']!r}); each logged prediction is reviewed once")
    return entry


class IndexTraining(NamedTuple):
    """What ``fewshot train --from-index`` trains on (:func:`training_data`)."""

    classifier: FewShotClassifier  # the index, loaded: its encoder is where training starts
    dataset: FewShotDataset  # the usable support texts with a train/val class split
    left_out: list  # (label, count) of the classes with too few texts for the episodes
    need: int  # the fewest texts a class needs
    record: dict  # what the checkpoint's config.json records under "from_index"


def training_data(path: str | os.PathLike, train_cfg, episodic: bool, val_share: float = 0.2) -> IndexTraining:
    """The index in ``path`` as training data for a learner (``episodic``: it trains on episodes, so every
    class needs ``train_shot + train_query`` texts too), checked against the training config ``train_cfg``
    (:class:`fewshot.config.TrainConfig`): enough validation classes for ``val_way``, enough train classes
    for ``train_way``. ValueError says which option to change."""
    t = train_cfg
    clf = FewShotClassifier.load(path)
    need = max(t.val_shot + t.val_query, t.train_shot + t.train_query if episodic else 1)
    why = f"--val-shot + --val-query = {t.val_shot + t.val_query}" + (
        f", --train-shot + --train-query = {t.train_shot + t.train_query}" if episodic else "")
    where = os.path.abspath(path)
    dataset = index_dataset(clf, val_share, seed=t.seed, min_examples=need, name=f"index:{where}",
                            log_entries=prediction_log(path).read())
    usable = set(dataset.labels)
    left_out = [(c, int(n)) for c, n in zip(clf.classes_, clf.counts_) if str(c) not in usable]
    train_classes, val_classes = dataset.split_classes("train"), dataset.split_classes("val")
    if len(val_classes) < t.val_way:
        raise ValueError(f"--val-share {val_share} of {len(dataset.classes)} usable classes (those with at least "
                         f"{need} texts: {why}) gives {len(val_classes)} validation classes, but --val-way is "
                         f"{t.val_way}; pass --val-way {len(val_classes)} or a larger --val-share")
    if episodic and len(train_classes) < t.train_way:
        raise ValueError(f"{len(train_classes)} classes are left to train on, but --train-way is {t.train_way}; "
                         f"pass --train-way {len(train_classes)} or a smaller --val-share")
    record = {"path": where, "index_id": clf.index_id_, "generation": clf.generation_, "val_share": val_share,
              "train_classes": train_classes, "val_classes": val_classes,
              "left_out": [{"label": c, "count": n} for c, n in left_out]}
    return IndexTraining(clf, dataset, left_out, need, record)
