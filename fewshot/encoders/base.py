"""The Encoder contract shared by text and image encoders."""
from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..device import autocast, resolve_device


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

    def embed(self, items: Sequence) -> torch.Tensor:
        """Embeddings with gradients, on this module's device: (n, dim)."""
        device = next(self.parameters()).device
        return self(_to_device(self.preprocess(items), device))

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
            for key, tensor in sorted(self.state_dict().items()):
                h.update(key.encode())
                h.update(tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint


def _to_device(batch, device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}
