"""The reference's saturation and lightness: the colour layer's matched to the reference's, after the model.

A model trained on faces colours a whole figure, or a drawing unlike its training data, paler
than its reference. `match_chroma` maps the colour layer's CIELAB chroma C* onto the reference's
by histogram matching (`skimage.exposure.match_histograms` on the two sets of C* values: the
drawing's opaque pixels, the reference's opaque ones) and moves each pixel `strength` of the way
there. Hue and lightness stay the model's, so no colour is invented: a pale blue becomes a
stronger blue, a grey stays near grey when the reference has greys. Hints are applied after it
(`hints.py`), so a hinted region still gets its colour exactly.

`match_lightness` does the same for L* on a figure outside its faces (`colorize --match-lightness`):
where a face-trained model paints clothes too light, in pale patches, the figure takes the
reference's lightness (its pixels off its own lines: the colour layer has no lines), a* and b*
kept. The faces, and a drawing that is a face crop, keep the model's lightness.

`even_regions` evens a figure's colours out inside each line-enclosed region (`colorize
--even-regions`): the tiles leave pale blotches and paper-white holes in a jacket that a colourist
would paint in one colour. Each pixel takes its region's local mean: a Gaussian normalised within
the region (only the region's own pixels count), each pixel weighted by how firmly it is coloured
(`firmness`, as the tiles' mix: a strong or a dark colour is firm, paper white is not), so a blue
jacket's white holes take the blue's colour and lightness, a black head of hair's take its black,
and its shading survives at the blur's scale.
"""

from __future__ import annotations

import warnings

import numpy as np

STRENGTH = 0.5  # `colorize --match-chroma`'s default (the CLI reads it at import: skimage loads on use)
LIGHTNESS = 0.5  # `colorize --match-lightness`'s default
EVEN = 0.3  # `colorize --even-regions`'s default: the Gaussian's sigma in face-square sides
MAX_EVEN = 2  # its largest value: a sigma of two faces evens a sprite's regions out nearly flat
BLUR_SIGMA = 8.0  # `even_regions` blurs a wider Gaussian on a copy shrunk to about this sigma
FIRM_FLOOR, FIRM_POWER = 2.0, 2.0  # how firmly a pixel is coloured: (floor + C* + darkness) ** power
FIRM_DARK = 50.0  # a pixel's darkness: how far its L* lies below this
RIM_MARGIN = 10.0  # `darken_rim`: a pixel beside a line paler than its area by more than this L* takes its colour
OPAQUE = 128  # a reference pixel with alpha at least this counts
REFERENCE_PIXELS = 1 << 20  # a larger reference is read at an even stride: its distribution, at a bounded cost


def _opaque_pixels(rgba: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
    """uint8 RGB or RGBA (H, W, C) -> its opaque pixels' RGB (N, 3), at most about REFERENCE_PIXELS;
    with `keep` (bool (H, W)) only those of them."""
    stride = max(1, int(np.ceil(np.sqrt(rgba.shape[0] * rgba.shape[1] / REFERENCE_PIXELS))))
    rgba = rgba[::stride, ::stride]
    chosen = np.ones(rgba.shape[:2], bool) if keep is None else keep[::stride, ::stride]
    if rgba.shape[-1] == 4:
        chosen = chosen & (rgba[..., 3] >= OPAQUE)
    return rgba[..., :3][chosen]


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
                 mask: np.ndarray | None = None, reference_mask: np.ndarray | None = None) -> np.ndarray:
    """uint8 RGB colour layer (H, W, 3) with its chroma moved `strength` (0-1) of the way to the
    reference's distribution (module docstring); a new array. `mask` (bool (H, W)): the drawing's
    pixels that count and change (a sprite's opaque part); None: all. `reference_mask` (bool, the
    reference's shape): the reference's pixels that count (its figure off its paper); None: every
    opaque one. Unchanged when the strength is 0, or when the reference or the mask has no pixel."""
    from skimage.exposure import match_histograms

    out = colour.copy()
    ref = _opaque_pixels(reference_rgba, reference_mask)
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


def match_lightness(colour: np.ndarray, reference_rgba: np.ndarray, strength: float, mask: np.ndarray,
                    reference_paper: np.ndarray | None = None) -> np.ndarray:
    """uint8 RGB colour layer (H, W, 3) with the CIELAB lightness L* of its `mask` pixels moved
    `strength` (0-1) of the way to the reference's distribution (histogram matching, as
    `match_chroma`), their a*, b* kept; a new array. `reference_paper` (bool, the reference's
    shape): the reference pixels that count, its lines left out (the colour layer has none);
    None: every opaque one. Unchanged when the strength is 0 or either side has no pixel."""
    from skimage.exposure import match_histograms

    out = colour.copy()
    ref = _opaque_pixels(reference_rgba, reference_paper)
    if strength <= 0 or len(ref) == 0 or not mask.any():
        return out
    lab = lab_pixels(colour[mask])
    wanted = match_histograms(lab[:, 0], lab_pixels(ref)[:, 0])
    lab[:, 0] += strength * (wanted - lab[:, 0])
    out[mask] = rgb8_pixels(lab)
    return out


def firmness(lab: np.ndarray, power: float = FIRM_POWER) -> np.ndarray:
    """CIELAB pixels (..., 3) -> how firmly each commits to a colour, (FIRM_FLOOR + C* + max(0,
    FIRM_DARK - L*)) ** power: the weight of a pixel where colours are averaged (the figure's tiles,
    `even_regions`). A strong colour and a dark one are firm; paper white, and a pale grey, are not,
    so a hole the model left white takes its region's colour, black hair's as well as a blue coat's."""
    darkness = np.maximum(FIRM_DARK - lab[..., 0], 0.0)
    return (FIRM_FLOOR + chroma(lab) + darkness) ** power


def even_regions(colour: np.ndarray, labels: np.ndarray, sigma: float) -> np.ndarray:
    """uint8 RGB colour layer (H, W, 3) with the pixels of each label (int (H, W); 0: left alone)
    replaced by their label's local mean in CIELAB: a Gaussian of `sigma` px normalised over that
    label's own pixels, each weighted by its `firmness`; a new array. A label much narrower than
    the Gaussian takes its weighted mean. Unchanged when `sigma` is 0 or no pixel is labelled."""
    from scipy.ndimage import find_objects

    out = colour.copy()
    chosen = labels > 0
    if sigma <= 0 or not chosen.any():
        return out
    lab = np.zeros((*labels.shape, 3))
    lab[chosen] = lab_pixels(colour[chosen])
    firm = np.zeros(labels.shape)
    firm[chosen] = firmness(lab[chosen])
    evened = lab.copy()
    for label, box in enumerate(find_objects(labels), start=1):
        if box is None:
            continue
        inside = labels[box] == label
        w = firm[box] * inside  # zero outside the label: only its own pixels count
        values, target = lab[box], evened[box]
        if max(inside.shape) <= sigma / 2:  # far narrower than the Gaussian: the mean
            target[inside] = (values * w[..., None]).sum((0, 1)) / max(w.sum(), 1e-12)
            continue
        den = np.maximum(_blur(w, sigma), 1e-12)
        for ch in range(3):
            target[..., ch][inside] = (_blur(values[..., ch] * w, sigma) / den)[inside]
    out[chosen] = rgb8_pixels(evened[chosen])
    return out


def darken_rim(colour: np.ndarray, evened: np.ndarray, labels: np.ndarray, rim: np.ndarray,
               reach: float) -> np.ndarray:
    """`evened` (uint8 RGB (H, W, 3), `even_regions`' output) with each `rim` pixel (bool (H, W):
    unlabelled pixels beside the lines, which the evening leaves as painted) that lies within
    `reach` px of a labelled pixel and is paler in `colour` (CIELAB L*) by more than `RIM_MARGIN`
    than that nearest labelled pixel's evened colour given that colour; a new array. A pale halo
    the model leaves along a line inside a dark area goes; its dark halos stay, under the lines."""
    from scipy.ndimage import distance_transform_edt

    out = evened.copy()
    if not rim.any() or not (labels > 0).any():
        return out
    distance, (iy, ix) = distance_transform_edt(labels == 0, return_indices=True)
    ys, xs = np.nonzero(rim & (distance <= reach))
    nearest = evened[iy[ys, xs], ix[ys, xs]]
    paler = lab_pixels(colour[ys, xs])[:, 0] > lab_pixels(nearest)[:, 0] + RIM_MARGIN
    out[ys[paler], xs[paler]] = nearest[paler]
    return out


def _blur(values: np.ndarray, sigma: float, fine: float = BLUR_SIGMA) -> np.ndarray:
    """A Gaussian blur of `values` (float (H, W)), zero past its edge; a sigma of at least twice
    `fine` px, on an array at least twice the shrink factor on both sides, is done on a copy shrunk
    by the whole factor that brings it to about `fine` (INTER_AREA) and scaled back up (bilinear):
    the cost of a 60 px Gaussian without its 480 px kernel."""
    import cv2

    factor = max(1, int(sigma // fine))
    h, w = values.shape
    if factor == 1 or min(h, w) < 2 * factor:
        return cv2.GaussianBlur(values, (0, 0), sigma, borderType=cv2.BORDER_CONSTANT)
    small = cv2.resize(values, (max(1, round(w / factor)), max(1, round(h / factor))), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / factor, borderType=cv2.BORDER_CONSTANT)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
