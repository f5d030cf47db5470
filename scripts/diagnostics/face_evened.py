"""A face picture evened at its own scale: the colour layer's halos and bleed at the picture's size,
and what evening its regions does to its score (issue 35).

    python scripts/diagnostics/face_evened.py --model REAL_ART.safetensors [--folder DIR] [--manifest CSV]
        [--limit 40] [--size 512] [--steps 10] [--rim-margin 10] [--json out.json] [--sheet out.png [--rows 4]]

A face picture is coloured whole: the model's colour layer, at its 64 px, is enlarged to the
picture's size under the picture's own lines, which lays a dark halo along every line and lets a
colour bleed across it. Each face (the test split of `--manifest`, a run's
`data/faces/manifest.csv`, else the folder's first files by name) is resized to `--size`, drawn
as the training XDoG lines, and coloured by `colorize`'s own function with its mirror image as
the reference, twice: as painted (`--even-regions 0`) and as `colorize` colours it by default
(its regions evened at its own scale, with the lines' gaps sealed, a pale halo beside a line
given its area's colour: `--rim-margin`). Each is scored against the
picture: PSNR, LPIPS and the chroma ratio (mean CIELAB C* of the output over the picture's).
`--sheet` draws the `--rows` faces whose PSNR moved most either way: the middle half of the
picture, as painted and evened, at full resolution.
"""

import json

import numpy as np
from PIL import Image
from skimage.color import rgb2lab

import pipeline.chroma
from face_paper import arguments, prepare  # this folder: the same faces and options
from pipeline.chroma import EVEN
from pipeline.colorize import LINES, ColorizeOptions, colorize_layers
from pipeline.model.perceptual import VGGLPIPS
from whole_figures import perceptual, psnr  # the sprites' scores, computed alike

WAYS = {"painted": 0.0, "evened": EVEN}  # --even-regions


def chroma(rgb: np.ndarray) -> float:
    """Mean CIELAB chroma of a uint8 RGB picture."""
    return float(np.hypot(*rgb2lab(rgb / 255.0)[..., 1:].transpose(2, 0, 1)).mean())


def middle(rgb: np.ndarray) -> np.ndarray:
    """The middle half of a picture (both sides), at its own resolution."""
    h, w = rgb.shape[:2]
    return rgb[h // 4:h // 4 + h // 2, w // 4:w // 4 + w // 2]


def main() -> None:
    ap = arguments(__doc__.split("\n\n")[0], 512, "also draw the faces whose PSNR moved most here (PNG)", 4)
    ap.add_argument("--rim-margin", type=float, default=pipeline.chroma.RIM_MARGIN,
                    help="evened: a pixel beside a line paler than its area by more than this L* takes its colour "
                         "(chroma.RIM_MARGIN; 100: never, as before 2026-12-08)")
    args = ap.parse_args()
    if not 0 <= args.rim_margin <= 100:  # NaN fails too
        ap.error(f"--rim-margin {args.rim_margin:g}: an L* difference from 0 to 100")
    pipeline.chroma.RIM_MARGIN = args.rim_margin
    todo, model, diffusion, info = prepare(args, "face_evened")
    lpips = VGGLPIPS().eval()
    rows, pictures = [], {}
    for path in todo:
        with Image.open(path) as im:
            truth = np.asarray(im.convert("RGB").resize((args.size, args.size), Image.LANCZOS))
        lines = LINES.sketch(truth, 0.5)
        opaque = lambda rgb: np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])  # noqa: E731
        drawing, reference = opaque(np.dstack([lines] * 3)), opaque(np.ascontiguousarray(truth[:, ::-1]))
        row, shown = {"face": path.name}, [middle(truth)]
        for way, even in WAYS.items():
            opts = ColorizeOptions(sample_steps=args.steps, seed=0, mode="lines", even_regions=even)
            (colored,), _ = colorize_layers(model, diffusion, drawing, reference, opts, [0], info=info)
            out = colored.image()[..., :3]
            shown.append(middle(out))
            row[way] = {"psnr": psnr(out, truth, np.ones(truth.shape[:2], bool)),
                        "lpips": perceptual(lpips, out, truth), "chroma_ratio": chroma(out) / max(chroma(truth), 1e-6)}
        rows.append(row)
        pictures[path.name] = np.hstack(shown)
        print(f"{path.name}: " + " | ".join(f"{w} {row[w]['psnr']:.2f} dB LPIPS {row[w]['lpips']:.4f}" for w in WAYS),
              flush=True)
    keys = ("psnr", "lpips", "chroma_ratio")
    means = {w: {k: float(np.mean([r[w][k] for r in rows])) for k in keys} for w in WAYS}
    gained = sum(r["evened"]["psnr"] > r["painted"]["psnr"] for r in rows)
    print(f"\n{len(rows)} faces at {args.size} px, {args.model}, {args.steps} steps; PSNR up in {gained}")
    print("| way | psnr | lpips | chroma ratio |\n|---|---|---|---|")
    for w in WAYS:
        print(f"| {w} | {means[w]['psnr']:.2f} | {means[w]['lpips']:.4f} | {means[w]['chroma_ratio']:.3f} |")
    if args.sheet:
        moved = sorted(rows, key=lambda r: -abs(r["evened"]["psnr"] - r["painted"]["psnr"]))[:args.rows]
        Image.fromarray(np.vstack([pictures[r["face"]] for r in moved])).save(args.sheet)
    if args.json:
        args.json.write_text(json.dumps({"model": str(args.model), "size": args.size, "steps": args.steps,
                                         "rim_margin": args.rim_margin,
                                         "faces": len(rows), "gained": gained, "mean": means, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
