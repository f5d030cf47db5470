"""Samples grids during and after training: the first test pairs coloured by the EMA model."""

from __future__ import annotations

from pathlib import Path

import torch
from pydantic import Field
from torch import nn

from pipeline.config import Config
from pipeline.data.benchmark import load_benchmark
from pipeline.data.dataset import to_uint8
from pipeline.data.imageio import write_png
from pipeline.device import Precision, autocast
from pipeline.model.diffusion import Diffusion
from pipeline.model.generate import colorize_batch
from pipeline.report import contact_sheet


class SampleGridConfig(Config):
    """The samples grid a training stage writes (params `<stage>.samples`)."""

    every: int = Field(0, ge=0, description="also write a grid every N optimizer steps (0: only at the end)")
    sample_steps: int = Field(10, ge=1, le=1000, description="DDIM steps per grid image (evaluate's 10)")
    guidance: float = Field(1.0, ge=0, description="classifier-free guidance scale on the reference")
    count: int = Field(8, ge=1, le=64, description="test pairs on the grid (columns)")


@torch.no_grad()
def samples_grid(model: nn.Module, diffusion: Diffusion, faces: Path, pairs: Path, path: Path, cfg: SampleGridConfig,
                 seed: int, device: torch.device, precision: Precision = "auto") -> None:
    """Rows: sketch | self-reference | output | random reference | output | target, one column per test face."""
    rows = []
    was_training = model.training
    model.eval()
    for setting in ("self_ref", "random_ref"):
        _, data = load_benchmark(faces, pairs, setting, limit=cfg.count)
        data = {k: v.to(device) for k, v in data.items()}
        out = colorize_batch(model, diffusion, data["sketch"], data["reference"], sample_steps=cfg.sample_steps,
                             guidance=cfg.guidance, seed=seed, autocast=autocast(device, precision))
        if setting == "self_ref":
            rows.append([to_uint8(s) for s in data["sketch"]])
        rows += [[to_uint8(r) for r in data["reference"]], [to_uint8(o) for o in out]]
    rows.append([to_uint8(t) for t in data["target"]])
    model.train(was_training)
    tiles = [im if im.ndim == 3 else im[..., None].repeat(3, -1) for row in rows for im in row]
    write_png(path, contact_sheet(tiles, ncol=len(rows[0])))
