"""bin/bench/bench_pipelines.py: the hand-written loops score exactly what fewshot scores on the same episodes."""
from __future__ import annotations

import numpy as np
import torch

from fewshot.datasets import load_dataset
from fewshot.episodes import EpisodeSampler
from fewshot.evaluation import evaluate
from fewshot.learners import create_learner
from bench_pipelines import classify, learn2learn_loop, plain_torch_loop


def test_classify_is_nearest_prototype_by_cosine():
    z_s = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 1.0], [0.0, 5.0]])
    y_s = torch.tensor([0, 0, 1, 1])
    # prototypes (2, 0) and (0, 3): the direction decides, not the distance ((1.5, 1.6) is nearer (2, 0) in L2)
    z_q = torch.tensor([[1.0, 0.2], [0.1, 9.0], [1.5, 1.6]])
    assert classify(z_s, y_s, z_q, 2).tolist() == [0, 1, 1]


def test_plain_loop_matches_fewshot_per_episode_and_l2l_loop_runs(tiny_text_encoder):
    data = load_dataset("wn33")
    sampler = EpisodeSampler(data.labels, 5, 1, 15, seed=0, classes=data.split_classes("test"))
    episodes = list(sampler.episodes(6))
    learner = create_learner("protonet", tiny_text_encoder)
    ours = evaluate(learner, data, episodes, progress=False)
    model, tok = tiny_text_encoder.model.eval(), tiny_text_encoder.tokenizer
    accs, seconds, embedded = plain_torch_loop(model, tok, data.items, episodes)
    assert embedded == 6 * 80 and seconds > 0
    np.testing.assert_allclose(accs, ours.accuracies, atol=1e-6)

    test = set(data.split_classes("test"))
    keep = [i for i, y in enumerate(data.labels) if y in test]
    l2l_accs, _, l2l_embedded = learn2learn_loop(model, tok, [data.items[i] for i in keep],
                                                 [data.labels[i] for i in keep], 3, 5, 1, 15, seed=0)
    assert l2l_embedded == 3 * 80 and l2l_accs.shape == (3,)
    np.testing.assert_allclose(l2l_accs * 75, np.round(l2l_accs * 75), atol=1e-4)  # k of 75 queries right
    assert ((0 <= l2l_accs) & (l2l_accs <= 1)).all()
