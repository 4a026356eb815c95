"""bin/bench-learners' module: rows that are not run keep their lines as written, under their current labels."""
from __future__ import annotations

import bench_learners


def test_rows_not_run_keep_their_written_lines(tmp_path, monkeypatch):
    from benchmarks_md import read_section, update_section

    md = tmp_path / "BENCHMARKS.md"
    monkeypatch.setenv("FEWSHOT_BENCHMARKS_MD", str(md))
    rows = [("fewrel", 5, 1, "floor, new label", [], None, None),
            ("fewrel", 5, 1, "trained, new label", [], "runs/x", "configs/x.toml"),
            ("fewrel", 5, 1, "never measured", ["--pooling", "mean"], None, None)]
    monkeypatch.setitem(bench_learners.SECTIONS, "accuracy", ("Accuracy", rows))
    floor = ("| fewrel | 5w1s | old floor label | 63.07 +- 0.84 | floor | 80: missed by 16.9 | 600 |  | "
             "`fewshot run --dataset fewrel --way 5 --shot 1 --episodes 600 --seed 0` |")
    trained = ("| fewrel | 5w1s | old label | 73.02 +- 0.89 | +10.0 | 80: missed by 7.0 | 600 | 750 steps | "
               "`fewshot run --dataset fewrel --way 5 --shot 1 --episodes 600 --seed 0 --checkpoint runs/x`<br>"
               "`fewshot train --config configs/x.toml --out runs/x` |")
    other = "| huffpost | 5w1s | dropped | 1.00 +- 0.10 | floor |  | 600 |  | `fewshot run --dataset huffpost` |"
    update_section("accuracy", "## Accuracy\n\n| header |\n|---|\n" + "\n".join([floor, trained, other]))

    assert bench_learners.main(["--section", "accuracy", "--only", "trec"]) == 0  # no row is trec: none is run
    lines = [ln for ln in read_section("accuracy").splitlines() if ln.startswith(("| fewrel", "| huffpost"))]
    assert lines == [floor.replace("old floor label", "floor, new label"), trained.replace("old label", "trained, new label")]
