"""Frozen-encoder few-shot NER floor on Few-NERD INTER test types: BENCHMARKS.md "ner-fewnerd".

ProtoBERT and NNShot over frozen all-MiniLM-L6-v2 word embeddings (mean of sub-tokens), on
5-way 1~2-shot and 10-way 5~10-shot episodes of the 17 INTER test types, sampled by the
publisher's greedy rule (fewshot.tag_episodes) from inter/test.txt: they are NOT the
publisher's released test episodes. Exact-span exact-type micro F1, counts summed over
episodes, 95% bootstrap interval over episodes.

    bin/bench-ner [--episodes 100] [--seed 0] [--data-root DIR] [--no-write]
"""
from __future__ import annotations

import argparse

from benchmarks_md import publish_rows

from fewshot.config import FewShotConfig
from fewshot.experiment import run_experiment

SETTINGS = ((5, 1), (10, 5))
LEARNERS = ("protobert", "nnshot")


def measure(learner: str, way: int, shot: int, episodes: int, seed: int, data_root: str | None = None) -> dict:
    """One row: ``learner`` on ``way``-way ``shot``~2``shot``-shot Few-NERD INTER test episodes."""
    cfg = FewShotConfig.from_dict({"data": {"dataset": "fewnerd-inter", "data_root": data_root},
                                   "episodes": {"way": way, "shot": shot, "episodes": episodes, "seed": seed},
                                   "learner": {"name": learner}})
    d = run_experiment(cfg, progress=False).to_dict()
    return {k: d[k] for k in ("dataset", "learner", "encoder", "way", "shot", "episodes", "seed", "precision",
                              "recall", "f1", "f1_ci95_low", "f1_ci95_high", "elapsed_s", "embedded_examples")}


def markdown(rows: list[dict], cmd: str) -> str:
    lines = ["## Few-shot NER: frozen-encoder floor on Few-NERD INTER test types", "", f"Command: `{cmd}`", "",
             "ProtoBERT (nearest type prototype, O included) and NNShot (nearest support word) over frozen "
             "all-MiniLM-L6-v2 word embeddings (mean of each word's sub-tokens), squared Euclidean distance, no "
             "training. Episodes of the 17 INTER test types sampled from `ner/few-nerd/inter/test.txt` by the "
             "publisher's greedy N-way K~2K rule (support and query K~2K, disjoint): they follow the protocol "
             "but are **not** the publisher's released test episodes. Exact-span exact-type micro F1 with "
             "counts summed over all episodes (Few-NERD's rule, IO tags); 95% interval: bootstrap over "
             f"episodes (1000 resamples). Episode seed {rows[0]['seed'] if rows else '-'}; CPU, 1 thread; `s` is the "
             "whole run (data loading, embedding, scoring).", "",
             "| setting | learner | episodes | F1 (95% CI) | precision | recall | s | sentences embedded |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['way']}-way {r['shot']}~{2 * r['shot']}-shot | {r['learner']} | {r['episodes']} | "
                     f"{100 * r['f1']:.2f} ({100 * r['f1_ci95_low']:.2f}-{100 * r['f1_ci95_high']:.2f}) | "
                     f"{100 * r['precision']:.2f} | {100 * r['recall']:.2f} | {r['elapsed_s']:.0f} | "
                     f"{r['embedded_examples']} |")
    lines += ["", "Published F1 on the released episodes (BERT trained on the 36 INTER train types, which are not "
              "shipped here): ProtoBERT 38.83 / 52.92, NNShot 47.24 / 49.57 (5-way 1~2 / 10-way 5~10)."]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", default=None)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    rows = (measure(learner, way, shot, args.episodes, args.seed, args.data_root)
            for way, shot in SETTINGS for learner in LEARNERS)
    publish_rows("ner-fewnerd", "bench-ner", rows, markdown, argv, write=not args.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
