"""Two characters of the Ren'Py demo in another pose than their sprites: Eileen (an arm raised, a
guitar) and Lucy (a guitar held up) from the demo's concert picture, each coloured with her own
sprite as the reference (issue 35).

    python scripts/figures/concert_poses.py --model REAL_ART.safetensors [--out docs/img/concert_poses.png]

Each figure is cropped from `concert1.png` (2400 x 1530, openly licensed, in no training data) and
shrunk to 900 px tall, drawn as the training XDoG lines, and coloured by `colorize`'s own function
with its defaults, twice: every tile's part of the reference where the laid faces put it (before
2026-12-07, `faces.LOCAL_REACH` 0) and sought by the tile's own lines as `colorize` does now. Rows:
the picture, its lines, before, now; shrunk to half.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from sprites import DEMO

import pipeline.faces
from pipeline.colorize import LINES, ColorizeOptions, colorize_layers, load_model
from pipeline.data.imageio import read_user_image
from pipeline.errors import AnimecolorError

FIGURES = {"eileen": ((1150, 0, 2300, 1530), "eileen happy.png"),  # crop box in concert1.png, her sprite
           "lucy": ((0, 280, 840, 1530), "lucy happy.png")}
HEIGHT = 900


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="an exported model file")
    ap.add_argument("--out", type=Path, default=Path("docs/img/concert_poses.png"))
    args = ap.parse_args()
    try:
        if not args.out.parent.is_dir():
            raise AnimecolorError(f"{args.out}: no folder {args.out.parent} to write it in")
        model, diffusion, info = load_model(args.model)
        scene = Image.open(DEMO / "concert1.png").convert("RGB")
    except (AnimecolorError, OSError) as e:
        print(f"concert_poses: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    reach, rows = pipeline.faces.LOCAL_REACH, []
    for name, (box, sprite) in FIGURES.items():
        crop = scene.crop(box)
        truth = np.asarray(crop.resize((round(crop.width * HEIGHT / crop.height), HEIGHT), Image.LANCZOS))
        lines = LINES.sketch(truth, 0.5)
        drawing = np.dstack([np.dstack([lines] * 3), np.full(lines.shape, 255, np.uint8)])
        row = [truth, np.dstack([lines] * 3)]
        for local in (0.0, reach):
            pipeline.faces.LOCAL_REACH = local
            (colored,), notice = colorize_layers(model, diffusion, drawing, read_user_image(DEMO / sprite),
                                                 ColorizeOptions(), [0], info=info)
            row.append(colored.image()[..., :3])
            print(f"{name}, tiles sought within {local:g} tile sides: {notice}")
        pipeline.faces.LOCAL_REACH = reach
        rows.append(np.asarray(Image.fromarray(np.hstack(row)).resize((len(row) * truth.shape[1] // 2, HEIGHT // 2),
                                                                     Image.LANCZOS)))
    width = max(r.shape[1] for r in rows)
    sheet = np.vstack([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows])
    Image.fromarray(sheet).quantize(256, method=Image.MEDIANCUT).save(args.out, optimize=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
