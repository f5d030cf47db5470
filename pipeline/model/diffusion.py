"""Gaussian diffusion math: schedules, forward noising, prediction conversions, training loss.

Notation (Ho et al. 2020; Salimans & Ho 2022 for v):
    T                 number of diffusion steps; t in {0, ..., T-1}
    beta_t            noise variance added at step t
    alpha_bar_t       prod_{s<=t} (1 - beta_s); x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps
    x0, x_t, eps      clean image, noisy image, unit Gaussian noise, all (B, 3, H, W) in about [-1, 1]
    v                 sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x0  (v-prediction target)

`objective: regression` is the baseline that shows what diffusion buys: the same
network and conditions, but its noisy-image input is all zeros at t = T - 1, its output is the
picture itself, trained by L1, and sampling is that one forward pass (`sampler.ddim_sample`).

The model is an argument (a callable (x_t, t) -> prediction); this module never sees a network.
Schedules are built in float64 and stored as float32 tensors; the device follows the inputs.
"""

from __future__ import annotations

import math
from typing import Callable, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from pipeline.config import Config

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class DiffusionConfig(Config):
    """The noise schedule and what the network predicts (params `pretrain.diffusion`). Defaults:
    v-prediction on a cosine schedule, which trains at CPU scale; the paper: eps, linear 1e-6 .. 1e-2."""

    timesteps: int = Field(1000, ge=10, le=100_000, description="T, the number of diffusion steps")
    schedule: Literal["linear", "cosine"] = Field("cosine", description="beta schedule")
    beta_start: float = Field(1e-4, gt=0, lt=1, description="linear schedule only (paper: 1e-6)")
    beta_end: float = Field(0.02, gt=0, lt=1, description="linear schedule only (paper: 1e-2)")
    prediction: Literal["eps", "v"] = Field("v", description="what the network predicts")
    min_snr_gamma: float | None = Field(None, gt=0, description="Min-SNR-gamma loss weighting (Hang "
                                                                "et al. 2023: 5); null: uniform")
    objective: Literal["diffusion", "regression"] = Field(
        "diffusion", description="diffusion (sampled by DDIM) | regression: a one-pass L1 baseline")
    region_balance: float = Field(0.0, ge=0, le=2, description="loss weight (1/16 image / region "
                                                               "area)^x, in [1, 8]; 0: uniform")
    eye_weight: float = Field(1.0, ge=1, le=100, description="loss weight of the irises (label maps; real: "
                                                             "clean.eye_labels); 1: uniform")

    @model_validator(mode="after")
    def _betas(self):
        if self.schedule == "linear" and self.beta_start >= self.beta_end:
            raise ValueError(f"beta_start must be < beta_end ({self.beta_start} >= {self.beta_end})")
        if self.objective == "regression" and self.min_snr_gamma is not None:
            raise ValueError("min_snr_gamma weights noise levels; the regression objective has one (set it to null)")
        return self


def make_betas(schedule: str, timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
    """Beta schedule, float64 (T,)."""
    if schedule == "linear":
        return np.linspace(beta_start, beta_end, timesteps, dtype=np.float64)
    if schedule == "cosine":  # Nichol & Dhariwal 2021, eq. 17, s = 0.008, betas clipped at 0.999
        s = 0.008
        f = lambda t: math.cos((t / timesteps + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
        return np.array([min(1 - f(i + 1) / f(i), 0.999) for i in range(timesteps)], dtype=np.float64)
    raise ValueError(f"unknown beta schedule {schedule!r} (linear | cosine)")


class Diffusion:
    """Forward process and conversions between the model's prediction and x0 / eps."""

    def __init__(self, config: DiffusionConfig = DiffusionConfig()):
        self.config = config
        self.T = config.timesteps
        betas = make_betas(config.schedule, config.timesteps, config.beta_start, config.beta_end)
        alpha_bar = np.cumprod(1.0 - betas)
        self.betas = torch.tensor(betas, dtype=torch.float32)
        self.alpha_bar = torch.tensor(alpha_bar, dtype=torch.float32)
        self._sqrt_ab = torch.tensor(np.sqrt(alpha_bar), dtype=torch.float32)
        self._sqrt_1mab = torch.tensor(np.sqrt(1.0 - alpha_bar), dtype=torch.float32)
        self._copies: dict[tuple[int, torch.device], torch.Tensor] = {}

    @property
    def regression(self) -> bool:
        return self.config.objective == "regression"

    def regress(self, model: ModelFn, like: torch.Tensor) -> torch.Tensor:
        """The regression objective's one forward pass: the model's output at a zero noisy image and
        t = T - 1 (shape and device of `like`); the picture itself."""
        t = torch.full((like.shape[0],), self.T - 1, device=like.device, dtype=torch.long)
        return model(torch.zeros_like(like), t)

    def _on(self, table: torch.Tensor, device: torch.device) -> torch.Tensor:
        """`table` on `device`, copied there once (a copy per call would be a blocking transfer per step)."""
        if table.device == device:
            return table
        key = (id(table), device)
        if key not in self._copies:
            self._copies[key] = table.to(device)
        return self._copies[key]

    def _at(self, table: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """table[t] shaped (B, 1, 1, 1) on like's device and dtype."""
        return self._on(table, like.device)[t.long()].to(like.dtype).view(-1, *([1] * (like.ndim - 1)))

    def alpha_bar_at(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return self._at(self.alpha_bar, t, like)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Forward noising q(x_t | x0) (Ho et al. eq. 4)."""
        return self._at(self._sqrt_ab, t, x0) * x0 + self._at(self._sqrt_1mab, t, x0) * eps

    def target(self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """What the model is trained to output at (x_t, t)."""
        if self.config.prediction == "eps":
            return eps
        return self._at(self._sqrt_ab, t, x0) * eps - self._at(self._sqrt_1mab, t, x0) * x0

    def to_x0_eps(self, prediction: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Model output -> (x0_hat, eps_hat)."""
        a, s = self._at(self._sqrt_ab, t, x_t), self._at(self._sqrt_1mab, t, x_t)
        if self.config.prediction == "eps":
            eps = prediction
            x0 = (x_t - s * eps) / a
        else:  # v: x0 = a x_t - s v, eps = s x_t + a v  (since a^2 + s^2 = 1)
            x0 = a * x_t - s * prediction
            eps = s * x_t + a * prediction
        return x0, eps

    def loss(self, model: ModelFn, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor,
             pixel_weight: torch.Tensor | None = None) -> torch.Tensor:
        """Simple MSE objective (Ho et al. eq. 14, or its v form); scalar. With `min_snr_gamma` each
        sample is weighted so that the implied x0 loss is weighted by min(SNR, gamma) (Hang et al.
        2023): w = min(SNR, gamma) / SNR for eps, min(SNR, gamma) / (SNR + 1) for v. `pixel_weight`
        (B, 1, H, W) weights each pixel's error (`data.dataset.region_weights`, mean 1 per image;
        `altered_weights`). The regression objective: the pixel-weighted L1 between `regress` and
        x0 (t and eps unused)."""
        if self.regression:
            error = (self.regress(model, x0).float() - x0.float()).abs()
            return torch.mean(error if pixel_weight is None else error * pixel_weight.float())
        x_t = self.q_sample(x0, t, eps)
        prediction = model(x_t, t)
        squared = (prediction.float() - self.target(x0, t, eps).float()) ** 2
        if pixel_weight is not None:
            squared = squared * pixel_weight.float()
        if self.config.min_snr_gamma is None:
            return torch.mean(squared)
        per_sample = squared.flatten(1).mean(1)
        ab = self._on(self.alpha_bar, x0.device)[t.long()].double()
        snr = ab / (1 - ab)
        clipped = snr.clamp(max=self.config.min_snr_gamma)
        weight = clipped / snr if self.config.prediction == "eps" else clipped / (snr + 1)
        return (weight.float() * per_sample).mean()
