"""`animecolor text`: models/finetune.pt -> models/text.pt (the prompt adapter on the frozen model)."""

from __future__ import annotations

from pathlib import Path

import typer

from stages.common import console, load_params, probe_cache_file, seed_everything, user_errors


def text(params_path: Path = Path("params.yaml"), init_path: Path = Path("models/finetune.pt"),
         faces_dir: Path = Path("data/faces"), pairs_dir: Path = Path("data/pairs"),
         model_path: Path = Path("models/text.pt"), state_path: Path = Path("checkpoints/text.pt"),
         metrics_path: Path = Path("metrics/text.json"), sheet_path: Path = Path("reports/text_samples.png"),
         live_dir: Path = Path("dvclive/text"), stop_at: int | None = None) -> dict:
    """Run the stage; returns the metrics it writes. A model that needs no adapter passes through."""
    from pipeline.data.dataset import PairDataset
    from pipeline.model.checkpoint import load_checkpoint
    from pipeline.training.adapter import DECODER_COPY, adapter_model, adapter_objective
    from pipeline.training.distributed import close_distributed
    from pipeline.training.loop import Trainer, fingerprint
    from stages.training import file_digest, run_training, source_digest, torchrun_distributed, training_data

    p = load_params(params_path, "base", "pairs", "text")
    base, cfg = p["base"], p["text"]
    init = load_checkpoint(init_path)
    if not cfg.adapter or init["unet"].get("text"):
        why = "text.adapter is false" if not cfg.adapter else "the model was pretrained with text"
        return _passthrough(why, init, init_path, base, cfg, faces_dir, pairs_dir, model_path, metrics_path,
                            sheet_path, live_dir)
    dist, device = torchrun_distributed(base.device)
    seed_everything(base.seed)
    try:
        model, diffusion = adapter_model(init, cfg.prompt_attention, cfg.prompt_decoder, cfg.prompt_decoder_levels)
        dataset = PairDataset(faces_dir, pairs_dir, "train", tps=p["pairs"].tps, captions=cfg.captions,
                              vocabulary=model.config.vocabulary, with_labels=cfg.attention.weight > 0)
        if dataset.drop_label_uses() or "label" not in dataset.items:
            console.print("text: the training images have no label maps (real data): no reference-region masking, "
                          "recolouring or attention supervision")
        run_id = fingerprint(base.model_dump(), p["pairs"].model_dump(), cfg.model_dump(), file_digest(init_path),
                             file_digest(pairs_dir / "train" / "items.csv"), source_digest())
        objective = adapter_objective(diffusion, cfg.condition_dropout, cfg.attention)
        trainer = Trainer(model, diffusion, dataset, objective, cfg.loop, device, dist, state_path, run_id,
                          meta={"stage": "text", "params": cfg.to_dict(), "init_from": str(init_path),
                                "data": training_data("text", dataset, init)},
                          seed=base.seed, probe_cache=probe_cache_file(),
                          group_lr=dict.fromkeys(DECODER_COPY, cfg.decoder_lr) if cfg.prompt_decoder else None)
        return run_training("text", trainer, faces_dir, pairs_dir, model_path, metrics_path, sheet_path, live_dir,
                            cfg.samples, base.seed, stop_at, extra_metrics={"passthrough": False})
    finally:
        close_distributed()


def _passthrough(why: str, init: dict, init_path: Path, base, cfg, faces_dir: Path, pairs_dir: Path, model_path: Path,
                 metrics_path: Path, sheet_path: Path, live_dir: Path) -> dict:
    """No adapter: the model unchanged, with the reports of a real run (metrics, curve point, samples grid)."""
    from pipeline.device import resolve_device
    from pipeline.model.checkpoint import model_from_checkpoint
    from stages.training import pass_through

    model, diffusion = model_from_checkpoint(init, "ema")
    return pass_through("text", why, init, init_path, model, diffusion, faces_dir, pairs_dir, model_path, metrics_path,
                        sheet_path, live_dir, cfg.samples, base.seed, resolve_device(base.device), cfg.loop.precision,
                        metrics={"steps": 0, "passthrough": True}, curve={"steps": 0})


@user_errors
def main(params: Path = typer.Option(Path("params.yaml"), help="Parameters file."),
         init: Path = typer.Option(Path("models/finetune.pt"), help="Fine-tuned reference-only model (kept frozen)."),
         faces: Path = typer.Option(Path("data/faces"), help="Face dataset from `clean` (with captions)."),
         pairs: Path = typer.Option(Path("data/pairs"), help="Sketches from `pairs`."),
         model: Path = typer.Option(Path("models/text.pt"), help="Model with the prompt adapter to write."),
         state: Path = typer.Option(Path("checkpoints/text.pt"), help="Resume checkpoint (rerun resumes)."),
         metrics: Path = typer.Option(Path("metrics/text.json"), help="Metrics JSON to write."),
         sheet: Path = typer.Option(Path("reports/text_samples.png"), help="Samples grid PNG.")) -> None:
    """Train the colour-prompt adapter on the frozen fine-tuned model (resumable; torchrun for DDP)."""
    text(params, init, faces, pairs, model, state, metrics, sheet)
