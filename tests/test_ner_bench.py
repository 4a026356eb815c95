"""bin/bench-ner's module: Few-NERD INTER test-type rows and the section it writes."""
from __future__ import annotations

import bench_ner


def test_ner_bench_rows_and_section(shared_data, tmp_path, monkeypatch, capsys):
    from benchmarks_md import read_section

    md = tmp_path / "BENCHMARKS.md"
    monkeypatch.setenv("FEWSHOT_BENCHMARKS_MD", str(md))
    monkeypatch.setattr(bench_ner, "SETTINGS", ((5, 1),))
    assert bench_ner.main(["--episodes", "2", "--data-root", str(shared_data)]) == 0
    text = read_section("ner-fewnerd", md)
    rows = [ln for ln in text.splitlines() if ln.startswith("| 5-way 1~2-shot |")]
    assert [r.split("|")[2].strip() for r in rows] == ["protobert", "nnshot"]
    assert all(r.split("|")[3].strip() == "2" for r in rows)
    assert "Command: `bin/bench-ner --episodes 2 --data-root" in text and "not** the publisher's released" in text
    assert '"learner": "nnshot"' in capsys.readouterr().out
