"""ProtoNet: the training loss and its gradients, what `trainable` unfreezes, the learned
temperature, and the frozen FAISS evaluation path left intact."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fewshot.encoders import create_encoder
from fewshot.learners import create_learner, learner_config
from fewshot.prototypes import scores

SUPPORT = ["a cat sat", "stocks fell", "rain today", "a dog ran", "bonds rose", "snow tonight"]
QUERY = ["kittens play", "markets rally", "storm coming", "puppy sleeps"]


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_episode_loss_matches_hand_computation_and_has_gradients(tiny_text_encoder, metric):
    learner = create_learner("protonet", tiny_text_encoder, {"metric": metric})
    sy, qy = torch.tensor([0, 1, 2, 0, 1, 2]), torch.tensor([0, 1, 2, 0])
    loss, logits = learner.episode_loss(SUPPORT, sy, QUERY, qy)
    assert logits.shape == (4, 3) and loss.ndim == 0
    with torch.no_grad():
        z = tiny_text_encoder.embed(SUPPORT + QUERY)
        protos = torch.stack([z[:6][sy == k].mean(0) for k in range(3)])
        t = learner.temperature
        if metric == "cosine":
            want = t * torch.nn.functional.normalize(z[6:], dim=1) @ torch.nn.functional.normalize(protos, dim=1).T
        else:
            want = -t * torch.cdist(z[6:], protos).pow(2)
    torch.testing.assert_close(logits.detach(), want, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(loss.detach(), torch.nn.functional.cross_entropy(want, qy), rtol=1e-4, atol=1e-4)
    loss.backward()
    assert learner.module.log_temperature.grad is not None
    assert all(p.grad is not None for n, p in tiny_text_encoder.named_parameters()
               if p.requires_grad and "pooler" not in n)


def _trainable_names(learner):
    return {n for n, p in learner.encoder.named_parameters() if p.requires_grad}


def test_trainable_selects_what_learns(tiny_text_model_dir):
    def make(spec):
        return create_learner("protonet", create_encoder(str(tiny_text_model_dir)), {"trainable": spec})

    full = make("full")
    assert _trainable_names(full) == {n for n, _ in full.encoder.named_parameters()}
    last = _trainable_names(make("last:1"))
    assert last and all(".layer.1." in n for n in last)
    bitfit = _trainable_names(make("bitfit"))
    assert bitfit and all(n.endswith("bias") for n in bitfit)
    lora = make("lora")
    names = _trainable_names(lora)
    assert names and all("lora_" in n for n in names)
    assert {n.split(".")[-4] for n in names} == {"query", "key", "value"}
    assert sum(p.numel() for p in lora.trainable_parameters()) < 0.2 * sum(
        p.numel() for p in lora.module.parameters())
    assert _trainable_names(make("none")) == set()
    assert [p.numel() for p in make("none").trainable_parameters()] == [1]  # the temperature


def test_trainable_on_image_encoders_and_bad_specs(tiny_image_encoder):
    learner = create_learner("protonet", tiny_image_encoder, {"trainable": "last:2"})
    assert _trainable_names(learner) and all(n.startswith(("blocks.2.", "blocks.3.")) for n in
                                             _trainable_names(learner))
    with pytest.raises(ValueError, match="needs a transformer text encoder"):
        create_learner("protonet", create_encoder("conv4", hidden=8), {"trainable": "lora"})
    with pytest.raises(ValueError, match="has only 4 blocks"):
        create_learner("protonet", create_encoder("conv4", hidden=8), {"trainable": "last:9"})
    with pytest.raises(ValueError, match=r"trainable must be one of .*got 'last:x'"):
        learner_config({"name": "protonet", "trainable": "last:x"})
    with pytest.raises(ValueError, match="unknown config key learner.'trainabel'.*Did you mean 'trainable'"):
        learner_config({"name": "protonet", "trainabel": "full"})


def test_evaluation_logits_equal_training_logits(tiny_image_encoder):
    """Per-task adaptation and the training loss score queries with the same prototypes, metric and scale."""
    learner = create_learner("protonet", tiny_image_encoder)
    assert learner.cfg.metric == "euclidean" == tiny_image_encoder.metric  # the encoder's metric
    g = torch.Generator().manual_seed(0)
    zs, ys = torch.randn(10, 8, generator=g), torch.arange(5).repeat(2)
    zq = torch.randn(12, 8, generator=g)
    learner.adapt_features(zs, ys)
    eval_logits = learner.logits_features(zq)
    protos = torch.stack([zs[ys == k].mean(0) for k in range(5)])
    train_logits = learner.temperature * -torch.cdist(zq, protos).pow(2)
    torch.testing.assert_close(eval_logits, train_logits, rtol=1e-4, atol=1e-4)
    assert torch.equal(eval_logits, learner.temperature * scores(zq, protos, "euclidean"))
    assert np.array_equal(eval_logits.argmax(1).numpy(), train_logits.argmax(1).numpy())


def test_metric_defaults_to_the_encoders(tiny_text_encoder, tiny_image_encoder):
    assert create_learner("protonet", tiny_text_encoder).cfg.metric == "cosine"
    assert create_learner("protonet", tiny_image_encoder).cfg.metric == "euclidean"
    assert create_learner("protonet", tiny_text_encoder, {"metric": "euclidean"}).cfg.metric == "euclidean"
    assert create_learner("protonet", tiny_text_encoder).temperature == pytest.approx(10.0)


def test_transductive_refinement_is_soft_kmeans_by_hand(tiny_image_encoder):
    from fewshot.prototypes import class_means, refine_with_queries

    zs = torch.tensor([[0.0, 0.0], [4.0, 0.0]])
    ys = torch.tensor([0, 1])
    zq = torch.tensor([[1.0, 0.0], [3.0, 0.0], [3.0, 0.0]])
    # one step, euclidean, scale 1: scores -d^2; query 1 (x=1): d^2 to protos 0 and 4 = 1, 9
    w = torch.softmax(-torch.tensor([[1.0, 9.0], [9.0, 1.0], [9.0, 1.0]]), dim=1)
    want0 = (zs[0] + (w[:, 0:1] * zq).sum(0)) / (1 + w[:, 0].sum())
    want1 = (zs[1] + (w[:, 1:2] * zq).sum(0)) / (1 + w[:, 1].sum())
    got = refine_with_queries(zs, ys, zq, "euclidean", 1.0, steps=1)
    torch.testing.assert_close(got, torch.stack([want0, want1]))
    torch.testing.assert_close(refine_with_queries(zs, ys, zq, "euclidean", 1.0, steps=0), class_means(zs, ys))

    # A query set drawn towards one side moves the decision: inductive and transductive differ on it.
    learner = create_learner("protonet", tiny_image_encoder, {"metric": "euclidean", "temperature": 1.0,
                                                              "transductive": 5})
    learner.adapt_features(zs, ys)
    refined = learner.logits_features(zq)
    plain = create_learner("protonet", tiny_image_encoder, {"metric": "euclidean", "temperature": 1.0})
    plain.adapt_features(zs, ys)
    assert not torch.allclose(refined, plain.logits_features(zq))
    with pytest.raises(ValueError, match="transductive must be >= 0"):
        learner_config({"name": "protonet", "transductive": -1})


def test_test_time_finetuning_adapts_a_copy_and_scores_with_it(tiny_text_encoder):
    """finetune_steps: the support loss falls, the learner's encoder is untouched, and the queries are scored
    by the fine-tuned copy's prototypes exactly as the frozen path scores the frozen encoder's."""
    before = {n: p.detach().clone() for n, p in tiny_text_encoder.named_parameters()}
    opts = {"finetune_steps": 8, "finetune_lr": 1e-2}
    learner = create_learner("protonet", tiny_text_encoder, opts)
    assert learner.adapts_encoder
    sy = [0, 1, 2, 0, 1, 2]
    learner.adapt(SUPPORT, sy)
    losses = learner.support_losses
    assert len(losses) == 8 and losses[-1] < losses[0]
    for n, p in tiny_text_encoder.named_parameters():
        assert torch.equal(p, before[n]), n
    adapted = learner._adapted
    assert any(not torch.equal(p, before[n]) for n, p in adapted.named_parameters())
    got = learner.logits(QUERY)
    zs = torch.from_numpy(adapted.encode(SUPPORT))
    zq = torch.from_numpy(adapted.encode(QUERY))
    protos = torch.stack([zs[torch.tensor(sy) == k].mean(0) for k in range(3)])
    torch.testing.assert_close(got, learner.temperature * scores(zq, protos, "cosine"), rtol=1e-4, atol=1e-4)
    frozen = create_learner("protonet", tiny_text_encoder)
    frozen.adapt(SUPPORT, sy)
    assert not torch.allclose(got, frozen.logits(QUERY))

    again = create_learner("protonet", tiny_text_encoder, opts)  # same seed, same augmentations, same result
    again.adapt(SUPPORT, sy)
    assert again.support_losses == losses
    torch.testing.assert_close(again.logits(QUERY), got)


def test_test_time_finetuning_options_are_checked(tiny_image_encoder):
    learner = create_learner("protonet", tiny_image_encoder, {"finetune_steps": 2, "finetune_trainable": "last:1"})
    imgs = [np.full((12, 12), 30 * i, dtype=np.uint8) for i in range(4)]
    learner.adapt(imgs, [0, 1, 0, 1])
    changed = {n for n, p in learner._adapted.named_parameters()
               if not torch.equal(p, dict(tiny_image_encoder.named_parameters())[n])}
    assert changed and all(n.startswith("blocks.3.") for n in changed)
    assert learner.logits(imgs).shape == (4, 2)
    assert not create_learner("protonet", tiny_image_encoder).adapts_encoder
    with pytest.raises(ValueError, match="finetune_steps must be >= 0"):
        learner_config({"name": "protonet", "finetune_steps": -1})
    with pytest.raises(ValueError, match="finetune_lr must be a finite number > 0"):
        learner_config({"name": "protonet", "finetune_lr": 0.0})
    with pytest.raises(ValueError, match="finetune_trainable must be full, last:K or bitfit.*'lora'"):
        learner_config({"name": "protonet", "finetune_trainable": "lora"})
