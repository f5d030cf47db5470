"""What the `pretrain` and `finetune` stages share: dvclive logging, samples grids, summaries."""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from pathlib import Path

import torch
from dvclive import Live
from torch import nn

from pipeline.data.dataset import to_uint8
from pipeline.data.imageio import write_json, write_png
from pipeline.evaluation.benchmark import load_benchmark
from pipeline.model.checkpoint import save_checkpoint
from pipeline.model.diffusion import Diffusion
from pipeline.model.generate import colorize_batch
from pipeline.report import contact_sheet
from pipeline.training.device import autocast
from stages.common import console, progress_bar


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else ""


@contextmanager
def live_logger(live_dir: Path, resume: bool, enabled: bool = True):
    """dvclive logger as a log(step, metrics) callable; `dvc plots show` draws dvclive/<stage>/plots."""
    if not enabled:
        yield None
        return
    try:
        live = Live(str(live_dir), resume=resume, report=None, save_dvc_exp=False, dvcyaml=False)
    except Exception as exc:  # e.g. a git repository without commits: train anyway, without curves
        console.print(f"[yellow]note[/]: dvclive logging off ({type(exc).__name__}: {exc})", highlight=False)
        yield None
        return
    with live:
        def log(step: int, metrics: dict) -> None:
            live.step = step
            for name, value in metrics.items():
                live.log_metric(f"train/{name}", float(value))
            live.make_summary()

        yield log


def samples_grid(model: nn.Module, diffusion: Diffusion, faces: Path, pairs: Path, path: Path, n: int,
                 steps: int, guidance: float, seed: int, device: torch.device, precision: str = "auto") -> None:
    """Rows: sketch | self-reference | output | random reference | output | target, one column per test face."""
    rows = []
    was_training = model.training
    model.eval()
    for setting in ("self_ref", "random_ref"):
        _, data = load_benchmark(faces, pairs, setting, limit=n)
        data = {k: v.to(device) for k, v in data.items()}
        out = colorize_batch(model, diffusion, data["sketch"], data["reference"], sample_steps=steps, guidance=guidance,
                             seed=seed, autocast=autocast(device, precision))
        if setting == "self_ref":
            rows.append([to_uint8(s) for s in data["sketch"]])
        rows += [[to_uint8(r) for r in data["reference"]], [to_uint8(o) for o in out]]
    rows.append([to_uint8(t) for t in data["target"]])
    model.train(was_training)
    tiles = [im if im.ndim == 3 else im[..., None].repeat(3, -1) for row in rows for im in row]
    write_png(path, contact_sheet(tiles, ncol=len(rows[0])))


def summary(result: dict, model: nn.Module, tail: int = 50) -> dict:
    losses = result["losses"]
    return {
        "final_loss": round(sum(losses[-tail:]) / len(losses[-tail:]), 5) if losses else None,
        "steps": result["steps"],
        "images_per_s": round(result["images_per_s"], 2),
        "seconds": round(result["seconds"], 1),
        "parameters": sum(p.numel() for p in model.parameters()),
        "peak_memory_mb": round(result["peak_memory_mb"], 1),
    }


def run_training(stage: str, trainer, faces_dir: Path, pairs_dir: Path, model_path: Path, metrics_path: Path,
                 sheet_path: Path, live_dir: Path, sample_cfg, seed: int, stop_at: int | None = None,
                 extra_metrics: dict | None = None) -> dict:
    """Resume if possible, train with dvclive + Rich progress, then write the model, metrics and grid.

    Shared by `pretrain` and `finetune`; `sample_cfg` is their params section (sample_* keys)."""
    dist, device, loop = trainer.dist, trainer.device, trainer.cfg
    if trainer.try_resume():
        console.print(f"{stage}: resuming from step {trainer.step} ({trainer.state_path})")

    def sample(model: nn.Module, step: int) -> None:
        samples_grid(model, trainer.diffusion, faces_dir, pairs_dir,
                     sheet_path.with_name(f"{sheet_path.stem}_{step:06d}.png"), sample_cfg.sample_size,
                     sample_cfg.sample_steps, sample_cfg.sample_guidance, seed, device, loop.precision)

    with live_logger(live_dir, trainer.resumed_from is not None, dist.main) as log, \
            progress_bar(stage, loop.steps) as advance:
        advance(trainer.step)
        result = trainer.run(log=log, progress=advance, sample=sample, stop_at=stop_at)
    metrics = {**summary(result, trainer.model), "resumed_from": trainer.resumed_from,
               "images_seen": trainer.step * loop.batch_size * dist.world_size, "device": device.type,
               "processes": dist.world_size, **(extra_metrics or {})}
    if dist.main and trainer.step >= loop.steps:
        state = trainer.state()
        for key in ("optimizer", "scheduler", "rng"):  # the shipped model is weights + configs only
            state.pop(key)
        save_checkpoint(model_path, {**state, "metrics": metrics})
        write_json(metrics_path, metrics)
        samples_grid(trainer.ema.model, trainer.diffusion, faces_dir, pairs_dir, sheet_path, sample_cfg.sample_size,
                     sample_cfg.sample_steps, sample_cfg.sample_guidance, seed, device, loop.precision)
        console.print(f"{stage}: {metrics['steps']} steps, loss {metrics['final_loss']}, "
                      f"{metrics['images_per_s']} images/s -> {model_path}")
    return metrics
