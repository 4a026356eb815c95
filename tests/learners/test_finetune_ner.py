"""finetune-ner: a head fitted per episode on support words separates two word clusters by hand; with the
encoder tuned (full, LoRA) the shared encoder is untouched after an episode; the evaluation and the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from fewshot.cli import main
from fewshot.learners import create_learner
from fewshot.learners.finetune import new_head
from fewshot.tag_episodes import TaggedEpisode
from fewshot.tag_evaluation import evaluate_tagging
from fewshot.tagged import TaggedDataset


def test_head_separates_two_word_clusters():
    # O words at x = -2, -1 and type words at x = 1, 2 (y = 0): a line at x = 0 separates them, so the fitted head's
    # score of the type minus that of O must grow with x, and a query is tagged by its side of x = 0
    z = torch.tensor([[-2.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    y = torch.tensor([0, 0, 1, 1])
    learner = create_learner("finetune-ner", None, {"steps": 200, "lr": 0.1})
    assert learner.adapts_encoder is False
    learner.adapt_features(z, y)
    losses = learner.support_losses
    assert losses[-1] < 0.1 * losses[0] and len(losses) <= 200
    scores = learner.logits_features(torch.tensor([[-1.5, 0.0], [1.5, 0.0], [-0.5, 3.0], [0.5, -3.0]]))
    assert scores.shape == (4, 2) and scores.argmax(1).tolist() == [0, 1, 0, 1]
    w = learner._head.weight.detach()
    assert w[1, 0] - w[0, 0] > 0  # the type's direction is +x
    # every word has y = 0, so the y weights get no gradient: AdamW only decays them, by (1 - lr * wd) a step
    init = new_head(learner.cfg, 2, 2, "cpu").weight.detach()
    decay = (1 - 0.1 * learner.cfg.weight_decay) ** len(losses)
    torch.testing.assert_close(w[:, 1], init[:, 1] * decay)


def test_evaluation_with_hand_word_embeddings_tags_every_entity():
    point = {"x": (2.0, 0.0), "y": (0.0, 2.0), "o": (-1.0, -1.0)}
    sentences = [("x1", "o1"), ("y1", "o2"), ("x2", "y2", "o3"), ("o4", "x3", "x4")]
    ds = TaggedDataset("hand", sentences, [("a", "O"), ("b", "O"), ("a", "b", "O"), ("O", "a", "a")])
    learner = create_learner("finetune-ner", None, {"steps": 200, "lr": 0.1})
    learner.embed_words = lambda s, **_: [np.asarray([point[w[0]] for w in x], dtype=np.float32) for x in s]
    episodes = [TaggedEpisode(0, ("a", "b"), np.array([0, 1]), np.array([2, 3]))]
    result = evaluate_tagging(learner, ds, episodes, progress=False)
    # query entities: a(0), b(1) in sentence 2 and a(1-2) in sentence 3, all three right
    np.testing.assert_array_equal(result.episode_counts, [[3, 3, 3]])
    assert result.n_embedded == 4


def _toy():
    sentences, tags = [], []
    for i in range(6):
        t = "ab"[i % 2]
        sentences.append(("the", f"name{i}", "said"))
        tags.append(("O", t, "O"))
    return TaggedDataset("toy", sentences, tags)


@pytest.mark.parametrize("adapt", ["full", "lora"])
def test_encoder_is_identical_before_and_after_an_episode(tiny_text_encoder, adapt):
    enc = tiny_text_encoder
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    learner = create_learner("finetune-ner", enc, {"adapt": adapt, "steps": 5, "encoder_lr": 1e-2})
    assert learner.adapts_encoder is True
    ds = _toy()
    episodes = [TaggedEpisode(0, ("a", "b"), np.array([0, 1]), np.array([2, 3])),
                TaggedEpisode(1, ("a", "b"), np.array([4, 5]), np.array([0, 1]))]
    result = evaluate_tagging(learner, ds, episodes, progress=False)
    assert result.n_episodes == 2 and result.n_embedded == 8  # each episode embeds its own 2 + 2 sentences
    assert enc.state_dict().keys() == before.keys()  # no LoRA matrices left in the shared encoder
    for k, v in enc.state_dict().items():
        assert torch.equal(v, before[k]), k
    tuned = learner._adapted.state_dict()
    changed = [k for k in before if k in tuned and not torch.equal(tuned[k], before[k])]
    if adapt == "full":
        assert changed  # the copy did train
    else:
        assert not changed and any("lora_" in k for k in tuned)  # LoRA trains its own matrices only
    alone = evaluate_tagging(create_learner("finetune-ner", enc, learner.cfg), ds, episodes[1:], progress=False)
    np.testing.assert_array_equal(alone.episode_counts, result.episode_counts[1:])  # episode 0 left no trace


def test_bad_options_and_labels_are_refused(tiny_text_encoder):
    with pytest.raises(ValueError, match="finetune-ner steps must be at least 1"):
        create_learner("finetune-ner", None, {"steps": 0})
    with pytest.raises(ValueError, match="trainable must be one of"):
        create_learner("finetune-ner", None, {"adapt": "everything"})
    learner = create_learner("finetune-ner", tiny_text_encoder, {"adapt": "full", "steps": 1})
    with pytest.raises(ValueError, match="have 3 words but 2 labels were given"):
        learner.adapt_sentences([("the", "name", "said")], torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="call adapt_features .* before scoring"):
        create_learner("finetune-ner", None).logits_features(torch.zeros(1, 2))


def test_learners_lists_its_options():
    res = CliRunner().invoke(main, ["learners"])
    line = next(x for x in res.output.splitlines() if x.startswith("finetune-ner:"))
    for option in ("head='linear'", "steps=100", "lr=0.01", "adapt='head'", "lora_r=8", "weight_decay=0.001"):
        assert option in line
    assert "pretrain" not in line and "augment" not in line  # the classification finetune's own settings


def test_run_fewnerd_with_finetune_ner(shared_data, monkeypatch, tiny_text_model_dir):
    monkeypatch.setenv("FEWSHOT_DATA", str(shared_data))
    res = CliRunner().invoke(main, ["run", "--dataset", "fewnerd-inter", "--way", "5", "--shot", "1", "--learner",
                                    "finetune-ner", "-L", "steps=20", "--episodes", "2", "--encoder",
                                    str(tiny_text_model_dir), "--json", "--quiet"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert d["learner"] == "finetune-ner" and d["episodes"] == 2 and d["way"] == 5 and d["gold"] > 0
