"""The decomposed NER learner: type-agnostic BIO detection decoded under BIO's rule, span typing by support-span
prototypes, its meta-training loss, and a checkpoint that scores alike when loaded back."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fewshot.checkpoint import load_learner
from fewshot.config import TrainConfig
from fewshot.datasets import load_dataset
from fewshot.encoders import create_encoder
from fewshot.learners import create_learner
from fewshot.learners.decomposed import DecomposedConfig, bio_tags, spans_of
from fewshot.prototypes import scores
from fewshot.tag_evaluation import evaluate_tagging
from fewshot.training import Trainer


def test_spans_and_bio_tags_stop_at_each_sentence_end():
    y = torch.tensor([1, 1, 2, 0, 1, 1, 1, 0])  # sentences of 5 and 3 words: the run 1 1 at 4..6 is two spans
    assert spans_of(y, [5, 3]) == [(0, 2, 1), (2, 3, 2), (4, 5, 1), (5, 7, 1)]
    assert bio_tags(y, [5, 3]).tolist() == [1, 2, 1, 0, 1, 1, 2, 0]  # O=0 B=1 I=2; a change of type opens (B)
    assert spans_of(y, [8]) == [(0, 2, 1), (2, 3, 2), (4, 7, 1)]
    with pytest.raises(ValueError, match="8 word labels for sentences of 7 words"):
        spans_of(y, [4, 3])


def _adapted(detector_steps=60):
    """Support: two sentences, type 1 near (4, 0), type 2 near (0, 4); O words near the origin."""
    z = torch.tensor([[0.0, 0.0], [4.0, 0.0], [4.2, 0.0], [0.1, 0.0], [0.0, 4.0], [0.0, 0.2]])
    y = torch.tensor([0, 1, 1, 0, 2, 0])
    learner = create_learner("decomposed", None, DecomposedConfig(detector_steps=detector_steps, detector_lr=0.5))
    learner.adapt_features(z, y, lengths=[3, 3])
    return learner


def test_decoding_types_each_detected_span_by_its_words_mean_score():
    learner = _adapted()
    torch.testing.assert_close(learner.prototypes_, torch.tensor([[4.1, 0.0], [0.0, 4.0]]))  # one span each: its mean
    # a hand-made sentence of 5 words: detector log-probs of O/B/I, then type scores
    det = torch.log(torch.tensor([[0.1, 0.8, 0.1], [0.1, 0.2, 0.7], [0.9, 0.05, 0.05], [0.2, 0.1, 0.7],
                                  [0.1, 0.1, 0.8]]))
    types = torch.tensor([[-1.0, -3.0], [-4.0, -1.0], [0.0, 0.0], [-5.0, -1.0], [-5.0, -2.0]])
    labels = learner.decode_tags(torch.cat([det, types], 1))
    # words 0-1: one span (B I), mean type scores (-2.5, -2.0): type 2; word 2: O; words 3-4: I after O is
    # forbidden, so the best legal path opens it with B: type 2 again
    assert labels.tolist() == [2, 2, 0, 2, 2]
    only_i = torch.cat([torch.log(torch.tensor([[0.3, 0.1, 0.6]])), torch.tensor([[-1.0, -2.0]])], 1)
    assert learner.decode_tags(only_i).tolist() == [0]  # I cannot open a sentence: O (0.3) beats B (0.1)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_span_typing_is_the_nearest_prototype_of_the_span_mean(seed):
    g = torch.Generator().manual_seed(seed)
    words, protos = torch.randn(4, 6, generator=g, dtype=torch.float64), torch.randn(5, 6, generator=g,
                                                                                   dtype=torch.float64)
    mean_of_word_scores = scores(words, protos, "euclidean").mean(0)
    of_the_mean = scores(words.mean(0, keepdim=True), protos, "euclidean")[0]
    spread = ((words - words.mean(0)) ** 2).sum(1).mean()
    torch.testing.assert_close(mean_of_word_scores, of_the_mean - spread)
    assert int(mean_of_word_scores.argmax()) == int(of_the_mean.argmax())


def test_detector_steps_fit_the_head_to_the_support_words():
    tuned = _adapted(60)
    z = torch.tensor([[0.0, 4.0], [0.0, 0.0]])  # the support's one-word entity (B) and an O word
    det = tuned.tag_scores(z)[:, :3]
    assert det.argmax(1).tolist() == [1, 0]
    # every learner's label scores: log P(O), then log P(B or I) shared out by the types' softmax
    labels = tuned.logits_features(z)
    assert labels.shape == (2, 3) and torch.allclose(labels.exp().sum(1), torch.ones(2), atol=1e-6)
    torch.testing.assert_close(labels[:, 0], det[:, 0])
    torch.testing.assert_close(torch.logsumexp(labels[:, 1:], 1), torch.logsumexp(det[:, 1:], 1))
    assert torch.equal(tuned.prototypes_, _adapted(1).prototypes_)  # the prototypes do not depend on the head
    with pytest.raises(ValueError, match=r"untrained \(all zero\) and detector_steps=0.*-L detector_steps=30"):
        _adapted(0)  # a zero head left as it is would find no entity


def test_a_type_without_a_support_span_is_refused():
    learner = create_learner("decomposed", None)
    with pytest.raises(ValueError, match=r"labels \[1\] have no support word"):
        learner.adapt_features(torch.zeros(2, 2), torch.tensor([0, 2]), lengths=[2])


def test_episode_loss_is_detection_plus_span_typing(tiny_text_encoder):
    learner = create_learner("decomposed", tiny_text_encoder, DecomposedConfig(detector_steps=0))  # head as is
    learner.module.eval()
    support, query = [("a", "Paris", "b"), ("Ada", "Lovelace")], [("Paris", "Ada", "x", "Rome")]
    sy, qy = torch.tensor([0, 1, 0, 2, 2]), torch.tensor([1, 2, 0, 1])
    loss, logits = learner.episode_loss(support, sy, query, qy)
    z = [torch.from_numpy(e) for e in learner.embed_words(support + query)]
    zs, zq = torch.cat(z[:2]), z[2]
    protos = torch.stack([zs[1], zs[3:5].mean(0)])
    det = learner.module.detector(torch.cat([zs, zq]))
    bio = torch.tensor([0, 1, 0, 1, 2, 1, 1, 0, 1])
    typing = torch.nn.functional.cross_entropy(scores(zq[[0, 1, 3]], protos, "euclidean"), torch.tensor([0, 1, 0]))
    expected = torch.nn.functional.cross_entropy(det, bio) + typing
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)
    assert logits.shape == (4, 3) and torch.allclose(logits.exp().sum(1), torch.ones(4), atol=1e-5)
    loss.backward()
    assert learner.encoder.model.embeddings.word_embeddings.weight.grad.abs().sum() > 0
    assert learner.module.detector.weight.grad.abs().sum() > 0


def test_training_learns_detection_and_the_checkpoint_scores_alike(fewnerd_root, tiny_text_model_dir, tmp_path):
    ds = load_dataset("fewnerd-inter", fewnerd_root)
    torch.manual_seed(0)
    learner = create_learner("decomposed", create_encoder(str(tiny_text_model_dir)), DecomposedConfig(detector_lr=0.02))
    cfg = TrainConfig(steps=30, eval_every=30, patience=0, lr=1e-3, train_way=3, train_shot=1, val_way=3,
                      val_shot=1, val_episodes=6)
    trainer = Trainer(learner, ds, cfg, out_dir=tmp_path / "ck")
    eps = [trainer.sampler.sample(i) for i in range(8)]

    def loss() -> float:
        learner.module.eval()
        with torch.no_grad():
            return float(np.mean([trainer.wrapped("episode", *trainer.episode_inputs(ep))[0].item()
                                  for ep in eps]))

    before = loss()
    trainer.fit()
    assert loss() < 0.7 * before
    assert learner.module.detector.weight.abs().sum() > 0  # the head left its zero start
    loaded = load_learner(tmp_path / "ck")
    assert loaded.name == "decomposed" and loaded.cfg.detector_lr == 0.02  # as trained
    # a config overrides only its fields off their defaults; a dict exactly its keys, even at their defaults
    assert load_learner(tmp_path / "ck", DecomposedConfig(detector_lr=0.01)).cfg.detector_lr == 0.02
    assert load_learner(tmp_path / "ck", {"detector_lr": 0.01}).cfg.detector_lr == 0.01
    torch.testing.assert_close(loaded.module.detector.weight, learner.module.detector.weight)
    a = evaluate_tagging(learner, ds, trainer.val_episodes, progress=False)
    b = evaluate_tagging(loaded, ds, trainer.val_episodes, progress=False)
    np.testing.assert_array_equal(a.episode_counts, b.episode_counts)
    assert a.episode_counts[:, 1].sum() > 0  # it predicts entities


def test_with_detector_steps_the_head_is_fitted_on_the_support_and_judged_on_the_query(tiny_text_encoder):
    learner = create_learner("decomposed", tiny_text_encoder, DecomposedConfig(detector_steps=1, detector_lr=0.5,
                                                                               typing_weight=0.0))
    learner.module.eval()
    torch.nn.init.normal_(learner.module.detector.weight)
    support, query = [("a", "Paris", "b")], [("Rome", "x")]
    loss, _ = learner.episode_loss(support, torch.tensor([0, 1, 0]), query, torch.tensor([1, 0]))
    zs, zq = (torch.from_numpy(e) for e in learner.embed_words(support + query))
    w, b = learner.module.detector.weight.detach().clone().requires_grad_(), learner.module.detector.bias.detach()
    b = b.clone().requires_grad_()
    inner = torch.nn.functional.cross_entropy(zs @ w.T + b, torch.tensor([0, 1, 0]))  # O B O
    g_w, g_b = torch.autograd.grad(inner, (w, b))
    expected = torch.nn.functional.cross_entropy(zq @ (w - 0.5 * g_w).T + (b - 0.5 * g_b), torch.tensor([1, 0]))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)
    loss.backward()  # through the inner step: the head's initial weights learn
    assert learner.module.detector.weight.grad.abs().sum() > 0
