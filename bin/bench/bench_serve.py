"""``bin/bench-serve``: ``fewshot serve`` under load, on a CLINC150-sized index (150 intents x 5 examples).

Printed and written to section ``serve`` of BENCHMARKS.md (``--no-write``: printed only):

1. Build: a 5-shot index over the 150 CLINC150 intents (frozen all-MiniLM-L6-v2; the train examples
   ``bin/bench-index`` draws with ``--seed``), in a temporary folder.
2. Start the real server, ``fewshot serve DIR`` in its own process with its default threads, on a free
   loopback port; the time until ``GET /health`` answers is the cold start.
3. Warm, one client: ``--warm-requests`` sequential ``POST /predict`` of one official test query each.
4. Load, for ``--seconds``: ``--readers`` reader clients (``POST /predict``, one test query each) and
   ``--writers`` writer clients (``POST /add``, a new class of 2 oos_train texts each) beside them, each
   a keep-alive HTTP client in its own thread, looping until the time is up (a bounded loop: the clients
   never exceed that count). Requests/s, p50/p99 latency and errors per role; the readers' accuracy on
   the 150 intents.
5. After: the server is stopped and the folder loaded: every class a writer got 200 for must be there
   with its 2 examples, the 150 intents intact.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from bench_index import five_shot
from benchmarks_md import command as bench_command
from benchmarks_md import publish

ROOT = Path(__file__).resolve().parents[2]


def build_index(folder: Path, data: dict, shots: int, seed: int) -> int:
    """A 5-shot MiniLM index of the 150 intents in ``folder``; returns its class count."""
    from fewshot.support import FewShotClassifier

    support = five_shot(data["train"], shots, seed)
    clf = FewShotClassifier("minilm")
    clf.add_classes([t for t, _ in support], [y for _, y in support])
    clf.create(folder)
    return clf.n_classes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(folder: Path, port: int, log_path: Path) -> tuple[subprocess.Popen, float]:
    """``fewshot serve`` in its own process; returns it and the seconds until /health answered."""
    import httpx

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    t0 = time.perf_counter()
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, "-m", "fewshot.cli", "serve", str(folder), "--port", str(port),
                             "--log-level", "warning"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/health"
    while True:  # readiness: ends as soon as it answers
        if proc.poll() is not None:
            raise RuntimeError(f"fewshot serve exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return proc, time.perf_counter() - t0
        except httpx.TransportError:
            pass
        if time.perf_counter() - t0 > 300:
            proc.terminate()
            raise RuntimeError("fewshot serve did not answer /health within 300 s")
        time.sleep(0.1)


def _summary(lat: list[float], errors: int, seconds: float) -> dict:
    ms = 1e3 * np.asarray(lat) if lat else np.zeros(1)
    return {"requests": len(lat), "errors": errors, "rps": len(lat) / seconds if seconds else 0.0,
            "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


def warm(base: str, queries: list, n: int) -> dict:
    import httpx

    lat, errors = [], 0
    with httpx.Client(base_url=base, timeout=60) as c:
        c.post("/predict", json={"texts": [queries[0][0]]})  # first request: connection set-up
        t_start = time.perf_counter()
        for i in range(n):
            text, _ = queries[i % len(queries)]
            t0 = time.perf_counter()
            ok = c.post("/predict", json={"texts": [text]}).status_code == 200
            lat.append(time.perf_counter() - t0) if ok else None
            errors += not ok
        return _summary(lat, errors, time.perf_counter() - t_start)


def load(base: str, queries: list, add_texts: list, readers: int, writers: int, seconds: float, seed: int) -> dict:
    """The concurrent phase; returns per-role summaries, the readers' accuracy and the writers' acknowledged
    classes."""
    import httpx

    deadline = time.perf_counter() + seconds
    results = {"reader": [], "writer": []}
    acked: list[str] = []
    lock = threading.Lock()

    def reader(k: int):
        rng = np.random.default_rng(seed + k)
        lat, errors, right = [], 0, 0
        with httpx.Client(base_url=base, timeout=60) as c:
            while time.perf_counter() < deadline:
                text, truth = queries[int(rng.integers(len(queries)))]
                t0 = time.perf_counter()
                try:
                    r = c.post("/predict", json={"texts": [text]})
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    lat.append(time.perf_counter() - t0)
                    right += r.json()["predictions"][0]["label"] == truth
                errors += not ok
        with lock:
            results["reader"].append((lat, errors, right))

    def writer(k: int):
        lat, errors, mine, i = [], 0, [], 0
        with httpx.Client(base_url=base, timeout=60) as c:
            while time.perf_counter() < deadline:
                label = f"bench-w{k}-{i}"
                texts = [add_texts[(2 * i + j) % len(add_texts)] for j in range(2)]
                i += 1
                t0 = time.perf_counter()
                try:
                    ok = c.post("/add", json={"texts": texts, "labels": [label, label]}).status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    lat.append(time.perf_counter() - t0)
                    mine.append(label)
                errors += not ok
        with lock:
            results["writer"].append((lat, errors, 0))
            acked.extend(mine)

    threads = [threading.Thread(target=reader, args=(k,)) for k in range(readers)]
    threads += [threading.Thread(target=writer, args=(k,)) for k in range(writers)]
    t_start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t_start
    out = {"seconds": elapsed, "acked": acked}
    for role, rows in results.items():
        lat = [x for r in rows for x in r[0]]
        out[role] = _summary(lat, sum(r[1] for r in rows), elapsed)
    out["reader"]["accuracy"] = sum(r[2] for r in results["reader"]) / max(1, out["reader"]["requests"])
    out["all"] = _summary([x for rows in results.values() for r in rows for x in r[0]],
                          out["reader"]["errors"] + out["writer"]["errors"], elapsed)
    return out


def check_after(folder: Path, n_intents: int, acked: list[str], intents: set) -> dict:
    """Load the folder the server wrote: every acknowledged class with its 2 examples, the intents intact."""
    from fewshot.support import FewShotClassifier

    clf = FewShotClassifier.load(folder)
    counts = dict(zip(clf.classes_, (int(c) for c in clf.counts_)))
    missing = [lab for lab in acked if counts.get(lab) != 2]
    intact = all(counts.get(lab, 0) > 0 for lab in intents)
    return {"n_classes": clf.n_classes, "expected": n_intents + len(acked), "missing": missing,
            "intents_intact": intact, "ok": not missing and intact and clf.n_classes == n_intents + len(acked)}


def markdown(r: dict, command: str) -> str:
    w, ld, a = r["warm"], r["load"], r["after"]
    rows = [("warm, 1 client, sequential", w), (f"load: {r['readers']} readers (predict)", ld["reader"]),
            (f"load: {r['writers']} writer (add a class)", ld["writer"]), ("load: all clients", ld["all"])]
    lines = ["## `fewshot serve` under load (`bin/bench-serve`)", "", f"Command: `{command}`", "",
             f"Index: CLINC150, {r['n_intents']} intents x {r['shots']} examples (frozen all-MiniLM-L6-v2, "
             "cosine, flat), served by `fewshot serve` in its own process with its default of 1 torch/faiss "
             f"thread, on loopback. Cold start (process start to the first `/health` answer): "
             f"**{r['cold_start_s']:.1f} s**. Each request carries one text; clients are keep-alive httpx "
             f"clients, one thread each, in the benchmark's process; the load phase ran {ld['seconds']:.0f} s.", "",
             "| phase | requests | requests/s | p50 ms | p99 ms | errors |", "|---|---|---|---|---|---|"]
    for name, s in rows:
        lines.append(f"| {name} | {s['requests']} | {s['rps']:.1f} | {s['p50_ms']:.1f} | {s['p99_ms']:.1f} | "
                     f"{s['errors']} |")
    lines += ["", f"Readers' accuracy under load: {100 * ld['reader']['accuracy']:.1f}% on random official test "
              "queries of the 150 intents (the index's 5-shot accuracy; classes the writer adds are new names).",
              f"After the run the folder loads with {a['n_classes']} classes ({r['n_intents']} intents + "
              f"{len(ld['acked'])} classes the writer got 200 for): "
              + ("**nothing lost**." if a["ok"] else f"**LOST: {a['missing'][:10]}** (intents intact: "
                                                     f"{a['intents_intact']})."), "",
              f"Machine: {os.cpu_count()}-core CPU box shared with other jobs (latencies are upper bounds); "
              "the clients run on the same cores as the server."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bin/bench-serve", description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", default=None, help="Folder holding clinc150/ (default: ../shared/data).")
    p.add_argument("--seconds", type=float, default=60.0, help="Length of the load phase.")
    p.add_argument("--readers", type=int, default=4)
    p.add_argument("--writers", type=int, default=1)
    p.add_argument("--warm-requests", type=int, default=200, help="Sequential predicts of the warm phase.")
    p.add_argument("--shots", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-write", action="store_true", help="Print only; leave BENCHMARKS.md alone.")
    args = p.parse_args(argv)
    if args.seconds <= 0 or args.readers < 0 or args.writers < 0 or args.readers + args.writers < 1:
        p.error("--seconds must be > 0 and there must be at least one reader or writer")
    command = bench_command("bench-serve", argv)
    from fewshot.datasets import data_root

    data = json.loads((data_root(args.data_root) / "clinc150" / "data_full.json").read_text())
    queries = [tuple(row) for row in data["test"]]
    add_texts = [t for t, _ in data["oos_train"]]
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        folder = Path(tmp) / "clinc150-index"
        n_intents = build_index(folder, data, args.shots, args.seed)
        port = free_port()
        proc, cold = start_server(folder, port, Path(tmp) / "server.log")
        try:
            base = f"http://127.0.0.1:{port}"
            w = warm(base, queries, args.warm_requests)
            print(json.dumps({"phase": "warm", **w}), flush=True)
            ld = load(base, queries, add_texts, args.readers, args.writers, args.seconds, args.seed)
            print(json.dumps({"phase": "load", **{k: v for k, v in ld.items() if k != "acked"},
                              "acked": len(ld["acked"])}), flush=True)
        finally:
            proc.terminate()
            proc.wait(60)
        after = check_after(folder, n_intents, ld["acked"], {y for _, y in data["train"]})
        print(json.dumps({"phase": "after", **after}), flush=True)
    report = {"n_intents": n_intents, "shots": args.shots, "readers": args.readers, "writers": args.writers,
              "cold_start_s": cold, "warm": w, "load": ld, "after": after}
    publish("serve", markdown(report, command), write=not args.no_write)
    return 0 if after["ok"] and ld["all"]["errors"] == 0 and w["errors"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
