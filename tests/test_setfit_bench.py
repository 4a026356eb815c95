"""bin/bench/bench_setfit.py: its paired differences by hand, and its refusals (no setfit package needed)."""
from __future__ import annotations

import json

import pytest

from bench_setfit import main, render


def _rows():
    acc = {"protonet": [0.5, 0.5, 0.5, 0.5], "setfit": [0.6, 0.7, 0.6, 0.7], "setfit-pkg": [0.6, 0.6, 0.6, 0.6]}
    return [{"row": "clinc150-5w5s", "method": m, "episodes": 4, "accuracies": a, "seconds_per_task": 2.0}
            for m, a in acc.items()]


def test_render_pairs_fewshot_setfit_with_the_package_per_episode():
    line = [x for x in render(_rows(), "bin/bench-setfit").splitlines() if x.startswith("| clinc150")][0]
    # setfit - setfit-pkg: 0, 0.1, 0, 0.1: mean 0.05, sample std 0.0577, 1.96 * 0.0577 / 2 = 0.0566
    assert line == ("| clinc150-5w5s | 4 | 50.00 +- 0.00 (2.00) | 65.00 +- 5.66 (2.00) | 60.00 +- 0.00 (2.00) "
                    "| +5.00 +- 5.66 | +15.00 +- 5.66 | +10.00 +- 0.00 |")


def test_render_table_is_the_paired_table_text():
    """The whole table, byte for byte as the script rendered it before bin/bench/paired.py held it: a row
    without an arm ("-"), a pair whose arms scored different episode counts ("-", episodes "2/3")."""
    rows = _rows() + [
        {"row": "huffpost-5w1s", "method": "setfit", "episodes": 3, "accuracies": [0.4, 0.6, 0.8],
         "seconds_per_task": 1.25},
        {"row": "huffpost-5w1s", "method": "protonet", "episodes": 3, "accuracies": [0.2, 0.6, 0.4],
         "seconds_per_task": 0.5},
        {"row": "huffpost-5w5s", "method": "setfit", "episodes": 2, "accuracies": [0.8, 1.0], "seconds_per_task": 3.0},
        {"row": "huffpost-5w5s", "method": "setfit-pkg", "episodes": 3, "accuracies": [0.6, 0.8, 1.0],
         "seconds_per_task": 4.0}]
    table = "\n".join(x for x in render(rows, "bin/bench-setfit").splitlines() if x.startswith("|"))
    assert table == """\
| row | episodes | protonet acc % (s/task) | setfit acc % (s/task) | setfit-pkg acc % (s/task) | setfit - setfit-pkg | setfit - protonet | setfit-pkg - protonet |
|---|---:|---|---|---|---|---|---|
| clinc150-5w5s | 4 | 50.00 +- 0.00 (2.00) | 65.00 +- 5.66 (2.00) | 60.00 +- 0.00 (2.00) | +5.00 +- 5.66 | +15.00 +- 5.66 | +10.00 +- 0.00 |
| huffpost-5w1s | 3 | 40.00 +- 22.63 (0.50) | 60.00 +- 22.63 (1.25) | - | - | +20.00 +- 22.63 | - |
| huffpost-5w5s | 2/3 | - | 90.00 +- 19.60 (3.00) | 80.00 +- 22.63 (4.00) | - | - | - |"""


def test_from_jsonl_renders_a_saved_run(tmp_path, capsys):
    saved = tmp_path / "out.jsonl"
    saved.write_text("".join(json.dumps(r) + "\n" for r in _rows()))
    assert main(["--from-jsonl", str(saved), "--no-write", "--command", "bin/bench-setfit --episodes 4"]) == 0
    out = capsys.readouterr().out
    assert "Command: `bin/bench-setfit --episodes 4`" in out and "| +5.00 +- 5.66 |" in out


@pytest.mark.parametrize("args", [["--episodes", "1"], ["--episodes-5shot", "1"]])
def test_main_rejects_one_episode(args):
    with pytest.raises(SystemExit) as exc:
        main(args + ["--no-write"])
    assert exc.value.code == 2


def test_from_jsonl_rejects_a_file_without_rows(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("not a row\n")
    with pytest.raises(SystemExit) as exc:
        main(["--from-jsonl", str(empty), "--no-write"])
    assert exc.value.code == 2


def test_from_jsonl_skips_lines_that_are_not_its_rows(tmp_path, capsys):
    saved = tmp_path / "out.jsonl"
    saved.write_text("{'train_runtime': '105'}\n" + "".join(json.dumps(r) + "\n" for r in _rows()) + "| table |\n")
    assert main(["--from-jsonl", str(saved), "--no-write"]) == 0
    assert "| clinc150-5w5s | 4 |" in capsys.readouterr().out
