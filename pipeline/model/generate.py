"""Colourise a batch: guided model + DDIM, seeded. Shared by training samples, evaluation and `colorize`."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from typing import Callable

import torch
from torch import nn

from pipeline.model.conditioning import guided
from pipeline.model.defaults import SAMPLING
from pipeline.model.diffusion import Diffusion
from pipeline.model.sampler import ddim_sample, noise
from pipeline.rng import step_seed

STEP_NOISE_STREAM = 1  # step_seed(seed, index, STEP_NOISE_STREAM) seeds the eta > 0 noise of one image


def image_generators(seed: int, index: int) -> tuple[torch.Generator, torch.Generator]:
    """(x_T generator, per-step noise generator) of image `index` under `seed`: two independent streams."""
    start = torch.Generator().manual_seed(seed * 1_000_003 + index)
    steps = torch.Generator().manual_seed(step_seed(seed, index, STEP_NOISE_STREAM))
    return start, steps


@torch.no_grad()
def colorize_batch(model: nn.Module, diffusion: Diffusion, sketch: torch.Tensor, reference: torch.Tensor,
                   sample_steps: int = SAMPLING.sample_steps, guidance: float = SAMPLING.guidance,
                   eta: float = SAMPLING.eta, seed: int = SAMPLING.seed,
                   batch_size: int = 32, autocast=None, progress: Callable[[int], None] | None = None,
                   seeds: Sequence[int] | None = None,
                   step_progress: Callable[[int], None] | None = None, text: torch.Tensor | None = None,
                   text_guidance: float = SAMPLING.text_guidance) -> torch.Tensor:
    """sketch (N, 1, H, W), reference (N, 3, H, W) in [-1, 1] on the model's device -> (N, 3, H, W) in [-1, 1].

    Image i's random draws (its starting noise x_T and, for eta > 0, each step's noise) depend
    only on (seed, i), so results do not change with the batch size and the same seed gives the
    same picture on CPU and GPU (up to float rounding). `seeds` gives each image its own seed
    instead (as image 0 of that seed: variation k equals a single run with seed seeds[k]).
    `progress(n)` advances per finished image, `step_progress(1)` per DDIM step of each chunk.
    `text` (N, slots, 4): encoded prompts for a text model (`data/prompt.encode`), guided by
    `text_guidance` (`conditioning.guided`); None: the empty prompt.
    """
    n = sketch.shape[0]
    if seeds is not None and len(seeds) != n:
        raise ValueError(f"{len(seeds)} seeds for {n} images")
    keys = [(s, 0) for s in seeds] if seeds is not None else [(seed, i) for i in range(n)]
    outs = []
    for start in range(0, n, batch_size):
        s, r = sketch[start:start + batch_size], reference[start:start + batch_size]
        streams = [image_generators(*key) for key in keys[start:start + s.shape[0]]]
        x_T = noise((s.shape[0], 3, *s.shape[-2:]), [g for g, _ in streams], s.device)
        p = None if text is None else text[start:start + batch_size].to(s.device)
        fn = guided(model, s, r, guidance, p, text_guidance)
        with autocast if autocast is not None else nullcontext():
            out = ddim_sample(fn, diffusion, x_T, sample_steps, eta=eta, generator=[g for _, g in streams],
                              progress=step_progress)
        outs.append(out.float().clamp(-1, 1))
        if progress:
            progress(s.shape[0])
    return torch.cat(outs)
