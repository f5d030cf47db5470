"""The paper kept as drawn on face crops: which areas at the frame's edge a face picture's output keeps
as paper, and what that does to its score (issue 35).

    python scripts/diagnostics/face_paper.py --model REAL_ART.safetensors [--folder DIR] [--manifest CSV]
        [--limit 40] [--size 256] [--steps 10] [--json out.json] [--sheet out.png [--rows 6]]

A face crop's frame cuts the hair at the top and the body at the sides, so areas of the figure
reach the picture's edge, and `colorize --keep-paper` (the default) may take a pale one for paper
and lay it back white. Each face (the test split of `--manifest`, a run's `data/faces/manifest.csv`,
else the folder's first files by name) is resized to `--size`, drawn as the training XDoG lines,
and coloured by `colorize`'s own function with its mirror image as the reference, three times:
`--paint-paper` (the model's colours everywhere), the paper kept by its tint alone (as before
2026-12-07, `colorize.PAPER_REACH` 0), and the paper kept as `colorize` keeps it now (each area
also nearer the paper than the figure's pixels beside it, `hints.plain_paper`). Each is scored
against the picture: PSNR, LPIPS, and the share of the picture kept as paper. `--sheet` draws
the `--rows` faces whose kept paper changed most: the picture, its lines, the paper kept by the
tint alone, and as `colorize` keeps it now, each shrunk to 256 px.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

import pipeline.colorize
from pipeline.colorize import LINES, ColorizeOptions, colorize_layers, load_model
from pipeline.errors import AnimecolorError
from pipeline.model.perceptual import VGGLPIPS
from whole_figures import perceptual, psnr  # this folder: the sprites' scores, computed alike

WAYS = ("painted", "tint_alone", "beside")  # --paint-paper; kept by the tint alone; kept as colorize keeps it


def faces(folder: Path, manifest: Path | None, limit: int) -> list[Path]:
    """The faces to colour: the test split of `manifest` (its raw files' names in `folder`), else the folder's own."""
    if manifest is not None:
        table = pd.read_csv(manifest)
        names = sorted(Path(f).name for f in table[table.split == "test"].raw_file)
    else:
        names = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    return [folder / n for n in names[:limit]]


def arguments(description: str, size: int, sheet: str, rows: int) -> argparse.ArgumentParser:
    """The options face_paper.py and face_evened.py share: the faces, their size, the model, the outputs."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--model", required=True, help="an exported model file")
    ap.add_argument("--folder", type=Path, default=Path("../shared/data/anime-faces-256"), help="face pictures")
    ap.add_argument("--manifest", type=Path, help="a run's data/faces/manifest.csv: its test split's faces")
    ap.add_argument("--limit", type=int, default=40, help="this many faces")
    ap.add_argument("--size", type=int, default=size, help="each face resized to this side, px")
    ap.add_argument("--steps", type=int, default=10, help="DDIM steps (the benchmark's 10)")
    ap.add_argument("--json", type=Path, help="also write the per-face and mean scores here")
    ap.add_argument("--sheet", type=Path, help=sheet)
    ap.add_argument("--rows", type=int, default=rows, help="--sheet's faces")
    return ap


def prepare(args: argparse.Namespace, name: str) -> tuple[list[Path], object, object, dict]:
    """`arguments`' values checked before any work, the faces listed and the model loaded: (faces,
    model, diffusion, its header). A bad value is one line `NAME: ...` on stderr and exit 2."""
    try:
        if args.limit < 1 or args.size < 64 or args.rows < 1:
            raise AnimecolorError(f"--limit {args.limit} / --size {args.size} / --rows {args.rows}: at least 1 face "
                                  "of at least 64 px, and 1 row")
        for out in filter(None, (args.json, args.sheet)):
            if not out.parent.is_dir():
                raise AnimecolorError(f"{out}: no folder {out.parent} to write it in")
        todo = faces(args.folder, args.manifest, args.limit)
        if not todo:
            raise AnimecolorError(f"no faces in {args.folder}")
        model, diffusion, info = load_model(args.model)
    except (AnimecolorError, OSError, KeyError) as e:
        print(f"{name}: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    return todo, model, diffusion, info


def main() -> None:
    args = arguments(__doc__.split("\n\n")[0], 256, "also draw the faces whose kept paper changed most here (PNG)",
                     6).parse_args()
    todo, model, diffusion, info = prepare(args, "face_paper")
    lpips = VGGLPIPS().eval()
    reach = pipeline.colorize.PAPER_REACH
    rows, pictures = [], {}
    for path in todo:
        with Image.open(path) as im:
            truth = np.asarray(im.convert("RGB").resize((args.size, args.size), Image.LANCZOS))
        lines = LINES.sketch(truth, 0.5)
        opaque = lambda rgb: np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])  # noqa: E731
        drawing, reference = opaque(np.dstack([lines] * 3)), opaque(np.ascontiguousarray(truth[:, ::-1]))
        row = {"face": path.name}
        shown = [truth, np.dstack([lines] * 3)]
        for way in WAYS:
            pipeline.colorize.PAPER_REACH = 0.0 if way == "tint_alone" else reach
            opts = ColorizeOptions(sample_steps=args.steps, seed=0, mode="lines", keep_paper=way != "painted")
            (colored,), notice = colorize_layers(model, diffusion, drawing, reference, opts, [0], info=info)
            out = colored.image()[..., :3]
            if way != "painted":
                shown.append(out)
            everywhere = np.ones(truth.shape[:2], bool)
            row[way] = {"psnr": psnr(out, truth, everywhere), "lpips": perceptual(lpips, out, truth),
                        "kept": float(np.mean(np.all(out == 255, -1) & (lines == 255)))
                        if way != "painted" else 0.0}
        pipeline.colorize.PAPER_REACH = reach
        rows.append(row)
        pictures[path.name] = np.hstack([np.asarray(Image.fromarray(x).resize((256, 256), Image.LANCZOS))
                                         for x in shown])
        print(f"{path.name}: " + " | ".join(f"{w} {row[w]['psnr']:.2f} dB {row[w]['kept']:.0%} white" for w in WAYS),
              flush=True)
    means = {w: {k: float(np.mean([r[w][k] for r in rows])) for k in ("psnr", "lpips", "kept")} for w in WAYS}
    changed = sum(abs(r["beside"]["kept"] - r["tint_alone"]["kept"]) > 0.001 for r in rows)
    print(f"\n{len(rows)} faces at {args.size} px, {args.model}, {args.steps} steps; "
          f"the kept paper differs in {changed}")
    print("| paper | psnr | lpips | picture kept white |\n|---|---|---|---|")
    for w in WAYS:
        print(f"| {w} | {means[w]['psnr']:.2f} | {means[w]['lpips']:.4f} | {means[w]['kept']:.1%} |")
    if args.sheet:
        moved = sorted(rows, key=lambda r: -abs(r["beside"]["kept"] - r["tint_alone"]["kept"]))[:args.rows]
        Image.fromarray(np.vstack([pictures[r["face"]] for r in moved])).save(args.sheet)
    if args.json:
        args.json.write_text(json.dumps({"model": str(args.model), "size": args.size, "steps": args.steps,
                                         "paper_reach": reach, "faces": len(rows), "differ": changed,
                                         "mean": means, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
