"""bin/bench-maml's module: both variants run on the same episodes and the section is written."""
from __future__ import annotations

import pytest

import bench_maml as maml_bench


def test_bench_runs_both_variants_and_writes_its_section(run_timing_bench):
    text, rows = run_timing_bench(maml_bench, "maml-speed", "bench-maml", "--setting", "3:1:second")
    assert [(r["way"], r["inner_steps"], r["first_order"], r["steps"], r["warmup"]) for r in rows] == [
        (3, 1, False, 2, 1)]
    row = next(line for line in text.splitlines() if line.startswith("| 3 | 1 | second |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    fewshot_ms, plain_ms, ratio = float(cells[3]), float(cells[4]), float(cells[5])
    assert fewshot_ms > 0 and plain_ms > 0
    assert fewshot_ms == pytest.approx(rows[0]["fewshot_ms"], abs=0.05)
    # the table rounds the ratio to 0.01 and each time to 0.1 ms: allow exactly that rounding
    assert abs(ratio - fewshot_ms / plain_ms) <= 0.005 + ratio * (0.05 / fewshot_ms + 0.05 / plain_ms) + 1e-9


def test_bad_settings_are_refused(capsys):
    with pytest.raises(SystemExit) as info:
        maml_bench.main(["--setting", "5:1:third", "--no-write"])
    assert info.value.code == 2
    assert "--setting expects WAY:INNER:first|second" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--steps must be a positive multiple of --rounds"):
        maml_bench.run(steps=3, rounds=2)
