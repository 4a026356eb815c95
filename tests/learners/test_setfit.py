"""SetFit's per-task recipe: SetFit's pair counts on hand cases, body tuning on a copy (the
original encoder untouched), both heads fitting the support set, and bad options refused."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fewshot.learners import create_learner, learner_config
from fewshot.learners.setfit import contrastive_pairs


def _counts(pairs: np.ndarray) -> tuple[int, int]:
    return int((pairs[:, 2] == 1).sum()), int((pairs[:, 2] == 0).sum())


def test_pair_counts_on_a_2_way_2_shot_support_set():
    y = [0, 0, 1, 1]  # pairs with replacement: 4 self + (0,1) + (2,3) positives; 4 negatives
    assert _counts(contrastive_pairs(y, "unique")) == (6, 4)
    assert _counts(contrastive_pairs(y, "oversampling")) == (6, 6)
    assert _counts(contrastive_pairs(y, "undersampling")) == (4, 4)
    assert _counts(contrastive_pairs(y, iterations=3)) == (12, 12)  # 3 x n_support of each kind
    pairs = contrastive_pairs(y)
    assert pairs[:, 2].tolist()[:4] == [1.0, 0.0, 1.0, 0.0]  # alternating, as SetFit yields them
    same = np.asarray(y)[pairs[:, 0].astype(int)] == np.asarray(y)[pairs[:, 1].astype(int)]
    np.testing.assert_array_equal(same, pairs[:, 2] == 1)
    unique = contrastive_pairs(y, "unique")
    assert len({tuple(p) for p in unique[:, :2].tolist()}) == 10  # every unordered pair once


def test_pair_counts_at_5_way_1_and_5_shot_match_setfit():
    one = contrastive_pairs(np.arange(5))  # only self-pairs are positive: 5, against 10 negatives
    assert _counts(one) == (10, 10)
    assert (one[one[:, 2] == 1, 0] == one[one[:, 2] == 1, 1]).all()
    assert _counts(contrastive_pairs(np.repeat(np.arange(5), 5))) == (250, 250)  # 75 positives, 250 negatives


def test_pair_order_is_setfits_own():
    """SetFit 1.2.0's ContrastiveDataset on labels [0, 0, 1, 1] (setfit.sampler, RandomState(42))."""
    got = contrastive_pairs([0, 0, 1, 1], "unique")[:, :2].astype(int).tolist()
    idx = np.stack(np.triu_indices(4, 0), axis=-1)[np.random.RandomState(42).permutation(10)]
    labels = np.array([0, 0, 1, 1])
    same = labels[idx[:, 0]] == labels[idx[:, 1]]
    pos, neg = idx[same].tolist(), idx[~same].tolist()
    expect = [p for k in range(max(len(pos), len(neg))) for p in (pos[k:k + 1] + neg[k:k + 1])]
    assert got == expect


def test_pairs_need_two_classes():
    with pytest.raises(ValueError, match="two or more classes"):
        contrastive_pairs([0, 0, 0])


def _state(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("head", ["logreg", "prototype"])
def test_tunes_a_copy_of_the_body_and_fits_the_support(tiny_text_encoder, head):
    x = ["book a flight to paris", "reserve a plane ticket", "what is the weather", "will it rain today"]
    y = np.array([0, 0, 1, 1])
    before = _state(tiny_text_encoder)
    learner = create_learner("setfit", tiny_text_encoder, {"head": head, "lr": 1e-3, "iterations": 5})
    assert learner.adapts_encoder is True
    learner.adapt(x, y)

    assert len(learner.support_losses) == 3  # 2 x 5 x 4 = 40 pairs, batches of 16
    tuned, original = _state(learner._adapted), _state(tiny_text_encoder)
    changed = [k for k in before if not torch.equal(tuned[k], before[k])]
    assert len(changed) > len(before) // 2, changed  # the copy's body weights moved
    assert all(torch.equal(original[k], before[k]) for k in before)  # the original is untouched
    assert learner._adapted is not tiny_text_encoder

    logits = learner.logits(x)
    assert logits.shape == (4, 2) and logits.dtype == torch.float32
    np.testing.assert_array_equal(logits.argmax(1).numpy(), y)


def test_same_seed_same_task_same_scores(tiny_text_encoder):
    x = ["book a flight", "plane ticket", "weather today", "rain tomorrow"]
    y = np.array([0, 0, 1, 1])
    runs = []
    for _ in range(2):
        learner = create_learner("setfit", tiny_text_encoder, {"lr": 1e-3})
        learner.adapt(x, y)
        runs.append(learner.logits(["flight to rome", "sunny?"]))
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=0)


def test_epochs_zero_is_the_head_on_the_frozen_encoder(tiny_text_encoder):
    learner = create_learner("setfit", tiny_text_encoder, {"epochs": 0})
    assert learner.adapts_encoder is False  # an evaluation may then cache embeddings
    z = torch.randn(6, 32, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    learner.adapt_features(z, y)
    np.testing.assert_array_equal(learner.logits_features(z).argmax(1).numpy(), y.numpy())


@pytest.mark.parametrize("option, message", [({"head": "linear"}, "head must be one of"),
                                             ({"sampling": "random"}, "sampling must be one of"),
                                             ({"batch_size": 0}, "batch_size must be at least 1"),
                                             ({"lr": 0.0}, "lr must be a finite number > 0")])
def test_bad_options_are_refused(option, message):
    with pytest.raises(ValueError, match=message):
        learner_config({"name": "setfit", **option})


def test_fewshot_run_learner_setfit_reports_like_the_others(tiny_text_model_dir, tmp_path):
    from click.testing import CliRunner

    from fewshot.cli import main

    runner = CliRunner()
    args = ["run", "--learner", "setfit", "--encoder", str(tiny_text_model_dir), "--way", "2", "--shot", "2",
            "--query", "2", "--episodes", "2", "--json", "--quiet"]
    res = runner.invoke(main, args + ["-L", "iterations=1", "-L", "head=prototype", "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert (d["learner"], d["way"], d["shot"], d["episodes"]) == ("setfit", 2, 2, 2)
    assert 0 <= d["accuracy_mean"] <= 1
    cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    assert (cfg["learner"]["name"], cfg["learner"]["iterations"], cfg["learner"]["head"]) == ("setfit", 1, "prototype")

    bad = runner.invoke(main, args + ["-L", "head=linear", "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "head must be one of" in bad.output
    assert not (tmp_path / "bad").exists()
