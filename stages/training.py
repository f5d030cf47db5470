"""What the `pretrain` and `finetune` stages share: dvclive logging, samples grids, summaries."""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from pipeline.data.dataset import to_uint8
from pipeline.data.imageio import write_png
from pipeline.evaluation.benchmark import load_benchmark
from pipeline.model.diffusion import Diffusion
from pipeline.model.generate import colorize_batch
from pipeline.report import contact_sheet
from pipeline.training.device import autocast


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else ""


@contextmanager
def live_logger(live_dir: Path, resume: bool, enabled: bool = True):
    """dvclive logger as a log(step, metrics) callable; `dvc plots show` draws dvclive/<stage>/plots."""
    if not enabled:
        yield None
        return
    from dvclive import Live

    with Live(str(live_dir), resume=resume, report=None, save_dvc_exp=False, dvcyaml=False) as live:
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
        out = colorize_batch(model, diffusion, data["sketch"], data["reference"], steps=steps, guidance=guidance,
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
