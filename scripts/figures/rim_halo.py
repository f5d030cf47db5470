"""Close-ups of whole sprites coloured by `colorize`'s own function with the pale halos beside their
lines left as painted and given their areas' colour (`chroma.darken_rim`), beside the truth.

    python scripts/figures/rim_halo.py --model REAL_ART.safetensors [--steps 10] [--zoom 2] --out docs/img/rim_halo.png

Each row is one sprite pair of `whole_figures.py` (the drawing the sprite's training XDoG lines with
its alpha, the reference the other sprite, colorize's default options), cropped to a box where its
lines run inside a dark area: the colour as painted beside the lines (`RIM_MARGIN` 100, before
2026-12-08), now, and the sprite itself, each enlarged `--zoom` times (nearest neighbour).
"""

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sprites import DEMO, QUESTION  # noqa: E402

import pipeline.chroma  # noqa: E402
from pipeline.colorize import LINES, ColorizeOptions, colorize_layers, load_model  # noqa: E402
from pipeline.data.imageio import flatten_alpha, read_user_image  # noqa: E402
from pipeline.errors import AnimecolorError  # noqa: E402

# (drawing, reference, crop box x0, y0, x1, y1 in the drawing's pixels)
ROWS = ((DEMO / "eileen happy.png", DEMO / "eileen concerned.png", (40, 300, 300, 520)),
        (QUESTION / "sylvie blue giggle.png", QUESTION / "sylvie blue normal.png", (60, 60, 320, 280)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="an exported model file")
    ap.add_argument("--steps", type=int, default=10, help="DDIM steps (the benchmark's 10)")
    ap.add_argument("--zoom", type=int, default=2, help="each crop enlarged this many times")
    ap.add_argument("--out", type=Path, required=True, help="the PNG to write")
    args = ap.parse_args()
    if args.steps < 1 or not 1 <= args.zoom <= 8:
        ap.error("--steps at least 1, --zoom 1 to 8")
    missing = [str(p) for row in ROWS for p in row[:2] if not p.is_file()]
    if missing:
        raise SystemExit(f"missing {missing[0]}: apt-get install renpy-thequestion renpy-demo")
    try:
        model, diffusion, info = load_model(args.model)
    except AnimecolorError as err:
        raise SystemExit(str(err)) from None
    margin = pipeline.chroma.RIM_MARGIN
    strips = []
    for drawing_path, reference_path, (x0, y0, x1, y1) in ROWS:
        sprite, reference = read_user_image(drawing_path), read_user_image(reference_path)
        truth = flatten_alpha(sprite)
        drawing = np.dstack([np.dstack([LINES.sketch(truth, 0.5)] * 3), sprite[..., 3]])
        opts = ColorizeOptions(sample_steps=args.steps, seed=0, mode="lines")
        crops = []
        for rim_margin in (100.0, margin):
            pipeline.chroma.RIM_MARGIN = rim_margin
            (colored,), _ = colorize_layers(model, diffusion, drawing, reference, opts, [0], info=info)
            crops.append(flatten_alpha(colored.image())[y0:y1, x0:x1])
        pipeline.chroma.RIM_MARGIN = margin
        crops.append(truth[y0:y1, x0:x1])
        gap = np.full((y1 - y0, 4, 3), 255, np.uint8)
        strips.append(np.concatenate([crops[0], gap, crops[1], gap, crops[2]], 1))
    width = max(s.shape[1] for s in strips)
    rows = [np.pad(s, ((0, 4), (0, width - s.shape[1]), (0, 0)), constant_values=255) for s in strips]
    sheet = np.concatenate(rows, 0).repeat(args.zoom, 0).repeat(args.zoom, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).quantize(256).save(args.out, optimize=True)
    print(f"wrote {args.out} ({sheet.shape[1]} x {sheet.shape[0]} px)")


if __name__ == "__main__":
    main()
