"""A checkpoint's config.json describes the committed weights, whatever instant a save was killed at."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fewshot import create_encoder, create_learner
from fewshot.checkpoint import read_record, save_checkpoint, trained_classes

ROOT = Path(__file__).resolve().parents[1]

# Saves run A, then run B's save is SIGKILLed at the named instant ("commit": when the manifest swap
# starts; "publish": right after it, when config.json is about to be written).
KILLED_SAVE = textwrap.dedent("""
    import os, signal, sys
    import fewshot.checkpoint as ck
    import fewshot.store as st
    from fewshot import create_encoder, create_learner
    folder, when = sys.argv[1], sys.argv[2]
    learner = create_learner("protonet", create_encoder("conv4", hidden=4))
    ck.save_checkpoint(folder, learner, {"run": "A", "train": {"include_val": False}}, {"step": 1})
    def die(*a, **k):
        os.kill(os.getpid(), signal.SIGKILL)
    if when == "commit":
        st.atomic_write_text = die
    else:
        ck.atomic_write_text = die
    ck.save_checkpoint(folder, learner, {"run": "B", "train": {"include_val": True}}, {"step": 2})
""")


@pytest.mark.parametrize("when, step, run", [("commit", 1, "A"), ("publish", 2, "B")])
def test_config_json_comes_from_the_committed_manifest_after_a_kill(tmp_path, when, step, run):
    folder = tmp_path / "ck"
    proc = subprocess.run([sys.executable, "-c", KILLED_SAVE, str(folder), when], cwd=ROOT, capture_output=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    record = read_record(folder)  # opening the checkpoint rewrites a config.json a kill left behind
    assert record["step"] == step and record["run_config"]["run"] == run
    assert json.loads((folder / "config.json").read_text())["run"] == run
    assert trained_classes(folder) == (("train", "val") if run == "B" else ("train",))


def test_a_checkpoint_refuses_to_write_config_json_through_a_symlink(tmp_path):
    learner = create_learner("protonet", create_encoder("conv4", hidden=4))
    folder = tmp_path / "ck"
    save_checkpoint(folder, learner, {"run": "A"})
    outside = tmp_path / "outside.json"
    outside.write_text("keep")
    (folder / "config.json").unlink()
    (folder / "config.json").symlink_to(outside)
    with pytest.raises(ValueError, match="symbolic link"):
        save_checkpoint(folder, learner, {"run": "B"}, {"step": 2})
    assert outside.read_text() == "keep" and "step" not in read_record(folder)  # nothing committed
