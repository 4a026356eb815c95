"""``bin/bench-omniglot``: Omniglot's official one-shot task (Lake et al. 2015) for models trained here.

For each checkpoint folder ``RUNS/<learner>-<background>`` written by
``fewshot train --config configs/omniglot-<learner>-20w1s.toml --dataset
omniglot-<background>`` (background: small1, small2 or both = ``omniglot``),
scores the model on ``omniglot-runs``: the 20 official runs of 20-way
within-alphabet 1-shot, 400 test items, error = wrong / 400. An untrained Conv4
(random initialisation, nearest prototype) is the floor. The published error
rates of Lake, Salakhutdinov & Tenenbaum (2015) on this exact protocol are
printed beside (:mod:`fewshot.published`).

``--train`` first runs the training commands (``--steps`` each, sequentially). A row of section
omniglot whose checkpoint is not here keeps its line as BENCHMARKS.md has it (found by its model
and background), so ``--learner protomaml`` adds Proto-MAML's rows without retraining the others.

``--section omniglot-fonts`` writes the font-glyph pretraining comparison instead: ``protonet-fonts``
(Conv4 meta-trained on the font_glyphs characters, configs/omniglot-protonet-fonts-pretrain.toml, then
on one background set, configs/omniglot-protonet-fonts-<background>.toml) beside ``protonet`` from
scratch with the same stage-2 budget:

    bin/bench-omniglot --section omniglot-fonts --learner protonet --learner protonet-fonts \
        --background small1 --background small2

An ensemble row (``protonet-trainval-ensemble``) scores its recipe's checkpoint together with the same
recipe trained with seeds 1 and 2 (``RUNS/<recipe>-seed<k>-<background>``): ``fewshot run --checkpoint A
--ensemble B --ensemble C``.
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from benchmarks_md import command as bench_command
from benchmarks_md import publish

from fewshot.checkpoint import is_checkpoint

REPO = Path(__file__).resolve().parents[2]

BACKGROUNDS = {"small1": "omniglot-small1", "small2": "omniglot-small2", "both": "omniglot"}
LEARNERS = ("protonet", "maml", "protomaml", "protonet-mobilenetv2", "protonet-fonts", "protonet-augment",
            "protonet-trainval", "protonet-wide", "protonet-fonts-trainval", "protonet-trainval-ensemble")
ARCH = {"protonet": "Conv4", "maml": "Conv4", "protomaml": "Conv4 (Proto-MAML head)",
        "protonet-mobilenetv2": "MobileNetV2 (ImageNet init)",
        "protonet-fonts": "Conv4, font-glyph pretraining", "protonet-augment": "Conv4, affine-jittered training",
        "protonet-trainval": "Conv4, train+val alphabets", "protonet-wide": "Conv4, 128 channels",
        "protonet-fonts-trainval": "Conv4, font-glyph pretraining, train+val alphabets",
        "protonet-trainval-ensemble": "3 x Conv4, train+val alphabets, ensemble of 3 seeds"}
RECIPE = {"protonet": "from scratch", "protonet-fonts": "font glyphs, then the background set",
          "protonet-augment": "from scratch, affine jitter",
          "protonet-trainval": "from scratch, train+val alphabets",
          "protonet-wide": "from scratch, 128 channels",
          "protonet-fonts-trainval": "font glyphs, then all alphabets of the background set",
          "protonet-trainval-ensemble": "from scratch, train+val alphabets, ensemble of 3 seeds"}  # section omniglot-fonts
# an ensemble row -> its members' recipe: that recipe's checkpoint (seed 0) with the same run trained with ENSEMBLE_SEEDS
ENSEMBLES = {"protonet-trainval-ensemble": "protonet-trainval"}
ENSEMBLE_SEEDS = (1, 2)
STAGED = ("protonet-fonts", "protonet-fonts-trainval")  # stage 2 of the font-glyph pretraining: a config per background
TTFT = {"finetune_steps": 20, "finetune_lr": 1e-2}  # test-time fine-tuning column of section omniglot-fonts
# stage 1 of protonet-fonts: its config, and its output folder (the `checkpoint` of the stage-2 configs)
FONTS_PRETRAIN = ("configs/omniglot-protonet-fonts-pretrain.toml", "runs/omniglot/protonet-fonts")
FULL_BACKGROUND_CONVNET = 13.5  # Lake et al. 2015: deep convnet trained on the full 30-alphabet background set


def member_folders(learner: str, background: str, runs: Path) -> list[Path]:
    """The checkpoint folders a row scores: one, or an ensemble's members (seed 0 first)."""
    if learner not in ENSEMBLES:
        return [runs / f"{learner}-{background}"]
    base = ENSEMBLES[learner]
    return [runs / f"{base}-{background}"] + [runs / f"{base}-seed{k}-{background}" for k in ENSEMBLE_SEEDS]


def train_command(learner: str, background: str, runs: Path, steps: int | None, seed: int = 0) -> list[str]:
    """The training command of ``learner`` on ``background``; ``seed`` > 0 writes ``<learner>-seed<k>-...``."""
    fewshot = str(Path(sys.executable).with_name("fewshot"))
    if learner in STAGED:  # stage 2; its config names the stage-1 checkpoint (pretrain_command)
        if background == "both":
            raise ValueError(f"{learner} has stage-2 configs for small1 and small2 only")
        cmd = [fewshot, "train", "--config", f"configs/omniglot-{learner}-{background}.toml"]
    else:
        cmd = [fewshot, "train", "--config", f"configs/omniglot-{learner}-20w1s.toml", "--dataset",
               BACKGROUNDS[background]]
    name = f"{learner}-seed{seed}" if seed else learner
    cmd += ["--out", str(runs / f"{name}-{background}"), "--quiet"] + (["--seed", str(seed)] if seed else [])
    return cmd + (["--steps", str(steps)] if steps else [])


def pretrain_command() -> list[str]:
    """Stage 1 of protonet-fonts: Conv4 meta-trained on the font_glyphs train characters."""
    return [str(Path(sys.executable).with_name("fewshot")), "train", "--config", FONTS_PRETRAIN[0], "--out",
            FONTS_PRETRAIN[1], "--quiet"]


def score(checkpoint: str | None, data_root: str | None, seed: int = 0, learner: dict | None = None,
          ensemble: list[str] | None = None) -> dict:
    """Official-protocol accuracy of a checkpoint (None: untrained Conv4 + protonet, seeded).

    ``learner``: options that override the checkpoint's learner (e.g. test-time fine-tuning), for every
    member of an ``ensemble`` (more checkpoints scoring with ``checkpoint``).
    """
    import torch

    from fewshot.config import FewShotConfig
    from fewshot.experiment import run_experiment

    d = {"data": {"dataset": "omniglot-runs", "data_root": data_root}, "device": "cpu"}
    if learner:
        d["learner"] = {"name": "protonet", **learner}
    if checkpoint:
        d["checkpoint"] = checkpoint
        d["ensemble"] = list(ensemble or [])
    else:
        d.update(encoder="conv4", encoder_options={"invert": True})
        torch.manual_seed(seed)
    report = run_experiment(FewShotConfig.from_dict(d), progress=False)
    acc = report.result.accuracies
    return {"accuracy": float(acc.mean()), "error_pct": 100 * (1 - float(acc.mean())),
            "ci95_pct": 100 * report.result.ci95, "runs": int(len(acc)), "trials": 20 * int(len(acc))}


def _train_info(folder: Path) -> dict:
    info = {}
    log = folder / "train_log.jsonl"
    if log.is_file():
        entries = [json.loads(ln) for ln in log.read_text().splitlines() if ln.strip()]
        if entries:
            last = entries[-1]
            info = {"steps": last["step"], "best_step": last["best_step"], "best_val": last["best_val_accuracy"],
                    "train_s": last["elapsed_s"]}
    cfg = folder / "config.json"
    if cfg.is_file():
        c = json.loads(cfg.read_text())
        t = c.get("train", {})
        info["train_shape"] = f"{t.get('train_way')}-way {t.get('train_shot')}-shot"
        info["val_shape"] = f"{t.get('val_way')}-way, {t.get('val_episodes')} ep"
        info["learner_config"] = c.get("learner", {})
        if c.get("checkpoint"):  # trained further from another checkpoint: count that stage too
            first = _train_info(REPO / c["checkpoint"]) if (REPO / c["checkpoint"]).is_dir() else {}
            info["pretrain"] = {k: first.get(k) for k in ("steps", "best_step", "best_val", "train_s")}
    return info


def fonts_markdown(rows: list[dict], command: str) -> str:
    """The font-glyph pretraining comparison (section omniglot-fonts)."""
    lines = [
        "## Omniglot official runs: font-glyph pretraining, augmentation and test-time fine-tuning",
        "",
        f"Command: `{command}`",
        "",
        "The 20 official runs (20-way within-alphabet 1-shot, 400 test items, error = wrong / 400), Conv4 "
        "protonet on 28x28 images with light strokes on dark, 20-way 1-shot training episodes, trained on one "
        "Omniglot background set alone (90-degree rotations as new classes; Early_Aramaic and Tagalog held out "
        "for validation, never the evaluation alphabets). `font glyphs, then the background set`: first meta-trained on the 1,840 "
        "font_glyphs train characters (printed Unicode characters of 23 scripts, not Omniglot; "
        "configs/omniglot-protonet-fonts-pretrain.toml, validated on 613 other characters), then on the "
        "background set (configs/omniglot-protonet-fonts-<background>.toml, learning rate 5e-4). `from scratch`: the "
        "same Conv4 from scratch on the background set (configs/omniglot-protonet-20w1s.toml, learning rate "
        "1e-3). `from scratch, affine jitter`: the same with every training image randomly rotated (+-10 "
        "degrees), shifted (10%) and scaled (0.9-1.1) (configs/omniglot-protonet-augment-20w1s.toml). "
        "`from scratch, train+val alphabets`: a final model of `from scratch` trained on every alphabet of the "
        "background set, its validation alphabet included, for the validated runs' 2000 steps, with nothing "
        "validated (`train.include_val`, configs/omniglot-protonet-trainval-20w1s.toml); the last step is scored. "
        "`from scratch, 128 channels`: `from scratch` with a wider Conv4, 128 channels per block instead of 64 "
        "(configs/omniglot-protonet-wide-20w1s.toml). `font glyphs, then all alphabets of the background set`: "
        "the same for the font-pretrained model's stage 2, for its validated run's best step count "
        "(configs/omniglot-protonet-fonts-trainval-<background>.toml). "
        "`from scratch, train+val alphabets, ensemble of 3 seeds`: that final model and the same run with "
        "`--seed 1` and `--seed 2`, scored together (`fewshot run --checkpoint A --ensemble B --ensemble C`: the "
        "mean of their log-probabilities; with test-time fine-tuning each member fine-tunes on its own); its step "
        "and time cells are seed 0's. Chosen on small1's val alphabet with validated runs (seeds 0, 1, 2 of "
        "configs/omniglot-protonet-20w1s.toml, 300 15-way 1-shot val episodes, seed 0): 87.60, 87.06 and 86.84% "
        "alone, 88.96 +- 0.55% together. "
        "Best validation checkpoint scored; CI: 95% normal interval over the 20 runs; CPU-only, one "
        "thread, on a shared 2-core machine (wall-clock times).",
        "",
        f"`+ test-time fine-tuning`: the same checkpoint with `--finetune-steps {TTFT['finetune_steps']} "
        f"--finetune-lr {TTFT['finetune_lr']:g}` (each run's 20 support images fine-tune a copy of the whole "
        "Conv4, affine-jittered copies as pseudo-queries; settings chosen on small1's val alphabets with the "
        "font-pretrained checkpoint: 87.60% against 87.39% without, 100 15-way episodes).",
        "",
        "| background | training | stage 1: steps (best), s, val acc | stage 2: steps (best), s, val acc | "
        "error % (95% CI) | + test-time fine-tuning: error % (95% CI) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "line" in r:  # not run here: as BENCHMARKS.md has it
            lines.append(r["line"])
            continue
        pre = r.get("pretrain")
        stage1 = "-" if not pre else (f"{pre['steps']} ({pre['best_step']}), {pre['train_s']:.0f}, "
                                      f"{100 * pre['best_val']:.1f} (font val chars, 20-way)")
        lines.append(
            f"| {r['background']} | {RECIPE.get(r['learner'], r['learner'])} | {stage1} | {r.get('steps', '?')} "
            f"({r.get('best_step', '?')}), {r.get('train_s', float('nan')):.0f}, {_val_cell(r)} | "
            f"{r['error_pct']:.1f} (+- {r['ci95_pct']:.1f}) | "
            + (f"{r['ttft']['error_pct']:.1f} (+- {r['ttft']['ci95_pct']:.1f}) |" if r.get("ttft") else "- |"))
    return "\n".join(lines)


def _val_cell(r: dict) -> str:
    """The best validation accuracy of a row's run; none for a train+val final model (train.include_val)."""
    if r.get("best_val") is None and "best_val" in r:
        return "- (val alphabets trained on)"
    return f"{100 * r.get('best_val', float('nan')):.1f}"


def markdown(rows: list[dict], floor: dict, command: str) -> str:
    from fewshot.published import figures_for

    lines = [
        "## Omniglot one-shot classification: the 20 official runs (Lake et al. 2015)",
        "",
        f"Command: `{command}`",
        "",
        "20 runs of 20-way within-alphabet 1-shot over the evaluation alphabets, 400 test items; error = "
        "wrong / 400 (the official demo's score). Conv4 from scratch on 28x28 inverted images, trained only on "
        "the background set named (`small1`, `small2`, or `both` = their union; Early_Aramaic and Tagalog held "
        "out for validation), 20-way 1-shot training episodes with 90-degree rotations as new classes; the "
        "checkpoint with the best validation accuracy is scored. MobileNetV2 rows start from ImageNet weights and "
        "fine-tune the whole network on 56x56 inverted images (configs/omniglot-protonet-mobilenetv2-20w1s.toml). "
        "`protomaml` rows are first-order MAML whose task heads start at the support set's prototype classifier "
        "(`head_init = \"prototypes\"`, inner step 0.01; configs/omniglot-protomaml-20w1s.toml); `maml` rows start "
        "from the learned zero head (configs/omniglot-maml-20w1s.toml). CI: 95% normal interval over the 20 runs. "
        "Training was CPU-only on a shared 2-core machine, so the step budgets are small; the training "
        "time is wall-clock.",
        "",
        "| model | background | steps (best) | train time s | val acc | error % (95% CI) |",
        "|---|---|---|---|---|---|",
        f"| untrained Conv4 + nearest prototype (floor) | none | 0 | 0 | - | "
        f"{floor['error_pct']:.1f} (+- {floor['ci95_pct']:.1f}) |",
    ]
    for r in rows:
        if "line" in r:  # not run here: as BENCHMARKS.md has it
            lines.append(r["line"])
            continue
        lines.append(
            f"| {model_name(r['learner'])} | {r['background']} | {r.get('steps', '?')} ({r.get('best_step', '?')}) | "
            f"{r.get('train_s', float('nan')):.0f} | {_val_cell(r)} | "
            f"{r['error_pct']:.1f} (+- {r['ci95_pct']:.1f}) |"
        )
    lines += ["", "Published error rates on the same 20 runs (Lake, Salakhutdinov & Tenenbaum 2015, Science):", ""]
    lines += [f"- {f.method}: {f.value:g}%" for f in figures_for("omniglot-runs", None, None, protocol=True)]
    lines.append(f"- deep convnet (full 30-alphabet background): {FULL_BACKGROUND_CONVNET:g}%")
    lines += ["", "Trained with `OMP_NUM_THREADS=1 fewshot train --config configs/omniglot-<learner>-20w1s.toml "
              "--dataset omniglot-<small1|small2> (omniglot for both) --out runs/omniglot/<learner>-<background> "
              "--steps <steps>` (or `bin/bench-omniglot --train --steps N`), seed 0; one thread was several times "
              "faster than two on the loaded shared machine."]
    lines += ["", "Learner settings (of the rows run by this command; a kept row's are in its config): " + "; ".join(
        f"{r['learner']}-{r['background']}: {json.dumps(r.get('learner_config', {}), sort_keys=True)}"
        for r in rows if "line" not in r)]
    return "\n".join(lines)


def model_name(learner: str) -> str:
    """The model cell of a row of section omniglot."""
    return f"{learner.split('-')[0]} {ARCH[learner]}"


def written_rows(section: str = "omniglot") -> dict[tuple[str, str], str]:
    """The model rows of ``section`` as BENCHMARKS.md has them, by (model cell, background cell) for section
    omniglot and by (training cell, background cell) for section omniglot-fonts."""
    from benchmarks_md import read_section

    rows = {}
    for line in read_section(section).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("| ") or len(cells) != 6:
            continue
        if section == "omniglot" and cells[1] in BACKGROUNDS:
            rows[(cells[0], cells[1])] = line
        elif section == "omniglot-fonts" and cells[0] in BACKGROUNDS:
            rows[(cells[1], cells[0])] = line
    return rows


def row_key(section: str, learner: str, background: str) -> tuple[str, str]:
    """A row's key in :func:`written_rows`."""
    return (model_name(learner) if section == "omniglot" else RECIPE.get(learner, learner), background)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bin/bench-omniglot", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", default="runs/omniglot", help="folder of the <learner>-<background> checkpoints")
    p.add_argument("--data-root", default=None)
    p.add_argument("--learner", action="append", choices=LEARNERS, default=None)
    p.add_argument("--background", action="append", choices=sorted(BACKGROUNDS), default=None)
    p.add_argument("--train", action="store_true", help="train the missing checkpoints first")
    p.add_argument("--steps", type=int, default=None, help="with --train: training steps (default: the config's)")
    p.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    p.add_argument("--section", choices=("omniglot", "omniglot-fonts"), default="omniglot",
                   help="omniglot-fonts: the font-glyph pretraining comparison table")
    args = p.parse_args(argv)
    runs = Path(args.runs)
    rows = []
    written = written_rows(args.section)
    chosen = [(lr, bg) for lr in args.learner or LEARNERS for bg in args.background or ("small1", "small2", "both")]
    every = chosen if args.section != "omniglot" else [(lr, bg) for lr in LEARNERS for bg in BACKGROUNDS]
    for learner, background in every:
        folders = member_folders(learner, background, runs)
        folder = folders[0]
        if learner in STAGED and background == "both":
            continue
        if (learner, background) not in chosen or not (args.train or all(map(is_checkpoint, folders))):
            if row_key(args.section, learner, background) in written:
                rows.append({"learner": learner, "background": background,
                             "line": written[row_key(args.section, learner, background)]})
            elif (learner, background) in chosen:
                print(f"skipping {folder}: no checkpoint (train it, or pass --train)", flush=True)
            continue
        if args.train and learner in STAGED and not is_checkpoint(REPO / FONTS_PRETRAIN[1]):
            print("+", shlex.join(pretrain_command()), flush=True)
            subprocess.run(pretrain_command(), check=True, cwd=REPO)
        seeds = (0, *ENSEMBLE_SEEDS) if learner in ENSEMBLES else (0,)
        for member, seed in zip(folders, seeds):
            if args.train and not is_checkpoint(member):
                cmd = train_command(ENSEMBLES.get(learner, learner), background, runs, args.steps, seed)
                print("+", shlex.join(cmd), flush=True)
                start = time.perf_counter()
                subprocess.run(cmd, check=True)
                print(f"trained in {time.perf_counter() - start:.0f} s", flush=True)
        others = [str(f) for f in folders[1:]]
        row = {"learner": learner, "background": background, **_train_info(folder),
               **score(str(folder), args.data_root, ensemble=others)}
        if args.section == "omniglot-fonts":
            row["ttft"] = score(str(folder), args.data_root, learner=TTFT, ensemble=others)
        print(json.dumps({k: v for k, v in row.items() if k != "learner_config"}), flush=True)
        rows.append(row)
    command = bench_command("bench-omniglot", argv)
    if args.section == "omniglot-fonts":
        publish("omniglot-fonts", fonts_markdown(rows, command), not args.no_write)
        return 0
    floor = score(None, args.data_root)
    publish("omniglot", markdown(rows, floor, command), not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
