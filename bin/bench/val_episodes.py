"""Frozen-encoder accuracy on a dataset's VALIDATION classes: the evidence behind a default or an option.

Shared by bin/bench-pooling and bin/bench-class-names; test classes are never touched here.
"""
from __future__ import annotations

import argparse

from fewshot.config import FewShotConfig
from fewshot.evaluation import evaluate
from fewshot.experiment import build_dataset, build_episodes, build_learner


def val_accuracy(dataset: str, shot: int, episodes: int, seed: int, data_root: str | None = None,
                 extra_val: list[str] | None = None, encoder_options: dict | None = None,
                 class_names: bool = False, checkpoint: str | None = None) -> dict:
    """Mean +- 95% CI (in %) of protonet on 5-way ``shot``-shot episodes of ``dataset``'s val classes (with the
    val classes of the ``extra_val`` datasets), and the classes used: the frozen encoder, or ``checkpoint``'s
    encoder (whatever learner trained it)."""
    cfg = FewShotConfig.from_dict({
        "data": {"dataset": dataset, "data_root": data_root, "extra_val": list(extra_val or [])},
        "episodes": {"way": 5, "shot": shot, "episodes": episodes, "seed": seed, "classes": "val",
                     "class_names": class_names},
        "encoder_options": dict(encoder_options or {}), "device": "cpu", "checkpoint": checkpoint,
        "learner": {"name": "protonet"}})
    data = build_dataset(cfg, training=True)  # training=True: with the extra val classes
    eps, _ = build_episodes(cfg, data)
    result = evaluate(build_learner(cfg, data), data, eps, batch_size=cfg.batch_size, progress=False,
                      class_names=class_names)
    return {"shot": shot, "episodes": len(result.accuracies), "mean": 100 * result.mean, "ci95": 100 * result.ci95,
            "classes": data.split_classes("val")}


def parse_args(description: str, argv=None) -> argparse.Namespace:
    """The options of a val-evidence script: --episodes (300), --seed (0), --data-root, --no-write."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--episodes", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", default=None)
    p.add_argument("--no-write", action="store_true", help="Print the section without writing BENCHMARKS.md.")
    return p.parse_args(argv)


def compared(before: dict, after: dict) -> str:
    """Table cells ``before | after | difference`` of two :func:`val_accuracy` rows."""
    return (f"{before['mean']:.2f} +- {before['ci95']:.2f} | {after['mean']:.2f} +- {after['ci95']:.2f} | "
            f"{after['mean'] - before['mean']:+.2f}")
