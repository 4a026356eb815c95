"""Every registered learner honours the same contract on the same 5-way 1-shot and 5-shot episodes:
(n_query, n_way) float logits, identical results from the same seed, and accuracy well above chance."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fewshot.data import FewShotDataset
from fewshot.encoders import create_encoder
from fewshot.episodes import EpisodeSampler
from fewshot.evaluation import evaluate
from fewshot.learners import LEARNERS, create_learner


def _dataset() -> FewShotDataset:
    """8 classes of 28x28 grey images: a random template per class plus noise (easy for any learner)."""
    rng = np.random.default_rng(0)
    templates = rng.integers(0, 256, size=(8, 28, 28))
    items = [np.clip(templates[c] + rng.normal(0, 20, (28, 28)), 0, 255).astype(np.uint8)
             for c in range(8) for _ in range(12)]
    return FewShotDataset("brightness", "image", items, [f"c{c}" for c in range(8) for _ in range(12)])


# what a learner needs beyond its defaults to work from an untrained start: decomposed's detection head is zero
# until trained (fewshot train) or fitted on each support set
OPTIONS = {"decomposed": {"detector_steps": 20, "detector_lr": 1.0}}


def _learner(name):
    torch.manual_seed(0)
    return create_learner(name, create_encoder("conv4", hidden=32), OPTIONS.get(name))


@pytest.mark.parametrize("shot", [1, 5])
# joint intent + slot learners predict the labels they were trained on and adapt to no support set
# (tests/test_joint.py covers them)
@pytest.mark.parametrize("name", sorted(n for n in LEARNERS if "joint" not in LEARNERS[n].tasks))
def test_every_learner_meets_the_contract(name, shot):
    ds = _dataset()
    episodes = list(EpisodeSampler(ds.labels, 5, shot, 4, seed=shot).episodes(6))
    ep = episodes[0]
    learner = _learner(name)
    learner.module.eval()
    learner.adapt([ds.items[i] for i in ep.support], ep.support_labels)
    logits = learner.logits([ds.items[i] for i in ep.query])
    assert logits.shape == (len(ep.query), 5) and logits.dtype.is_floating_point
    assert torch.isfinite(logits).all()

    first = evaluate(learner, ds, episodes, progress=False)
    again = evaluate(_learner(name), ds, episodes, progress=False)
    np.testing.assert_array_equal(first.accuracies, again.accuracies)  # same seed, same results
    assert first.mean > 0.5, f"{name} {shot}-shot: {first.mean:.3f} (chance 0.2)"
