"""Joint intent + slot training (issue 20 item 7): the snips-joint reader, the weighted loss, the three metrics
on hand cases, and a 3-step `fewshot train` whose checkpoint loads back and predicts intents and slots."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from fewshot.checkpoint import load_learner
from fewshot.cli import main
from fewshot.config import FewShotConfig
from fewshot.datasets import load_dataset
from fewshot.experiment import run_experiment
from fewshot.joint_evaluation import evaluate_joint, joint_scores
from fewshot.learners import create_learner
from fewshot.utterances import IGNORE, JointDataset

SENTENCES = [("play", "jazz", "by", "miles", "davis"), ("weather", "in", "paris"), ("play", "some", "rock"),
             ("rain", "in", "new", "york", "tomorrow")]
TAGS = [("O", "B-genre", "O", "B-artist", "I-artist"), ("O", "O", "B-city"), ("O", "O", "B-genre"),
        ("O", "O", "B-city", "I-city", "B-time")]
INTENTS = ["PlayMusic", "GetWeather", "PlayMusic", "GetWeather"]


def _dataset() -> JointDataset:
    return JointDataset("toy", SENTENCES, TAGS, INTENTS, {"train": [0, 1], "val": [2], "test": [3]})


def test_targets_pack_the_intent_and_the_tags():
    ds = _dataset()
    assert ds.intent_names == ["GetWeather", "PlayMusic"]
    assert ds.tag_names == ["O", "B-artist", "I-artist", "B-city", "I-city", "B-genre", "I-genre", "B-time", "I-time"]
    rows = ds.targets([1, 0])
    assert rows.tolist() == [[0, 0, 0, 3, IGNORE, IGNORE], [1, 0, 5, 0, 1, 2]]


def test_joint_dataset_refuses_bad_input():
    with pytest.raises(ValueError, match="sentence of 3 words has 2 tags"):
        JointDataset("bad", [("a", "b", "c")], [("O", "O")], ["x"], {"train": [0]})
    with pytest.raises(ValueError, match="is not BIO"):
        JointDataset("bad", [("a",)], [("city",)], ["x"], {"train": [0]})
    with pytest.raises(ValueError, match="distinct sentence ids"):
        JointDataset("bad", [("a",)], [("O",)], ["x"], {"train": [0], "test": [0]})


def test_loss_is_the_weighted_sum_of_the_two_cross_entropies(tiny_text_encoder):
    ds = _dataset()
    learner = create_learner("joint", tiny_text_encoder, {"w_intent": 0.7, "w_slot": 0.3, "dropout": 0.0})
    learner.prepare_training(ds, None)
    ids = [0, 1, 3]
    y = torch.as_tensor(ds.targets(ids))
    loss = learner.batch_loss(ds.take(ids), y)
    with torch.no_grad():
        intent, slots = learner.forward(ds.take(ids))
    # by hand: mean over sentences of -log softmax at the gold intent; mean over all 13 words at the gold tag
    ce_intent = -np.mean([torch.log_softmax(intent[b], 0)[int(y[b, 0])].item() for b in range(3)])
    word_terms = [-torch.log_softmax(s[w], 0)[int(y[b, 1 + w])].item() for b, s in enumerate(slots)
                  for w in range(len(s))]
    assert len(word_terms) == 5 + 3 + 5
    assert loss.item() == pytest.approx(0.7 * ce_intent + 0.3 * np.mean(word_terms), rel=1e-5)
    assert loss.requires_grad
    only_slots = create_learner("joint", tiny_text_encoder, {"w_intent": 0.0, "dropout": 0.0})
    only_slots.prepare_training(ds, None)
    only_slots.module.load_state_dict(learner.module.state_dict())
    assert only_slots.batch_loss(ds.take(ids), y).item() == pytest.approx(np.mean(word_terms), rel=1e-5)
    assert only_slots.selection_metric == "slot_f1" and learner.selection_metric == "exact_match"


def test_joint_options_are_checked():
    with pytest.raises(ValueError, match="both 0"):
        create_learner("joint", None, {"w_intent": 0, "w_slot": 0})
    with pytest.raises(ValueError, match="w_slot must be a finite number >= 0"):
        create_learner("joint", None, {"w_slot": -1})


def test_exact_match_counts_by_hand():
    gold_tags = [("B-a", "I-a", "O"), ("O", "B-b"), ("O", "O")]
    pred_tags = [("B-a", "I-a", "O"),  # intent right, slots right: exact
                 ("O", "B-b"),  # slots right but the intent wrong: not exact
                 ("B-a", "O")]  # intent right, one spurious slot: not exact
    r = joint_scores(["x", "y", "x"], ["x", "x", "x"], gold_tags, pred_tags)
    assert r.exact.tolist() == [True, False, False]
    assert r.exact_match == pytest.approx(1 / 3) and r.intent_accuracy == pytest.approx(2 / 3)
    assert r.per_intent()["x"] == {"n": 2, "accuracy": 1.0, "precision": pytest.approx(2 / 3), "f1": 0.8,
                                   "exact_match": 0.5}


def test_slot_f1_of_a_hand_case():
    gold = [("B-city", "I-city", "O", "B-time"), ("O", "B-artist", "I-artist")]
    # sentence 1: the city span right, the time missed, a spurious artist; sentence 2: the artist cut short;
    # "I-artist" after "O" opens a chunk, as seqeval (conlleval) reads it
    pred = [("B-city", "I-city", "I-artist", "O"), ("O", "B-artist", "O")]
    r = joint_scores(["a", "a"], ["a", "a"], gold, pred)
    # correct 1 (city), predicted 3 (city, artist, artist[1..1]), gold 3 (city, time, artist): P = R = F1 = 1/3
    assert r.sentence_counts.sum(0).tolist() == [1, 3, 3]
    assert r.slot_f1 == pytest.approx(1 / 3)
    assert r.per_type()["city"]["f1"] == 1.0 and r.per_type()["artist"] == {
        "precision": 0.0, "recall": 0.0, "f1": 0.0, "correct": 0, "predicted": 2, "gold": 1}
    low, high = r.intervals()["slot_f1"]
    assert 0.0 <= low <= r.slot_f1 <= high <= 1.0
    assert r.summary()["ci95_method"].startswith("bootstrap over sentences")


def test_snips_joint_parts(shared_data):
    ds = load_dataset("snips-joint", shared_data)
    sizes = {k: len(v) for k, v in ds.parts.items()}
    assert sizes == {"train": 13084, "val": 700, "test": 700}  # Goo et al. 2018's SNIPS split sizes
    assert len(ds.intent_names) == 7 and len(ds.tag_names) == 1 + 2 * 39
    assert {ds.where(int(i)).split("/")[-1].split(":")[0] for i in ds.parts["test"]} == {
        f"validate_{n}.json" for n in ds.intent_names}
    assert all("_full.json" in ds.where(int(i)) for i in ds.parts["val"])
    assert np.bincount([ds.intent_names.index(ds.intents[int(i)]) for i in ds.parts["val"]]).tolist() == [100] * 7
    latin = [s for s in ds.sentences if any("é" in w for w in s)]  # train_PlayMusic_full.json is Latin-1
    assert latin and load_dataset("snips-joint", shared_data).fingerprint() == ds.fingerprint()


def _snips_folder(root):
    """A tiny SNIPS folder: 7 intents, 10 training and 3 test queries each, one slot type per intent."""
    from fewshot.datasets.ner import SNIPS_INTENTS

    folder = root / "snips"
    folder.mkdir(parents=True)
    for k, intent in enumerate(SNIPS_INTENTS):
        slot = f"slot{k}"
        for name, n in ((f"train_{intent}_full.json", 10), (f"validate_{intent}.json", 3)):
            queries = [{"data": [{"text": f"word{k} please "}, {"text": f"value{k} x{i}", "entity": slot},
                                 {"text": " now"}]} for i in range(n)]
            (folder / name).write_text(json.dumps({intent: queries}))
    return root


def test_fewshot_train_writes_a_joint_checkpoint_that_loads_and_predicts(tmp_path, tiny_text_model_dir):
    root = _snips_folder(tmp_path / "data")
    out = tmp_path / "ck"
    res = CliRunner().invoke(main, ["train", "--dataset", "snips-joint", "--data-root", str(root), "--encoder",
                                    str(tiny_text_model_dir), "--steps", "3", "--eval-every", "3", "--batch-size", "4",
                                    "--head-lr", "1e-2", "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "best validation exact_match" in res.output
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == [3] and log[0]["val_metric"] == "exact_match"
    config = json.loads((out / "config.json").read_text())
    assert config["learner"]["name"] == "joint" and config["train"]["steps"] == 3

    learner = load_learner(out)
    ds = load_dataset("snips-joint", root)
    test = ds.part_ids("test")
    intents, tags = learner.predict_joint(ds.take(test))
    assert set(intents) <= set(ds.intent_names) and len(intents) == 21
    assert [len(t) for t in tags] == [len(ds.sentences[int(i)]) for i in test]
    assert {t for seq in tags for t in seq} <= set(ds.tag_names)
    again = evaluate_joint(load_learner(out), ds, test)
    assert again.predicted_intents == intents  # the saved weights, read twice, predict alike

    res = CliRunner().invoke(main, ["run", "--dataset", "snips-joint", "--data-root", str(root), "--checkpoint",
                                    str(out), "--json", "--report", "--quiet"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert d["task"] == "joint" and d["part"] == "test" and d["sentences"] == 21
    assert d["intent_accuracy"] == pytest.approx(again.intent_accuracy)
    assert d["exact_match"] == pytest.approx(again.exact_match) and d["slot_f1"] == pytest.approx(again.slot_f1)
    assert set(d["intent_report"]) >= set(ds.intents[int(i)] for i in test)
    assert d["slot_gold"] == 21  # one slot per test query

    # episode flags would be ignored (the whole test split is scored): refused, even at their defaults
    res = CliRunner().invoke(main, ["run", "--dataset", "snips-joint", "--data-root", str(root), "--checkpoint",
                                    str(out), "--way", "5", "--shot", "1", "--quiet"])
    assert res.exit_code == 2, res.output
    assert "scored on its whole test split (21 sentences), not on episodes, so --way, --shot cannot apply" in res.output
    assert "fewshot run --dataset snips-<intent> --way W --shot K" in res.output
    cfg = FewShotConfig.from_dict({"data": {"dataset": "snips-joint", "data_root": str(root)}, "checkpoint": str(out),
                                   "episodes": {"episodes_file": "eps.jsonl"}})
    with pytest.raises(ValueError, match="so --episodes-file cannot apply; drop it"):
        run_experiment(cfg, progress=False)


def test_joint_data_errors_exit_2(tmp_path, tiny_text_model_dir):
    root = _snips_folder(tmp_path / "data")
    runner = CliRunner()
    res = runner.invoke(main, ["run", "--dataset", "snips-joint", "--data-root", str(root), "--quiet"])
    assert res.exit_code == 2 and "score a trained joint model, --checkpoint DIR" in res.output
    res = runner.invoke(main, ["episodes", "make", "--dataset", "snips-joint", "--data-root", str(root), "--out",
                               str(tmp_path / "eps.jsonl")])
    assert res.exit_code == 2 and "not on episodes" in res.output and not (tmp_path / "eps.jsonl").exists()
    out = tmp_path / "ck"
    res = runner.invoke(main, ["train", "--dataset", "snips-joint", "--data-root", str(root), "--learner", "protonet",
                               "--encoder", str(tiny_text_model_dir), "--steps", "1", "--out", str(out), "--quiet"])
    assert res.exit_code == 2 and "use --learner joint" in res.output
    assert not out.exists()
