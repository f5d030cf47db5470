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
from kornia.color import rgb_to_lab
from pydantic import Field, model_validator
from torch import nn
from torch.utils.data import Dataset

from pipeline.config import Config
from pipeline.data.dataset import CaptionConfig
from pipeline.data.labels import COLOUR_REGIONS
from pipeline.model.conditioning import ConditionDropout, guided
from pipeline.model.diffusion import Diffusion
from pipeline.model.perceptual import VGGLPIPS, ms_ssim
from pipeline.model.sampler import ddim_sample
from pipeline.training.loop import Batch, LoopConfig, Objective, denoising_objective


COLOUR_REGION_IDS = tuple(COLOUR_REGIONS.values())  # the regions the colour term scores (the benchmark's)


class FinetuneLoopConfig(LoopConfig):
    """The loop of the fine-tuning phase (params `finetune.loop`): the paper's batch 4 and a small lr."""

    train_steps: int = Field(64, ge=1, description="optimizer steps (when epochs is null)")
    epochs: float | None = Field(1.0, ge=0, description="epochs over the subset; 0: pass "
                                                        "the pretrained model through")
    batch_size: int = Field(4, ge=1, description="images per step and process (paper: 4)")
    lr: float = Field(2e-5, gt=0, le=1.0, description="learning rate")
    warmup_steps: int = Field(0, ge=0, description="linear LR warm-up")
    checkpoint_every: int = Field(20, ge=1, description="optimizer steps between resume checkpoints")
    log_every: int = Field(5, ge=1, description="optimizer steps between dvclive log points")


class ReconstructionConfig(Config):
    """The unrolled sampler and the loss on its output (params `finetune.reconstruction`)."""

    unroll_steps: int = Field(10, ge=1, le=100, description="DDIM steps run with gradients (paper: 10)")
    start: Literal["reference", "target", "noise"] = Field("reference", description="what is forward-noised to "
                                                                                    "t_start (paper: reference)")
    t_start: int = Field(999, ge=1, description="timestep the unrolled sampler starts from (paper: ~900-999)")
    guidance: float = Field(1.0, ge=0, description="guidance scale used while unrolling")
    eta: float = Field(0.0, ge=0, le=1, description="DDIM eta while unrolling")
    grad_checkpoint: bool = Field(True, description="recompute each step in backward: memory of one step, not all")
    mse_weight: float = Field(1.0, ge=0, description="MSE of the final sample vs the ground truth (the paper's loss)")
    l1_weight: float = Field(0.0, ge=0, description="L1 term")
    ms_ssim_weight: float = Field(0.0, ge=0, description="1 - MS-SSIM term")
    lpips_weight: float = Field(0.0, ge=0, description="LPIPS-VGG term")
    eps_weight: float = Field(0.0, ge=0, description="plain denoising loss on a fresh "
                                                     "(t, eps), a regulariser; 0: off")
    p_uncond: float = Field(0.1, ge=0, le=1, description="condition dropout inside the eps term")
    p_text: float = Field(0.5, ge=0, le=1, description="text models: share of samples unrolled with the empty prompt")
    colour_weight: float = Field(0.0, ge=0, description="CIELAB distance / 100 of region mean "
                                                        "colours to the reference's; 0: off")
    swd_weight: float = Field(0.0, ge=0, description="sliced Wasserstein distance / 100 of CIELAB colours; 0: off")
    p_random: float = Field(0.0, ge=0, le=1, description="share unrolled with another face's "
                                                         "reference (colour terms only)")

    @model_validator(mode="after")
    def _some_loss(self):
        if not any([self.mse_weight, self.l1_weight, self.ms_ssim_weight, self.lpips_weight, self.eps_weight,
                    self.colour_weight, self.swd_weight]):
            raise ValueError("at least one loss weight must be > 0")
        if self.p_random and not (self.colour_weight or self.swd_weight):
            raise ValueError("p_random: samples with another face's reference are scored by the colour terms alone: "
                             "set colour_weight or swd_weight")
        return self


SWD_PROJECTIONS = 32  # directions of colour_distribution_loss: a fixed set, so the loss is a function of its inputs


def colour_distribution_loss(output: torch.Tensor, target: torch.Tensor, projections: int = SWD_PROJECTIONS) -> torch.Tensor:
    """Mean over images of the sliced Wasserstein-1 distance / 100 between the CIELAB colours of the
    pixels of `output` and of `target` (B, 3, H, W in [-1, 1]): both pixel sets projected on fixed
    random unit directions of Lab, sorted, and compared rank by rank. Zero exactly when the two
    images hold the same colours in any arrangement; needs no label map (real faces)."""
    lab_out, lab_target = (rgb_to_lab(((x.float() + 1) / 2).clamp(0, 1)).flatten(2) for x in (output, target))
    directions = F.normalize(torch.randn(3, projections, generator=torch.Generator().manual_seed(0)), dim=0)
    directions = directions.to(lab_out.device)
    a = torch.einsum("bcn,ck->bkn", lab_out, directions).sort(-1).values
    b = torch.einsum("bcn,ck->bkn", lab_target, directions).sort(-1).values
    return (a - b).abs().mean() / 100.0


def region_colour_loss(output: torch.Tensor, label: torch.Tensor, reference: torch.Tensor,
                       reference_label: torch.Tensor, regions: tuple[int, ...]) -> torch.Tensor:
    """Mean over (sample, region) of the CIELAB distance / 100 between the output's mean colour in
    its drawing's region (label) and the reference's in its own (reference_label); images (B, 3,
    H, W) in [-1, 1], labels (B, H, W). Pairs where either side lacks the region are skipped; an
    iris weighs as much as the hair. 0 if nothing to score. Differentiable in `output` (zero gradients
    when nothing is scored)."""
    lab_out = rgb_to_lab(((output.float() + 1) / 2).clamp(0, 1))
    lab_ref = rgb_to_lab(((reference.float() + 1) / 2).clamp(0, 1))
    # zero, but on the output's graph: a batch with nothing to score (every sample unrolled with another
    # face's reference, none sharing a region with it: detected eye labels) still backpropagates (zeros)
    total, count = lab_out.sum() * 0.0, 0
    for region in regions:
        m_out, m_ref = (label == region).float()[:, None], (reference_label == region).float()[:, None]
        n_out, n_ref = m_out.sum((1, 2, 3)), m_ref.sum((1, 2, 3))
        both = (n_out > 0) & (n_ref > 0)
        if both.any():
            mean_out = (lab_out * m_out).sum((2, 3))[both] / n_out[both, None]
            mean_ref = (lab_ref * m_ref).sum((2, 3))[both] / n_ref[both, None]
            distance = ((mean_out - mean_ref) ** 2).sum(-1).add(1e-6).sqrt()
            total, count = total + distance.sum() / 100.0, count + int(both.sum())
    return total / max(count, 1)


def reconstruction_objective(diffusion: Diffusion, cfg: ReconstructionConfig) -> Objective:
    lpips = VGGLPIPS() if cfg.lpips_weight else None
    denoise = denoising_objective(diffusion, ConditionDropout(p_uncond=cfg.p_uncond)) if cfg.eps_weight else None

    def objective(model: nn.Module, batch: Batch, generator: torch.Generator) -> tuple[torch.Tensor, dict]:
        x0, sketch, reference = batch["target"], batch["sketch"], batch["reference"]
        text = batch.get("text")  # text models: the caption, or the empty prompt at p_text (the dataset)
        scored = cfg.colour_weight > 0 and "reference_label" in batch
        reference_label = batch.get("reference_label")
        swap = torch.zeros(x0.shape[0], dtype=torch.bool, device=x0.device)
        if (scored or cfg.swd_weight) and cfg.p_random and x0.shape[0] > 1:  # the next sample's reference, no truth
            swap = (torch.rand(x0.shape[0], generator=generator) < cfg.p_random).to(x0.device)
            other = torch.roll(torch.arange(x0.shape[0], device=x0.device), 1)
            reference = torch.where(swap[:, None, None, None], reference[other], reference)
            if reference_label is not None:
                reference_label = torch.where(swap[:, None, None], reference_label[other], reference_label)
            if text is not None:  # its caption describes the target, not this reference: the empty prompt
                text = torch.where(swap[:, None, None], torch.zeros_like(text), text)
        t_start = diffusion.T - 1 if cfg.start == "noise" else cfg.t_start
        eps = torch.randn(x0.shape, generator=generator).to(x0.device, x0.dtype)
        if cfg.start == "noise":
            x_T = eps
        else:
            source = reference if cfg.start == "reference" else x0
            x_T = diffusion.q_sample(source, torch.full((x0.shape[0],), t_start, device=x0.device), eps)
        out = ddim_sample(guided(model, sketch, reference, cfg.guidance, text), diffusion, x_T, cfg.unroll_steps,
                          eta=cfg.eta, generator=generator, t_start=t_start, clip_x0=True,
                          checkpoint=cfg.grad_checkpoint).float()
        terms = {}
        if not swap.all():  # the pixel terms: samples with their own reference
            own, target = out[~swap], x0[~swap].float()
            terms["mse"] = F.mse_loss(own, target)
            if cfg.l1_weight:
                terms["l1"] = F.l1_loss(own, target)
            if cfg.ms_ssim_weight:
                terms["ms_ssim"] = 1 - ms_ssim((own + 1) / 2, (target + 1) / 2).mean()
            if lpips is not None:
                lpips.to(out.device)
                terms["lpips"] = lpips.distance(own, target).mean()
        if cfg.swd_weight:  # own samples against their truth, swapped ones against their (other) reference
            terms["swd"] = colour_distribution_loss(out, torch.where(swap[:, None, None, None], reference, x0))
        if scored:
            terms["colour"] = region_colour_loss(out, batch["label"], reference, reference_label, COLOUR_REGION_IDS)
        if denoise is not None:
            terms["eps"] = denoise(model, batch, generator)[0]
        weights = {"mse": cfg.mse_weight, "l1": cfg.l1_weight, "ms_ssim": cfg.ms_ssim_weight,
                   "lpips": cfg.lpips_weight, "eps": cfg.eps_weight, "colour": cfg.colour_weight,
                   "swd": cfg.swd_weight}
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
    batch = {k: torch.stack([s[k] for s in samples]).to(device) for k in samples[0]}
    loss, _ = reconstruction_objective(diffusion, cfg)(model.to(device), batch, torch.Generator().manual_seed(seed))
    return float(loss)
