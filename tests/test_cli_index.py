"""``fewshot index``: create, add, predict, list, remove, calibrate; concurrent adds; exit code 2 on bad input."""
from __future__ import annotations

import json
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
    r = invoke("index", "predict", path, "some text")  # a text query against an image index
    assert r.exit_code == 2 and "reads images" in r.output


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
