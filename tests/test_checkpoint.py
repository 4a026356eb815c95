"""Checkpoints: identical logits after a round trip (LoRA and heads included), refusal of
truncated, altered or foreign folders, and loading the encoder alone or under another learner."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fewshot.checkpoint import (load_encoder, load_learner, load_training_state, read_record, save_checkpoint,
                                save_training_state)
from fewshot.cli import main
from fewshot.cli.app import load_run_config
from fewshot.cli.run import RUN_MAPPING
from fewshot.config import FewShotConfig
from fewshot.data import FewShotDataset
from fewshot.encoders import create_encoder
from fewshot.experiment import build_learner
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
    record = read_record(tmp_path)
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


def test_finetune_cosine_base_head_round_trips(tiny_text_model_dir, tmp_path):
    """A cosine base head (Baseline++ pretraining) comes back as trained, whatever ``head`` the loader asks for."""
    learner = create_learner("finetune", create_encoder(str(tiny_text_model_dir)), {"steps": 5, "head": "cosine"})
    data = FewShotDataset("t", "text", TEXTS, ["a", "b", "c", "d"] * 2, splits={"train": ["a", "b", "c"]})
    learner.prepare_training(data, None)
    _perturb(learner.module)
    save_checkpoint(tmp_path, learner)
    assert read_record(tmp_path)["meta"] == {"n_base_classes": 3, "base_head": "cosine"}
    loaded = load_learner(tmp_path)
    assert loaded.cfg.head == "cosine" and not hasattr(loaded.module.base_head, "bias")
    z = torch.randn(4, learner.encoder.dim)
    torch.testing.assert_close(loaded.module.base_head(z), learner.module.base_head(z), rtol=0, atol=0)
    # a checkpoint from before cosine base heads says no kind: its head was linear, whatever cfg.head says
    older = create_learner("finetune", create_encoder(str(tiny_text_model_dir)), {"head": "cosine"})
    older.restore_meta({"n_base_classes": 3})
    assert isinstance(older.module.base_head, torch.nn.Linear) and older.module.base_head.out_features == 3


def test_encoder_alone_and_under_another_learner(tiny_text_model_dir, tmp_path):
    learner = create_learner("protonet", create_encoder(str(tiny_text_model_dir)), {"trainable": "lora"})
    _perturb(learner.module)
    save_checkpoint(tmp_path, learner)
    enc = load_encoder(tmp_path)
    np.testing.assert_array_equal(enc.encode(TEXTS), learner.encoder.encode(TEXTS))
    other = load_learner(tmp_path, learner_cfg=create_learner("finetune", enc).cfg.__class__(steps=3))
    assert other.name == "finetune"
    np.testing.assert_array_equal(other.embed(TEXTS), learner.embed(TEXTS))


def test_a_named_learner_takes_the_checkpoints_encoder_unnamed_keeps_its_learner(tiny_text_model_dir, tmp_path):
    """`fewshot run --learner protonet --checkpoint <finetune checkpoint>` scores its encoder with protonet; no
    --learner, or the saved learner's own name, keeps the learner the checkpoint was trained as, options as saved."""
    learner = create_learner("finetune", create_encoder(str(tiny_text_model_dir)), {"head": "cosine", "steps": 7})
    data = FewShotDataset("t", "text", TEXTS, ["a", "b", "c", "d"] * 2, splits={"train": ["a", "b", "c"]})
    learner.prepare_training(data, None)
    _perturb(learner.module)
    save_checkpoint(tmp_path, learner)
    for spec, name in ((None, "finetune"), ("protonet", "protonet"), ({"name": "protonet"}, "protonet"),
                       ({"name": "protonet", "trainable": "full"}, "protonet"), ({"name": "finetune"}, "finetune")):
        cfg = FewShotConfig.from_dict({"checkpoint": str(tmp_path), "device": "cpu",
                                       **({} if spec is None else {"learner": spec})})
        got = build_learner(cfg, data)
        assert got.name == name, spec
        np.testing.assert_array_equal(got.encoder.encode(TEXTS), learner.encoder.encode(TEXTS))
        if name == "finetune":
            assert got.cfg.head == "cosine" and got.cfg.steps == 7  # as saved
    assert "learner_named" not in cfg.to_dict()


def test_an_option_given_by_key_overrides_the_checkpoint_even_at_its_default(tiny_text_model_dir, tmp_path):
    """`fewshot run --checkpoint DIR -L steps=100` (finetune's default) scores with 100 steps, not the 7 the
    checkpoint saved; options not given stay as saved, and a config object overrides only fields off defaults."""
    learner = create_learner("finetune", create_encoder(str(tiny_text_model_dir)), {"head": "cosine", "steps": 7})
    data = FewShotDataset("t", "text", TEXTS, ["a", "b", "c", "d"] * 2, splits={"train": ["a", "b", "c"]})
    learner.prepare_training(data, None)
    save_checkpoint(tmp_path, learner)
    default_steps = type(learner.cfg)().steps
    assert default_steps != 7
    cfg = FewShotConfig.from_dict({"checkpoint": str(tmp_path), "device": "cpu",
                                   "learner": {"name": "finetune", "steps": default_steps}})
    got = build_learner(cfg, data)
    assert (got.cfg.steps, got.cfg.head) == (default_steps, "cosine")  # asked; as saved
    assert "learner_keys" not in cfg.to_dict()
    as_object = FewShotConfig(checkpoint=str(tmp_path), device="cpu", learner=type(learner.cfg)())
    assert build_learner(as_object, data).cfg.steps == 7  # an object's defaults ask for nothing
    # the CLI path: `fewshot run --checkpoint DIR -L steps=N` parses into exactly that dict
    run = main.get_command(None, "run")
    ctx = run.make_context("run", ["--checkpoint", str(tmp_path), "-L", f"steps={default_steps}"])
    cfg = load_run_config(ctx, None, RUN_MAPPING)
    assert cfg.asked_learner() == {"name": "finetune", "steps": default_steps}


def _legacy_folder(folder, record: dict, weights: bytes):
    """A checkpoint in the layout of fewshot before manifests: learner.json + model.safetensors."""
    folder.mkdir()
    (folder / "learner.json").write_text(json.dumps(record))
    (folder / "model.safetensors").write_bytes(weights)
    return folder


def _weights_file(folder):
    (path,) = folder.glob("model-*.safetensors")
    return path


def test_truncated_altered_and_foreign_checkpoints_are_refused(tiny_text_model_dir, tmp_path):
    learner = create_learner("protonet", create_encoder(str(tiny_text_model_dir)))
    save_checkpoint(tmp_path / "ok", learner)
    weights = _weights_file(tmp_path / "ok").read_bytes()
    record = read_record(tmp_path / "ok")

    import shutil

    shutil.copytree(tmp_path / "ok", tmp_path / "trunc")
    _weights_file(tmp_path / "trunc").write_bytes(weights[: len(weights) // 2])
    with pytest.raises(ValueError, match="is truncated .*copy the whole folder again or retrain"):
        load_learner(tmp_path / "trunc")

    _legacy_folder(tmp_path / "legacy-trunc", record, weights[: len(weights) // 2])
    with pytest.raises(ValueError, match="truncated or was replaced"):
        load_learner(tmp_path / "legacy-trunc")

    _legacy_folder(tmp_path / "foreign", {**record, "format": "someone-else/2"}, weights)
    with pytest.raises(ValueError, match="not a fewshot checkpoint"):
        load_encoder(tmp_path / "foreign")

    (tmp_path / "nojson").mkdir()
    with pytest.raises(ValueError, match="has no manifest.json"):
        load_learner(tmp_path / "nojson")
    with pytest.raises(ValueError, match="is not a folder"):
        load_learner(tmp_path / "missing")

    # a checksum that matches but weights of another architecture: a clear message, not a crash
    from safetensors.torch import save
    import hashlib

    other = save({"w": torch.zeros(3)})
    _legacy_folder(tmp_path / "wrong", {**record, "weights_sha256": hashlib.sha256(other).hexdigest()}, other)
    with pytest.raises(ValueError, match="do not fit"):
        load_learner(tmp_path / "wrong")


def test_a_checkpoint_of_the_layout_before_manifests_still_loads(tiny_text_model_dir, tmp_path):
    learner = create_learner("protonet", create_encoder(str(tiny_text_model_dir)))
    _perturb(learner.module)
    save_checkpoint(tmp_path / "new", learner)
    old = _legacy_folder(tmp_path / "old", read_record(tmp_path / "new"), _weights_file(tmp_path / "new").read_bytes())
    for k, v in load_learner(old).module.state_dict().items():
        assert torch.equal(v, learner.module.state_dict()[k]), k
    # saving over a legacy folder replaces its files by the manifest layout
    save_checkpoint(old, learner)
    assert not (old / "learner.json").exists() and not (old / "model.safetensors").exists()
    assert (old / "manifest.json").is_file()


def test_overwriting_a_checkpoint_commits_all_files_at_once(tiny_text_model_dir, tmp_path, monkeypatch):
    """A save killed after the new weights are written, before the commit, leaves the old checkpoint
    loadable (with the layout before manifests it left new weights beside the old checksum)."""
    learner = create_learner("protonet", create_encoder(str(tiny_text_model_dir)))
    save_checkpoint(tmp_path, learner, extra={"step": 1})
    old_state = {k: v.clone() for k, v in learner.module.state_dict().items()}
    _perturb(learner.module)

    import fewshot.store

    real = fewshot.store.atomic_write_text

    def killed(path, text):
        if str(path).endswith("manifest.json"):
            raise KeyboardInterrupt("killed before the commit")
        real(path, text)

    monkeypatch.setattr(fewshot.store, "atomic_write_text", killed)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, learner, extra={"step": 2})
    monkeypatch.undo()
    loaded = load_learner(tmp_path)
    assert read_record(tmp_path)["step"] == 1
    for k, v in loaded.module.state_dict().items():
        assert torch.equal(v, old_state[k]), k
    save_checkpoint(tmp_path, learner, extra={"step": 2})
    assert read_record(tmp_path)["step"] == 2
    assert len(list(tmp_path.glob("model-*.safetensors"))) == 1  # the older generations are deleted


def test_resume_state_refuses_a_state_file_that_is_not_safetensors(tiny_text_model_dir, tmp_path):
    learner = create_learner("protonet", create_encoder(str(tiny_text_model_dir)))
    opt = torch.optim.AdamW(learner.module.parameters())
    save_training_state(tmp_path / "last", learner, opt, {"step": 3})
    assert load_training_state(tmp_path / "last", learner, opt) == {"step": 3}
    # the layout before manifests, with a pickle where the safetensors state should be
    import hashlib
    import io

    buf = io.BytesIO()
    torch.save({"w": torch.zeros(2)}, buf)
    data = buf.getvalue()
    meta = json.loads(json.dumps(read_manifest_body(tmp_path / "last")))
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "state.json").write_text(json.dumps({**meta, "state_sha256": hashlib.sha256(data).hexdigest()}))
    (tmp_path / "old" / "state.safetensors").write_bytes(data)
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_training_state(tmp_path / "old", learner, opt)


def read_manifest_body(folder):
    from fewshot.store import SupportStore

    return SupportStore(folder).read_manifest()["body"]


def test_encoder_options_override_a_checkpoints_preprocessing(tmp_path):
    """Continue training on images of the other polarity: `invert` changes, the weights stay; an option that
    changes the architecture is refused with the reason."""
    torch.manual_seed(0)
    learner = create_learner("protonet", create_encoder("conv4", hidden=8))
    save_checkpoint(tmp_path, learner)
    img = np.zeros((28, 28), dtype=np.uint8)
    img[10:18, 6:22] = 255
    plain = load_learner(tmp_path)
    flipped = load_learner(tmp_path, encoder_options={"invert": True})
    assert plain.encoder.invert is False and flipped.encoder.invert is True
    for (n, p), (_, q) in zip(plain.module.state_dict().items(), flipped.module.state_dict().items()):
        assert torch.equal(p, q), n
    np.testing.assert_allclose(flipped.embed([img]), plain.embed([255 - img]), rtol=1e-5, atol=1e-5)
    assert not np.allclose(flipped.embed([img]), plain.embed([img]), atol=1e-3)
    with pytest.raises(ValueError, match="do not fit"):
        load_learner(tmp_path, encoder_options={"hidden": 16})
