"""Few-shot joint episodes (issue 20 item 7, Krone et al. 2020): the sampler on a hand case, the joint prototypes
on hand-made embeddings, exact match and the miss rule counted by hand, and `fewshot run` printing the metrics."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from fewshot.cli import main
from fewshot.episodes import load_episodes
from fewshot.joint_episodes import JointEpisode, JointEpisodeSampler
from fewshot.joint_evaluation import JointEpisodeResult, joint_scores
from fewshot.learners import create_learner
from test_joint import _snips_folder

INTENTS_OF = ["a"] * 4 + ["b"] * 4 + ["c"] * 3  # ids 0-3: a, 4-7: b, 8-10: c


def test_sampler_draws_disjoint_sets_with_k_and_q_per_intent():
    sampler = JointEpisodeSampler(INTENTS_OF, n_way=2, n_shot=2, n_query=1, seed=3, intents=["a", "b"])
    for i in range(5):
        ep = sampler.sample(i)
        assert ep.intents == ("a", "b")
        assert len(ep.support) == 4 and len(ep.query) == 2
        assert not set(ep.support.tolist()) & set(ep.query.tolist())
        assert [INTENTS_OF[j] for j in ep.support] == ["a", "a", "b", "b"]
        assert [INTENTS_OF[j] for j in ep.query] == ["a", "b"]
        again = sampler.sample(i)
        assert np.array_equal(again.support, ep.support) and np.array_equal(again.query, ep.query)
    three = JointEpisodeSampler(INTENTS_OF, n_way=2, n_shot=1, n_query=1, seed=0)
    assert {three.sample(i).intents for i in range(30)} == {("a", "b"), ("a", "c"), ("b", "c")}
    with pytest.raises(ValueError, match=r"= 4 utterances per intent, but intent 'c' has 3; lower --shot"):
        JointEpisodeSampler(INTENTS_OF, n_way=2, n_shot=3, n_query=1)
    with pytest.raises(ValueError, match="--way 3 needs 3 intents but the split has 2"):
        JointEpisodeSampler(INTENTS_OF, n_way=3, n_shot=1, n_query=1, intents=["a", "b"])
    ep = sampler.sample(0)
    assert JointEpisode.from_json(json.loads(json.dumps(ep.to_json()))).to_json() == ep.to_json()


def test_joint_prototypes_on_hand_made_embeddings():
    learner = create_learner("protojoint", None)
    assert learner.cfg.intent_metric == "cosine" and learner.cfg.slot_metric == "euclidean"
    # intents: 0 points along x, 1 along y (cosine)
    z_support = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0]])
    # words: O at the origin, genre at (10, 0), artist at (0, 10); B- and I- collapse to one type
    z_words = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 0.0], [0.0, 10.0], [0.0, 10.0]])
    tags = [("O", "B-genre"), ("O", "B-artist", "I-artist")]
    learner.adapt_joint(z_support, torch.tensor([0, 0, 1]), z_words, tags)
    z_query = torch.tensor([[5.0, 0.2], [0.1, 3.0]])
    q_words = torch.tensor([[0.0, 9.0], [0.0, 11.0], [1.0, 0.0], [9.0, 1.0], [0.5, 0.5]])
    intents, out = learner.predict_joint_features(z_query, q_words, [4, 1])
    assert intents == [0, 1]
    assert out == [("B-artist", "I-artist", "O", "B-genre"), ("O",)]
    with pytest.raises(ValueError, match="3 support word embeddings but 5 tags"):
        learner.adapt_words(z_words[:3], tags)


def test_exact_match_and_the_miss_rule_by_hand():
    """The support set teaches only `genre`: query 1 is right in full (exact); query 2's gold `artist` cannot be
    predicted, so it is a miss: slot recall 1/2 and no exact match, though its intent is right."""
    learner = create_learner("protojoint", None)
    learner.adapt_joint(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1]),
                        torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 0.0]]), [("O", "B-genre"), ("O",)])
    intents, tags = learner.predict_joint_features(torch.tensor([[1.0, 0.1], [1.0, 0.2]]),
                                                   torch.tensor([[0.0, 0.0], [9.0, 0.0], [0.0, 0.0], [0.0, 9.0]]),
                                                   [2, 2])
    assert tags == [("O", "B-genre"), ("O", "O")]
    scored = joint_scores(["Play", "Play"], [["Play", "Other"][j] for j in intents],
                          [("O", "B-genre"), ("O", "B-artist")], tags)
    assert scored.exact.tolist() == [True, False]
    assert scored.sentence_counts.sum(0).tolist() == [1, 1, 2]
    row = [scored.n, int(scored.intent_correct.sum()), int(scored.exact.sum()), *scored.sentence_counts.sum(0)]
    # a second episode of two queries: one intent right, nothing exact, slots 0 correct / 1 predicted / 1 gold
    result = JointEpisodeResult(np.asarray([row, [2, 1, 0, 0, 1, 1]]), {})
    s = result.summary()
    assert s["intent_accuracy"] == 0.75 and s["exact_match"] == 0.25 and s["queries"] == 4
    assert s["slot_f1"] == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))  # 1 correct, 2 predicted, 3 gold
    assert s["exact_match_ci95_low"] <= 0.25 <= s["exact_match_ci95_high"]


def test_fewshot_run_and_episodes_make_on_joint_episodes(tmp_path, tiny_text_model_dir):
    root = _snips_folder(tmp_path / "data")
    common = ["--dataset", "snips-joint-fewshot", "--data-root", str(root), "--way", "3", "--shot", "2",
              "--query", "3", "--episodes", "4"]
    res = CliRunner().invoke(main, ["run", *common, "--encoder", str(tiny_text_model_dir), "--json", "--quiet"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert d["task"] == "joint" and d["learner"] == "protojoint" and d["episodes"] == 4
    assert d["queries"] == 4 * 3 * 3 and d["slot_gold"] == d["queries"]  # one gold slot in every tiny query
    for m in ("intent_accuracy", "slot_f1", "exact_match"):
        assert 0.0 <= d[f"{m}_ci95_low"] <= d[m] <= d[f"{m}_ci95_high"] <= 1.0
    out = tmp_path / "eps.jsonl"
    res = CliRunner().invoke(main, ["episodes", "make", *common, "--out", str(out)])
    assert res.exit_code == 0, res.output
    header, eps = load_episodes(out)
    assert header["sampler"] == "joint-intents" and len(eps) == 4
    assert set(eps[0].intents) == {"AddToPlaylist", "BookRestaurant", "SearchCreativeWork"}  # the test split
    res = CliRunner().invoke(main, ["run", "--dataset", "snips-joint-fewshot", "--data-root", str(root),
                                    "--episodes-file", str(out), "--encoder", str(tiny_text_model_dir), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "3-way 2-shot joint episodes (3 queries/intent), protojoint" in res.output and "exact match" in res.output
    res = CliRunner().invoke(main, ["run", *common[:4], "--way", "4", "--encoder", str(tiny_text_model_dir)])
    assert res.exit_code == 2 and "--way 4 needs 4 intents but the split has 3" in res.output
