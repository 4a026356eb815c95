"""fewshot's learners against the setfit package on the same frozen test episodes: BENCHMARKS.md "setfit".

Every method scores the same first N episodes of each frozen file (5-way, 15 queries per class,
test classes) with the same MiniLM weights: the folder :func:`fewshot.encoders.text.minilm_path`
gives is what fewshot loads and what ``setfit.SetFitModel.from_pretrained`` is given. Methods:
``protonet`` (frozen MiniLM, cosine prototypes), ``setfit`` (``fewshot run --learner setfit``, its
defaults: SetFit 1.2.0's), ``setfit-pkg`` (the setfit package, ``TrainingArguments()`` defaults, a
fresh copy of the model per task) and ``setfit-pkg-readme`` (the settings of the package README's
few-shot example: batch 16, 4 epochs; its eval/save options need an eval set and are left out).
Seconds are per task: body tuning, head fitting and embedding the task's items (protonet embeds
each example once for all tasks). The paired difference is per episode, mean +- 95% CI.

    bin/bench-setfit [--episodes 600] [--rows clinc150-5w1s ...] [--methods protonet setfit setfit-pkg]
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import logging
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from benchmarks_md import publish, publish_rows
from paired import paired_table

from fewshot.config import FewShotConfig
from fewshot.encoders.text import minilm_path
from fewshot.evaluation import mean_ci95
from fewshot.experiment import build_dataset, build_episodes, run_experiment

SECTION = "setfit"
ROOT = Path(__file__).resolve().parents[2]
ROWS = {f"{d}-5w{s}s": (d, str(ROOT / "episodes" / f"{d}-5w{s}s15q-600ep-seed0.jsonl"))
        for d in ("huffpost", "clinc150") for s in (1, 5)}
FEWSHOT = {"protonet": {"name": "protonet"}, "setfit": {"name": "setfit"},
           "setfit-prototype": {"name": "setfit", "head": "prototype"}}
PACKAGE = {"setfit-pkg": {}, "setfit-pkg-readme": {"batch_size": 16, "num_epochs": 4}}
PAIRS = [("setfit", "setfit-pkg"), ("setfit", "protonet"), ("setfit-pkg", "protonet"),
         ("setfit-pkg-readme", "setfit-pkg")]


def _cfg(row: str, n_episodes: int, device: str, data_root: str | None, learner: dict | None = None):
    dataset, path = ROWS[row]
    return FewShotConfig.from_dict({
        "data": {"dataset": dataset, **({"data_root": data_root} if data_root else {})},
        "episodes": {"episodes_file": path, "episodes": n_episodes}, "encoder": "minilm", "device": device,
        **({"learner": learner} if learner else {})})


def score_fewshot(row: str, method: str, n_episodes: int, device: str, data_root=None) -> dict:
    report = run_experiment(_cfg(row, n_episodes, device, data_root, FEWSHOT[method]), progress=False)
    acc = [float(a) for a in report.result.accuracies]
    return {"row": row, "method": method, "episodes": len(acc), "accuracies": acc,
            "seconds_per_task": report.result.elapsed_s / len(acc)}


def score_package(row: str, method: str, n_episodes: int, device: str, data_root=None) -> dict:
    """The setfit package on the same episodes: per task a fresh copy of the model, Trainer.train, predict."""
    import datasets
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments
    from setfit import logging as setfit_logging

    setfit_logging.set_verbosity_warning()
    datasets.disable_progress_bars()
    logging.getLogger("sentence_transformers").setLevel(logging.WARNING)
    cfg = _cfg(row, n_episodes, device, data_root)
    dataset = build_dataset(cfg)
    episodes, _ = build_episodes(cfg, dataset)
    pristine = SetFitModel.from_pretrained(minilm_path(), device="cuda" if device == "cuda" else "cpu")
    acc, elapsed = [], 0.0
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, report_to="none", show_progress_bar=False, save_strategy="no",
                                 logging_strategy="no",
                                 **PACKAGE[method])
        for ep in episodes:
            start = time.perf_counter()
            model = copy.deepcopy(pristine)
            train = Dataset.from_dict({"text": dataset.take(ep.support), "label": ep.support_labels.tolist()})
            with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):  # its Trainer prints a dict
                warnings.simplefilter("ignore")
                Trainer(model=model, args=args, train_dataset=train).train()
            pred = np.asarray(model.predict(dataset.take(ep.query), as_numpy=True))
            elapsed += time.perf_counter() - start
            acc.append(float((pred == ep.query_labels).mean()))
    return {"row": row, "method": method, "episodes": len(acc), "accuracies": acc,
            "seconds_per_task": elapsed / len(acc)}


def measure(rows, methods, episodes: dict, device, data_root=None):
    for row in rows:
        for m in methods:
            score = score_fewshot if m in FEWSHOT else score_package
            r = score(row, m, episodes[row], device, data_root)
            print(f"{row} {m}: {100 * np.mean(r['accuracies']):.2f} over {r['episodes']}, "
                  f"{r['seconds_per_task']:.2f} s/task", file=sys.stderr, flush=True)
            r.update(torch_threads=torch.get_num_threads(), load_1min=round(os.getloadavg()[0], 1), device=device)
            yield r


def _compared(methods: list[str]) -> list[tuple[str, str]]:
    return [(a, b) for a, b in PAIRS if a in methods and b in methods]


def _cell(result: dict) -> str:
    mean, ci = mean_ci95(np.asarray(result["accuracies"]))
    return f"{100 * mean:.2f} +- {100 * ci:.2f} ({result['seconds_per_task']:.2f})"


def render(rows: list[dict], cmd: str) -> str:
    lines = ["## SetFit's recipe: fewshot's learner against the setfit package", "", f"Command: `{cmd}`", "",
             __doc__.split("\n\n")[1].replace("\n", " "), ""]
    lines += paired_table(rows, "method", _compared, lambda m: f"{m} acc % (s/task)", _cell)
    lines += ["", "fewshot implements the recipe natively (`fewshot/learners/setfit.py`) rather than wrapping the "
              "package: the package takes a sentence-transformers model, not a fewshot encoder (checkpoints, entity "
              "pooling, devices), needs sentence-transformers, datasets and pyarrow (not fewshot dependencies; absent "
              "on the GPU machine), and builds a Dataset and a Trainer per task. Both draw SetFit 1.2.0's pairs: at "
              "5-way 1-shot the only positives are each example with itself, 5 of them against 10 negatives, "
              "oversampled to 20 pairs, 2 steps of batch 16 whose first has learning rate 0 (warmup): in effect a "
              "logistic-regression head on frozen MiniLM. At 5-way 5-shot: 500 pairs, 32 steps.",
              "", f"Episode files: `episodes/<row>15q-600ep-seed0.jsonl`, their first N episodes. "
              f"{rows[-1].get('torch_threads', torch.get_num_threads())} torch thread(s), device "
              f"{rows[-1].get('device', 'cpu')}, {os.cpu_count()} cores, machine shared (1-minute load average "
              f"{rows[-1].get('load_1min', round(os.getloadavg()[0], 1))} at the end): seconds compare loosely. "
              "600 episodes on a GPU machine: `.venv/bin/pip install setfit==1.2.0`, then `bin/bench-setfit "
              "--episodes 600 --device cuda --methods protonet setfit setfit-pkg setfit-pkg-readme --rows ROW` "
              "for each row (one row per call keeps each call shorter)."]
    return "\n".join(lines)


def _json_row(line: str) -> dict | None:
    """A row this script printed, or None for any other line (a Trainer's printed dict, the Markdown)."""
    try:
        row = json.loads(line)
    except ValueError:
        return None
    return row if isinstance(row, dict) and "row" in row and "accuracies" in row else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bin/bench-setfit", description=__doc__.split("\n\n")[0])
    p.add_argument("--episodes", type=int, default=600, help="first N episodes of each frozen file")
    p.add_argument("--episodes-1shot", type=int, default=None, help="N for the 1-shot rows (default --episodes)")
    p.add_argument("--episodes-5shot", type=int, default=None, help="N for the 5-shot rows (default --episodes)")
    p.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    p.add_argument("--methods", nargs="+", default=["protonet", "setfit", "setfit-pkg"],
                   choices=list(FEWSHOT) + list(PACKAGE))
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--data-root", default=None)
    p.add_argument("--section", default=SECTION, help=f"BENCHMARKS.md section to write (default {SECTION})")
    p.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    p.add_argument("--from-jsonl", default=None, metavar="FILE",
                   help="measure nothing: render the JSON lines an earlier run printed (its command is --command)")
    p.add_argument("--command", default=None, help="with --from-jsonl: the command that measured them")
    args = p.parse_args(argv)
    if args.from_jsonl:
        rows = [row for row in map(_json_row, Path(args.from_jsonl).read_text().splitlines()) if row]
        if not rows:
            p.error(f"--from-jsonl {args.from_jsonl}: no JSON rows in it; pass the stdout of a bin/bench-setfit run")
        publish(args.section, render(rows, args.command or "bin/bench-setfit"), write=not args.no_write)
        return 0
    n = {row: (args.episodes_1shot if row.endswith("1s") else args.episodes_5shot) or args.episodes
         for row in args.rows}
    if min(n.values()) < 2:
        p.error(f"every episode count must be at least 2 (a 95% interval needs two), got {n}")
    publish_rows(args.section, "bench-setfit", measure(args.rows, args.methods, n, args.device, args.data_root),
                 render, argv, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
