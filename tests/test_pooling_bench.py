"""bin/bench-pooling's module: both poolings on FewRel's validation relations only, and the table it writes."""
from __future__ import annotations

import pytest

import bench_pooling


def test_pooling_bench_scores_val_relations_and_writes_differences(shared_data, tmp_path, monkeypatch, capsys):
    from benchmarks_md import read_section

    row = bench_pooling.measure("entities", 1, 2, 0, str(shared_data))
    assert row["classes"] == ["P26", "P364", "P161", "P509", "gene_found_in_organism", "Content-Container(e2,e1)",
                              "Entity-Origin(e1,e2)"]  # val relations only: never a test relation
    assert row["episodes"] == 2 and 0 <= row["mean"] <= 100
    md = tmp_path / "BENCHMARKS.md"
    monkeypatch.setenv("FEWSHOT_BENCHMARKS_MD", str(md))
    assert bench_pooling.main(["--episodes", "2", "--data-root", str(shared_data)]) == 0
    table = [ln for ln in read_section("pooling", md).splitlines() if ln.startswith("| 1 |") or ln.startswith("| 5 |")]
    assert len(table) == 2
    for line in table:
        cells = [c.strip() for c in line.strip("|").split("|")]
        mean, ent = (float(c.split(" +- ")[0]) for c in cells[1:3])
        assert float(cells[3]) == pytest.approx(ent - mean, abs=0.011)
    assert "Command: `bin/bench-pooling --episodes 2 --data-root" in capsys.readouterr().out
