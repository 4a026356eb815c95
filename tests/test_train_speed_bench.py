"""bin/bench-train-speed's module: both variants train on the same episodes to the same losses, the
section is written with its command, and the MiniLM throughput estimate follows its formula."""
from __future__ import annotations

import pytest

import bench_train_speed as speed_bench


def test_bench_runs_both_variants_and_writes_its_section(shared_data, run_timing_bench):
    text, (row,) = run_timing_bench(speed_bench, "train-speed", "bench-train-speed", "--setting", "conv4-20way")
    assert row["setting"] == "conv4-20way" and row["steps"] == 2
    assert row["max_loss_diff"] < 1e-5  # resident and raw inputs: the same training
    from fewshot.datasets import load_dataset

    data = load_dataset("omniglot-small1", shared_data)
    n_train = sum(len(v) for v in data.ids_by_class(data.split_classes("train")).values())
    assert n_train < len(data.items)
    assert row["resident_mib"] == n_train * 28 * 28 * 4 / 2**20  # the train split only, float32 28x28
    assert row["speedup"] == pytest.approx(row["resident_steps_s"] / row["raw_steps_s"])
    assert row["raw_input_ms"] > 0 and row["resident_input_ms"] > 0
    line = next(ln for ln in text.splitlines() if ln.startswith("| conv4-20way |"))
    assert float(line.split("|")[2]) == pytest.approx(row["resident_steps_s"], abs=0.01)


def test_flops_estimate_counts_frozen_layers_once_and_trainable_three_times(tiny_text_model_dir):
    from fewshot.encoders import create_encoder
    from fewshot.learners import create_learner

    enc = create_encoder(str(tiny_text_model_dir))
    p = sum(q.numel() for q in enc.model.encoder.parameters())
    create_learner("protonet", enc, {"trainable": "none"})
    assert speed_bench._flops_per_token(enc) == 2 * p
    create_learner("protonet", enc, {"trainable": "full"})
    assert speed_bench._flops_per_token(enc) == 2 * 3 * p


def test_bad_step_counts_are_refused():
    with pytest.raises(ValueError, match="--steps must be a positive multiple of --rounds"):
        speed_bench.run("conv4-20way", None, steps=3, warmup=0, rounds=2, device="cpu")
