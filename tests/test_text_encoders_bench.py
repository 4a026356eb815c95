"""bin/bench/bench_text_encoders.py: which differences it pairs and their values, by hand."""
from __future__ import annotations

import pytest

from bench_text_encoders import main, pairs, render


def test_pairs_compare_with_the_baseline_and_int8_with_its_fp32():
    assert pairs(["minilm", "mpnet", "mpnet:int8"]) == [("mpnet", "minilm"), ("mpnet:int8", "minilm"),
                                                         ("mpnet:int8", "mpnet")]
    assert pairs(["minilm", "minilm:int8"]) == [("minilm:int8", "minilm")]


def test_render_gives_paired_per_episode_differences():
    rows = [{"row": "clinc150-5w1s", "encoder": e, "episodes": 4, "accuracy_mean": sum(a) / 4,
             "accuracy_ci95": 0.0, "seconds": 1.0, "accuracies": a}
            for e, a in (("minilm", [0.5, 0.5, 0.5, 0.5]), ("mpnet", [0.6, 0.7, 0.6, 0.7]))]
    # differences 0.1, 0.2, 0.1, 0.2: mean 0.15, sample std 0.0577, 1.96 * 0.0577 / 2 = 0.0566
    line = [x for x in render(rows, "bin/bench-text-encoders").splitlines() if x.startswith("| clinc150")][0]
    assert line == "| clinc150-5w1s | 4 | 50.00 +- 0.00 (1) | 65.00 +- 0.00 (1) | +15.00 +- 5.66 |"


def test_render_table_is_the_paired_table_text():
    """The whole table, byte for byte as the script rendered it before bin/bench/paired.py held it: the
    accuracy cells are the rows' own mean and interval, a row without an arm gives "-"."""
    acc = {"minilm": [0.5, 0.5, 0.5, 0.5], "mpnet": [0.6, 0.7, 0.6, 0.7], "mpnet:int8": [0.6, 0.6, 0.7, 0.7]}
    rows = [{"row": "clinc150-5w1s", "encoder": e, "episodes": 4, "accuracy_mean": sum(a) / 4, "accuracy_ci95": 0.01,
             "seconds": 12.4, "accuracies": a} for e, a in acc.items()]
    rows += [{"row": "huffpost-5w5s", "encoder": e, "episodes": 2, "accuracy_mean": sum(a) / 2, "accuracy_ci95": 0.125,
              "seconds": 99.5, "accuracies": a} for e, a in (("minilm", [0.2, 0.4]), ("mpnet", [0.6, 0.6]))]
    table = "\n".join(x for x in render(rows, "bin/bench-text-encoders").splitlines() if x.startswith("|"))
    assert table == """\
| row | episodes | minilm acc % (s) | mpnet acc % (s) | mpnet:int8 acc % (s) | mpnet - minilm | mpnet:int8 - minilm | mpnet:int8 - mpnet |
|---|---:|---|---|---|---|---|---|
| clinc150-5w1s | 4 | 50.00 +- 1.00 (12) | 65.00 +- 1.00 (12) | 65.00 +- 1.00 (12) | +15.00 +- 5.66 | +15.00 +- 5.66 | +0.00 +- 8.00 |
| huffpost-5w5s | 2 | 30.00 +- 12.50 (100) | 60.00 +- 12.50 (100) | - | +30.00 +- 19.60 | - | - |"""


def test_main_rejects_one_episode():
    with pytest.raises(SystemExit) as exc:
        main(["--episodes", "1", "--no-write"])
    assert exc.value.code == 2


def test_every_row_has_its_frozen_episode_file_and_every_text_dataset_a_row():
    from pathlib import Path

    from bench_text_encoders import DATASETS, ROWS

    assert all(Path(path).is_file() for _, path in ROWS.values())
    assert {d for d, _ in ROWS.values()} == set(DATASETS)
    assert {"clinc150", "huffpost", "fewrel", "trec", "reuters", "wn33", "wordnet"} <= set(DATASETS)


def test_resume_takes_an_earlier_runs_rows_and_measures_only_the_rest(tmp_path, monkeypatch):
    import json

    import bench_text_encoders as bench

    earlier = {"row": "trec-5w1s", "encoder": "minilm", "episodes": 3, "accuracy_mean": 0.5, "accuracies": [0.5] * 3}
    log = tmp_path / "log"
    log.write_text("progress line\n" + json.dumps(earlier) + "\n")
    asked = []

    def fake(rows, enc, n, data_root=None):
        asked.append((tuple(rows), enc))
        for r in rows:
            yield {"row": r, "encoder": enc, "episodes": n}

    monkeypatch.setattr(bench, "score_dataset", fake)
    got = list(bench.measure(["trec-5w1s", "trec-5w5s"], ["minilm", "mpnet"], 3, done=bench.earlier_results(log)))
    assert asked == [(("trec-5w5s",), "minilm"), (("trec-5w1s", "trec-5w5s"), "mpnet")]
    assert [(r["row"], r["encoder"]) for r in got] == [("trec-5w1s", "minilm"), ("trec-5w5s", "minilm"),
                                                       ("trec-5w1s", "mpnet"), ("trec-5w5s", "mpnet")]
    assert got[0]["accuracy_mean"] == 0.5  # as the earlier run measured it
