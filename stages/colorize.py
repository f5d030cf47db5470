"""User commands: `animecolor colorize`, `animecolor extract-lines`, `animecolor export`."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import typer
from rich.markup import escape

from pipeline.chroma import EVEN as EVEN_REGIONS
from pipeline.chroma import LIGHTNESS as MATCH_LIGHTNESS
from pipeline.chroma import MAX_EVEN
from pipeline.chroma import STRENGTH as MATCH_CHROMA
from pipeline.data.imageio import IMAGE_SUFFIXES, flatten_alpha, read_user_image, write_png
from pipeline.errors import AnimecolorError, shown
from pipeline.model.defaults import DEFAULT_MODEL, MAX_GUIDANCE, SAMPLING, TILE_SCALE, TILE_SCALES
from stages.common import console, progress_bar, user_errors


def check_output(path: Path, what: str = "output") -> None:
    """Fail before any work if `path` cannot be written as a file: it is a folder, a parent is a
    file, or the nearest existing folder is not writable (read-only file system, permissions)."""
    if path.is_dir():
        raise AnimecolorError(f"{path}: is a folder (give a file name for the {what})")
    if path.exists() and not path.is_file():  # the atomic rename would replace a device node or FIFO
        raise AnimecolorError(f"{path}: exists and is not a regular file (a device, FIFO or socket); "
                              f"give another name for the {what}")
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise AnimecolorError(f"{path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise AnimecolorError(f"{path}: cannot write in {parent} (read-only or no permission)")


def _identities(path: Path) -> list:
    """What makes two paths one file: the resolved path, and (device, inode) when it exists (hard links)."""
    ids: list = []
    try:
        ids.append(path.resolve())
        st = path.stat()
        ids.append((st.st_dev, st.st_ino))
    except (OSError, RuntimeError):  # missing, or a link loop
        pass
    return ids


def check_not_input(outputs: list[Path], inputs: dict[Path, str]) -> None:
    """Refuse before any work when an output would be written over an input (inputs: path -> what it is)."""
    known = {key: what for path, what in inputs.items() for key in _identities(path)}
    for out_path in outputs:
        for key in _identities(out_path):
            if key in known:
                raise AnimecolorError(f"{out_path}: is the {known[key]} (an input); the result would overwrite it, "
                                      "give another --out")


def _read_pairs_csv(path: Path):
    import pandas as pd

    if not path.exists():
        raise AnimecolorError(f"{path}: no such file")
    if not path.is_file():  # a folder, a FIFO, a link to /dev/zero
        raise AnimecolorError(f"{path}: not a regular file")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise AnimecolorError(f"{path}: empty (needs a header sketch,reference and one row per drawing)") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AnimecolorError(f"{path}: not a readable CSV ({first[:120]})") from None
    if not {"sketch", "reference"} <= set(table.columns):
        raise AnimecolorError(f"{path}: needs columns sketch,reference (has {', '.join(map(str, table.columns))})")
    if table.empty:
        raise AnimecolorError(f"{path}: no rows (one row per drawing: sketch,reference)")
    return table


def _distinct_names(jobs: list[tuple[Path, Path, str, str]]) -> list[tuple[Path, Path, str]]:
    """Output names for (sketch, reference, stem, hint) jobs, none written twice: a clash of stems
    gets the hint (the drawing's file type, or the reference's name), then a counter."""
    count: dict[str, int] = {}
    for _, _, stem, _ in jobs:
        count[stem] = count.get(stem, 0) + 1
    names = [stem if count[stem] == 1 else f"{stem}_{hint}" for _, _, stem, hint in jobs]
    seen: dict[str, int] = {}
    out = []
    for (sketch, reference, _, _), name in zip(jobs, names):
        seen[name] = seen.get(name, 0) + 1
        out.append((sketch, reference, name if seen[name] == 1 else f"{name}_{seen[name]}"))
    return out


def _jobs(sketch: Path | None, reference: Path | None, pairs_csv: Path | None, out: Path | None,
          prompt: str = "") -> list[tuple[Path, Path | None, Path]]:
    """(sketch, reference, output) for one file, a folder with one reference, or a CSV sketch,reference.
    The reference may be None when a prompt is given.

    In batch mode every output gets its own name: `a.png` and `a.jpg` in one folder become
    `a_png.png` and `a_jpg.png`; a drawing listed twice in a CSV is named after each reference."""
    if pairs_csv is not None and sketch is not None:
        raise AnimecolorError(f"{sketch}: --pairs lists the drawings; give no drawing argument with it")
    if pairs_csv is None and sketch is None:
        raise AnimecolorError("give a line drawing (or a folder of them), or --pairs CSV with sketch,reference columns")
    if pairs_csv is not None:
        table = _read_pairs_csv(pairs_csv)
        base, out_dir = pairs_csv.parent, out or Path("colored")
        named = _distinct_names([(base / s, base / r, Path(s).stem, Path(r).stem)
                                 for s, r in zip(table.sketch, table.reference)])
        return [(s, r, out_dir / f"{name}.png") for s, r, name in named]
    if reference is None and not prompt.strip():
        raise AnimecolorError("--reference is required (or --prompt, or --pairs CSV with sketch,reference columns)")
    if sketch.is_dir():
        files = sorted(p for p in sketch.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise AnimecolorError(f"{sketch}: no images in this folder")
        out_dir = out or sketch.with_name(f"{sketch.name}_colored")
        named = _distinct_names([(f, reference, f.stem, f.suffix.lower().lstrip(".")) for f in files])
        return [(s, r, out_dir / f"{name}.png") for s, r, name in named]
    return [(sketch, reference, out or sketch.with_name(f"{sketch.stem}_colored.png"))]


def colorize_files(sketch: Path | None, reference: Path | None = None, pairs: Path | None = None,
                   model: Path = DEFAULT_MODEL, out: Path | None = None, steps: int = SAMPLING.sample_steps,
                   guidance: float = SAMPLING.guidance, seed: int = SAMPLING.seed, eta: float = SAMPLING.eta,
                   mode: str = "auto", auto_levels: bool = True, binarize: bool = False, keep_lines: bool = True,
                   skip_existing: bool = False, device: str = "auto", prompt: str = "",
                   text_guidance: float = SAMPLING.text_guidance, layers: bool = False,
                   hints: tuple[str, ...] = (), faces: bool = True, tiles: bool = True,
                   match_chroma: float = MATCH_CHROMA, tile_scale: float = TILE_SCALE,
                   match_lightness: float = MATCH_LIGHTNESS, even_regions: float = EVEN_REGIONS,
                   align: bool = True, keep_paper: bool = True, reline: str = "auto",
                   descreen: bool = True) -> dict:
    """Colour one drawing, a folder of them, or a CSV of pairs; returns {"written", "skipped", "failed"}.

    `layers` also writes `<out>_colour.png` and `<out>_lines.png`; `hints` ("X,Y,COLOUR") recolour
    the line-enclosed regions under their points (`pipeline/hints.py`); `faces` and `tiles` colour a
    larger drawing's faces, and its figure in tiles of `tile_scale` times a face's side, again at face
    scale (`pipeline/faces.py`);
    `match_chroma` moves the colours' chroma that share of the way to the reference's,
    `match_lightness` a figure's lightness outside its faces, and `even_regions` evens the figure's
    colours out inside each line-enclosed region (`pipeline/chroma.py`); `align` lays the reference
    on the drawing by their lines (scale, shift, mirror) before the face and the tiles take their
    parts of it, each tile's sought near there by its own lines (`pipeline/faces.py`); `keep_paper` leaves the paper around a figure drawn on
    opaque paper at the paper's colour (`pipeline/hints.py`); `reline` (auto | on | off) draws a
    pencil or soft drawing's lines again by XDoG at the model's size (`pipeline/colorize.relined`).

    Every input and output path is checked before the model is loaded or anything is sampled. An
    existing output file is overwritten (`skip_existing` keeps it instead). A single job that fails
    raises `AnimecolorError`; a batch goes on and reports each failure."""
    if mode not in ("auto", "lines", "xdog"):
        raise AnimecolorError(f"--mode {shown(mode)}: expected auto, lines or xdog")
    if reline not in ("auto", "on", "off"):  # colorize.RELINES (that module loads torch)
        raise AnimecolorError(f"--reline {shown(reline)}: expected auto, on or off")
    # checked here, not by Typer's min/max: those let nan through and answer in a box, not one line
    for option, value, low, high in (("--guidance", guidance, 0, MAX_GUIDANCE),
                                     ("--text-guidance", text_guidance, 0, MAX_GUIDANCE), ("--eta", eta, 0, 1),
                                     ("--match-chroma", match_chroma, 0, 1),
                                     ("--match-lightness", match_lightness, 0, 1),
                                     ("--even-regions", even_regions, 0, MAX_EVEN),
                                     ("--tile-scale", tile_scale, *TILE_SCALES)):
        if not math.isfinite(value) or not low <= value <= high:
            raise AnimecolorError(f"Invalid value for '{option}': {value} (must be a number from {low:g} to {high:g})")
    if prompt.strip():  # a bad prompt fails before anything is loaded
        from pipeline.data.prompt import parse_prompt

        if not parse_prompt(prompt):  # ",,," or " and " names no colour: it is no prompt
            if reference is None and pairs is None:
                raise AnimecolorError(f"--prompt {shown(prompt)} names no colour: give a colour reference, "
                                      "a prompt, or both")
            prompt = ""
    from pipeline.colorize import layer_paths
    from pipeline.hints import parse_hint

    parsed_hints = tuple(parse_hint(text) for text in hints or ())  # a bad hint fails before anything is loaded
    jobs = _jobs(sketch, reference, pairs, out, prompt)
    if len(jobs) > 1 and out is not None and out.exists() and not out.is_dir():
        raise AnimecolorError(f"{out}: is a file (in batch mode --out is a folder)")
    outputs = [path for _, _, out_path in jobs for path in (out_path, *(layer_paths(out_path) if layers else ()))]
    if len(set(outputs)) < len(outputs):
        raise AnimecolorError(f"{out or jobs[0][2]}: two outputs would get one name (a drawing named *_colour "
                              "or *_lines beside --layers); rename it")
    for out_path in outputs:
        check_output(out_path)
    inputs = {model: "model", **({pairs: "pairs CSV"} if pairs is not None else {})}
    for sketch_path, ref_path, _ in jobs:
        inputs.setdefault(sketch_path, "drawing")
        if ref_path is not None:
            inputs.setdefault(ref_path, "reference")
    check_not_input(outputs, inputs)

    from pipeline.colorize import ColorizeOptions, colorize_layers, guidance_warning, load_model, png_text, training_data
    from pipeline.data.imageio import write_png_text
    from pipeline.device import resolve_device

    dev = resolve_device(device)
    net, diffusion, info = load_model(model, dev)
    said, warning = training_data(info)
    console.print(f"model {escape(str(model))}: {said}", highlight=False, soft_wrap=True)
    referenced = any(ref_path is not None for _, ref_path, _ in jobs)  # without one, guidance is moot (1)
    for warning in (warning, guidance_warning(info, guidance) if referenced else None):
        if warning:
            console.print(f"[yellow]warning[/]: {warning}", highlight=False, soft_wrap=True)
    opts = ColorizeOptions(sample_steps=steps, guidance=guidance, eta=eta, seed=seed, mode=mode,
                           auto_levels=auto_levels, binarize=binarize, keep_lines=keep_lines, prompt=prompt,
                           text_guidance=text_guidance, hints=parsed_hints, faces=faces, tiles=tiles,
                           match_chroma=match_chroma, tile_scale=tile_scale,
                           match_lightness=match_lightness, even_regions=even_regions, align=align,
                           keep_paper=keep_paper, reline=reline, descreen=descreen)
    from pipeline.colorize import encode_prompt

    encode_prompt(net, prompt, info)  # a prompt this model cannot follow fails before any drawing is read
    failures: list[tuple[Path, str]] = []
    references: dict[Path, np.ndarray] = {}
    written = skipped = 0
    with progress_bar("colorize", len(jobs)) as advance:
        for sketch_path, ref_path, out_path in jobs:
            try:
                if skip_existing and out_path.exists():
                    skipped += 1
                    continue
                if ref_path is not None and ref_path not in references:
                    references[ref_path] = read_user_image(ref_path)
                (colored,), notice = colorize_layers(net, diffusion, read_user_image(sketch_path),
                                                     references[ref_path] if ref_path is not None else None, opts,
                                                     [opts.seed], dev, info=info)
                if notice:
                    console.print(f"[yellow]note[/]: {sketch_path}: {notice}", highlight=False)
                try:
                    metadata = png_text(opts, sketch_path, ref_path, model, info)
                    write_png_text(out_path, colored.image(), metadata)
                    if layers:
                        for path, image in zip(layer_paths(out_path), (colored.colour_layer(), colored.lines_layer())):
                            write_png_text(path, image, metadata)
                except OSError as exc:
                    raise AnimecolorError(f"{out_path}: cannot write ({exc.strerror or exc})") from None
                written += 1
            except AnimecolorError as exc:
                if len(jobs) == 1:
                    raise
                failures.append((sketch_path, str(exc)))
            finally:
                advance(1)
    where = f" (to {jobs[0][2].parent})" if len(jobs) > 1 else f" -> {jobs[0][2]}"
    extra = "".join(f", {n} {what}" for n, what in ((skipped, "skipped"), (len(failures), "failed")) if n)
    console.print(f"colorize: {written} of {len(jobs)} written{extra}" + (where if written else ""), highlight=False)
    for path, why in failures:
        console.print(f"[bold red]failed[/]: {escape(why)}", highlight=False, soft_wrap=True)
    return {"written": written, "skipped": skipped, "failed": len(failures)}


@user_errors
def colorize(sketch: Path = typer.Argument(None, help="Line drawing, or a folder of them (none with --pairs)."),
             reference: Path = typer.Option(None, "--reference", "-r", help="Colour reference of the character "
                                                                            "(optional with --prompt)."),
             pairs: Path = typer.Option(None, help="CSV with columns sketch,reference (batch mode)."),
             model: Path = typer.Option(DEFAULT_MODEL, help="Exported model (.safetensors, see `export`)."),
             out: Path = typer.Option(None, "--out", "-o", help="Output PNG (a folder in batch mode). An existing "
                                                                "file is overwritten."),
             steps: int = typer.Option(SAMPLING.sample_steps, min=1, max=1000, help="DDIM steps."),
             guidance: float = typer.Option(SAMPLING.guidance, help="Classifier-free guidance scale on the "
                                                                    f"reference (0 to {MAX_GUIDANCE:g})."),
             seed: int = typer.Option(SAMPLING.seed, min=0, max=2**32 - 1,
                                      help="Random seed (same seed, same picture)."),
             eta: float = typer.Option(SAMPLING.eta, help="DDIM eta, 0 to 1 (0 = deterministic)."),
             mode: str = typer.Option("auto", help="auto | lines | xdog: how to read the drawing."),
             auto_levels: bool = typer.Option(True, "--auto-levels/--no-auto-levels",
                                              help="Level a scan's or photo's paper to white (uneven light "
                                                   "too) and its darkest lines to black; off: the grey "
                                                   "levels as drawn."),
             binarize: bool = typer.Option(False, help="Threshold the drawing to pure lines (Otsu)."),
             keep_lines: bool = typer.Option(True, help="Draw the original lines over the result."),
             skip_existing: bool = typer.Option(False, help="Leave outputs that already exist (default: overwrite)."),
             device: str = typer.Option("auto", help="auto | cpu | cuda."),
             prompt: str = typer.Option("", "--prompt", "-p", help="Colours in words for what the reference lacks "
                                                                   "or to override it, e.g. \"pink hair, left eye red, "
                                                                   "right eye #3060ff\" (text models)."),
             text_guidance: float = typer.Option(SAMPLING.text_guidance,
                                                 help=f"Guidance scale on the prompt, 0 to {MAX_GUIDANCE:g} (1: plain; "
                                                      "higher follows the words more, over the reference too)."),
             layers: bool = typer.Option(False, "--layers", help="Also write <out>_colour.png (the colours without "
                                                                  "lines) and <out>_lines.png (the lines on "
                                                                  "transparency)."),
             hint: list[str] = typer.Option(None, "--hint", help="X,Y,COLOUR (repeatable): the area the lines enclose "
                                                                 "around pixel X,Y gets COLOUR (#rrggbb or a colour "
                                                                 "word), e.g. 120,80,#ff66aa."),
             faces: bool = typer.Option(True, help="In a drawing larger than a face (a figure, a group), colour "
                                                   "each face found again at the scale the model was trained on, "
                                                   "with the reference's own face."),
             tiles: bool = typer.Option(True, help="With --faces, also colour the whole figure in face-sized "
                                                   "tiles (see --tile-scale), each with the part of the reference "
                                                   "at the same place relative to the face."),
             tile_scale: float = typer.Option(TILE_SCALE, help=f"The tiles' side, times the face square's "
                                              f"({TILE_SCALES[0]:g} to {TILE_SCALES[1]:g})."),
             match_chroma: float = typer.Option(MATCH_CHROMA, help="Move the colours' saturation this "
                                                "share of the way to the reference's, 0 (the model's own) to 1 "
                                                "(hue and lightness kept)."),
             match_lightness: float = typer.Option(MATCH_LIGHTNESS, help="With --faces and a reference, when "
                                                   "a face is found: move the figure's lightness outside its faces "
                                                   "(not the paper around it) this share of the way to the "
                                                   "reference's, 0 (the model's own) to 1 (hue kept)."),
             even_regions: float = typer.Option(EVEN_REGIONS, help="With --faces, when a face is found: even "
                                                "the figure's colours out inside each area its lines enclose "
                                                "(outside its faces), over this many face sides (0: off; up to "
                                                f"{MAX_EVEN:g}). A picture coloured whole (a face picture), "
                                                "enlarged at least twice from the model's size: its colours "
                                                "evened inside the areas of its lines, gaps sealed, over "
                                                "about two model pixels at 0.3 (scaled alike)."),
             align: bool = typer.Option(True, help="With --faces, when a face is found in the drawing and the "
                                                   "reference: lay the reference on the drawing by their lines "
                                                   "(scale, shift, mirror) before the face and the tiles take "
                                                   "their parts of it, each tile's sought near there by its own "
                                                   "lines; --no-align: by the two faces alone."),
             keep_paper: bool = typer.Option(True, "--keep-paper/--paint-paper",
                                             help="A drawing read as lines on opaque paper (no alpha): the "
                                                  "paper around the figure keeps the paper's colour, except an "
                                                  "area the model painted clearly (a part of the figure the "
                                                  "frame cuts); --paint-paper: the model's colours there too."),
             reline: str = typer.Option("auto", help="auto | on | off: draw the drawing's lines again with the "
                                                     "training XDoG at the model's size (each face and tile, and "
                                                     "the whole picture when shrunk at most 4x or a face "
                                                     "picture); auto: for a "
                                                     "pencil or soft-brush drawing (its marks mostly grey, not "
                                                     "inked), levelled by --auto-levels."),
             descreen: bool = typer.Option(True, help="Erase a manga drawing's screentone (a regular field of "
                                                       "dots) from the lines the model reads and the lines laid "
                                                       "over the result, keeping the lines drawn over it; a "
                                                       "drawing without tone is unchanged.")) -> None:
    """Colour line drawings in the colours of a reference image and/or a colour prompt (existing outputs
    are overwritten)."""
    result = colorize_files(sketch, reference, pairs, model, out, steps, guidance, seed, eta, mode, auto_levels,
                            binarize, keep_lines, skip_existing, device, prompt, text_guidance, layers,
                            tuple(hint or ()), faces, tiles, match_chroma, tile_scale, match_lightness,
                            even_regions, align, keep_paper, reline, descreen)
    if result["failed"]:
        raise typer.Exit(1)


@user_errors
def extract_lines(images: list[Path] = typer.Argument(..., help="Colour images."),
                  out: Path = typer.Option(Path("lines"), "--out", "-o",
                                           help="Output folder, or a .png file name for one image."),
                  sigma: float = typer.Option(0.5, min=0.1, max=5.0, help="XDoG sigma (training uses 0.3-0.5)."),
                  size: int = typer.Option(0, min=0, help="Resize the long side to this first (0: keep; "
                                                          "the model size gives training-like lines).")) -> None:
    """Line drawings with the training XDoG, for preparing your own sketches."""
    from pipeline.colorize import LINES, letterbox

    as_file = out.suffix.lower() in IMAGE_SUFFIXES and not out.is_dir()  # `-o lines.png`: one image's file
    if as_file and out.suffix.lower() != ".png":
        raise AnimecolorError(f"{out}: the lines are written as PNG (give --out a .png file name or a folder)")
    if as_file and len(images) > 1:
        raise AnimecolorError(f"{out}: {len(images)} images go to a folder (a .png --out is one image's file)")
    if not as_file and out.exists() and not out.is_dir():
        raise AnimecolorError(f"{out}: is a file (--out is a folder)")
    named = _distinct_names([(path, path, path.stem, path.suffix.lower().lstrip(".")) for path in images])
    targets = {name: out if as_file else out / f"{name}.png" for _, _, name in named}
    for target in targets.values():
        check_output(target)
    check_not_input(list(targets.values()), {path: "image" for path in images})
    failures = 0
    with progress_bar("extract-lines", len(images)) as advance:
        for path, _, name in named:
            try:
                rgb = flatten_alpha(read_user_image(path))
                if size:
                    rgb = letterbox(rgb, size)[0]
                try:
                    write_png(targets[name], LINES.sketch(rgb, sigma))
                except OSError as exc:  # a full disk, a folder made read-only meanwhile
                    raise AnimecolorError(f"{targets[name]}: cannot write ({exc.strerror or exc})") from None
            except AnimecolorError as exc:
                failures += 1
                console.print(f"[bold red]failed[/]: {escape(str(exc))}", highlight=False, soft_wrap=True)
            advance(1)
    console.print(f"extract-lines: {len(images) - failures} of {len(images)} written to {out}")
    if failures:
        raise typer.Exit(1)


@user_errors
def export(checkpoint: Path = typer.Argument(Path("models/finetune.pt"), help="Training checkpoint (.pt)."),
           out: Path = typer.Option(DEFAULT_MODEL, "--out", "-o", help="Model file to write (.safetensors).")) -> None:
    """Export a checkpoint as a safe model file (safetensors weights + JSON config) for `colorize`."""
    from pipeline.colorize import export_model
    from pipeline.model.checkpoint import load_checkpoint

    check_output(out, "model file")
    check_not_input([out], {checkpoint: "checkpoint"})
    info = export_model(load_checkpoint(checkpoint), out)
    console.print(f"export: {checkpoint} (step {info['step']}, {info['image_size']} px) -> {out}")
