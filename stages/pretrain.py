"""`animecolor pretrain`: data/pairs -> models/pretrain.pt (denoising with condition dropout)."""

from __future__ import annotations

from pathlib import Path

import torch
import typer

from pipeline.data.dataset import PairDataset
from pipeline.data.imageio import write_json
from pipeline.model.checkpoint import save_checkpoint
from pipeline.model.unet import UNet
from pipeline.model.diffusion import Diffusion
from pipeline.training.device import close_distributed, init_distributed
from pipeline.training.loop import Trainer, denoising_objective, fingerprint
from stages.common import console, load_params, progress_bar, seed_everything, user_errors
from stages.training import file_digest, live_logger, samples_grid, summary


def pretrain(params_path: Path = Path("params.yaml"), faces_dir: Path = Path("data/faces"),
             pairs_dir: Path = Path("data/pairs"), model_path: Path = Path("models/pretrain.pt"),
             state_path: Path = Path("checkpoints/pretrain.pt"), metrics_path: Path = Path("metrics/pretrain.json"),
             sheet_path: Path = Path("reports/pretrain_samples.png"), live_dir: Path = Path("dvclive/pretrain"),
             stop_at: int | None = None) -> dict:
    """Run the stage; returns the metrics it writes. `stop_at` ends early (tests of resuming)."""
    p = load_params(params_path, "base", "pairs", "pretrain")
    base, cfg = p["base"], p["pretrain"]
    dist, device = init_distributed(base.device)
    seed_everything(base.seed)
    try:
        dataset = PairDataset(faces_dir, pairs_dir, "train", tps=p["pairs"].tps_config(),
                              line_augment=cfg.line_augment())
        loop = cfg.loop_config(base.seed, len(dataset))
        model, diffusion = UNet(cfg.unet_config(base.image_size)), Diffusion(cfg.diffusion_config())
        run_id = fingerprint(base.model_dump(), p["pairs"].model_dump(), cfg.model_dump(),
                             file_digest(pairs_dir / "train" / "items.csv"))
        trainer = Trainer(model, diffusion, dataset, denoising_objective(diffusion, cfg.p_uncond, cfg.p_sketch),
                          loop, device, dist, state_path, run_id, meta={"stage": "pretrain", "params": cfg.model_dump()})
        if trainer.try_resume():
            console.print(f"pretrain: resuming from step {trainer.step} ({state_path})")
        sample = lambda m, step: samples_grid(m, diffusion, faces_dir, pairs_dir,  # noqa: E731
                                              sheet_path.with_name(f"{sheet_path.stem}_{step:06d}.png"),
                                              cfg.sample_size, cfg.sample_steps, cfg.sample_guidance, base.seed,
                                              device, cfg.precision)
        with live_logger(live_dir, trainer.resumed_from is not None, dist.main) as log, \
                progress_bar("pretrain", loop.steps) as advance:
            advance(trainer.step)
            result = trainer.run(log=log, progress=advance, sample=sample, stop_at=stop_at)
        metrics = {**summary(result, trainer.model), "resumed_from": trainer.resumed_from,
                   "images_seen": trainer.step * loop.batch_size * dist.world_size, "device": device.type,
                   "processes": dist.world_size}
        if dist.main and trainer.step >= loop.steps:
            state = trainer.state()
            for key in ("optimizer", "scheduler", "rng"):  # the shipped model is weights + configs only
                state.pop(key)
            save_checkpoint(model_path, {**state, "metrics": metrics})
            write_json(metrics_path, metrics)
            samples_grid(trainer.ema.model, diffusion, faces_dir, pairs_dir, sheet_path, cfg.sample_size,
                         cfg.sample_steps, cfg.sample_guidance, base.seed, device, cfg.precision)
            console.print(f"pretrain: {metrics['steps']} steps, loss {metrics['final_loss']}, "
                          f"{metrics['images_per_s']} images/s -> {model_path}")
        return metrics
    finally:
        close_distributed()


@user_errors
def main(params: Path = typer.Option(Path("params.yaml"), help="Parameters file."),
         faces: Path = typer.Option(Path("data/faces"), help="Face dataset from `clean`."),
         pairs: Path = typer.Option(Path("data/pairs"), help="Sketches and benchmark pairs from `pairs`."),
         model: Path = typer.Option(Path("models/pretrain.pt"), help="Trained model to write."),
         state: Path = typer.Option(Path("checkpoints/pretrain.pt"), help="Resume checkpoint (rerun resumes)."),
         metrics: Path = typer.Option(Path("metrics/pretrain.json"), help="Metrics JSON to write."),
         sheet: Path = typer.Option(Path("reports/pretrain_samples.png"), help="Samples grid PNG.")) -> None:
    """Train the diffusion U-Net with classifier-free condition dropout (resumable; torchrun for DDP)."""
    torch.set_float32_matmul_precision("high")
    pretrain(params, faces, pairs, model, state, metrics, sheet)
