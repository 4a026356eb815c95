"""Provenance: what a result needs to be reproduced (versions, git commit, machine).

Every benchmark report carries :func:`collect_provenance`'s dict, so a number
can be traced to the code, libraries and hardware that produced it.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def git_commit(root: str | os.PathLike = PROJECT_ROOT) -> dict:
    """``{"commit": sha or None, "dirty": bool or None}`` of the checkout at ``root``.

    ``None`` when ``root`` is not a git checkout (e.g. an installed wheel) or git is absent.
    """
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def library_versions() -> dict:
    """Versions of the libraries that decide the numbers (``None`` for one not installed)."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("torch", "transformers", "faiss-cpu", "numpy", "tokenizers", "safetensors"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_info(device: str = "auto") -> dict:
    """The device a run uses: its type and name, CPU model, thread count, GPU name if any."""
    import torch

    from .device import resolve_device

    dev = resolve_device(device)
    info = {"device": str(dev), "cpu": cpu_name(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "platform": platform.platform()}
    if dev.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(dev)
        info["cuda"] = torch.version.cuda
    return info


def collect_provenance(device: str = "auto") -> dict:
    """fewshot version, git commit, library versions and device, as one JSON-able dict."""
    from . import __version__

    return {"fewshot_version": __version__, "git": git_commit(), "libraries": library_versions(),
            "machine": device_info(device), "argv": list(sys.argv)}


def json_sha256(obj) -> str:
    """SHA-256 of ``obj`` as canonical JSON (sorted keys, no spaces): a stable config hash."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
