"""``bin/bench-class-updates``: what adding, updating and removing one class costs as the classifier grows.

A :class:`~fewshot.support.FewShotClassifier` over synthetic 384-d embeddings (an inert stand-in encoder: the
embedding's time is left out, as issue 23 asks) is filled with N classes in one bulk ``add_embeddings``; then,
one at a time, it adds a new class of 5 ready embeddings, adds 5 examples to an existing class (a running-mean
update), and removes a class. Median and p99 of each over ``--repeats`` calls, per class count, for the
flat (exact) index: the bookkeeping and the FAISS add, nothing else. Written to section ``class-updates``.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
from benchmarks_md import publish_rows

from fewshot.encoders import Encoder
from fewshot.support import FewShotClassifier


class _Vectors(Encoder):
    """An encoder that is never asked to embed: the benchmark passes embeddings."""

    modality, metric = "text", "cosine"

    def __init__(self, dim: int):
        super().__init__({"name": "synthetic", "dim": dim})
        self.dim = dim
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def encode(self, items, batch_size=128, device=None, progress=None):
        raise AssertionError("the benchmark passes embeddings")


def measure(n: int, dim: int, repeats: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    clf = FewShotClassifier(_Vectors(dim), index_kind="flat")
    clf.add_embeddings(rng.standard_normal((n, dim), dtype=np.float32), [f"c{i}" for i in range(n)])
    z = rng.standard_normal((repeats, 5, dim), dtype=np.float32)
    times = {"add_new": [], "add_existing": [], "remove": []}
    for r in range(repeats):
        t = time.perf_counter()
        clf.add_embeddings(z[r], [f"new{r}"] * 5)
        times["add_new"].append(time.perf_counter() - t)
        t = time.perf_counter()
        clf.add_embeddings(z[r], [f"c{r}"] * 5)
        times["add_existing"].append(time.perf_counter() - t)
    for r in range(repeats):
        t = time.perf_counter()
        clf.remove_classes([f"new{r}"])
        times["remove"].append(time.perf_counter() - t)
    row = {"classes": n, "dim": dim, "repeats": repeats}
    for k, v in times.items():
        ms = 1e3 * np.asarray(v)
        row[f"{k}_p50_ms"], row[f"{k}_p99_ms"] = float(np.median(ms)), float(np.percentile(ms, 99))
    return row


def markdown(rows: list[dict], command: str) -> str:
    lines = ["## Adding, updating and removing one class as the classifier grows", "",
             f"Command: `{command}`", "",
             "FewShotClassifier over synthetic 384-d embeddings, flat (exact) index, one call at a time, the "
             "encoder's time left out: a new class of 5 ready embeddings (`add_embeddings`), 5 more examples "
             "for an existing class (running-mean update), and removing a class. Median / p99 in ms over the "
             "repeats. Shared 2-core box: upper bounds.", "",
             "| classes | add a new class (p50 / p99 ms) | update a class | remove a class | repeats |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['classes']:,} | {r['add_new_p50_ms']:.3f} / {r['add_new_p99_ms']:.3f} | "
                     f"{r['add_existing_p50_ms']:.3f} / {r['add_existing_p99_ms']:.3f} | "
                     f"{r['remove_p50_ms']:.1f} / {r['remove_p99_ms']:.1f} | {r['repeats']} |")
    lines += ["", "Before the class bookkeeping moved into `fewshot.support.classbook.ClassBook` (each add copied "
              "every class's float64 sums and recomputed every prototype), issue 23 measured adding one class of 5 "
              "ready embeddings at 17 ms / 475 ms / 21.3 s for 10^4 / 10^5 / 10^6 classes. Adds and updates now "
              "cost the examples changed (growable buffers); a removal still compacts the rows and FAISS's flat "
              "index removes by a scan, so it grows with the class count."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="10000,100000,1000000", help="Class counts.")
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-write", action="store_true", help="Print only; leave BENCHMARKS.md alone.")
    args = p.parse_args(argv)
    import faiss

    faiss.omp_set_num_threads(1)
    sizes = [int(s) for s in args.sizes.split(",")]
    publish_rows("class-updates", "bench-class-updates",
                 (measure(n, args.dim, args.repeats, args.seed) for n in sizes), markdown, argv,
                 write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
