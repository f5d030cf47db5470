"""Thin-plate-spline distortion of the colour reference (and its label map).

A warp is a pair of remap maps (map_x, map_y): output pixel (x, y) samples the input at
(map_x[y, x], map_y[y, x]). Control points live in normalised [0, 1] coordinates. The spline
is solved here with the standard kernel U(r) = r^2 log r^2: albumentations 2.0.8's
`compute_tps_weights` / `tps_transform` use different kernels in the solve and the
evaluation, so its warp misses its own control points (docs/design.md). It is evaluated on a
coarse grid and bilinearly upsampled (TPS is smooth, and this keeps 256 px warps cheap). Schemes:
    diagonal  the official AnimeDiffusion scheme: the 4 corners fixed, plus 2 points on the
              main diagonal at U(0.3, 0.7), each moved along the diagonal by U(-s, s), s=0.25
    random    a grid of n x n control points, each moved by N(0, s / 4) (albumentations-like)
Optional extras: horizontal flip, small rotation, scale. Randomness only from the `rng` passed in.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
from pydantic import Field, model_validator

from pipeline.config import Config, validate


class TPSConfig(Config):
    """Geometric distortion of the reference (params `pairs.tps`): the fixed self-reference benchmark
    pairs, and every training fetch (re-drawn each time)."""

    scheme: Literal["diagonal", "random", "none"] = Field("diagonal", description="diagonal (official) | random "
                                                                                  "(control-point grid) | none")
    strength: float = Field(0.25, ge=0.0, le=0.5, description="diagonal: max move along the diagonal; random: "
                                                              "4 x std of moves")
    grid: int = Field(4, ge=2, le=10, description="random scheme: control points per side")
    flip_p: float = Field(0.0, ge=0.0, le=1.0, description="horizontal flip probability")
    rotate_deg: float = Field(0.0, ge=0.0, le=45.0, description="max rotation, degrees")
    scale_min: float = Field(1.0, gt=0.0, le=2.0, description="scale range: lower end")
    scale_max: float = Field(1.0, gt=0.0, le=2.0, description="scale range: upper end")
    moves_p: float = Field(1.0, ge=0.0, le=1.0, description="probability that the flip, turn and scale apply "
                                                            "(else the TPS alone)")

    @model_validator(mode="after")
    def _scale_range(self):
        if self.scale_min > self.scale_max:
            raise ValueError(f"scale_min must be <= scale_max ({self.scale_min} > {self.scale_max})")
        return self


class TrainWarpConfig(Config):
    """More reference distortion for training only (params `pretrain.reference_warp` and
    `finetune.reference_warp`), over `pairs.tps`,
    which also draws the fixed benchmark pairs and so stays as it is. A reference flipped, turned or
    scaled against its drawing cannot be copied by position: the attention has to find each region by
    what it is, as it must for another character's reference. null: the `pairs.tps` value."""

    flip_p: float | None = Field(None, ge=0.0, le=1.0, description="horizontal flip probability; null: pairs.tps's")
    rotate_deg: float | None = Field(None, ge=0.0, le=45.0, description="max rotation, degrees; null: pairs.tps's")
    scale_min: float | None = Field(None, gt=0.0, le=2.0, description="scale range, lower end; null: pairs.tps's")
    scale_max: float | None = Field(None, gt=0.0, le=2.0, description="scale range, upper end; null: pairs.tps's")
    moves_p: float | None = Field(None, ge=0.0, le=1.0, description="share of items moved; null: pairs.tps's")

    def over(self, tps: TPSConfig, section: str) -> TPSConfig:
        """`tps` with every value set here replacing its own (checked as a TPSConfig; errors name
        `<section>.reference_warp`)."""
        changed = {key: value for key, value in self.model_dump().items() if value is not None}
        return validate(TPSConfig, {**tps.model_dump(), **changed}, f"{section}.reference_warp over pairs.tps") \
            if changed else tps


WARP_MOVES = tuple(TrainWarpConfig.model_fields)  # the moves over the TPS, recorded in model files


def control_points(cfg: TPSConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(src, dst) control points in [0, 1]^2: output location -> input location."""
    if cfg.scheme == "diagonal":
        corners = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], np.float64)
        t = rng.uniform(0.3, 0.7, size=2)
        shift = rng.uniform(-cfg.strength, cfg.strength, size=2)
        src = np.concatenate([corners, np.stack([t, t], 1)])
        dst = np.concatenate([corners, np.stack([t + shift, t + shift], 1)])
    elif cfg.scheme == "random":
        g = np.linspace(0, 1, cfg.grid)
        src = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
        dst = src + rng.normal(0, cfg.strength / 4, src.shape)
    elif cfg.scheme == "none":
        src = dst = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], np.float64)
    else:
        raise ValueError(f"unknown TPS scheme {cfg.scheme!r}")
    return src, dst


def _kernel(d2: np.ndarray) -> np.ndarray:
    """TPS radial basis U = r^2 log r^2 from squared distances (U(0) = 0)."""
    return np.where(d2 > 0, d2 * np.log(np.maximum(d2, 1e-300)), 0.0)


def solve_tps(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Coefficients (n + 3, 2) of the interpolating spline f with f(src_i) = dst_i."""
    n = len(src)
    K = _kernel(((src[:, None] - src[None]) ** 2).sum(-1))
    P = np.concatenate([np.ones((n, 1)), src], 1)
    A = np.zeros((n + 3, n + 3))
    A[:n, :n], A[:n, n:], A[n:, :n] = K, P, P.T
    b = np.zeros((n + 3, 2))
    b[:n] = dst
    return np.linalg.solve(A, b)


def eval_tps(coef: np.ndarray, src: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Evaluate the spline at points (m, 2)."""
    U = _kernel(((pts[:, None] - src[None]) ** 2).sum(-1))
    P = np.concatenate([np.ones((len(pts), 1)), pts], 1)
    return U @ coef[: len(src)] + P @ coef[len(src) :]


def tps_maps(src: np.ndarray, dst: np.ndarray, height: int, width: int, coarse: int = 33):
    """Remap maps (float32 (H, W) each) of the TPS taking `src` points to `dst` points."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    coef = solve_tps(src, dst)
    # Evaluate on a coarse grid spanning the pixel centres, then upsample bilinearly;
    # the grid's first/last nodes sit exactly on the first/last pixel centres.
    gh, gw = min(coarse, height), min(coarse, width)
    gy, gx = np.meshgrid(np.linspace(0.5 / height, 1 - 0.5 / height, gh),
                         np.linspace(0.5 / width, 1 - 0.5 / width, gw), indexing="ij")
    moved = eval_tps(coef, src, np.stack([gx.ravel(), gy.ravel()], 1)).reshape(gh, gw, 2)
    moved = _resize_aligned(moved.astype(np.float32), height, width)
    return (moved[..., 0] * width - 0.5).astype(np.float32), (moved[..., 1] * height - 0.5).astype(np.float32)


def _resize_aligned(grid: np.ndarray, height: int, width: int) -> np.ndarray:
    """Exact bilinear upsampling, corner nodes on corner pixels (align_corners=True)."""
    return np.einsum("yi,ijc,xj->yxc", _interp_matrix(grid.shape[0], height), grid,
                     _interp_matrix(grid.shape[1], width), optimize=True)


def _interp_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) linear-interpolation weights from n_in nodes to n_out samples."""
    pos = np.linspace(0, n_in - 1, n_out)
    lo = np.minimum(np.floor(pos).astype(int), n_in - 2) if n_in > 1 else np.zeros(n_out, int)
    W = np.zeros((n_out, n_in), np.float32)
    if n_in == 1:
        W[:, 0] = 1
        return W
    frac = (pos - lo).astype(np.float32)
    W[np.arange(n_out), lo] = 1 - frac
    W[np.arange(n_out), lo + 1] += frac
    return W


def random_warp(cfg: TPSConfig, rng: np.random.Generator, height: int, width: int):
    """Sample one distortion: TPS, then optional flip / rotation / scale, as remap maps."""
    src, dst = control_points(cfg, rng)
    map_x, map_y = tps_maps(src, dst, height, width)
    angle = rng.uniform(-cfg.rotate_deg, cfg.rotate_deg) if cfg.rotate_deg else 0.0
    scale = rng.uniform(cfg.scale_min, cfg.scale_max) if (cfg.scale_min, cfg.scale_max) != (1.0, 1.0) else 1.0
    flip = rng.random() < cfg.flip_p
    if cfg.moves_p < 1.0 and rng.random() >= cfg.moves_p:  # drawn only then: the default stream stays as it was
        angle, scale, flip = 0.0, 1.0, False
    if angle or scale != 1.0 or flip:
        # Compose: output -> (inverse affine) -> TPS input coordinates.
        M = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), angle, scale)
        M_inv = cv2.invertAffineTransform(M)
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        if flip:
            xs = width - 1 - xs
        ax = (M_inv[0, 0] * xs + M_inv[0, 1] * ys + M_inv[0, 2]).astype(np.float32)
        ay = (M_inv[1, 0] * xs + M_inv[1, 1] * ys + M_inv[1, 2]).astype(np.float32)
        map_x = cv2.remap(map_x, ax, ay, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        map_y = cv2.remap(map_y, ax, ay, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return map_x, map_y


def apply_warp(image: np.ndarray, maps, label: bool = False) -> np.ndarray:
    """Warp an image (bicubic, as the official code) or a label map (nearest: ids stay ids)."""
    map_x, map_y = maps
    interp = cv2.INTER_NEAREST if label else cv2.INTER_CUBIC
    return cv2.remap(image, map_x, map_y, interp, borderMode=cv2.BORDER_REPLICATE)
