"""Open-set calibration: the top-1 score threshold that keeps accepted predictions precise.

:func:`choose_threshold` is the rule :meth:`fewshot.support.FewShotClassifier.calibrate` applies to
held-out examples: among thresholds whose accepted predictions (score >= threshold) have precision
>= ``target_precision`` (an out-of-scope example accepted counts as an error), the lowest, which
keeps the most in-scope answers.
"""
from __future__ import annotations

import numpy as np

from .checks import plain


def calibrate(clf, z: np.ndarray, y, target_precision) -> dict:
    """The calibration record of classifier ``clf`` on held-out embeddings ``z`` with labels ``y``: a class
    for in-scope examples, None (or ``clf.unknown_label``) for out-of-scope ones."""
    target_precision = check_target_precision(target_precision)
    if isinstance(y, (str, bytes)):
        raise TypeError("calibrate: expected one label per item (a list), got a single string")
    raw = [plain(v) for v in y]
    if len(raw) != len(z):
        raise ValueError(f"calibrate: got {len(z)} items but {len(raw)} labels; give exactly one per item")
    oos = np.array([v is None or v == clf.unknown_label for v in raw])
    unknown = list({repr(v): v for v, o in zip(raw, oos) if not o and v not in clf.book_}.values())
    if unknown:
        raise ValueError(f"calibrate: labels {unknown[:5]!r} are not classes of this classifier; label "
                         f"out-of-scope examples None (or {clf.unknown_label!r}) and in-scope ones with a class")
    if oos.all():
        raise ValueError("calibrate: every example is out of scope; include in-scope examples with their class")
    ranking = clf.rank_embeddings(z, 1)
    correct = np.array([not o and np.isfinite(s) and top[0] == v
                        for v, o, top, s in zip(raw, oos, ranking.labels, ranking.scores[:, 0])])
    return choose_threshold(ranking.scores[:, 0], correct, oos, target_precision)


def check_target_precision(target_precision) -> float:
    if isinstance(target_precision, bool) or not isinstance(target_precision, (int, float)) or \
            not 0 < target_precision <= 1:
        raise ValueError(f"calibrate: target_precision must be in (0, 1], got {target_precision!r}")
    return float(target_precision)


def choose_threshold(scores: np.ndarray, correct: np.ndarray, out_of_scope: np.ndarray,
                     target_precision: float) -> dict:
    """The calibration record of the chosen threshold.

    ``scores`` (n,): each example's top-1 score (-inf where the search found no class);
    ``correct`` (n,): its top-1 class is its true class; ``out_of_scope`` (n,): it has no class.
    Returns ``{"target_precision", "threshold", "precision", "in_scope_coverage",
    "in_scope_accuracy", "out_of_scope_recall", "n_in_scope", "n_out_of_scope"}``; ValueError when
    no threshold reaches the target.
    """
    oos = np.asarray(out_of_scope, dtype=bool)
    correct = np.asarray(correct, dtype=bool)
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
    return {
        "target_precision": float(target_precision), "threshold": threshold,
        "precision": float(precision[i]),
        "in_scope_coverage": float(accepted[~oos].mean()),
        "in_scope_accuracy": float((correct & accepted)[~oos].mean()),
        "out_of_scope_recall": float((~accepted[oos]).mean()) if oos.any() else None,
        "n_in_scope": int((~oos).sum()), "n_out_of_scope": int(oos.sum()),
    }
