"""SNIPS few-shot joint episodes, frozen-encoder joint prototypes: BENCHMARKS.md "snips-joint-fewshot".

Each row is one ``fewshot run --dataset snips-joint-fewshot --learner protojoint --json`` on the 3 test
intents (AddToPlaylist, BookRestaurant, SearchCreativeWork; episodes/splits/snips-joint-fewshot.json),
``--way 3`` with ``--shot`` 1 and 5, ``--query`` utterances per intent, ``--episodes`` seeded episodes.
Figures: intent accuracy, slot span micro F1 (counts summed over episodes) and exact match, each with
its 95% bootstrap interval over episodes. Nothing is trained or tuned.

    bin/bench-joint-fewshot [--way 3] [--shots 1 5] [--query 15] [--episodes 300] [--seed 0] [--threads 1]
                            [--device cpu] [--encoder minilm] [--data-root DIR] [--no-write]
"""
from __future__ import annotations

import argparse
import json

from bench_joint import METRICS, fewshot
from benchmarks_md import publish_rows


def rows(a):
    for shot in a.shots:
        args = ["run", "--dataset", "snips-joint-fewshot", "--learner", "protojoint", "--way", str(a.way), "--shot",
                str(shot), "--query", str(a.query), "--episodes", str(a.episodes), "--seed", str(a.seed),
                "--device", a.device, "--json", "--quiet"]
        args += (["--data-root", a.data_root] if a.data_root else []) + (["--encoder", a.encoder] if a.encoder else [])
        d = json.loads(fewshot(args, a.threads))
        yield {"way": d["way"], "shot": d["shot"], "query": d["query"], "episodes": d["episodes"], "seed": d["seed"],
               "queries": d["queries"], "encoder": d["encoder"],
               **{k: d[k] for m in METRICS for k in (m, f"{m}_ci95_low", f"{m}_ci95_high")},
               "slot_precision": d["slot_precision"], "slot_recall": d["slot_recall"],
               "elapsed_s": d["elapsed_s"], "embedded": d["embedded_examples"]}


def _cell(r: dict, m: str) -> str:
    return f"{100 * r[m]:.2f} ({100 * r[m + '_ci95_low']:.2f}-{100 * r[m + '_ci95_high']:.2f})"


def markdown(done: list[dict], cmd: str) -> str:
    lines = ["## SNIPS few-shot joint episodes (Krone et al. 2020): frozen joint prototypes", "", f"Command: `{cmd}`",
             "", "`snips-joint-fewshot`: the 13,784 `train_*_full` queries; intents split 3 train (GetWeather, "
             "PlayMusic, RateBook) / 1 val (SearchScreeningEvent) / 3 test (AddToPlaylist, BookRestaurant, "
             "SearchCreativeWork), `default_rng(0)` permutation (our split: Krone et al.'s SNIPS intent lists were "
             "not found). An episode draws the test intents, K support and Q query utterances of each, disjoint. "
             "Learner `protojoint` on frozen all-MiniLM-L6-v2: intent prototypes are the mean pooled support "
             "utterance embeddings (cosine), slot prototypes O plus each slot type of the support set (BIO "
             "collapsed to types; mean word embeddings, squared Euclidean as protobert); nearest prototype for the "
             "query's intent and each query word, runs of one type read as spans. A query's slot of a type absent "
             "from the support counts as a miss. Slot F1: exact-span micro F1, counts summed over episodes. Exact "
             "match: intent right and every slot right. 95% intervals: bootstrap over episodes (1000 resamples). "
             "CPU, 1 torch thread, `nice -n 15`; nothing trained or tuned.", "",
             "| way | shot | query/intent | episodes | seed | intent acc % | slot F1 % | exact match % | "
             "slot P / R % | s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in done:
        lines.append(f"| {r['way']} | {r['shot']} | {r['query']} | {r['episodes']} | {r['seed']} | "
                     f"{_cell(r, 'intent_accuracy')} | {_cell(r, 'slot_f1')} | {_cell(r, 'exact_match')} | "
                     f"{100 * r['slot_precision']:.1f} / {100 * r['slot_recall']:.1f} | {r['elapsed_s']:.0f} |")
    lines += ["", "A floor: no meta-training on the train intents (Krone et al. meta-train prototypical networks "
              "and MAML on theirs). With 3 test intents a 3-way episode always holds all three: episodes differ in "
              "their utterances, not their intents. The single val intent allows no N-way episode of its own "
              "(nothing here is tuned). `s` is wall time on a shared 2-core box."]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--way", type=int, default=3)
    p.add_argument("--shots", type=int, nargs="+", default=[1, 5])
    p.add_argument("--query", type=int, default=15)
    p.add_argument("--episodes", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--encoder", default=None, help="Encoder name or model folder (default minilm).")
    p.add_argument("--data-root", default=None)
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args(argv)
    publish_rows("snips-joint-fewshot", "bench-joint-fewshot", rows(a), markdown, argv, write=not a.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
