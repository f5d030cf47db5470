"""Conditioning: the null condition, condition dropout and classifier-free guidance.

The model input is concat(x_t, sketch, reference) on channels. "No reference" (and "no
sketch") is the null value 0 -- mid grey in [-1, 1], a value a real sketch (mostly +-1) or a
flat-zero reference never has in bulk. One helper, `null_condition`, makes it for both
training-time dropout and the unconditional half of guidance, so the two always agree.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from pipeline.config import Config
from pipeline.model.diffusion import ModelFn


class ConditionDropout(Config):
    """Classifier-free-guidance training (params `pretrain.dropout`): per sample, drop the reference
    and, independently, the sketch."""

    p_uncond: float = Field(0.1, ge=0, le=1, description="probability of dropping the reference")
    p_sketch: float = Field(0.0, ge=0, le=1, description="probability of dropping the sketch")


REFERENCE_CHANNELS = slice(4, 7)  # where `model_input` puts the reference (read back by the U-Net's encoder)


def model_input(x_t: torch.Tensor, sketch: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """The network's input: concat(x_t [3], sketch [1], reference [3]) on channels, in x_t's dtype.
    The one place the channel order is written."""
    return torch.cat([x_t, sketch.to(x_t.dtype), reference.to(x_t.dtype)], 1)


def null_condition(cond: torch.Tensor, drop: torch.Tensor | None = None) -> torch.Tensor:
    """cond with the rows where drop is True replaced by the null value (all rows if drop is None)."""
    if drop is None:
        return torch.zeros_like(cond)
    return torch.where(drop.view(-1, *([1] * (cond.ndim - 1))), torch.zeros_like(cond), cond)


def drop_conditions(sketch: torch.Tensor, reference: torch.Tensor, dropout: ConditionDropout,
                    generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Classifier-free-guidance training: drop the reference with probability p_uncond and,
    independently, the sketch with probability p_sketch (per sample)."""
    b = reference.shape[0]
    u = torch.rand(2, b, generator=generator, device=generator.device if generator else "cpu").to(reference.device)
    return null_condition(sketch, u[1] < dropout.p_sketch), null_condition(reference, u[0] < dropout.p_uncond)


def conditioned(model: nn.Module, sketch: torch.Tensor, reference: torch.Tensor) -> ModelFn:
    """The plain conditional model as a callable (x_t, t) -> prediction."""
    return lambda x_t, t: model(model_input(x_t, sketch, reference), t)


def guided(model: nn.Module, sketch: torch.Tensor, reference: torch.Tensor, scale: float) -> ModelFn:
    """Classifier-free guidance: uncond + scale * (cond - uncond) on the model's prediction.

    Guidance is on the reference (the sketch is kept in both halves). The conditional and
    unconditional passes run as one batched forward. scale = 1 is exactly the conditional model
    (one forward, no wasted half); scale = 0 ignores the reference.
    """
    if scale == 1.0:
        return conditioned(model, sketch, reference)
    sketches = torch.cat([sketch, sketch], 0)
    references = torch.cat([reference, null_condition(reference)], 0)

    def fn(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = model(model_input(torch.cat([x_t, x_t], 0), sketches, references), torch.cat([t, t], 0))
        cond, uncond = out.chunk(2, 0)
        return uncond + scale * (cond - uncond)

    return fn
