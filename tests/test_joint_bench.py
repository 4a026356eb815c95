"""bin/bench-joint's module: three 2-step trainings on a tiny SNIPS folder and the section it writes."""
from __future__ import annotations

import json

import bench_joint
from test_joint import _snips_folder


def test_joint_bench_rows_and_section(tmp_path, tiny_text_model_dir, monkeypatch, capsys):
    from benchmarks_md import read_section

    md = tmp_path / "BENCHMARKS.md"
    monkeypatch.setenv("FEWSHOT_BENCHMARKS_MD", str(md))
    root = _snips_folder(tmp_path / "data")
    argv = ["--steps", "2", "--eval-every", "2", "--batch-size", "4", "--warmup", "0", "--data-root", str(root),
            "--encoder", str(tiny_text_model_dir), "--out", str(tmp_path / "runs")]
    assert bench_joint.main(argv) == 0
    rows = [json.loads(ln) for ln in capsys.readouterr().out.splitlines() if ln.startswith("{")]
    assert [(r["variant"], r["weights"], r["val_metric"]) for r in rows] == [
        ("joint", "1 / 1", "exact_match"), ("intent only", "1 / 0", "intent_accuracy"),
        ("slot only", "0 / 1", "slot_f1"), ("intent only + slot only (two encoders)", "1 / 0 + 0 / 1", None)]
    assert all(r["steps"] == 2 and r["sentences"] == 21 and 0 <= r["exact_match"] <= 1 for r in rows)
    pair = rows[3]  # the intent-only model's intents with the slot-only model's tags
    assert pair["intent_accuracy"] == rows[1]["intent_accuracy"] and pair["slot_f1"] == rows[2]["slot_f1"]
    text = read_section("snips-joint", md)
    assert "Command: `bin/bench-joint --steps 2" in text
    table = [ln for ln in text.splitlines() if ln.startswith("| joint |") or ln.startswith("| intent only |")]
    assert len(table) == 2 and "head untrained" in table[1]  # the intent-only model's slot F1
    assert "| intent only + slot only (two encoders) | 1 / 0 + 0 / 1 | - |" in text
    assert (tmp_path / "runs" / "slot-only" / "test.json").is_file()
