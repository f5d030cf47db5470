"""Make docs/img/colorize_example.png: the pipeline's own model on held-out synthetic drawings.

    python scripts/figures/readme_example.py [--model models/animecolor.safetensors]

The faces come from a crawl seed the pipeline never trains on (base.seed is 0; these use
seed 777), at an odd portrait size, so the example also shows the letterboxing. Each row:
line drawing (made with `extract-lines`' XDoG) | reference | colorized (guidance 1) |
colorized (guidance 2) | the original colours of the drawing. Row 1 uses the drawing's own
character as reference (warped), rows 2-3 another character.
"""

import argparse
from pathlib import Path

import cv2
import numpy as np

from pipeline.colorize import ColorizeOptions, colorize_image, load_model
from pipeline.data.imageio import write_png
from pipeline.data.synthetic import generate_face
from pipeline.data.tps import TPSConfig, apply_warp, random_warp
from pipeline.data.xdog import XDoGConfig


def rgba(rgb: np.ndarray) -> np.ndarray:
    return np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/animecolor.safetensors")
    ap.add_argument("--out", default="docs/img/colorize_example.png")
    args = ap.parse_args()
    model, diffusion, info = load_model(args.model)
    size = info["image_size"]
    rng = np.random.default_rng(0)
    faces = [generate_face(777, i, 2 * size, 0.3)[1] for i in range(6)]
    faces = [cv2.resize(f, (int(2 * size * 0.8) | 1, 2 * size), interpolation=cv2.INTER_AREA) for f in faces]
    rows = []
    for drawing, ref in [(0, 0), (1, 2), (3, 4)]:
        target = faces[drawing]
        reference = faces[ref]
        if drawing == ref:
            reference = apply_warp(reference, random_warp(TPSConfig(), rng, *reference.shape[:2]))
        sketch = XDoGConfig().sketch(target, 0.5)
        outs = [colorize_image(model, diffusion, rgba(np.dstack([sketch] * 3)), rgba(reference),
                               ColorizeOptions(sample_steps=20, guidance=g, seed=1, mode="lines"))[0] for g in (1.0, 2.0)]
        rows += [np.dstack([sketch] * 3), reference, *outs, target]
    h, w = rows[0].shape[:2]
    gap = 4
    sheet = np.full((3 * (h + gap) + gap, 5 * (w + gap) + gap, 3), 255, np.uint8)
    for i, im in enumerate(rows):  # every image keeps the drawing's own portrait aspect
        r, c = divmod(i, 5)
        sheet[gap + r * (h + gap):gap + r * (h + gap) + h, gap + c * (w + gap):gap + c * (w + gap) + w] = im
    sheet = cv2.resize(sheet, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_png(args.out, sheet)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
