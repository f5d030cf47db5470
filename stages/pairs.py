"""`animecolor pairs`: data/faces -> data/pairs (sketches, fixed benchmark pairs)."""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.data.imageio import read_rgb, write_json, write_png
from pipeline.report import contact_sheet
from stages.common import console, load_params, progress_bar, seed_everything, user_errors


def pairs(params_path: Path = Path("params.yaml"), faces_dir: Path = Path("data/faces"),
          out_dir: Path = Path("data/pairs"), metrics_path: Path = Path("metrics/pairs.json"),
          sheet_path: Path = Path("reports/pairs_samples.png")) -> dict:
    """Run the stage; returns the metrics it writes."""
    import pandas as pd

    from pipeline.data.pairs import build_pairs

    p = load_params(params_path, "base", "pairs")
    base, cfg = p["base"], p["pairs"]
    seed_everything(base.seed)
    manifest = faces_dir / "manifest.csv"
    total = int((pd.read_csv(manifest, usecols=["status"]).status == "kept").sum()) if manifest.is_file() else 0
    with progress_bar("pairs", total) as advance:
        table, stats = build_pairs(faces_dir, out_dir, base.seed, cfg.xdog, cfg.tps, progress=advance)
    n_pairs = stats["train"] + stats["test"]
    metrics = {
        "train_images": stats["train"],
        "test_images": stats["test"],
        "benchmark_pairs": {s: int((table.setting == s).sum()) for s in ("self_ref", "random_ref")},
        "seconds": round(stats["seconds"], 3),
        "pairs_per_s": round(n_pairs / stats["seconds"], 1) if stats["seconds"] else None,
    }
    write_json(metrics_path, metrics)
    _sheet(table, faces_dir, out_dir, sheet_path, cfg.sheet_size)
    console.print(f"pairs: {stats['train']} train / {stats['test']} test sketches, {len(table)} benchmark pairs")
    return metrics


def _sheet(table, faces_dir: Path, out_dir: Path, path: Path, n: int) -> None:
    """Rows: target | sketch | self-reference | random-reference, one column per test image."""
    self_ref = table[table.setting == "self_ref"].head(n)
    random_ref = table[table.setting == "random_ref"].set_index("name")
    rows = [[read_rgb(faces_dir / r.target) for r in self_ref.itertuples()],
            [read_rgb(out_dir / r.sketch) for r in self_ref.itertuples()],
            [read_rgb(out_dir / r.reference) for r in self_ref.itertuples()],
            [read_rgb(out_dir / random_ref.loc[r.name, "reference"]) for r in self_ref.itertuples()]]
    write_png(path, contact_sheet([im for row in rows for im in row], ncol=len(self_ref)))


@user_errors
def main(params: Path = typer.Option(Path("params.yaml"), help="Parameters file."),
         faces: Path = typer.Option(Path("data/faces"), help="Face dataset from `clean`."),
         out: Path = typer.Option(Path("data/pairs"), help="Output folder."),
         metrics: Path = typer.Option(Path("metrics/pairs.json"), help="Metrics JSON to write."),
         sheet: Path = typer.Option(Path("reports/pairs_samples.png"), help="Contact sheet PNG.")) -> None:
    """XDoG sketches for every face and the fixed self-/random-reference test pairs."""
    pairs(params, faces, out, metrics, sheet)
