"""Published and reference figures that benchmark cells are printed beside.

A figure is shown beside a cell only when the protocol is the same: the same
dataset and task shape (for an official protocol such as the Omniglot runs of
Lake et al., the same protocol episodes). ``kind`` says how far it can be
compared: "published" (a paper, same protocol) or "reference" (measured on the
same files with a different random class split, see ../shared/data/README.md).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class PublishedFigure:
    dataset: str
    way: int | None  # None: the dataset's own protocol episodes
    shot: int | None
    method: str
    metric: str  # "error" or "accuracy", in percent
    value: float
    ci95: float | None
    source: str
    kind: str  # "published" or "reference"

    def to_dict(self) -> dict:
        return asdict(self)

    def value_text(self) -> str:
        ci = f" +- {self.ci95:g}" if self.ci95 is not None else ""
        unit = "% err" if self.metric == "error" else "%"
        return f"{self.value:g}{ci}{unit} {self.method}"

    def short(self) -> str:
        return f"{self.value_text()} [{self.source}]"


def cite(figures: list[PublishedFigure]) -> str:
    """Figures grouped by kind and source: "*published* 4.5% err humans; 8% err Siamese net [Lake ...]"."""
    groups: dict[tuple[str, str], list[str]] = {}
    for f in figures:
        groups.setdefault((f.kind, f.source), []).append(f.value_text())
    return "; ".join(f"*{kind}* {'; '.join(vals)} [{source}]" for (kind, source), vals in groups.items())


LAKE_2015 = "Lake, Salakhutdinov & Tenenbaum 2015, Science 350:1332"
SHARED_README = "../shared/data/README.md, 600 ep, random class split"

FIGURES: tuple[PublishedFigure, ...] = (
    # Omniglot one-shot classification, 20 official runs of 20-way within-alphabet 1-shot (error rate, %).
    PublishedFigure("omniglot-runs", None, None, "humans", "error", 4.5, None, LAKE_2015, "published"),
    PublishedFigure("omniglot-runs", None, None, "BPL (background small1)", "error", 4.3, None, LAKE_2015, "published"),
    PublishedFigure("omniglot-runs", None, None, "BPL (background small2)", "error", 4.0, None, LAKE_2015, "published"),
    PublishedFigure("omniglot-runs", None, None, "deep convnet (small1)", "error", 24.0, None, LAKE_2015, "published"),
    PublishedFigure("omniglot-runs", None, None, "deep convnet (small2)", "error", 22.3, None, LAKE_2015, "published"),
    PublishedFigure("omniglot-runs", None, None, "Siamese net (full background)", "error", 8.0, None, LAKE_2015,
                    "published"),
    PublishedFigure("omniglot-runs", None, None, "modified Hausdorff distance", "error", 38.8, None, LAKE_2015,
                    "published"),
    # Frozen all-MiniLM-L6-v2 measured by the data's curators (not a paper).
    PublishedFigure("clinc150", 5, 1, "frozen MiniLM", "accuracy", 95.6, 0.4, SHARED_README, "reference"),
    PublishedFigure("clinc150", 5, 5, "frozen MiniLM", "accuracy", 99.3, 0.1, SHARED_README, "reference"),
    PublishedFigure("clinc150", 20, 1, "frozen MiniLM", "accuracy", 88.9, 0.3, SHARED_README, "reference"),
    PublishedFigure("huffpost", 5, 1, "frozen MiniLM", "accuracy", 45.7, 0.7, SHARED_README, "reference"),
    PublishedFigure("huffpost", 5, 5, "frozen MiniLM", "accuracy", 64.9, 0.6, SHARED_README, "reference"),
)


def figures_for(dataset: str, way: int | None, shot: int | None, protocol: bool) -> list[PublishedFigure]:
    """The figures comparable with a cell: same dataset, and same way/shot (or the dataset's protocol)."""
    if protocol:
        return [f for f in FIGURES if f.dataset == dataset and f.way is None]
    return [f for f in FIGURES if f.dataset == dataset and f.way == way and f.shot == shot]
