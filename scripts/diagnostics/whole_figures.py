"""Whole figures at their own size, scored against the truth: what the face pass buys (issue 35).

    python scripts/diagnostics/whole_figures.py --model REAL_ART.safetensors [--steps 10] [--limit N] [--group NAME] [--json out.json]
        [--tile-scale S] [--match-lightness L] [--even-regions E] [--firm-dark D] [--mirror-reference] [--warp-reference S]
        [--no-align] [--local-reach R]
        [--paper [--paint-paper] [--paper-reach R]] [--scan] [--pencil] [--reline auto|on|off] [--opaque-reference]

The Ren'Py sprites of Debian's `renpy-thequestion` and `renpy-demo` (openly licensed, 456-720 px
tall, transparent backgrounds, in no training data) give pairs of one character in one outfit
with another expression: Sylvie in blue (4 sprites), Sylvie in green (4), Eileen (3), Lucy (2),
every ordered pair, 32 in all. The drawing is a sprite's lines (the training XDoG at full size,
its alpha kept), the reference the other sprite, and the truth the drawing's own colours, so
the output can be scored like the full-size benchmark: PSNR and the chroma ratio over the
sprite's opaque pixels, LPIPS on the picture on white, and the same inside the face's square
(animeface on the truth, `clean`'s margin). Each drawing is coloured by `colorize`'s own function
with the face pass (`faces.py`) and without it, all three with the model's own chroma
(`--match-chroma 0`); `tiles_chroma` is the tiles with the reference's saturation matched as
`colorize` does by default (`chroma.py`, `--match-chroma`); the tiles are `--tile-scale`
times the face square's side (`colorize --tile-scale`), and `face_pass`, `tiles` and `tiles_chroma`
take the reference's lightness on the figure outside its faces as `colorize --match-lightness`
does (the default, 0.5), and the figure's colours evened out inside its line-enclosed regions
as `colorize --even-regions` (the default, 0.3), each pixel of the tiles' mix and of the evening
out weighted by its firmness (`chroma.firmness`; `--firm-dark 0`: by its chroma alone, as before
2026-12-07); the face pass and the tiles take their parts of
the reference laid on the drawing by its lines as `colorize --align` does (the default;
`--no-align`: by the two face squares alone), each tile's part then sought near there by the
tile's own lines (`faces.local_source`; `--local-reach 0`: where the laid faces put it, as before
2026-12-07). `--mirror-reference` flips every reference left to right: a reference in another
layout than the drawing's; `--warp-reference S` bends it by a random thin-plate warp of strength S
(`pairs.tps`'s random scheme, seeded by the file's name): its parts moved against each other, as
in another pose. `--paper` gives each drawing as its
lines on white paper, without the sprite's alpha (as most drawings come): the figure is then told
from the paper by the lines alone, and `background_off_white` is the share of the sprite's
transparent background that comes out more than 20 levels off white; `--paint-paper` leaves the
model's colours on that paper (`colorize --paint-paper`) instead of keeping it as drawn. `--paper-reach 0`
judges each paper area by its tint alone, as before 2026-12-07 (`colorize.PAPER_REACH`).
`--scan` (implies `--paper`) gives each drawing as a phone photo of it would come: the lines
printed on cream paper, the light falling off across the page to 0.72 of its brightest, grain
and a JPEG at quality 60 (`sprites.scan_photo`, seeded by the file's name), read as `colorize` reads a
file by default (`--mode auto`).
`--pencil` gives each drawing as a pencil drawing of the sprite instead of its XDoG lines (soft
grey strokes and shading, `xdog.pencil`), and `--reline` how `colorize` reads it (`colorize
--reline`, auto by default: a pencil drawing's lines drawn again by XDoG at the model's size).
`--opaque-reference` gives each reference flattened on white, without its alpha, as a JPEG or
any picture without transparency comes. The upscaled truth (the
truth through the compositor at the model's size, `colorize.upscaled_truth`) is what a perfect
whole-picture pass at that size would give.
"""

import argparse
import hashlib
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "figures"))
from sprites import DEMO, QUESTION, scan_photo  # noqa: E402

import pipeline.chroma  # noqa: E402
import pipeline.colorize  # noqa: E402
import pipeline.faces  # noqa: E402
from pipeline.chroma import EVEN as EVEN_REGIONS  # noqa: E402
from pipeline.chroma import LIGHTNESS as MATCH_LIGHTNESS  # noqa: E402
from pipeline.chroma import STRENGTH as MATCH_CHROMA  # noqa: E402
from pipeline.colorize import (LINES, ColorizeOptions, check_options, colorize_layers, load_model,  # noqa: E402
                               upscaled_truth)
from pipeline.data.imageio import flatten_alpha, read_user_image  # noqa: E402
from pipeline.data.tps import TPSConfig, apply_warp, random_warp  # noqa: E402
from pipeline.data.xdog import pencil  # noqa: E402
from pipeline.errors import AnimecolorError  # noqa: E402
from pipeline.evaluation.fullsize import chroma_ratio  # noqa: E402
from pipeline.faces import CONFIDENCE_POWER, Square, largest_face_square  # noqa: E402
from pipeline.model.defaults import TILE_SCALE  # noqa: E402
from pipeline.model.perceptual import VGGLPIPS  # noqa: E402

CANDIDATES = ("whole", "face_pass", "tiles", "tiles_chroma", "upscaled_truth")
GROUPS = {
    "sylvie blue": [QUESTION / f"sylvie blue {m}.png" for m in ("normal", "smile", "giggle", "surprised")],
    "sylvie green": [QUESTION / f"sylvie green {m}.png" for m in ("normal", "smile", "giggle", "surprised")],
    "eileen": [DEMO / f"eileen {m}.png" for m in ("happy", "concerned", "vhappy")],
    "lucy": [DEMO / f"lucy {m}.png" for m in ("happy", "mad")],
}


def pairs(groups: list[str] | None = None) -> list[tuple[Path, Path]]:
    """Every ordered pair of `groups`' sprites (names of `GROUPS`, checked by `--group`'s choices; None: all)."""
    out = [pair for name, paths in GROUPS.items() if not groups or name in groups
           for pair in itertools.permutations(paths, 2)]
    missing = sorted({str(p) for pair in out for p in pair if not p.is_file()})
    if missing:
        raise AnimecolorError(f"{missing[0]} is missing: apt-get install renpy-thequestion renpy-demo")
    return out


def off_white(image: np.ndarray, mask: np.ndarray, levels: int = 20) -> float:
    """The share of `mask`'s pixels of `image` (uint8 RGB) more than `levels` off white in any channel."""
    return float(((255 - image[mask].astype(int)).max(-1) > levels).mean())


def psnr(out: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    err = ((out.astype(np.float64) - truth.astype(np.float64)) ** 2)[mask].mean()
    return float(10 * np.log10(255.0 ** 2 / max(err, 1e-10)))


def perceptual(lpips: VGGLPIPS, out: np.ndarray, truth: np.ndarray) -> float:
    """LPIPS between two uint8 RGB pictures."""
    as_tensor = lambda image: torch.from_numpy(image).permute(2, 0, 1)[None].float() / 127.5 - 1  # noqa: E731
    with torch.no_grad():
        return float(lpips(as_tensor(out), as_tensor(truth)).mean())


def scores(out: np.ndarray, truth: np.ndarray, opaque: np.ndarray, face: Square | None, lpips: VGGLPIPS) -> dict:
    row = {"psnr": psnr(out, truth, opaque), "lpips": perceptual(lpips, out, truth),
           "chroma_ratio": float(chroma_ratio(out[opaque][None, :, None], truth[opaque][None, :, None])[0])}
    if face is not None:
        o, t, m = face.crop(out), face.crop(truth), face.crop(np.dstack([opaque] * 3))[..., 0] > 0
        row |= {"face_psnr": psnr(o, t, m), "face_chroma_ratio": float(chroma_ratio(o[m][None, :, None],
                                                                                     t[m][None, :, None])[0])}
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="models/animecolor.safetensors", help="an exported model file")
    ap.add_argument("--steps", type=int, default=10, help="DDIM steps (the benchmark's 10)")
    ap.add_argument("--limit", type=int, default=0, help="the first N pairs only (0: all 32)")
    ap.add_argument("--group", action="append", choices=list(GROUPS),
                    help="only this character's pairs (repeatable; default: all four)")
    ap.add_argument("--json", type=Path, help="also write the per-pair and mean scores here")
    ap.add_argument("--match-chroma", type=float, default=MATCH_CHROMA,
                    help="tiles_chroma's strength (colorize --match-chroma)")
    ap.add_argument("--match-lightness", type=float, default=MATCH_LIGHTNESS,
                    help="the figure's lightness outside its faces matched to the reference's "
                         "(colorize --match-lightness)")
    ap.add_argument("--even-regions", type=float, default=EVEN_REGIONS,
                    help="the figure's colours evened out inside its line-enclosed regions, sigma in face "
                         "sides (colorize --even-regions; 0: off)")
    ap.add_argument("--rim-margin", type=float, default=pipeline.chroma.RIM_MARGIN,
                    help="a pixel beside a line paler than its evened area by more than this L* takes its colour "
                         "(chroma.RIM_MARGIN; 100: never, as before 2026-12-08)")
    ap.add_argument("--firm-dark", type=float, default=pipeline.chroma.FIRM_DARK,
                    help="a pixel's darkness, its L* below this, counts in its firmness (chroma.FIRM_DARK; 0: "
                         "chroma alone, as before 2026-12-07)")
    ap.add_argument("--tile-scale", type=float, default=TILE_SCALE,
                    help="the tiles' side, times the face square's (colorize --tile-scale)")
    ap.add_argument("--local-reach", type=float, default=pipeline.faces.LOCAL_REACH,
                    help="each tile's part of the reference sought by its own lines up to this many tile sides "
                         "away (faces.LOCAL_REACH; 0: where the laid faces put it, as before 2026-12-07)")
    ap.add_argument("--no-align", dest="align", action="store_false",
                    help="the reference's parts by the two face squares alone (colorize --no-align)")
    ap.add_argument("--paper", action="store_true",
                    help="each drawing as its lines on white paper, without the sprite's alpha")
    ap.add_argument("--paint-paper", dest="keep_paper", action="store_false",
                    help="with --paper: the model's colours on the paper around the figure (colorize --paint-paper)")
    ap.add_argument("--scan", action="store_true",
                    help="each drawing as a phone photo of its lines on cream paper (implies --paper), read "
                         "as colorize reads a file (--mode auto)")
    ap.add_argument("--pencil", action="store_true",
                    help="each drawing as a pencil drawing of the sprite (xdog.pencil), not its XDoG lines")
    ap.add_argument("--reline", default="auto", help="auto | on | off (colorize --reline)")
    ap.add_argument("--paper-reach", type=float, default=pipeline.colorize.PAPER_REACH,
                    help="with --paper: a paper area is told from the figure's pixels within this many face sides "
                         "(colorize.PAPER_REACH, hints.plain_paper; 0: by its tint alone, as before 2026-12-07)")
    ap.add_argument("--opaque-reference", action="store_true",
                    help="each reference flattened on white, without its alpha (as a JPEG comes)")
    ap.add_argument("--warp-reference", type=float, default=0.0,
                    help="bend every reference by a random thin-plate warp of this strength (pairs.tps's random "
                         "scheme, 4x4 control points, seeded by the file's name): its parts moved against each "
                         "other, as in another pose (0: off)")
    ap.add_argument("--mirror-reference", action="store_true",
                    help="flip every reference left to right (a reference in another layout)")
    args = ap.parse_args()
    args.paper |= args.scan
    if not args.keep_paper and not args.paper:
        ap.error("--paint-paper needs --paper (a sprite with alpha has no paper to paint)")
    if not 0 <= args.rim_margin <= 100:
        ap.error(f"--rim-margin {args.rim_margin:g}: an L* difference from 0 to 100")
    if not 0 <= args.firm_dark <= 100:
        ap.error(f"--firm-dark {args.firm_dark:g}: an L* from 0 to 100")
    for flag, value, top in (("--warp-reference", args.warp_reference, 0.5), ("--paper-reach", args.paper_reach, 1.0),
                             ("--local-reach", args.local_reach, 2.0)):
        if not 0 <= value <= top:  # NaN fails too
            ap.error(f"{flag} {value:g}: a number from 0 to {top:g}")
    pipeline.chroma.FIRM_DARK = args.firm_dark
    pipeline.chroma.RIM_MARGIN = args.rim_margin
    pipeline.colorize.PAPER_REACH = args.paper_reach
    pipeline.faces.LOCAL_REACH = args.local_reach
    try:  # the knobs first: a bad value is one line before the model is read
        check_options(ColorizeOptions(sample_steps=args.steps, match_chroma=args.match_chroma,
                                      tile_scale=args.tile_scale, match_lightness=args.match_lightness,
                                      even_regions=args.even_regions, reline=args.reline))
        model, diffusion, info = load_model(args.model)
        todo = pairs(args.group)[:args.limit or None]
    except AnimecolorError as e:
        print(f"whole_figures: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    lpips = VGGLPIPS().eval()
    rows = []
    for drawing_path, reference_path in todo:
        sprite, reference = read_user_image(drawing_path), read_user_image(reference_path)
        if args.warp_reference:
            seed = int.from_bytes(hashlib.sha256(reference_path.name.encode()).digest()[:4], "little")
            maps = random_warp(TPSConfig(scheme="random", strength=args.warp_reference, grid=4),
                               np.random.default_rng(seed), *reference.shape[:2])
            reference = apply_warp(reference, maps)
        if args.mirror_reference:
            reference = np.ascontiguousarray(reference[:, ::-1])
        if args.opaque_reference:  # as `read_user_image` gives a picture without transparency
            reference = np.dstack([flatten_alpha(reference), np.full(reference.shape[:2], 255, np.uint8)])
        truth = flatten_alpha(sprite)
        opaque = sprite[..., 3] >= 128
        alpha = np.full(opaque.shape, 255, np.uint8) if args.paper else sprite[..., 3]
        lines = pencil(truth) if args.pencil else LINES.sketch(truth, 0.5)
        drawing = np.dstack([scan_photo(lines, drawing_path.name) if args.scan else np.dstack([lines] * 3), alpha])
        face = largest_face_square(truth)
        pair = {"drawing": drawing_path.name, "reference": reference_path.name}
        # the last is colorize's default: the chroma match comes before the regions are evened out
        for name, faces, tiles, chroma in (("whole", False, False, 0.0), ("face_pass", True, False, 0.0),
                                           ("tiles", True, True, 0.0), ("tiles_chroma", True, True, args.match_chroma)):
            opts = ColorizeOptions(sample_steps=args.steps, seed=0, mode="auto" if args.scan else "lines",
                                   faces=faces, tiles=tiles,
                                   match_chroma=chroma, tile_scale=args.tile_scale,
                                   match_lightness=args.match_lightness, even_regions=args.even_regions,
                                   align=args.align, keep_paper=args.keep_paper, reline=args.reline)
            (colored,), notice = colorize_layers(model, diffusion, drawing, reference, opts, [0], info=info)
            out = colored.image()
            out = flatten_alpha(out) if out.shape[-1] == 4 else out  # a drawing on paper comes out RGB
            rows.append({**pair, "candidate": name, "face_pass": "at face scale" in (notice or ""),
                         **scores(out, truth, opaque, face, lpips),
                         "background_off_white": off_white(out, ~opaque)})
        ceiling = upscaled_truth(truth, lines, info["image_size"])
        rows.append({**pair, "candidate": "upscaled_truth", "face_pass": False,
                     **scores(ceiling, truth, opaque, face, lpips),
                     "background_off_white": off_white(ceiling, ~opaque)})
        print(" | ".join(f"{r['candidate']} {r['psnr']:.2f} dB" for r in rows[-len(CANDIDATES):]),
              f"<- {pair['drawing']} / {pair['reference']}", flush=True)
    columns = ["psnr", "lpips", "chroma_ratio", "face_psnr", "face_chroma_ratio", "background_off_white"]
    print(f"\n{len(todo)} pairs, {args.model}, {args.steps} steps, tiles {args.tile_scale:g}x the face, "
          f"lightness matched {args.match_lightness:g}, regions evened {args.even_regions:g}, "
          f"firm below L* {args.firm_dark:g}, rims paler by {args.rim_margin:g} L* darkened"
          + f", references warped {args.warp_reference:g}" * bool(args.warp_reference)
          + ", references mirrored" * args.mirror_reference + ", not laid by their lines" * (not args.align)
          + f", tiles placed by their lines within {args.local_reach:g} tile sides" * args.align
          + ", drawings on white paper" * args.paper + ", the paper painted" * (args.paper and not args.keep_paper)
          + ", references opaque on white" * args.opaque_reference + ", drawings as photos of scans" * args.scan
          + ", pencil drawings" * args.pencil + f", reline {args.reline}"
          + f", paper told from the figure within {args.paper_reach:g} face sides" * args.paper)
    print("| candidate | " + " | ".join(columns) + " | drawings given a face pass |")
    print("|---" * (len(columns) + 2) + "|")
    means = {}
    for name in CANDIDATES:
        mine = [r for r in rows if r["candidate"] == name]
        means[name] = {c: float(np.mean([r[c] for r in mine if c in r])) for c in columns}
        means[name]["face_passes"] = sum(r["face_pass"] for r in mine)
        print(f"| {name} | " + " | ".join(f"{means[name][c]:.4g}" for c in columns)
              + f" | {means[name]['face_passes']} / {len(mine)} |")
    if args.json:
        args.json.write_text(json.dumps({"model": str(args.model), "steps": args.steps,
                                         "match_chroma": args.match_chroma,
                                         "tile_scale": args.tile_scale,
                                         "match_lightness": args.match_lightness,
                                         "even_regions": args.even_regions, "align": args.align,
                                         "confidence_power": CONFIDENCE_POWER, "firm_dark": args.firm_dark,
                                         "rim_margin": args.rim_margin,
                                         "groups": args.group or sorted(GROUPS),
                                         "mirror_reference": args.mirror_reference, "paper": args.paper,
                                         "warp_reference": args.warp_reference, "local_reach": args.local_reach,
                                         "keep_paper": args.paper and args.keep_paper,  # no paper: moot
                                         "opaque_reference": args.opaque_reference, "scan": args.scan,
                                         "paper_reach": args.paper_reach,
                                         "pencil": args.pencil, "reline": args.reline,
                                         "mean": means,
                                         "pairs": rows}, indent=1))


if __name__ == "__main__":
    main()
