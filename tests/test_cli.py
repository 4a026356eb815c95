"""`fewshot run` end to end on the embedded dataset with the real MiniLM, and its errors."""
from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from fewshot.cli import main


@pytest.fixture(scope="module")
def runner():
    return CliRunner()


def invoke(runner, *args):
    return runner.invoke(main, list(args), catch_exceptions=False)


def test_run_default_dataset_json_and_report_file(runner, tmp_path):
    res = invoke(runner, "run", "--way", "5", "--shot", "1", "--episodes", "40", "--json", "--quiet",
                 "--out", str(tmp_path / "out"))
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    for key in ("dataset", "learner", "encoder", "way", "shot", "query", "episodes", "seed",
                "accuracy_mean", "accuracy_ci95", "elapsed_s"):
        assert key in d
    assert (d["dataset"], d["learner"], d["encoder"]) == ("wn33", "protonet", "minilm")
    assert (d["way"], d["shot"], d["query"], d["episodes"], d["seed"]) == (5, 1, 15, 40, 0)
    # 5-way chance is 0.20; frozen MiniLM with its cosine metric measures 0.470 on WordNet supersense
    # glosses (600 episodes; 0.357 with --metric euclidean, the default before the metric was the encoder's).
    assert 0.40 < d["accuracy_mean"] < 0.54
    assert 0 < d["accuracy_ci95"] < 0.06
    saved = json.loads((tmp_path / "out" / "run.json").read_text())
    assert saved["accuracy_mean"] == d["accuracy_mean"]
    cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    assert cfg["episodes"]["episodes"] == 40 and cfg["fewshot_version"]


def test_config_file_then_flags(runner, tmp_path):
    conf = tmp_path / "c.toml"
    conf.write_text('[episodes]\nway = 3\nshot = 2\nquery = 4\nepisodes = 5\nseed = 11\n')
    res = invoke(runner, "run", "--config", str(conf), "--shot", "1", "--json", "--quiet")
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert (d["way"], d["shot"], d["query"], d["episodes"], d["seed"]) == (3, 1, 4, 5, 11)


def test_episodes_file_is_scored_exactly(runner, tmp_path):
    eps = tmp_path / "e.jsonl"
    res = invoke(runner, "episodes", "make", "--way", "4", "--shot", "1", "--query", "3", "--episodes", "6",
                 "--seed", "5", "--out", str(eps))
    assert res.exit_code == 0 and "wrote 6 episodes" in res.output
    a = json.loads(invoke(runner, "run", "--episodes-file", str(eps), "--json", "--quiet").stdout)
    b = json.loads(invoke(runner, "run", "--episodes-file", str(eps), "--json", "--quiet").stdout)
    c = json.loads(invoke(runner, "run", "--way", "4", "--shot", "1", "--query", "3", "--episodes", "6",
                          "--seed", "5", "--json", "--quiet").stdout)
    assert a["episodes"] == 6 and a["accuracy_mean"] == b["accuracy_mean"] == c["accuracy_mean"]
    assert a["episodes_in_file"] == 6
    # --episodes N scores the file's first N episodes (it was ignored: every episode was scored)
    first = json.loads(invoke(runner, "run", "--episodes-file", str(eps), "--episodes", "2", "--json", "--quiet").stdout)
    same = json.loads(invoke(runner, "run", "--way", "4", "--shot", "1", "--query", "3", "--episodes", "2",
                             "--seed", "5", "--json", "--quiet").stdout)
    assert first["episodes"] == 2 and first["episodes_in_file"] == 6
    assert first["accuracy_mean"] == same["accuracy_mean"] != a["accuracy_mean"]
    more = runner.invoke(main, ["run", "--episodes-file", str(eps), "--episodes", "7", "--quiet"])
    assert more.exit_code == 2 and "--episodes 7 asks for more episodes than episode file" in more.output
    assert "holds (6); pass --episodes 6 or fewer" in more.output


@pytest.mark.parametrize("args,message", [
    (["--way", "1"], "--way must be at least 2, got 1"),
    (["--way", "40"], "--way 40 needs 40 classes but only 15 are available"),
    (["--shot", "190"], "but class 'noun.act' has 200 examples"),
    (["--dataset", "clinc15"], "unknown dataset 'clinc15'"),
    (["--encoder", "resnet"], "unknown encoder 'resnet'"),
    (["--learner", "protonett"], "Did you mean 'protonet'"),
    (["--encoder", "conv4"], "encoder 'conv4' reads image but the dataset is text"),
    (["--metric", "manhattan"], "Invalid value for '--metric'"),
    (["--device", "tpu"], "--device must be auto, cpu or cuda"),
])
def test_bad_input_exit_code_2_and_one_clear_message(runner, args, message):
    res = runner.invoke(main, ["run", "--episodes", "2", "--quiet", *args])
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert "Traceback" not in res.output


def test_fixed_protocol_refuses_a_different_shape(runner):
    res = runner.invoke(main, ["run", "--dataset", "omniglot-runs", "--way", "7", "--quiet"])
    assert res.exit_code == 2
    assert "'omniglot-runs' is a fixed protocol of 20 episodes of 20-way 1-shot" in res.output
    assert "--way 7 was asked for; drop --way" in res.output


def test_catalog_commands_list_names(runner):
    names = invoke(runner, "datasets").output.split("\n")
    assert "wn33  (default, embedded)" in names and "clinc150" in names and "omniglot-runs" in names
    assert invoke(runner, "encoders").output.split() == ["conv4", "minilm", "mobilenetv2", "mpnet"]
    lines = invoke(runner, "learners").output.splitlines()
    names = ["decomposed", "finetune", "finetune-ner", "joint", "maml", "nnshot", "protobert", "protojoint", "protonet", "setfit",
             "structshot"]
    assert [line.split(":")[0] for line in lines] == names
    assert "transductive=0" in lines[names.index("protonet")] and "inner_steps=5" in lines[names.index("maml")]


def test_run_report_table_and_json_per_class(runner):
    args = ["run", "--way", "5", "--shot", "1", "--query", "4", "--episodes", "12", "--quiet", "--report"]
    d = json.loads(invoke(runner, *args, "--json").stdout)
    rep = d["class_report"]
    # every query of every episode is pooled once: 12 episodes x 5 classes x 4 queries
    assert rep["n"] == 12 * 5 * 4 == sum(row["support"] for row in rep["classes"])
    # equal-size episodes: pooled accuracy = mean episode accuracy = support-weighted recall
    assert rep["accuracy"] == pytest.approx(d["accuracy_mean"])
    assert rep["weighted_avg"]["recall"] == pytest.approx(d["accuracy_mean"])
    correct = sum(row["recall"] * row["support"] for row in rep["classes"])
    assert correct == pytest.approx(d["accuracy_mean"] * rep["n"])
    wrong = rep["n"] - round(correct)
    assert sum(c["count"] for c in rep["confusions"]) <= wrong and rep["confusions"][0]["count"] >= 1
    text = invoke(runner, *args).output
    assert f"accuracy {100 * d['accuracy_mean']:.2f}%" in text
    assert "precision  recall     f1  support" in text and "costliest confusions" in text
    for row in rep["classes"]:  # each class's row, as printed, matches the JSON
        assert f"{row['label']} {row['precision']:.3f} {row['recall']:.3f} {row['f1']:.3f} {row['support']}" \
            in " ".join(text.split())


def test_run_fewrel_pools_entities_by_default_and_pooling_flag_overrides(runner, tmp_path, shared_data):
    """FewRel's texts call for entity pooling; --pooling mean gives the plain sentence embedding."""
    got = {}
    for flags in ([], ["--pooling", "mean"], ["--pooling", "entities"]):
        out = tmp_path / ("-".join(flags) or "default")
        res = invoke(runner, "run", "--dataset", "fewrel", "--data-root", str(shared_data), "--episodes", "4",
                     "--json", "--quiet", "--out", str(out), *flags)
        assert res.exit_code == 0, res.output
        cfg = json.loads((out / "config.json").read_text())
        got[tuple(flags)] = (cfg["encoder_options"], json.loads(res.stdout))
    assert got[()][0] == {"pooling": "entities"} and got[("--pooling", "mean")][0] == {"pooling": "mean"}
    assert got[()][1]["encoder_fingerprint"] == got[("--pooling", "entities")][1]["encoder_fingerprint"]
    assert got[()][1]["encoder_fingerprint"] != got[("--pooling", "mean")][1]["encoder_fingerprint"]
    assert got[()][1]["accuracy_mean"] == got[("--pooling", "entities")][1]["accuracy_mean"]
    res = runner.invoke(main, ["run", "--pooling", "cls"])
    assert res.exit_code == 2 and "'cls' is not one of 'mean', 'entities'" in res.output


def test_run_class_names_adds_descriptions_and_refuses_undescribed_data(runner, shared_data):
    """--class-names: CLINC150's intent names join the support sets; HuffPost has none, exit 2."""
    got = {}
    for flags in ([], ["--class-names"]):
        res = invoke(runner, "run", "--dataset", "clinc150", "--data-root", str(shared_data), "--episodes", "5",
                     "--json", "--quiet", *flags)
        assert res.exit_code == 0, res.output
        got[tuple(flags)] = json.loads(res.stdout)
    plain, named = got[()], got[("--class-names",)]
    assert plain["class_names"] is False and named["class_names"] is True
    assert named["embedded_examples"] > plain["embedded_examples"]  # the episodes' intent names, once each
    assert named["accuracy_mean"] != plain["accuracy_mean"]
    res = runner.invoke(main, ["run", "--dataset", "huffpost", "--data-root", str(shared_data), "--class-names"])
    assert res.exit_code == 2 and "dataset 'huffpost' gives no class descriptions" in res.output


def test_threads_option_sets_torch_and_faiss_and_defaults_to_one_for_index(runner, monkeypatch):
    import faiss

    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("FEWSHOT_THREADS", "3")
        assert invoke(runner, "learners").exit_code == 0
        assert torch.get_num_threads() == 3 and faiss.omp_get_max_threads() == 3
        monkeypatch.delenv("FEWSHOT_THREADS")
        assert invoke(runner, "--threads", "2", "learners").exit_code == 0 and torch.get_num_threads() == 2
        assert runner.invoke(main, ["index", "--help"]).exit_code == 0
        assert torch.get_num_threads() == 1  # `fewshot index` answers one query at a time
        bad = runner.invoke(main, ["--threads", "0", "learners"])
        assert bad.exit_code == 2 and "--threads" in bad.output
    finally:
        torch.set_num_threads(before)
