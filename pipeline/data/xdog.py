"""XDoG line extraction (Winnemoeller et al. 2012) as AnimeDiffusion uses it.

Notation (input `gray` in [0, 1], float32, any size):
    G_s      Gaussian blur with standard deviation s (OpenCV, border reflect)
    S        = ((1 + p) * G_sigma - p * G_{k*sigma}) * gray     sharpened DoG, times the input
    out      = 1                          where S >= eps
             = 1 + tanh(phi * (S - eps))  elsewhere               (phi = 1e9: a hard threshold)
Output: float32 in [0, 1], white paper (1) and dark lines (0).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

OFFICIAL = dict(sigma=(0.3, 0.4, 0.5), k=3.5, p=10.0, eps=0.01, phi=1e9)


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


def sketch_from_rgb(rgb: np.ndarray, rng: np.random.Generator, sigma: float | Sequence[float] = OFFICIAL["sigma"],
                    **kwargs) -> np.ndarray:
    """Line drawing of a colour image as uint8 (H, W): sigma sampled from `sigma` if a list."""
    s = float(rng.choice(np.asarray(sigma, float))) if np.ndim(sigma) else float(sigma)
    return np.round(xdog(to_gray(rgb), s, **kwargs) * 255).astype(np.uint8)


def augment_lines(sketch: np.ndarray, rng: np.random.Generator, thicken_p: float = 0.0, thin_p: float = 0.0,
                  noise_std: float = 0.0, blur_p: float = 0.0) -> np.ndarray:
    """Training-time line-style augmentation of a uint8 sketch (white paper, dark lines).

    User drawings are not XDoG output: lines are thicker or thinner, softer, noisier.
    Thickening = erosion of the white paper (lines grow); thinning = dilation; blur softens
    the hard XDoG edge like a soft phi; Gaussian noise imitates scans. All off by default.
    """
    out = sketch
    kernel = np.ones((2, 2), np.uint8)
    u = rng.random()
    if u < thicken_p:
        out = cv2.erode(out, kernel)
    elif u < thicken_p + thin_p:
        out = cv2.dilate(out, kernel)
    if rng.random() < blur_p:
        out = cv2.GaussianBlur(out, (0, 0), float(rng.uniform(0.4, 0.9)))
    if noise_std > 0:
        noise = rng.normal(0.0, noise_std * 255, out.shape)
        out = np.clip(out.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    return out
