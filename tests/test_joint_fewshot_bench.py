"""bin/bench-joint-fewshot's module: two few-shot joint rows on a tiny SNIPS folder and the section it writes."""
from __future__ import annotations

import json

import bench_joint_fewshot
from test_joint import _snips_folder


def test_joint_fewshot_bench_rows_and_section(tmp_path, tiny_text_model_dir, monkeypatch, capsys):
    from benchmarks_md import read_section

    md = tmp_path / "BENCHMARKS.md"
    monkeypatch.setenv("FEWSHOT_BENCHMARKS_MD", str(md))
    root = _snips_folder(tmp_path / "data")
    argv = ["--shots", "1", "2", "--query", "3", "--episodes", "3", "--data-root", str(root), "--encoder",
            str(tiny_text_model_dir)]
    assert bench_joint_fewshot.main(argv) == 0
    rows = [json.loads(ln) for ln in capsys.readouterr().out.splitlines() if ln.startswith("{")]
    assert [(r["way"], r["shot"], r["query"], r["episodes"], r["queries"]) for r in rows] == [(3, 1, 3, 3, 27),
                                                                                             (3, 2, 3, 3, 27)]
    assert all(0 <= r["exact_match_ci95_low"] <= r["exact_match"] <= r["exact_match_ci95_high"] <= 1 for r in rows)
    text = read_section("snips-joint-fewshot", md)
    assert "Command: `bin/bench-joint-fewshot --shots 1 2" in text
    assert len([ln for ln in text.splitlines() if ln.startswith("| 3 | ")]) == 2
