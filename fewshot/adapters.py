"""What of an encoder is trained: everything, its last blocks, a LoRA adapter, its biases, or nothing.

``apply_trainable(encoder, "last:2")`` sets ``requires_grad`` on the encoder's
parameters (and, for ``"lora"``, first injects a PEFT LoRA adapter into the
transformer's attention projections, Hu et al. 2021). The adapter's structure
is recorded in :func:`adapter_record` so a checkpoint can rebuild it before
loading weights (:func:`restore_adapter`).

Specs: ``full`` (every parameter), ``last:K`` (the last K blocks, plus the
final norm for image encoders), ``lora`` (LoRA matrices only), ``bitfit``
(bias terms only, Ben Zaken et al. 2022), ``none`` (frozen).
"""
from __future__ import annotations

from torch import nn

TRAINABLE_CHOICES = ("full", "last:K", "lora", "bitfit", "none")
LORA_TARGETS = ("query", "key", "value", "q_proj", "k_proj", "v_proj", "q_lin", "k_lin", "v_lin")
_ATTR = "_fewshot_adapter"


def check_trainable(spec: str) -> str:
    """``spec`` if it is a valid trainable spec, else a ValueError listing the choices."""
    if spec in ("full", "lora", "bitfit", "none"):
        return spec
    if isinstance(spec, str) and spec.startswith("last:"):
        k = spec.split(":", 1)[1]
        if k.isdigit() and int(k) >= 1:
            return spec
    raise ValueError(f"trainable must be one of {list(TRAINABLE_CHOICES)} (K a positive int, e.g. last:2), "
                     f"got {spec!r}")


def blocks(encoder: nn.Module) -> nn.ModuleList | nn.Sequential:
    """The encoder's sequence of blocks: transformer layers, Conv4 blocks or MobileNetV2 stages."""
    model = getattr(encoder, "model", None)
    if model is not None:
        lists = [m for _, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m) > 1]
        if lists:
            return max(lists, key=len)
    for name in ("blocks", "features"):
        seq = getattr(encoder, name, None)
        if isinstance(seq, (nn.Sequential, nn.ModuleList)):
            return seq
    raise ValueError(f"encoder {type(encoder).__name__} has no recognisable blocks for trainable='last:K'; "
                     "use full, bitfit or none")


def lora_targets(encoder: nn.Module) -> list[str]:
    """Names (last component) of the attention projections LoRA attaches to."""
    model = getattr(encoder, "model", None)
    if model is None:
        raise ValueError(f"trainable='lora' needs a transformer text encoder, got {type(encoder).__name__}; "
                         "use full, last:K, bitfit or none for image encoders")
    found = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                    if isinstance(m, nn.Linear) and n.rsplit(".", 1)[-1] in LORA_TARGETS})
    if not found:
        raise ValueError(f"no attention projections named {LORA_TARGETS} in {type(model).__name__}; "
                         "trainable='lora' cannot attach an adapter")
    return found


def inject_lora(encoder: nn.Module, r: int = 8, alpha: int = 16, dropout: float = 0.1) -> None:
    """Add a LoRA adapter to the encoder's attention projections (in place), once."""
    from peft import LoraConfig, inject_adapter_in_model

    if r < 1:
        raise ValueError(f"lora_r must be at least 1, got {r}")
    if getattr(encoder, _ATTR, None) is not None:
        return
    targets = lora_targets(encoder)
    cfg = LoraConfig(r=int(r), lora_alpha=int(alpha), lora_dropout=float(dropout), target_modules=targets,
                     bias="none")
    inject_adapter_in_model(cfg, encoder.model)
    setattr(encoder, _ATTR, {"kind": "lora", "r": int(r), "alpha": int(alpha), "dropout": float(dropout),
                             "targets": targets})


def adapter_record(encoder: nn.Module) -> dict | None:
    """The structure added to ``encoder`` (None if it has no adapter), for checkpoints."""
    rec = getattr(encoder, _ATTR, None)
    return dict(rec) if rec else None


def restore_adapter(encoder: nn.Module, record: dict | None) -> None:
    """Re-create the adapter described by ``record`` (from :func:`adapter_record`)."""
    if not record:
        return
    if record.get("kind") != "lora":
        raise ValueError(f"checkpoint names an unknown adapter kind {record.get('kind')!r}; expected 'lora'")
    inject_lora(encoder, record["r"], record["alpha"], record["dropout"])


def apply_trainable(encoder: nn.Module, spec: str, lora_r: int = 8, lora_alpha: int = 16,
                    lora_dropout: float = 0.1) -> int:
    """Set which encoder parameters train; returns how many parameters are trainable."""
    spec = check_trainable(spec)
    if spec == "lora":
        inject_lora(encoder, lora_r, lora_alpha, lora_dropout)
    for p in encoder.parameters():
        p.requires_grad_(False)
    if spec == "full":
        for p in encoder.parameters():
            p.requires_grad_(True)
    elif spec == "lora":
        for name, p in encoder.named_parameters():
            p.requires_grad_("lora_" in name)
    elif spec == "bitfit":
        for name, p in encoder.named_parameters():
            p.requires_grad_(name.endswith("bias"))
    elif spec.startswith("last:"):
        k = int(spec.split(":", 1)[1])
        seq = blocks(encoder)
        if k > len(seq):
            raise ValueError(f"trainable='last:{k}' but the encoder has only {len(seq)} blocks; "
                             f"use last:1 .. last:{len(seq)} or full")
        for block in list(seq)[-k:]:
            for p in block.parameters():
                p.requires_grad_(True)
    return sum(p.numel() for p in encoder.parameters() if p.requires_grad)
