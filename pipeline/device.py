"""Device, precision and numerics, resolved once (nanoGPT style); used by training, evaluation and colorize."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Literal

import torch

from pipeline.errors import AnimecolorError

Precision = Literal["auto", "fp32", "bf16"]


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """"auto" -> cuda when present else cpu; "cuda" without a GPU is a clear error."""
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise AnimecolorError("device cuda requested but no CUDA GPU is available (use --device cpu)")
        return torch.device("cuda", local_rank)
    if name not in ("auto", "cpu"):
        raise AnimecolorError(f"unknown device {name!r} (auto | cpu | cuda)")
    return torch.device("cpu")


def autocast(device: torch.device, precision: Precision):
    """bf16 autocast on CUDA when asked (or "auto"); full fp32 otherwise (CPU bf16 is slow here)."""
    if device.type == "cuda" and precision in ("bf16", "auto"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def configure_numerics() -> None:
    """TF32 matmuls on GPUs that have them (no effect on CPU). Called by the library entry points
    (training), so calling them from Python gives the same numerics as the CLI."""
    torch.set_float32_matmul_precision("high")
