"""A correction is all or nothing across the prediction log and the index: the index save is its commit point."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from fewshot import FewShotClassifier
from fewshot.support import curation
from fewshot.support.log import FILENAME

ROOT = Path(__file__).resolve().parents[1]

# Corrects prediction 0 and is SIGKILLed when the index save starts: after the log got the correction.
KILLED_CORRECT = textwrap.dedent("""
    import os, signal, sys
    import fewshot.store
    from fewshot.support import curation
    def die(*a, **k):
        os.kill(os.getpid(), signal.SIGKILL)
    fewshot.store.SupportStore.write = die
    curation.correct(sys.argv[1], 0, "travel")
""")


def _index_with_a_logged_prediction(tmp_path, encoder) -> Path:
    path = tmp_path / "ix"
    FewShotClassifier(encoder).fit(["hello there", "hi", "book a flight", "a train"],
                                   ["greet", "greet", "travel", "travel"]).save(path)
    log = curation.prediction_log(path, create=True)
    log.append([{"query": "fly me to rome", "labels": ["greet", "travel"], "scores": [0.6, 0.4], "generation": 1}])
    return path


def test_a_correct_killed_before_the_index_save_leaves_no_correction_and_can_be_redone(tmp_path, tiny_text_encoder):
    path = _index_with_a_logged_prediction(tmp_path, tiny_text_encoder)
    before = FewShotClassifier.describe(path)
    proc = subprocess.run([sys.executable, "-c", KILLED_CORRECT, str(path)], cwd=ROOT, capture_output=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    records = [json.loads(x) for x in (path / FILENAME).read_text().splitlines()]
    assert [r["type"] for r in records] == ["header", "prediction", "correction"]  # the log got it ...
    assert FewShotClassifier.describe(path)["classes"] == before["classes"]  # ... the index did not
    log = curation.prediction_log(path)
    assert log.get(0)["feedback"] is None and log.stats()["reviewed"] == 0  # so it does not count
    curation.correct(path, 0, "travel", encoder=tiny_text_encoder)  # and the prediction can be corrected again
    after = FewShotClassifier.describe(path)
    assert after["log_corrections"] == [0]
    assert {c["label"]: c["count"] for c in after["classes"]} == {"greet": 2, "travel": 3}
    assert (log.get(0)["feedback"], log.get(0)["true_label"]) == ("correction", "travel")
    assert log.stats()["reviewed"] == 1


def test_a_folder_saved_before_log_corrections_counts_its_logged_corrections(tmp_path, tiny_text_encoder):
    path = _index_with_a_logged_prediction(tmp_path, tiny_text_encoder)
    curation.correct(path, 0, "travel", encoder=tiny_text_encoder)
    clf = FewShotClassifier.load(path, encoder=tiny_text_encoder)
    clf.log_corrections_ = None  # as an older fewshot saved it
    clf.save(path)
    assert FewShotClassifier.describe(path)["log_corrections"] is None
    log = curation.prediction_log(path)
    assert log.get(0)["feedback"] == "correction"
    (i,) = log.append([{"query": "hey", "labels": ["travel"], "scores": [0.5], "generation": 2}])
    curation.correct(path, i, "greet", encoder=tiny_text_encoder)
    assert FewShotClassifier.describe(path)["log_corrections"] == [0, 1]
