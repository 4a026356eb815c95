"""bin/bench-ner's choice of learner options on Few-NERD INTER's val types, never the test types.

Per learner with a grid (:data:`GRIDS`) and per shot, every option set is scored on the same 3-way episodes of
the 3 val types and the best is kept; that choice then serves every protocol of the run. An option set the
learner refuses (decomposed's zero head left at 0 steps) scores nothing and is shown as refused.
"""
from __future__ import annotations

import numpy as np

from fewshot.datasets import load_dataset
from fewshot.tag_episodes import GreedyTypeSampler
from fewshot.tag_evaluation import evaluate_tagging, word_cache

TEMPERATURES = (0.25, 0.5, 1.0, 2.0, 4.0)
# the options chosen on Few-NERD INTER's val types, per learner and shot (the first of the grid wins a tie):
# StructShot's emission temperature; decomposed's per-task fitting of its detection head (0 steps: as trained; a
# frozen encoder's zero head needs steps)
GRIDS = {"structshot": [{"temperature": t} for t in TEMPERATURES],
         "decomposed": [{"detector_steps": 0},
                        *({"detector_steps": n, "detector_lr": lr} for n in (10, 30, 100)
                          for lr in (1e-3, 1e-2, 0.1, 1.0))]}  # 0.1, 1: frozen mpnet found nothing at <= 0.01
VAL_WAY = 3  # Few-NERD INTER's val split has 3 types


def option_label(opts: dict) -> str:
    return " ".join(f"{k}={v:g}" for k, v in opts.items())


def choose_options(learners, shots, episodes: int, seed: int, root, build,
                   type_names: bool = False) -> dict[str, dict[int, dict]]:
    """Per learner of ``learners`` with a grid in :data:`GRIDS` and per shot: its F1 on 3-way episodes of Few-NERD
    INTER's val types for each option set of the grid, and the best (ties: the first in the grid's order).
    ``build(name, options)`` makes the learner (over a frozen encoder, or from a checkpoint); ``type_names``: the
    episodes' support sets end with their types' names, as the rows it tunes are scored."""
    if not shots or not set(learners) & set(GRIDS):
        return {}
    ds = load_dataset("fewnerd-inter", root)
    out, cache = {}, None  # one embedding of the val sentences for every learner, option set and shot
    for name in [n for n in learners if n in GRIDS]:
        out[name] = {}
        for shot in shots:
            eps = list(GreedyTypeSampler(ds, VAL_WAY, shot, seed=seed, types=ds.splits["val"]).episodes(episodes))
            f1 = []
            for opts in GRIDS[name]:
                learner = build(name, opts)
                cache = word_cache(learner, ds, progress=False) if cache is None else cache
                try:
                    f1.append(evaluate_tagging(learner, ds, eps, progress=False, cache=cache,
                                               type_names=type_names).f1)
                except ValueError:  # an option set the learner refuses (decomposed's zero head left at 0 steps)
                    f1.append(None)
            best = GRIDS[name][int(np.argmax([-1.0 if f is None else f for f in f1]))]  # the first of the ties
            out[name][shot] = {"options": best, "val_f1": {option_label(o): f for o, f in zip(GRIDS[name], f1)},
                               "val_episodes": episodes, "val_seed": seed}
    return out


def options(learner: str, shot: int, tuned: dict) -> dict:
    """The options chosen on val for ``learner`` at ``shot`` (:func:`choose_options`); {} for a learner without a
    grid."""
    return dict(tuned.get(learner, {}).get(shot, {}).get("options", {}))
