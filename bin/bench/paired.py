"""A paired-comparison table in Markdown: one column per arm, then one per pair of arms.

An arm is what a bench script compares (a method, an encoder); every arm of a table row scores the
same frozen episodes, so a pair's column is the per-episode accuracy differences, mean +- 95% CI
(:func:`fewshot.evaluation.mean_ci95`), tighter than the two intervals beside it.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fewshot.evaluation import mean_ci95


def paired_table(rows: list[dict], arm: str, pairs: Callable[[list[str]], list[tuple[str, str]]],
                 head: Callable[[str], str], cell: Callable[[dict], str]) -> list[str]:
    """The table's lines: header, separator and one line per ``row`` value, in the order first met.

    ``rows`` are a bench script's results, each with keys "row", ``arm`` (the arm's name), "episodes"
    and "accuracies" (per episode, in episode order). ``pairs(arms)`` gives the ``(a, b)`` columns
    (``a - b``) for the arms in the order first met; ``head(arm)`` is an arm's column header and
    ``cell(result)`` its cell. A pair is "-" in a row that lacks either arm or where their episode
    counts differ; the episodes cell lists each distinct count, joined by "/".
    """
    arms = list(dict.fromkeys(r[arm] for r in rows))
    compared = pairs(arms)
    lines = [f"| row | episodes | {' | '.join(map(head, arms))} | {' | '.join(f'{a} - {b}' for a, b in compared)} |",
             "|---|---:|" + "---|" * (len(arms) + len(compared))]
    for row in dict.fromkeys(r["row"] for r in rows):
        got = {r[arm]: r for r in rows if r["row"] == row}
        cells = [cell(got[a]) if a in got else "-" for a in arms]
        diffs = []
        for a, b in compared:
            if a in got and b in got and got[a]["episodes"] == got[b]["episodes"]:
                mean, ci = mean_ci95(np.subtract(got[a]["accuracies"], got[b]["accuracies"]))
                diffs.append(f"{100 * mean:+.2f} +- {100 * ci:.2f}")
            else:
                diffs.append("-")
        n = "/".join(sorted({str(r["episodes"]) for r in got.values()}))
        lines.append(f"| {row} | {n} | {' | '.join(cells)} | {' | '.join(diffs)} |")
    return lines
