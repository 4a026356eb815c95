"""``bin/bench-maml``: meta-training step time and peak memory of fewshot's ``maml`` learner against a
plain learn2learn loop, on the same Conv4 weights and the same Omniglot episodes.

The plain loop is the one of learn2learn's ``examples/vision/maml_omniglot.py``
(written here afresh): ``MAML(model).clone()``, ``adapt`` on the support loss,
query loss, ``backward``, Adam step; its model is the same Conv4 followed by a
fixed ``nn.Linear(dim, way)`` head. It gets tensors preprocessed before timing
(as the example reads them from its dataset), while fewshot's learner takes raw
uint8 images through :meth:`MAMLLearner.episode_loss`, so its time includes
preprocessing (measured on its own and printed beside it).

The two variants alternate in rounds so that a shared machine's load hits both
alike; the step time is the median over all timed steps. Peak memory is the
peak resident set size (Linux ``VmHWM``, reset through ``/proc/self/clear_refs``)
above the resident size at the start of the variant's steps, or
``torch.cuda.max_memory_allocated`` on a GPU.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from alternating_rounds import AlternatingRounds, load_average, load_average_note, sync
from benchmarks_md import publish_rows
from torch import nn


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


class PeakMemory:
    """Peak memory above the level at :meth:`start`, in MiB (RSS on the CPU, allocator on CUDA)."""

    def __init__(self, device: torch.device):
        self.device = device

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
            return
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
        self.base = _rss_kib("VmRSS") * 1024

    def peak_mib(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return (torch.cuda.max_memory_allocated(self.device) - self.base) / 2**20
        return (_rss_kib("VmHWM") * 1024 - self.base) / 2**20


def run(dataset: str = "omniglot-small1", data_root: str | None = None, way: int = 5, shot: int = 1,
        query: int = 5, inner_steps: int = 1, inner_lr: float = 0.4, first_order: bool = False,
        steps: int = 20, warmup: int = 3, rounds: int = 4, seed: int = 0, device: str = "cpu") -> dict:
    """Time ``steps`` meta-training steps of each variant (after ``warmup``), in ``rounds`` alternating rounds."""
    from fewshot.datasets import load_dataset
    from fewshot.device import resolve_device
    from fewshot.encoders import create_encoder
    from fewshot.episodes import EpisodeSampler
    from fewshot.l2l import import_learn2learn
    from fewshot.learners import create_learner

    schedule = AlternatingRounds(steps, rounds)
    l2l = import_learn2learn()
    dev = resolve_device(device)
    ds = load_dataset(dataset, data_root)
    sampler = EpisodeSampler(ds.labels, way, shot, query, seed=seed, classes=ds.split_classes("train"))
    episodes = list(sampler.episodes(warmup + steps))

    torch.manual_seed(seed)
    encoder = create_encoder("conv4", invert=True)
    learner = create_learner("maml", encoder, {"inner_steps": inner_steps, "inner_lr": inner_lr,
                                               "first_order": first_order, "anil": False}).to(dev)
    plain_encoder = create_encoder("conv4", invert=True)
    plain_encoder.load_state_dict(encoder.state_dict())
    plain_model = nn.Sequential(plain_encoder, nn.Linear(encoder.dim, way)).to(dev)
    maml = l2l.algorithms.MAML(plain_model, lr=inner_lr, first_order=first_order)

    raw = [(ds.take(e.support), torch.as_tensor(e.support_labels, device=dev), ds.take(e.query),
            torch.as_tensor(e.query_labels, device=dev)) for e in episodes]
    t0 = time.perf_counter()
    tensors = [(encoder.preprocess(sx).to(dev), sy, encoder.preprocess(qx).to(dev), qy) for sx, sy, qx, qy in raw]
    preprocess_ms = 1000 * (time.perf_counter() - t0) / len(raw)

    opt_fewshot = torch.optim.Adam(learner.module.parameters(), lr=1e-3)
    opt_plain = torch.optim.Adam(maml.parameters(), lr=1e-3)
    learner.module.train()
    plain_model.train()

    def fewshot_step(i: int) -> None:
        sx, sy, qx, qy = raw[i]
        loss, _ = learner.episode_loss(sx, sy, qx, qy)
        opt_fewshot.zero_grad()
        loss.backward()
        opt_fewshot.step()

    def plain_step(i: int) -> None:
        xs, ys, xq, yq = tensors[i]
        opt_plain.zero_grad()
        clone = maml.clone()
        for _ in range(inner_steps):
            clone.adapt(F.cross_entropy(clone(xs), ys))
        F.cross_entropy(clone(xq), yq).backward()
        opt_plain.step()

    variants = {"fewshot": fewshot_step, "learn2learn": plain_step}
    for step in variants.values():
        for i in range(warmup):
            step(i)
    times = {k: [] for k in variants}
    peaks = {k: 0.0 for k in variants}
    mem = PeakMemory(dev)
    for name, turn in schedule.turns(variants, start=warmup):
        mem.start()
        for i in turn:
            sync(dev)
            t = time.perf_counter()
            variants[name](i)
            sync(dev)
            times[name].append(time.perf_counter() - t)
        peaks[name] = max(peaks[name], mem.peak_mib())
    med = {k: 1000 * statistics.median(v) for k, v in times.items()}
    return {
        "dataset": dataset, "way": way, "shot": shot, "query": query, "inner_steps": inner_steps,
        "inner_lr": inner_lr, "first_order": first_order, "steps": steps, "warmup": warmup, "seed": seed,
        "device": str(dev), "threads": torch.get_num_threads(),
        "fewshot_ms": med["fewshot"], "learn2learn_ms": med["learn2learn"],
        "ratio": med["fewshot"] / med["learn2learn"], "preprocess_ms": preprocess_ms,
        "fewshot_peak_mib": peaks["fewshot"], "learn2learn_peak_mib": peaks["learn2learn"],
        "load_average": load_average(),
    }


SETTINGS = (  # (way, inner_steps, first_order): Finn et al.'s 5-way and 20-way Omniglot shapes
    (5, 1, True),
    (5, 1, False),
    (20, 5, False),
)


def markdown(rows: list[dict], command: str) -> str:
    r0 = rows[0]
    lines = [
        "## MAML meta-training step: fewshot `maml` vs a plain learn2learn loop",
        "",
        f"Command: `{command}`",
        "",
        f"Conv4 (64 channels, 28x28, from scratch) on {r0['dataset']} train classes, {r0['shot']}-shot, "
        f"{r0['query']} queries per class, seed {r0['seed']}, same initial weights and same episodes for both; "
        f"median of {r0['steps']} timed steps after {r0['warmup']} warm-up steps, the two variants alternating "
        f"in rounds. Device {r0['device']}, {r0['threads']} torch threads, {platform.machine()}. "
        "The fewshot time includes preprocessing raw uint8 images (the `preprocess` column); the plain loop "
        "gets preprocessed tensors. Peak memory: peak RSS above the RSS at the start of the variant's steps "
        "(CUDA: peak allocated).",
        "",
        "| way | inner steps | order | fewshot ms/step | learn2learn ms/step | ratio | preprocess ms | "
        "fewshot peak MiB | learn2learn peak MiB | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['way']} | {r['inner_steps']} | {'first' if r['first_order'] else 'second'} | "
            f"{r['fewshot_ms']:.1f} | {r['learn2learn_ms']:.1f} | {r['ratio']:.2f} | {r['preprocess_ms']:.1f} | "
            f"{r['fewshot_peak_mib']:.1f} | {r['learn2learn_peak_mib']:.1f} | "
            f"{r['load_average']:.1f} |"
        )
    lines += load_average_note("is shared", "the ratio rather than absolute times")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bin/bench-maml", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="omniglot-small1")
    p.add_argument("--data-root", default=None)
    AlternatingRounds.add_arguments(p)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--setting", action="append", default=None, metavar="WAY:INNER:ORDER",
                   help="e.g. 5:1:first or 20:5:second (repeatable); default: 5:1:first, 5:1:second, 20:5:second")
    p.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = p.parse_args(argv)
    settings = SETTINGS
    if args.setting:
        settings = []
        for s in args.setting:
            try:
                way, inner, order = s.split(":")
                settings.append((int(way), int(inner), {"first": True, "second": False}[order]))
            except (ValueError, KeyError):
                p.error(f"--setting expects WAY:INNER:first|second such as 5:1:first, got {s!r}")
    rows = (run(args.dataset, args.data_root, way=way, inner_steps=inner, first_order=fo, steps=args.steps,
                warmup=args.warmup, rounds=args.rounds, seed=args.seed, device=args.device)
            for way, inner, fo in settings)
    publish_rows("maml-speed", "bench-maml", rows, markdown, argv, not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
