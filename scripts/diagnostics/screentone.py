"""Manga drawings with screentone: what `colorize --descreen` leaves the model to read.

    python scripts/diagnostics/screentone.py [--faces 64] [--sizes 256,512] [--periods 4,6] [--angles 45]
        [--model NAME=PATH] [--json out.json]

Each face of `../shared/data/anime-faces-256` (by file name) is drawn as a manga panel: its XDoG
lines (`extract-lines`, the training style) over halftone dots where the picture is dark
(`xdog.screentone`: 20 % dots under grey level 0.55, 45 % under 0.3, the lattice turned by
`--angles` degrees). For each tone period, angle and drawing size it reports the share of the
tone's ink that `scan.descreened` erases, the share of the lines' ink it keeps, and how far the
model's view of the drawing (shrunk to 64 px, as `colorize` shrinks it) is from the view of the
same lines without tone (mean absolute difference in grey levels), as drawn and descreened. Then the drawings that must come back unchanged: the
XDoG lines of every face, and of the Ren'Py sprites when installed. With `--model` it also colours
each face (self reference, `colorize`'s defaults, 10 steps) from its clean lines, its toned drawing
read as drawn and descreened, scored against the picture (PSNR, the chroma ratio).
"""

import argparse
import glob
import itertools
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from pipeline.colorize import ColorizeOptions, colorize_image, letterbox, load_model
from pipeline.data.xdog import XDoGConfig, screentone
from pipeline.errors import AnimecolorError
from pipeline.scan import descreened

FACES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "anime-faces-256"
SPRITES = ("/usr/share/games/renpy/the_question/game/images", "/usr/share/games/renpy/demo/game/images")
XDOG = XDoGConfig()
VIEW = 64  # the model's size


def _view(gray: np.ndarray) -> np.ndarray:
    return letterbox(gray, VIEW)[0].astype(np.float32)


def _chroma(rgb: np.ndarray) -> float:
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)
    return float(np.hypot(lab[..., 1] - 128, lab[..., 2] - 128).mean())


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-10)))


def _rgba(gray: np.ndarray) -> np.ndarray:
    return np.dstack([gray] * 3 + [np.full(gray.shape, 255, np.uint8)])


def _figure(files: list[str], size: int, model, opts: ColorizeOptions, path: Path) -> None:
    """One row a face: the picture, its manga panel, the panel descreened, its clean lines; with a
    model, the panel coloured as drawn and descreened (self reference mirrored)."""
    rows = []
    for f in files:
        rgb = cv2.resize(cv2.cvtColor(cv2.imread(f), cv2.COLOR_BGR2RGB), (size, size), interpolation=cv2.INTER_CUBIC)
        lines = XDOG.sketch(rgb, 0.5)
        toned = screentone(rgb, lines, 4.0)
        cells = [rgb, *(np.dstack([g] * 3) for g in (toned, descreened(toned)[0], lines))]
        if model is not None:
            _, net, diffusion, info = model
            ref = np.ascontiguousarray(np.dstack([rgb, np.full(lines.shape, 255, np.uint8)])[:, ::-1])
            for descreen in (False, True):
                image, _ = colorize_image(net, diffusion, _rgba(toned), ref, replace(opts, descreen=descreen), info=info)
                cells.append(image[..., :3])
        rows.append(np.hstack(cells))
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(np.vstack(rows), cv2.COLOR_RGB2BGR))


def _numbers(kind):
    """An argparse type: comma-separated numbers of `kind` (int or float), a bad one one error line."""
    def parse(text: str) -> list:
        try:
            return [kind(part) for part in text.split(",")]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated numbers") from None
    return parse


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--faces", type=int, default=64)
    ap.add_argument("--sizes", type=_numbers(int), default="256,512", help="the drawings' sides in px")
    ap.add_argument("--periods", type=_numbers(float), default="4,6", help="the tone's periods in px")
    ap.add_argument("--angles", type=_numbers(float), default="45", help="the tone lattice's turns in degrees")
    ap.add_argument("--model", help="NAME=PATH of an exported model: also colour each face")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--figure", type=Path, help="also write a picture of --faces faces (drawn, descreened, clean "
                                                 "lines; with --model each coloured): period 4, the first size")
    args = ap.parse_args()
    files = sorted(glob.glob(str(FACES / "*.jpg")))
    if not files:
        print(f"screentone: no faces in {FACES}", file=sys.stderr)
        raise SystemExit(2)
    model = None
    if args.model:
        try:
            name, path = args.model.split("=", 1) if "=" in args.model else (Path(args.model).stem, args.model)
            model = (name, *load_model(path))
        except (AnimecolorError, OSError) as exc:
            print(f"screentone: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
    opts = ColorizeOptions(sample_steps=10, seed=0)
    out: dict = {"faces": args.faces, "model": model[0] if model else None, "settings": {}, "unchanged": {}}
    if args.figure:
        _figure(files[:args.faces], args.sizes[0], model, opts, args.figure)
        return
    for size in args.sizes:
        for period, angle in itertools.product(args.periods, args.angles):
            rows: dict[str, list] = {}
            for i, f in enumerate(files[:args.faces]):
                rgb = cv2.cvtColor(cv2.imread(f), cv2.COLOR_BGR2RGB)
                if size != rgb.shape[0]:
                    rgb = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_CUBIC)
                lines = XDOG.sketch(rgb, 0.5)
                toned = screentone(rgb, lines, period, angle)
                start = time.perf_counter()
                clean, _ = descreened(toned)
                rows.setdefault("seconds", []).append(time.perf_counter() - start)
                tone_ink, line_ink = (toned < 128) & (lines >= 128), lines < 128
                rows.setdefault("tone_erased", []).append(float((clean[tone_ink] >= 128).mean()))
                rows.setdefault("lines_kept", []).append(float((clean[line_ink] < 128).mean()))
                reference = _view(lines)
                rows.setdefault("view_error_as_drawn", []).append(float(np.abs(_view(toned) - reference).mean()))
                rows.setdefault("view_error_descreened", []).append(float(np.abs(_view(clean) - reference).mean()))
                if model is not None:
                    name, net, diffusion, info = model
                    ref = np.ascontiguousarray(np.dstack([rgb, np.full(lines.shape, 255, np.uint8)])[:, ::-1])
                    for label, drawing, descreen in (("clean", lines, True), ("as_drawn", toned, False),
                                                     ("descreened", toned, True)):
                        image, _ = colorize_image(net, diffusion, _rgba(drawing), ref,
                                                  replace(opts, descreen=descreen), info=info)
                        rows.setdefault(f"psnr_{label}", []).append(_psnr(image[..., :3], rgb))
                        rows.setdefault(f"chroma_ratio_{label}", []).append(_chroma(image[..., :3]) / _chroma(rgb))
            mean = {k: round(float(np.mean(v)), 4) for k, v in rows.items()}
            mean["tone_erased_min"] = round(float(np.min(rows["tone_erased"])), 4)
            setting = f"{size}px period {period:g}" + f" angle {angle:g}" * (angle != 45)
            out["settings"][setting] = mean
            print(f"{setting}: {mean}", flush=True)
    changed = []
    for f in files:
        lines = XDOG.sketch(cv2.cvtColor(cv2.imread(f), cv2.COLOR_BGR2RGB), 0.5)
        changed.append(float((descreened(lines)[0] != lines).mean()))
    out["unchanged"]["xdog_faces"] = {"drawings": len(changed), "changed": int(np.count_nonzero(changed)),
                                      "pixels_changed_max": max(changed)}
    sprites = [p for folder in SPRITES for p in sorted(glob.glob(f"{folder}/*.png"))]
    if sprites:
        changed = []
        for p in sprites:
            image = cv2.imread(p, cv2.IMREAD_UNCHANGED)
            rgb = cv2.cvtColor(image[..., :3], cv2.COLOR_BGR2RGB)
            if image.shape[-1] == 4:  # on white, as colorize flattens a sprite
                a = image[..., 3:].astype(np.float32) / 255
                rgb = (rgb * a + 255 * (1 - a)).astype(np.uint8)
            lines = XDOG.sketch(rgb, 0.5)
            changed.append(float((descreened(lines)[0] != lines).mean()))
        out["unchanged"]["xdog_sprites"] = {"drawings": len(changed), "changed": int(np.count_nonzero(changed)),
                                            "pixels_changed_max": max(changed)}
    print(out["unchanged"])
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
