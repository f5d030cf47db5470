"""The torchrun process group: which process this is, and joining / leaving the group.

The stage reads torchrun's environment (WORLD_SIZE, LOCAL_RANK) and passes the numbers in."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

from pipeline.device import resolve_device


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_name: str, world_size: int = 1, local_rank: int = 0) -> tuple[Dist, torch.device]:
    """Join the process group when world_size > 1 (nccl on GPUs, gloo on CPU)."""
    if world_size <= 1:
        return Dist(), resolve_device(device_name)
    device = resolve_device(device_name, local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return Dist(dist.get_rank(), world_size, local_rank), device


def close_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
