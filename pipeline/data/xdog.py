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
    soft_p: float = Field(0.0, ge=0, le=1, description="probability of a soft drawing of the picture instead "
                                                       "(pencil or grey edges)")

    @model_validator(mode="after")
    def _one_width_change(self):
        if self.thicken_p + self.thin_p > 1:
            raise ValueError("thicken_p + thin_p must be <= 1")
        return self

    @property
    def active(self) -> bool:
        return bool(self.thicken_p or self.thin_p or self.noise_std or self.blur_p or self.soft_p)


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


# A soft drawing is drawn at 1, 2 or 4 times the picture's size and shrunk back: a user's drawing
# is drawn larger than the model's view and shrunk to it (`colorize`), its strokes averaged into greys.
SOFT_SCALES = (1, 2, 4)


def pencil(rgb: np.ndarray, blur: float = 4.0) -> np.ndarray:
    """A colour picture (uint8 RGB on white) as a pencil drawing of it, uint8 (H, W): its grey levels
    divided by their blurred negative (the dodge of a pencil sketch): soft grey strokes where the
    picture has edges and grey shading in its dark parts, the paper white, hardly any black."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    negative = cv2.GaussianBlur(255 - grey, (0, 0), blur)
    return np.clip(grey * 255 / np.maximum(255 - negative, 1), 0, 255).astype(np.uint8)


def grey_edges(rgb: np.ndarray, strength: float = 2.0) -> np.ndarray:
    """Soft grey lines, uint8 (H, W): 255 minus `strength` times the grey morphological gradient
    (a 3 x 3 disc's dilation minus the grey levels), darkest where the picture's edges are steepest."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    edge = cv2.dilate(grey, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))) - grey
    return np.clip(255 - strength * edge, 0, 255).astype(np.uint8)


SCREENTONE_LEVELS = ((0.55, 0.2), (0.3, 0.45))  # (grey level under which, the tone's ink share), lightest first


def _halftone_threshold(share: float) -> float:
    """The level of the dot function (cos u + cos v) / 2 above which `share` of the plane lies."""
    phase = np.linspace(0, 2 * np.pi, 256, endpoint=False)
    dots = (np.cos(phase)[:, None] + np.cos(phase)[None]) / 2
    return float(np.quantile(dots, 1 - share))


def screentone(rgb: np.ndarray, lines: np.ndarray, period: float = 5.0, angle: float = 45.0,
               levels: tuple[tuple[float, float], ...] = SCREENTONE_LEVELS, oversample: int = 4) -> np.ndarray:
    """A manga rendering of a colour picture, uint8 (H, W): its `lines` (uint8, white paper) over
    screentone where the picture is dark: round dots on a square lattice of `period` px turned by
    `angle` degrees, covering the share of each of `levels` whose grey level (0-1, the picture blurred
    by 1.5 px) it falls under; drawn at `oversample` times the size and shrunk, as a scan's dots are
    anti-aliased."""
    h, w = lines.shape
    grey = cv2.GaussianBlur(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (0, 0), 1.5).astype(np.float32) / 255
    share = np.zeros((h, w), np.float32)
    for level, ink in levels:
        share[grey < level] = ink
    y, x = np.mgrid[0:h * oversample, 0:w * oversample].astype(np.float32) / oversample
    turn, scale = np.deg2rad(angle), 2 * np.pi / period
    u = (x * np.cos(turn) + y * np.sin(turn)) * scale
    v = (y * np.cos(turn) - x * np.sin(turn)) * scale
    dots = (np.cos(u) + np.cos(v)) / 2
    big = cv2.resize(share, (w * oversample, h * oversample), interpolation=cv2.INTER_NEAREST)
    tone = np.full(big.shape, 255, np.uint8)
    for _, ink in levels:
        tone[(big == ink) & (dots > _halftone_threshold(ink))] = 0
    return np.minimum(lines, cv2.resize(tone, (w, h), interpolation=cv2.INTER_AREA))


def soft_drawing(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random soft drawing of a uint8 RGB picture, uint8 (H, W) at its size: a pencil drawing
    (its dodge blurred by 0.5/64 to 2/64 of the drawn side) or grey edges (strength 1-3 times the
    square root of the scale: an upscaled picture's edges are gentler), drawn at one of `SOFT_SCALES`
    times the size, shrunk back, its greys darkened or lightened (a gamma of 0.6-1.3 on the ink)."""
    h, w = rgb.shape[:2]
    scale = int(rng.choice(SOFT_SCALES))
    big = cv2.resize(rgb, (w * scale, h * scale), interpolation=cv2.INTER_CUBIC) if scale > 1 else rgb
    if rng.random() < 0.5:
        drawn = pencil(big, blur=float(rng.uniform(0.5, 2.0)) * max(h, w) * scale / 64)
    else:
        drawn = grey_edges(big, strength=float(rng.uniform(1.0, 3.0)) * scale ** 0.5)  # the larger, the softer
    if scale > 1:
        drawn = cv2.resize(drawn, (w, h), interpolation=cv2.INTER_AREA)
    ink = 1 - drawn.astype(np.float32) / 255
    return np.round(255 * (1 - ink ** float(rng.uniform(0.6, 1.3)))).astype(np.uint8)


def augment_lines(sketch: np.ndarray, rng: np.random.Generator, cfg: LineAugmentConfig,
                  picture: np.ndarray | None = None) -> np.ndarray:
    """Training-time line-style augmentation of a uint8 sketch (white paper, dark lines).

    User drawings are not XDoG output: lines are thicker or thinner, softer, noisier, or a pencil
    drawing marked in greys. With probability `soft_p` the sketch is replaced by a `soft_drawing` of
    `picture` (the uint8 RGB target the sketch was drawn from; needed then). Thickening = erosion of
    the white paper (lines grow); thinning = dilation; blur softens the hard XDoG edge like a soft
    phi; Gaussian noise imitates scans. All off by default; `soft_p` draws from `rng` only when > 0.
    """
    out = sketch
    if cfg.soft_p > 0 and rng.random() < cfg.soft_p:
        if picture is None:
            raise ValueError("augment_lines: soft_p needs the picture the sketch was drawn from")
        out = soft_drawing(picture, rng)
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
