"""The Encoder contract shared by text and image encoders."""
from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..device import autocast, resident_budget, resolve_device


class Encoder(nn.Module):
    """Maps raw items (strings or uint8 images) to (n, dim) embeddings.

    Subclasses set ``modality`` and ``dim`` and implement :meth:`preprocess`
    (raw items -> model inputs on CPU) and :meth:`forward` (model inputs ->
    (n, dim) float tensor). :meth:`encode` is the batched inference path.
    ``metric`` says how its embeddings compare (the default of every
    nearest-prototype path; see :mod:`fewshot.prototypes`).
    ``spec`` is the JSON-able recipe that :func:`fewshot.encoders.create_encoder`
    rebuilds the architecture from (weights travel separately, as safetensors).
    """

    kind: str = ""  # the spec "kind" this class builds (see fewshot.encoders.registry)
    modality: str = ""
    metric: str = "euclidean"  # how embeddings compare by default: "cosine" or "euclidean"
    dim: int = 0

    def __init__(self, spec: dict):
        super().__init__()
        self.spec = dict(spec)
        self._fingerprint: str | None = None

    @property
    def name(self) -> str:
        return self.spec["name"]

    def preprocess(self, items: Sequence):  # pragma: no cover - abstract
        raise NotImplementedError

    def validate(self, items: Sequence) -> None:
        """Raise TypeError/ValueError naming the first bad item (index into ``items``)."""

    def batch_order(self, items: Sequence) -> np.ndarray:
        """Order in which :meth:`encode` batches items (text sorts by length to cut padding)."""
        return np.arange(len(items))

    def inputs(self, items) -> torch.Tensor | dict[str, torch.Tensor]:
        """Model inputs on this module's device: raw items are preprocessed, :class:`ResidentItems` gathered."""
        if isinstance(items, ResidentItems):
            return items.batch()
        return _to_device(self.preprocess(items), next(self.parameters()).device)

    def embed(self, items) -> torch.Tensor:
        """Embeddings with gradients, on this module's device: (n, dim). ``items``: raw or :class:`ResidentItems`."""
        return self(self.inputs(items))

    def padding_value(self, key: str) -> int | float:
        """The value that pads input ``key`` (dict inputs) along its second axis; text encoders override it."""
        return 0

    def resident(self, items: Sequence, device: str | torch.device, max_bytes: int | None = None,
                 batch_size: int = 1024) -> ResidentItems | None:
        """Preprocess every item once and keep the inputs on ``device``: a :class:`ResidentItems`.

        Returns None when they would take more than ``max_bytes`` (default: :func:`fewshot.device.resident_budget`),
        estimated from the first ``batch_size`` items before the rest are preprocessed.
        """
        device = resolve_device(device)
        max_bytes = resident_budget(device) if max_bytes is None else max_bytes
        if len(items) == 0:
            raise ValueError("resident() needs at least one item, got none")
        chunks = []
        for start in range(0, len(items), batch_size):
            chunk = self.preprocess([items[i] for i in range(start, min(start + batch_size, len(items)))])
            if start == 0 and _nbytes(chunk) * len(items) / min(batch_size, len(items)) > max_bytes:
                return None
            chunks.append(chunk)
        if isinstance(chunks[0], torch.Tensor):
            inputs = torch.cat(chunks)
        else:
            width = max(c[k].shape[1] for c in chunks for k in c)
            inputs = {k: torch.cat([F.pad(c[k], (0, width - c[k].shape[1]), value=self.padding_value(k))
                                    for c in chunks]) for k in chunks[0]}
        if _nbytes(inputs) > max_bytes:
            return None
        return ResidentItems(_to_device(inputs, device))

    @torch.inference_mode()
    def encode(self, items: Sequence, batch_size: int = 128, device: str | torch.device | None = None,
               progress=None) -> np.ndarray:
        """Batched inference: (n, dim) float32 NumPy array, in the order of ``items``."""
        if len(items) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        self.validate(items)
        device = resolve_device(device) if device is not None else next(self.parameters()).device
        was_training = self.training
        self.eval()
        self.to(device)
        order = self.batch_order(items)
        out = np.empty((len(items), self.dim), dtype=np.float32)
        try:
            for start in range(0, len(items), batch_size):
                idx = order[start:start + batch_size]
                batch = _to_device(self.preprocess([items[i] for i in idx]), device)
                with autocast(device):
                    z = self(batch)
                out[idx] = z.float().cpu().numpy()
                if progress is not None:
                    progress.update(len(idx))
        finally:
            self.train(was_training)
        return out

    def fingerprint(self) -> str:
        """SHA-256 (first 16 hex) of the spec and every parameter and buffer."""
        if self._fingerprint is None or self.training:
            h = hashlib.sha256(repr(sorted(self.spec.items())).encode())
            for key, value in sorted(self.state_dict().items()):
                h.update(key.encode())
                for chunk in _state_bytes(value):
                    h.update(chunk)
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint


class ResidentItems:
    """Items already preprocessed by an encoder and held on its device: rows ``rows`` of ``inputs``.

    :meth:`Encoder.resident` builds one over a whole training split; :meth:`take` and ``+``
    give lightweight views (row indices on the host) that learners pass to
    :meth:`Encoder.embed` in place of raw items, which then gathers the rows on the
    device instead of preprocessing them again. Dict inputs (token ids and attention
    mask) are cut to the longest row of the batch, so a batch equals what
    :meth:`Encoder.preprocess` gives for the same raw items.
    """

    def __init__(self, inputs: torch.Tensor | dict[str, torch.Tensor], rows: np.ndarray | None = None,
                 lengths: np.ndarray | None = None):
        self.inputs = inputs
        first = inputs if isinstance(inputs, torch.Tensor) else next(iter(inputs.values()))
        self.n_total = int(first.shape[0])
        self.device = first.device
        self.rows = np.arange(self.n_total, dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
        if lengths is None and isinstance(inputs, dict) and "attention_mask" in inputs:
            lengths = inputs["attention_mask"].sum(1).cpu().numpy()
        self.lengths = lengths

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def nbytes(self) -> int:
        return _nbytes(self.inputs)

    def take(self, positions: Sequence[int]) -> ResidentItems:
        """The items at ``positions`` of this view (like ``FewShotDataset.take``)."""
        return ResidentItems(self.inputs, self.rows[np.asarray(positions, dtype=np.int64)], self.lengths)

    def __add__(self, other: ResidentItems) -> ResidentItems:
        if not isinstance(other, ResidentItems) or other.inputs is not self.inputs:
            raise TypeError("only views of the same resident inputs can be joined; got "
                            f"{type(other).__name__}")
        return ResidentItems(self.inputs, np.concatenate([self.rows, other.rows]), self.lengths)

    def batch(self) -> torch.Tensor | dict[str, torch.Tensor]:
        """The model inputs of these rows, gathered on the device."""
        index = torch.from_numpy(self.rows).to(self.device, non_blocking=True)
        if isinstance(self.inputs, torch.Tensor):
            return self.inputs.index_select(0, index)
        width = int(self.lengths[self.rows].max()) if self.lengths is not None and len(self.rows) else None
        return {k: v[:, :width].index_select(0, index) for k, v in self.inputs.items()}


def join_items(a, b):
    """``a`` followed by ``b``: raw item sequences or views of the same :class:`ResidentItems`."""
    if isinstance(a, ResidentItems):
        return a + b
    return list(a) + list(b)


def _state_bytes(value):
    """The bytes of one state_dict entry: a tensor (quantized ones dequantized), or the tuples and dtypes
    that quantized modules keep there."""
    if isinstance(value, (tuple, list)):
        for v in value:
            yield from _state_bytes(v)
    elif isinstance(value, torch.Tensor):
        t = value.detach().to("cpu")
        t = t.dequantize() if t.is_quantized else t
        yield t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
    else:
        yield repr(value).encode()


def _nbytes(inputs) -> int:
    if isinstance(inputs, torch.Tensor):
        return inputs.numel() * inputs.element_size()
    return sum(_nbytes(v) for v in inputs.values())


def _to_device(batch, device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}
