"""The Trainer: training beats the frozen encoder on real data, resume equals an uninterrupted run,
early stopping, the best checkpoint, and refusals of bad set-ups."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fewshot.checkpoint import load_learner
from fewshot.config import TrainConfig
from fewshot.data import FewShotDataset
from fewshot.datasets import load_dataset
from fewshot.encoders import create_encoder
from fewshot.evaluation import evaluate
from fewshot.learners import create_learner
from fewshot.training import Trainer, step_seed


@pytest.fixture(scope="module")
def wn33():
    return load_dataset("wn33")


def test_protonet_meta_training_beats_frozen_conv4_on_omniglot(shared_data):
    """40 episodes of 5-way 1-shot training on Omniglot small1's train alphabets lift Conv4
    well above its own untrained accuracy on the same 60 validation episodes."""
    data = load_dataset("omniglot-small1", shared_data)
    torch.manual_seed(0)
    encoder = create_encoder("conv4", hidden=32, invert=True)
    learner = create_learner("protonet", encoder)
    cfg = TrainConfig(steps=40, eval_every=40, lr=2e-3, train_way=5, train_shot=1, train_query=5,
                      val_way=5, val_shot=1, val_query=5, val_episodes=60, seed=0)
    trainer = Trainer(learner, data, cfg)
    before = evaluate(learner, data, trainer.val_episodes, progress=False).mean
    metrics = trainer.fit()
    after = evaluate(learner, data, trainer.val_episodes, progress=False).mean
    assert metrics["steps"] == 40 and metrics["final_val_accuracy"] == pytest.approx(after)
    assert after >= before + 0.15, (before, after)  # measured: 0.45 -> 0.69
    assert after >= 0.60, (before, after)
    # validation episodes come from the val alphabets only; training episodes from train alphabets only
    val = set(data.split_classes("val"))
    assert all(set(ep.classes) <= val for ep in trainer.val_episodes)
    train = set(data.split_classes("train"))
    assert all(set(trainer.sampler.sample(i).classes) <= train for i in range(40))


def _tiny_trainer(model_dir, data, out, steps, resume=False, **kw):
    torch.manual_seed(0)
    learner = create_learner("protonet", create_encoder(str(model_dir)), {"trainable": "full"})
    cfg = TrainConfig(steps=steps, eval_every=2, patience=0, lr=1e-3, train_way=3, train_shot=2, train_query=2,
                      val_way=3, val_shot=1, val_query=3, val_episodes=6, augment=True, **kw)
    return learner, Trainer(learner, data, cfg, out_dir=out, resume=resume)


def test_resume_ends_where_an_uninterrupted_run_ends(tiny_text_model_dir, wn33, tmp_path):
    straight, t1 = _tiny_trainer(tiny_text_model_dir, wn33, tmp_path / "a", steps=6)
    t1.fit()
    _, t2 = _tiny_trainer(tiny_text_model_dir, wn33, tmp_path / "b", steps=2)
    t2.fit()
    resumed, t3 = _tiny_trainer(tiny_text_model_dir, wn33, tmp_path / "b", steps=6, resume=True)
    assert t3.step == 2
    t3.fit()
    a, b = straight.module.state_dict(), resumed.module.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    drop = ("elapsed_s",)
    log_a = [{k: v for k, v in json.loads(ln).items() if k not in drop}
             for ln in (tmp_path / "a" / "train_log.jsonl").read_text().splitlines()]
    log_b = [{k: v for k, v in json.loads(ln).items() if k not in drop}
             for ln in (tmp_path / "b" / "train_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log_a] == [2, 4, 6]
    assert log_a == log_b
    # the best checkpoint of both runs is the same model
    best_a, best_b = load_learner(tmp_path / "a"), load_learner(tmp_path / "b")
    for k, v in best_a.module.state_dict().items():
        assert torch.equal(v, best_b.module.state_dict()[k]), k


def test_a_run_killed_after_a_skipped_resume_write_replays_to_where_an_uninterrupted_run_ends(
        tiny_text_model_dir, wn33, tmp_path, monkeypatch):
    import math

    import fewshot.training as training

    straight, t1 = _tiny_trainer(tiny_text_model_dir, wn33, tmp_path / "a", steps=6)
    t1.fit()
    monkeypatch.setattr(training, "RESUME_COST_RATIO", math.inf)  # resume state at the first and last evaluation
    _, t2 = _tiny_trainer(tiny_text_model_dir, wn33, tmp_path / "b", steps=6)
    real = training.Trainer.validate

    def killed_at_the_last_evaluation(self):
        if self.step == 6:
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(training.Trainer, "validate", killed_at_the_last_evaluation)
    with pytest.raises(KeyboardInterrupt):
        t2.fit()
    monkeypatch.undo()
    log = tmp_path / "b" / "train_log.jsonl"
    assert [json.loads(ln)["step"] for ln in log.read_text().splitlines()] == [2, 4]  # the log: every evaluation
    resumed, t3 = _tiny_trainer(tiny_text_model_dir, wn33, tmp_path / "b", steps=6, resume=True)
    assert t3.step == 2  # the state of step 4 was skipped: steps 3-4 are replayed
    t3.fit()
    a, b = straight.module.state_dict(), resumed.module.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    drop = ("elapsed_s",)
    logs = [[{k: v for k, v in json.loads(ln).items() if k not in drop} for ln in (tmp_path / d / "train_log.jsonl")
             .read_text().splitlines()] for d in ("a", "b")]
    assert [e["step"] for e in logs[1]] == [2, 4, 6] and logs[0] == logs[1]
    best_a, best_b = load_learner(tmp_path / "a"), load_learner(tmp_path / "b")
    assert all(torch.equal(v, best_b.module.state_dict()[k]) for k, v in best_a.module.state_dict().items())


def test_resume_refuses_changed_options_and_missing_state(tiny_text_model_dir, wn33, tmp_path):
    _, t = _tiny_trainer(tiny_text_model_dir, wn33, tmp_path / "r", steps=2)
    t.fit()
    with pytest.raises(ValueError, match=r"training options \['lr'\] differ"):
        learner = create_learner("protonet", create_encoder(str(tiny_text_model_dir)))
        Trainer(learner, wn33, TrainConfig(steps=4, eval_every=2, patience=0, lr=5e-3, train_way=3, train_shot=2,
                                           train_query=2, val_way=3, val_shot=1, val_query=3, val_episodes=6,
                                           augment=True), out_dir=tmp_path / "r", resume=True)
    with pytest.raises(ValueError, match="holds no resume state"):
        _tiny_trainer(tiny_text_model_dir, wn33, tmp_path / "empty", steps=2, resume=True)


def test_early_stopping_keeps_the_best_checkpoint(tiny_text_model_dir, wn33, tmp_path):
    """With a frozen encoder only the temperature learns, which never changes accuracy:
    the first evaluation stays best and training stops after `patience` more."""
    learner = create_learner("protonet", create_encoder(str(tiny_text_model_dir)), {"trainable": "none"})
    cfg = TrainConfig(steps=50, eval_every=1, patience=2, train_way=3, train_shot=1, train_query=2,
                      val_way=3, val_shot=1, val_query=2, val_episodes=4)
    metrics = Trainer(learner, wn33, cfg, out_dir=tmp_path).fit()
    assert metrics["stopped_early"] is True
    assert metrics["steps"] == 3 and metrics["best_step"] == 1
    log = [json.loads(ln) for ln in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == [1, 2, 3]
    assert len({e["val_accuracy"] for e in log}) == 1
    from fewshot.checkpoint import read_record

    assert read_record(tmp_path)["step"] == 1
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["train"]["patience"] == 2 and "fewshot_version" in saved


def test_training_episodes_are_deterministic_per_step_and_rank():
    assert step_seed(0, 5, 0) == step_seed(0, 5, 0)
    assert len({step_seed(0, s, r) for s in range(10) for r in range(3)}) == 30


def test_bad_setups_are_refused(tiny_text_model_dir, wn33):
    learner = create_learner("protonet", create_encoder(str(tiny_text_model_dir)),
                             {"trainable": "none", "learn_temperature": False})
    with pytest.raises(ValueError, match="no trainable parameters"):
        Trainer(learner, wn33, TrainConfig(val_episodes=2))
    with pytest.raises(TypeError, match="TrainConfig"):
        Trainer(learner, wn33, {"steps": 3})
    with pytest.raises(ValueError, match="--train-way"):
        TrainConfig(train_way=1)
    no_val = FewShotDataset("x", "text", [f"t{i}" for i in range(40)], [f"c{i % 4}" for i in range(40)],
                            splits={"train": ["c0", "c1", "c2", "c3"]})
    with pytest.raises(ValueError, match="has no 'val' split"):
        Trainer(create_learner("protonet", create_encoder(str(tiny_text_model_dir))), no_val, TrainConfig())
    with pytest.raises(ValueError, match="needs out_dir"):
        Trainer(learner, wn33, TrainConfig(), resume=True)
    with pytest.raises(ValueError, match=r"--tag-episodes domain shapes episodes of tagged \(NER\) data, but "
                                         r"dataset 'wn33' is classified"):
        Trainer(create_learner("protonet", create_encoder(str(tiny_text_model_dir))), wn33,
                TrainConfig(tag_episodes="domain"))


def test_rotation_classes_feed_the_training_sampler(tiny_image_encoder):
    rng = np.random.default_rng(0)
    items = [rng.integers(0, 255, size=(12, 12), dtype=np.uint8) for _ in range(60)]
    labels = [f"c{i % 6}" for i in range(60)]
    data = FewShotDataset("img", "image", items, labels, splits={"train": ["c0", "c1", "c2", "c3"],
                                                                 "val": ["c4", "c5"]})
    learner = create_learner("protonet", tiny_image_encoder)
    trainer = Trainer(learner, data, TrainConfig(rotations=True, train_way=8, val_way=2, val_query=5, val_episodes=2))
    assert len(trainer.train_classes) == 16
    seen = set()
    for i in range(30):
        seen |= set(trainer.sampler.sample(i).classes)
    assert any("@rot" in c for c in seen) and not any(c.startswith(("c4", "c5")) for c in seen)


def test_cli_train_then_run_checkpoint(tiny_text_model_dir, tmp_path):
    from click.testing import CliRunner

    from fewshot.cli import main

    out = tmp_path / "run"
    args = ["train", "--learner", "protonet", "--encoder", str(tiny_text_model_dir), "--dataset", "wn33",
            "--out", str(out), "--steps", "2", "--eval-every", "2", "--train-way", "3", "--val-way", "3",
            "--val-query", "3", "--val-episodes", "3", "--metric", "cosine", "--trainable", "bitfit",
            "--device", "cpu", "--quiet"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "protonet on wn33: best validation accuracy" in res.output
    saved = json.loads((out / "config.json").read_text())
    assert saved["learner"]["trainable"] == "bitfit" and saved["train"]["steps"] == 2
    res = CliRunner().invoke(main, ["run", "--checkpoint", str(out), "--episodes", "3", "--query", "3",
                                    "--json", "--quiet"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output.strip().splitlines()[-1])
    assert report["learner"] == "protonet" and report["episodes"] == 3 and report["checkpoint"] == str(out)
    assert 0.0 <= report["accuracy_mean"] <= 1.0
    # bad input: exit code 2 with the reason
    res = CliRunner().invoke(main, args[:-5] + ["--trainable", "some", "--quiet"])
    assert res.exit_code == 2 and "trainable must be one of" in res.output
    res = CliRunner().invoke(main, ["train", "--dataset", "wn33", "--out", str(tmp_path / "none"), "--resume"])
    assert res.exit_code == 2 and "does not exist; start without --resume" in res.output


def _omniglot_like(n_classes=8, per_class=6, side=35):
    """Odd-sized uint8 strokes (so preprocessing resizes), 4 train / 2 val / 2 test classes."""
    rng = np.random.default_rng(0)
    items = [(rng.random((side, side)) < 0.2).astype(np.uint8) * 255 for _ in range(n_classes * per_class)]
    labels = [f"c{i % n_classes}" for i in range(n_classes * per_class)]
    names = [f"c{i}" for i in range(n_classes)]
    return FewShotDataset("glyphs", "image", items, labels,
                          splits={"train": names[:4], "val": names[4:6], "test": names[6:]})


def _losses(learner_name, data, resident, encoder_fn, learner_cfg=None, steps=4, **kw):
    torch.manual_seed(0)
    learner = create_learner(learner_name, encoder_fn(), learner_cfg or {})
    cfg = TrainConfig(steps=steps, eval_every=steps, patience=0, lr=1e-3, val_way=2, val_shot=1, val_query=2,
                      val_episodes=2, **kw)
    trainer = Trainer(learner, data, cfg, resident=resident)
    assert (trainer.resident is not None) == resident
    out = trainer.train_steps(steps)
    return out["losses"], learner.module.state_dict()


@pytest.mark.parametrize("learner_name, options", [
    ("protonet", {}),
    ("protonet", {"rotations": True}),
    ("maml", {}),
    ("finetune", {"batch_size": 8}),
])
def test_resident_inputs_give_the_raw_item_loss_trajectory(learner_name, options):
    """Preprocessing the train split once onto the device changes nothing: same losses, same weights."""
    data = _omniglot_like()
    enc = lambda: create_encoder("conv4", hidden=8, invert=True)  # noqa: E731
    cfg = {"inner_steps": 1} if learner_name == "maml" else None
    kw = dict(train_way=4, train_shot=1, train_query=2, **options)
    raw, w_raw = _losses(learner_name, data, False, enc, cfg, **kw)
    res, w_res = _losses(learner_name, data, True, enc, cfg, **kw)
    assert len(raw) == 4 and len(set(raw)) == 4  # the steps really trained on different episodes
    np.testing.assert_allclose(res, raw, rtol=1e-5, atol=1e-6)
    for k in w_raw:
        torch.testing.assert_close(w_res[k], w_raw[k], rtol=1e-4, atol=1e-5)


def test_resident_text_matches_raw_and_cuts_padding(tiny_text_model_dir, wn33):
    enc = lambda: create_encoder(str(tiny_text_model_dir))  # noqa: E731
    kw = dict(train_way=3, train_shot=2, train_query=2)
    raw, _ = _losses("protonet", wn33, False, enc, **kw)
    res, _ = _losses("protonet", wn33, True, enc, **kw)
    np.testing.assert_allclose(res, raw, rtol=1e-5, atol=1e-6)
    # a view's batch is exactly what the tokenizer gives its texts: same ids, same (shortest) padding
    encoder = enc()
    texts = ["a", "the cat sat on the mat today", "bonds rose"]
    store = encoder.resident(texts + ["a much longer sentence than any of the others in this small list"], "cpu")
    batch, direct = store.take([2, 0, 1]).batch(), encoder.preprocess([texts[2], texts[0], texts[1]])
    assert batch.keys() == direct.keys()
    for k in direct:
        assert torch.equal(batch[k], direct[k]), k
    assert batch["input_ids"].shape[1] < store.inputs["input_ids"].shape[1]


def test_resident_refusals_and_fallbacks(tiny_image_encoder):
    data = _omniglot_like()
    cfg = TrainConfig(steps=2, augment=True, train_way=2, val_way=2, val_query=2, val_episodes=2)
    learner = create_learner("protonet", tiny_image_encoder)
    assert Trainer(learner, data, cfg).resident is None  # auto: augmentation needs raw items
    with pytest.raises(ValueError, match="cannot be augmented"):
        Trainer(learner, data, cfg, resident=True)
    with pytest.raises(ValueError, match="resident must be"):
        Trainer(learner, data, TrainConfig(train_way=2, val_way=2, val_query=2, val_episodes=2), resident="yes")
    assert tiny_image_encoder.resident(data.items, "cpu", max_bytes=1000) is None  # does not fit
    store = tiny_image_encoder.resident(data.items, "cpu")
    assert store.nbytes == len(data.items) * 28 * 28 * 4
    with pytest.raises(TypeError, match="same resident inputs"):
        store.take([0]) + tiny_image_encoder.resident(data.items[:2], "cpu")


def test_non_finite_loss_names_its_step(tiny_image_encoder):
    data = _omniglot_like()
    learner = create_learner("protonet", tiny_image_encoder)
    trainer = Trainer(learner, data, TrainConfig(steps=3, lr=1e-3, train_way=2, val_way=2, val_query=2,
                                                 val_episodes=2))
    trainer.train_steps(1)
    with torch.no_grad():
        learner.module.log_temperature.fill_(float("inf"))
    with pytest.raises(FloatingPointError, match="at step 1; lower --lr"):
        trainer.train_steps(2)


def test_class_names_join_training_and_validation_support_sets(tiny_image_encoder):
    """train.class_names: each class's description is one more support example in training episodes
    (resident or raw: the same losses) and in validation; undescribed classes are refused up front."""
    data = _omniglot_like()
    rng = np.random.default_rng(3)
    data.class_items = {c: (rng.random((35, 35)) < 0.5).astype(np.uint8) * 255 for c in data.classes}
    enc = lambda: create_encoder("conv4", hidden=8, invert=True)  # noqa: E731
    kw = dict(train_way=4, train_shot=1, train_query=2)
    raw, _ = _losses("protonet", data, False, enc, class_names=True, **kw)
    res, _ = _losses("protonet", data, True, enc, class_names=True, **kw)
    plain, _ = _losses("protonet", data, False, enc, **kw)
    np.testing.assert_allclose(res, raw, rtol=1e-5, atol=1e-6)
    assert not np.allclose(raw, plain)  # the descriptions changed every episode's prototypes

    torch.manual_seed(0)
    learner = create_learner("protonet", enc())
    trainer = Trainer(learner, data, TrainConfig(steps=1, train_way=4, val_way=2, val_query=2, val_episodes=3,
                                                 class_names=True), resident=False)
    seen = []
    original = learner.episode_loss
    learner.episode_loss = lambda sx, sy, qx, qy: seen.append((list(sx), sy.tolist())) or original(sx, sy, qx, qy)
    trainer.train_steps(1)
    (sx, sy), = seen
    ep = trainer.sampler.sample(0)
    assert sy == ep.support_labels.tolist() + [0, 1, 2, 3]  # one description per class, after the examples
    for got, c in zip(sx[-4:], ep.classes):
        assert np.array_equal(got, data.class_items[c])
    with torch.no_grad():
        learner.module.eval()
        expected = evaluate(learner, data, trainer.val_episodes, progress=False, class_names=True).mean
    assert trainer.validate()[0] == pytest.approx(expected)

    del data.class_items["c5"]  # a val class without a description
    with pytest.raises(ValueError, match="gives no description of class 'c5'"):
        Trainer(learner, data, TrainConfig(train_way=2, val_way=2, val_query=2, val_episodes=2, class_names=True))
    with pytest.raises(ValueError, match="trains on plain batches; drop --class-names"):
        Trainer(create_learner("finetune", enc()), data, TrainConfig(class_names=True, batch_size=4))


def test_include_val_trains_a_final_model_on_train_and_val_classes(tiny_image_encoder, tmp_path):
    """train.include_val: the val classes join the training episodes (the test classes never do), nothing
    validates, the latest step is the checkpoint, and the checkpoint refuses val-class scoring."""
    from click.testing import CliRunner

    from fewshot.checkpoint import trained_classes
    from fewshot.cli import main
    from fewshot.data import with_val_as_train

    data = _omniglot_like()
    learner = create_learner("protonet", tiny_image_encoder)
    cfg = TrainConfig(steps=4, eval_every=2, patience=1, lr=1e-3, train_way=3, train_query=2, include_val=True)
    trainer = Trainer(learner, data, cfg, out_dir=tmp_path / "final")
    assert trainer.train_classes == ["c0", "c1", "c2", "c3", "c4", "c5"] and trainer.val_episodes == []
    seen = set().union(*(trainer.sampler.sample(i).classes for i in range(40)))
    assert seen == {"c0", "c1", "c2", "c3", "c4", "c5"}  # val classes train; test classes c6, c7 never do
    metrics = trainer.fit()
    assert metrics["steps"] == 4 and metrics["best_step"] == 4 and not metrics["stopped_early"]
    assert metrics["best_val_accuracy"] is None
    log = [json.loads(ln) for ln in (tmp_path / "final" / "train_log.jsonl").read_text().splitlines()]
    assert [(e["step"], e["val_accuracy"], e["best_step"]) for e in log] == [(2, None, 2), (4, None, 4)]
    saved = load_learner(tmp_path / "final")
    for k, v in learner.module.state_dict().items():  # the checkpoint is the last step, not a "best" one
        assert torch.equal(v, saved.module.state_dict()[k]), k
    assert trained_classes(tmp_path / "final") == ("train", "val")

    # a validated run's checkpoint trained on the train classes alone
    Trainer(create_learner("protonet", create_encoder("conv4", hidden=8)), data,
            TrainConfig(steps=1, eval_every=1, train_way=3, val_way=2, val_query=2, val_episodes=1),
            out_dir=tmp_path / "validated").fit()
    assert trained_classes(tmp_path / "validated") == ("train",)

    res = CliRunner().invoke(main, ["run", "--checkpoint", str(tmp_path / "final"), "--dataset", "omniglot-small1",
                                    "--classes", "val"])
    assert res.exit_code == 2 and "trained on the val classes too" in res.output and "--classes test" in res.output
    from fewshot.benchmark.config import BenchConfig

    with pytest.raises(ValueError, match="--classes all would score classes it learned"):
        BenchConfig(datasets=["omniglot-small1"], classes="all", learners=[{"checkpoint": str(tmp_path / "final")}])
    assert BenchConfig(datasets=["omniglot-small1"], learners=[{"checkpoint": str(tmp_path / "final")}]).classes == "test"
    with pytest.raises(ValueError, match="no val classes to train on"):
        with_val_as_train(FewShotDataset("t", "text", ["x", "y"], ["a", "b"], splits={"train": ["a"]}))
