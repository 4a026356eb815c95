"""torch.distributed for training: the process group torchrun starts, the DDP wrap, and the collectives.

Training runs on one process, or on several launched by ``torchrun`` (WORLD_SIZE > 1): nccl on CUDA (each
process on GPU LOCAL_RANK), gloo on the CPU. :class:`ProcessGroup` is what a :class:`fewshot.training.Trainer`
knows of it: its rank and world size, and the three collectives it needs (gather to rank 0, broadcast from
rank 0, barrier), each a no-op on one process.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn


def init_distributed(device: str = "auto") -> tuple[int, int]:
    """Start torch.distributed when launched by torchrun (WORLD_SIZE > 1); returns (rank, world)."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and device != "cpu"
        if use_cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return dist.get_rank(), dist.get_world_size()


def shutdown() -> None:
    """End the process group :func:`init_distributed` started (nothing on one process)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@dataclass(frozen=True)
class ProcessGroup:
    """The current process's place in training: ``rank`` of ``world`` (``distributed`` when world > 1)."""

    distributed: bool
    rank: int
    world: int
    device: torch.device

    @classmethod
    def current(cls, device: torch.device) -> "ProcessGroup":
        import torch.distributed as dist

        on = dist.is_available() and dist.is_initialized()
        return cls(on, dist.get_rank() if on else 0, dist.get_world_size() if on else 1, device)

    def _backend_device(self) -> torch.device:
        import torch.distributed as dist

        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")

    def gather(self, values: list, dtype=torch.float64) -> list[list]:
        """Each rank's ``values`` (same length on every rank), in rank order."""
        t = torch.as_tensor(values, dtype=dtype)
        if not self.distributed:
            return [t.tolist()]
        import torch.distributed as dist

        t = t.to(self._backend_device())
        out = [torch.empty_like(t) for _ in range(self.world)]
        dist.all_gather(out, t)
        return [o.cpu().tolist() for o in out]

    def broadcast_flag(self, flag: bool) -> bool:
        """Rank 0's ``flag`` on every rank."""
        if not self.distributed:
            return flag
        import torch.distributed as dist

        t = torch.tensor([int(flag)], dtype=torch.int64, device=self._backend_device())
        dist.broadcast(t, src=0)
        return bool(t.item())

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()

    def wrap(self, module: nn.Module) -> nn.Module:
        """``module`` in DistributedDataParallel when distributed, else itself."""
        if not self.distributed:
            return module
        from torch.nn.parallel import DistributedDataParallel

        dev_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=dev_ids, find_unused_parameters=True)


def param_checksum(module: nn.Module) -> float:
    """A float64 fingerprint of every floating parameter and buffer (equal weights -> equal value)."""
    total = 0.0
    for i, (_, t) in enumerate(sorted(module.state_dict().items())):
        if t.is_floating_point():
            t = t.detach().double().cpu().flatten()
            w = torch.arange(1, t.numel() + 1, dtype=torch.float64).remainder_(7).add_(1 + i % 5)
            total += float((t * w).sum())
    return total
