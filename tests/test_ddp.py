"""`torchrun --nproc-per-node 2 -m fewshot.cli train`: two CPU processes (gloo) draw different
episodes, keep identical weights, and rank 0 alone writes one checkpoint."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from fewshot.checkpoint import load_learner, read_record
from fewshot.distributed import param_checksum


def test_two_process_training_with_torchrun(tiny_text_model_dir, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "fewshot.cli", "train", "--learner", "protonet", "--encoder", str(tiny_text_model_dir),
           "--dataset", "wn33", "--out", str(out), "--steps", "4", "--eval-every", "2", "--patience", "0",
           "--lr", "1e-3", "--train-way", "3", "--train-shot", "1", "--train-query", "2", "--val-way", "3",
           "--val-query", "3", "--val-episodes", "4", "--device", "cpu", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("best validation accuracy") == 1 and "on 2 processes" in proc.stdout

    log = [json.loads(ln) for ln in (out / "train_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == [2, 4]
    # rank r draws episode step * 2 + r: disjoint episodes, together a contiguous run
    assert log[0]["rank_episodes"] == [[0, 2], [1, 3]] and log[1]["rank_episodes"] == [[4, 6], [5, 7]]
    # gradients are averaged: both ranks hold the same weights at every evaluation
    for e in log:
        a, b = e["rank_param_checksums"]
        assert a == b
    assert log[0]["rank_param_checksums"] != log[1]["rank_param_checksums"]  # and training moved them

    # exactly one checkpoint, written by rank 0, holding the weights of the best step
    files = sorted(re.sub(r"-\d{8}-[0-9a-f]{8}", "-*", p.relative_to(out).as_posix())
                   for p in out.rglob("*") if p.is_file())
    assert files == [".lock", "config.json", "last/.lock", "last/manifest.json", "last/model-*.safetensors",
                     "manifest.json", "model-*.safetensors", "train_log.jsonl"]
    record = read_record(out)
    best = next(e for e in log if e["step"] == record["step"])
    assert param_checksum(load_learner(out).module) == pytest.approx(best["rank_param_checksums"][0], rel=0,
                                                                      abs=1e-9)
