"""`animecolor finetune`: models/pretrain.pt -> models/finetune.pt (reconstruction through the sampler)."""

from __future__ import annotations

from pathlib import Path

import torch
import typer

from pipeline.data.dataset import PairDataset
from pipeline.data.imageio import write_json
from pipeline.model.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from pipeline.training.device import close_distributed, init_distributed, resolve_device
from pipeline.training.finetune import reconstruction_objective
from pipeline.training.loop import Trainer, fingerprint
from stages.common import console, load_params, seed_everything, user_errors
from stages.training import file_digest, live_logger, run_training, samples_grid


def finetune(params_path: Path = Path("params.yaml"), init_path: Path = Path("models/pretrain.pt"),
             faces_dir: Path = Path("data/faces"), pairs_dir: Path = Path("data/pairs"),
             model_path: Path = Path("models/finetune.pt"), state_path: Path = Path("checkpoints/finetune.pt"),
             metrics_path: Path = Path("metrics/finetune.json"), sheet_path: Path = Path("reports/finetune_samples.png"),
             live_dir: Path = Path("dvclive/finetune"), stop_at: int | None = None) -> dict:
    """Run the stage; returns the metrics it writes. epochs = 0 passes the pretrained model through."""
    p = load_params(params_path, "base", "pairs", "finetune")
    base, cfg = p["base"], p["finetune"]
    init = load_checkpoint(init_path)
    if cfg.epochs == 0:
        return _passthrough(cfg, base, p["pairs"], init, init_path, faces_dir, pairs_dir, model_path, metrics_path,
                            sheet_path, live_dir)
    dist, device = init_distributed(base.device)
    seed_everything(base.seed)
    try:
        dataset = PairDataset(faces_dir, pairs_dir, "train", tps=p["pairs"].tps_config(), limit=cfg.subset)
        model, diffusion = model_from_checkpoint(init, "ema")
        run_id = fingerprint(base.model_dump(), p["pairs"].model_dump(), cfg.model_dump(), file_digest(init_path),
                             file_digest(pairs_dir / "train" / "items.csv"))
        trainer = Trainer(model, diffusion, dataset, reconstruction_objective(diffusion, cfg.reconstruction_config()),
                          cfg.loop_config(base.seed, len(dataset)), device, dist, state_path, run_id,
                          meta={"stage": "finetune", "params": cfg.model_dump(), "init_from": str(init_path)})
        trainer.init_from(init)  # a resume below overwrites this with the run's own state
        return run_training("finetune", trainer, faces_dir, pairs_dir, model_path, metrics_path, sheet_path,
                            live_dir, cfg, base.seed, stop_at, extra_metrics={"passthrough": False})
    finally:
        close_distributed()


def _passthrough(cfg, base, pairs_cfg, init: dict, init_path: Path, faces_dir: Path, pairs_dir: Path,
                 model_path: Path, metrics_path: Path, sheet_path: Path, live_dir: Path) -> dict:
    """epochs = 0: the pretrained weights unchanged, with the same reports as a real run (the
    reconstruction loss of one batch, measured without training, and the samples grid)."""
    save_checkpoint(model_path, {**init, "meta": {**init.get("meta", {}), "finetune": "passthrough (epochs 0)"}})
    device = resolve_device(base.device)
    model, diffusion = model_from_checkpoint(init, "ema")
    model.to(device)
    dataset = PairDataset(faces_dir, pairs_dir, "train", tps=pairs_cfg.tps_config(), limit=cfg.subset)
    n = min(cfg.batch_size, len(dataset))
    batch = {k: torch.stack([dataset[(i, base.seed + i)][k] for i in range(n)]).to(device)
             for k in ("sketch", "reference", "target")}
    objective = reconstruction_objective(diffusion, cfg.reconstruction_config())
    with torch.no_grad():
        loss, _ = objective(model, batch, torch.Generator().manual_seed(base.seed))
    metrics = {"steps": 0, "passthrough": True, "final_loss": round(float(loss), 5)}
    with live_logger(live_dir, resume=False) as log:
        if log:
            log(0, {"loss": float(loss)})
    write_json(metrics_path, metrics)
    samples_grid(model, diffusion, faces_dir, pairs_dir, sheet_path, cfg.sample_size, cfg.sample_steps,
                 cfg.sample_guidance, base.seed, device, cfg.precision)
    console.print(f"finetune: epochs 0, {init_path} passed through unchanged -> {model_path}")
    return metrics


@user_errors
def main(params: Path = typer.Option(Path("params.yaml"), help="Parameters file."),
         init: Path = typer.Option(Path("models/pretrain.pt"), help="Pretrained model to start from."),
         faces: Path = typer.Option(Path("data/faces"), help="Face dataset from `clean`."),
         pairs: Path = typer.Option(Path("data/pairs"), help="Sketches from `pairs`."),
         model: Path = typer.Option(Path("models/finetune.pt"), help="Fine-tuned model to write."),
         state: Path = typer.Option(Path("checkpoints/finetune.pt"), help="Resume checkpoint (rerun resumes)."),
         metrics: Path = typer.Option(Path("metrics/finetune.json"), help="Metrics JSON to write."),
         sheet: Path = typer.Option(Path("reports/finetune_samples.png"), help="Samples grid PNG.")) -> None:
    """Fine-tune through the unrolled DDIM sampler against the ground truth (resumable; torchrun for DDP)."""
    torch.set_float32_matmul_precision("high")
    finetune(params, init, faces, pairs, model, state, metrics, sheet)
