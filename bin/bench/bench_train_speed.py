"""``bin/bench-train-speed``: training steps per second of :class:`fewshot.training.Trainer`, with the train
split's inputs resident on the device and without (raw items preprocessed every step).

Settings: protonet Conv4 (64 channels, 28x28, from scratch) on Omniglot small1, 20-way and 60-way
1-shot 5-query; protonet all-MiniLM-L6-v2 (``last:3`` trainable) on HuffPost, 5-way 1-shot 5-query.
Both variants of a setting start from the same weights and train on the same episodes; after
``--warmup`` steps each, they alternate in ``--rounds`` rounds so that a shared machine's load hits
both alike. Validation is excluded (:meth:`Trainer.train_steps`, which reads the device once at its
end, so the timing includes all queued device work).

For MiniLM the script also estimates the encoder's matmul throughput:
``2 * tokens * (P + 2 * P_trainable)`` FLOPs per step (forward over every transformer layer, backward
through the trainable ones; P = transformer-layer parameters, tokens = padded tokens of the step's
batch; attention scores and embeddings left out), against the measured matmul limit of the dtype
training computes in (bf16 under CUDA autocast, fp32 on the CPU).
"""
from __future__ import annotations

import argparse
import platform
import sys
import time

import numpy as np
import torch
from alternating_rounds import AlternatingRounds, load_average, load_average_note, sync
from benchmarks_md import publish_rows

SETTINGS = {  # name: (encoder, dataset, way, learner options)
    "conv4-20way": ("conv4", "omniglot-small1", 20, {}),
    "conv4-60way": ("conv4", "omniglot-small1", 60, {}),
    "minilm-5way": ("minilm", "huffpost", 5, {"trainable": "last:3"}),
}


def matmul_limit(device: torch.device, seconds: float = 1.0) -> tuple[float, str]:
    """Measured FLOP/s of a square matmul in the dtype training computes in on ``device``."""
    dtype, n = (torch.bfloat16, 8192) if device.type == "cuda" else (torch.float32, 1024)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    sync(device)
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
        if device.type == "cuda" and reps % 10:
            continue
        sync(device)
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t0), str(dtype).replace("torch.", "")


def _trainer(setting: str, dataset, resident: bool, device: torch.device, seed: int):
    from fewshot.config import TrainConfig
    from fewshot.encoders import create_encoder
    from fewshot.learners import create_learner
    from fewshot.training import Trainer

    name, _, way, options = SETTINGS[setting]
    torch.manual_seed(seed)
    encoder = create_encoder(name, invert=True) if name == "conv4" else create_encoder(name)
    learner = create_learner("protonet", encoder, options).to(device)
    cfg = TrainConfig(steps=10**6, eval_every=10**6, patience=0, lr=1e-3 if name == "conv4" else 2e-5,
                      train_way=way, train_shot=1, train_query=5, val_way=5, val_shot=1, val_query=5,
                      val_episodes=1, seed=seed)
    t0 = time.perf_counter()
    trainer = Trainer(learner, dataset, cfg, resident=resident)
    sync(device)
    return trainer, time.perf_counter() - t0


def input_ms(trainer, dataset, start: int, n: int, device: torch.device) -> tuple[float, float]:
    """Milliseconds per step to get one episode's model inputs onto the device: raw items preprocessed
    (``encoder.inputs(dataset.take(ids))``) vs a resident view gathered (``encoder.inputs(view)``)."""
    enc = trainer.learner.encoder
    eps = [trainer.sampler.sample(trainer.episode_index(i)) for i in range(start, start + n)]
    ids = [np.concatenate([ep.support, ep.query]) for ep in eps]
    by_class = dataset.ids_by_class(trainer.train_classes)  # the resident rows follow the train classes
    row_of = np.full(len(dataset.items), -1, dtype=np.int64)
    row_of[np.concatenate([by_class[c] for c in trainer.train_classes])] = np.arange(len(trainer.resident))
    out = []
    for fetch in (lambda x: enc.inputs(dataset.take(x)),
                  lambda x: enc.inputs(trainer.resident.take(row_of[x]))):
        sync(device)
        t0 = time.perf_counter()
        for x in ids:
            fetch(x)
        sync(device)
        out.append(1000 * (time.perf_counter() - t0) / n)
    return out[0], out[1]


def _flops_per_token(encoder) -> float:
    """2 * (P + 2 * P_trainable) over the transformer layers (see the module docstring)."""
    layers = encoder.model.encoder
    p = sum(q.numel() for q in layers.parameters())
    p_train = sum(q.numel() for q in layers.parameters() if q.requires_grad)
    return 2.0 * (p + 2 * p_train)


def run(setting: str, data_root: str | None, steps: int, warmup: int, rounds: int, device: str,
        seed: int = 0, limit: tuple[float, str] | None = None) -> dict:
    from fewshot.datasets import load_dataset
    from fewshot.device import resolve_device

    schedule = AlternatingRounds(steps, rounds)
    dev = resolve_device(device)
    dataset = load_dataset(SETTINGS[setting][1], data_root)
    trainers, setup = {}, {}
    for variant, resident in (("resident", True), ("raw", False)):
        trainers[variant], setup[variant] = _trainer(setting, dataset, resident, dev, seed)
    for t in trainers.values():
        t.train_steps(warmup)
    times = {k: 0.0 for k in trainers}
    losses = {k: [] for k in trainers}
    for variant, turn in schedule.turns(trainers):
        sync(dev)
        t0 = time.perf_counter()
        out = trainers[variant].train_steps(len(turn))
        times[variant] += time.perf_counter() - t0
        losses[variant] += out["losses"]
    row = {
        "setting": setting, "device": str(dev), "steps": steps, "warmup": warmup, "seed": seed,
        "threads": torch.get_num_threads(),
        "resident_steps_s": steps / times["resident"], "raw_steps_s": steps / times["raw"],
        "resident_setup_s": setup["resident"] - setup["raw"],
        "resident_mib": trainers["resident"].resident.nbytes / 2**20,
        "max_loss_diff": float(np.max(np.abs(np.subtract(losses["resident"], losses["raw"])))),
        "load_average": load_average(),
    }
    row["speedup"] = row["resident_steps_s"] / row["raw_steps_s"]
    row["raw_input_ms"], row["resident_input_ms"] = input_ms(trainers["resident"], dataset, warmup, steps, dev)
    if SETTINGS[setting][0] == "minilm":
        t = trainers["resident"]
        enc = t.learner.encoder
        tokens = []
        for i in range(warmup, warmup + steps):
            ep = t.sampler.sample(t.episode_index(i))
            tokens.append(enc.preprocess(dataset.take(np.concatenate([ep.support, ep.query])))["input_ids"].numel())
        flops = _flops_per_token(enc) * float(np.mean(tokens))
        limit = limit or matmul_limit(dev)
        row.update(tokens_per_step=float(np.mean(tokens)), gflop_per_step=flops / 1e9,
                   matmul_limit_tflops=limit[0] / 1e12, matmul_dtype=limit[1],
                   resident_pct_of_limit=100 * flops * row["resident_steps_s"] / limit[0],
                   raw_pct_of_limit=100 * flops * row["raw_steps_s"] / limit[0])
    return row


def markdown(rows: list[dict], command: str) -> str:
    r0 = rows[0]
    dev = r0["device"]
    if dev.startswith("cuda"):
        dev += f" ({torch.cuda.get_device_name(torch.device(dev))})"
    lines = [
        "## Training steps per second: resident train inputs vs raw items",
        "",
        f"Command: `{command}`",
        "",
        f"`Trainer.train_steps` (no validation), protonet, 1-shot 5-query episodes of the train classes, seed "
        f"{r0['seed']}; {r0['steps']} timed steps per variant after {r0['warmup']} warm-up steps, the two "
        f"variants alternating in rounds from the same weights on the same episodes. Device {dev}, torch "
        f"{torch.__version__}, {r0['threads']} torch threads, {platform.machine()}. *resident*: the train split "
        "preprocessed once onto the device (setup time and size given); *raw*: items preprocessed every step. "
        "Max loss diff: the largest difference of the two variants' per-step losses (same episodes). "
        "Input ms/step: getting one episode's model inputs onto the device alone (`encoder.inputs` of raw "
        "items vs of a resident view), timed apart over the same episodes: the per-step host work that "
        "resident inputs remove, which sets the pace on a GPU.",
        "",
        "| setting | resident steps/s | raw steps/s | speed-up | input ms/step resident | input ms/step raw | "
        "resident setup s | resident MiB | max loss diff | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['setting']} | {r['resident_steps_s']:.2f} | {r['raw_steps_s']:.2f} | "
                     f"{r['speedup']:.2f} | {r['resident_input_ms']:.2f} | {r['raw_input_ms']:.2f} | "
                     f"{r['resident_setup_s']:.1f} | {r['resident_mib']:.1f} | "
                     f"{r['max_loss_diff']:.1e} | {r['load_average']:.1f} |")
    text = [r for r in rows if "tokens_per_step" in r]
    if text:
        lines += ["", "MiniLM encoder throughput (estimate, see `bin/bench/bench_train_speed.py`):", "",
                  "| setting | padded tokens/step | GFLOP/step | matmul limit TFLOP/s | resident % of limit | "
                  "raw % of limit |", "|---|---|---|---|---|---|"]
        for r in text:
            lines.append(f"| {r['setting']} | {r['tokens_per_step']:.0f} | {r['gflop_per_step']:.2f} | "
                         f"{r['matmul_limit_tflops']:.2f} ({r['matmul_dtype']}) | "
                         f"{r['resident_pct_of_limit']:.1f} | {r['raw_pct_of_limit']:.1f} |")
    lines += load_average_note("may be shared", "the two variants of a row rather than absolute figures across runs")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bin/bench-train-speed", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    AlternatingRounds.add_arguments(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", default=None)
    p.add_argument("--setting", action="append", choices=sorted(SETTINGS), default=None,
                   help="repeatable; default: all three")
    p.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = p.parse_args(argv)
    rows = (run(setting, args.data_root, args.steps, args.warmup, args.rounds, args.device, args.seed)
            for setting in args.setting or list(SETTINGS))
    publish_rows("train-speed", "bench-train-speed", rows, markdown, argv, not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
