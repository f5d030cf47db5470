"""`animecolor clean`: data/raw -> data/faces/{train,test}, an aligned face dataset."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import typer

from pipeline.data.imageio import read_rgb, write_json, write_png
from pipeline.report import contact_sheet
from stages.common import console, load_params, progress_bar, seed_everything, user_errors


def clean(params_path: Path = Path("params.yaml"), raw_dir: Path = Path("data/raw"),
          out_dir: Path = Path("data/faces"), metrics_path: Path = Path("metrics/clean.json"),
          reports: Path = Path("reports")) -> dict:
    """Run the stage; returns the metrics it writes."""
    from pipeline.data.clean import REASONS, clean_dataset, raw_images
    from pipeline.data.manifest import zoom_rows

    p = load_params(params_path, "base", "clean")
    base, cfg = p["base"], p["clean"]
    seed_everything(base.seed)
    n_raw = len(raw_images(raw_dir / "manifest.csv")) if (raw_dir / "manifest.csv").is_file() else 0
    with progress_bar("clean", n_raw) as advance:
        manifest, stats = clean_dataset(raw_dir, out_dir, cfg, base.image_size, progress=advance)
    kept = manifest[manifest.status == "kept"]
    rejected = manifest[manifest.status == "rejected"]
    crops = zoom_rows(kept)
    kept = kept[~crops]
    metrics = {
        "raw_images": n_raw,
        "kept": {"train": int((kept.split == "train").sum()), "test": int((kept.split == "test").sum())},
        **({"zoom_crops": int(crops.sum())} if cfg.zoom_crops else {}),
        "rejected": {reason: int((rejected.reason == reason).sum()) for reason in REASONS},
        "seconds": round(stats["seconds"], 3),
        "images_per_s": round(n_raw / stats["seconds"], 1) if stats["seconds"] else None,
    }
    write_json(metrics_path, metrics)
    faces = [read_rgb(out_dir / f) for f in kept["file"][:64]]
    if faces:
        write_png(reports / "clean_kept.png", contact_sheet(faces, ncol=8))
    _rejected_sheet(raw_dir, rejected, reports / "clean_rejected.png")
    crops_said = f", {metrics['zoom_crops']} zoom crops" if cfg.zoom_crops else ""
    console.print(f"clean: kept {metrics['kept']}{crops_said}, rejected {sum(metrics['rejected'].values())}")
    return metrics


def _rejected_sheet(raw_dir: Path, rejected, path: Path) -> None:
    """Up to 32 rejected images, each captioned with its reason (grey tile if undecodable)."""
    from pipeline.data.clean import decode

    tiles = []
    for _, row in rejected.head(32).iterrows():
        file = raw_dir / row.raw_file
        img = decode(file.read_bytes()) if file.is_file() else None
        tile = np.full((128, 128, 3), 200, np.uint8) if img is None else cv2.resize(img, (128, 128),
                                                                                     interpolation=cv2.INTER_AREA)
        cv2.putText(tile, row.reason, (3, 122), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 0, 0), 1, cv2.LINE_AA)
        tiles.append(tile)
    if not tiles:
        tile = np.full((128, 128, 3), 255, np.uint8)
        tiles = [cv2.putText(tile, "none rejected", (8, 64), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)]
    write_png(path, contact_sheet(tiles, ncol=8))


@user_errors
def main(params: Path = typer.Option(Path("params.yaml"), help="Parameters file."),
         raw: Path = typer.Option(Path("data/raw"), help="Raw-data folder from `crawl`."),
         out: Path = typer.Option(Path("data/faces"), help="Output face dataset."),
         metrics: Path = typer.Option(Path("metrics/clean.json"), help="Metrics JSON to write."),
         reports: Path = typer.Option(Path("reports"), help="Folder for the contact sheets.")) -> None:
    """Verify, de-duplicate, crop faces and split [bold]data/raw/[/] into [bold]data/faces/[/]."""
    clean(params, raw, out, metrics, reports)
