"""``fewshot index``: create, add, predict, list, remove, calibrate; concurrent adds; exit code 2 on bad input."""
from __future__ import annotations

import json
import re
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from fewshot.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def ix(tmp_path, tiny_text_model_dir):
    """An index over the tiny random BERT (its folder is the encoder name), with two classes."""
    path = tmp_path / "ix"
    r = invoke("index", "create", path, "--encoder", tiny_text_model_dir, "--metric", "cosine")
    assert r.exit_code == 0, r.output
    assert "created an empty index" in r.output and "32-d, cosine" in r.output
    r = invoke("index", "add", path, "--label", "greet", "hello there", "hi friend", "good morning")
    assert r.exit_code == 0 and "added 3 examples: 1 new classes, 0 updated; the index holds 1 classes" in r.output
    r = invoke("index", "add", path, "--label", "travel", "book a flight", "a train to rome")
    assert r.exit_code == 0 and "the index holds 2 classes" in r.output
    return path


def listed(path) -> dict:
    r = invoke("index", "list", path, "--json")
    assert r.exit_code == 0, r.output
    return {c["label"]: c["count"] for c in json.loads(r.output)["classes"]}


def test_add_list_predict_remove(ix, tmp_path):
    assert listed(ix) == {"greet": 3, "travel": 2}
    r = invoke("index", "add", ix, "--label", "greet", "hey")  # an existing label: running mean, count grows
    assert "0 new classes, 1 updated" in r.output and listed(ix) == {"greet": 4, "travel": 2}
    csv = tmp_path / "more.csv"
    csv.write_text('text,label\n"play jazz, please",music\nnext song,music\nhowdy,greet\n')
    r = invoke("index", "add", ix, "--file", csv)
    assert r.exit_code == 0 and "added 3 examples: 1 new classes, 1 updated" in r.output
    jsonl = tmp_path / "more.jsonl"
    jsonl.write_text(json.dumps({"text": "rain tomorrow?", "label": "weather"}) + "\n")
    assert invoke("index", "add", ix, "--file", jsonl).exit_code == 0
    assert listed(ix) == {"greet": 5, "travel": 2, "music": 2, "weather": 1}
    # a support text is its own class's nearest prototype; top-k lists k distinct classes, best first
    r = invoke("index", "predict", ix, "--json", "--top-k", "3", "rain tomorrow?", "play jazz, please")
    rows = [json.loads(line) for line in r.output.splitlines()]
    assert [row["label"] for row in rows] == ["weather", "music"]
    assert all(len(row["top_k"]) == 3 and row["top_k"][0]["score"] == row["score"] for row in rows)
    assert all(row["top_k"][0]["score"] >= row["top_k"][1]["score"] >= row["top_k"][2]["score"] for row in rows)
    r = invoke("index", "predict", ix, "rain tomorrow?")
    assert r.exit_code == 0 and r.output.startswith("weather\t") and r.output.rstrip().endswith("\train tomorrow?")
    texts = tmp_path / "q.txt"
    texts.write_text("rain tomorrow?\nnext song\n")
    r = invoke("index", "predict", ix, "--file", texts)
    assert [line.split("\t")[0] for line in r.output.splitlines()] == ["weather", "music"]
    r = invoke("index", "remove", ix, "--label", "music", "--label", "weather")
    assert r.exit_code == 0 and "removed 2 classes; the index holds 2 classes" in r.output
    assert listed(ix) == {"greet": 5, "travel": 2}
    r = invoke("index", "list", ix)
    assert r.output.splitlines() == [r.output.splitlines()[0], "5\tgreet", "2\ttravel"]
    assert r.output.startswith("# 2 classes, 7 examples; encoder")


def test_calibrate_and_unknown_answers(ix, tmp_path):
    held = tmp_path / "held.csv"
    held.write_text("text,label\nhello there,greet\nbook a flight,travel\nzzzz qqqq xxxx,oos\n")
    r = invoke("index", "calibrate", ix, "--file", held, "--target-precision", "1.0")
    assert r.exit_code == 0, r.output
    assert "precision 1.000, in-scope accuracy 1.000" in r.output and "(2 in-scope, 1 out-of-scope" in r.output
    meta = json.loads(invoke("index", "list", ix, "--json").output)
    assert meta["threshold"] is not None
    r = invoke("index", "predict", ix, "--json", "hello there")
    assert json.loads(r.output)["label"] == "greet"


def test_images_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    folder = tmp_path / "imgs"
    for k, name in enumerate(["dark", "light"]):
        (folder / name).mkdir(parents=True)
        for i in range(2):
            pixels = np.clip(rng.normal(40 + 170 * k, 10, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / name / f"{i}.png")
    path = tmp_path / "ix"
    assert invoke("index", "create", path, "--encoder", "mobilenetv2").exit_code == 0
    r = invoke("index", "add", path, "--images", folder)
    assert r.exit_code == 0, r.output
    assert listed(path) == {"dark": 2, "light": 2}
    before = {p.name: p.read_bytes() for p in path.iterdir()}
    (tmp_path / "t.csv").write_text("text,label\nhello,greet\n")
    for args in (["predict", path, "some text"], ["add", path, "--label", "x", "some text"],
                 ["add", path, "--file", tmp_path / "t.csv"]):  # texts given to an image index
        r = CliRunner().invoke(main, ["index", *map(str, args)])
        assert r.exit_code == 2 and f"the index in {path} reads images (encoder 'mobilenetv2'), but " in r.output, r.output
        assert "Traceback" not in r.output and ("--images FOLDER" in r.output or args[0] == "predict"), r.output
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before


def test_images_given_to_a_text_index_are_refused_naming_the_options_for_text(ix, tmp_path):
    from PIL import Image

    (tmp_path / "imgs" / "dark").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "imgs" / "dark" / "0.png")
    before = {p.name: p.read_bytes() for p in ix.iterdir()}
    r = CliRunner().invoke(main, ["index", "add", str(ix), "--images", str(tmp_path / "imgs")])
    assert r.exit_code == 2 and f"the index in {ix} reads text" in r.output and "images were given (--images)" \
        in r.output and "--label NAME TEXT... or --file F" in r.output, r.output
    assert {p.name: p.read_bytes() for p in ix.iterdir()} == before


def test_concurrent_adds_lose_no_class(ix, tiny_text_model_dir):
    env = {**os.environ, "PYTHONPATH": ROOT, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "fewshot.cli", "index", "add", str(ix), "--label", f"c{i}",
                               f"example {i} one", f"example {i} two"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(3)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [o[1][-500:] for o in outs]
    assert listed(ix) == {"greet": 3, "travel": 2, "c0": 2, "c1": 2, "c2": 2}


@pytest.mark.parametrize("args, message", [
    (["add", "{ix}"], "give exactly one source of examples"),
    (["add", "{ix}", "hello"], "TEXT arguments need --label NAME"),
    (["add", "{ix}", "--label", "x", "--file", "{tmp}/a.csv"], "--label goes with TEXT arguments"),
    (["add", "{ix}", "--file", "{tmp}/a.xlsx"], "expected a .csv, .tsv or .jsonl file"),
    (["add", "{ix}", "--file", "{tmp}/missing.csv"], "no such file"),
    (["add", "{ix}", "--label", "", "x"], "TEXT arguments need --label NAME"),
    (["create", "{ix}"], "already holds an index"),
    (["create", "{tmp}/new", "--encoder", "minilmm"], "Did you mean 'minilm'"),
    (["predict", "{ix}"], "give the texts to classify as arguments or with --file"),
    (["predict", "{ix}", "x", "--top-k", "3"], r"--top-k must be from 1 to the number of classes \(2\), got 3"),
    (["remove", "{ix}", "--label", "nope"], r"unknown class\(es\) \['nope'\]"),
    (["list", "{tmp}"], "holds no manifest.json: it is not a fewshot index folder"),
    (["calibrate", "{ix}", "--file", "{tmp}/held.csv", "--target-precision", "2"], "target_precision must be in"),
])
def test_bad_input_exits_2_with_a_clear_message(ix, tmp_path, args, message):
    import re

    (tmp_path / "held.csv").write_text("text,label\nhello there,greet\n")
    r = invoke("index", *[a.format(ix=ix, tmp=tmp_path) for a in args])
    assert r.exit_code == 2, r.output
    assert re.search(message, r.output), r.output


def test_predict_on_an_empty_index_says_to_add_first(tmp_path, tiny_text_model_dir):
    path = tmp_path / "ix"
    invoke("index", "create", path, "--encoder", tiny_text_model_dir)
    assert listed(path) == {}
    r = invoke("index", "predict", path, "hello")
    assert r.exit_code == 2 and "has no classes yet; add some first: fewshot index add" in r.output


def test_create_from_a_training_checkpoint(tmp_path, tiny_text_encoder):
    from fewshot.checkpoint import save_checkpoint
    from fewshot.learners import create_learner

    save_checkpoint(tmp_path / "ckpt", create_learner("protonet", tiny_text_encoder))
    path = tmp_path / "ix"
    r = invoke("index", "create", path, "--checkpoint", tmp_path / "ckpt")
    assert r.exit_code == 0 and "32-d, cosine" in r.output, r.output
    assert invoke("index", "add", path, "--label", "greet", "hello", "hi").exit_code == 0
    meta = json.loads((path / "manifest.json").read_text())["body"]["encoder"]
    assert meta["checkpoint"] == str(tmp_path / "ckpt") and meta["fingerprint"] == tiny_text_encoder.fingerprint()
    r = invoke("index", "create", tmp_path / "ix2", "--checkpoint", tmp_path / "ckpt", "--encoder", "minilm")
    assert r.exit_code == 2 and "give --encoder or --checkpoint, not both" in r.output


def test_create_refuses_an_encoder_without_fixed_weights(tmp_path):
    """conv4 has no pretrained weights: an index over it could never be opened by the next command."""
    r = invoke("index", "create", tmp_path / "ix", "--encoder", "conv4")
    assert r.exit_code == 2 and "encoder 'conv4' has no fixed weights" in r.output and "--checkpoint" in r.output
    assert not (tmp_path / "ix").exists()


def test_predict_log_correct_confirm_stats(ix, tmp_path):
    r = invoke("index", "predict", ix, "--json", "--log", "--top-k", "2", "book a flight", "hello there")
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.output.splitlines()]
    assert [(row["id"], row["label"]) for row in rows] == [(0, "travel"), (1, "greet")]
    logged = [json.loads(line) for line in (ix / "predictions.jsonl").read_text().splitlines()]
    manifest = json.loads((ix / "manifest.json").read_text())
    assert logged[0]["index"] == manifest["body"]["index_id"]
    assert logged[1]["query"] == "book a flight" and logged[1]["generation"] == manifest["generation"] == 3
    assert logged[1]["labels"] == [t["label"] for t in rows[0]["top_k"]]
    assert logged[1]["scores"] == [t["score"] for t in rows[0]["top_k"]]
    r = invoke("index", "predict", ix, "--log", "good morning")  # text output: the id comes first
    assert r.exit_code == 0 and r.output.startswith("2\tgreet\t")
    r = invoke("index", "confirm", ix, "--id", "0")
    assert r.exit_code == 0 and "prediction 0 ('travel') confirmed" in r.output
    r = invoke("index", "correct", ix, "--id", "1", "--label", "farewell")
    assert r.exit_code == 0 and "corrected to 'farewell': 'hello there' added to 'farewell'" in r.output
    assert listed(ix) == {"greet": 3, "travel": 2, "farewell": 1}
    r = invoke("index", "predict", ix, "--json", "hello there")  # the corrected query is now its own class
    assert json.loads(r.output)["label"] == "farewell" and "id" not in json.loads(r.output)
    r = invoke("index", "stats", ix, "--json")
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)
    assert (s["support"], s["predictions"], s["reviewed"], s["correct"], s["accuracy"], s["corrections"]) == \
        (6, 3, 2, 1, 0.5, 1)
    rows = {row["label"]: row for row in s["classes"]}
    assert (rows["greet"]["support"], rows["greet"]["predicted"], rows["greet"]["corrected"],
            rows["greet"]["unconfirmed"], rows["greet"]["accuracy"]) == (3, 2, 1, 1, 0.0)
    assert (rows["travel"]["confirmed"], rows["travel"]["accuracy"]) == (1, 1.0)
    assert (rows["farewell"]["support"], rows["farewell"]["predicted"], rows["farewell"]["corrected_to"]) == (1, 0, 1)
    r = invoke("index", "stats", ix)
    assert r.output.startswith("# 3 classes, 6 support examples; 3 logged predictions, 2 reviewed (1 corrected), "
                               "accuracy 0.500")
    assert "1\t0\t0\t0\t1\tn/a\tfarewell" in r.output.splitlines()


def test_stats_without_a_log_and_feedback_errors_exit_2_changing_nothing(ix, tmp_path, tiny_text_model_dir):
    r = invoke("index", "stats", ix, "--json")
    s = json.loads(r.output)
    assert r.exit_code == 0 and (s["support"], s["predictions"], s["accuracy"]) == (5, 0, None)
    assert not (ix / "predictions.jsonl").exists()
    assert invoke("index", "predict", ix, "--log", "hello there", "book a flight").exit_code == 0
    invoke("index", "confirm", ix, "--id", "0")
    other = tmp_path / "other"
    invoke("index", "create", other, "--encoder", tiny_text_model_dir)
    invoke("index", "add", other, "--label", "greet", "hello")
    (other / "predictions.jsonl").write_bytes((ix / "predictions.jsonl").read_bytes())

    def snapshot(path):  # lock sidecars (empty files) may appear; nothing else may change
        return {p.name: p.read_bytes() for p in path.iterdir() if p.is_file() and not p.name.endswith(".lock")}

    before = snapshot(ix), snapshot(other)
    for args, message in [
        (["correct", ix, "--id", "9", "--label", "greet"], r"holds no prediction id 9 \(its ids run from 0 to 1\)"),
        (["confirm", ix, "--id", "9"], "holds no prediction id 9"),
        (["correct", ix, "--id", "1", "--label", " "], "expected a class name, got the blank label ' '"),
        (["correct", ix, "--id", "0", "--label", "greet"], "prediction 0 already got a confirmation"),
        (["correct", other, "--id", "1", "--label", "greet"], "is the prediction log of index"),
        (["confirm", other, "--id", "1"], "is the prediction log of index"),
        (["predict", other, "--log", "hi"], "is the prediction log of index"),
        (["stats", other], "is the prediction log of index"),
        (["correct", ix, "--label", "greet"], "Missing option '--id'"),
    ]:
        r = invoke("index", *args)
        assert r.exit_code == 2 and re.search(message, r.output), (args, r.output)
    assert (snapshot(ix), snapshot(other)) == before


def test_predict_log_gives_an_index_saved_before_index_ids_an_identity(ix):
    from fewshot.store import _body_digest

    doc = json.loads((ix / "manifest.json").read_text())
    del doc["body"]["index_id"]
    doc["sha256"] = _body_digest(doc["body"])
    (ix / "manifest.json").write_text(json.dumps(doc))
    assert json.loads(invoke("index", "stats", ix, "--json").output)["index_id"] is None
    r = invoke("index", "predict", ix, "--log", "--json", "hello there")
    assert r.exit_code == 0 and json.loads(r.output)["id"] == 0
    doc = json.loads((ix / "manifest.json").read_text())
    header = json.loads((ix / "predictions.jsonl").read_text().splitlines()[0])
    assert doc["body"]["index_id"] and header["index"] == doc["body"]["index_id"] and doc["generation"] == 4


def test_a_refused_predict_log_creates_no_log(ix):
    for args in (["--top-k", "0", "hello"], ["   "]):
        r = invoke("index", "predict", ix, "--log", *args)
        assert r.exit_code == 2, r.output
        assert not (ix / "predictions.jsonl").exists()
