"""``bin/bench-feedback``: does learning from use help, and what does it cost?

A replayed stream on CLINC150's test intents (the 45 intents of the 3 test domains), three arms on
the same stream and the same queries in the same order (one ``--seed``):

1. The intents arrive one after another, each with ``--shots`` examples (drawn with ``--seed``),
   and are added to a :class:`fewshot.FewShotClassifier` (all-MiniLM-L6-v2) with ``add_classes``;
   the classifier is written (``create``) to one index folder per arm.
2. ``--queries`` held-out examples of those intents (not among the support examples) are predicted
   in a fixed random order, in windows of ``--window`` queries.

   (a) *frozen*: the index as it was after step 1; nothing is logged.
   (b) *corrections*: every prediction is logged in the index's log (``curation.prediction_log``,
       top-3, as ``fewshot index predict --log`` does); a fixed random ``--review-rate`` share of the
       predictions (the same queries in (b) and (c)) is reviewed: a wrong answer is corrected with
       ``curation.correct`` (the query joins its true class's support, a running-mean update; the
       served classifier is then reloaded from the folder), a right one confirmed with
       ``curation.confirm``.
   (c) *corrections + re-training*: as (b), and after every window but the last (a re-training
       after the last query would change no measured answer) ``fewshot train --from-index``
       (a subprocess: protonet from the index's current encoder, the ``--train-*`` budget), then
       ``curation.rebuild(INDEX, CHECKPOINT, margin=--margin)``. If the drift guard refuses
       (``DriftError``), (c) keeps its encoder, as the product does; if it accepts, the rest of
       the stream is embedded with the new encoder.

Reported: accuracy per window of the three arms with 95% binomial intervals; each round's training
and rebuild time and the guard's verdict with its old/new held-out accuracies; the median time of a
correction, a confirmation and a reload; each arm's index folder size at the end (manifest,
prototype sums, FAISS index, support texts, log). Printed as Markdown and written to section
``feedback`` of BENCHMARKS.md (``--no-write`` to only print).
"""
from __future__ import annotations

import argparse
import math
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from benchmarks_md import command as bench_command
from benchmarks_md import update_section

from fewshot import FewShotClassifier
from fewshot.support import curation
from fewshot.datasets import load_dataset
from fewshot.support.log import FILENAME

TOP_K = 3
FEWSHOT = Path(sys.executable).with_name("fewshot")  # the CLI of this interpreter's environment


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


def folder_sizes(folder: Path) -> dict:
    """Bytes of everything under ``folder`` (recursively), split into the log, the support texts and the rest."""
    sizes = {"log": 0, "support": 0, "index": 0}
    for root, _, files in os.walk(folder):
        for name in files:
            n = (Path(root) / name).stat().st_size
            key = "log" if name == FILENAME else "support" if name.startswith("support-") else "index"
            sizes[key] += n
    sizes["total"] = sum(sizes.values())
    return sizes


def ci95(p: float, n: int) -> float:
    return 1.96 * math.sqrt(p * (1 - p) / n)


def median_ms(xs: list) -> float:
    return float(np.median(xs)) * 1e3 if xs else float("nan")


def train_command(args, index: Path, out: Path, seed: int) -> list[str]:
    return [str(FEWSHOT), "train", "--from-index", str(index), "--out", str(out), "--learner", "protonet",
            "--trainable", args.trainable, "--steps", str(args.train_steps), "--eval-every", str(args.eval_every),
            "--patience", "0", "--train-way", "5", "--train-shot", "1", "--train-query", str(args.train_query),
            "--val-way", "5", "--val-shot", "1", "--val-query", str(args.val_query),
            "--val-episodes", str(args.val_episodes), "--val-share", str(args.val_share), "--seed", str(seed),
            "--device", args.device or "cpu", "--quiet"]


def retrain(args, folder: Path, work: Path, round_: int) -> dict:
    """One round of arm (c): train --from-index, then rebuild behind the drift guard."""
    ckpt = work / f"ckpt-round{round_}"
    cmd = train_command(args, folder, ckpt, args.seed + round_)
    s = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    train_s = time.perf_counter() - s
    if proc.returncode:
        raise RuntimeError(f"{shlex.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    m = re.search(r"best validation accuracy ([\d.]+)% at step (\d+).*?; (\d+) steps in ([\d.]+) s", proc.stdout)
    row = {"round": round_, "train_s": train_s, "val_acc": float(m[1]) if m else float("nan"),
           "best_step": int(m[2]) if m else -1, "train_inner_s": float(m[4]) if m else float("nan"),
           "ckpt_bytes": sum(p.stat().st_size for p in ckpt.rglob("*") if p.is_file()),
           "weights_bytes": sum(p.stat().st_size for p in ckpt.glob("model-*.safetensors"))}
    s = time.perf_counter()
    try:
        report = curation.rebuild(folder, str(ckpt), margin=args.margin, device=args.device)
    except curation.DriftError as exc:
        report = exc.report
        row["refusal"] = str(exc).split(";")[0]
    row["rebuild_s"] = time.perf_counter() - s
    row.update(swapped=report["swapped"], old=report["old_accuracy"], new=report["new_accuracy"],
               n_guard=report["n_queries"], n_texts=report["n_texts"])
    print(f"  round {round_}: train {train_s:.0f} s (val {row['val_acc']:.1f}% at step {row['best_step']}), "
          f"rebuild {row['rebuild_s']:.1f} s, guard old {report['old_accuracy']} new {report['new_accuracy']} "
          f"on {report['n_queries']}: {'swapped' if report['swapped'] else 'refused'}", file=sys.stderr)
    return row


def replay(args, base: FewShotClassifier, folder: Path, queries, reviewed, z_frozen, retraining: bool,
           work: Path) -> dict:
    """Arm (b) (``retraining=False``) or (c): predictions, logged and reviewed, on the index in ``folder``."""
    base.create(folder)
    log = curation.prediction_log(folder, create=True)
    clf = FewShotClassifier.load(folder, base.encoder, device=args.device)
    texts = [t for t, _ in queries]
    preds, t_correct, t_confirm, t_reload, t_embed, rounds = [], [], [], [], [], []
    corrected, confirmed = [], []
    z = z_frozen
    for start in range(0, len(queries), args.window):
        if start and retraining:
            rounds.append(retrain(args, folder, work, len(rounds) + 1))
            if rounds[-1]["swapped"]:
                clf = FewShotClassifier.load(folder, device=args.device)  # the encoder of the new checkpoint
                s = time.perf_counter()
                z = z.copy()
                z[start:] = clf.embed(texts[start:])  # the rest of the stream, with the encoder now served
                t_embed.append(time.perf_counter() - s)
        for i in range(start, min(start + args.window, len(queries))):
            text, y = queries[i]
            labels, scores = clf.predict_topk_embeddings(z[i:i + 1], TOP_K)
            [pid] = log.append([{"query": text, "labels": labels[0], "scores": [round(float(v), 6) for v in scores[0]],
                                 "generation": clf.generation_}])
            preds.append(labels[0][0])
            if not reviewed[i]:
                continue
            if labels[0][0] == y:
                s = time.perf_counter()
                curation.confirm(folder, pid)
                t_confirm.append(time.perf_counter() - s)
                confirmed.append(i)
            else:
                s = time.perf_counter()
                curation.correct(folder, pid, y, encoder=clf.encoder)
                t_correct.append(time.perf_counter() - s)
                s = time.perf_counter()
                clf = FewShotClassifier.load(folder, clf.encoder, device=args.device)  # serve the corrected index
                t_reload.append(time.perf_counter() - s)
                corrected.append(i)
    stats = log.stats()
    if stats["predictions"] != len(queries) or stats["reviewed"] != len(corrected) + len(confirmed):
        raise RuntimeError(f"the log holds {stats['predictions']} predictions and {stats['reviewed']} reviews, "
                           f"expected {len(queries)} and {len(corrected) + len(confirmed)}")
    return {"preds": preds, "corrected": corrected, "confirmed": confirmed, "rounds": rounds,
            "t_correct": t_correct, "t_confirm": t_confirm, "t_reload": t_reload, "t_embed": t_embed,
            "sizes": folder_sizes(folder), "guard_ids": sum(1 for i in corrected + confirmed
                                                            if i % curation.GUARD_EVERY == 0)}


def single_text_ms(clf: FewShotClassifier, text: str, reps: int = 8) -> dict:
    """Median ms to embed one text with torch's current intra-op thread count and with 1 thread (the cost
    a correction pays; on a busy 2-core machine the two differ a lot)."""
    import torch

    threads = torch.get_num_threads()
    out = {}
    for n in (threads, 1):
        torch.set_num_threads(n)
        ts = []
        for _ in range(reps):
            s = time.perf_counter()
            clf.embed([text])
            ts.append(time.perf_counter() - s)
        out[n] = median_ms(ts)
    torch.set_num_threads(threads)
    return {"threads": threads, "ms": out[threads], "ms_1": out[1]}


def run(args, work: Path) -> dict:
    dataset = load_dataset("clinc150", args.data_root)
    arrivals, queries = stream(dataset, args.shots, args.queries, args.seed)
    texts, truth = [t for t, _ in queries], [y for _, y in queries]
    base = FewShotClassifier("minilm", device=args.device)
    t0 = time.perf_counter()
    for intent, examples in arrivals:
        base.add_classes(examples, [intent] * len(examples))
    arrive_s = time.perf_counter() - t0
    probe = single_text_ms(base, arrivals[0][1][0])
    frozen_dir = work / "frozen"
    base.create(frozen_dir)
    frozen_clf = FewShotClassifier.load(frozen_dir, base.encoder, device=args.device)
    s = time.perf_counter()
    z = frozen_clf.embed(texts)  # the frozen encoder: a query's embedding is the same in every arm until a swap
    embed_s = time.perf_counter() - s
    frozen = [labels[0] for labels in frozen_clf.predict_topk_embeddings(z, TOP_K)[0]]
    reviewed = np.random.default_rng(args.seed + 1).random(len(queries)) < args.review_rate
    print(f"arm (b): corrections, {len(queries)} queries", file=sys.stderr)
    b = replay(args, base, work / "corrections", queries, reviewed, z, False, work)
    print("arm (c): corrections + re-training", file=sys.stderr)
    c = replay(args, base, work / "retraining", queries, reviewed, z, True, work)
    windows = []
    for start in range(0, len(queries), args.window):
        sl = slice(start, start + args.window)
        n = len(truth[sl])
        acc = {k: float(np.mean([p == y for p, y in zip(v[sl], truth[sl])]))
               for k, v in (("a", frozen), ("b", b["preds"]), ("c", c["preds"]))}
        windows.append({"start": start, "n": n, **acc,
                        "corr_b": sum(start <= k < start + n for k in b["corrected"]),
                        "corr_c": sum(start <= k < start + n for k in c["corrected"]),
                        "conf_b": sum(start <= k < start + n for k in b["confirmed"]),
                        "conf_c": sum(start <= k < start + n for k in c["confirmed"])})
    total = {k: float(np.mean([p == y for p, y in zip(v, truth)]))
             for k, v in (("a", frozen), ("b", b["preds"]), ("c", c["preds"]))}
    return {"intents": len(arrivals), "shots": args.shots, "queries": len(queries), "arrive_s": arrive_s,
            "embed_s": embed_s, "windows": windows, "total": total, "b": b, "c": c,
            "reviewed": int(reviewed.sum()), "sizes_a": folder_sizes(frozen_dir), "probe": probe}


def fmt_acc(p: float, n: int) -> str:
    return f"{100 * p:.1f} ± {100 * ci95(p, n):.1f}"


def markdown(r: dict, args, command: str, wall_s: float, load: str) -> str:
    b, c, n = r["b"], r["c"], r["queries"]
    rows = "\n".join(
        f"| {w['start'] + 1}-{w['start'] + w['n']} | {fmt_acc(w['a'], w['n'])} | {fmt_acc(w['b'], w['n'])} "
        f"| {fmt_acc(w['c'], w['n'])} | {100 * (w['b'] - w['a']):+.1f} | {100 * (w['c'] - w['b']):+.1f} "
        f"| {w['corr_b']} / {w['conf_b']} | {w['corr_c']} / {w['conf_c']} |" for w in r["windows"])
    t = r["total"]
    rows += (f"\n| all {n} | {fmt_acc(t['a'], n)} | {fmt_acc(t['b'], n)} | {fmt_acc(t['c'], n)} "
             f"| {100 * (t['b'] - t['a']):+.1f} | {100 * (t['c'] - t['b']):+.1f} "
             f"| {len(b['corrected'])} / {len(b['confirmed'])} | {len(c['corrected'])} / {len(c['confirmed'])} |")

    def guard(x):
        return "n/a" if x is None else f"{100 * x:.1f}"

    rounds = "\n".join(
        f"| {q['round']} | after {q['round'] * args.window} | {q['train_s']:.0f} ({q['train_inner_s']:.0f}) "
        f"| {q['val_acc']:.1f} (step {q['best_step']}) | {q['rebuild_s']:.1f} | {q['n_guard']} "
        f"| {guard(q['old'])} | {guard(q['new'])} | {'**accepted**: swapped' if q['swapped'] else '**refused**: kept the old encoder'} |"
        for q in c["rounds"])
    same = [q["round"] for q in c["rounds"] if q["old"] is not None and q["old"] == q["new"]]
    refusals = "" if not same else (f"\nThe old and new encoders scored the same on the guard's queries in round"
                                    f"{'s' if len(same) > 1 else ''} {', '.join(map(str, same))}: at this training "
                                    "budget the guard cannot tell them apart, so it accepts whenever it has enough "
                                    "labelled queries.")
    refusals += "".join(f"\nRound {q['round']} refusal: \"{q['refusal']}\"." for q in c["rounds"] if "refusal" in q)
    sa, sb, sc = r["sizes_a"], b["sizes"], c["sizes"]

    def size_row(name, s):
        return f"| {name} | {s['index']:,} | {s['support']:,} | {s['log']:,} | **{s['total']:,}** |"

    ckpt = c["rounds"][0]["ckpt_bytes"] if c["rounds"] else 0
    weights = c["rounds"][0]["weights_bytes"] if c["rounds"] else 0
    n_rounds = len(c["rounds"])
    return f"""## Learning from use: frozen vs corrections vs corrections + re-training

Command: `{command}` (seed {args.seed}; wall time {wall_s / 60:.1f} min; load before the run: `{load}`)

Stream: CLINC150's {r['intents']} test intents arrive in order with {r['shots']} examples each (`add_classes`,
all-MiniLM-L6-v2, cosine nearest class mean), written to one index folder per arm; then the same {n} held-out
queries of those intents are predicted in the same random order (seed {args.seed}) by three arms:

- **(a) frozen**: the index as it was after the arrivals; nothing logged.
- **(b) corrections**: every prediction logged (`curation.prediction_log`, top-{TOP_K}, as `fewshot index predict
  --log`). A fixed random {100 * args.review_rate:.0f}% of the predictions ({r['reviewed']} queries, the same in (b)
  and (c)) is reviewed: a wrong answer is corrected with `curation.correct` (the query joins its true class's
  support texts, the prototype becomes the running mean; the served classifier is reloaded from the folder),
  a right one is confirmed with `curation.confirm`. So {100 * args.review_rate:.0f}% of wrong answers are corrected.
- **(c) corrections + re-training**: as (b), and after each of the first {n_rounds} windows (none after the
  last: it would change no measured answer) `fewshot train --from-index INDEX` (subprocess; protonet from the
  index's current encoder, `--trainable {args.trainable}`, **{args.train_steps} steps of 5-way 1-shot
  {args.train_query}-query episodes**, default lr 2e-5, validation every {args.eval_every} steps on
  {args.val_episodes} 5-way 1-shot {args.val_query}-query episodes of a `--val-share {args.val_share}` of the
  index's classes, seed {args.seed} + round), then `curation.rebuild(INDEX, CHECKPOINT, margin={args.margin})`.
  The drift guard scores old and new encoders on the labelled logged queries whose id is divisible by
  {curation.GUARD_EVERY} (never trained on); if it refuses, (c) keeps its encoder (the product behaviour); if it
  accepts, the rest of the stream is embedded with the new encoder.

Accuracy per window (% ± 95% binomial interval of each on its own; the arms are paired: same queries, same
order). A reviewed query counts with the answer it got before its review.

| queries | (a) frozen | (b) corrections | (c) + re-training | (b) - (a) | (c) - (b) | (b) corrected / confirmed | (c) corrected / confirmed |
|---|---|---|---|---|---|---|---|
{rows}

Re-training rounds of (c) (train: wall seconds of the `fewshot train` subprocess, model loading included, and
in parentheses its own training-loop time; guard: held-out accuracy % of the old and new encoder on the
labelled guard queries):

| round | when | train s | best val acc % | rebuild s | guard queries | guard old % | guard new % | drift guard |
|---|---|---|---|---|---|---|---|---|
{rounds}
{refusals}

Cost per action (median): a correction (`curation.correct`: lock, load the index, embed the one text, save a
new generation, log the correction) **{median_ms(b['t_correct']):.0f} ms** in (b) ({len(b['t_correct'])}
corrections), {median_ms(c['t_correct']):.0f} ms in (c); reloading the served classifier after it
{median_ms(b['t_reload']):.0f} ms; a confirmation (`curation.confirm`, one fsynced log line)
{median_ms(b['t_confirm']):.1f} ms (it re-reads the whole log: `PredictionLog.get`). Embedding one text, part of
every correction, took {r['probe']['ms']:.0f} ms median with torch's {r['probe']['threads']} intra-op threads (the
default, used throughout) and {r['probe']['ms_1']:.0f} ms with 1 thread, measured just before the stream: on this
shared machine the cost of one small forward pass swings with the other jobs' load, so read the correction
time as load-dependent. Embedding all {n} queries with the frozen encoder took {r['embed_s']:.0f} s;
after an accepted rebuild, (c) re-embedded the rest of the stream in
{', '.join(f'{x:.0f}' for x in c['t_embed']) or 'n/a'} s. Arrivals took {r['arrive_s']:.1f} s (the first
`add_classes` loads the model).

Index folder at the end of each arm (bytes; `index`: manifest, prototype sums and FAISS index; `support`: the
stored support texts; `log`: `predictions.jsonl`). The training checkpoints live outside the index folder (the
index's manifest names the one it was rebuilt with, and loads it): {ckpt:,} bytes per round's folder, of which
{weights:,} are the weights a rebuilt index needs (the rest is `fewshot train`'s resume state).

| arm | index | support texts | log | total |
|---|---|---|---|---|
{size_row('(a) frozen', sa)}
{size_row('(b) corrections', sb)}
{size_row('(c) + re-training', sc)}

Machine: shared 2-core CPU box, no GPU (other jobs were running; times are upper bounds).
"""


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--shots", type=int, default=5)
    p.add_argument("--queries", type=int, default=2000)
    p.add_argument("--review-rate", type=float, default=0.2,
                   help="Share of predictions reviewed: wrong ones corrected, right ones confirmed.")
    p.add_argument("--window", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--trainable", default="last:1")
    p.add_argument("--train-steps", type=int, default=50)
    p.add_argument("--eval-every", type=int, default=25)
    p.add_argument("--train-query", type=int, default=3)
    p.add_argument("--val-query", type=int, default=3)
    p.add_argument("--val-episodes", type=int, default=50)
    p.add_argument("--val-share", type=float, default=0.2)
    p.add_argument("--margin", type=float, default=0.02)
    p.add_argument("--data-root", default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--work-dir", default=None, help="Folder for the index folders and checkpoints "
                   "(default: a new temporary folder, removed at the end).")
    p.add_argument("--no-write", action="store_true", help="Print the section; do not write BENCHMARKS.md.")
    args = p.parse_args(argv)
    if not 0 <= args.review_rate <= 1:
        p.error(f"--review-rate must be between 0 and 1, got {args.review_rate}")
    for name in ("shots", "queries", "window", "train_steps", "eval_every", "val_episodes"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    command = bench_command("bench-feedback", argv)
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    t0 = time.perf_counter()
    if args.work_dir:
        Path(args.work_dir).mkdir(parents=True, exist_ok=True)
        result = run(args, Path(args.work_dir))
    else:
        with tempfile.TemporaryDirectory(prefix="bench-feedback-") as tmp:
            result = run(args, Path(tmp))
    md = markdown(result, args, command, time.perf_counter() - t0, load)
    print(md)
    print("load after the run: " + subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
          file=sys.stderr)
    if not args.no_write:
        print(f"wrote section 'feedback' of {update_section('feedback', md)}", file=sys.stderr)


if __name__ == "__main__":
    main()
