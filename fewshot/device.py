"""Device choice and mixed precision: CUDA with bf16 autocast when present, else CPU."""
from __future__ import annotations

import contextlib

import torch


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` -> cuda if available else cpu; ``"cuda"`` without a GPU is an error."""
    if isinstance(device, torch.device):
        return device
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu or auto")
    if not (device == "cpu" or device.startswith("cuda")):
        raise ValueError(f"--device must be auto, cpu or cuda[:N], got {device!r}")
    return torch.device(device)


def autocast(device: torch.device):
    """bf16 autocast on CUDA; a no-op on the CPU (fp32 there is both faster and exact)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def resident_budget(device: torch.device) -> int:
    """Bytes a training split's preprocessed inputs may take to stay resident on ``device``.

    CUDA: half the free memory (the model, activations and optimizer need the rest);
    CPU: a quarter of the available physical memory.
    """
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free // 2
    import os

    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 4
    except (ValueError, OSError, AttributeError):
        return 1 << 30


def set_threads(n: int) -> None:
    """Use ``n`` CPU threads for torch (intra-op) and, when it is installed, faiss (OpenMP)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"threads must be a positive int, got {n!r}; pass e.g. --threads 1")
    torch.set_num_threads(n)
    try:
        import faiss
    except ImportError:  # the GPU machine has no faiss; nothing to set there
        return
    faiss.omp_set_num_threads(n)
