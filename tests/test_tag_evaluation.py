"""Span F1: hand-computed counts, agreement with seqeval, the bootstrap interval, and a whole
evaluation with word features chosen by hand."""
from __future__ import annotations

import numpy as np
import pytest
from fewshot.learners import create_learner
from fewshot.tag_episodes import TaggedEpisode
from fewshot.tag_evaluation import (
    bootstrap_f1,
    bootstrap_mean_f1,
    evaluate_support_sets,
    evaluate_tagging,
    prf,
    span_counts,
)
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


POINT = {"x": (1.0, 0.0), "y": (0.0, 1.0), "o": (0.0, 0.0), "m": (0.55, 0.0)}  # m: between O and a, nearer a


def hand_learner(name: str, **cfg):
    learner = create_learner(name, None, cfg)
    learner.embed_words = lambda s, **_: [np.asarray([POINT[w[0]] for w in x], dtype=np.float32) for x in s]
    return learner


def test_support_sets_each_tag_the_whole_test_set():
    test = TaggedDataset("test", [("x1", "o1"), ("o2", "y1", "m1")], [("a", "O"), ("O", "b", "O")],
                         splits={"test": ["a", "b"]})
    good = TaggedDataset("s0", [("x2", "o3", "y2")], [("a", "O", "b")])
    near = TaggedDataset("s1", [("m2", "o4", "y3")], [("a", "O", "b")])
    result = evaluate_support_sets(hand_learner("nnshot"), [good, near], test, progress=False)
    # set 0: x1 -> a, y1 -> b right; m1 (0.55, 0) is nearer x2 (1, 0) than o3 (0, 0): a wrong a -> [2, 3, 2]
    # set 1: its "a" word is m2 (0.55, 0): x1 and m1 are nearest it -> a(0) right, a(2) wrong; b right -> [2, 3, 2]
    np.testing.assert_array_equal(result.set_counts, [[2, 3, 2], [2, 3, 2]])
    s = result.summary()
    assert s["n_sets"] == 2 and s["f1_mean"] == pytest.approx(0.8) and s["f1_std"] == 0.0
    assert s["f1_ci95_low"] == s["f1_ci95_high"] == pytest.approx(0.8) and s["sets"][1]["name"] == "s1"
    assert result.n_embedded == 4  # 2 test sentences + 1 per support set, each once
    lacking = TaggedDataset("s2", [("x3", "o5")], [("a", "O")])
    with pytest.raises(ValueError, match=r"support set 's2' has no entity of test type\(s\) \['b'\]"):
        evaluate_support_sets(hand_learner("nnshot"), [lacking], test, progress=False)


def test_structshot_viterbi_drops_an_entity_nnshot_tags_alone():
    from fewshot.transitions import AbstractTransitions

    ds = TaggedDataset("hand", [("x1", "o1", "o2"), ("o3", "m1", "o4")], [("a", "O", "O"), ("O", "a", "O")],
                       splits={"train": ["a"]})
    episodes = [TaggedEpisode(0, ("a",), np.array([0]), np.array([1]))]
    nn = evaluate_tagging(hand_learner("nnshot"), ds, episodes, progress=False)
    # m1 (0.55, 0): squared distance 0.2025 to x1, 0.3025 to the O words: nnshot tags it a -> [1, 1, 1]
    np.testing.assert_array_equal(nn.episode_counts, [[1, 1, 1]])
    st = hand_learner("structshot", temperature=1.0)
    rare = {"start_o": 0.99, "start_entity": 0.01, "o_o": 0.98, "o_entity": 0.01, "o_end": 0.01, "entity_o": 0.5,
            "entity_same": 0.4, "entity_other": 0.05, "entity_end": 0.05}
    st.set_transitions(AbstractTransitions(**rare, counts={}, n_sentences=0))
    # emissions differ by 0.1 in a's favour; O -> a -> O costs log(0.01 * 0.5 / 0.98) ~ -5.3: all O -> [0, 0, 1]
    np.testing.assert_array_equal(evaluate_tagging(st, ds, episodes, progress=False).episode_counts, [[0, 0, 1]])
    estimated = hand_learner("structshot")
    evaluate_tagging(estimated, ds, episodes, progress=False)  # prepare_tagging: counted on the train type's tags
    assert estimated.transitions_.n_sentences == 2 and estimated.transitions_.counts["o_entity"] == 1
    with pytest.raises(ValueError, match=r"has no train split of types"):
        evaluate_tagging(hand_learner("structshot"), TaggedDataset("t", ds.sentences, ds.tags), episodes,
                         progress=False)


def test_bootstrap_mean_f1_brackets_the_mean_over_groups():
    groups = [np.array([[1, 2, 2], [3, 3, 4], [0, 1, 2]]), np.array([[2, 2, 2], [1, 3, 1]])]
    low, high = bootstrap_mean_f1(groups)
    mean = np.mean([prf(g.sum(0))[2] for g in groups])
    assert low <= mean <= high and (low, high) == bootstrap_mean_f1(groups)
    assert np.isnan(bootstrap_mean_f1([groups[0][:1]])[0])


def _count_forward_passes(encoder, run):
    """``run()``'s result and what ``encoder``'s model was given during it: forward calls, sentences, tokens."""
    seen = {"calls": 0, "sentences": 0, "tokens": 0}

    def count(module, args, kwargs):
        seen["calls"] += 1
        seen["sentences"] += int(kwargs["attention_mask"].shape[0])
        seen["tokens"] += int(kwargs["attention_mask"].sum())

    handle = encoder.model.register_forward_pre_hook(count, with_kwargs=True)
    try:
        return run(), seen
    finally:
        handle.remove()


def _shared_sentence_episodes():
    """6 sentences and 3 episodes of 4 of them each (episodes 0 and 1 the same 4, swapped)."""
    sentences = [("the", f"name{i}", "said", "so") for i in range(6)]
    ds = TaggedDataset("toy", sentences, [("O", "ab"[i % 2], "O", "O") for i in range(6)])
    episodes = [TaggedEpisode(0, ("a", "b"), np.array([0, 1]), np.array([2, 3])),
                TaggedEpisode(1, ("a", "b"), np.array([2, 3]), np.array([0, 1])),
                TaggedEpisode(2, ("a", "b"), np.array([4, 1]), np.array([2, 5]))]
    return ds, episodes


def test_a_frozen_encoder_embeds_each_sentence_once_per_run(tiny_text_encoder):
    """Episodes share sentences, scored in chunks of one episode: the encoder still sees each distinct sentence once
    (the run's embedding cache outlives a chunk), its tokens the one-pass floor."""
    ds, episodes = _shared_sentence_episodes()
    result, seen = _count_forward_passes(tiny_text_encoder, lambda: evaluate_tagging(
        create_learner("protobert", tiny_text_encoder), ds, episodes, chunk=1, progress=False))
    floor = sum(len(tiny_text_encoder.tokenizer(list(s), is_split_into_words=True)["input_ids"]) for s in ds.sentences)
    assert result.n_episodes == 3 and result.n_embedded == 6  # 4 + 0 + 2 new sentences: each once
    assert seen == {"calls": 2, "sentences": 6, "tokens": floor}  # chunk 2 needs none: no forward pass


def test_no_cache_embeds_every_episode_afresh_with_the_same_counts(tiny_text_encoder):
    """``cache=False`` (``fewshot run --no-cache``): each episode's 4 sentences go through the encoder again, in one
    forward pass per episode, and the span counts are those of the cached run."""
    ds, episodes = _shared_sentence_episodes()
    cached = evaluate_tagging(create_learner("protobert", tiny_text_encoder), ds, episodes, progress=False)
    result, seen = _count_forward_passes(tiny_text_encoder, lambda: evaluate_tagging(
        create_learner("protobert", tiny_text_encoder), ds, episodes, progress=False, cache=False))
    tokens = {i: len(tiny_text_encoder.tokenizer(list(s), is_split_into_words=True)["input_ids"])
              for i, s in enumerate(ds.sentences)}
    per_episode = sum(tokens[int(i)] for ep in episodes for i in np.concatenate([ep.support, ep.query]))
    assert result.n_embedded == 12 and cached.n_embedded == 6
    assert seen == {"calls": 3, "sentences": 12, "tokens": per_episode}
    np.testing.assert_array_equal(result.episode_counts, cached.episode_counts)

def test_type_names_join_the_support_set_as_sentences_of_their_own():
    """``type_names=True`` scores as if each type's name were one more support sentence of the dataset, every word
    tagged with the type; and by hand: the name moves the type's prototype."""
    point = {**POINT, "far": (0.0, 3.0)}  # the name of type "far" embeds to (0, 3)
    learner = create_learner("protobert", None)
    learner.embed_words = lambda s, **_: [np.asarray([point[w] if w in point else point[w[0]] for w in x], dtype=np.float32)
                                          for x in s]
    sentences = [("o1", "x1"), ("m2", "o3"), ("y1", "o4"), ("o5", "x2")]
    tags = [("O", "far"), ("far", "O"), ("O", "O"), ("O", "far")]
    ds = TaggedDataset("names", sentences, tags)
    episodes = [TaggedEpisode(0, ("far",), np.array([0]), np.array([1])),
                TaggedEpisode(1, ("far",), np.array([3]), np.array([1, 2]))]
    named = evaluate_tagging(learner, ds, episodes, progress=False, type_names=True)
    # the same as with the name sentence ("far",) appended to the dataset and to each support set
    ds2 = TaggedDataset("names2", sentences + [("far",)], tags + [("far",)])
    episodes2 = [TaggedEpisode(e.index, e.types, np.append(e.support, 4), e.query) for e in episodes]
    plain = evaluate_tagging(learner, ds2, episodes2, progress=False)
    np.testing.assert_array_equal(named.episode_counts, plain.episode_counts)
    # by hand, episode 0: far's prototype is x1 (1, 0) alone; the query word m2 (0.55, 0) is nearer it (0.2025)
    # than O's (0, 0) (0.3025): tagged far, right. With the name, far's prototype is the mean of (1, 0) and
    # (0, 3), (0.5, 1.5), 2.2525 away: m2 is O, the span missed.
    without = evaluate_tagging(learner, ds, episodes[:1], progress=False)
    np.testing.assert_array_equal(without.episode_counts, [[1, 1, 1]])
    np.testing.assert_array_equal(named.episode_counts[:1], [[0, 0, 1]])
