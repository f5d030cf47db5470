"""A scan or a photo of a drawing read as the clean line layer the model was trained on.

Training drawings are XDoG lines on pure white paper. A scan has grey or cream paper, a photo
has light that falls off across the page, and both have noise; the model reads all of that as
texture to paint (a figure on grey paper comes back smeared with colour from edge to edge). So
`colorize` levels a drawing read as lines first (`--auto-levels`, on by default):

- the paper's light is fitted as a smooth surface (a quadratic in x and y) to the pixels on the
  paper side of the drawing's Otsu threshold, on a copy at most `FIT_SIDE` px wide, refitted once
  without the pixels far off the first fit (faint lines, smudges);
- every pixel is divided by that surface, less `WHITE_SIGMAS` of the paper's noise, so the paper
  comes out white with its grain clipped;
- the darkest percent is taken to black (its level capped at `MAX_BLACK`, so a sparse sketch's
  paper is never stretched into grey).

Cream or tinted paper is not colour: whether a drawing is read as lines or as a colour picture is
decided on it with its paper's tint taken out (`untinted`: each channel scaled so that the median of
its brighter half is white), so a photo of a pencil drawing on cream paper is levelled, not traced.

A drawing on flat white paper whose lines reach black (a digital drawing, XDoG lines) comes back
unchanged; a drawing that is mostly ink (paper under `MIN_PAPER` of it) is only stretched between
its first and 99th percentiles.
"""

from __future__ import annotations

import cv2
import numpy as np

FIT_SIDE = 256  # the paper's light is fitted on a copy at most this many px on its longer side
MIN_PAPER = 0.3  # the paper side's least share of the picture for the light to be fitted
OUTLIER_SIGMAS = 2.5  # the refit leaves out pixels this many noise sigmas off the first fit
WHITE_SIGMAS = 3.0  # the white point: the fitted paper less this many sigmas of its noise
MAX_BLACK = 127  # the black point (the darkest percent's level) is at most this
BLACK_PERCENTILE = 1.0
PAPER_LEVEL = 150  # `untinted`: paper has every channel at least this ...
PAPER_TINT = 64  # ... and its channels at most this far apart (cream paper: about 30)


def untinted(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB (H, W, 3) with each channel scaled so that the per-channel median of the picture's
    brighter half (by grey level) is white, when that median looks like paper (each channel at least
    `PAPER_LEVEL`, channels at most `PAPER_TINT` apart): a cream or tinted paper turned white. A new
    array, or `rgb` itself."""
    grey = rgb.mean(-1)
    paper = np.median(rgb[grey >= np.median(grey)], 0)
    if paper.min() < PAPER_LEVEL or np.ptp(paper) > PAPER_TINT:
        return rgb
    return np.clip(rgb * (255.0 / paper), 0, 255).astype(np.uint8)


def _basis(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The quadratic surface's terms at normalised coordinates (-1..1)."""
    return np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], -1)


def _coords(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    return 2 * x / max(w - 1, 1) - 1, 2 * y / max(h - 1, 1) - 1


def paper_light(gray: np.ndarray) -> tuple[np.ndarray, float] | None:
    """The fitted light of the paper at every pixel (float32 (H, W)) and the paper's noise (its
    residuals' standard deviation), or None when too little of the picture is paper."""
    h, w = gray.shape
    k = min(1.0, FIT_SIDE / max(h, w))
    small = gray if k == 1 else cv2.resize(gray, (max(1, round(w * k)), max(1, round(h * k))),
                                           interpolation=cv2.INTER_AREA)
    threshold, _ = cv2.threshold(small, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    paper = small > threshold
    if paper.mean() < MIN_PAPER:
        return None
    x, y = _coords(*small.shape)
    basis, values = _basis(x[paper], y[paper]), small[paper].astype(np.float64)
    coef = np.linalg.lstsq(basis, values, rcond=None)[0]
    residual = values - basis @ coef
    keep = np.abs(residual) <= OUTLIER_SIGMAS * max(residual.std(), 1.0)
    if keep.sum() >= basis.shape[1]:
        coef = np.linalg.lstsq(basis[keep], values[keep], rcond=None)[0]
        residual = (values - basis @ coef)[keep]
    surface = (_basis(x, y) @ coef.astype(np.float32)).astype(np.float32)
    if k < 1:
        surface = cv2.resize(surface, (w, h), interpolation=cv2.INTER_LINEAR)
    return surface, float(residual.std())


def level_lines(gray: np.ndarray) -> np.ndarray:
    """A grey drawing (uint8 (H, W)) with its paper levelled to white and its darkest lines to black
    (module docstring); a new array."""
    fitted = paper_light(gray)
    if fitted is None:  # mostly ink: a plain stretch of its levels
        lo, hi = np.percentile(gray, (BLACK_PERCENTILE, 100 - BLACK_PERCENTILE))
        if hi <= lo:
            return gray.copy()
        return np.clip((gray.astype(np.float32) - lo) * 255.0 / (hi - lo), 0, 255).astype(np.uint8)
    surface, noise = fitted
    white = np.clip(surface - WHITE_SIGMAS * noise, 1.0, 255.0)
    flat = np.clip(gray.astype(np.float32) * 255.0 / white, 0, 255)
    black = min(float(np.percentile(flat, BLACK_PERCENTILE)), MAX_BLACK)
    return np.clip((flat - black) * 255.0 / (255.0 - black), 0, 255).round().astype(np.uint8)
