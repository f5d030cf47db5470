"""Samplers: DDIM (Song et al. 2021) with trailing timestep spacing, and DDPM ancestral sampling.

Notation (as in `diffusion.py`):
    t, t_prev       current and next (smaller) timestep; t_prev = -1 means "done" (alpha_bar = 1)
    a_t, a_prev     alpha_bar_t, alpha_bar_{t_prev}
    x0_hat, eps_hat the model's estimates of x0 and eps at (x_t, t)
    sigma_t         DDIM noise scale, eta * sqrt((1 - a_prev)/(1 - a_t)) * sqrt(1 - a_t/a_prev)  (eq. 16)

Samplers take a plain callable model_fn(x_t, t) -> prediction and know nothing of guidance or
conditioning (wrap the model with `conditioning.guided`). All randomness is drawn from a CPU
`torch.Generator` and moved to the device, so a seed gives the same picture on CPU and GPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Callable

import numpy as np
import torch
from torch.utils.checkpoint import checkpoint as grad_checkpoint

from pipeline.model.diffusion import Diffusion, ModelFn


def ddim_timesteps(T: int, steps: int, t_start: int | None = None) -> list[int]:
    """Trailing spacing (Lin et al. 2024, "Common diffusion noise schedules are flawed", Table 2):
    the first step is t_start (default T - 1, the pure-noise end), the last is about t_start/steps.
    T=1000, steps=10 -> [999, 899, ..., 99]. (The official code starts at 901, which never
    sees the noisiest inputs it was trained on.) Always `steps` entries, strictly decreasing, >= 0:
    step i is round((t_start + 1) (steps - i) / steps) - 1, computed without accumulating a float
    stride (np.arange with a float step gave steps + 1 entries ending in -1 for e.g. 61)."""
    t_start = T - 1 if t_start is None else t_start
    if not 1 <= steps <= t_start + 1:
        raise ValueError(f"steps must be in [1, {t_start + 1}] (got {steps})")
    span = t_start + 1
    # floor(x + 1/2) rather than round-half-to-even: monotone, so spacing >= 1 keeps entries distinct
    return [int(np.floor(span * (steps - i) / steps + 0.5)) - 1 for i in range(steps)]


Generators = torch.Generator | Sequence[torch.Generator] | None


def noise(shape: tuple[int, ...], generator: Generators, device: torch.device | str = "cpu",
          dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Unit Gaussian noise drawn on CPU generator(s), then moved to `device`.

    `generator` is one generator for the whole tensor, or one per row (shape[0] of them), so that
    row i's noise depends only on its own stream (batch-size independent sampling)."""
    if generator is None or isinstance(generator, torch.Generator):
        out = torch.randn(shape, generator=generator, dtype=torch.float32)
    else:
        if len(generator) != shape[0]:
            raise ValueError(f"{len(generator)} generators for {shape[0]} rows")
        out = torch.cat([torch.randn((1, *shape[1:]), generator=g, dtype=torch.float32) for g in generator])
    return out.to(device=device, dtype=dtype)


def _one_pass(model_fn: ModelFn, diffusion: Diffusion, x_T: torch.Tensor, clip_x0: bool) -> torch.Tensor:
    """Both samplers under the regression objective: `Diffusion.regress`, clipped like their x0."""
    x0 = diffusion.regress(model_fn, x_T).float()
    return x0.clamp(-1, 1) if clip_x0 else x0


def ddim_sample(model_fn: ModelFn, diffusion: Diffusion, x_T: torch.Tensor, steps: int, eta: float = 0.0,
                generator: Generators = None, t_start: int | None = None, clip_x0: bool = True,
                checkpoint: bool = False, progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """Run DDIM from x_T at t_start down to x0; returns x0 (B, 3, H, W).

    Differentiable: with gradients enabled, every model call is in the graph (fine-tuning);
    `checkpoint=True` recomputes each step's activations in backward, so memory stays that of
    one step instead of `steps`. The regression objective (`Diffusion.regress`): one forward pass,
    x_T, `steps`, eta and t_start unused.
    """
    if diffusion.regression:
        if progress:
            progress(steps)  # progress bars count `steps` per call
        return _one_pass(model_fn, diffusion, x_T, clip_x0)
    x = x_T
    ts = ddim_timesteps(diffusion.T, steps, t_start)
    for i, t_now in enumerate(ts):
        t_prev = ts[i + 1] if i + 1 < len(ts) else -1
        t = torch.full((x.shape[0],), t_now, device=x.device, dtype=torch.long)
        # 1. model prediction -> x0_hat, eps_hat
        if checkpoint and torch.is_grad_enabled():
            prediction = grad_checkpoint(model_fn, x, t, use_reentrant=False)
        else:
            prediction = model_fn(x, t)
        x0_hat, eps_hat = diffusion.to_x0_eps(prediction.float(), x.float(), t)
        a_t = diffusion.alpha_bar_at(t, x0_hat)
        # 2. clip x0_hat to the data range and make eps_hat consistent with it
        if clip_x0:
            x0_hat = x0_hat.clamp(-1, 1)
            eps_hat = (x.float() - a_t.sqrt() * x0_hat) / (1 - a_t).sqrt()
        if t_prev < 0:
            x = x0_hat
            break
        a_prev = diffusion.alpha_bar_at(torch.full_like(t, t_prev), x0_hat)
        # 3. eq. 12: x_{t_prev} = sqrt(a_prev) x0_hat + sqrt(1 - a_prev - sigma^2) eps_hat + sigma z
        sigma = eta * ((1 - a_prev) / (1 - a_t)).sqrt() * (1 - a_t / a_prev).sqrt()
        x = a_prev.sqrt() * x0_hat + (1 - a_prev - sigma**2).clamp(min=0).sqrt() * eps_hat
        if eta > 0:
            x = x + sigma * noise(tuple(x.shape), generator, x.device)
        if progress:
            progress(1)
    if progress:
        progress(1)
    return x


@torch.no_grad()
def ddpm_sample(model_fn: ModelFn, diffusion: Diffusion, x_T: torch.Tensor, generator: Generators = None,
                clip_x0: bool = True) -> torch.Tensor:
    """Full ancestral sampling over all T steps (Ho et al. 2020, Algorithm 2 with the posterior mean
    written through x0_hat, eq. 7); the slow reference against which DDIM is judged. The regression
    objective: its one forward pass."""
    if diffusion.regression:
        return _one_pass(model_fn, diffusion, x_T, clip_x0)
    x = x_T
    betas, alpha_bar = diffusion.betas.to(x.device), diffusion.alpha_bar.to(x.device)
    for t_now in range(diffusion.T - 1, -1, -1):
        t = torch.full((x.shape[0],), t_now, device=x.device, dtype=torch.long)
        x0_hat, _ = diffusion.to_x0_eps(model_fn(x, t).float(), x.float(), t)
        if clip_x0:
            x0_hat = x0_hat.clamp(-1, 1)
        a_t = alpha_bar[t_now]
        a_prev = alpha_bar[t_now - 1] if t_now > 0 else torch.ones_like(a_t)
        beta = betas[t_now]
        mean = (a_prev.sqrt() * beta / (1 - a_t)) * x0_hat + ((1 - beta).sqrt() * (1 - a_prev) / (1 - a_t)) * x
        if t_now == 0:
            return mean
        var = beta * (1 - a_prev) / (1 - a_t)
        x = mean + var.sqrt() * noise(tuple(x.shape), generator, x.device)
    return x
