"""Benchmark metrics: pure functions of image tensors or feature arrays.

Images are (B, 3, H, W) floats in [0, 1] unless said otherwise; every per-image metric returns (B,).
clean-fid and torchmetrics are imported inside the functions that use them: they take seconds to
import, and every stage reads its params through a module that imports this one.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from scipy.ndimage import binary_erosion
from skimage.color import deltaE_ciede2000, rgb2lab

from pipeline.model.perceptual import MS_SSIM_BETAS, ms_ssim, ms_ssim_setup  # noqa: F401  (also a fine-tuning loss)


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per image on [0, 1] (identical images: inf)."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    return peak_signal_noise_ratio(pred, target, data_range=1.0, reduction="none", dim=(1, 2, 3))


def frechet_distance(feats1: np.ndarray, feats2: np.ndarray) -> float:
    """Frechet distance between Gaussian fits of two feature sets (clean-fid's implementation).

    With fewer samples than feature dimensions the covariances are singular; clean-fid then
    regularises the square root (its eps offset), and SciPy's warning about it is silenced."""
    from cleanfid.fid import fid_from_feats
    from scipy.linalg import LinAlgWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LinAlgWarning)
        return float(fid_from_feats(feats1, feats2))


def kid(feats1: np.ndarray, feats2: np.ndarray, subsets: int = 100, seed: int = 0) -> float:
    """Kernel inception distance with the cubic polynomial kernel (clean-fid), seeded."""
    from cleanfid.fid import kernel_distance

    state = np.random.get_state()
    np.random.seed(seed)
    try:
        return float(kernel_distance(feats1, feats2, num_subsets=subsets))
    finally:
        np.random.set_state(state)


def to_lab(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [0, 1] -> (B, H, W, 3) CIE Lab (D65)."""
    return rgb2lab(images.permute(0, 2, 3, 1).cpu().numpy().astype(np.float64), channel_axis=-1)


def delta_e(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIEDE2000 colour difference, elementwise over the last axis."""
    return deltaE_ciede2000(lab1, lab2, channel_axis=-1)


def region_means(lab: np.ndarray, labels: np.ndarray, region: int, erode: int = 1) -> np.ndarray:
    """Mean Lab colour of `region` per image (B, 3), away from its outline (eroded by `erode` px
    unless that empties it); NaN where the region is absent."""
    out = np.full((lab.shape[0], 3), np.nan)
    for i in range(lab.shape[0]):
        mask = labels[i] == region
        if erode:
            inner = binary_erosion(mask, iterations=erode)
            mask = inner if inner.sum() >= 2 else mask  # small regions (irises at 64 px) are kept whole
        if mask.sum() >= 2:
            out[i] = lab[i][mask].mean(0)
    return out


def region_colour_errors(output: torch.Tensor, output_labels: np.ndarray, reference: torch.Tensor,
                         reference_labels: np.ndarray, regions: dict[str, int], erode: int = 1) -> dict[str, np.ndarray]:
    """Per region: CIEDE2000 between the output's mean colour in the target's region and the
    reference's mean colour in its own (warped) region -- did the colour go where it belongs?
    Returns {name: (B,)} with NaN where a region is missing in either image."""
    lab_out, lab_ref = to_lab(output), to_lab(reference)
    return {name: delta_e(region_means(lab_out, output_labels, rid, erode),
                          region_means(lab_ref, reference_labels, rid, erode))
            for name, rid in regions.items()}


HETEROCHROMIA_GAP = 10.0  # CIEDE2000 between a reference's two irises above which it counts as heterochromatic


def heterochromia_success(errors_left: np.ndarray, errors_right: np.ndarray, ref_left_right_gap: np.ndarray,
                          threshold: float = 15.0, min_gap: float = HETEROCHROMIA_GAP) -> tuple[float, int]:
    """Share of references with two clearly different irises (gap > min_gap) where both output irises
    are within `threshold` CIEDE2000 of their own reference colour; returns (rate, count)."""
    hetero = ref_left_right_gap > min_gap
    ok = (errors_left < threshold) & (errors_right < threshold)
    n = int(hetero.sum())
    return (float(ok[hetero].mean()) if n else math.nan), n


def summarise(values: np.ndarray | torch.Tensor) -> float | None:
    """Mean over finite values (inf PSNR of identical images is capped at 100 dB); None if empty."""
    arr = np.asarray(values.cpu() if isinstance(values, torch.Tensor) else values, dtype=np.float64)
    arr = np.where(np.isposinf(arr), 100.0, arr)
    arr = arr[np.isfinite(arr)]
    return round(float(arr.mean()), 4) if arr.size else None


def attribute_errors(attrs: np.ndarray, expected: np.ndarray, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """CIEDE2000 between detected attribute colours (B, K, 3) RGB in [0, 1] and expected ones; NaN
    where either side was not detected."""
    lab_a = rgb2lab(np.nan_to_num(attrs).reshape(-1, 1, 3), channel_axis=-1).reshape(attrs.shape)
    lab_b = rgb2lab(np.nan_to_num(expected).reshape(-1, 1, 3), channel_axis=-1).reshape(expected.shape)
    de = delta_e(lab_a, lab_b)
    de[np.isnan(attrs).any(-1) | np.isnan(expected).any(-1)] = np.nan
    return {name: de[:, k] for k, name in enumerate(names)}
