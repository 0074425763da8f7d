"""Where a training process runs: its device (``runtime.resolve_device``) and ``torch.distributed`` under ``torchrun``.

``torchrun --nproc_per_node=N`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; ``init_runtime`` reads them,
starts the process group (nccl on CUDA, gloo on CPU) and pins each rank to its GPU. Without those variables
it is a single process. Only rank 0 logs, writes TensorBoard, checkpoints and final weights.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..runtime import resolve_device


@dataclass(frozen=True)
class Runtime:
    """The device and the process's place in the (possibly one-process) job."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_runtime(device: str | torch.device = "auto") -> Runtime:
    """Pick the device and, under ``torchrun`` (``WORLD_SIZE`` > 1), join the process group (idempotent)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    chosen = resolve_device(device, local_rank)
    if world_size > 1:
        if chosen.type == "cuda":
            torch.cuda.set_device(chosen)
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if chosen.type == "cuda" else "gloo")
    return Runtime(device=chosen, rank=rank, world_size=world_size, local_rank=local_rank)


def barrier(runtime: Runtime) -> None:
    """Wait for every rank (no-op in a single process)."""
    if runtime.distributed and dist.is_initialized():
        if runtime.device.type == "cuda":
            dist.barrier(device_ids=[runtime.device.index])
        else:
            dist.barrier()


def shutdown_runtime() -> None:
    """Leave the process group, if one was started (call once, at the end of a command)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
