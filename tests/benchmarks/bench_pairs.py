"""Benchmark: sketch + reference generation throughput at 256 px, one core.

    python tests/benchmarks/bench_pairs.py [--n 200] [--size 256]

One "pair" = XDoG sketch of a face + one TPS-distorted reference (what the dataset does per
fetch, plus the sketch the `pairs` stage precomputes). Baseline in the same run: the same
work with SciPy (`gaussian_filter` for the blurs, `map_coordinates` cubic for the warp, the
TPS evaluated at every pixel instead of on a coarse grid).
"""

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from scipy.ndimage import gaussian_filter, map_coordinates  # noqa: E402

from pipeline.data.synthetic import generate_face  # noqa: E402
from pipeline.data.tps import TPSConfig, apply_warp, control_points, eval_tps, random_warp, solve_tps  # noqa: E402
from pipeline.data.xdog import XDoGConfig, to_gray  # noqa: E402

cv2.setNumThreads(1)


def ours(images, rng):
    for rgb in images:
        XDoGConfig().sketch(rgb, XDoGConfig().sample_sigma(rng))
        apply_warp(rgb, random_warp(TPSConfig(), rng, *rgb.shape[:2]))


def baseline(images, rng):
    for rgb in images:
        gray = to_gray(rgb)
        s = float(rng.choice([0.3, 0.4, 0.5]))
        S = (11 * gaussian_filter(gray, s) - 10 * gaussian_filter(gray, 3.5 * s)) * gray
        np.where(S >= 0.01, 1.0, 0.0)
        src, dst = control_points(TPSConfig(), rng)
        coef = solve_tps(src, dst)
        h, w = gray.shape
        ys, xs = np.mgrid[0:h, 0:w]
        pts = np.stack([(xs.ravel() + 0.5) / w, (ys.ravel() + 0.5) / h], 1)
        moved = eval_tps(coef, src, pts)
        coords = [moved[:, 1].reshape(h, w) * h - 0.5, moved[:, 0].reshape(h, w) * w - 0.5]
        np.stack([map_coordinates(rgb[..., c], coords, order=3, mode="nearest") for c in range(3)], -1)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--size", type=int, default=256)
    args = ap.parse_args()
    images = [generate_face(0, i, args.size, 0.1)[1] for i in range(args.n)]
    for name, fn in (("baseline (SciPy)", baseline), ("animecolor (OpenCV + coarse TPS)", ours)):
        start = time.perf_counter()
        fn(images, np.random.default_rng(0))
        rate = args.n / (time.perf_counter() - start)
        print(f"{name:34s} {rate:8.1f} pairs/s at {args.size} px, 1 core")
