"""`fewshot run` and `fewshot episodes make` on tagged data: the task comes from the dataset."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from fewshot.cli import main


@pytest.fixture
def conll(tmp_path):
    """A user's CoNLL file: 12 sentences, each one entity of type a, b or c (BIO)."""
    lines = []
    for i in range(12):
        t = "abc"[i % 3]
        lines += [f"the\tO", f"name{i}\tB-{t}", f"part{i}\tI-{t}", "said\tO", ""]
    p = tmp_path / "toy.conll"
    p.write_text("\n".join(lines) + "\n")
    return p


def test_run_ner_json_and_frozen_episodes(conll, tmp_path, tiny_text_model_dir):
    runner = CliRunner()
    args = ["--dataset", str(conll), "--classes", "all", "--way", "2", "--shot", "1", "--episodes", "4"]
    res = runner.invoke(main, ["run", *args, "--encoder", str(tiny_text_model_dir), "--json", "--quiet"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert d["task"] == "ner" and d["learner"] == "protobert" and d["episodes"] == 4
    assert d["sampler"] == "greedy-types" and 0 <= d["f1"] <= 1 and d["gold"] >= 4  # each query has >= 1 per type
    out = tmp_path / "eps.jsonl"
    made = runner.invoke(main, ["episodes", "make", *args, "--out", str(out)])
    assert made.exit_code == 0, made.output
    res2 = runner.invoke(main, ["run", "--dataset", str(conll), "--episodes-file", str(out), "--learner", "nnshot",
                                "--encoder", str(tiny_text_model_dir), "--json", "--quiet", "--report"])
    assert res2.exit_code == 0, res2.output
    d2 = json.loads(res2.output)
    assert d2["episodes"] == 4 and d2["gold"] == d["gold"]  # the same frozen tasks
    assert set(d2["type_report"]) <= {"a", "b", "c"}



def test_no_cache_embeds_every_episode_afresh(conll, tmp_path, tiny_text_model_dir):
    """--no-cache on tagged data: each episode's sentences are embedded anew (before, the flag was ignored and
    each sentence embedded once); the same spans are found."""
    runner = CliRunner()
    out = tmp_path / "eps.jsonl"
    made = runner.invoke(main, ["episodes", "make", "--dataset", str(conll), "--classes", "all", "--way", "2",
                                "--shot", "1", "--episodes", "4", "--out", str(out)])
    assert made.exit_code == 0, made.output
    eps = [e for e in map(json.loads, out.read_text().splitlines()) if "support" in e]
    args = ["run", "--dataset", str(conll), "--episodes-file", str(out), "--encoder", str(tiny_text_model_dir),
            "--json", "--quiet"]
    cached, fresh = (runner.invoke(main, args + extra) for extra in ([], ["--no-cache"]))
    assert cached.exit_code == 0 and fresh.exit_code == 0, cached.output + fresh.output
    cached, fresh = json.loads(cached.output), json.loads(fresh.output)
    assert cached["embedded_examples"] == len({i for e in eps for i in e["support"] + e["query"]}) < 16
    assert fresh["embedded_examples"] == sum(len(e["support"]) + len(e["query"]) for e in eps) == 16
    assert [fresh[k] for k in ("correct", "predicted", "gold")] == [cached[k] for k in ("correct", "predicted", "gold")]

def test_bad_tagged_file_exits_2_naming_the_line(tmp_path):
    p = tmp_path / "bad.conll"
    p.write_text("the\tO\nname\n")
    res = CliRunner().invoke(main, ["run", "--dataset", str(p), "--classes", "all", "--quiet"])
    assert res.exit_code == 2 and "bad.conll:2: expected `token<TAB>tag`" in res.output


def test_query_flag_is_refused_for_ner(conll):
    res = CliRunner().invoke(main, ["run", "--dataset", str(conll), "--classes", "all", "--query", "5", "--quiet"])
    assert res.exit_code == 2 and "--query 5 does not apply to NER data" in res.output


def test_run_fewnerd_with_structshot(shared_data, monkeypatch):
    import math

    monkeypatch.setenv("FEWSHOT_DATA", str(shared_data))
    res = CliRunner().invoke(main, ["run", "--dataset", "fewnerd-inter", "--learner", "structshot", "--episodes", "3",
                                    "-L", "temperature=0.5", "--json", "--quiet"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert d["learner"] == "structshot" and d["episodes"] == 3 and d["sampler"] == "greedy-types"
    assert math.isfinite(d["f1"]) and 0 <= d["f1"] <= 1 and d["gold"] > 0


def test_structshot_needs_training_types(shared_data, monkeypatch):
    monkeypatch.setenv("FEWSHOT_DATA", str(shared_data))
    res = CliRunner().invoke(main, ["run", "--dataset", "wnut17", "--way", "2", "--learner", "structshot",
                                    "--episodes", "1", "--quiet"])
    assert res.exit_code == 2 and "structshot estimates its transitions on the training types" in res.output
    bad = CliRunner().invoke(main, ["run", "--dataset", "wnut17", "--learner", "structshot", "-L", "temperature=0",
                                    "--quiet"])
    assert bad.exit_code == 2 and "temperature must be > 0" in bad.output


def test_snips_domain_with_the_minimum_including_sampler(shared_data, monkeypatch, tiny_text_model_dir):
    monkeypatch.setenv("FEWSHOT_DATA", str(shared_data))
    base = ["run", "--dataset", "snips-addtoplaylist", "--way", "5", "--shot", "1", "--episodes", "2",
            "--encoder", str(tiny_text_model_dir), "--json", "--quiet"]
    res = CliRunner().invoke(main, [*base, "--sampler", "minimum-including"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert d["dataset"] == "snips-addtoplaylist" and d["episodes"] == 2 and d["gold"] >= 10  # 5 slots, K >= 1, x2
    variable = CliRunner().invoke(main, [*base, "--sampler", "variable"])
    assert variable.exit_code == 2 and "--sampler variable does not apply to NER data" in variable.output
