"""Malformed prediction-log records are refused with one ValueError naming the line, never a TypeError or KeyError."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fewshot.support.log import FILENAME, FORMAT, PredictionLog

HEADER = {"type": "header", "format": FORMAT, "index": "index-A", "created": "now"}
GOOD = {"type": "prediction", "id": 0, "query": "q", "labels": ["a", "b"], "scores": [0.9, 0.1],
        "generation": 1, "time": "now"}


def _write(folder: Path, *records) -> PredictionLog:
    folder.mkdir(exist_ok=True)
    (folder / FILENAME).write_text("".join(json.dumps(r) + "\n" for r in (HEADER, *records)))
    return PredictionLog(folder / FILENAME, "index-A")


@pytest.mark.parametrize("bad", [
    {**GOOD, "labels": [["a"], "b"]},  # a list where a label belongs
    {k: v for k, v in GOOD.items() if k != "labels"},  # no labels
    {**GOOD, "labels": [], "scores": []},  # empty labels
    {**GOOD, "scores": [0.9]},  # one score for two labels
    {**GOOD, "query": None},
])
def test_a_malformed_prediction_record_is_refused_naming_its_line(tmp_path, bad):
    log = _write(tmp_path / "ix", bad)
    for call in (log.read, log.stats):
        with pytest.raises(ValueError, match=r"predictions.jsonl, line 2: expected a prediction with"):
            call()


def test_a_correction_with_a_list_label_is_refused(tmp_path):
    log = _write(tmp_path / "ix", GOOD, {"type": "correction", "id": 0, "label": ["x"], "time": "now"})
    with pytest.raises(ValueError, match=r"line 3: expected a correction whose label is a str or int"):
        log.stats()


def test_a_log_path_that_is_a_folder_is_refused(tmp_path):
    (tmp_path / FILENAME).mkdir()
    with pytest.raises(ValueError, match="is a folder, expected a file"):
        PredictionLog(tmp_path / FILENAME, "index-A").read()
    with pytest.raises(ValueError, match="is a folder, expected a file"):
        PredictionLog.in_index(tmp_path, "index-A")


JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
                       lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                   max_size=3), max_leaves=8)


@settings(max_examples=150, deadline=None)
@given(key=st.sampled_from(["id", "query", "labels", "scores", "generation", "type"]), value=JSONISH)
def test_any_value_in_any_field_of_a_record_reads_or_is_refused_with_a_value_error(tmp_path_factory, key, value):
    folder = tmp_path_factory.mktemp("log")
    record = {**GOOD, key: value}
    log = _write(folder, record, {"type": "confirmation", "id": 0, "time": "now"})
    try:
        stats = log.stats()
    except ValueError as exc:
        assert "predictions.jsonl, line 2" in str(exc) or "line 3" in str(exc)
        return
    # accepted: then it is a well-formed prediction, and its top label is what stats counts
    assert stats["predictions"] == 1 and stats["reviewed"] == 1
    assert list(stats["labels"]) == [record["labels"][0]]
