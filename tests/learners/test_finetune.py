"""FineTune (Chen et al. 2019): head training lowers the support loss, beats chance on real data,
the cosine head, encoder adaptation on a copy, support augmentation and supervised pretraining."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fewshot.config import TrainConfig
from fewshot.data import FewShotDataset
from fewshot.datasets import load_dataset
from fewshot.encoders import create_encoder
from fewshot.episodes import EpisodeSampler
from fewshot.evaluation import evaluate
from fewshot.learners import create_learner, learner_config
from fewshot.training import Trainer


@pytest.mark.parametrize("head", ["linear", "cosine"])
def test_head_training_reduces_support_loss_and_fits_the_support(head):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(10, 16, generator=g)
    y = torch.arange(5).repeat(2)
    learner = create_learner("finetune", create_encoder("conv4", hidden=8), {"head": head, "steps": 200})
    assert learner.adapts_encoder is False
    learner.adapt_features(z, y)
    losses = learner.support_losses
    assert losses[-1] < 0.5 * losses[0]
    assert len(losses) <= 200
    assert (learner.logits_features(z).argmax(1) == y).all()


def test_early_stopping_on_the_support_loss():
    z = torch.zeros(4, 8)  # nothing to learn beyond the bias: the loss plateaus
    learner = create_learner("finetune", create_encoder("conv4", hidden=8),
                             {"steps": 500, "patience": 5, "min_delta": 0.5})
    learner.adapt_features(z, torch.tensor([0, 1, 0, 1]))
    assert len(learner.support_losses) < 20


def test_finetune_on_clinc150_with_minilm_beats_chance(shared_data, minilm):
    """Head-only fine-tuning on frozen MiniLM features: 5-way 1-shot CLINC150 test classes."""
    data = load_dataset("clinc150", shared_data)
    episodes = list(EpisodeSampler(data.labels, 5, 1, 5, seed=0, classes=data.split_classes("test")).episodes(40))
    learner = create_learner("finetune", minilm, {"steps": 100})
    result = evaluate(learner, data, episodes, progress=False)
    assert result.n_embedded <= 40 * 30  # the feature path: every example embedded once
    assert result.mean >= 0.80, result.mean  # chance is 0.20; frozen prototypes reach ~0.95 here


def test_encoder_adaptation_works_on_a_copy(tiny_text_encoder):
    learner = create_learner("finetune", tiny_text_encoder, {"adapt": "last:1", "steps": 5, "encoder_lr": 1e-2})
    assert learner.adapts_encoder is True
    before = {k: v.clone() for k, v in tiny_text_encoder.state_dict().items()}
    learner.adapt(["a cat", "stocks fell", "a dog", "bonds rose"], [0, 1, 0, 1])
    assert learner.logits(["kitten", "markets"]).shape == (2, 2)
    for k, v in tiny_text_encoder.state_dict().items():
        assert torch.equal(v, before[k]), k  # the shared encoder is untouched
    changed = [k for k, v in learner._adapted.state_dict().items() if not torch.equal(v, before[k])]
    assert changed and all(".layer.1." in k for k in changed)


def test_support_augmentation_adds_copies(tiny_text_encoder):
    learner = create_learner("finetune", tiny_text_encoder, {"augment": 2, "steps": 3})
    assert learner.adapts_encoder is True  # augmented copies need the raw items
    learner.adapt(["a small cat sat here", "the stock market fell sharply"], [0, 1])
    assert learner.logits(["kitten"]).shape == (1, 2)


def test_supervised_pretraining_lowers_the_training_loss(tiny_text_encoder):
    """Plain batches over the train classes through the Trainer (train_mode "supervised")."""
    texts = [f"{w} item {i}" for i in range(30) for w in ("cat", "dog", "fish", "bird")]
    labels = [w for i in range(30) for w in ("cat", "dog", "fish", "bird")]
    data = FewShotDataset("toy", "text", texts, labels, splits={"train": ["cat", "dog"], "val": ["fish", "bird"]})
    learner = create_learner("finetune", tiny_text_encoder, {"steps": 5})
    trainer = Trainer(learner, data, TrainConfig(steps=30, eval_every=30, lr=1e-3, head_lr=1e-2, batch_size=8,
                                                 val_way=2, val_query=3, val_episodes=2))
    assert learner.module.base_head.out_features == 2
    losses = [trainer._train_step(s)[0] for s in range(30)]
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5]), losses


def test_supervised_contrastive_loss_matches_its_definition():
    """SupCon's L_out (Khosla et al. 2020) written out anchor by anchor; an anchor with no positive is left out,
    and embeddings that cluster by class score lower than the same embeddings with shuffled labels."""
    from fewshot.learners.finetune import supervised_contrastive_loss

    g = torch.Generator().manual_seed(0)
    z = torch.randn(7, 5, generator=g)
    y = torch.tensor([0, 1, 0, 2, 1, 0, 3])  # classes 2 and 3 have one example each: not anchors
    zn = torch.nn.functional.normalize(z, dim=1)
    terms = []
    for i in range(7):
        others = [j for j in range(7) if j != i]
        pos = [j for j in others if y[j] == y[i]]
        if not pos:
            continue
        denom = torch.logsumexp(torch.stack([zn[i] @ zn[j] / 0.5 for j in others]), 0)
        terms.append(torch.stack([-(zn[i] @ zn[p] / 0.5 - denom) for p in pos]).mean())
    expected = torch.stack(terms).mean()
    torch.testing.assert_close(supervised_contrastive_loss(z, y, 0.5), expected)
    centres = torch.eye(4) * 3
    clustered = centres[y] + 0.1 * torch.randn(7, 4, generator=g)
    shuffled = y[torch.tensor([1, 0, 3, 2, 5, 4, 6])]
    assert supervised_contrastive_loss(clustered, y, 0.1) < supervised_contrastive_loss(clustered, shuffled, 0.1)
    with pytest.raises(ValueError, match="raise --batch-size"):
        supervised_contrastive_loss(z[:3], torch.tensor([0, 1, 2]), 0.1)


def test_contrastive_pretraining_needs_no_head_and_separates_the_train_classes(tiny_text_encoder):
    """pretrain = "contrastive": no base head (none in the checkpoint's meta), and the batches' contrastive
    loss falls as the encoder learns the train classes."""
    texts = [f"{w} item {i}" for i in range(30) for w in ("cat", "dog", "fish", "bird")]
    labels = [w for i in range(30) for w in ("cat", "dog", "fish", "bird")]
    data = FewShotDataset("toy", "text", texts, labels, splits={"train": ["cat", "dog", "fish"], "val": ["bird"]})
    learner = create_learner("finetune", tiny_text_encoder, {"steps": 5, "pretrain": "contrastive"})
    trainer = Trainer(learner, data, TrainConfig(steps=30, eval_every=30, lr=1e-3, batch_size=12,
                                                 include_val=True))
    assert learner.module.base_head is None and learner.checkpoint_meta() == {"n_base_classes": None}
    losses = [float(trainer._train_step(s)[0]) for s in range(30)]
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5]), losses


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="finetune pretrain must be one of"):
        learner_config({"name": "finetune", "pretrain": "triplet"})
    with pytest.raises(ValueError, match="contrastive_temperature must be > 0"):
        learner_config({"name": "finetune", "contrastive_temperature": 0})
    with pytest.raises(ValueError, match="finetune head must be one of"):
        learner_config({"name": "finetune", "head": "mlp"})
    with pytest.raises(ValueError, match="trainable must be one of"):
        learner_config({"name": "finetune", "adapt": "everything"})
