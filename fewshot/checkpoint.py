"""Checkpoints on disk: safetensors weights and JSON, never pickle.

A checkpoint folder written by :func:`save_checkpoint` holds

- ``model.safetensors``: ``learner.module.state_dict()`` (metadata names the format and learner);
- ``learner.json``: format, learner name and config, the encoder spec (to rebuild
  the architecture without reloading pretrained weights), the adapter record
  (LoRA), the learner's own structural facts, and the SHA-256 of the weights;
- ``config.json``: the resolved run config (sorted keys, ``fewshot_version``).

:func:`load_learner` and :func:`load_encoder` refuse a truncated, altered or
foreign folder with a message that says what is wrong. ``last/`` (resume state:
weights, optimizer moments, counters) is written by :func:`save_training_state`.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from .atomic import atomic_write_bytes, atomic_write_text

FORMAT = "fewshot-checkpoint/1"
STATE_FORMAT = "fewshot-train-state/1"
WEIGHTS = "model.safetensors"
LEARNER_JSON = "learner.json"


def _state_bytes(state: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    from safetensors.torch import save

    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    return save(tensors, metadata=metadata)


def _encoder_prefix(learner) -> str:
    if learner.module is learner.encoder:
        return ""
    for name, mod in learner.module.named_modules():
        if mod is learner.encoder:
            return name + "."
    raise ValueError(f"learner {learner.name!r}: its module does not contain its encoder")


def save_checkpoint(out_dir: str | os.PathLike, learner, config_dict: dict | None = None,
                    extra: dict | None = None) -> Path:
    """Write ``learner`` (weights, structure, config) to ``out_dir``; each file atomically."""
    from . import __version__
    from .adapters import adapter_record

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = _state_bytes(learner.module.state_dict(), {"format": FORMAT, "learner": learner.name})
    atomic_write_bytes(out / WEIGHTS, data)
    spec = {k: v for k, v in learner.encoder.spec.items() if k != "pretrained"}
    record = {
        "format": FORMAT,
        "fewshot_version": __version__,
        "learner": learner.name,
        "learner_config": learner.cfg.to_dict(),
        "encoder_spec": spec,
        "encoder_prefix": _encoder_prefix(learner),
        "adapter": adapter_record(learner.encoder),
        "meta": learner.checkpoint_meta(),
        "weights_sha256": hashlib.sha256(data).hexdigest(),
        **(extra or {}),
    }
    atomic_write_text(out / LEARNER_JSON, json.dumps(record, indent=2, sort_keys=True) + "\n")
    cfg = dict(config_dict or {})
    cfg["fewshot_version"] = __version__
    atomic_write_text(out / "config.json", json.dumps(cfg, indent=2, sort_keys=True, default=str) + "\n")
    return out


def read_record(ckpt_dir: str | os.PathLike) -> dict:
    """``learner.json`` of a checkpoint folder, validated."""
    d = Path(ckpt_dir)
    if not d.is_dir():
        raise ValueError(f"checkpoint {str(d)!r} is not a folder; expected a folder written by `fewshot train`")
    path = d / LEARNER_JSON
    if not path.is_file():
        raise ValueError(f"checkpoint {d} has no {LEARNER_JSON}; expected a folder written by `fewshot train`")
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"checkpoint {path} is not valid JSON ({exc.msg}); the file is damaged") from exc
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        got = record.get("format") if isinstance(record, dict) else type(record).__name__
        raise ValueError(f"checkpoint {path}: expected format {FORMAT!r}, got {got!r}; "
                         "this is not a fewshot checkpoint")
    missing = [k for k in ("learner", "learner_config", "encoder_spec", "encoder_prefix", "weights_sha256")
               if k not in record]
    if missing:
        raise ValueError(f"checkpoint {path} lacks the keys {missing}; the file is damaged or foreign")
    return record


def _read_weights(ckpt_dir: Path, record: dict) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = ckpt_dir / WEIGHTS
    if not path.is_file():
        raise ValueError(f"checkpoint {ckpt_dir} has no {WEIGHTS}")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != record["weights_sha256"]:
        raise ValueError(
            f"checkpoint {path} ({len(data)} bytes) does not match the SHA-256 recorded in {LEARNER_JSON} "
            f"({record['weights_sha256'][:16]}..., got {digest[:16]}...); the file is truncated or was "
            "replaced: copy the whole folder again or retrain"
        )
    try:
        return load(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise ValueError(f"checkpoint {path} is not a readable safetensors file ({exc})") from exc


def _build_encoder(record: dict):
    from .adapters import restore_adapter
    from .encoders import ENCODERS, build_encoder, encoder_spec

    spec = dict(record["encoder_spec"])
    if spec.get("name") in ENCODERS and spec.get("kind") == "text":
        spec["path"] = encoder_spec(spec["name"])["path"]  # the package folder on this machine
    enc = build_encoder({**spec, "pretrained": False})  # weights come from the checkpoint
    enc.spec = {k: v for k, v in spec.items() if k != "pretrained"}
    restore_adapter(enc, record.get("adapter"))
    return enc


def _load_into(module: torch.nn.Module, state: dict, where: str) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"checkpoint weights do not fit the {where} they were saved from: {exc}") from exc


def load_encoder(ckpt_dir: str | os.PathLike):
    """The checkpoint's encoder (architecture from its spec, adapter re-attached, weights loaded)."""
    d = Path(ckpt_dir)
    record = read_record(d)
    state = _read_weights(d, record)
    enc = _build_encoder(record)
    prefix = record["encoder_prefix"]
    _load_into(enc, {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}, "encoder")
    enc.eval()
    return enc


def _merge_config(saved: dict, learner_cfg):
    """The saved learner config, with every field of ``learner_cfg`` that differs from its default."""
    from .learners import learner_config

    if learner_cfg is None or learner_cfg == learner_config(None):
        return learner_config(dict(saved))  # nothing asked for: the learner the checkpoint was trained as
    if learner_cfg.name != saved.get("name"):
        return learner_cfg
    default = type(learner_cfg)()
    merged = dict(saved)
    for key, value in learner_cfg.to_dict().items():
        if value != default.to_dict().get(key):
            merged[key] = value
    return learner_config(merged)


def load_learner(ckpt_dir: str | os.PathLike, learner_cfg=None):
    """The learner saved in ``ckpt_dir``.

    ``learner_cfg`` overrides the saved learner options it changes from their
    defaults (the all-default config, what ``fewshot run`` passes when no learner
    flag is given, means "as saved"); a different learner name keeps only the
    trained encoder (e.g. a protonet-trained encoder evaluated with finetune).
    """
    from .learners import create_learner

    d = Path(ckpt_dir)
    record = read_record(d)
    state = _read_weights(d, record)
    encoder = _build_encoder(record)
    cfg = _merge_config(record["learner_config"], learner_cfg)
    learner = create_learner(cfg.name, encoder, cfg)
    if cfg.name == record["learner"]:
        learner.restore_meta(record.get("meta") or {})
        _load_into(learner.module, state, f"{cfg.name} learner")
    else:
        prefix = record["encoder_prefix"]
        _load_into(encoder, {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}, "encoder")
    learner.module.eval()
    return learner


# --------------------------------------------------------------------------- resume state
def save_training_state(folder: str | os.PathLike, learner, optimizer: torch.optim.Optimizer,
                        state: dict) -> None:
    """Weights, AdamW moments and the JSON-able counters ``state``, for ``--resume``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"model/{k}": v for k, v in learner.module.state_dict().items()}
    opt = optimizer.state_dict()
    for idx, pstate in opt["state"].items():
        for key, value in pstate.items():
            t = value if isinstance(value, torch.Tensor) else torch.tensor(value)
            tensors[f"optim/{idx}/{key}"] = t
    tensors["rng/torch"] = torch.get_rng_state()
    data = _state_bytes(tensors, {"format": STATE_FORMAT})
    atomic_write_bytes(folder / "state.safetensors", data)
    meta = {"format": STATE_FORMAT, "counters": state, "param_groups": opt["param_groups"],
            "state_sha256": hashlib.sha256(data).hexdigest(), "learner_meta": learner.checkpoint_meta()}
    atomic_write_text(folder / "state.json", json.dumps(meta, indent=2, sort_keys=True) + "\n")


def load_training_state(folder: str | os.PathLike, learner, optimizer: torch.optim.Optimizer) -> dict:
    """Restore what :func:`save_training_state` wrote; returns the counters."""
    from safetensors.torch import load

    folder = Path(folder)
    meta = json.loads((folder / "state.json").read_text())
    if meta.get("format") != STATE_FORMAT:
        raise ValueError(f"{folder}/state.json: expected format {STATE_FORMAT!r}, got {meta.get('format')!r}")
    data = (folder / "state.safetensors").read_bytes()
    if hashlib.sha256(data).hexdigest() != meta["state_sha256"]:
        raise ValueError(f"{folder}/state.safetensors does not match state.json (truncated or replaced); "
                         "the run cannot resume: start again without --resume")
    tensors = load(data)
    learner.restore_meta(meta.get("learner_meta") or {})
    model = {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
    _load_into(learner.module, model, f"{learner.name} learner")
    opt_state: dict = {}
    for key, value in tensors.items():
        if key.startswith("optim/"):
            _, idx, name = key.split("/", 2)
            opt_state.setdefault(int(idx), {})[name] = value
    device = learner.device
    opt_state = {i: {k: (v.to(device) if k != "step" else v) for k, v in s.items()} for i, s in opt_state.items()}
    optimizer.load_state_dict({"state": opt_state, "param_groups": meta["param_groups"]})
    torch.set_rng_state(tensors["rng/torch"])
    return meta["counters"]
