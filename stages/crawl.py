"""`animecolor crawl`: fill `data/raw/` from the configured source (default: synthetic faces)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import typer

from pipeline.data.imageio import read_rgb, write_json, write_png
from pipeline.errors import AnimecolorError
from pipeline.report import contact_sheet
from stages.common import console, counting_bar, load_params, progress_bar, seed_everything, user_errors


def crawl(params_path: Path = Path("params.yaml"), out_dir: Path = Path("data/raw"),
          metrics_path: Path = Path("metrics/crawl.json"),
          sheet_path: Path = Path("reports/crawl_samples.png")) -> dict:
    """Run the stage; returns the metrics it writes."""
    from pipeline.data.crawl import run_crawl

    p = load_params(params_path, "base", "crawl")
    base, cfg = p["base"], p["crawl"]
    seed_everything(base.seed)
    auth = booru_auth() if cfg.source == "booru" else None
    if cfg.source in ("urls", "booru"):
        if cfg.source == "booru":
            console.print(f"crawl: listing {cfg.booru_url} posts for {cfg.tags!r} (up to {cfg.pages} pages)")
        with counting_bar("download") as (advance, set_total):
            manifest, stats = run_crawl(out_dir, cfg, base.image_size, base.seed, advance, set_total, auth)
    else:
        with progress_bar(f"crawl {cfg.source}", cfg.n_images if cfg.source == "synthetic" else None) as advance:
            manifest, stats = run_crawl(out_dir, cfg, base.image_size, base.seed, advance)
    ok = manifest[manifest.status == "ok"] if "status" in manifest else manifest
    sheet_files = list(dict.fromkeys(ok["file"]))[: cfg.sheet_size]
    write_png(sheet_path, contact_sheet([_thumb(read_rgb(out_dir / f), base.image_size) for f in sheet_files]
                                        or [np.zeros((base.image_size,) * 2 + (3,), np.uint8)], ncol=8))
    metrics = {
        "source": cfg.source,
        "n_images": int(len(ok)),
        "generated": stats["generated"],
        "skipped_existing": stats["skipped"],
        "image_size": base.image_size,
        "heterochromia_fraction": (round(float(manifest["heterochromia"].mean()), 4)
                                   if "heterochromia" in manifest else None),
        "seconds": round(stats["seconds"], 3),
        "images_per_s": round(stats["generated"] / stats["seconds"], 1) if stats["generated"] else None,
    }
    if "failures" in stats:  # network sources
        metrics.update(requested=int(len(manifest)), failed=stats["failed"], failures=stats["failures"],
                       unique_files=stats["unique_files"], megabytes=round(stats["bytes"] / 1e6, 2))
    write_json(metrics_path, metrics)
    failed = f", {metrics['failed']} failed ({_reasons(metrics['failures'])})" if metrics.get("failed") else ""
    console.print(f"crawl: {metrics['n_images']} images in {out_dir}{failed} ({metrics['seconds']} s)")
    return metrics


def booru_auth() -> tuple[str, str] | None:
    """Login and API key from the environment (never from params, so never in dvc.lock or git)."""
    login, key = os.environ.get("ANIMECOLOR_BOORU_LOGIN"), os.environ.get("ANIMECOLOR_BOORU_API_KEY")
    if bool(login) != bool(key):
        raise AnimecolorError("set both ANIMECOLOR_BOORU_LOGIN and ANIMECOLOR_BOORU_API_KEY, or neither")
    return (login, key) if login else None


def _thumb(rgb: np.ndarray, size: int) -> np.ndarray:
    """Centre square at `size` px, so the sheet works for images of any shape."""
    h, w = rgb.shape[:2]
    side = min(h, w)
    square = rgb[(h - side) // 2 : (h - side) // 2 + side, (w - side) // 2 : (w - side) // 2 + side]
    return cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA if side >= size else cv2.INTER_CUBIC)


def _reasons(failures: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in failures.items())


@user_errors
def main(params: Path = typer.Option(Path("params.yaml"), help="Parameters file."),
         out: Path = typer.Option(Path("data/raw"), help="Output folder."),
         metrics: Path = typer.Option(Path("metrics/crawl.json"), help="Metrics JSON to write."),
         sheet: Path = typer.Option(Path("reports/crawl_samples.png"), help="Contact sheet PNG.")) -> None:
    """Fetch or generate raw images into [bold]data/raw/[/] with a manifest."""
    crawl(params, out, metrics, sheet)
