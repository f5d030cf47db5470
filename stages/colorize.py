"""User commands: `animecolor colorize`, `animecolor extract-lines`, `animecolor export`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer

from pipeline.data.imageio import IMAGE_SUFFIXES, flatten_alpha, read_user_image, write_png
from pipeline.errors import AnimecolorError
from stages.common import console, progress_bar, user_errors

DEFAULT_MODEL = Path("models/animecolor.safetensors")


def _jobs(sketch: Path, reference: Path | None, pairs_csv: Path | None, out: Path | None) -> list[tuple[Path, Path, Path]]:
    """(sketch, reference, output) for one file, a folder with one reference, or a CSV sketch,reference."""
    if pairs_csv is not None:
        import pandas as pd

        if not pairs_csv.is_file():
            raise AnimecolorError(f"{pairs_csv}: no such file")
        table = pd.read_csv(pairs_csv, dtype=str, keep_default_na=False)
        if not {"sketch", "reference"} <= set(table.columns):
            raise AnimecolorError(f"{pairs_csv}: needs columns sketch,reference (has {', '.join(table.columns)})")
        base, out_dir = pairs_csv.parent, out or Path("colored")
        return [(base / s, base / r, out_dir / f"{Path(s).stem}.png") for s, r in zip(table.sketch, table.reference)]
    if reference is None:
        raise AnimecolorError("--reference is required (or --pairs CSV with sketch,reference columns)")
    if sketch.is_dir():
        files = sorted(p for p in sketch.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise AnimecolorError(f"{sketch}: no images in this folder")
        out_dir = out or sketch.with_name(f"{sketch.name}_colored")
        return [(f, reference, out_dir / f"{f.stem}.png") for f in files]
    return [(sketch, reference, out or sketch.with_name(f"{sketch.stem}_colored.png"))]


def colorize_files(sketch: Path, reference: Path | None = None, pairs: Path | None = None,
                   model: Path = DEFAULT_MODEL, out: Path | None = None, steps: int = 20, guidance: float = 1.0,
                   seed: int = 0, eta: float = 0.0, mode: str = "auto", auto_levels: bool = False,
                   binarize: bool = False, keep_lines: bool = True, skip_existing: bool = False,
                   device: str = "auto") -> dict:
    """Colour one drawing, a folder of them, or a CSV of pairs; returns {"written", "skipped", "failed"}.
    Raises `AnimecolorError` for a bad single job; a batch lists its failures and exits 1."""
    from pipeline.colorize import ColorizeOptions, colorize_image, load_model, png_text
    from pipeline.data.imageio import write_png_text
    from pipeline.device import resolve_device

    if mode not in ("auto", "lines", "xdog"):
        raise AnimecolorError(f"--mode {mode!r}: expected auto, lines or xdog")
    dev = resolve_device(device)
    net, diffusion, info = load_model(model, dev)
    opts = ColorizeOptions(sample_steps=steps, guidance=guidance, eta=eta, seed=seed, mode=mode, auto_levels=auto_levels,
                           binarize=binarize, keep_lines=keep_lines)
    jobs = _jobs(sketch, reference, pairs, out)
    failures: list[tuple[Path, str]] = []
    references: dict[Path, np.ndarray] = {}
    with progress_bar("colorize", len(jobs)) as advance:
        for sketch_path, ref_path, out_path in jobs:
            try:
                if skip_existing and out_path.exists():
                    continue
                if ref_path not in references:
                    references[ref_path] = read_user_image(ref_path)
                rgb, notice = colorize_image(net, diffusion, read_user_image(sketch_path), references[ref_path],
                                             opts, dev)
                if notice:
                    console.print(f"[yellow]note[/]: {sketch_path}: {notice}", highlight=False)
                write_png_text(out_path, rgb, png_text(opts, sketch_path, ref_path, model, info))
            except AnimecolorError as exc:
                if len(jobs) == 1:
                    raise
                failures.append((sketch_path, str(exc)))
            finally:
                advance(1)
    done = len(jobs) - len(failures)
    console.print(f"colorize: {done} of {len(jobs)} written" + (f" (to {jobs[0][2].parent})" if len(jobs) > 1 else
                                                                 f" -> {jobs[0][2]}"))
    for path, why in failures:
        console.print(f"[bold red]failed[/]: {why}", highlight=False, soft_wrap=True)
    return {"written": done, "skipped": 0, "failed": len(failures)}




@user_errors
def colorize(sketch: Path = typer.Argument(..., help="Line drawing, or a folder of them."),
             reference: Path = typer.Option(None, "--reference", "-r", help="Colour reference of the character."),
             pairs: Path = typer.Option(None, help="CSV with columns sketch,reference (batch mode)."),
             model: Path = typer.Option(DEFAULT_MODEL, help="Exported model (.safetensors, see `export`)."),
             out: Path = typer.Option(None, "--out", "-o", help="Output PNG (a folder in batch mode)."),
             steps: int = typer.Option(20, min=1, max=1000, help="DDIM steps."),
             guidance: float = typer.Option(1.0, min=0.0, help="Classifier-free guidance scale on the reference."),
             seed: int = typer.Option(0, min=0, help="Random seed (same seed, same picture)."),
             eta: float = typer.Option(0.0, min=0.0, max=1.0, help="DDIM eta (0 = deterministic)."),
             mode: str = typer.Option("auto", help="auto | lines | xdog: how to read the drawing."),
             auto_levels: bool = typer.Option(False, help="Stretch a scan's levels to black and white."),
             binarize: bool = typer.Option(False, help="Threshold the drawing to pure lines (Otsu)."),
             keep_lines: bool = typer.Option(True, help="Draw the original lines over the result."),
             skip_existing: bool = typer.Option(False, help="Batch: leave outputs that already exist."),
             device: str = typer.Option("auto", help="auto | cpu | cuda.")) -> None:
    """Colour line drawings in the colours of a reference image."""
    result = colorize_files(sketch, reference, pairs, model, out, steps, guidance, seed, eta, mode, auto_levels,
                            binarize, keep_lines, skip_existing, device)
    if result["failed"]:
        raise typer.Exit(1)


@user_errors
def extract_lines(images: list[Path] = typer.Argument(..., help="Colour images."),
                  out: Path = typer.Option(Path("lines"), "--out", "-o", help="Output folder."),
                  sigma: float = typer.Option(0.5, min=0.1, max=5.0, help="XDoG sigma (training uses 0.3-0.5)."),
                  size: int = typer.Option(0, min=0, help="Resize the long side to this first (0: keep; "
                                                          "the model size gives training-like lines).")) -> None:
    """Line drawings with the training XDoG, for preparing your own sketches."""
    from pipeline.colorize import LINES, letterbox

    failures = 0
    with progress_bar("extract-lines", len(images)) as advance:
        for path in images:
            try:
                rgb = flatten_alpha(read_user_image(path))
                if size:
                    rgb = letterbox(rgb, size)[0]
                lines = LINES.sketch(rgb, sigma)
                write_png(out / f"{path.stem}.png", lines)
            except AnimecolorError as exc:
                failures += 1
                console.print(f"[bold red]failed[/]: {exc}", highlight=False, soft_wrap=True)
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

    info = export_model(load_checkpoint(checkpoint), out)
    console.print(f"export: {checkpoint} (step {info['step']}, {info['image_size']} px) -> {out}")
