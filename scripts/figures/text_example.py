"""Make docs/img/text_prompts_real.png: colour prompts on real anime art the pipeline never saw.

    python scripts/figures/text_example.py [--model models/animecolor.safetensors]

The drawings are the face crops (animeface, as `clean` crops them) of the openly licensed Ren'Py
sprites in Debian's `renpy-thequestion` (never in the training data), turned into
lines by the training XDoG. Each row: line drawing | reference (the same character in another
outfit) | no prompt | three prompts (columns labelled in the README). The last row has no
reference at all: the prompt alone.
"""

import argparse
from pathlib import Path

import numpy as np
from sprites import QUESTION as SPRITES
from sprites import face, rgba

from pipeline.colorize import LINES, ColorizeOptions, colorize_image, load_model
from pipeline.data.imageio import write_png
from pipeline.model.defaults import SAMPLING
from pipeline.report import contact_sheet

PAIRS = [("sylvie green normal.png", "sylvie blue smile.png"), ("sylvie blue giggle.png", "sylvie green smile.png")]
PROMPTS = ("", "pink hair", "left eye red, right eye blue", "aqua hair, yellow eyes, black clothes")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/animecolor.safetensors")
    ap.add_argument("--out", default="docs/img/text_prompts_real.png")
    ap.add_argument("--text-guidance", type=float, default=SAMPLING.text_guidance)  # colorize's default
    args = ap.parse_args()
    if not SPRITES.is_dir():
        raise SystemExit("apt-get install renpy-thequestion first (the sprites come from it)")
    model, diffusion, info = load_model(args.model)
    size = info["image_size"]
    rows = []
    for drawing, reference in PAIRS + [(PAIRS[0][0], None)]:
        target = face(SPRITES / drawing, 2 * size)
        sketch = LINES.sketch(target, 0.5)
        ref = face(SPRITES / reference, 2 * size) if reference else np.full_like(target, 128)
        row = [np.dstack([sketch] * 3), ref]
        for prompt in PROMPTS:
            if reference is None and not prompt:
                row.append(np.full_like(target, 255))  # nothing to colour from
                continue
            opts = ColorizeOptions(sample_steps=20, seed=1, mode="lines", prompt=prompt,
                                   text_guidance=args.text_guidance)
            row.append(colorize_image(model, diffusion, rgba(sketch), rgba(ref) if reference else None, opts,
                                      info=info)[0])
        rows.append(row)
    sheet = contact_sheet([im for row in rows for im in row], ncol=len(rows[0]), tile=4 * size, pad=8)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_png(args.out, sheet)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
