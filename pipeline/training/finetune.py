"""Reconstruction fine-tuning: run the sampler with gradients, compare its output with the truth.

The paper's second phase. From a starting point x_T (the reference or the ground truth
forward-noised to t_start, or pure noise), `steps` DDIM steps are unrolled with gradients through
every U-Net call (with the sampling-time guidance scale), and the final sample is compared with
the ground truth. Each step's activations are recomputed in backward (gradient checkpointing),
so memory is that of one step. Third-party reruns found this raises PSNR but wrecks FID; the
`eps_weight` term keeps the ordinary denoising loss in the objective as a regulariser, and the
perceptual terms (L1, MS-SSIM, LPIPS) trade pixel fidelity against blur.

This module defines the objective and its configs; the loop is `training.loop.Trainer` with `init_from`.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn
from torch.utils.data import Dataset

from pipeline.config import Config
from pipeline.data.dataset import CaptionConfig
from pipeline.model.conditioning import ConditionDropout, guided
from pipeline.model.diffusion import Diffusion
from pipeline.model.perceptual import VGGLPIPS, ms_ssim
from pipeline.model.sampler import ddim_sample
from pipeline.training.loop import Batch, LoopConfig, Objective, denoising_objective


class FinetuneLoopConfig(LoopConfig):
    """The loop of the fine-tuning phase (params `finetune.loop`): the paper's batch 4 and a small lr."""

    train_steps: int = Field(64, ge=1, description="optimizer steps (when epochs is null)")
    epochs: float | None = Field(1.0, ge=0, description="epochs over finetune.subset images; 0: pass the "
                                                        "pretrained model through (the ablation's control; "
                                                        "official code: 10)")
    batch_size: int = Field(4, ge=1, description="images per step and process (paper: 4)")
    lr: float = Field(2e-5, gt=0, le=1.0, description="learning rate")
    warmup_steps: int = Field(0, ge=0, description="linear LR warm-up")
    checkpoint_every: int = Field(20, ge=1, description="optimizer steps between resume checkpoints")
    log_every: int = Field(5, ge=1, description="optimizer steps between dvclive log points")


class ReconstructionConfig(Config):
    """The unrolled sampler and the loss on its output (params `finetune.reconstruction`)."""

    unroll_steps: int = Field(10, ge=1, le=100, description="DDIM steps run with gradients (paper: 10)")
    start: Literal["reference", "target", "noise"] = Field("reference", description="what is forward-noised to "
                                                                                    "t_start (paper era: reference)")
    t_start: int = Field(999, ge=1, description="timestep the unrolled sampler starts from (paper era: ~900-999)")
    guidance: float = Field(1.0, ge=0, description="guidance scale used while unrolling")
    eta: float = Field(0.0, ge=0, le=1, description="DDIM eta while unrolling")
    grad_checkpoint: bool = Field(True, description="recompute each step in backward: memory of one step, not all")
    mse_weight: float = Field(1.0, ge=0, description="MSE of the final sample vs the ground truth (the paper's loss)")
    l1_weight: float = Field(0.0, ge=0, description="L1 term")
    ms_ssim_weight: float = Field(0.0, ge=0, description="1 - MS-SSIM term")
    lpips_weight: float = Field(0.0, ge=0, description="LPIPS-VGG term")
    eps_weight: float = Field(0.0, ge=0, description="ordinary denoising loss on a fresh (t, eps): a regulariser "
                                                     "against the FID damage")
    p_uncond: float = Field(0.1, ge=0, le=1, description="condition dropout inside the eps term")
    p_text: float = Field(0.5, ge=0, le=1, description="text models: share of samples unrolled with the empty "
                                                       "prompt (the rest with their caption), so both modes are tuned")

    @model_validator(mode="after")
    def _some_loss(self):
        if not any([self.mse_weight, self.l1_weight, self.ms_ssim_weight, self.lpips_weight, self.eps_weight]):
            raise ValueError("at least one loss weight must be > 0")
        return self


def reconstruction_objective(diffusion: Diffusion, cfg: ReconstructionConfig) -> Objective:
    lpips = VGGLPIPS() if cfg.lpips_weight else None
    denoise = denoising_objective(diffusion, ConditionDropout(p_uncond=cfg.p_uncond)) if cfg.eps_weight else None

    def objective(model: nn.Module, batch: Batch, generator: torch.Generator) -> tuple[torch.Tensor, dict]:
        x0, sketch, reference = batch["target"], batch["sketch"], batch["reference"]
        t_start = diffusion.T - 1 if cfg.start == "noise" else cfg.t_start
        eps = torch.randn(x0.shape, generator=generator).to(x0.device, x0.dtype)
        if cfg.start == "noise":
            x_T = eps
        else:
            source = reference if cfg.start == "reference" else x0
            x_T = diffusion.q_sample(source, torch.full((x0.shape[0],), t_start, device=x0.device), eps)
        text = batch.get("text")  # text models: the caption, or the empty prompt at p_text (the dataset)
        out = ddim_sample(guided(model, sketch, reference, cfg.guidance, text), diffusion, x_T, cfg.unroll_steps,
                          eta=cfg.eta, generator=generator, t_start=t_start, clip_x0=True,
                          checkpoint=cfg.grad_checkpoint).float()
        target = x0.float()
        terms = {"mse": F.mse_loss(out, target)}
        if cfg.l1_weight:
            terms["l1"] = F.l1_loss(out, target)
        if cfg.ms_ssim_weight:
            terms["ms_ssim"] = 1 - ms_ssim((out + 1) / 2, (target + 1) / 2).mean()
        if lpips is not None:
            lpips.to(out.device)
            terms["lpips"] = lpips.distance(out, target).mean()
        if denoise is not None:
            terms["eps"] = denoise(model, batch, generator)[0]
        weights = {"mse": cfg.mse_weight, "l1": cfg.l1_weight, "ms_ssim": cfg.ms_ssim_weight,
                   "lpips": cfg.lpips_weight, "eps": cfg.eps_weight}
        loss = sum(weights[k] * v for k, v in terms.items())
        return loss, {f"loss_{k}": v.detach() for k, v in terms.items()}  # converted at log points only

    return objective


def finetune_captions(init: dict, p_empty: float) -> tuple[CaptionConfig | None, tuple[str, ...] | None]:
    """(caption settings, colour words) for fine-tuning the checkpoint `init`: a text model keeps the
    caption settings it was pretrained with, the empty prompt at `p_empty`, and its own vocabulary;
    (None, None) for a model without text."""
    if not init["unet"].get("text"):
        return None, None
    pretrained = CaptionConfig.model_validate(init.get("meta", {}).get("params", {}).get("captions", {}))
    return pretrained.model_copy(update={"p_empty": p_empty}), tuple(init["unet"]["vocabulary"])


@torch.no_grad()
def reconstruction_loss(model: nn.Module, diffusion: Diffusion, dataset: Dataset, cfg: ReconstructionConfig,
                        batch_size: int, seed: int, device: torch.device) -> float:
    """The objective on the first `batch_size` training images, without training: what fine-tuning
    with epochs 0 (the pass-through control) reports as its loss."""
    n = min(batch_size, len(dataset))
    samples = [dataset[(i, seed + i)] for i in range(n)]
    batch = {k: torch.stack([s[k] for s in samples]).to(device) for k in ("sketch", "reference", "target", "text")
             if k in samples[0]}
    loss, _ = reconstruction_objective(diffusion, cfg)(model.to(device), batch, torch.Generator().manual_seed(seed))
    return float(loss)
