"""Data augmentation that keeps labels valid, for training episodes and support sets.

- Text: token-level random deletion, adjacent swap and masking (Wei & Zou 2019,
  "EDA"; masking as in BERT), on whitespace tokens; at least one token survives.
  The entities of an entity-marked text (:data:`fewshot.inputs.ENTITY_MARKERS`,
  as the FewRel datasets give) are kept whole, markers and words, in place:
  only the words around them change, so entity pooling still finds them.
- Images: a small random affine jitter (rotation, translation, scale), as used
  for Omniglot; and :func:`with_rotations`, which turns every training class
  into four classes rotated by 0/90/180/270 degrees (Santoro et al. 2016, used by
  Snell et al. 2017 and Finn et al. 2017).

Every random choice comes from a ``numpy.random.Generator`` the caller passes,
so augmentation of episode ``i`` is reproducible (resume, DDP).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .data import FewShotDataset, LazyItems
from .inputs import ENTITY_MARKERS

ROTATION_SUFFIX = "@rot"


@dataclass(frozen=True)
class TextAugmenter:
    """Per token: delete with ``p_delete``, mask with ``p_mask``; then ``n_swaps`` ~ p_swap * len swaps."""

    p_delete: float = 0.1
    p_swap: float = 0.1
    p_mask: float = 0.1
    mask_token: str = "[MASK]"

    def __post_init__(self) -> None:
        for name in ("p_delete", "p_swap", "p_mask"):
            v = getattr(self, name)
            if not 0.0 <= v < 1.0:
                raise ValueError(f"TextAugmenter.{name} must be in [0, 1), got {v}")

    def one(self, text: str, rng: np.random.Generator) -> str:
        tokens = text.split()
        if len(tokens) <= 1:
            return text
        fixed = _entity_tokens(tokens)
        keep = (rng.random(len(tokens)) >= self.p_delete) | fixed
        if not keep.any():
            keep[rng.integers(len(tokens))] = True
        tokens, fixed = [t for t, k in zip(tokens, keep) if k], fixed[keep]
        mask = (rng.random(len(tokens)) < self.p_mask) & ~fixed
        tokens = [self.mask_token if m else t for t, m in zip(tokens, mask)]
        n_swaps = int(rng.binomial(len(tokens), self.p_swap)) if len(tokens) > 1 else 0
        for _ in range(n_swaps):
            i = int(rng.integers(len(tokens) - 1))
            if not (fixed[i] or fixed[i + 1]):  # entity words and markers stay where they are
                tokens[i], tokens[i + 1] = tokens[i + 1], tokens[i]
        return " ".join(tokens)

    def __call__(self, items: Sequence[str], rng: np.random.Generator) -> list[str]:
        return [self.one(t, rng) for t in items]


def _entity_tokens(tokens: list[str]) -> np.ndarray:
    """Which whitespace tokens belong to a marked entity: its markers and every token between them."""
    opens = dict(ENTITY_MARKERS)
    fixed = np.zeros(len(tokens), dtype=bool)
    close = None  # the close marker awaited inside an entity
    for i, t in enumerate(tokens):
        if close is None:
            close = next((c for o, c in opens.items() if o in t), None)
        if close is not None:
            fixed[i] = True
            if close in t:
                close = None
    return fixed


@dataclass(frozen=True)
class ImageAugmenter:
    """Random affine jitter of uint8 images: rotation (degrees), translation (fraction), scale."""

    degrees: float = 10.0
    translate: float = 0.1
    scale: tuple[float, float] = (0.9, 1.1)

    def one(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        import torch
        from torchvision.transforms.v2 import functional as TF

        t = torch.from_numpy(np.ascontiguousarray(img))
        t = t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1)
        h, w = t.shape[-2:]
        out = TF.affine(
            t, angle=float(rng.uniform(-self.degrees, self.degrees)),
            translate=[int(round(rng.uniform(-self.translate, self.translate) * w)),
                       int(round(rng.uniform(-self.translate, self.translate) * h))],
            scale=float(rng.uniform(*self.scale)), shear=[0.0, 0.0],
            interpolation=TF.InterpolationMode.BILINEAR, fill=_background(img),
        )
        out = out.squeeze(0) if img.ndim == 2 else out.permute(1, 2, 0)
        return out.numpy().astype(img.dtype, copy=False)

    def __call__(self, items: Sequence[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
        return [self.one(x, rng) for x in items]


def _background(img: np.ndarray) -> float:
    """The border colour (the most common corner value), so jitter does not add a frame."""
    corners = [img[0, 0], img[0, -1], img[-1, 0], img[-1, -1]]
    vals = [float(np.mean(c)) for c in corners]
    return float(max(set(vals), key=vals.count))


def make_augmenter(modality: str, encoder=None):
    """The default augmenter for ``modality``; text masks with the encoder tokenizer's mask token."""
    if modality == "text":
        tok = getattr(encoder, "tokenizer", None)
        mask = getattr(tok, "mask_token", None) or "[MASK]"
        return TextAugmenter(mask_token=mask)
    if modality == "image":
        return ImageAugmenter()
    raise ValueError(f"no augmentation for modality {modality!r}; expected 'text' or 'image'")


class RotatedItems(LazyItems):
    """A lazy view: item ``k * n + i`` is item ``i`` rotated by ``k`` * 90 degrees."""

    def __init__(self, items: Sequence[np.ndarray]):
        self.items = items
        self.n = len(items)

    def __len__(self) -> int:
        return 4 * self.n

    def item(self, index: int) -> np.ndarray:
        k, i = divmod(index, self.n)
        return np.ascontiguousarray(np.rot90(self.items[i], k))


def with_rotations(dataset: FewShotDataset) -> FewShotDataset:
    """``dataset`` with each TRAIN class also rotated by 90, 180 and 270 degrees as new train classes.

    Val and test classes are unchanged (their rotated copies belong to no split).
    """
    if dataset.modality != "image":
        raise ValueError(f"rotation classes need an image dataset, {dataset.name!r} is {dataset.modality}; "
                         "turn off --rotations")
    labels = list(dataset.labels)
    for k in (1, 2, 3):
        labels += [f"{label}{ROTATION_SUFFIX}{90 * k}" for label in dataset.labels]
    splits = dict(dataset.splits)
    train = dataset.split_classes("train")
    splits["train"] = train + [f"{c}{ROTATION_SUFFIX}{90 * k}" for k in (1, 2, 3) for c in train]
    return dataclasses.replace(dataset, items=RotatedItems(dataset.items), labels=labels, splits=splits)
