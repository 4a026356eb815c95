"""bin/bench-omniglot's module: the floor on the official runs, the table, the training commands."""
from __future__ import annotations

from pathlib import Path

import pytest

import bench_omniglot as omniglot_bench


def test_untrained_floor_on_the_official_runs(shared_data):
    floor = omniglot_bench.score(None, str(shared_data), seed=0)
    assert (floor["runs"], floor["trials"]) == (20, 400)
    assert floor["error_pct"] == pytest.approx(100 * (1 - floor["accuracy"]))
    # measured 73.2% for seed 0: far worse than chance-free methods, far better than 95% (chance)
    assert 65.0 < floor["error_pct"] < 81.0


def test_table_and_commands():
    rows = [{"learner": "protonet", "background": "small1", "steps": 500, "best_step": 500, "train_s": 612.0,
             "best_val": 0.9, "error_pct": 12.25, "ci95_pct": 3.1, "learner_config": {"name": "protonet"}}]
    text = omniglot_bench.markdown(rows, {"error_pct": 73.25, "ci95_pct": 5.6}, "bin/bench-omniglot")
    assert "| protonet Conv4 | small1 | 500 (500) | 612 | 90.0 | 12.2 (+- 3.1) |" in text
    assert "| untrained Conv4 + nearest prototype (floor) | none | 0 | 0 | - | 73.2 (+- 5.6) |" in text
    for published in ("humans: 4.5%", "deep convnet (small1): 24%", "deep convnet (small2): 22.3%",
                      "BPL (background small1): 4.3%", "modified Hausdorff distance: 38.8%",
                      "full 30-alphabet background): 13.5%", "Siamese net (full background): 8%"):
        assert published in text
    cmd = omniglot_bench.train_command("maml", "both", Path("runs/x"), 300)
    assert cmd[1:] == ["train", "--config", "configs/omniglot-maml-20w1s.toml", "--dataset", "omniglot",
                       "--out", "runs/x/maml-both", "--quiet", "--steps", "300"]



def test_ensemble_row_members_and_their_training_commands():
    runs = Path("runs/x")
    assert omniglot_bench.member_folders("protonet-trainval-ensemble", "small2", runs) == [
        runs / "protonet-trainval-small2", runs / "protonet-trainval-seed1-small2",
        runs / "protonet-trainval-seed2-small2"]
    assert omniglot_bench.member_folders("protonet", "small1", runs) == [runs / "protonet-small1"]
    cmd = omniglot_bench.train_command("protonet-trainval", "small2", runs, None, seed=2)
    assert cmd[1:] == ["train", "--config", "configs/omniglot-protonet-trainval-20w1s.toml", "--dataset",
                       "omniglot-small2", "--out", "runs/x/protonet-trainval-seed2-small2", "--quiet", "--seed", "2"]

def test_rows_not_run_keep_their_written_lines(shared_data, tmp_path, monkeypatch):
    """Section omniglot: a row whose checkpoint is absent stays as written; a chosen row without one is left out."""
    from benchmarks_md import read_section

    md = tmp_path / "BENCHMARKS.md"
    kept = "| maml Conv4 | small2 | 1000 (750) | 379 | 37.7 | 64.2 (+- 4.9) |"
    md.write_text("<!-- bench:omniglot -->\n## x\n\n| model | background | a | b | c | d |\n|---|---|---|---|---|---|\n"
                  f"{kept}\n| protomaml Conv4 (Proto-MAML head) | small1 | 1 (1) | 1 | 1.0 | 1.0 (+- 1.0) |\n"
                  "<!-- /bench:omniglot -->\n")
    monkeypatch.setenv("FEWSHOT_BENCHMARKS_MD", str(md))
    assert omniglot_bench.main(["--runs", str(tmp_path / "none"), "--data-root", str(shared_data),
                                "--learner", "protomaml", "--background", "small1"]) == 0
    text = read_section("omniglot", md)
    assert kept in text  # not chosen: kept as written
    assert "| protomaml Conv4 (Proto-MAML head) | small1 | 1 (1)" in text  # chosen, no checkpoint: kept too
    assert "| untrained Conv4 + nearest prototype (floor) | none | 0 | 0 | - |" in text


def test_font_pretraining_table_and_commands():
    rows = [{"learner": "protonet", "background": "small1", "steps": 2000, "best_step": 1750, "train_s": 420.0,
             "best_val": 0.87, "error_pct": 16.0, "ci95_pct": 4.0},
            {"learner": "protonet-fonts", "background": "small1", "steps": 2000, "best_step": 1750, "train_s": 424.4,
             "best_val": 0.8712, "error_pct": 14.25, "ci95_pct": 5.33,
             "pretrain": {"steps": 2000, "best_step": 1750, "best_val": 0.9614, "train_s": 526.2},
             "ttft": {"error_pct": 13.0, "ci95_pct": 4.5}}]
    text = omniglot_bench.fonts_markdown(rows, "bin/bench-omniglot --section omniglot-fonts")
    assert "| small1 | from scratch | - | 2000 (1750), 420, 87.0 | 16.0 (+- 4.0) | - |" in text
    assert ("| small1 | font glyphs, then the background set | 2000 (1750), 526, 96.1 (font val chars, 20-way) | 2000 (1750), 424, 87.1 | "
            "14.2 (+- 5.3) | 13.0 (+- 4.5) |") in text
    cmd = omniglot_bench.train_command("protonet-fonts", "small2", Path("runs/omniglot"), None)
    assert cmd[1:] == ["train", "--config", "configs/omniglot-protonet-fonts-small2.toml", "--out",
                       "runs/omniglot/protonet-fonts-small2", "--quiet"]
    assert omniglot_bench.pretrain_command()[1:] == ["train", "--config", "configs/omniglot-protonet-fonts-pretrain.toml",
                                                     "--out", "runs/omniglot/protonet-fonts", "--quiet"]
    with pytest.raises(ValueError, match="small1 and small2 only"):
        omniglot_bench.train_command("protonet-fonts", "both", Path("runs/omniglot"), None)


def test_font_section_keeps_rows_not_run_and_marks_train_val_models(shared_data, tmp_path, monkeypatch):
    """Section omniglot-fonts keeps the written line of a chosen row without a checkpoint (found by its training
    cell and background), and a train+val final model shows no validation accuracy."""
    from benchmarks_md import read_section

    md = tmp_path / "BENCHMARKS.md"
    kept = "| small1 | from scratch | - | 2000 (2000), 623, 87.3 | 13.5 (+- 3.9) | 11.0 (+- 2.5) |"
    md.write_text("<!-- bench:omniglot-fonts -->\n## x\n\n| background | training | a | b | c | d |\n"
                  f"|---|---|---|---|---|---|\n{kept}\n<!-- /bench:omniglot-fonts -->\n")
    monkeypatch.setenv("FEWSHOT_BENCHMARKS_MD", str(md))
    assert omniglot_bench.main(["--section", "omniglot-fonts", "--runs", str(tmp_path / "none"), "--data-root",
                                str(shared_data), "--learner", "protonet", "--background", "small1"]) == 0
    assert kept in read_section("omniglot-fonts", md)
    row = {"learner": "protonet-trainval", "background": "small1", "steps": 2000, "best_step": 2000,
           "train_s": 500.0, "best_val": None, "error_pct": 12.0, "ci95_pct": 3.0, "ttft": {"error_pct": 10.0,
                                                                                          "ci95_pct": 2.5}}
    text = omniglot_bench.fonts_markdown([row], "bin/bench-omniglot --section omniglot-fonts")
    assert ("| small1 | from scratch, train+val alphabets | - | 2000 (2000), 500, - (val alphabets trained on) | "
            "12.0 (+- 3.0) | 10.0 (+- 2.5) |") in text
