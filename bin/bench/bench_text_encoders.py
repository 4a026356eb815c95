"""Frozen text encoders side by side on the repo's frozen test episodes: BENCHMARKS.md "text-encoders".

Every encoder (and precision) scores the same first N episodes of each frozen file
(``fewshot run --episodes-file F --episodes N --encoder E``): frozen encoder, nearest
prototype by the encoder's metric (cosine), inductive. The difference column is
paired (per-episode accuracy differences, mean +- 95% CI), so it is tighter than the
two intervals beside it. The rows of one dataset share one embedding of its examples per
encoder (:func:`fewshot.evaluation.example_cache`), so a row's seconds are its scoring plus
embedding the examples no earlier row of its dataset touched (the encoder's load not counted).

    bin/bench-text-encoders [--episodes 300] [--rows clinc150-5w1s ...] [--encoders minilm mpnet mpnet:int8]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

from benchmarks_md import publish_rows
from paired import paired_table

from fewshot.config import FewShotConfig
from fewshot.evaluation import evaluate, example_cache
from fewshot.experiment import build_dataset, build_episodes, build_learner

SECTION = "text-encoders"
EPISODES = "episodes"
ROOT = Path(__file__).resolve().parents[2]
DATASETS = ("clinc150", "huffpost", "fewrel", "trec", "reuters", "wn33", "wordnet")  # every text dataset's test classes
ROWS = {f"{d}-5w{s}s": (d, str(ROOT / EPISODES / f"{d}-5w{s}s15q-600ep-seed0.jsonl"))
        for d in DATASETS for s in (1, 5)}


def config(row: str, encoder: str, n_episodes: int, data_root: str | None = None) -> FewShotConfig:
    """``fewshot run --episodes-file F --episodes N --encoder E`` for ``row``; ``encoder`` is a name, or
    name:precision (e.g. mpnet:int8)."""
    dataset, path = ROWS[row]
    name, _, precision = encoder.partition(":")
    return FewShotConfig.from_dict({
        "data": {"dataset": dataset, **({"data_root": data_root} if data_root else {})},
        "episodes": {"episodes_file": path, "episodes": n_episodes}, "encoder": name,
        "encoder_options": {"precision": precision} if precision else {}})


def score_dataset(rows: list[str], encoder: str, n_episodes: int, data_root: str | None = None):
    """The results of ``rows`` (all of one dataset) with ``encoder``: one dataset, one learner, one embedding
    cache, so each example is embedded once for all the rows."""
    cfg = config(rows[0], encoder, n_episodes, data_root)
    dataset = build_dataset(cfg)
    learner = build_learner(cfg, dataset)
    cache = example_cache(learner, dataset, cfg.batch_size, progress=False)
    for row in rows:
        cfg = config(row, encoder, n_episodes, data_root)
        episodes, _ = build_episodes(cfg, dataset)
        result = evaluate(learner, dataset, episodes, batch_size=cfg.batch_size, cache=cache, progress=False)
        acc = [float(a) for a in result.accuracies]
        yield {"row": row, "encoder": encoder, "episodes": len(acc), "accuracy_mean": result.mean,
               "accuracy_ci95": result.ci95, "seconds": round(result.elapsed_s, 1), "embedded": result.n_embedded,
               "accuracies": acc, "episodes_file": ROWS[row][1]}


def measure(rows, encoders, n_episodes, data_root=None, done: dict | None = None):
    """Every row with every encoder, a dataset at a time. ``done``: results of an earlier, interrupted run by
    (row, encoder, episodes) (:func:`earlier_results`), given as they were instead of measured again."""
    done = done or {}
    by_dataset = {}
    for row in rows:
        by_dataset.setdefault(ROWS[row][0], []).append(row)
    for dataset_rows in by_dataset.values():
        for enc in encoders:
            todo = [r for r in dataset_rows if (r, enc, n_episodes) not in done]
            measured = {r["row"]: r for r in score_dataset(todo, enc, n_episodes, data_root)} if todo else {}
            for row in dataset_rows:
                yield measured[row] if row in measured else done[(row, enc, n_episodes)]


def earlier_results(path: str) -> dict:
    """The results an earlier run of this script printed (one JSON object a line; other lines are skipped), by
    (row, encoder, episodes)."""
    found = {}
    for line in Path(path).read_text().splitlines():
        if line.startswith('{"row": '):
            r = json.loads(line)
            found[(r["row"], r["encoder"], r["episodes"])] = r
    return found


def pairs(encoders: list[str]) -> list[tuple[str, str]]:
    """Paired differences to report: every encoder against the first, and name:precision against name."""
    out = [(e, encoders[0]) for e in encoders[1:]]
    out += [(e, e.partition(":")[0]) for e in encoders[1:]
            if ":" in e and e.partition(":")[0] in encoders[1:]]
    return out


def _cell(result: dict) -> str:
    return f"{100 * result['accuracy_mean']:.2f} +- {100 * result['accuracy_ci95']:.2f} ({result['seconds']:.0f})"


def render(rows: list[dict], cmd: str) -> str:
    lines = ["## Frozen text encoders on the frozen test episodes", "", f"Command: `{cmd}`", "",
             __doc__.split("\n\n")[1].replace("\n", " "), ""]
    lines += paired_table(rows, "encoder", pairs, lambda e: f"{e} acc % (s)", _cell)
    lines += ["", f"Episode files: `{EPISODES}/<row>15q-600ep-seed0.jsonl` (seed 0, test classes, 15 queries per "
              f"class), their first N episodes. CPU, {torch.get_num_threads()} torch thread(s), machine shared "
              f"(1-minute load average {os.getloadavg()[0]:.1f} at the end on {os.cpu_count()} cores): seconds "
              "compare loosely. `name:int8` is `--precision int8` (`fewshot.encoders.text.quantize_int8`)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bin/bench-text-encoders", description=__doc__.split("\n\n")[0])
    p.add_argument("--episodes", type=int, default=300, help="first N episodes of each frozen file")
    p.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    p.add_argument("--encoders", nargs="+", default=["minilm", "mpnet"],
                   help="encoder names, or name:precision (mpnet:int8); the first is the paired baseline")
    p.add_argument("--data-root", default=None)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--section", default=SECTION, help=f"BENCHMARKS.md section to write (default {SECTION}); "
                   "another name keeps the rows of an earlier run")
    p.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    p.add_argument("--resume", metavar="LOG", default=None,
                   help="the output of an interrupted run: its rows are taken as they were, the rest measured")
    args = p.parse_args(argv)
    if args.episodes < 2:
        p.error(f"--episodes must be at least 2 (a 95% interval needs two), got {args.episodes}")
    if args.threads:
        torch.set_num_threads(args.threads)
    done = earlier_results(args.resume) if args.resume else None
    publish_rows(args.section, "bench-text-encoders",
                 measure(args.rows, args.encoders, args.episodes, args.data_root, done), render, argv,
                 write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
