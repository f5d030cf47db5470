"""Models side by side on real anime art they never saw (README figures; issue 14's check on faces
that were never in the training data).

    python scripts/figures/sprite_compare.py --model diffusion=A.safetensors --model regression=B.safetensors \
        [--steps 10] [--out docs/img/sprites_compare.png]

The drawings and references are face crops of the Ren'Py sprites of Debian's `renpy-thequestion`
and `renpy-demo` (`sprites.py`), the drawing turned into lines by the training XDoG. The first
three pairs take the same character in another outfit or mood as the reference, the last three
another character (the random-reference setting). Rows: pairs; columns: line drawing,
reference, then each model (seed 0, guidance 1). Printed: per model, animeface's hair and eye
colours of each output against the reference's (CIEDE2000, the benchmark's `af_de_*`; '-' where
animeface finds no face), so a look at six pairs comes with numbers, not a verdict.
"""

import argparse

import numpy as np
import torch
from sprites import DEMO, QUESTION, face, rgba

from pipeline.colorize import LINES, ColorizeOptions, colorize_image, load_model
from pipeline.data.imageio import write_png
from pipeline.errors import AnimecolorError
from pipeline.evaluation.features import ANIMEFACE_ATTRIBUTES, animeface_attributes
from pipeline.evaluation.metrics import attribute_errors
from pipeline.report import contact_sheet

PAIRS = [  # (drawing, reference)
    (QUESTION / "sylvie green normal.png", QUESTION / "sylvie blue smile.png"),
    (DEMO / "eileen happy.png", DEMO / "eileen concerned.png"),
    (DEMO / "lucy mad.png", DEMO / "lucy happy.png"),
    (QUESTION / "sylvie blue giggle.png", DEMO / "eileen vhappy.png"),
    (DEMO / "eileen happy.png", DEMO / "lucy happy.png"),
    (DEMO / "lucy mad.png", QUESTION / "sylvie green smile.png"),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", action="append", required=True, help="NAME=PATH of an exported model (repeatable)")
    ap.add_argument("--steps", type=int, default=10, help="DDIM steps (the benchmark's 10)")
    ap.add_argument("--out", default="docs/img/sprites_compare.png")
    args = ap.parse_args()
    bad = [spec for spec in args.model if "=" not in spec.strip("=")]
    if bad:
        ap.error(f"--model {bad[0]!r}: expected NAME=PATH")
    models = dict(spec.split("=", 1) for spec in args.model)
    try:
        loaded = {name: load_model(path) for name, path in models.items()}
    except AnimecolorError as e:
        raise SystemExit(f"error: {e}") from None
    size = next(iter(loaded.values()))[2]["image_size"]
    crops = [(face(d, 2 * size), face(r, 2 * size)) for d, r in PAIRS]
    tiles, outputs = [], {name: [] for name in loaded}
    for target, ref in crops:
        sketch = LINES.sketch(target, 0.5)
        tiles += [np.dstack([sketch] * 3), ref]
        for name, (model, diffusion, info) in loaded.items():
            opts = ColorizeOptions(sample_steps=args.steps, seed=0, mode="lines")
            out = colorize_image(model, diffusion, rgba(sketch), rgba(ref), opts, info=info)[0]
            outputs[name].append(out)
            tiles.append(out)
    write_png(args.out, contact_sheet(tiles, ncol=2 + len(loaded), tile=2 * size, pad=4))
    as_tensor = lambda images: torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255  # noqa: E731
    expected = animeface_attributes(as_tensor([ref for _, ref in crops]))
    print(f"wrote {args.out}; CIEDE2000 from the reference's colours (animeface), pairs 1-3 same character, 4-6 another")
    for name, images in outputs.items():
        errors = attribute_errors(animeface_attributes(as_tensor(images)), expected, ANIMEFACE_ATTRIBUTES)
        for attr, values in errors.items():
            cells = " ".join("-" if np.isnan(v) else f"{v:5.1f}" for v in values)
            print(f"{name:>12} {attr:>9}: {cells}  mean {np.nanmean(values):.1f}")


if __name__ == "__main__":
    main()
