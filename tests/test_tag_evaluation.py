"""Span F1: hand-computed counts, agreement with seqeval, the bootstrap interval, and a whole
evaluation with word features chosen by hand."""
from __future__ import annotations

import numpy as np
import pytest
from fewshot.learners import create_learner
from fewshot.tag_episodes import TaggedEpisode
from fewshot.tag_evaluation import bootstrap_f1, evaluate_tagging, prf, span_counts
from fewshot.tagged import TaggedDataset


def test_span_counts_by_hand():
    gold = [("per", "per", "O", "loc"), ("O", "org", "org")]
    pred = [("per", "per", "O", "per"), ("O", "org", "O")]
    counts = span_counts(gold, pred)
    # sentence 1: per(0-1) right, per(3) wrong, loc(3) missed; sentence 2: org(1) wrong span, org(1-2) missed
    np.testing.assert_array_equal(counts["per"], [1, 2, 1])
    np.testing.assert_array_equal(counts["loc"], [0, 0, 1])
    np.testing.assert_array_equal(counts["org"], [0, 1, 1])
    total = sum(counts.values())
    p, r, f = prf(total)
    assert (p, r) == (1 / 3, 1 / 3) and f == pytest.approx(1 / 3)


def test_span_f1_counts_the_same_as_seqeval_on_io_tags():
    from seqeval.metrics import f1_score, precision_score, recall_score

    rng = np.random.default_rng(0)
    labels = ["O", "O", "O", "person-actor", "location-other"]
    gold = [tuple(labels[j] for j in rng.integers(0, 5, size=int(rng.integers(1, 12)))) for _ in range(200)]
    pred = [tuple(t if rng.random() < 0.7 else labels[int(rng.integers(0, 5))] for t in g) for g in gold]
    p, r, f = prf(sum(span_counts(gold, pred).values()))
    io = [[t if t == "O" else "I-" + t for t in s] for s in gold], [[t if t == "O" else "I-" + t for t in s]
                                                                     for s in pred]
    assert p == pytest.approx(precision_score(*io)) and r == pytest.approx(recall_score(*io))
    assert f == pytest.approx(f1_score(*io))


def test_bootstrap_interval_contains_the_pooled_f1_and_is_seeded():
    counts = np.array([[1, 2, 2], [3, 3, 4], [0, 1, 2], [2, 2, 2]])
    low, high = bootstrap_f1(counts)
    f1 = prf(counts.sum(0))[2]
    assert low <= f1 <= high and (low, high) == bootstrap_f1(counts)
    assert np.isnan(bootstrap_f1(counts[:1])[0])


def test_evaluation_sums_span_counts_over_episodes():
    # words embed to 2-d points chosen by hand: "x*" near (1, 0) are type a, "y*" near (0, 1) type b, rest O at 0
    sentences = [("x1", "o1"), ("y1", "o2"), ("x2", "y2", "o3"), ("o4", "x3", "x4")]
    tags = [("a", "O"), ("b", "O"), ("a", "b", "O"), ("O", "a", "a")]
    ds = TaggedDataset("hand", sentences, tags)
    point = {"x": (1.0, 0.0), "y": (0.0, 1.0), "o": (0.0, 0.0)}
    learner = create_learner("nnshot", None)
    learner.embed_words = lambda s, **_: [np.asarray([point[w[0]] for w in x], dtype=np.float32) for x in s]
    episodes = [TaggedEpisode(0, ("a", "b"), np.array([0, 1]), np.array([2, 3])),
                TaggedEpisode(1, ("b",), np.array([1]), np.array([2]))]
    result = evaluate_tagging(learner, ds, episodes, progress=False)
    # episode 0: gold a(0), b(1) in sentence 2 and a(1-2) in sentence 3: all predicted right -> [3, 3, 3]
    # episode 1: type b only; "x2" (1, 0) is nearer the support's "o2" (0, 0) than "y1" (0, 1), so it is O,
    #            as its gold tag is within this episode (a is not one of its types) -> [1, 1, 1]
    np.testing.assert_array_equal(result.episode_counts, [[3, 3, 3], [1, 1, 1]])
    assert result.f1 == 1.0 and result.per_type()["a"]["gold"] == 2 and result.n_embedded == 4
    classifier = type("Classifier", (), {"name": "protonet", "tasks": ("classify",)})()
    with pytest.raises(ValueError, match="does not tag words"):
        evaluate_tagging(classifier, ds, episodes, progress=False)
