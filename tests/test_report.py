"""Per-class report: a hand-computed table, and episodic pooling of local labels back to class names."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fewshot.data import FewShotDataset
from fewshot.episodes import Episode
from fewshot.evaluation import evaluate
from fewshot.report import class_report


def test_class_report_by_hand():
    # true a a a b b c c c c ; pred a a b b c c c c a
    y_true = list("aaabbcccc")
    y_pred = list("aabbcccca")
    r = class_report(y_true, y_pred)
    # a: tp 2, predicted 3 (2 a + 1 c), support 3 -> p 2/3, r 2/3
    # b: tp 1, predicted 2 (a, b), support 2 -> p 1/2, r 1/2
    # c: tp 3, predicted 4 (b + 3 c), support 4 -> p 3/4, r 3/4
    want = {"a": (2 / 3, 2 / 3, 3), "b": (1 / 2, 1 / 2, 2), "c": (3 / 4, 3 / 4, 4)}
    assert [row.label for row in r.classes] == ["a", "b", "c"]
    for label, (p, rec, n) in want.items():
        row = r.row(label)
        assert row.precision == pytest.approx(p) and row.recall == pytest.approx(rec)
        assert row.f1 == pytest.approx(2 * p * rec / (p + rec)) and row.support == n
    assert r.accuracy == pytest.approx(6 / 9) and r.n == 9
    macro = r.row("macro avg")
    assert macro.precision == pytest.approx((2 / 3 + 1 / 2 + 3 / 4) / 3) and macro.support == 9
    weighted = r.row("weighted avg")
    assert weighted.recall == pytest.approx(r.accuracy)  # support-weighted recall is accuracy
    assert weighted.precision == pytest.approx((3 * 2 / 3 + 2 * 1 / 2 + 4 * 3 / 4) / 9)
    # three confusions of one query each, kept in (true, predicted) label order on ties
    assert [(c.true, c.predicted, c.count) for c in r.confusions] == [("a", "b", 1), ("b", "c", 1), ("c", "a", 1)]
    assert r.confusions[2].share == pytest.approx(1 / 4)
    assert [(c.true, c.predicted) for c in class_report(y_true, y_pred, top_k=1).confusions] == [("a", "b")]


def test_class_report_counts_rank_confusions_and_unseen_classes():
    r = class_report(["x", "x", "x", "y"], ["y", "y", "z", "y"], labels=["x", "y", "z", "w"])
    assert [row.label for row in r.classes] == ["x", "y", "z", "w"]
    assert r.row("x").recall == 0 and r.row("x").precision == 0  # never predicted: zero_division=0
    assert r.row("y").precision == pytest.approx(1 / 3) and r.row("y").recall == 1
    assert r.row("w").support == 0 and r.row("w").f1 == 0
    assert [(c.true, c.predicted, c.count) for c in r.confusions] == [("x", "y", 2), ("x", "z", 1)]
    assert r.confusions[0].share == pytest.approx(2 / 3)


def test_class_report_renders_every_row():
    r = class_report(list("aab"), list("abb"))
    text, md = r.to_text(), r.to_markdown()
    for out in (text, md):
        assert "macro avg" in out and "weighted avg" in out and "accuracy" in out
    lines = text.splitlines()
    assert lines[0].split() == ["class", "precision", "recall", "f1", "support"]
    assert lines[1].split() == ["a", "1.000", "0.500", "0.667", "2"]
    assert len(lines[1]) == len(lines[0])  # numbers right-aligned under their headers
    assert lines[-1].split() == ["a", "b", "1", "0.500"]
    assert "| b | 0.500 | 1.000 | 0.667 | 1 |" in md
    assert "| a | b | 1 | 0.500 |" in md
    d = r.to_dict()
    assert d["classes"][0] == {"label": "a", "precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3),
                               "support": 2}
    assert d["confusions"] == [{"true": "a", "predicted": "b", "count": 1, "share": 0.5}]


@pytest.mark.parametrize("args, message", [
    ((["a"], ["a", "b"]), "y_true has 1 labels but y_pred has 2"),
    (([], []), "got no predictions"),
    ((["a", "b"], ["a", "c"], ["a", "b"]), r"\['c'\] occur and are not in labels"),
    ((["a"], ["a"], ["a", "a"]), "labels has duplicates"),
])
def test_class_report_refuses_bad_input(args, message):
    with pytest.raises(ValueError, match=message):
        class_report(*args)


class ArrowLearner:
    """A stub learner: item "t->g" is a query of class t that it predicts as class g.

    Support items "c->c" tell it which local label class c has in the episode.
    """

    adapts_encoder = True

    def adapt(self, items, labels):
        self.local = {item.split("->")[1]: int(y) for item, y in zip(items, labels)}

    def logits(self, items):
        out = torch.zeros(len(items), len(self.local))
        for i, item in enumerate(items):
            out[i, self.local[item.split("->")[1]]] = 1.0
        return out


def _episode(index, classes, support, query, query_labels):
    return Episode(index, tuple(classes), np.asarray(support), np.arange(len(support)), np.asarray(query),
                   np.asarray(query_labels))


def test_episodes_pool_global_class_names():
    items = ["a->a", "b->b", "c->c", "a->a", "a->b", "b->b", "c->a", "c->c", "b->c"]
    ds = FewShotDataset("arrows", "text", items, [x.split("->")[0] for x in items])
    episodes = [  # class c is local label 0 in episode 1 and 1 in episode 2: names, not local ids, are pooled
        _episode(0, ["a", "b"], [0, 1], [3, 4, 5], [0, 0, 1]),  # a->a ok, a->b wrong, b->b ok
        _episode(1, ["c", "a"], [2, 0], [6, 7, 3], [0, 0, 1]),  # c->a wrong, c->c ok, a->a ok
        _episode(2, ["b", "c"], [1, 2], [8, 7, 7], [0, 1, 1]),  # b->c wrong, c->c ok, c->c ok
    ]
    res = evaluate(ArrowLearner(), ds, episodes, cache=False, progress=False, predictions=True)
    np.testing.assert_allclose(res.accuracies, [2 / 3, 2 / 3, 2 / 3])
    assert list(res.y_true) == ["a", "a", "b", "c", "c", "a", "b", "c", "c"]
    assert list(res.y_pred) == ["a", "b", "b", "a", "c", "a", "c", "c", "c"]
    r = res.class_report()
    # recall: a 2/3 (one a->b), b 1/2 (one b->c), c 3/4 (one c->a)
    assert [row.recall for row in r.classes] == pytest.approx([2 / 3, 1 / 2, 3 / 4])
    # precision: predicted a 3 times (1 wrong), b twice (1 wrong), c 4 times (1 wrong)
    assert [row.precision for row in r.classes] == pytest.approx([2 / 3, 1 / 2, 3 / 4])
    assert [row.support for row in r.classes] == [3, 2, 4]
    assert r.row("weighted avg").recall == pytest.approx(res.mean)


def test_predictions_are_kept_only_when_asked():
    """Per-query predictions grow with the number of episodes, so evaluate keeps them only on request."""
    items = ["a->a", "b->b", "a->a", "b->b"]
    ds = FewShotDataset("arrows", "text", items, [x.split("->")[0] for x in items])
    res = evaluate(ArrowLearner(), ds, [_episode(0, ["a", "b"], [0, 1], [2, 3], [0, 1])], cache=False,
                   progress=False)
    assert len(res.y_true) == 0
    with pytest.raises(ValueError, match=r"predictions=True"):
        res.class_report()
