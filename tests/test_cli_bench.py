"""`fewshot bench`: the shipped CI config runs and `--check` confirms it; mismatches exit 1."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from fewshot.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_ci_config_runs_and_check_passes(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    runner = CliRunner()
    out = tmp_path / "bench-ci"
    res = runner.invoke(main, ["bench", "--config", "configs/bench-ci.toml", "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    d = json.loads((out / "report.json").read_text())
    assert [c["key"] for c in d["cells"]] == ["wn33/protonet-minilm/5w1s", "wn33/protonet-minilm/5w5s"]
    # The shipped config reads the committed frozen episode files.
    for c in d["cells"]:
        assert c["episodes_file"] == f"episodes/wn33-5w{c['shot']}s5q-30ep-seed0.jsonl"
        assert (ROOT / c["episodes_file"]).is_file()
    one, five = (c["accuracy_mean"] for c in d["cells"])
    # Measured 48.93 +- 4.75 and 65.20 +- 4.26 with MiniLM's cosine metric (37.87 and 64.80 with euclidean,
    # the default before); a frozen encoder on fixed episodes gives these to float noise.
    assert one == pytest.approx(0.4893, abs=0.01) and five == pytest.approx(0.6520, abs=0.01)
    assert "| wn33 | protonet-minilm | 5-way 1-shot, 5 q | 30 |" in res.output

    res = runner.invoke(main, ["bench", "--check", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "2 of 2 cells match" in res.output
    assert res.output.count("MATCH  wn33/protonet-minilm/") == 2 and "exact" in res.output


def test_check_fails_with_exit_1_on_a_tampered_report(tiny_text_model_dir, tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text(
        'name = "tiny"\ndatasets = ["wn33"]\nways = [3]\nshots = [1]\nquery = 2\nepisodes = 4\n'
        f'device = "cpu"\nepisodes_dir = "{tmp_path / "ep"}"\n\n[[learners]]\nlabel = "tiny"\n'
        f'encoder = "{tiny_text_model_dir}"\n')
    runner = CliRunner()
    out = tmp_path / "out"
    res = runner.invoke(main, ["bench", "--config", str(config), "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    assert runner.invoke(main, ["bench", "--check", str(out), "--quiet"]).exit_code == 0
    report = json.loads((out / "report.json").read_text())
    accs = report["cells"][0]["accuracies"]
    accs[0] = 1.0 - accs[0] if accs[0] != 0.5 else 0.0
    (out / "report.json").write_text(json.dumps(report))
    res = runner.invoke(main, ["bench", "--check", str(out), "--quiet"])
    assert res.exit_code == 1, res.output
    assert "DIFFER  wn33/tiny/3w1s  exact" in res.output and "1 of 4 episodes differ" in res.output
    assert "0 of 1 cells match" in res.output


def test_bench_usage_errors_exit_2(tmp_path):
    runner = CliRunner()
    res = runner.invoke(main, ["bench"])
    assert res.exit_code == 2 and "give --config FILE" in res.output
    bad = tmp_path / "bad.toml"
    bad.write_text('datasets = ["wn33"]\nshot = [1]\n')
    res = runner.invoke(main, ["bench", "--config", str(bad)])
    assert res.exit_code == 2 and "Did you mean 'shots'" in res.output
    res = runner.invoke(main, ["bench", "--check", str(tmp_path)])
    assert res.exit_code == 2 and "no benchmark report at" in res.output
    res = runner.invoke(main, ["bench", "--check", str(tmp_path), "--config", str(bad)])
    assert res.exit_code == 2 and "do not combine" in res.output
