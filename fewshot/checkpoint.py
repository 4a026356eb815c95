"""Checkpoints on disk: safetensors weights and JSON, never pickle.

A checkpoint folder written by :func:`save_checkpoint` is a
:class:`~fewshot.store.SupportStore`:

- ``manifest.json`` (the commit point) holds the learner record: format, learner
  name and config, the encoder spec (to rebuild the architecture without
  reloading pretrained weights), the adapter record (LoRA), the learner's own
  structural facts, and the SHA-256 of the weights;
- ``model-<generation>-<token>.safetensors``: ``learner.module.state_dict()``;
- ``config.json``: the resolved run config (sorted keys, ``fewshot_version``), a copy of the
  manifest's ``run_config``: it is written from the committed manifest, under the folder lock, right
  after the commit (and rewritten from it by the next save or load if a kill fell in between), so it
  never describes other weights than the committed ones.

Overwriting a checkpoint writes the new weights under a new name and then
replaces the manifest, so a process killed at any instant leaves the old
checkpoint or the new one, never a mix. ``last/`` (resume state: weights,
optimizer moments, counters) is written by :func:`save_training_state` the same way.

Folders of fewshot <= 0.x (``learner.json`` + ``model.safetensors``, or
``state.json`` + ``state.safetensors``) still load. :func:`load_learner` and
:func:`load_encoder` refuse a truncated, altered or foreign folder with a
message that says what is wrong.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from .atomic import atomic_write_text
from .store import MANIFEST, SupportStore

FORMAT = "fewshot-checkpoint/1"
STATE_FORMAT = "fewshot-train-state/1"
WEIGHTS_KEY = "model"  # the weights blob of a checkpoint or resume store
RECORD_KEYS = ("format", "learner", "learner_config", "encoder_spec", "encoder_prefix", "weights_sha256")
STATE_KEYS = ("format", "counters", "param_groups", "state_sha256")
WEIGHTS, LEARNER_JSON = "model.safetensors", "learner.json"  # the layout before manifests
STATE, STATE_JSON = "state.safetensors", "state.json"


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


def _checkpoint_store(folder: str | os.PathLike) -> SupportStore:
    return SupportStore(folder, required=RECORD_KEYS, remedy="copy the whole folder again or retrain")


def _state_store(folder: str | os.PathLike) -> SupportStore:
    return SupportStore(folder, required=STATE_KEYS, remedy="the run cannot resume: start again without --resume")


def check_out_folder(folder: str | os.PathLike, what: str = "the checkpoint folder") -> None:
    """Refuse, before any work or write, a folder that holds another kind of store than a checkpoint (a
    support index: manifest kind fewshot-classifier / fewshot-tagger): its files would be mixed with it."""
    store = SupportStore(folder)
    if not Path(folder).is_dir() or not store.exists():
        return
    body = store.read_manifest()["body"]
    if body.get("format") != FORMAT:
        held = (f"a support index (manifest kind {body['kind']!r})" if "kind" in body else
                f"another program's store (manifest format {body.get('format')!r})")
        raise ValueError(f"{what} {folder} holds {held}, not a `fewshot train` checkpoint; a checkpoint written "
                         "there would mix its files with it: choose another folder for --out")


def save_checkpoint(out_dir: str | os.PathLike, learner, config_dict: dict | None = None,
                    extra: dict | None = None) -> Path:
    """Write ``learner`` (weights, structure, config) to ``out_dir``; old or new survives any crash."""
    from . import __version__
    from .adapters import adapter_record

    out = Path(out_dir)
    data = _state_bytes(learner.module.state_dict(), {"format": FORMAT, "learner": learner.name})
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
    cfg = dict(config_dict or {})
    cfg["fewshot_version"] = __version__
    record["run_config"] = json.loads(json.dumps(cfg, default=str))  # committed with the weights
    store = _checkpoint_store(out)
    with store.lock():
        SupportStore.refuse_symlink(out / "config.json")  # refused before the commit, not after it
        store.write(record, {WEIGHTS_KEY: ("safetensors", data)})
        _publish_config(out, record)
    _remove_legacy(out, (LEARNER_JSON, WEIGHTS))
    return out


def _config_text(record: dict) -> str:
    return json.dumps(record["run_config"], indent=2, sort_keys=True, default=str) + "\n"


def _publish_config(folder: Path, record: dict) -> None:
    """Write ``config.json`` from the committed record ``record`` (folder lock held) unless it already says so."""
    path = folder / "config.json"
    SupportStore.refuse_symlink(path)
    text = _config_text(record)
    if not path.is_file() or path.read_text() != text:
        atomic_write_text(path, text)
    for tmp in folder.glob(".config.json.tmp-*"):  # atomic_write_text's temp file of a killed save
        if tmp.name[len(".config.json.tmp-"):].isdigit() and tmp.is_file() and not tmp.is_symlink():
            tmp.unlink(missing_ok=True)


def _repair_config(folder: Path, record: dict) -> None:
    """A kill between a checkpoint's commit and its config.json: rewrite config.json from the committed
    manifest (under the lock, re-read there); a folder this user cannot write is left as it is."""
    path = folder / "config.json"
    if "run_config" not in record or not (folder / MANIFEST).is_file() or path.is_symlink() or (path.is_file() and path.read_text() ==
                                                            _config_text(record)):
        return  # consistent, older than run_config, or a link the next save refuses
    if not os.access(folder, os.W_OK):
        return
    store = _checkpoint_store(folder)
    with store.lock():
        _publish_config(folder, store.read_manifest()["body"])


def _remove_legacy(folder: Path, names: tuple[str, ...]) -> None:
    """Delete the files of the pre-manifest layout once a manifest has replaced them."""
    for name in names:
        (folder / name).unlink(missing_ok=True)


def _read_folder(folder: Path, store, legacy_json: str, legacy_blob: str, sha_key: str,
                 with_data: bool) -> tuple[dict, bytes | None]:
    """(record, blob bytes) of a checkpoint or resume folder, new layout or legacy, checksum-verified."""
    if store.exists():
        if not with_data:
            return store.read_manifest()["body"], None
        record, blobs = store.read()
        return record, blobs[WEIGHTS_KEY]
    path = folder / legacy_json
    if not path.is_file():
        raise ValueError(f"{folder} has no {MANIFEST} (nor a {legacy_json} of older fewshot versions); "
                         "expected a folder written by `fewshot train`")
    try:
        record = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"checkpoint {path} is not valid JSON ({exc}); the file is damaged") from exc
    if not isinstance(record, dict) or sha_key not in record:
        raise ValueError(f"checkpoint {path} lacks the key {sha_key!r}; the file is damaged or foreign")
    if not with_data:
        return record, None
    blob = folder / legacy_blob
    if not blob.is_file():
        raise ValueError(f"checkpoint {folder} has no {legacy_blob}")
    data = blob.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != record[sha_key]:
        raise ValueError(
            f"checkpoint {blob} ({len(data)} bytes) does not match the SHA-256 recorded in {legacy_json} "
            f"({str(record[sha_key])[:16]}..., got {digest[:16]}...); the file is truncated or was "
            "replaced: copy the whole folder again or retrain"
        )
    return record, data


def _load_safetensors(data: bytes, where: str) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        return load(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{where} is not a readable safetensors file ({exc}); fewshot stores weights only as "
                         "safetensors: copy the folder again or retrain") from exc


def _checked_record(d: Path, with_data: bool) -> tuple[dict, bytes | None]:
    if not d.is_dir():
        raise ValueError(f"checkpoint {str(d)!r} is not a folder; expected a folder written by `fewshot train`")
    record, data = _read_folder(d, _checkpoint_store(d), LEARNER_JSON, WEIGHTS, "weights_sha256", with_data)
    if isinstance(record, dict) and record.get("format") == FORMAT:
        _repair_config(d, record)
    if record.get("format") != FORMAT:
        raise ValueError(f"checkpoint {d}: expected format {FORMAT!r}, got {record.get('format')!r}; "
                         "this is not a fewshot checkpoint")
    missing = [k for k in RECORD_KEYS if k not in record]
    if missing:
        raise ValueError(f"checkpoint {d} lacks the keys {missing}; the file is damaged or foreign")
    return record, data


def is_checkpoint(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds a checkpoint (either layout); :func:`read_record` validates it."""
    folder = Path(folder)
    return (folder / MANIFEST).is_file() or (folder / LEARNER_JSON).is_file()


def read_record(ckpt_dir: str | os.PathLike) -> dict:
    """The learner record of a checkpoint folder, validated (the weights are not read)."""
    return _checked_record(Path(ckpt_dir), with_data=False)[0]


def trained_classes(ckpt_dir: str | os.PathLike) -> tuple[str, ...]:
    """The class splits a checkpoint's run trained on, from its ``config.json``: ("train",), or
    ("train", "val") for a final model (``train.include_val``); ("train",) when the config is absent."""
    path = Path(ckpt_dir) / "config.json"
    record = read_record(ckpt_dir) if is_checkpoint(ckpt_dir) else {}
    cfg = record.get("run_config") or (json.loads(path.read_text()) if path.is_file() else {})
    return ("train", "val") if (cfg.get("train") or {}).get("include_val") else ("train",)


def check_scored_classes(ckpt_dir: str | os.PathLike, classes: str) -> None:
    """Refuse to score a final model (trained on the val classes too) on ``classes`` "val" or "all"."""
    if classes in ("val", "all") and "val" in trained_classes(ckpt_dir):
        raise ValueError(f"checkpoint {ckpt_dir} was trained on the val classes too (train.include_val), so "
                         f"--classes {classes} would score classes it learned; use --classes test, or the "
                         "validated run's checkpoint for val scores")


def _read_weights(ckpt_dir: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    record, data = _checked_record(ckpt_dir, with_data=True)
    return record, _load_safetensors(data, f"checkpoint {ckpt_dir}")


def _build_encoder(record: dict, options: dict | None = None):
    from .adapters import restore_adapter
    from .encoders import build_encoder, local_spec

    spec = local_spec({**record["encoder_spec"], **(options or {})})
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
    record, state = _read_weights(d)
    enc = _build_encoder(record)
    prefix = record["encoder_prefix"]
    _load_into(enc, {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}, "encoder")
    enc.eval()
    return enc


def _merge_config(saved: dict, learner_cfg):
    """The saved learner config, with every field of ``learner_cfg`` that differs from its default."""
    from .learners import learner_config

    if learner_cfg is None:
        return learner_config(dict(saved))  # nothing asked for: the learner the checkpoint was trained as
    if isinstance(learner_cfg, dict):  # exactly these keys, even at their defaults
        name = learner_cfg.get("name", saved.get("name"))
        return learner_config({**(saved if name == saved.get("name") else {}), **learner_cfg, "name": name})
    if learner_cfg.name != saved.get("name"):
        return learner_cfg
    default = type(learner_cfg)()
    merged = dict(saved)
    for key, value in learner_cfg.to_dict().items():
        if value != default.to_dict().get(key):
            merged[key] = value
    return learner_config(merged)


def load_learner(ckpt_dir: str | os.PathLike, learner_cfg=None, encoder_options: dict | None = None):
    """The learner saved in ``ckpt_dir``.

    ``learner_cfg`` overrides the saved learner options it changes from their
    defaults (None means "as saved": what ``fewshot run`` passes when no learner
    flag is given); a dict overrides exactly the keys it has, even at their
    defaults (``{"detector_lr": 0.01}``); a different learner name keeps only the trained encoder
    (e.g. a protonet-trained encoder evaluated with finetune, or the encoder of
    finetune's supervised pretraining scored with protonet).
    ``encoder_options`` override the saved encoder's options (e.g. ``invert`` to
    continue training on images of the other polarity); options that change the
    architecture make the weights fail to load, with an error naming them.
    """
    from .learners import create_learner

    d = Path(ckpt_dir)
    record, state = _read_weights(d)
    encoder = _build_encoder(record, encoder_options)
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
    """Weights, AdamW moments and the JSON-able counters ``state``, for ``--resume``; old or new survives a crash."""
    folder = Path(folder)
    tensors = {f"model/{k}": v for k, v in learner.module.state_dict().items()}
    opt = optimizer.state_dict()
    for idx, pstate in opt["state"].items():
        for key, value in pstate.items():
            t = value if isinstance(value, torch.Tensor) else torch.tensor(value)
            tensors[f"optim/{idx}/{key}"] = t
    tensors["rng/torch"] = torch.get_rng_state()
    data = _state_bytes(tensors, {"format": STATE_FORMAT})
    meta = {"format": STATE_FORMAT, "counters": state, "param_groups": opt["param_groups"],
            "state_sha256": hashlib.sha256(data).hexdigest(), "learner_meta": learner.checkpoint_meta()}
    _state_store(folder).write(meta, {WEIGHTS_KEY: ("safetensors", data)})
    _remove_legacy(folder, (STATE_JSON, STATE))


def has_training_state(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds resume state (either layout)."""
    folder = Path(folder)
    return _state_store(folder).exists() or (folder / STATE_JSON).is_file()


def load_training_state(folder: str | os.PathLike, learner, optimizer: torch.optim.Optimizer) -> dict:
    """Restore what :func:`save_training_state` wrote; returns the counters."""
    folder = Path(folder)
    meta, data = _read_folder(folder, _state_store(folder), STATE_JSON, STATE, "state_sha256", with_data=True)
    if meta.get("format") != STATE_FORMAT:
        raise ValueError(f"{folder}: expected resume state of format {STATE_FORMAT!r}, got {meta.get('format')!r}; "
                         "start again without --resume")
    tensors = _load_safetensors(data, f"resume state {folder}")
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
