"""PredictionLog: ids, feedback resolution, stats, crash safety, concurrent writers, refusals."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fewshot.support.log import FILENAME, PredictionLog
from fewshot.store import SupportStore

ROOT = Path(__file__).resolve().parents[1]


def entry(query, labels=("a", "b"), scores=(0.9, 0.1), generation=1):
    return {"query": query, "labels": list(labels), "scores": list(scores), "generation": generation}


@pytest.fixture
def log(tmp_path):
    return PredictionLog.in_index(tmp_path, "index-A")


def lines(path):
    return [json.loads(x) for x in Path(path).read_text().splitlines()]


def test_append_assigns_increasing_ids_and_writes_one_line_each(log, tmp_path):
    assert log.path == tmp_path / FILENAME
    assert log.append([entry("q0"), entry("q1", ["b", "a"], [0.7, 0.2], "gen-7")]) == [0, 1]
    assert log.append([]) == []
    assert log.append([entry("q2")]) == [2]
    header, *rest = lines(log.path)
    assert header["type"] == "header" and header["index"] == "index-A" and header["created"].endswith("Z")
    assert [(r["type"], r["id"], r["query"]) for r in rest] == [("prediction", i, f"q{i}") for i in range(3)]
    p = log.get(1)
    assert (p["labels"], p["scores"], p["generation"]) == (["b", "a"], [0.7, 0.2], "gen-7")
    assert (p["feedback"], p["true_label"], p["correct"]) == (None, None, None)
    # a second handle on the same file continues the ids
    assert PredictionLog.open(log.path, "index-A").append([entry("q3")]) == [3]
    assert log.append([entry("q4")]) == [4]


def test_latest_feedback_wins_and_stats(log):
    log.append([entry(f"q{i}", labels=top) for i, top in enumerate(
        [("a", "b"), ("a", "b"), ("a", "c"), ("b", "a"), ("b", "a"), ("c", "a")])])
    log.append_confirmation(0)            # a right
    log.append_correction(1, "b")         # a wrong, truly b
    log.append_correction(2, "c")
    log.append_correction(2, "a")         # later correction to the predicted label: a right after all
    log.append_correction(3, "c")         # b wrong, truly c
    log.append_confirmation(3)            # ... then confirmed: b right
    # 4 (b) and 5 (c) get no feedback
    got = {p["id"]: (p["feedback"], p["true_label"], p["correct"]) for p in log.read()}
    assert got == {0: ("confirmation", "a", True), 1: ("correction", "b", False), 2: ("correction", "a", True),
                   3: ("confirmation", "b", True), 4: (None, None, None), 5: (None, None, None)}
    s = log.stats()
    assert (s["predictions"], s["reviewed"], s["unconfirmed"], s["correct"]) == (6, 4, 2, 3)
    assert s["accuracy"] == pytest.approx(3 / 4)
    assert s["labels"]["a"] == {"predicted": 3, "confirmed": 2, "corrected": 1, "unconfirmed": 0,
                                "accuracy": pytest.approx(2 / 3), "corrected_to": 0}
    assert s["labels"]["b"] == {"predicted": 2, "confirmed": 1, "corrected": 0, "unconfirmed": 1,
                                "accuracy": 1.0, "corrected_to": 1}
    assert s["labels"]["c"] == {"predicted": 1, "confirmed": 0, "corrected": 0, "unconfirmed": 1,
                                "accuracy": None, "corrected_to": 0}


def test_correction_of_a_missing_id_is_refused_and_writes_nothing(log):
    log.append([entry("q0"), entry("q1")])
    before = log.path.read_bytes()
    with pytest.raises(ValueError, match=r"prediction id 2, but .* holds no such prediction \(its ids run from 0 "
                                         r"to 1\); correct an id returned by append"):
        log.append_correction(2, "a")
    with pytest.raises(ValueError, match="confirmation of prediction id 7"):
        log.append_confirmation(7)
    with pytest.raises(TypeError, match="label must be a class name"):
        log.append_correction(0, None)
    with pytest.raises(ValueError, match="holds no prediction id 5"):
        log.get(5)
    assert log.path.read_bytes() == before


def test_bad_entries_are_refused_before_anything_is_written(log):
    before = log.path.read_bytes()
    bad = [
        ({"query": "q", "labels": ["a"], "scores": [1.0]}, r"missing \['generation'\]"),
        (entry("q", labels=["a", "b"], scores=[1.0]), "one score per label"),
        (entry("q", scores=[float("nan"), 0.0]), "finite"),
    ]
    for e, message in bad:
        with pytest.raises(ValueError, match=message):
            log.append([entry("fine"), e])
    with pytest.raises(TypeError, match="query must be the query text"):
        log.append([entry(3)])
    assert log.path.read_bytes() == before


def test_a_log_of_another_index_is_refused(log):
    log.append([entry("q0")])
    with pytest.raises(ValueError, match=r"is the prediction log of index 'index-A', not of 'index-B'; open the "
                                         "log of that index, or move this file aside"):
        PredictionLog.open(log.path, "index-B")
    other = PredictionLog(log.path, "index-B")
    with pytest.raises(ValueError, match="not of 'index-B'"):
        other.append([entry("q1")])
    with pytest.raises(ValueError, match="not of 'index-B'"):
        other.read()
    assert len(PredictionLog(log.path).read()) == 1  # no identity given: read without checking


def test_torn_last_line_is_skipped_with_a_warning_then_cut_by_the_next_append(log):
    log.append([entry("q0"), entry("q1")])
    intact = log.path.read_bytes()
    with open(log.path, "ab") as f:  # a writer killed mid-line
        f.write(b'{"type":"prediction","id":2,"query":"q2","lab')
    with pytest.warns(UserWarning, match=r"skipped a torn last line \(\d+ bytes without a final newline"):
        assert [p["id"] for p in PredictionLog(log.path).read()] == [0, 1]
    with pytest.warns(UserWarning, match="removing a torn last line"):
        fresh = PredictionLog.open(log.path, "index-A")  # a new process's handle: cuts it under the lock
    assert log.path.read_bytes() == intact
    assert fresh.append([entry("q2 again")]) == [2]
    assert log.path.read_bytes().startswith(intact)
    assert [p["query"] for p in log.read()] == ["q0", "q1", "q2 again"]


def test_torn_middle_line_is_an_error_naming_the_line(log):
    log.append([entry("q0"), entry("q1"), entry("q2")])
    text = log.path.read_text().splitlines(keepends=True)
    text[2] = text[2][:25] + "\n"  # line 3 (id 1) cut short but followed by more lines
    log.path.write_text("".join(text))
    with pytest.raises(ValueError, match=r"line 3: not a complete JSON record .* only the last line can be torn"):
        PredictionLog(log.path).read()
    with pytest.raises(ValueError, match="line 3"):
        PredictionLog(log.path, "index-A").append([entry("q3")])


def test_missing_folder_and_missing_identity(tmp_path):
    with pytest.raises(ValueError, match="does not exist; the log lives inside an index folder"):
        PredictionLog.open(tmp_path / "nope" / FILENAME, "index-A")
    with pytest.raises(ValueError, match=r"no index identity was given to create it; use PredictionLog.open"):
        PredictionLog(tmp_path / FILENAME).append([entry("q")])
    assert PredictionLog(tmp_path / FILENAME).read() == []


def test_the_log_survives_index_store_writes(log, tmp_path):
    log.append([entry("q0")])
    store = SupportStore(tmp_path)
    store.write({"classes": ["a"]}, {"state": ("bin", b"one")})
    store.write({"classes": ["a", "b"]}, {"state": ("bin", b"two")})  # collects the first generation's files
    assert [p["query"] for p in log.read()] == ["q0"]
    assert FILENAME not in json.dumps(store.read_manifest())


WRITER = textwrap.dedent("""
    import sys
    from fewshot.support.log import PredictionLog
    log = PredictionLog.open(sys.argv[1], "index-A")
    print("ready", flush=True)
    sys.stdin.read(1)  # start barrier: both writers begin appending at once
    ids = []
    for i in range(int(sys.argv[3])):
        ids += log.append([{"query": f"{sys.argv[2]}-{i}", "labels": ["a"], "scores": [1.0], "generation": 0}])
    print(" ".join(map(str, ids)))
""")


def test_two_processes_append_concurrently_without_collision_or_loss(log):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(log.path), name, "100"], env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for name in ("w1", "w2")]
    assert [p.stdout.readline() for p in procs] == ["ready\n", "ready\n"]
    for p in procs:
        p.stdin.write("go")
        p.stdin.flush()
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    got = [list(map(int, out.split())) for out in outs]
    for ids in got:
        assert len(ids) == 100 and ids == sorted(ids)  # each writer sees increasing ids
    assert sorted(got[0] + got[1]) == list(range(200))  # no collision, no gap
    preds = log.read()
    assert [p["id"] for p in preds] == list(range(200))  # file order is id order
    by_id = {p["id"]: p["query"] for p in preds}
    for name, ids in zip(("w1", "w2"), got):
        assert [by_id[i] for i in ids] == [f"{name}-{i}" for i in range(100)]  # nothing lost or swapped
    assert len(log.path.read_text().splitlines()) == 201
