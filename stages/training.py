"""What the training stages share: torchrun's environment, dvclive logging, the run, the pass-through.

Imported by those stages only when they run (it imports torch and dvclive)."""

from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from pathlib import Path

from dvclive import Live

from pipeline.data.imageio import write_json
from pipeline.model.checkpoint import save_checkpoint
from pipeline.training.distributed import Dist, init_distributed
from pipeline.training.loop import Trainer, run_summary
from pipeline.training.samples import SampleGridConfig, samples_grid
from stages.common import console, progress_bar


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else ""


def source_digest() -> str:
    """Identity of the library's code: part of every run id, so a resume checkpoint written by
    other code (a `dvc repro` after a code change) starts a fresh run instead of being reused."""
    import pipeline

    root = Path(pipeline.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def training_data(stage: str, dataset, init: dict | None = None, **extra) -> list[dict]:
    """The checkpoint's record of what the model was trained on: the init model's records, then
    this stage's (the faces it sees, counted by crawl source, and `extra`, e.g. pretraining's
    reference dropout). `animecolor colorize` says it."""
    earlier = (init or {}).get("meta", {}).get("data") or []
    return [*earlier, {"stage": stage, "faces": len(dataset), "sources": dataset.sources(), **extra}]


def torchrun_distributed(device_name: str):
    """Join torchrun's process group from its environment (WORLD_SIZE, LOCAL_RANK); one process otherwise."""
    return init_distributed(device_name, int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("LOCAL_RANK", "0")))


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


def run_training(stage: str, trainer: Trainer, faces_dir: Path, pairs_dir: Path, model_path: Path,
                 metrics_path: Path, sheet_path: Path, live_dir: Path, samples: SampleGridConfig, seed: int,
                 stop_at: int | None = None, extra_metrics: dict | None = None) -> dict:
    """Resume if possible, train with dvclive + Rich progress, then write the model, metrics and grid."""
    dist: Dist = trainer.dist
    device, loop = trainer.device, trainer.cfg
    if trainer.try_resume():
        console.print(f"{stage}: resuming from step {trainer.step} ({trainer.state_path})")

    def grid(model, path: Path) -> None:
        samples_grid(model, trainer.diffusion, faces_dir, pairs_dir, path, samples, seed, device, loop.precision)

    with live_logger(live_dir, trainer.resumed_from is not None, dist.main) as log, \
            progress_bar(stage, trainer.total_steps) as advance:
        advance(trainer.step)
        result = trainer.run(log=log, progress=advance, stop_at=stop_at, sample_every=samples.every,
                             sample=lambda m, step: grid(m, sheet_path.with_name(f"{sheet_path.stem}_{step:06d}.png")))
    metrics = {**run_summary(result, trainer.model), "resumed_from": trainer.resumed_from,
               "images_seen": trainer.step * loop.batch_size * dist.world_size, "device": device.type,
               "processes": dist.world_size, **(extra_metrics or {})}
    if dist.main and trainer.step >= trainer.total_steps:
        state = trainer.state()
        for key in ("optimizer", "scheduler", "rng"):  # the shipped model is weights + configs only
            state.pop(key)
        save_checkpoint(model_path, {**state, "metrics": metrics})
        write_json(metrics_path, metrics)
        grid(trainer.ema.model, sheet_path)
        console.print(f"{stage}: {metrics['steps']} steps, loss {metrics['final_loss']}, "
                      f"{metrics['images_per_s']} images/s -> {model_path}")
    return metrics


def pass_through(stage: str, why: str, init: dict, init_path: Path, model, diffusion, faces_dir: Path,
                 pairs_dir: Path, model_path: Path, metrics_path: Path, sheet_path: Path, live_dir: Path,
                 samples: SampleGridConfig, seed: int, device, precision, metrics: dict, curve: dict) -> dict:
    """A stage that leaves its model unchanged (`why`): `init` is written to `model_path` with the
    reason in its meta, with the reports of a real run: `metrics`, one curve point at step 0
    (`curve`) and the samples grid of `model` (init's EMA weights). Returns `metrics`."""
    save_checkpoint(model_path, {**init, "meta": {**init.get("meta", {}), stage: f"passthrough ({why})"}})
    with live_logger(live_dir, resume=False) as log:
        if log:
            log(0, curve)
    write_json(metrics_path, metrics)
    samples_grid(model, diffusion, faces_dir, pairs_dir, sheet_path, samples, seed, device, precision)
    console.print(f"{stage}: {why}: {init_path} passed through unchanged -> {model_path}")
    return metrics
