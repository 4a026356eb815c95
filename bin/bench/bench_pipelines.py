"""Frozen-encoder episodic evaluation, side by side: fewshot against the loops users write today.

``bin/bench-pipelines`` runs, in one process, on CLINC150's test classes with
the same ``minilm`` weights and 5-way 1-shot 15-query episodes:

- **fewshot**: :func:`fewshot.evaluation.evaluate` (every example the
  episodes touch is embedded once, in one batched pass; episodes work on the
  cached embeddings);
- **(a) learn2learn**: ``MetaDataset`` -> ``Taskset`` (``TaskDataset``) with ``NWays``,
  ``KShots``, ``LoadData``, ``RemapLabels``; every task's support and query
  are tokenised and embedded, prototypes computed, queries classified;
- **(b) plain PyTorch**: the same per-episode loop over fewshot's own episodes;
- **floor**: one batched pass over the unique examples the episodes touch,
  the least work any frozen-encoder evaluation can do.

learn2learn's sampler draws from Python's global ``random`` and cannot be
made to produce fewshot's episodes, so (a) is timed on its own (seeded)
tasks and reported with its own accuracy, while (b) runs fewshot's exact
episodes and must match fewshot's per-episode accuracy. The per-episode loops
are run on the first ``--loop-episodes`` episodes and their time extrapolated
linearly to all episodes (the loop's cost per episode is constant).
"""
from __future__ import annotations

import argparse
import json
import os
import math
import random
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from fewshot.benchmark import BenchConfig, BenchResources, CellSpec, frozen_episodes
from fewshot.evaluation import evaluate, mean_ci95
from fewshot.episodes import unique_ids
from benchmarks_md import publish

SECTION = "pipelines"


def mean_pool_encode(model, tokenizer, texts: list[str], max_length: int = 128) -> torch.Tensor:
    """What users write: tokenize one batch, run the model, attention-masked mean pooling."""
    enc = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def classify(z_support: torch.Tensor, y_support: torch.Tensor, z_query: torch.Tensor, n_way: int) -> torch.Tensor:
    """Nearest prototype under cosine similarity (a sentence encoder's metric): (n_query,) local labels."""
    protos = torch.stack([z_support[y_support == k].mean(0) for k in range(n_way)])
    return (F.normalize(z_query, dim=1) @ F.normalize(protos, dim=1).T).argmax(1)


def plain_torch_loop(model, tokenizer, items: list[str], episodes) -> tuple[np.ndarray, float, int]:
    """(b): per episode, embed support and query, prototypes, classify. (accuracies, seconds, embedded)."""
    start = time.perf_counter()
    accs, embedded = np.empty(len(episodes)), 0
    for k, ep in enumerate(episodes):
        z_s = mean_pool_encode(model, tokenizer, [items[i] for i in ep.support])
        z_q = mean_pool_encode(model, tokenizer, [items[i] for i in ep.query])
        pred = classify(z_s, torch.as_tensor(ep.support_labels), z_q, ep.n_way)
        accs[k] = float((pred.numpy() == ep.query_labels).mean())
        embedded += len(ep.support) + len(ep.query)
    return accs, time.perf_counter() - start, embedded


def learn2learn_loop(model, tokenizer, items: list[str], labels: list[str], n_tasks: int, n_way: int,
                     n_shot: int, n_query: int, seed: int) -> tuple[np.ndarray, float, int]:
    """(a): learn2learn's TaskDataset and transforms, as its examples/ do. (accuracies, seconds, embedded)."""
    from fewshot.l2l import import_learn2learn

    l2l = import_learn2learn()
    T = l2l.data.transforms

    class TextDataset(torch.utils.data.Dataset):
        def __init__(self):
            names = sorted(set(labels))
            self.targets = [names.index(y) for y in labels]

        def __len__(self):
            return len(items)

        def __getitem__(self, i):
            return items[i], self.targets[i]

    start = time.perf_counter()
    random.seed(seed)  # learn2learn samples with the global `random`
    meta = l2l.data.MetaDataset(TextDataset())
    # NWays must come first on Python 3.11 (learn2learn 0.2.0 raises "Population must be a sequence" otherwise).
    tasks = l2l.data.Taskset(meta, task_transforms=[T.NWays(meta, n_way), T.KShots(meta, n_shot + n_query),
                                                    T.LoadData(meta), T.RemapLabels(meta)],
                             num_tasks=n_tasks)
    accs, embedded = np.empty(n_tasks), 0
    for k in range(n_tasks):
        texts, y = tasks[k]
        y = torch.as_tensor(y)
        order = torch.sort(y, stable=True).indices
        texts, y = [texts[i] for i in order], y[order]
        is_support = np.zeros(len(y), dtype=bool)
        for c in range(n_way):
            is_support[c * (n_shot + n_query): c * (n_shot + n_query) + n_shot] = True
        s_idx, q_idx = np.flatnonzero(is_support), np.flatnonzero(~is_support)
        z_s = mean_pool_encode(model, tokenizer, [texts[i] for i in s_idx])
        z_q = mean_pool_encode(model, tokenizer, [texts[i] for i in q_idx])
        pred = classify(z_s, y[s_idx], z_q, n_way)
        accs[k] = float((pred == y[q_idx]).float().mean())
        embedded += len(texts)
    return accs, time.perf_counter() - start, embedded


def run(dataset_name: str = "clinc150", n_episodes: int = 600, loop_episodes: int = 100, seed: int = 0,
        batch_size: int = 128, write: bool = True) -> dict:
    from transformers import AutoModel, AutoTokenizer

    from fewshot.encoders.text import minilm_path

    load_before = os.getloadavg()[0]
    torch.manual_seed(0)
    cfg = BenchConfig.from_dict({"name": "pipelines", "datasets": [dataset_name], "ways": [5], "shots": [1],
                                 "query": 15, "episodes": n_episodes, "seed": seed, "device": "cpu",
                                 "batch_size": batch_size, "learners": [{"label": "frozen", "encoder": "minilm"}]})
    res = BenchResources(cfg)
    dataset = res.dataset(dataset_name)
    cell = CellSpec(dataset_name, cfg.learners[0], 5, 1)
    path, episodes, digest = frozen_episodes(cfg, cell, dataset)
    learner = res.learner(cell, cell.run_config(cfg, str(path)), dataset.modality)
    loop_episodes = min(loop_episodes, n_episodes)
    sub = episodes[:loop_episodes]
    ids = unique_ids(episodes)

    learner.encoder.encode(dataset.take(ids[:256]), batch_size=batch_size, device="cpu")  # warm-up
    t = time.perf_counter()
    learner.encoder.encode(dataset.take(ids), batch_size=batch_size, device="cpu")
    floor_s = time.perf_counter() - t

    ours = evaluate(learner, dataset, episodes, batch_size=batch_size, progress=False)

    model = AutoModel.from_pretrained(minilm_path()).eval()
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    b_acc, b_s, b_emb = plain_torch_loop(model, tokenizer, dataset.items, sub)
    test_classes = set(dataset.split_classes("test"))
    keep = [i for i, y in enumerate(dataset.labels) if y in test_classes]
    a_acc, a_s, a_emb = learn2learn_loop(model, tokenizer, [dataset.items[i] for i in keep],
                                         [dataset.labels[i] for i in keep], loop_episodes, 5, 1, 15, seed)
    scale = n_episodes / loop_episodes
    max_diff = float(np.abs(ours.accuracies[:loop_episodes] - b_acc).max())
    load = (load_before, os.getloadavg()[0], os.cpu_count())
    out = {
        "load": load, "dataset": dataset_name, "episodes": n_episodes, "loop_episodes": loop_episodes, "seed": seed,
        "episodes_file": str(path.name), "episodes_sha256": digest, "unique_examples": int(len(ids)),
        "threads": torch.get_num_threads(),
        "floor_s": floor_s,
        "fewshot": {"seconds": ours.elapsed_s, "embedded": ours.n_embedded, "acc": mean_ci95(ours.accuracies),
                    "acc_first_loop_episodes": float(ours.accuracies[:loop_episodes].mean())},
        "plain_torch": {"seconds_measured": b_s, "seconds": b_s * scale, "embedded": int(b_emb * scale),
                        "acc": mean_ci95(b_acc), "max_abs_episode_acc_diff_vs_fewshot": max_diff},
        "learn2learn": {"seconds_measured": a_s, "seconds": a_s * scale, "embedded": int(a_emb * scale),
                        "acc": mean_ci95(a_acc)},
    }
    publish(SECTION, render(out), write)
    return out


def render(r: dict) -> str:
    f, a, b = r["fewshot"], r["learn2learn"], r["plain_torch"]
    n, m = r["episodes"], r["loop_episodes"]

    def acc(x):
        mean, ci = x
        return f"{100 * mean:.2f} +- {100 * ci:.2f}" if not math.isnan(ci) else f"{100 * mean:.2f}"

    ext = "" if m == n else f" (measured on the first {m}, x{n / m:g})"
    rows = [
        f"| fewshot `evaluate` (cached, frozen) | {f['seconds']:.1f} | {f['embedded']:,} | {acc(f['acc'])} ({n} ep) "
        f"| {f['seconds'] / r['floor_s']:.2f}x | 1.00x |",
        f"| (b) plain PyTorch per-episode loop | {b['seconds']:.1f}{ext} | {b['embedded']:,} | {acc(b['acc'])} "
        f"(first {m} ep) | {b['seconds'] / r['floor_s']:.2f}x | {b['seconds'] / f['seconds']:.2f}x |",
        f"| (a) learn2learn TaskDataset loop | {a['seconds']:.1f}{ext} | {a['embedded']:,} | {acc(a['acc'])} "
        f"({m} own tasks) | {a['seconds'] / r['floor_s']:.2f}x | {a['seconds'] / f['seconds']:.2f}x |",
        f"| floor: one batched pass over the {r['unique_examples']:,} unique examples | {r['floor_s']:.1f} | "
        f"{r['unique_examples']:,} | - | 1.00x | {r['floor_s'] / f['seconds']:.2f}x |",
    ]
    same = b["max_abs_episode_acc_diff_vs_fewshot"]
    return "\n".join([
        "## Frozen-encoder evaluation: fewshot against the loops users write",
        "",
        f"Command: `bin/bench-pipelines --episodes {n} --loop-episodes {m} --seed {r['seed']}`",
        "",
        f"{r['dataset']} test classes, 5-way 1-shot, 15 queries per class, {n} episodes "
        f"(`episodes/{r['episodes_file']}`, sha256 {r['episodes_sha256'][:16]}), frozen `minilm` "
        f"(all-MiniLM-L6-v2, mean pooling), nearest prototype (squared Euclidean), CPU, {r['threads']} torch threads, "
        "one process. Times are wall seconds for all episodes.",
        "",
        "| pipeline | seconds | examples embedded | accuracy % (95% CI) | x floor | x fewshot |",
        "|---|---:|---:|---|---:|---:|",
        *rows,
        "",
        f"- Accuracy: (b) runs fewshot's exact episodes; its per-episode accuracy differs from fewshot's by at most "
        f"{same:.2g} over the first {m} episodes (fewshot on those: {100 * f['acc_first_loop_episodes']:.2f}%). "
        "learn2learn's sampler draws from Python's global `random` and cannot be driven to fewshot's episodes, "
        "so (a) is timed on its own seeded tasks of the same shape and classes; its accuracy is over those tasks.",
        f"- The per-episode loops embed 80 examples per episode (5 support + 75 query); fewshot embeds each of the "
        f"{r['unique_examples']:,} touched examples once. Loop times for all {n} episodes are extrapolated linearly "
        f"from the first {m}." if m != n else "- The per-episode loops embed 80 examples per episode.",
        f"- The machine is shared with other jobs (1-minute load average {r['load'][0]:.1f} before, "
        f"{r['load'][1]:.1f} after, on {r['load'][2]} cores): absolute seconds are what this process got, and "
        "the pipelines ran at different moments, so ratios carry that noise too (fewshot below 1.00x floor "
        "means the floor pass was slowed more).",
    ])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bin/bench-pipelines", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="clinc150")
    p.add_argument("--episodes", type=int, default=600)
    p.add_argument("--loop-episodes", type=int, default=100,
                   help="episodes the slow per-episode loops run; their time is extrapolated to --episodes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    p.add_argument("--json", action="store_true", help="also print the raw figures as JSON")
    args = p.parse_args(argv)
    if args.episodes < 1 or args.loop_episodes < 1:
        p.error(f"--episodes and --loop-episodes must be at least 1, got {args.episodes} and {args.loop_episodes}")
    out = run(args.dataset, args.episodes, args.loop_episodes, args.seed, args.batch_size, write=not args.no_write)
    if args.json:
        print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
