"""Variants of a training step timed against each other in alternating rounds.

``bin/bench-maml`` and ``bin/bench-train-speed`` each time two variants over the same steps. A shared
machine's load drifts, so rather than all of one variant and then all of the other, the ``--steps``
timed steps (after ``--warmup`` untimed ones) are cut into ``--rounds`` rounds; in each round every
variant takes a turn at that round's steps, the order flipping from one round to the next. A turn's
time is read only after waiting for the device's queued work (:func:`sync`). What load remains is
shown: each row records the load average at its end (:func:`load_average`), and the table's closing
note says so (:func:`load_average_note`).
"""
from __future__ import annotations

import argparse
import os
from collections.abc import Iterable, Iterator

import torch


class AlternatingRounds:
    """``steps`` timed steps in ``rounds`` rounds of ``steps // rounds`` (refused unless that divides)."""

    def __init__(self, steps: int, rounds: int):
        if steps < rounds or steps % rounds:
            raise ValueError(f"--steps must be a positive multiple of --rounds ({rounds}), got {steps}")
        self.steps, self.rounds = steps, rounds

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        """A script's ``--steps``, ``--warmup`` and ``--rounds`` options."""
        p.add_argument("--steps", type=int, default=20, help="timed steps per variant and setting")
        p.add_argument("--warmup", type=int, default=3)
        p.add_argument("--rounds", type=int, default=4)

    def turns(self, variants: Iterable[str], start: int = 0) -> Iterator[tuple[str, range]]:
        """``(variant, step indices)`` in order of play: round by round, every variant once, in the given
        order in even rounds and reversed in odd ones; round ``r`` covers steps ``start + r * per_round``
        up to the next round's first."""
        order = list(variants)
        per_round = self.steps // self.rounds
        for r in range(self.rounds):
            first = start + r * per_round
            for name in (order if r % 2 == 0 else order[::-1]):
                yield name, range(first, first + per_round)


def sync(device: torch.device) -> None:
    """Wait for the work queued on ``device`` (CUDA runs asynchronously; the CPU needs no wait)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def load_average() -> float | None:
    """The 1-minute load average now (None where the system keeps none), for the end of a row."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def load_average_note(shared: str, compare: str) -> list[str]:
    """The lines that close a table whose rows end with their :func:`load_average`: "The machine ``shared``:
    the 1-minute load average ... is given; compare ``compare``."."""
    return ["", f"The machine {shared}: the 1-minute load average at the end of each row is given; compare {compare}."]
