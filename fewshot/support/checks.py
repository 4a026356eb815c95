"""What a FewShotClassifier accepts as items, labels and embeddings, checked where they enter.

Each check returns the value in the form the classifier keeps (a list, a plain Python label, a
contiguous float32 array) or raises TypeError / ValueError saying what was expected, what was
received and how to fix it.
"""
from __future__ import annotations

import numpy as np

from ..inputs import check_labels, check_texts


def plain(value):
    """NumPy scalars -> Python scalars, so np.int64(3) and 3 are the same label."""
    return value.item() if isinstance(value, np.generic) else value


def _as_list(x, what: str, of: str, single: str) -> list:
    """``x`` as a list; a lone string or a non-iterable is refused (``of``: what the list holds)."""
    if isinstance(x, (str, bytes)):
        raise TypeError(f"{what}: expected {single}, got a single {type(x).__name__}; wrap it in a list")
    try:
        return list(x)
    except TypeError as exc:
        raise TypeError(f"{what}: expected a list of {of}, got {type(x).__name__}") from exc


def check_items(x, encoder, what: str) -> list:
    """``x`` as a list of items ``encoder`` reads (texts, or uint8 image arrays)."""
    items = _as_list(x, what, "items", "a list of items")
    if not items:
        raise ValueError(f"{what}: got no items; pass at least one")
    if encoder.modality == "text":
        bad = next((i for i, t in enumerate(items) if not isinstance(t, str)), None)
        if bad is not None:
            raise TypeError(f"{what}: encoder {encoder.name!r} reads text, but item {bad} is a "
                            f"{type(items[bad]).__name__}; pass strings (or use an image encoder)")
        check_texts(items, what)
    elif encoder.modality == "image":
        bad = next((i for i, t in enumerate(items) if not (isinstance(t, np.ndarray) and t.ndim in (2, 3))), None)
        if bad is not None:
            raise TypeError(f"{what}: encoder {encoder.name!r} reads images (uint8 arrays (H, W) or "
                            f"(H, W, C)), but item {bad} is a {type(items[bad]).__name__}; pass images "
                            "(or use a text encoder)")
    return items


def check_label(value, unknown_label, what: str):
    """``value`` as a class label: hashable, not None, not the classifier's ``unknown_label``."""
    value = plain(value)
    try:
        hash(value)
    except TypeError as exc:
        raise TypeError(f"{what}: labels must be hashable (str, int, ...), got {type(value).__name__}") from exc
    if value is None:
        raise ValueError(f"{what}: None is not a class label (it marks out-of-scope examples in calibrate()); "
                         "give every example a class name")
    if value == unknown_label:
        raise ValueError(f"{what}: {value!r} is this classifier's unknown_label, so it cannot name a class; "
                         "rename the class or choose another unknown_label")
    return value


def check_label_list(y, n: int, unknown_label, what: str, existing=()) -> list:
    """``y`` as a list of ``n`` class labels (see :func:`check_label` and :func:`fewshot.inputs.check_labels`);
    ``existing``: the classes already held (a ClassBook's ``keys``), which a new label must not read like."""
    labels = _as_list(y, what, "labels", "one label per item (a list)")
    if len(labels) != n:
        raise ValueError(f"{what}: got {n} items but {len(labels)} labels; give exactly one label per item")
    return check_labels([check_label(v, unknown_label, what) for v in labels], what, existing)


def check_embeddings(z, dim: int, what: str) -> np.ndarray:
    """``z`` as a contiguous (n, dim) float32 array of finite embeddings, n >= 1."""
    z = np.asarray(z)
    if z.ndim != 2 or z.shape[1] != dim:
        raise ValueError(f"{what}: expected embeddings of shape (n, {dim}), got {z.shape}")
    if not np.issubdtype(z.dtype, np.floating):
        raise TypeError(f"{what}: expected floating-point embeddings, got dtype {z.dtype}")
    if len(z) == 0:
        raise ValueError(f"{what}: got no embeddings; pass at least one")
    if not np.isfinite(z).all():
        raise ValueError(f"{what}: embeddings contain NaN or inf")
    return np.ascontiguousarray(z, dtype=np.float32)
