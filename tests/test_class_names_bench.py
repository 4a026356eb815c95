"""bin/bench-class-names's module: support only vs + class descriptions on validation classes only."""
from __future__ import annotations

import pytest

import bench_class_names
from val_episodes import val_accuracy


def test_val_accuracy_uses_val_classes_and_class_names_change_it(shared_data):
    plain, named = (val_accuracy("clinc150", 1, 20, 0, str(shared_data), class_names=flag) for flag in (False, True))
    from fewshot.datasets import load_dataset

    clinc = load_dataset("clinc150", shared_data)
    assert plain["classes"] == named["classes"] == clinc.split_classes("val")  # never a test class
    assert plain["episodes"] == 20 and named["mean"] > plain["mean"]  # deterministic episodes: names help here


def test_class_names_bench_writes_one_row_per_dataset_and_shot(shared_data, tmp_path, monkeypatch, capsys):
    from benchmarks_md import read_section

    md = tmp_path / "BENCHMARKS.md"
    monkeypatch.setenv("FEWSHOT_BENCHMARKS_MD", str(md))
    assert bench_class_names.main(["--episodes", "2", "--data-root", str(shared_data)]) == 0
    rows = [ln for ln in read_section("class-names", md).splitlines() if ln.startswith(("| clinc150", "| fewrel"))]
    assert [r.split("|")[1:4] for r in rows] == [[" clinc150 ", " 30 ", " 1 "], [" clinc150 ", " 30 ", " 5 "],
                                                [" fewrel ", " 7 ", " 1 "], [" fewrel ", " 7 ", " 5 "]]
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        plain, named = (float(c.split(" +- ")[0]) for c in cells[3:5])
        assert float(cells[5]) == pytest.approx(named - plain, abs=0.011)
    assert "Command: `bin/bench-class-names --episodes 2 --data-root" in capsys.readouterr().out
