"""``bin/bench-feedback``: does correcting wrong answers at run time help, and what does it cost?

A replayed stream on CLINC150's test intents (the 45 intents of the 3 test domains):

1. The intents arrive one after another, each with ``--shots`` examples (drawn with ``--seed``),
   and are added to a :class:`fewshot.FewShotClassifier` (frozen all-MiniLM-L6-v2) with
   ``add_classes``; the classifier is saved to an index folder, and a
   :class:`fewshot.feedback.PredictionLog` is opened inside it.
2. ``--queries`` held-out examples of those intents (not among the support examples) are predicted
   in a fixed random order. *Frozen*: the classifier as it was after step 1. *Corrections*: every
   prediction is logged (top-3 labels and scores); a wrong answer is corrected with probability
   ``--correct-rate`` (a user fixing some of the mistakes they see): the correction is logged and
   the query text is added as a support example of its true class (``add_classes``, which moves
   that class's prototype to the running mean of its examples). Both see the same queries in the
   same order, so the per-window difference is the effect of the corrections alone.

Reported: accuracy per window of ``--window`` queries for both, with 95% binomial intervals; the
time of one correction (log append + ``add_classes`` including embedding the text); the index
folder's size before and after, and the log's size. Printed as Markdown and written to section
``feedback`` of BENCHMARKS.md (``--no-write`` to only print).
"""
from __future__ import annotations

import argparse
import math
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from fewshot import FewShotClassifier
from fewshot.datasets import load_dataset
from fewshot.feedback import FILENAME, PredictionLog

from benchmarks_md import update_section

TOP_K = 3


def stream(dataset, shots: int, n_queries: int, seed: int):
    """(arrivals: [(intent, [texts])] in split order, queries: [(text, intent)] in random order)."""
    rng = np.random.default_rng(seed)
    by_class = dataset.ids_by_class(dataset.split_classes("test"))
    arrivals, pool = [], []
    for intent in dataset.split_classes("test"):
        ids = rng.permutation(by_class[intent])
        arrivals.append((intent, dataset.take(ids[:shots])))
        pool += [(dataset.items[int(i)], intent) for i in ids[shots:]]
    if n_queries > len(pool):
        raise ValueError(f"--queries {n_queries} but only {len(pool)} held-out examples exist; lower --queries")
    order = rng.permutation(len(pool))[:n_queries]
    return arrivals, [pool[int(i)] for i in order]


def folder_bytes(folder: Path, skip: str | None = None) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file() and p.name != skip)


def ci95(p: float, n: int) -> float:
    return 1.96 * math.sqrt(p * (1 - p) / n)


def run(args) -> dict:
    dataset = load_dataset("clinc150", args.data_root)
    arrivals, queries = stream(dataset, args.shots, args.queries, args.seed)
    texts, truth = [t for t, _ in queries], [y for _, y in queries]
    clf = FewShotClassifier("minilm", device=args.device)
    t0 = time.perf_counter()
    for intent, examples in arrivals:
        clf.add_classes(examples, [intent] * len(examples))
    arrive_s = time.perf_counter() - t0
    folder = Path(args.index_dir)
    clf.save(folder)
    size_before = folder_bytes(folder, skip=FILENAME)
    log = PredictionLog.in_index(folder, f"bench-feedback clinc150-test seed={args.seed} t={time.time():.0f}")

    z = clf.embed(texts)  # the encoder is frozen: a query's embedding is the same before and after corrections
    frozen = [labels[0] for labels in clf.predict_topk_embeddings(z, TOP_K)[0]]

    rng = np.random.default_rng(args.seed + 1)
    live, corrected_at, t_log, t_add, t_predict = [], [], [], [], []
    generation = 0  # updates applied to the classifier so far
    for i, (text, y) in enumerate(queries):
        s = time.perf_counter()
        labels, scores = clf.predict_topk_embeddings(z[i:i + 1], TOP_K)
        [pid] = log.append([{"query": text, "labels": labels[0], "scores": scores[0].tolist(),
                             "generation": generation}])
        t_predict.append(time.perf_counter() - s)
        live.append(labels[0][0])
        if labels[0][0] != y and rng.random() < args.correct_rate:
            s = time.perf_counter()
            log.append_correction(pid, y)
            t_log.append(time.perf_counter() - s)
            s = time.perf_counter()
            clf.add_classes([text], [y])
            t_add.append(time.perf_counter() - s)
            corrected_at.append(i)
            generation += 1
    clf.save(folder)
    windows = []
    for start in range(0, len(queries), args.window):
        sl = slice(start, start + args.window)
        n = len(truth[sl])
        a = float(np.mean([p == y for p, y in zip(frozen[sl], truth[sl])]))
        b = float(np.mean([p == y for p, y in zip(live[sl], truth[sl])]))
        pairs = list(zip(frozen[sl], live[sl], truth[sl]))
        windows.append({"start": start, "n": n, "frozen": a, "corrections": b,
                        "corrected": sum(1 for k in corrected_at if start <= k < start + n),
                        "fixed": sum(f != y == g for f, g, y in pairs), "broken": sum(f == y != g for f, g, y in pairs)})
    stats = log.stats()
    if stats["predictions"] != len(queries) or stats["reviewed"] != len(corrected_at):
        raise RuntimeError(f"the log holds {stats['predictions']} predictions and {stats['reviewed']} corrections, "
                           f"expected {len(queries)} and {len(corrected_at)}")
    return {
        "intents": len(arrivals), "shots": args.shots, "queries": len(queries), "arrive_s": arrive_s,
        "windows": windows, "corrections": len(t_add),
        "t_log_ms": np.median(t_log) * 1e3 if t_log else float("nan"),
        "t_add_ms": np.median(t_add) * 1e3 if t_add else float("nan"),
        "t_add_p90_ms": np.percentile(t_add, 90) * 1e3 if t_add else float("nan"),
        "t_predict_ms": np.median(t_predict) * 1e3,
        "size_before": size_before, "size_after": folder_bytes(folder, skip=FILENAME),
        "log_bytes": (folder / FILENAME).stat().st_size,
        "frozen_acc": float(np.mean([p == y for p, y in zip(frozen, truth)])),
        "live_acc": float(np.mean([p == y for p, y in zip(live, truth)])),
    }


def markdown(r: dict, args, command: str) -> str:
    rows = "\n".join(
        f"| {w['start'] + 1}-{w['start'] + w['n']} | {100 * w['frozen']:.1f} ± {100 * ci95(w['frozen'], w['n']):.1f} "
        f"| {100 * w['corrections']:.1f} ± {100 * ci95(w['corrections'], w['n']):.1f} "
        f"| {100 * (w['corrections'] - w['frozen']):+.1f} | {w['fixed']} / {w['broken']} | {w['corrected']} |"
        for w in r["windows"])
    n = r["queries"]
    return f"""## Learning from use: corrections against a frozen index

Command: `{command}`

CLINC150's {r['intents']} test intents arrive in order with {r['shots']} examples each (`add_classes`, frozen
all-MiniLM-L6-v2, cosine nearest class mean); then {n} held-out queries of those intents are predicted in a fixed
random order (seed {args.seed}). *Frozen* keeps the classifier as it was; *corrections* logs every prediction
(`fewshot.feedback.PredictionLog`, top-{TOP_K}) and corrects {100 * args.correct_rate:.0f}% of its wrong answers
(drawn at random): the correction is logged and the query is added as a support example of its true class
(`add_classes`: the prototype becomes the running mean). Same queries, same order: the difference is the
corrections' effect. The ± are 95% binomial intervals of each accuracy on its own; the comparison is paired, so
read the difference with *fixed / broken*: queries that frozen got wrong and corrections got right, and the reverse.
A corrected query counts with the wrong answer it got before its correction was applied.

| queries | frozen accuracy % | with corrections % | difference (points) | fixed / broken | corrections in window |
|---|---|---|---|---|---|
{rows}
| all {n} | {100 * r['frozen_acc']:.1f} ± {100 * ci95(r['frozen_acc'], n):.1f} | {100 * r['live_acc']:.1f} ± {100 * ci95(r['live_acc'], n):.1f} | {100 * (r['live_acc'] - r['frozen_acc']):+.1f} | {sum(w['fixed'] for w in r['windows'])} / {sum(w['broken'] for w in r['windows'])} | {r['corrections']} |

Cost: one correction takes **{r['t_add_ms']:.1f} ms** median to apply (`add_classes` of one text, embedding
included; p90 {r['t_add_p90_ms']:.1f} ms) plus **{r['t_log_ms']:.2f} ms** to log (one fsynced line under the log's
lock); logging a prediction with its top-{TOP_K} takes {r['t_predict_ms']:.2f} ms median including the search.
The index folder (manifest, prototype sums, FAISS index) is {r['size_before']:,} bytes after the arrivals and
{r['size_after']:,} bytes after {r['corrections']} corrections (corrections change prototypes, not the class
count); the prediction log beside it is {r['log_bytes']:,} bytes for {n} predictions and {r['corrections']}
corrections. Arrivals took {r['arrive_s']:.1f} s ({r['intents']} `add_classes` calls).

Machine: shared 2-core CPU box (other jobs were running; times are upper bounds).
"""


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--shots", type=int, default=5)
    p.add_argument("--queries", type=int, default=2000)
    p.add_argument("--correct-rate", type=float, default=0.2)
    p.add_argument("--window", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--index-dir", default=None, help="Index folder to write (default: a new temporary folder).")
    p.add_argument("--no-write", action="store_true", help="Print the section; do not write BENCHMARKS.md.")
    args = p.parse_args(argv)
    if not 0 <= args.correct_rate <= 1:
        p.error(f"--correct-rate must be between 0 and 1, got {args.correct_rate}")
    for name in ("shots", "queries", "window"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    command = "bin/bench-feedback" + "".join(f" {shlex.quote(a)}" for a in (argv or sys.argv[1:]))
    if args.index_dir:
        result = run(args)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-feedback-") as tmp:
            args.index_dir = tmp
            result = run(args)
            args.index_dir = None
    md = markdown(result, args, command)
    print(md)
    if not args.no_write:
        print(f"wrote section 'feedback' of {update_section('feedback', md)}", file=sys.stderr)


if __name__ == "__main__":
    main()
