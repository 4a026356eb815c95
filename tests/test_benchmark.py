"""fewshot.benchmark: CI formula, report schema, resume, frozen episodes, the Omniglot protocol scorer."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from fewshot import benchmark
from fewshot.benchmark import (BenchConfig, BenchmarkReport, compare_cell, protocol_errors, run_benchmark,
                               score_cell)
from fewshot.checkpoint import read_record
from fewshot.data import FewShotDataset
from fewshot.episodes import Episode
from fewshot.evaluation import mean_ci95


def tiny_config(model_dir, episodes_dir, **kw) -> BenchConfig:
    d = {"name": "tiny", "datasets": ["wn33"], "ways": [3], "shots": [1, 2], "query": 2, "episodes": 4,
         "seed": 3, "device": "cpu", "episodes_dir": str(episodes_dir),
         "learners": [{"label": "tiny", "encoder": str(model_dir)}]}
    d.update(kw)
    return BenchConfig.from_dict(d)


# ----------------------------------------------------------------------------- CI formula


def test_mean_ci95_matches_hand_computation():
    # mean 0.675; squared deviations 0.030625 + 0.000625 + 0.050625 + 0.005625 = 0.0875;
    # s = sqrt(0.0875 / 3) = 0.1707825; CI = 1.96 * s / sqrt(4) = 0.1673669
    mean, ci = mean_ci95([0.5, 0.7, 0.9, 0.6])
    assert mean == pytest.approx(0.675, abs=1e-12)
    assert ci == pytest.approx(1.96 * math.sqrt(0.0875 / 3) / 2, abs=1e-12)
    assert ci == pytest.approx(0.1673669, abs=1e-7)


def test_mean_ci95_single_episode_has_no_interval_and_empty_raises():
    mean, ci = mean_ci95([0.8])
    assert mean == 0.8 and math.isnan(ci)
    with pytest.raises(ValueError, match="no episodes"):
        mean_ci95([])


# ----------------------------------------------------------------------------- config


def test_bench_config_rejects_unknown_keys_with_suggestion():
    with pytest.raises(ValueError, match=r"unknown config key 'shot'.*Did you mean 'shots'"):
        BenchConfig.from_dict({"shot": [1]})
    with pytest.raises(ValueError, match=r"learners\[0\]\.'encodr'.*Did you mean 'encoder'"):
        BenchConfig.from_dict({"learners": [{"encodr": "minilm"}]})


def test_bench_config_rejects_duplicate_labels_and_bad_shapes():
    with pytest.raises(ValueError, match="labels must be unique"):
        BenchConfig.from_dict({"learners": [{"label": "a"}, {"label": "a"}]})
    with pytest.raises(ValueError, match="--shot must be at least 1, got 0"):
        BenchConfig.from_dict({"shots": [0]})
    with pytest.raises(ValueError, match="unknown learner 'protonett'"):
        BenchConfig.from_dict({"learners": [{"learner": "protonett"}]})


def test_bench_config_fills_learner_defaults_and_label():
    cfg = BenchConfig.from_dict({"learners": [{"encoder": "minilm"}, {"learner": {"name": "protonet",
                                                                                  "metric": "cosine"}}]})
    assert [x.label for x in cfg.learners] == ["protonet-minilm", "protonet-default-encoder"]
    assert cfg.learners[0].learner["name"] == "protonet" and cfg.learners[0].learner["metric"] is None  # the encoder's
    assert cfg.learners[1].learner["metric"] == "cosine"
    assert BenchConfig.from_dict(cfg.to_dict()).to_dict() == cfg.to_dict()


# ----------------------------------------------------------------------------- runs on wn33 with a tiny encoder


def test_report_json_schema_and_files(tiny_text_model_dir, tmp_path):
    cfg = tiny_config(tiny_text_model_dir, tmp_path / "episodes")
    report = run_benchmark(cfg, tmp_path / "out", progress=False, command="fewshot bench --config x")
    d = json.loads((tmp_path / "out" / "report.json").read_text())
    assert d == json.loads(json.dumps(report.to_dict()))
    top = {"format": str, "config": dict, "config_sha256": str, "provenance": dict, "cells": list,
           "wall_time_s": float, "started_at": str, "updated_at": str, "complete": bool}
    for key, tp in top.items():
        assert isinstance(d[key], tp), key
    assert d["format"] == "fewshot-bench/1" and d["complete"] is True
    prov = d["provenance"]
    assert prov["fewshot_version"] == "0.1.0"
    assert len(prov["git"]["commit"]) == 40
    assert {"torch", "transformers", "faiss-cpu", "numpy", "python"} <= set(prov["libraries"])
    assert prov["machine"]["device"] == "cpu"
    cell_types = {"key": str, "config_hash": str, "dataset": str, "dataset_fingerprint": str, "learner": str,
                  "encoder": str, "encoder_fingerprint": str, "way": int, "shot": int, "query": int,
                  "episodes": int, "seed": int, "episodes_file": str, "episodes_sha256": str,
                  "accuracy_mean": float, "accuracy_ci95": float, "accuracies": list, "seconds": float,
                  "seconds_per_episode": float, "embedded_examples": int, "deterministic": bool,
                  "protocol": bool, "published": list}
    assert [c["key"] for c in d["cells"]] == ["wn33/tiny/3w1s", "wn33/tiny/3w2s"]
    for c in d["cells"]:
        for key, tp in cell_types.items():
            assert isinstance(c[key], tp), (key, c[key])
        assert len(c["accuracies"]) == 4 and c["seed"] == 3 and c["deterministic"] is True
        assert c["accuracy_mean"] == pytest.approx(np.mean(c["accuracies"]))
        assert (c["accuracy_mean"], c["accuracy_ci95"]) == pytest.approx(mean_ci95(c["accuracies"]))
        assert len(c["episodes_sha256"]) == 64 and c["published"] == []
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| wn33 | tiny | 3-way 1-shot, 2 q | 4 |" in md and "Command: `fewshot bench --config x`" in md
    for png in ("accuracy_vs_shot.png", "accuracy_by_dataset.png"):
        assert (tmp_path / "out" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_frozen_episodes_identical_across_runs_and_reused(tiny_text_model_dir, tmp_path):
    a = run_benchmark(tiny_config(tiny_text_model_dir, tmp_path / "ep-a"), None, progress=False)
    b = run_benchmark(tiny_config(tiny_text_model_dir, tmp_path / "ep-b"), None, progress=False)
    files = sorted(p.name for p in (tmp_path / "ep-a").iterdir())
    assert files == ["wn33-3w1s2q-4ep-seed3.jsonl", "wn33-3w2s2q-4ep-seed3.jsonl"]
    for name in files:
        assert (tmp_path / "ep-a" / name).read_bytes() == (tmp_path / "ep-b" / name).read_bytes()
    assert [c["episodes_sha256"] for c in a.cells] == [c["episodes_sha256"] for c in b.cells]
    assert [c["accuracies"] for c in a.cells] == [c["accuracies"] for c in b.cells]
    # A rerun reads the existing file instead of writing it again.
    before = {n: (tmp_path / "ep-a" / n).stat().st_mtime_ns for n in files}
    run_benchmark(tiny_config(tiny_text_model_dir, tmp_path / "ep-a"), None, progress=False)
    assert {n: (tmp_path / "ep-a" / n).stat().st_mtime_ns for n in files} == before
    # Another seed gives other episodes.
    c = run_benchmark(tiny_config(tiny_text_model_dir, tmp_path / "ep-a", seed=4), None, progress=False)
    assert c.cells[0]["episodes_sha256"] != a.cells[0]["episodes_sha256"]


def test_changed_data_under_a_frozen_file_is_refused(tiny_text_model_dir, tmp_path):
    cfg = tiny_config(tiny_text_model_dir, tmp_path / "ep", shots=[1])
    run_benchmark(cfg, None, progress=False)
    path = tmp_path / "ep" / "wn33-3w1s2q-4ep-seed3.jsonl"
    lines = path.read_text().splitlines()
    header = json.loads(lines[0])
    header["dataset_fingerprint"] = "0000000000000000"
    path.write_text("\n".join([json.dumps(header)] + lines[1:]) + "\n")
    with pytest.raises(ValueError, match="fingerprint 0000000000000000 .* the data changed: delete the file"):
        run_benchmark(cfg, None, progress=False)


def test_resume_after_keyboard_interrupt(tiny_text_model_dir, tmp_path, monkeypatch):
    cfg = tiny_config(tiny_text_model_dir, tmp_path / "episodes")
    out = tmp_path / "out"
    real_run_cell = benchmark.runner.run_cell
    calls = []

    def interrupt_after_first(cfg_, cell, res, progress=True):
        if calls:
            raise KeyboardInterrupt
        calls.append(cell.key)
        return real_run_cell(cfg_, cell, res, progress)

    monkeypatch.setattr(benchmark.runner, "run_cell", interrupt_after_first)
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(cfg, out, progress=False)
    saved = BenchmarkReport.load(out)
    assert [c["key"] for c in saved.cells] == ["wn33/tiny/3w1s"] and saved.complete is False
    first = saved.cells[0]

    recomputed = []

    def counting(cfg_, cell, res, progress=True):
        recomputed.append(cell.key)
        return real_run_cell(cfg_, cell, res, progress)

    monkeypatch.setattr(benchmark.runner, "run_cell", counting)
    report = run_benchmark(cfg, out, progress=False)
    assert recomputed == ["wn33/tiny/3w2s"]
    assert report.complete and [c["key"] for c in report.cells] == ["wn33/tiny/3w1s", "wn33/tiny/3w2s"]
    assert report.cells[0] == first  # reused as saved, finished_at included
    # A changed config (another seed) invalidates the saved cells: both are recomputed.
    recomputed.clear()
    run_benchmark(tiny_config(tiny_text_model_dir, tmp_path / "episodes", seed=5), out, progress=False)
    assert recomputed == ["wn33/tiny/3w1s", "wn33/tiny/3w2s"]


# ----------------------------------------------------------------------------- check


def _cell(acc, ci=0.05, deterministic=True, sha="a" * 64):
    return {"key": "d/l/5w1s", "accuracy_mean": float(np.mean(acc)), "accuracy_ci95": ci, "accuracies": acc,
            "deterministic": deterministic, "episodes_sha256": sha}


def test_compare_cell_exact_within_ci_and_changed_episodes():
    assert compare_cell(_cell([0.5, 1.0]), _cell([0.5, 1.0])).ok
    diff = compare_cell(_cell([0.5, 1.0]), _cell([0.5, 0.9]))
    assert not diff.ok and diff.how == "exact" and diff.message == "1 of 2 episodes differ"
    near = compare_cell(_cell([0.5, 1.0], deterministic=False), _cell([0.5, 0.95], deterministic=False))
    assert near.ok and near.how == "within CI"
    far = compare_cell(_cell([0.5, 1.0], deterministic=False), _cell([0.5, 0.8], deterministic=False))
    assert not far.ok and "> CI 5.00" in far.message
    moved = compare_cell(_cell([0.5, 1.0]), _cell([0.5, 1.0], sha="b" * 64))
    assert not moved.ok and "episode file changed" in moved.message


# ----------------------------------------------------------------------------- Omniglot protocol scorer


class AnswerKeyLearner:
    """A fake learner whose prediction for each query item is fixed in advance."""

    adapts_encoder = True

    def __init__(self, predictions: dict[str, int], n_way: int):
        self.predictions, self.n_way = predictions, n_way

    def adapt(self, support_x, support_y):
        self.support = list(support_x)

    def logits(self, query_x):
        out = torch.zeros(len(query_x), self.n_way)
        out[torch.arange(len(query_x)), torch.tensor([self.predictions[q] for q in query_x])] = 1.0
        return out


def hand_made_runs():
    """Two 4-way 1-shot runs; the answer key maps test item i of a run to the training item of its class.

    Run 0 has answer key [2, 0, 3, 1] and run 1 [1, 1, 0, 3] (two test items share a class);
    the learner gets run 0's items 1 and 3 and run 1's item 2 wrong: 3 errors in 8 test items.
    """
    items, labels, episodes, predictions = [], [], [], {}
    keys = [[2, 0, 3, 1], [1, 1, 0, 3]]
    preds = [[2, 1, 3, 0], [1, 1, 2, 3]]
    for r, (key, pred) in enumerate(zip(keys, preds)):
        train = [len(items) + j for j in range(4)]
        items += [f"run{r}-train{j}" for j in range(4)]
        labels += [f"r{r}c{j}" for j in range(4)]
        test = [len(items) + i for i in range(4)]
        items += [f"run{r}-test{i}" for i in range(4)]
        labels += [f"r{r}c{k}" for k in key]
        predictions.update({f"run{r}-test{i}": p for i, p in enumerate(pred)})
        episodes.append(Episode(index=r, classes=tuple(f"r{r}c{j}" for j in range(4)),
                                support=np.asarray(train), support_labels=np.arange(4),
                                query=np.asarray(test), query_labels=np.asarray(key)))
    data = FewShotDataset(name="omniglot-runs", modality="text", items=items, labels=labels)
    data.episodes = episodes
    return data, episodes, AnswerKeyLearner(predictions, 4)


def test_omniglot_scorer_counts_wrong_over_total():
    data, episodes, learner = hand_made_runs()
    scored = score_cell(learner, data, episodes, protocol=True, progress=False)
    assert (scored["errors"], scored["queries"]) == (3, 8)
    assert scored["error_rate"] == pytest.approx(3 / 8)
    assert scored["accuracies"] == [0.5, 0.75]
    assert scored["accuracy_mean"] == pytest.approx(1 - 3 / 8)
    assert protocol_errors([1.0, 0.0], episodes) == (4, 8)


def test_protocol_dataset_is_one_cell_with_published_figures(tmp_path, monkeypatch):
    from fewshot import datasets

    data, _, learner = hand_made_runs()
    datasets.list_datasets()  # import the real loaders first, so the fake below wins
    monkeypatch.setitem(datasets.DATASETS, "omniglot-runs", lambda root, **kw: data)
    monkeypatch.setattr(benchmark.BenchResources, "learner", lambda self, cell, run_cfg, modality: learner)
    cfg = BenchConfig.from_dict({"name": "runs", "datasets": ["omniglot-runs"], "ways": [5], "shots": [1, 5],
                                 "episodes_dir": str(tmp_path / "ep"), "device": "cpu",
                                 "learners": [{"label": "fake", "encoder": "minilm"}]})
    learner.encoder = type("E", (), {"name": "fake-encoder", "fingerprint": lambda self: "f" * 16})()
    learner.device = torch.device("cpu")
    report = run_benchmark(cfg, tmp_path / "out", progress=False)
    (cell,) = report.cells
    assert cell["key"] == "omniglot-runs/fake/protocol" and cell["protocol"] is True
    assert (cell["way"], cell["shot"], cell["query"], cell["episodes"]) == (4, 1, 1, 2)
    assert (cell["errors"], cell["queries"], cell["error_rate"]) == (3, 8, 0.375)
    assert cell["deterministic"] is False  # the fake learner "adapts its encoder"
    methods = {f["method"]: f["value"] for f in cell["published"]}
    assert methods["humans"] == 4.5 and methods["deep convnet (small1)"] == 24.0
    assert methods["BPL (background small2)"] == 4.0
    assert (tmp_path / "ep" / "omniglot-runs-protocol-2ep.jsonl").is_file()
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| omniglot-runs | fake | protocol | 2 | 62.50 +- " in md
    assert "| 37.50 (3/8) |" in md and "*published* 4.5% err humans; 4.3% err BPL (background small1);" in md


def test_resume_recomputes_a_cell_whose_episode_file_changed(tiny_text_model_dir, tmp_path, monkeypatch):
    cfg = tiny_config(tiny_text_model_dir, tmp_path / "episodes", shots=[1])
    out = tmp_path / "out"
    first = run_benchmark(cfg, out, progress=False).cells[0]
    path = tmp_path / "episodes" / "wn33-3w1s2q-4ep-seed3.jsonl"
    path.write_text(path.read_text().replace('"index":3', '"index": 3'))  # same episodes, other bytes
    recomputed = []
    real_run_cell = benchmark.runner.run_cell
    monkeypatch.setattr(benchmark.runner, "run_cell", lambda *a, **k: recomputed.append(1) or real_run_cell(*a, **k))
    again = run_benchmark(cfg, out, progress=False).cells[0]
    assert recomputed == [1]
    assert again["episodes_sha256"] != first["episodes_sha256"] and again["accuracies"] == first["accuracies"]


def test_published_figures_match_only_the_same_protocol():
    from fewshot.published import figures_for

    assert [(f.value, f.ci95) for f in figures_for("clinc150", 5, 1, False)] == [(95.6, 0.4)]
    assert [f.value for f in figures_for("huffpost", 5, 5, False)] == [64.9]
    assert figures_for("clinc150", 10, 1, False) == [] and figures_for("wn33", 5, 1, False) == []
    runs = figures_for("omniglot-runs", None, None, True)
    assert {f.method: f.value for f in runs}["Siamese net (full background)"] == 8.0
    assert all(f.metric == "error" and f.kind == "published" for f in runs) and len(runs) == 7


def test_checkpoint_learner_scores_like_the_saved_learner(tiny_text_model_dir, tmp_path):
    from fewshot.checkpoint import save_checkpoint
    from fewshot.encoders import create_encoder
    from fewshot.learners import create_learner

    torch.manual_seed(0)
    learner = create_learner("protonet", create_encoder(str(tiny_text_model_dir)))
    save_checkpoint(tmp_path / "ckpt", learner)
    cfg = tiny_config(tiny_text_model_dir, tmp_path / "ep", shots=[1],
                      learners=[{"label": "frozen", "encoder": str(tiny_text_model_dir)},
                                {"checkpoint": str(tmp_path / "ckpt")}])
    assert cfg.learners[1].label == "protonet-ckpt" and cfg.learners[1].learner["name"] == "protonet"
    frozen, ckpt = run_benchmark(cfg, None, progress=False).cells
    assert ckpt["checkpoint_sha256"] == read_record(tmp_path / "ckpt")["weights_sha256"]
    assert ckpt["encoder_fingerprint"] == frozen["encoder_fingerprint"] == learner.encoder.fingerprint()
    assert ckpt["accuracies"] == frozen["accuracies"]
    assert ckpt["config_hash"] != frozen["config_hash"]
