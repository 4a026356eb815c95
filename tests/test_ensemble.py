"""Ensembles of checkpoints: a task's scores are the members' mean log-probabilities, each member adapting
on its own; `fewshot run --checkpoint A --ensemble B` scores exactly that, and bad ensembles are refused."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from fewshot.checkpoint import load_learner, save_checkpoint
from fewshot.cli import main
from fewshot.config import FewShotConfig
from fewshot.encoders import create_encoder
from fewshot.experiment import build_dataset, build_episodes
from fewshot.learners import Ensemble, create_learner


def _conv4_protonet(seed: int, **cfg):
    torch.manual_seed(seed)
    return create_learner("protonet", create_encoder("conv4", hidden=8), cfg)


def _task(n_way=3, shot=2, n_query=4, side=20, seed=0):
    rng = np.random.default_rng(seed)
    base = [(rng.random((side, side)) < 0.3) for _ in range(n_way)]
    def draw(c):  # a class's template with a few pixels flipped
        return ((base[c] ^ (rng.random((side, side)) < 0.05)) * 255).astype(np.uint8)
    sx = [draw(c) for c in range(n_way) for _ in range(shot)]
    sy = [c for c in range(n_way) for _ in range(shot)]
    qx = [draw(c) for c in range(n_way) for _ in range(n_query)]
    return sx, sy, qx


def test_ensemble_scores_are_the_members_mean_log_probabilities():
    a, b = _conv4_protonet(0), _conv4_protonet(1, metric="cosine")
    sx, sy, qx = _task()
    ens = Ensemble([a, b])
    ens.adapt(sx, sy)
    got = ens.logits(qx)
    a.adapt(sx, sy)
    b.adapt(sx, sy)
    want = (torch.log_softmax(a.logits(qx), 1) + torch.log_softmax(b.logits(qx), 1)) / 2
    assert got.shape == (12, 3)
    assert torch.allclose(got, want, atol=1e-6)
    assert not torch.allclose(torch.log_softmax(a.logits(qx), 1), torch.log_softmax(b.logits(qx), 1), atol=1e-3)
    assert torch.allclose(got.exp().sum(1) <= 1 + 1e-6, torch.ones(12, dtype=torch.bool))
    # two copies of one learner predict what it predicts
    twin = Ensemble([a, _conv4_protonet(0)])
    twin.adapt(sx, sy)
    assert torch.allclose(twin.logits(qx), torch.log_softmax(a.logits(qx), 1), atol=1e-5)
    assert ens.fingerprint() != twin.fingerprint() and len(ens.fingerprint()) == 16
    assert ens.encoder is a.encoder and ens.encoder_name == "conv4+conv4"
    # frozen members share one embedding pass: the members' embeddings side by side, split back per member
    assert not ens.adapts_encoder
    z = ens.embed(sx + qx)
    assert z.shape == (len(sx) + len(qx), a.encoder.dim + b.encoder.dim)
    assert np.array_equal(z[:, :a.encoder.dim], a.embed(sx + qx))
    ens.adapt_features(torch.from_numpy(z[:len(sx)]), torch.as_tensor(sy))
    assert torch.allclose(ens.logits_features(torch.from_numpy(z[len(sx):])), want, atol=1e-5)
    # a member that fine-tunes at test time makes every member embed each task's items itself
    assert Ensemble([a, _conv4_protonet(1, finetune_steps=1)]).adapts_encoder


def test_ensemble_refusals(tiny_text_encoder):
    a = _conv4_protonet(0)
    with pytest.raises(ValueError, match="at least 2 learners, got 1"):
        Ensemble([a])
    with pytest.raises(ValueError, match=r"different inputs \(\['image', 'text'\]\)"):
        Ensemble([a, create_learner("protonet", tiny_text_encoder)])
    with pytest.raises(ValueError, match="no checkpoint was given; pass --checkpoint DIR"):
        FewShotConfig.from_dict({"ensemble": ["runs/b"]})
    with pytest.raises(ValueError, match="names a checkpoint twice"):
        FewShotConfig.from_dict({"checkpoint": "runs/a", "ensemble": ["runs/b", "runs/a"]})
    with pytest.raises(ValueError, match="names a checkpoint twice"):  # one folder, spelt two ways
        FewShotConfig.from_dict({"checkpoint": "runs/a", "ensemble": ["runs/a/.", "runs/b"]})


def test_cli_run_ensemble_scores_the_members_together(tmp_path):
    """The CLI's ensemble accuracy equals the members' mean log-probabilities computed here, on the same
    episodes; each member alone scores differently; a train+val member refuses val-class scoring."""
    for name, seed in (("a", 0), ("b", 1), ("final", 2)):
        save_checkpoint(tmp_path / name, _conv4_protonet(seed), {"train": {"include_val": name == "final"}})
    args = ["run", "--dataset", "omniglot-small1", "--classes", "val", "--way", "5", "--shot", "1", "--query", "3",
            "--episodes", "6", "--seed", "3", "--json", "--quiet"]

    def accuracy(*ckpts):
        extra = [x for c in ckpts[1:] for x in ("--ensemble", str(tmp_path / c))]
        res = CliRunner().invoke(main, args + ["--checkpoint", str(tmp_path / ckpts[0])] + extra)
        assert res.exit_code == 0, res.output
        return json.loads(res.output.strip().splitlines()[-1])

    both = accuracy("a", "b")
    cfg = FewShotConfig.from_dict({"data": {"dataset": "omniglot-small1"}, "episodes": {
        "classes": "val", "way": 5, "shot": 1, "query": 3, "episodes": 6, "seed": 3}})
    data = build_dataset(cfg)
    episodes, _ = build_episodes(cfg, data)
    members = [load_learner(tmp_path / "a"), load_learner(tmp_path / "b")]
    accs = []
    for ep in episodes:
        total = 0
        for m in members:
            m.adapt(data.take(ep.support), ep.support_labels)
            total = total + torch.log_softmax(m.logits(data.take(ep.query)), 1)
        accs.append(float((total.argmax(1).numpy() == ep.query_labels).mean()))
    assert both["accuracy_mean"] == pytest.approx(np.mean(accs), abs=1e-9)
    res = CliRunner().invoke(main, args + ["--no-cache", "--checkpoint", str(tmp_path / "a"),
                                           "--ensemble", str(tmp_path / "b")])
    assert json.loads(res.output.strip().splitlines()[-1])["accuracy_mean"] == both["accuracy_mean"]
    assert both["embedded_examples"] < json.loads(res.output.strip().splitlines()[-1])["embedded_examples"]
    assert both["encoder"] == "conv4+conv4" and both["episodes"] == 6
    singles = {accuracy("a")["accuracy_mean"], accuracy("b")["accuracy_mean"]}
    assert len(singles | {both["accuracy_mean"]}) >= 2  # the members are different models

    res = CliRunner().invoke(main, ["run", "--dataset", "omniglot-small1", "--classes", "val",
                                    "--checkpoint", str(tmp_path / "a"), "--ensemble", str(tmp_path / "final")])
    assert res.exit_code == 2 and f"checkpoint {tmp_path / 'final'} was trained on the val classes too" in res.output
    res = CliRunner().invoke(main, ["run", "--dataset", "omniglot-small1", "--ensemble", str(tmp_path / "b")])
    assert res.exit_code == 2 and "pass --checkpoint DIR for the first member" in res.output
    cfg_file = tmp_path / "ens.toml"
    cfg_file.write_text(f'checkpoint = "{tmp_path / "a"}"\nensemble = ["{tmp_path / "b"}"]\n'
                        '[data]\ndataset = "omniglot-small1"\n')
    res = CliRunner().invoke(main, ["train", "--config", str(cfg_file), "--out", str(tmp_path / "never")])
    assert res.exit_code == 2 and "is not trained; train each member on its own" in res.output
    assert not (tmp_path / "never").exists()
