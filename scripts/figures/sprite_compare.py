"""Models side by side on real anime art they never saw (README figures; issue 14's check on faces
that were never in the training data).

    python scripts/figures/sprite_compare.py --model diffusion=A.safetensors --model regression=B.safetensors \
        [--steps 10] [--face-size 256] [--full [--passes | --figure | --even | --firm | --align | --paper | --scan | --pencil] [--mirror]] [--chroma] \
        [--out docs/img/sprites_compare.png]

The drawings and references are face crops of the Ren'Py sprites of Debian's `renpy-thequestion`
and `renpy-demo` (`sprites.py`), the drawing turned into lines by the training XDoG. The first
three pairs take the same character in another outfit or mood as the reference, the last three
another character (the random-reference setting). `--face-size` is the side the faces are cropped
at (what `colorize` gets; default twice the model's size), `--full` takes the whole sprites at their
own size instead (transparent background kept, shown on white), and `--passes` shows each model's
whole-picture pass alone, with the face pass and with the figure's face-sized tiles (`faces.py`:
colorize's default is all three); `--chroma` shows each model with its own chroma
(`--match-chroma 0`) and with colorize's default match to the reference's (`chroma.py`); `--figure`
(with `--full`) shows each model's tiles as they were mixed before 2026-12-06 (a plain feathered
mean, the model's own lightness: `faces.CONFIDENCE_POWER` 0, `--match-lightness 0`, `--even-regions 0`)
and as colorize mixes them now (each tile pixel weighted by its colour's firmness, the figure's
lightness half-way to the reference's, its regions evened out); `--even` (with `--full`) shows each
model without and with the figure's colours evened out inside its line-enclosed regions
(`--even-regions 0` and colorize's default); `--firm` (with `--full`) shows each model with a
pixel's firmness (its weight in the tiles' mix and the evening out) by its chroma alone, as before
2026-12-07 (`chroma.FIRM_DARK` 0), and as colorize weighs it now (a dark colour firm too);
`--align` (with `--full`) shows each model without
and with the reference laid on the drawing by its lines (`--no-align` and colorize's default,
`faces.register`); `--paper` (with `--full`) gives each drawing on white paper without the
sprite's alpha and shows each model with the paper painted by the model and kept as drawn
(`--paint-paper` and colorize's default `--keep-paper`); `--scan` (with `--full`) gives each drawing
as a phone photo of its lines on cream paper (`sprites.scan_photo`) and shows each model with it
traced by XDoG, as colorize read such a photo before 2026-12-06 (`--mode xdog`), and as colorize
reads it now (`--mode auto`, `--auto-levels`); `--pencil` (with `--full`) gives each drawing as a
pencil drawing of the sprite (`xdog.pencil`) and shows each model reading it as drawn
(`--reline off`) and as colorize reads it by default (`--reline auto`: its lines drawn again by
XDoG at the model's size); `--mirror` mirrors every reference first. Rows: pairs; columns: line drawing,
reference, then each model (seed 0, guidance 1). Printed: per model, animeface's hair and eye
colours of each output against the reference's (CIEDE2000, the benchmark's `af_de_*`; '-' where
animeface finds no face), so a look at six pairs comes with numbers, not a verdict.
"""

import argparse

import numpy as np
import torch
from sprites import DEMO, QUESTION, face, rgba, scan_photo

import pipeline.chroma
import pipeline.faces
from pipeline.chroma import EVEN
from pipeline.chroma import STRENGTH as MATCH_CHROMA
from pipeline.colorize import LINES, ColorizeOptions, colorize_image, letterbox, load_model
from pipeline.data.imageio import flatten_alpha, read_user_image, write_png
from pipeline.data.xdog import pencil
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
    ap.add_argument("--face-size", type=int, default=0, help="side of the face crops in px (0: twice the model's)")
    ap.add_argument("--full", action="store_true", help="whole sprites at their own size instead of face crops")
    ap.add_argument("--passes", action="store_true", help="with --full: each model three times, the whole picture "
                                                         "alone, + the face pass, + the figure's tiles (faces.py)")
    ap.add_argument("--chroma", action="store_true", help="each model twice: its own chroma (--match-chroma 0) "
                                                         "and colorize's default match to the reference's")
    ap.add_argument("--figure", action="store_true", help="with --full: each model twice, the tiles' plain mean with "
                                                         "the model's lightness (before 2026-12-06) and colorize's "
                                                         "default (firm tiles, the figure's lightness matched, its regions evened out)")
    ap.add_argument("--even", action="store_true", help="with --full: each model twice, without and with the "
                                                       "figure's regions evened out (--even-regions 0 and default)")
    ap.add_argument("--firm", action="store_true", help="with --full: each model twice, a pixel's firmness by its "
                                                       "chroma alone (before 2026-12-07) and as colorize weighs it")
    ap.add_argument("--align", action="store_true", help="with --full: each model twice, without and with the "
                                                        "reference laid on the drawing by its lines "
                                                        "(--no-align and default)")
    ap.add_argument("--paper", action="store_true", help="with --full: the drawings on white paper (no alpha), each "
                                                        "model twice: --paint-paper and default (--keep-paper)")
    ap.add_argument("--scan", action="store_true", help="with --full: the drawings as phone photos on cream paper, "
                                                       "each model twice: traced (--mode xdog) and default")
    ap.add_argument("--pencil", action="store_true", help="with --full: the drawings as pencil drawings, each "
                                                         "model twice: --reline off and default (auto)")
    ap.add_argument("--mirror", action="store_true", help="with --full: every reference mirrored left to right")
    ap.add_argument("--tile", type=int, default=360, help="largest side of a cell of the sheet in px")
    ap.add_argument("--out", default="docs/img/sprites_compare.png")
    args = ap.parse_args()
    bad = [spec for spec in args.model if "=" not in spec.strip("=")]
    if bad:
        ap.error(f"--model {bad[0]!r}: expected NAME=PATH")
    models = dict(spec.split("=", 1) for spec in args.model)
    views = (args.passes, args.figure, args.even, args.firm, args.align, args.paper, args.scan, args.pencil)
    if (any(views) or args.mirror) and not args.full:
        ap.error("--passes, --figure, --even, --firm, --align, --paper, --scan, --pencil and --mirror need --full "
                 "(face crops get no face pass)")
    if sum(views) + args.chroma > 1:
        ap.error("--passes, --chroma, --figure, --even, --firm, --align, --paper, --scan and --pencil: one at a time")
    passes = {"": {}}
    power, dark = pipeline.faces.CONFIDENCE_POWER, pipeline.chroma.FIRM_DARK
    if args.figure:
        passes = {" before": dict(match_lightness=0.0, confidence_power=0.0, even_regions=0.0), " now": {}}
    elif args.even:
        passes = {" not evened": dict(even_regions=0.0), f" evened {EVEN:g}": {}}
    elif args.firm:
        passes = {" chroma firm": dict(firm_dark=0.0), " dark firm": {}}
    elif args.align:
        passes = {" not laid": dict(align=False), " laid": {}}
    elif args.paper:
        passes = {" paint paper": dict(keep_paper=False), " keep paper": {}}
    elif args.scan:
        passes = {" traced": dict(mode="xdog"), " levelled": dict(mode="auto")}
    elif args.pencil:
        passes = {" as drawn": dict(reline="off"), " relined": {}}
    elif args.passes:
        passes = {" whole": dict(faces=False), " +faces": dict(tiles=False), " +tiles": {}}
    elif args.chroma:
        passes = {" own chroma": dict(match_chroma=0.0), f" chroma {MATCH_CHROMA:g}": {}}
    try:
        loaded = {name: load_model(path) for name, path in models.items()}
    except AnimecolorError as e:
        raise SystemExit(f"error: {e}") from None
    size = args.face_size or 2 * next(iter(loaded.values()))[2]["image_size"]
    if args.full:
        sprites = [(read_user_image(d), read_user_image(r)) for d, r in PAIRS]
        if args.mirror:
            sprites = [(d, np.ascontiguousarray(r[:, ::-1])) for d, r in sprites]
        crops = [(flatten_alpha(d), flatten_alpha(r)) for d, r in sprites]
        lines = [pencil(rgb) if args.pencil else LINES.sketch(rgb, 0.5) for rgb, _ in crops]
        drawings = [np.dstack([scan_photo(line, path.name) if args.scan else np.dstack([line] * 3),
                               np.full_like(sprite[..., 3], 255) if args.paper or args.scan else sprite[..., 3]])
                    for line, (sprite, _), (path, _) in zip(lines, sprites, PAIRS)]  # alpha kept (or paper): so is the output's
        size = max(max(d.shape[:2]) for d, _ in crops)
    else:
        crops = [(face(d, size), face(r, size)) for d, r in PAIRS]
        drawings = [rgba(LINES.sketch(target, 0.5)) for target, _ in crops]
    references = [sprite for _, sprite in sprites] if args.full else [rgba(ref) for _, ref in crops]  # as colorize reads
    tiles, outputs = [], {name + label: [] for name in loaded for label in passes}
    for drawing, (_, ref), reference in zip(drawings, crops, references):
        tiles += [flatten_alpha(drawing), ref]
        for name, (model, diffusion, info) in loaded.items():
            for label, kw in passes.items():
                kw = dict(kw)
                pipeline.faces.CONFIDENCE_POWER = kw.pop("confidence_power", power)  # 0: every tile pixel weighs 1
                pipeline.chroma.FIRM_DARK = kw.pop("firm_dark", dark)  # 0: firm by chroma alone
                opts = ColorizeOptions(**{"sample_steps": args.steps, "seed": 0, "mode": "lines", **kw})
                out = colorize_image(model, diffusion, drawing, reference, opts, info=info)[0]
                out = flatten_alpha(out) if out.shape[-1] == 4 else out
                outputs[name + label].append(out)
                tiles.append(out)
    tile = min(size, max(args.tile, 16))
    if args.full:  # whole sprites are not square: letterboxed on white, shrunk smoothly
        tiles = [letterbox(t, tile)[0] for t in tiles]
    write_png(args.out, contact_sheet(tiles, ncol=2 + len(outputs), tile=tile, pad=4))
    as_tensor = lambda images: torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255  # noqa: E731
    found = lambda images: np.concatenate([animeface_attributes(as_tensor([im])) for im in images])  # noqa: E731
    expected = found([ref for _, ref in crops])  # one at a time: whole sprites differ in size
    print(f"wrote {args.out}; CIEDE2000 from the reference's colours (animeface), pairs 1-3 same character, 4-6 another")
    for name, images in outputs.items():
        errors = attribute_errors(found(images), expected, ANIMEFACE_ATTRIBUTES)
        for attr, values in errors.items():
            cells = " ".join("-" if np.isnan(v) else f"{v:5.1f}" for v in values)
            print(f"{name:>12} {attr:>9}: {cells}  mean {np.nanmean(values):.1f}")


if __name__ == "__main__":
    main()
