"""The reference's saturation: the colour layer's chroma matched to the reference's, after the model.

A model trained on faces colours a whole figure, or a drawing unlike its training data, paler
than its reference. `match_chroma` maps the colour layer's CIELAB chroma C* onto the reference's
by histogram matching (`skimage.exposure.match_histograms` on the two sets of C* values: the
drawing's opaque pixels, the reference's opaque ones) and moves each pixel `strength` of the way
there. Hue and lightness stay the model's, so no colour is invented: a pale blue becomes a
stronger blue, a grey stays near grey when the reference has greys. Hints are applied after it
(`hints.py`), so a hinted region still gets its colour exactly.
"""

from __future__ import annotations

import warnings

import numpy as np

STRENGTH = 0.5  # `colorize --match-chroma`'s default (the CLI reads it at import: skimage loads on use)
OPAQUE = 128  # a reference pixel with alpha at least this counts
REFERENCE_PIXELS = 1 << 20  # a larger reference is read at an even stride: its distribution, at a bounded cost


def _opaque_pixels(rgba: np.ndarray) -> np.ndarray:
    """uint8 RGB or RGBA (H, W, C) -> its opaque pixels' RGB (N, 3), at most about REFERENCE_PIXELS."""
    stride = max(1, int(np.ceil(np.sqrt(rgba.shape[0] * rgba.shape[1] / REFERENCE_PIXELS))))
    rgba = rgba[::stride, ::stride]
    if rgba.shape[-1] == 4 and (rgba[..., 3] < OPAQUE).any():
        return rgba[..., :3][rgba[..., 3] >= OPAQUE]
    return rgba[..., :3].reshape(-1, 3)


def lab_pixels(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB pixels (N, 3) -> CIELAB (N, 3)."""
    from skimage.color import rgb2lab

    return rgb2lab(rgb[:, None].astype(np.float64) / 255.0)[:, 0]


def rgb8_pixels(lab: np.ndarray) -> np.ndarray:
    """CIELAB pixels (N, 3) -> uint8 RGB (N, 3), clipped to sRGB (lab2rgb's warning about it silenced)."""
    from skimage.color import lab2rgb

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.clip(np.round(lab2rgb(lab[:, None])[:, 0] * 255.0), 0, 255).astype(np.uint8)


def chroma(lab: np.ndarray) -> np.ndarray:
    """CIELAB (..., 3) -> C* (...)."""
    return np.hypot(lab[..., 1], lab[..., 2])


def match_chroma(colour: np.ndarray, reference_rgba: np.ndarray, strength: float,
                 mask: np.ndarray | None = None) -> np.ndarray:
    """uint8 RGB colour layer (H, W, 3) with its chroma moved `strength` (0-1) of the way to the
    reference's distribution (module docstring); a new array. `mask` (bool (H, W)): the drawing's
    pixels that count and change (a sprite's opaque part); None: all. Unchanged when the strength
    is 0, or when the reference or the mask has no opaque pixel."""
    from skimage.exposure import match_histograms

    out = colour.copy()
    ref = _opaque_pixels(reference_rgba)
    mask = np.ones(colour.shape[:2], bool) if mask is None else mask
    if strength <= 0 or len(ref) == 0 or not mask.any():
        return out
    lab = lab_pixels(colour[mask])
    own = chroma(lab)
    wanted = match_histograms(own, chroma(lab_pixels(ref)))
    target = own + strength * (wanted - own)
    gain = np.divide(target, own, out=np.ones_like(own), where=own > 1e-6)
    lab[:, 1:] *= gain[:, None]
    out[mask] = rgb8_pixels(lab)
    return out
