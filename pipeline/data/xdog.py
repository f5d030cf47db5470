"""XDoG line extraction (Winnemoeller et al. 2012) as AnimeDiffusion uses it.

Notation (input `gray` in [0, 1], float32, any size):
    G_s      Gaussian blur with standard deviation s (OpenCV, border reflect)
    S        = ((1 + p) * G_sigma - p * G_{k*sigma}) * gray     sharpened DoG, times the input
    out      = 1                          where S >= eps
             = 1 + tanh(phi * (S - eps))  elsewhere               (phi = 1e9: a hard threshold)
Output: float32 in [0, 1], white paper (1) and dark lines (0).
"""

from __future__ import annotations

import cv2
import numpy as np
from pydantic import Field, model_validator

from pipeline.config import Config


class XDoGConfig(Config):
    """Line extraction (params `pairs.xdog`); the defaults are the official AnimeDiffusion values."""

    sigma: tuple[float, ...] = Field((0.3, 0.4, 0.5), min_length=1, description="Gaussian sigma, sampled per "
                                                                                "image from this list")
    k: float = Field(3.5, gt=1.0, description="ratio of the two Gaussian sigmas")
    p: float = Field(10.0, ge=0.0, description="sharpening strength")
    eps: float = Field(0.01, description="threshold on the sharpened DoG")
    phi: float = Field(1e9, gt=0.0, description="1e9: hard threshold (official); ~50-200: soft lines")

    def sample_sigma(self, rng: np.random.Generator) -> float:
        """One sigma from the list (the one place sigma is drawn)."""
        return float(rng.choice(np.asarray(self.sigma, float)))

    def sketch(self, rgb: np.ndarray, sigma: float) -> np.ndarray:
        """Line drawing of a colour image as uint8 (H, W) at this sigma."""
        return np.round(xdog(to_gray(rgb), sigma, self.k, self.p, self.eps, self.phi) * 255).astype(np.uint8)


class LineAugmentConfig(Config):
    """Training-time line-style augmentation of the sketches (params `pretrain.lines`); all off by default
    because the benchmark sketches are XDoG too."""

    thicken_p: float = Field(0.0, ge=0, le=1, description="probability of thicker lines (erosion)")
    thin_p: float = Field(0.0, ge=0, le=1, description="probability of thinner lines (dilation)")
    noise_std: float = Field(0.0, ge=0, le=64, description="Gaussian scan noise, as a fraction of 255")
    blur_p: float = Field(0.0, ge=0, le=1, description="probability of a soft (blurred) line edge")

    @model_validator(mode="after")
    def _one_width_change(self):
        if self.thicken_p + self.thin_p > 1:
            raise ValueError("thicken_p + thin_p must be <= 1")
        return self

    @property
    def active(self) -> bool:
        return bool(self.thicken_p or self.thin_p or self.noise_std or self.blur_p)


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB (H, W, 3) or gray (H, W) -> float32 gray in [0, 1]."""
    if rgb.ndim == 3:
        rgb = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return rgb.astype(np.float32) / 255.0


def xdog(gray: np.ndarray, sigma: float = 0.5, k: float = 3.5, p: float = 10.0, eps: float = 0.01,
         phi: float = 1e9) -> np.ndarray:
    """XDoG of a float gray image in [0, 1]; see the module notation."""
    g1 = cv2.GaussianBlur(gray, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    g2 = cv2.GaussianBlur(gray, (0, 0), sigma * k, borderType=cv2.BORDER_REFLECT)
    S = ((1.0 + p) * g1 - p * g2) * gray
    # phi * (S - eps) overflows nothing: tanh saturates, and float32 handles 1e9 * O(1).
    out = np.where(S >= eps, 1.0, 1.0 + np.tanh(phi * (S - eps)))
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def augment_lines(sketch: np.ndarray, rng: np.random.Generator, cfg: LineAugmentConfig) -> np.ndarray:
    """Training-time line-style augmentation of a uint8 sketch (white paper, dark lines).

    User drawings are not XDoG output: lines are thicker or thinner, softer, noisier.
    Thickening = erosion of the white paper (lines grow); thinning = dilation; blur softens
    the hard XDoG edge like a soft phi; Gaussian noise imitates scans. All off by default.
    """
    out = sketch
    kernel = np.ones((2, 2), np.uint8)
    u = rng.random()
    if u < cfg.thicken_p:
        out = cv2.erode(out, kernel)
    elif u < cfg.thicken_p + cfg.thin_p:
        out = cv2.dilate(out, kernel)
    if rng.random() < cfg.blur_p:
        out = cv2.GaussianBlur(out, (0, 0), float(rng.uniform(0.4, 0.9)))
    if cfg.noise_std > 0:
        noise = rng.normal(0.0, cfg.noise_std * 255, out.shape)
        out = np.clip(out.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    return out
