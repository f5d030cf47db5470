"""`animecolor crawl`: fill `data/raw/` from the configured source (default: synthetic faces)."""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.data.crawl import crawl_folder, crawl_synthetic
from pipeline.data.imageio import read_rgb, write_json, write_png
from pipeline.report import contact_sheet
from stages.common import console, load_params, progress_bar, seed_everything, user_errors


def crawl(params_path: Path = Path("params.yaml"), out_dir: Path = Path("data/raw"),
          metrics_path: Path = Path("metrics/crawl.json"),
          sheet_path: Path = Path("reports/crawl_samples.png")) -> dict:
    """Run the stage; returns the metrics it writes."""
    p = load_params(params_path, "base", "crawl")
    base, cfg = p["base"], p["crawl"]
    seed_everything(base.seed)
    if cfg.source == "folder":
        with progress_bar("crawl folder", None) as advance:
            manifest, stats = crawl_folder(out_dir, cfg.folder, cfg.n_images, progress=advance)
    else:
        with progress_bar("crawl synthetic", cfg.n_images) as advance:
            manifest, stats = crawl_synthetic(out_dir, cfg.n_images, base.image_size, base.seed,
                                              cfg.heterochromia_p, progress=advance)
    faces = [read_rgb(out_dir / f) for f in manifest["file"][: cfg.sheet_size]]
    write_png(sheet_path, contact_sheet(faces, ncol=8))
    metrics = {
        "source": cfg.source,
        "n_images": int(len(manifest)),
        "generated": stats["generated"],
        "skipped_existing": stats["skipped"],
        "image_size": base.image_size,
        "heterochromia_fraction": (round(float(manifest["heterochromia"].mean()), 4)
                                   if "heterochromia" in manifest else None),
        "seconds": round(stats["seconds"], 3),
        "images_per_s": round(stats["generated"] / stats["seconds"], 1) if stats["generated"] else None,
    }
    write_json(metrics_path, metrics)
    console.print(f"crawl: {metrics['n_images']} images in {out_dir} ({metrics['seconds']} s)")
    return metrics


@user_errors
def main(params: Path = typer.Option(Path("params.yaml"), help="Parameters file."),
         out: Path = typer.Option(Path("data/raw"), help="Output folder."),
         metrics: Path = typer.Option(Path("metrics/crawl.json"), help="Metrics JSON to write."),
         sheet: Path = typer.Option(Path("reports/crawl_samples.png"), help="Contact sheet PNG.")) -> None:
    """Fetch or generate raw images into [bold]data/raw/[/] with a manifest."""
    crawl(params, out, metrics, sheet)
