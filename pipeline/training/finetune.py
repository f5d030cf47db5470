"""Reconstruction fine-tuning: run the sampler with gradients, compare its output with the truth.

The paper's second phase. From a starting point x_T (the reference or the ground truth
forward-noised to t_start, or pure noise), `steps` DDIM steps are unrolled with gradients through
every U-Net call (with the sampling-time guidance scale), and the final sample is compared with
the ground truth. Each step's activations are recomputed in backward (gradient checkpointing),
so memory is that of one step. Third-party reruns found this raises PSNR but wrecks FID; the
`eps_weight` term keeps the ordinary denoising loss in the objective as a regulariser, and the
perceptual terms (L1, MS-SSIM, LPIPS) trade pixel fidelity against blur.

This module only defines the objective; the loop is `training.loop.Trainer` with `init_from`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.model.conditioning import drop_conditions, guided
from pipeline.model.diffusion import Diffusion
from pipeline.model.sampler import ddim_sample
from pipeline.training.loop import Batch, Objective, denoising_objective


@dataclass(frozen=True)
class ReconstructionConfig:
    steps: int = 10                  # unrolled DDIM steps (paper: 10)
    start: Literal["reference", "target", "noise"] = "reference"  # what is forward-noised to t_start
    t_start: int = 999               # paper era: ~900-999
    guidance: float = 1.0
    eta: float = 0.0
    checkpoint: bool = True          # gradient checkpointing per sampler step
    mse_weight: float = 1.0          # the paper's loss
    l1_weight: float = 0.0
    ms_ssim_weight: float = 0.0
    lpips_weight: float = 0.0
    eps_weight: float = 0.0          # ordinary denoising loss on a fresh (t, eps): keeps the score model honest
    p_uncond: float = 0.1            # condition dropout inside the eps term (keeps guidance meaningful)


def reconstruction_objective(diffusion: Diffusion, cfg: ReconstructionConfig) -> Objective:
    lpips = None
    if cfg.lpips_weight:
        from pipeline.evaluation.features import VGGLPIPS  # the evaluate stage's offline LPIPS

        lpips = VGGLPIPS()
    denoise = denoising_objective(diffusion, cfg.p_uncond, 0.0) if cfg.eps_weight else None

    def objective(model: nn.Module, batch: Batch, generator: torch.Generator) -> tuple[torch.Tensor, dict]:
        x0, sketch, reference = batch["target"], batch["sketch"], batch["reference"]
        t_start = diffusion.T - 1 if cfg.start == "noise" else cfg.t_start
        eps = torch.randn(x0.shape, generator=generator).to(x0.device, x0.dtype)
        if cfg.start == "noise":
            x_T = eps
        else:
            source = reference if cfg.start == "reference" else x0
            x_T = diffusion.q_sample(source, torch.full((x0.shape[0],), t_start, device=x0.device), eps)
        out = ddim_sample(guided(model, sketch, reference, cfg.guidance), diffusion, x_T, cfg.steps, eta=cfg.eta,
                          generator=generator, t_start=t_start, clip_x0=True, checkpoint=cfg.checkpoint).float()
        target = x0.float()
        terms = {"mse": F.mse_loss(out, target)}
        if cfg.l1_weight:
            terms["l1"] = F.l1_loss(out, target)
        if cfg.ms_ssim_weight:
            from pipeline.evaluation.metrics import ms_ssim

            terms["ms_ssim"] = 1 - ms_ssim((out + 1) / 2, (target + 1) / 2).mean()
        if lpips is not None:
            lpips.to(out.device)
            terms["lpips"] = lpips.distance(out, target).mean()
        if denoise is not None:
            terms["eps"] = denoise(model, batch, generator)[0]
        weights = {"mse": cfg.mse_weight, "l1": cfg.l1_weight, "ms_ssim": cfg.ms_ssim_weight,
                   "lpips": cfg.lpips_weight, "eps": cfg.eps_weight}
        loss = sum(weights[k] * v for k, v in terms.items())
        return loss, {f"loss_{k}": float(v.detach()) for k, v in terms.items()}

    return objective

