"""Checkpoints: identical logits after a round trip (LoRA and heads included), refusal of
truncated, altered or foreign folders, and loading the encoder alone or under another learner."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fewshot.checkpoint import load_encoder, load_learner, save_checkpoint
from fewshot.data import FewShotDataset
from fewshot.encoders import create_encoder
from fewshot.learners import create_learner

TEXTS = ["a cat sat on the mat", "dogs bark at night", "the stock market fell", "rain is expected today",
         "a kitten plays", "bond yields rose", "storm clouds gather", "puppies sleep"]


def _perturb(module: torch.nn.Module) -> None:
    """Move every trainable weight away from its initial value, as training would."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=g))


def _logits(learner, support, labels, query):
    learner.adapt(support, labels)
    return learner.logits(query)


@pytest.mark.parametrize("trainable", ["full", "lora"])
def test_protonet_round_trip_gives_identical_logits(tiny_text_model_dir, tmp_path, trainable):
    learner = create_learner("protonet", create_encoder(str(tiny_text_model_dir)),
                             {"trainable": trainable, "metric": "cosine"})
    _perturb(learner.module)
    save_checkpoint(tmp_path, learner, {"note": "test"}, {"step": 7})
    loaded = load_learner(tmp_path)
    assert loaded.cfg == learner.cfg and loaded.temperature == pytest.approx(learner.temperature)
    want = _logits(learner, TEXTS[:4], [0, 1, 2, 3], TEXTS[4:])
    got = _logits(loaded, TEXTS[:4], [0, 1, 2, 3], TEXTS[4:])
    assert torch.equal(want, got)
    for k, v in learner.module.state_dict().items():
        assert torch.equal(v, loaded.module.state_dict()[k]), k
    if trainable == "lora":
        assert any("lora_A" in k for k in loaded.module.state_dict())
    record = json.loads((tmp_path / "learner.json").read_text())
    assert record["step"] == 7 and record["learner"] == "protonet"
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["note"] == "test" and "fewshot_version" in config


def test_finetune_round_trip_keeps_the_base_head(tiny_text_model_dir, tmp_path):
    learner = create_learner("finetune", create_encoder(str(tiny_text_model_dir)), {"steps": 5})
    data = FewShotDataset("t", "text", TEXTS, ["a", "b", "c", "d"] * 2, splits={"train": ["a", "b", "c"]})
    learner.prepare_training(data, None)
    _perturb(learner.module)
    save_checkpoint(tmp_path, learner)
    loaded = load_learner(tmp_path)
    assert loaded.module.base_head.out_features == 3
    torch.testing.assert_close(loaded.module.base_head.weight, learner.module.base_head.weight, rtol=0, atol=0)
    assert torch.equal(_logits(learner, TEXTS[:3], [0, 1, 2], TEXTS[3:]), _logits(loaded, TEXTS[:3], [0, 1, 2],
                                                                                   TEXTS[3:]))


def test_encoder_alone_and_under_another_learner(tiny_text_model_dir, tmp_path):
    learner = create_learner("protonet", create_encoder(str(tiny_text_model_dir)), {"trainable": "lora"})
    _perturb(learner.module)
    save_checkpoint(tmp_path, learner)
    enc = load_encoder(tmp_path)
    np.testing.assert_array_equal(enc.encode(TEXTS), learner.encoder.encode(TEXTS))
    other = load_learner(tmp_path, learner_cfg=create_learner("finetune", enc).cfg.__class__(steps=3))
    assert other.name == "finetune"
    np.testing.assert_array_equal(other.embed(TEXTS), learner.embed(TEXTS))


def test_truncated_altered_and_foreign_checkpoints_are_refused(tiny_text_model_dir, tmp_path):
    learner = create_learner("protonet", create_encoder(str(tiny_text_model_dir)))
    save_checkpoint(tmp_path / "ok", learner)
    weights = (tmp_path / "ok" / "model.safetensors").read_bytes()

    (tmp_path / "trunc").mkdir()
    (tmp_path / "trunc" / "learner.json").write_text((tmp_path / "ok" / "learner.json").read_text())
    (tmp_path / "trunc" / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    with pytest.raises(ValueError, match="truncated or was replaced"):
        load_learner(tmp_path / "trunc")

    record = json.loads((tmp_path / "ok" / "learner.json").read_text())
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "learner.json").write_text(json.dumps({**record, "format": "someone-else/2"}))
    (tmp_path / "foreign" / "model.safetensors").write_bytes(weights)
    with pytest.raises(ValueError, match="not a fewshot checkpoint"):
        load_encoder(tmp_path / "foreign")

    (tmp_path / "nojson").mkdir()
    with pytest.raises(ValueError, match="has no learner.json"):
        load_learner(tmp_path / "nojson")
    with pytest.raises(ValueError, match="is not a folder"):
        load_learner(tmp_path / "missing")

    # a checksum that matches but weights of another architecture: a clear message, not a crash
    from safetensors.torch import save
    import hashlib

    other = save({"w": torch.zeros(3)})
    (tmp_path / "wrong").mkdir()
    (tmp_path / "wrong" / "model.safetensors").write_bytes(other)
    (tmp_path / "wrong" / "learner.json").write_text(
        json.dumps({**record, "weights_sha256": hashlib.sha256(other).hexdigest()}))
    with pytest.raises(ValueError, match="do not fit"):
        load_learner(tmp_path / "wrong")
