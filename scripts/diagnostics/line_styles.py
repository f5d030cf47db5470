"""Drawings that are not the training XDoG: the full-size benchmark with its lines in other styles.

    python scripts/diagnostics/line_styles.py --workspace RUN --model real-art=REAL_ART.safetensors
        [--model NAME=PATH ...] [--styles xdog,pencil,...] [--reline off,auto] [--faces 64] [--size 256] [--json out.json]

Users bring inked lines that are thicker, thinner, anti-aliased or without the colour edges XDoG
finds, and pencil or soft-brush drawings marked in greys. This runs the full-size benchmark's
self reference (`pipeline/evaluation/fullsize.py`, `colorize`'s own colouring as `evaluate` gives
it) on a workspace of real faces (`RUN`: a folder with `params.yaml` and the `data/raw`,
`data/faces` and `data/pairs` of a `dvc repro` or `animecolor recipe real-art` run), each test
face's drawing made from its picture in each style below instead of the XDoG of `extract-lines`,
and each model reading it with `colorize --reline` as given (`off`: as drawn; `auto`: a soft
drawing's lines drawn again by XDoG at the model's size). The upscaled truth is scored under the
same lines: what a perfect colour layer at the model's size gives with them.
"""

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "figures"))

import pipeline.evaluation.fullsize as fullsize  # noqa: E402
from pipeline.colorize import RELINES, ColorizeOptions, load_model, upscaled_truth  # noqa: E402
from pipeline.data.xdog import XDoGConfig, grey_edges, pencil  # noqa: E402
from pipeline.errors import AnimecolorError  # noqa: E402
from pipeline.model.perceptual import VGGLPIPS  # noqa: E402
from stages.common import load_params  # noqa: E402
from stages.evaluate import full_size_colour  # noqa: E402

XDOG = XDoGConfig()


def _grey(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def _thick(pixels: int):
    return lambda rgb, sigma: cv2.erode(XDOG.sketch(rgb, sigma), np.ones((pixels + 1, pixels + 1), np.uint8))


def _ink(rgb: np.ndarray, sigma: float) -> np.ndarray:
    grey = _grey(rgb).astype(np.float32)
    return np.where((grey < cv2.GaussianBlur(grey, (0, 0), 3) - 12) & (grey < 110), 0, 255).astype(np.uint8)


def _canny(rgb: np.ndarray, sigma: float) -> np.ndarray:
    return (255 - cv2.Canny(_grey(rgb), 60, 150)).astype(np.uint8)


def _anti_aliased(style):
    def drawn(rgb: np.ndarray, sigma: float) -> np.ndarray:
        big = cv2.resize(rgb, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
        return cv2.resize(style(big, sigma), (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_AREA)
    return drawn


# name: (drawing of a uint8 RGB picture at the benchmark's line sigma, what it stands for)
STYLES = {
    "xdog": (XDOG.sketch, "the training XDoG at full size (extract-lines; the benchmark's own)"),
    "thick": (_thick(1), "XDoG with its lines thickened 1 px (a 2 x 2 erosion)"),
    "thick3": (_thick(2), "XDoG with its lines thickened 2 px (a 3 x 3 erosion)"),
    "ink": (_ink, "dark strokes only (level < 110 and 12 below a 3 px blur): outlines without colour edges, hard"),
    "canny": (_canny, "Canny edges (60, 150), 1 px, hard"),
    "canny_aa": (_anti_aliased(_canny), "Canny edges drawn at twice the size and shrunk: thin anti-aliased lines"),
    "morph": (lambda rgb, sigma: grey_edges(rgb), "the grey morphological gradient (255 - 2 (dilate(grey) - grey)): "
                                                  "soft grey lines"),
    "pencil": (lambda rgb, sigma: pencil(rgb), "a pencil drawing (the grey levels dodged by their blurred "
                                              "negative, `xdog.pencil`)"),
}


class _Drawn:
    """Stands in for `XDoGConfig` in `fullsize`: each face's drawing in one style."""

    def __init__(self, style):
        self.style = style

    def sketch(self, rgb: np.ndarray, sigma: float) -> np.ndarray:
        return self.style(rgb, sigma)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workspace", type=Path, required=True, help="a run's folder: params.yaml and data/")
    ap.add_argument("--model", action="append", required=True, help="NAME=PATH of an exported model (repeatable)")
    ap.add_argument("--styles", default=",".join(STYLES), help=f"comma-separated, of: {', '.join(STYLES)}")
    ap.add_argument("--reline", default="off,auto", help="comma-separated colorize --reline values")
    ap.add_argument("--faces", type=int, default=64, help="test faces (the real-art recipe's full-size count)")
    ap.add_argument("--size", type=int, default=256, help="the faces' side in px (the full-size benchmark's 256)")
    ap.add_argument("--steps", type=int, default=10, help="DDIM steps (the benchmark's 10)")
    ap.add_argument("--json", type=Path, help="write the scores here")
    args = ap.parse_args()
    styles, relines = args.styles.split(","), args.reline.split(",")
    try:
        unknown = [s for s in styles if s not in STYLES] + [r for r in relines if r not in RELINES]
        if unknown:
            raise AnimecolorError(f"unknown style or reline {unknown[0]!r}")
        if args.faces < 1 or not 32 <= args.size <= 2048:
            raise AnimecolorError(f"--faces {args.faces} --size {args.size}: at least 1 face, 32 to 2048 px")
        models = dict(m.split("=", 1) if "=" in m else (Path(m).stem, m) for m in args.model)
        params = load_params(args.workspace / "params.yaml", "base", "pairs")
        files = {name: load_model(path) for name, path in models.items()}
        loaded = {name: (model, diffusion) for name, (model, diffusion, _) in files.items()}
        infos = {model: info for model, _, info in files.values()}  # what colorize reads from each header
    except (AnimecolorError, OSError) as exc:
        print(f"line_styles: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    data = args.workspace / "data"
    cfg = fullsize.FullSizeConfig(faces=args.faces, size=args.size, moved_ref=False)
    lpips = VGGLPIPS().eval()
    base = ColorizeOptions(sample_steps=args.steps, seed=0, match_chroma=cfg.match_chroma)
    out = {"workspace": str(args.workspace), "faces": args.faces, "size": args.size, "steps": args.steps,
           "styles": {}}
    settings, xdog = fullsize.SETTINGS, fullsize.XDoGConfig
    fullsize.SETTINGS = ("full_self_ref",)  # the self reference only
    try:
        for style in styles:
            fullsize.XDoGConfig = lambda: _Drawn(STYLES[style][0])  # noqa: B023 (used within the iteration)
            scores: dict = {}
            for reline in relines:
                colour = full_size_colour(replace(base, reline=reline), "cpu", infos)
                metrics, _, _ = fullsize.run_full_size(loaded, data / "faces", data / "pairs", data / "raw", cfg,
                                                       params["pairs"].tps, params["base"].seed, colour,
                                                       upscaled_truth, lpips, "cpu", use_animeface=False)
                for candidate, by_setting in metrics.items():
                    mean = {k: by_setting["full_self_ref"][k] for k in ("psnr", "lpips", "chroma_ratio")}
                    scores.setdefault(candidate, {})["off" if candidate == fullsize.UPSCALED_TRUTH else reline] = mean
                    print(f"{style} {candidate} reline {reline}: PSNR {mean['psnr']:.2f}, LPIPS {mean['lpips']:.4f}, "
                          f"chroma {mean['chroma_ratio']:.3f}", flush=True)
            out["styles"][style] = {"description": STYLES[style][1], "scores": scores}
    finally:
        fullsize.SETTINGS, fullsize.XDoGConfig = settings, xdog
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
