"""Device, precision and process-group setup, resolved once in the stage (nanoGPT style)."""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist

from pipeline.errors import AnimecolorError


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """"auto" -> cuda when present else cpu; "cuda" without a GPU is a clear error."""
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise AnimecolorError("device cuda requested but no CUDA GPU is available (use --device cpu)")
        return torch.device("cuda", local_rank)
    if name not in ("auto", "cpu"):
        raise AnimecolorError(f"unknown device {name!r} (auto | cpu | cuda)")
    return torch.device("cpu")


def autocast(device: torch.device, precision: str):
    """bf16 autocast on CUDA when asked (or "auto"); full fp32 otherwise (CPU bf16 is slow here)."""
    if device.type == "cuda" and precision in ("bf16", "auto"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_name: str) -> tuple[Dist, torch.device]:
    """Join the torchrun process group when WORLD_SIZE > 1 (nccl on GPUs, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(), resolve_device(device_name)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return Dist(dist.get_rank(), world, local), device


def close_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
