"""`animecolor evaluate`: models + benchmark pairs -> metrics/evaluate.json, per-image CSV, grids."""

from __future__ import annotations

import platform
import shutil
from pathlib import Path

import numpy as np
import typer

from pipeline.data.imageio import write_json, write_png
from pipeline.errors import AnimecolorError
from pipeline.report import contact_sheet
from stages.common import console, load_params, probe_cache_file, progress_bar, seed_everything, user_errors

# "finetune": the fine-tuned model with its prompt adapter (stage text; with the empty prompt exactly the fine-tuned model)
DEFAULT_MODELS = ("pretrain=models/pretrain.pt", "finetune=models/text.pt")


def load_scored_model(path: Path):
    """(network, diffusion) of a training checkpoint (.pt: its EMA weights) or an exported model file (.safetensors)."""
    from pipeline.model.checkpoint import load_checkpoint, model_from_checkpoint

    if path.suffix == ".safetensors":
        from pipeline.colorize import load_model

        return load_model(path)[:2]
    return model_from_checkpoint(load_checkpoint(path), "ema")


def parse_models(specs: list[str]) -> dict[str, Path]:
    out = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise AnimecolorError(f"--model {spec!r}: expected NAME=PATH")
        out[name] = Path(path)
    return out


def clean_fid_inception_file() -> Path:
    """Where clean-fid itself keeps its Inception file: `cleanfid.features.feature_extractor` loads
    it from "/tmp" ("./" on Windows); tests/test_evaluate.py checks that this mirrors clean-fid's code."""
    from pipeline.evaluation.features import INCEPTION_FILE

    return Path("./" if platform.system() == "Windows" else "/tmp") / INCEPTION_FILE


def evaluate(params_path: Path = Path("params.yaml"), models: dict[str, Path] | None = None,
             faces_dir: Path = Path("data/faces"), pairs_dir: Path = Path("data/pairs"),
             out_dir: Path = Path("data/evaluate"), raw_dir: Path = Path("data/raw"), metrics_path: Path = Path("metrics/evaluate.json"),
             table_path: Path = Path("reports/evaluate_images.csv"), sheet_prefix: Path = Path("reports/evaluate"),
             headline_path: Path = Path("metrics/headline.json")) -> dict:
    """Run the stage; returns the metrics it writes (all of them; the last model's headline goes to `headline_path`)."""
    import pandas as pd

    from pipeline.device import resolve_device
    from pipeline.evaluation import metrics as M
    from pipeline.evaluation.evaluate import HETEROCHROMIA_GRID, run_benchmark, sampling_precision
    from pipeline.evaluation.headline import headline_metrics
    from pipeline.evaluation.text_bench import SAMPLED_PER_FACE, grid_tiles, run_text_benchmark

    p = load_params(params_path, "base", "pairs", "evaluate")
    base, cfg = p["base"], p["evaluate"]
    seed_everything(base.seed)
    device = resolve_device(base.device)
    models = models or parse_models(list(DEFAULT_MODELS))
    loaded = {name: load_scored_model(path) for name, path in models.items()}
    for name, (model, _) in loaded.items():
        if model.config.image_size != base.image_size:
            raise AnimecolorError(f"{models[name]}: model is for {model.config.image_size} px images, "
                                  f"base.image_size is {base.image_size}")
    pairs_csv = pairs_dir / "test" / "pairs.csv"
    n_pairs = len(pd.read_csv(pairs_csv, usecols=["setting"])) if pairs_csv.is_file() else 0
    n_test = min(cfg.limit or n_pairs, n_pairs // 2)
    inception = Path(cfg.inception_path) if cfg.inception_path else clean_fid_inception_file()
    precision, why = sampling_precision(loaded, faces_dir, pairs_dir, cfg, device, probe_cache_file())
    cfg = cfg.model_copy(update={"precision": precision})  # the benchmark and the text benchmark alike
    with progress_bar("evaluate", 2 * n_test * len(loaded)) as advance:
        metrics, table, grids = run_benchmark(loaded, faces_dir, pairs_dir, out_dir, cfg, device, inception,
                                              progress=advance, precision_reason=why)
    n_full = min(cfg.full_size.faces, n_pairs // 2)
    full_dir = sheet_prefix.with_name(f"{sheet_prefix.name}_full")  # one folder: its contents follow the settings
    shutil.rmtree(full_dir, ignore_errors=True)
    full_dir.mkdir(parents=True, exist_ok=True)
    if n_full:
        metrics, table = _full_size(loaded, faces_dir, pairs_dir, raw_dir, p["pairs"].tps, base.seed, cfg, device,
                                    metrics, table, full_dir, n_full)
    else:
        (full_dir / "README.txt").write_text("evaluate.full_size.faces is 0, so the full-size benchmark did not run.\n")
    write_json(metrics_path, metrics)
    table_path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(table_path, index=False, float_format="%.5g")
    hetero_dir = sheet_prefix.with_name(f"{sheet_prefix.name}{HETEROCHROMIA_GRID}")  # a folder: there may be none
    shutil.rmtree(hetero_dir, ignore_errors=True)
    hetero_dir.mkdir(parents=True, exist_ok=True)
    for setting, images in grids.items():
        keys = ["sketch", "reference", *loaded, "target"]
        n = min(cfg.sheet_size, n_test, images["target"].shape[0])
        tiles = grid_tiles([images[k] for k in keys], n)
        path = (hetero_dir / f"{setting.removesuffix(HETEROCHROMIA_GRID)}.png" if setting.endswith(HETEROCHROMIA_GRID)
                else sheet_prefix.with_name(f"{sheet_prefix.name}_{setting}.png"))
        write_png(path, contact_sheet(tiles, ncol=n))
    if not any(setting.endswith(HETEROCHROMIA_GRID) for setting in grids):
        (hetero_dir / "README.txt").write_text("No test reference has two irises more than "
                                               f"{M.HETEROCHROMIA_GAP:g} CIEDE2000 apart (or the data has no label "
                                               "maps), so there is no heterochromia grid.\n")
    text_models = [name for name, (model, _) in loaded.items() if model.config.text]
    text_dir = sheet_prefix.with_name(f"{sheet_prefix.name}_text")  # one folder: its contents follow the models
    shutil.rmtree(text_dir, ignore_errors=True)
    text_dir.mkdir(parents=True, exist_ok=True)
    if not text_models:
        (text_dir / "README.txt").write_text("No evaluated model has text conditioning (pretrain.unet.text: false), "
                                             "so the text benchmark did not run.\n")
    n_faces = min(cfg.text_limit, n_pairs // 2)  # the text benchmark takes the first text_limit faces, not limit
    with progress_bar("evaluate text", SAMPLED_PER_FACE * n_faces * len(text_models)) as advance:
        for name in text_models:
            text_metrics, text_grids = run_text_benchmark(*loaded[name], faces_dir, pairs_dir, cfg, device, advance)
            metrics[name]["text"] = text_metrics
            for setting, rows in text_grids.items():
                write_png(text_dir / f"{name}_{setting}.png",
                          contact_sheet(grid_tiles(rows, cfg.sheet_size), ncol=min(cfg.sheet_size, n_faces)))
    write_json(metrics_path, metrics)
    write_json(headline_path, headline_metrics(metrics))
    for name in loaded:
        s, r = metrics[name]["self_ref"], metrics[name]["random_ref"]
        console.print(f"evaluate {name}: PSNR {s['psnr']} / {r['psnr']}, LPIPS {s['lpips']} / {r['lpips']} "
                      f"(self / random reference)")
    return metrics


def full_size_colour(opts, device, infos: dict | None = None):
    """The full-size benchmark's colouring: what `animecolor colorize DRAWING -r REFERENCE --mode lines
    --no-faces --paint-paper` does (`colorize_layers`), at seed `opts.seed + index` for test face
    `index`. Its pictures are face crops, so the face pass (for larger drawings, `faces.py`) is off: a
    rare small find in a face crop cannot move the numbers; `scripts/diagnostics/whole_figures.py`
    scores the face pass. Their lines come from pictures, not paper: the model's colours stay on the
    areas a drawing on paper would keep as paper. `infos`: {model: its file's header}, for what
    `colorize` reads from it (`trained_on_soft_lines`); a checkpoint's models have none."""
    from dataclasses import replace

    from pipeline.colorize import colorize_layers

    def opaque(image: np.ndarray) -> np.ndarray:  # grey or RGB -> opaque RGBA, as colorize reads a file
        rgb = np.dstack([image] * 3) if image.ndim == 2 else image
        return np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])

    def colour(model, diffusion, lines, reference, index):
        seeded = replace(opts, mode="lines", seed=opts.seed + index, faces=False, keep_paper=False)
        layers, _ = colorize_layers(model, diffusion, opaque(lines), opaque(reference), seeded, [seeded.seed], device,
                                    info=(infos or {}).get(model))
        return layers[0].image()

    return colour


def _full_size(loaded, faces_dir, pairs_dir, raw_dir, tps, seed, cfg, device, metrics, table, full_dir, n_full):
    """The full-size benchmark (`pipeline/evaluation/fullsize.py`) merged into the stage's metrics and
    per-image table; its grids go to `full_dir` (one PNG per setting, faces at `full_size.size` px)."""
    import pandas as pd

    from pipeline.colorize import ColorizeOptions, upscaled_truth
    from pipeline.evaluation.fullsize import UPSCALED_TRUTH, run_full_size
    from pipeline.model.perceptual import VGGLPIPS

    opts = ColorizeOptions(sample_steps=cfg.sample_steps, guidance=cfg.guidance, eta=cfg.eta, seed=cfg.seed,
                           match_chroma=cfg.full_size.match_chroma)
    if not cfg.full_size.all_models:  # the shipped model only (the last given): the DAG's time budget
        loaded = dict([list(loaded.items())[-1]])
    use_animeface = {"auto": None, "on": True, "off": False}[cfg.animeface]
    with progress_bar("evaluate full size", len(cfg.full_size.settings()) * n_full * len(loaded)) as advance:
        full, full_table, grids = run_full_size(loaded, faces_dir, pairs_dir, raw_dir, cfg.full_size, tps, seed,
                                                full_size_colour(opts, device),
                                                upscaled_truth, VGGLPIPS().to(device), device, use_animeface,
                                                progress=advance)
    for candidate, settings in full.items():
        metrics.setdefault(candidate, {}).update(settings)
    for setting, images in grids.items():
        keys = ["sketch", "reference", *loaded, UPSCALED_TRUTH, "target"]
        n = min(cfg.sheet_size, n_full)
        tiles = [images[k][i] if images[k][i].ndim == 3 else np.repeat(images[k][i][..., None], 3, -1)
                 for k in keys for i in range(n)]
        write_png(full_dir / f"{setting.removeprefix('full_')}.png", contact_sheet(tiles, ncol=n, tile=min(256, cfg.full_size.size)))
    return metrics, pd.concat([table, full_table], ignore_index=True)


@user_errors
def main(params: Path = typer.Option(Path("params.yaml"), help="Parameters file."),
         model: list[str] = typer.Option(list(DEFAULT_MODELS), help="NAME=PATH of a model to score (repeatable)."),
         faces: Path = typer.Option(Path("data/faces"), help="Face dataset from `clean`."),
         pairs: Path = typer.Option(Path("data/pairs"), help="Benchmark pairs from `pairs`."),
         out: Path = typer.Option(Path("data/evaluate"), help="Folder for every candidate's output images."),
         raw: Path = typer.Option(Path("data/raw"), help="The crawl's images (the full-size benchmark re-crops them)."),
         metrics: Path = typer.Option(Path("metrics/evaluate.json"), help="Metrics JSON to write."),
         table: Path = typer.Option(Path("reports/evaluate_images.csv"), help="Per-image metrics CSV."),
         sheet: Path = typer.Option(Path("reports/evaluate"), help="Grid PNG prefix (_<setting>.png is added)."),
         headline: Path = typer.Option(Path("metrics/headline.json"),
                                       help="The last model's headline numbers (what `dvc metrics show` prints).")) -> None:
    """Score models and baselines on the self- and random-reference benchmark (at full size also a moved self reference)."""
    evaluate(params, parse_models(model), faces, pairs, out, raw, metrics, table, sheet, headline)
