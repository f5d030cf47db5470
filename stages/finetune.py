"""`animecolor finetune`: models/pretrain.pt -> models/finetune.pt (reconstruction through the sampler)."""

from __future__ import annotations

from pathlib import Path

import typer

from stages.common import console, load_params, probe_cache_file, seed_everything, user_errors


def finetune(params_path: Path = Path("params.yaml"), init_path: Path = Path("models/pretrain.pt"),
             faces_dir: Path = Path("data/faces"), pairs_dir: Path = Path("data/pairs"),
             model_path: Path = Path("models/finetune.pt"), state_path: Path = Path("checkpoints/finetune.pt"),
             metrics_path: Path = Path("metrics/finetune.json"),
             sheet_path: Path = Path("reports/finetune_samples.png"),
             live_dir: Path = Path("dvclive/finetune"), stop_at: int | None = None) -> dict:
    """Run the stage; returns the metrics it writes. epochs = 0 passes the pretrained model through."""
    from pipeline.data.tps import WARP_MOVES
    from pipeline.model.checkpoint import load_checkpoint, model_from_checkpoint
    from pipeline.training.distributed import close_distributed
    from pipeline.training.finetune import reconstruction_objective
    from pipeline.training.loop import Trainer, fingerprint
    from stages.training import file_digest, run_training, source_digest, torchrun_distributed, training_data

    p = load_params(params_path, "base", "pairs", "finetune")
    base, cfg = p["base"], p["finetune"]
    init = load_checkpoint(init_path)
    if cfg.loop.epochs == 0:
        return _passthrough(cfg, base, p["pairs"], init, init_path, faces_dir, pairs_dir, model_path, metrics_path,
                            sheet_path, live_dir)
    dist, device = torchrun_distributed(base.device)
    seed_everything(base.seed)
    try:
        dataset = _dataset(cfg, p["pairs"], init, faces_dir, pairs_dir)
        model, diffusion = model_from_checkpoint(init, "ema")
        run_id = fingerprint(base.model_dump(), p["pairs"].model_dump(), cfg.model_dump(), file_digest(init_path),
                             file_digest(pairs_dir / "train" / "items.csv"), source_digest())
        trainer = Trainer(model, diffusion, dataset, reconstruction_objective(diffusion, cfg.reconstruction),
                          cfg.loop, device, dist, state_path, run_id,
                          meta={"stage": "finetune", "params": cfg.to_dict(), "init_from": str(init_path),
                                "data": training_data("finetune", dataset, init,
                                                      reference_warp=dataset.tps.model_dump(include=set(WARP_MOVES)))},
                          seed=base.seed, probe_cache=probe_cache_file())
        trainer.init_from(init)  # a resume below overwrites this with the run's own state
        return run_training("finetune", trainer, faces_dir, pairs_dir, model_path, metrics_path, sheet_path,
                            live_dir, cfg.samples, base.seed, stop_at, extra_metrics={"passthrough": False})
    finally:
        close_distributed()


def _dataset(cfg, pairs_cfg, init: dict, faces_dir: Path, pairs_dir: Path):
    """The fine-tuning images: with the checkpoint's captions (text models) and, for the colour
    term, label maps (where the data has them)."""
    from pipeline.data.dataset import PairDataset
    from pipeline.training.finetune import finetune_captions

    captions, vocabulary = finetune_captions(init, cfg.reconstruction.p_text)
    colour = cfg.reconstruction.colour_weight > 0
    dataset = PairDataset(faces_dir, pairs_dir, "train", tps=cfg.reference_warp.over(pairs_cfg.tps, "finetune"),
                          limit=cfg.subset,
                          captions=captions, vocabulary=vocabulary, with_labels=colour)
    if colour and dataset.drop_label_uses():
        console.print("finetune: the training images have no label maps (real data): the colour term "
                      "(finetune.reconstruction.colour_weight) is off")
    return dataset


def _passthrough(cfg, base, pairs_cfg, init: dict, init_path: Path, faces_dir: Path, pairs_dir: Path,
                 model_path: Path, metrics_path: Path, sheet_path: Path, live_dir: Path) -> dict:
    """epochs = 0: the pretrained weights unchanged, with the same reports as a real run (the
    reconstruction loss of one batch, measured without training, and the samples grid)."""
    from pipeline.device import resolve_device
    from pipeline.model.checkpoint import model_from_checkpoint
    from pipeline.training.finetune import reconstruction_loss
    from stages.training import pass_through

    device = resolve_device(base.device)
    seed_everything(base.seed)
    model, diffusion = model_from_checkpoint(init, "ema")
    dataset = _dataset(cfg, pairs_cfg, init, faces_dir, pairs_dir)
    loss = reconstruction_loss(model, diffusion, dataset, cfg.reconstruction, cfg.loop.batch_size, base.seed, device)
    return pass_through("finetune", "epochs 0", init, init_path, model, diffusion, faces_dir, pairs_dir, model_path,
                        metrics_path, sheet_path, live_dir, cfg.samples, base.seed, device, cfg.loop.precision,
                        metrics={"steps": 0, "passthrough": True, "final_loss": round(loss, 5)},
                        curve={"loss": loss})


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
    finetune(params, init, faces, pairs, model, state, metrics, sheet)
