"""Colourise a batch: guided model + DDIM, seeded. Shared by training samples, evaluation and `colorize`."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from pipeline.model.conditioning import guided
from pipeline.model.diffusion import Diffusion
from pipeline.model.sampler import ddim_sample, noise


@torch.no_grad()
def colorize_batch(model: nn.Module, diffusion: Diffusion, sketch: torch.Tensor, reference: torch.Tensor,
                   steps: int = 20, guidance: float = 1.0, eta: float = 0.0, seed: int = 0,
                   batch_size: int = 32, autocast=None, progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """sketch (N, 1, H, W), reference (N, 3, H, W) in [-1, 1] on the model's device -> (N, 3, H, W) in [-1, 1].

    The starting noise of image i depends only on (seed, i), so results do not change with the
    batch size and the same seed gives the same picture on CPU and GPU (up to float rounding).
    """
    outs = []
    n = sketch.shape[0]
    for start in range(0, n, batch_size):
        s, r = sketch[start:start + batch_size], reference[start:start + batch_size]
        x_T = torch.cat([noise((1, 3, *s.shape[-2:]), torch.Generator().manual_seed(seed * 1_000_003 + start + i),
                               s.device) for i in range(s.shape[0])])
        gen = torch.Generator().manual_seed(seed + start)
        fn = guided(model, s, r, guidance)
        with autocast if autocast is not None else torch.autocast("cpu", enabled=False):
            out = ddim_sample(fn, diffusion, x_T, steps, eta=eta, generator=gen)
        outs.append(out.float().clamp(-1, 1))
        if progress:
            progress(s.shape[0])
    return torch.cat(outs)
