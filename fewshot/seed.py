"""Seeding: one place that makes runs repeatable.

Samplers never touch the global ``random`` state; they take a seed and build a
``numpy.random.Generator`` per episode (see :func:`episode_rng`), so episode
``i`` is the same whatever was drawn before it, in any process.
"""
from __future__ import annotations

import os
import random

import numpy as np


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every GPU)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    import torch

    torch.manual_seed(seed)


def episode_rng(seed: int, index: int) -> np.random.Generator:
    """The generator for episode ``index`` of a sampler seeded with ``seed``."""
    return np.random.default_rng([int(seed), int(index)])
