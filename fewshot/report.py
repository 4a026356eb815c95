"""Per-class report: precision, recall, F1 and support per class, averages, costliest confusions.

:func:`class_report` turns pooled (true, predicted) class pairs into a
:class:`ClassReport`. The numbers come from scikit-learn
(``classification_report(output_dict=True)`` and ``confusion_matrix``); this
module only chooses the label set, picks the confusion pairs that cost most
and renders the result as text, Markdown or a JSON-ready dict.

Episodic evaluation (:func:`fewshot.evaluation.evaluate`) maps every query's
local labels back to global class names and pools the pairs of all episodes
(``EvalResult.y_true`` / ``y_pred``). Pooling is sound for precision too: a
class can only be predicted in the episodes where it is one of the ``n_way``
classes, so its precision is over exactly those episodes. Since every query
counts once, the support-weighted recall equals the pooled accuracy, which is
the mean episode accuracy whenever all episodes have the same number of queries.
"""
from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

AVERAGES = ("macro avg", "weighted avg")


@dataclass(frozen=True)
class ClassRow:
    """One row of the table: a class (or an average) and its scores."""

    label: Hashable
    precision: float
    recall: float
    f1: float
    support: int

    def to_dict(self) -> dict:
        return {"label": self.label, "precision": self.precision, "recall": self.recall, "f1": self.f1,
                "support": self.support}


@dataclass(frozen=True)
class Confusion:
    """``count`` queries of class ``true`` were predicted as ``predicted``."""

    true: Hashable
    predicted: Hashable
    count: int
    share: float  # count / support of ``true``

    def to_dict(self) -> dict:
        return {"true": self.true, "predicted": self.predicted, "count": self.count, "share": self.share}


@dataclass(frozen=True)
class ClassReport:
    """The per-class table of one set of predictions; see :func:`class_report`."""

    classes: tuple[ClassRow, ...]
    averages: tuple[ClassRow, ...]  # "macro avg", "weighted avg"
    accuracy: float
    n: int
    confusions: tuple[Confusion, ...]  # costliest first

    def row(self, label: Hashable) -> ClassRow:
        """The row of class (or average) ``label``."""
        for r in self.classes + self.averages:
            if r.label == label:
                return r
        raise ValueError(f"no row {label!r} in this report; it has the classes "
                         f"{[r.label for r in self.classes[:10]]}{' ...' if len(self.classes) > 10 else ''} "
                         f"and the averages {list(AVERAGES)}")

    def to_dict(self) -> dict:
        return {
            "classes": [r.to_dict() for r in self.classes],
            "macro_avg": self.averages[0].to_dict(),
            "weighted_avg": self.averages[1].to_dict(),
            "accuracy": self.accuracy,
            "n": self.n,
            "confusions": [c.to_dict() for c in self.confusions],
        }

    def to_text(self, digits: int = 3) -> str:
        """A fixed-width table like scikit-learn's ``classification_report``, then the confusions."""
        return self._render(digits, markdown=False)

    def to_markdown(self, digits: int = 3) -> str:
        """The same table and confusions as Markdown tables."""
        return self._render(digits, markdown=True)

    def __str__(self) -> str:
        return self.to_text()

    def _render(self, digits: int, markdown: bool) -> str:
        head = ["class", "precision", "recall", "f1", "support"]
        f = f"{{:.{digits}f}}"
        body = [[str(r.label), f.format(r.precision), f.format(r.recall), f.format(r.f1), str(r.support)]
                for r in self.classes]
        acc = ["accuracy", "", "", f.format(self.accuracy), str(self.n)]
        avgs = [[str(r.label), f.format(r.precision), f.format(r.recall), f.format(r.f1), str(r.support)]
                for r in self.averages]
        conf_head = ["true", "predicted", "count", "share of true"]
        conf = [[str(c.true), str(c.predicted), str(c.count), f.format(c.share)] for c in self.confusions]
        if markdown:
            out = _markdown([head, *body, acc, *avgs])
            if conf:
                out += "\n\nCostliest confusions:\n\n" + _markdown([conf_head, *conf])
            return out
        out = _fixed([head, *body, None, acc, *avgs])
        if conf:
            out += "\n\ncostliest confusions\n" + _fixed([conf_head, *conf], left=2)
        return out


def class_report(y_true: Sequence, y_pred: Sequence, labels: Sequence | None = None,
                 top_k: int = 10) -> ClassReport:
    """Per-class precision, recall, F1 and support of predictions ``y_pred`` against ``y_true``.

    Args:
        y_true, y_pred: class labels of the same length (any hashable values of one type).
        labels: the classes of the table, in order; default: every label of ``y_true`` and
            ``y_pred``, sorted. It must include every label that occurs.
        top_k: how many confusion pairs (true != predicted) to keep, most frequent first.

    A class never predicted has precision 0; a class that never occurs in ``y_true`` (support 0)
    has recall 0 (scikit-learn's ``zero_division=0``).
    """
    from sklearn.metrics import classification_report, confusion_matrix

    y_true, y_pred = list(y_true), list(y_pred)
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} labels but y_pred has {len(y_pred)}; "
                         "pass one prediction per true label")
    if not y_true:
        raise ValueError("class_report: got no predictions; pass at least one (true, predicted) pair")
    if not isinstance(top_k, (int, np.integer)) or isinstance(top_k, bool) or top_k < 0:
        raise ValueError(f"top_k must be an int >= 0, got {top_k!r}")
    seen = set(y_true) | set(y_pred)
    if labels is None:
        labels = sorted(seen, key=lambda v: (type(v).__name__, v))
    else:
        labels = list(labels)
        missing = [v for v in seen if v not in set(labels)]
        if missing:
            raise ValueError(f"labels must include every class that occurs, but {missing[:5]} occur and are "
                             "not in labels; add them to labels or pass labels=None")
        if len(set(labels)) != len(labels):
            raise ValueError(f"labels has duplicates: {len(labels)} entries, {len(set(labels))} distinct; "
                             "list each class once")
    # scikit-learn wants labels of one kind; encode them as 0..n-1 and name the rows ourselves.
    code = {v: i for i, v in enumerate(labels)}
    t = np.fromiter((code[v] for v in y_true), dtype=np.int64, count=len(y_true))
    p = np.fromiter((code[v] for v in y_pred), dtype=np.int64, count=len(y_pred))
    ids = list(range(len(labels)))
    d = classification_report(t, p, labels=ids, output_dict=True, zero_division=0)
    classes = tuple(_row(labels[i], d[str(i)]) for i in ids)
    averages = tuple(_row(name, d[name]) for name in AVERAGES)
    cm = confusion_matrix(t, p, labels=ids)
    np.fill_diagonal(cm, 0)
    support = [r.support for r in classes]
    flat = np.argsort(-cm, axis=None, kind="stable")[: int(top_k)]
    confusions = tuple(
        Confusion(labels[i], labels[j], int(cm[i, j]), float(cm[i, j] / support[i]))
        for i, j in zip(*np.unravel_index(flat, cm.shape)) if cm[i, j] > 0
    )
    return ClassReport(classes=classes, averages=averages, accuracy=float(np.mean(t == p)), n=len(t),
                       confusions=confusions)


def _row(label, d: dict) -> ClassRow:
    return ClassRow(label, float(d["precision"]), float(d["recall"]), float(d["f1-score"]), int(d["support"]))


def _fixed(rows: list, left: int = 1) -> str:
    """Columns padded to their widest cell; the first ``left`` columns (labels) left-aligned."""
    width = [max(len(r[c]) for r in rows if r is not None) for c in range(len(next(r for r in rows if r)))]
    lines = []
    for r in rows:
        if r is None:
            lines.append("")
            continue
        lines.append("  ".join(v.ljust(w) if c < left else v.rjust(w)
                               for c, (v, w) in enumerate(zip(r, width))).rstrip())
    return "\n".join(lines)


def _markdown(rows: list) -> str:
    head, *body = rows
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    lines += ["| " + " | ".join(v.replace("|", "\\|") for v in r) + " |" for r in body]
    return "\n".join(lines)
