"""``bin/bench-omniglot``: Omniglot's official one-shot task (Lake et al. 2015) for models trained here.

For each checkpoint folder ``RUNS/<learner>-<background>`` written by
``fewshot train --config configs/omniglot-<learner>-20w1s.toml --dataset
omniglot-<background>`` (background: small1, small2 or both = ``omniglot``),
scores the model on ``omniglot-runs``: the 20 official runs of 20-way
within-alphabet 1-shot, 400 test items, error = wrong / 400. An untrained Conv4
(random initialisation, nearest prototype) is the floor. The published error
rates of Lake, Salakhutdinov & Tenenbaum (2015) on this exact protocol are
printed beside (:mod:`fewshot.published`).

``--train`` first runs the training commands (``--steps`` each, sequentially).
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

BACKGROUNDS = {"small1": "omniglot-small1", "small2": "omniglot-small2", "both": "omniglot"}
LEARNERS = ("protonet", "maml", "protonet-mobilenetv2")  # configs/omniglot-<learner>-20w1s.toml
ARCH = {"protonet": "Conv4", "maml": "Conv4", "protonet-mobilenetv2": "MobileNetV2 (ImageNet init)"}
FULL_BACKGROUND_CONVNET = 13.5  # Lake et al. 2015: deep convnet trained on the full 30-alphabet background set


def train_command(learner: str, background: str, runs: Path, steps: int | None) -> list[str]:
    cmd = [str(Path(sys.executable).with_name("fewshot")), "train", "--config",
           f"configs/omniglot-{learner}-20w1s.toml", "--dataset", BACKGROUNDS[background],
           "--out", str(runs / f"{learner}-{background}"), "--quiet"]
    return cmd + (["--steps", str(steps)] if steps else [])


def score(checkpoint: str | None, data_root: str | None, seed: int = 0) -> dict:
    """Official-protocol accuracy of a checkpoint (None: untrained Conv4 + protonet, seeded)."""
    import torch

    from fewshot.config import FewShotConfig
    from fewshot.experiment import run_experiment

    d = {"data": {"dataset": "omniglot-runs", "data_root": data_root}, "device": "cpu"}
    if checkpoint:
        d["checkpoint"] = checkpoint
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
    return info


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
        "fine-tune the whole network on 56x56 inverted images (configs/omniglot-protonet-mobilenetv2-20w1s.toml). CI: 95% normal interval over the 20 runs. "
        "Training was CPU-only on a shared 2-core machine, so the step budgets are small; the training "
        "time is wall-clock.",
        "",
        "| model | background | steps (best) | train time s | val acc | error % (95% CI) |",
        "|---|---|---|---|---|---|",
        f"| untrained Conv4 + nearest prototype (floor) | none | 0 | 0 | - | "
        f"{floor['error_pct']:.1f} (+- {floor['ci95_pct']:.1f}) |",
    ]
    for r in rows:
        lines.append(
            f"| {r['learner'].split('-')[0]} {ARCH[r['learner']]} | {r['background']} | {r.get('steps', '?')} ({r.get('best_step', '?')}) | "
            f"{r.get('train_s', float('nan')):.0f} | {100 * r.get('best_val', float('nan')):.1f} | "
            f"{r['error_pct']:.1f} (+- {r['ci95_pct']:.1f}) |"
        )
    lines += ["", "Published error rates on the same 20 runs (Lake, Salakhutdinov & Tenenbaum 2015, Science):", ""]
    lines += [f"- {f.method}: {f.value:g}%" for f in figures_for("omniglot-runs", None, None, protocol=True)]
    lines.append(f"- deep convnet (full 30-alphabet background): {FULL_BACKGROUND_CONVNET:g}%")
    lines += ["", "Trained with `OMP_NUM_THREADS=1 fewshot train --config configs/omniglot-<learner>-20w1s.toml "
              "--dataset omniglot-<small1|small2> (omniglot for both) --out runs/omniglot/<learner>-<background> "
              "--steps <steps>` (or `bin/bench-omniglot --train --steps N`), seed 0; one thread was several times "
              "faster than two on the loaded shared machine."]
    lines += ["", "Learner settings: " + "; ".join(
        f"{r['learner']}-{r['background']}: {json.dumps(r.get('learner_config', {}), sort_keys=True)}"
        for r in rows)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bin/bench-omniglot", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", default="runs/omniglot", help="folder of the <learner>-<background> checkpoints")
    p.add_argument("--data-root", default=None)
    p.add_argument("--learner", action="append", choices=LEARNERS, default=None)
    p.add_argument("--background", action="append", choices=sorted(BACKGROUNDS), default=None)
    p.add_argument("--train", action="store_true", help="train the missing checkpoints first")
    p.add_argument("--steps", type=int, default=None, help="with --train: training steps (default: the config's)")
    p.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = p.parse_args(argv)
    runs = Path(args.runs)
    rows = []
    for learner in args.learner or LEARNERS:
        for background in args.background or ("small1", "small2", "both"):
            folder = runs / f"{learner}-{background}"
            if args.train and not is_checkpoint(folder):
                cmd = train_command(learner, background, runs, args.steps)
                print("+", shlex.join(cmd), flush=True)
                start = time.perf_counter()
                subprocess.run(cmd, check=True)
                print(f"trained in {time.perf_counter() - start:.0f} s", flush=True)
            if not is_checkpoint(folder):
                print(f"skipping {folder}: no checkpoint (train it, or pass --train)", flush=True)
                continue
            row = {"learner": learner, "background": background, **_train_info(folder),
                   **score(str(folder), args.data_root)}
            print(json.dumps({k: v for k, v in row.items() if k != "learner_config"}), flush=True)
            rows.append(row)
    floor = score(None, args.data_root)
    command = bench_command("bench-omniglot", argv)
    publish("omniglot", markdown(rows, floor, command), not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
