"""bin/bench-maml's module: both variants run on the same episodes and the section is written."""
from __future__ import annotations

import pytest

import bench_maml as maml_bench


def test_bench_runs_both_variants_and_writes_its_section(shared_data, tmp_path, monkeypatch, capsys):
    md = tmp_path / "BENCHMARKS.md"
    monkeypatch.setenv("FEWSHOT_BENCHMARKS_MD", str(md))
    assert maml_bench.main(["--data-root", str(shared_data), "--steps", "2", "--rounds", "2", "--warmup", "1",
                            "--setting", "3:1:second"]) == 0
    text = md.read_text()
    assert "<!-- bench:maml-speed -->" in text
    assert "Command: `bin/bench-maml --data-root" in text and "--setting 3:1:second`" in text
    row = next(line for line in text.splitlines() if line.startswith("| 3 | 1 | second |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    fewshot_ms, plain_ms, ratio = float(cells[3]), float(cells[4]), float(cells[5])
    assert fewshot_ms > 0 and plain_ms > 0
    # the table rounds the ratio to 0.01 and each time to 0.1 ms: allow exactly that rounding
    assert abs(ratio - fewshot_ms / plain_ms) <= 0.005 + ratio * (0.05 / fewshot_ms + 0.05 / plain_ms) + 1e-9
    assert '"first_order": false' in capsys.readouterr().out


def test_bad_settings_are_refused(capsys):
    with pytest.raises(SystemExit) as info:
        maml_bench.main(["--setting", "5:1:third", "--no-write"])
    assert info.value.code == 2
    assert "--setting expects WAY:INNER:first|second" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--steps must be a positive multiple of --rounds"):
        maml_bench.run(steps=3, rounds=2)
