"""`animecolor pretrain`: data/pairs -> models/pretrain.pt (denoising with condition dropout)."""

from __future__ import annotations

from pathlib import Path

import typer

from stages.common import console, load_params, probe_cache_file, seed_everything, user_errors


def pretrain(params_path: Path = Path("params.yaml"), faces_dir: Path = Path("data/faces"),
             pairs_dir: Path = Path("data/pairs"), model_path: Path = Path("models/pretrain.pt"),
             state_path: Path = Path("checkpoints/pretrain.pt"), metrics_path: Path = Path("metrics/pretrain.json"),
             sheet_path: Path = Path("reports/pretrain_samples.png"), live_dir: Path = Path("dvclive/pretrain"),
             stop_at: int | None = None) -> dict:
    """Run the stage; returns the metrics it writes. `stop_at` ends early (tests of resuming)."""
    from pipeline.data.dataset import PairDataset
    from pipeline.data.tps import WARP_MOVES
    from pipeline.model.diffusion import Diffusion
    from pipeline.model.unet import UNet
    from pipeline.training.distributed import close_distributed
    from pipeline.training.loop import Trainer, denoising_objective, fingerprint
    from stages.training import file_digest, run_training, source_digest, torchrun_distributed, training_data

    p = load_params(params_path, "base", "pairs", "pretrain")
    base, cfg = p["base"], p["pretrain"]
    dist, device = torchrun_distributed(base.device)
    seed_everything(base.seed)
    try:
        warp = cfg.reference_warp.over(p["pairs"].tps, "pretrain")
        dataset = PairDataset(faces_dir, pairs_dir, "train", tps=warp,
                              line_augment=cfg.lines, augment=cfg.augment,
                              captions=cfg.captions if cfg.unet.text else None,
                              region_balance=cfg.diffusion.region_balance, eye_weight=cfg.diffusion.eye_weight,
                              with_labels=cfg.correspondence.weight > 0,
                              recolour=cfg.recolour, colour_regions=cfg.correspondence.colour_regions)
        dropped = dataset.drop_label_uses()
        if dropped:
            off = [{"recolour": "pretrain.recolour", "eye weight": "pretrain.diffusion.eye_weight",
                    "label maps": "the region-supervised attention (pretrain.correspondence.colour_regions > 0 "
                                  "supervises it with colour clusters instead)"}[name] for name in dropped]
            listed = off[0] if len(off) == 1 else f"{', '.join(off[:-1])} and {off[-1]}"
            which = "have no label maps" if not dataset.labelled else "do not all have label maps"
            console.print(f"pretrain: the training images {which} (real data): "
                          f"{listed} {'is' if len(off) == 1 else 'are'} off")
        if 0 < dataset.labelled < len(dataset.items) and dataset.eye_weight != 1:
            console.print(f"pretrain: {dataset.labelled} of {len(dataset.items)} training images have label maps "
                          f"only: pretrain.diffusion.eye_weight weighs their irises, the others' loss stays plain")
        if dataset.clustered:
            console.print(f"pretrain: no label maps: the region-supervised attention uses each target's "
                          f"{cfg.correspondence.colour_regions} colour clusters")
        model, diffusion = UNet(cfg.unet_config(base.image_size)), Diffusion(cfg.diffusion)
        run_id = fingerprint(base.model_dump(), p["pairs"].model_dump(), cfg.model_dump(),
                             file_digest(pairs_dir / "train" / "items.csv"), source_digest())
        objective = denoising_objective(diffusion, cfg.condition_dropout, cfg.correspondence, dataset.clustered)
        trainer = Trainer(model, diffusion, dataset, objective, cfg.loop, device, dist, state_path, run_id,
                          meta={"stage": "pretrain", "params": cfg.to_dict(),
                                "data": training_data("pretrain", dataset,
                                                      reference_dropout=cfg.condition_dropout.p_uncond,
                                                      reference_warp=warp.model_dump(include=set(WARP_MOVES)),
                                                      **({"soft_lines": cfg.lines.soft_p} if cfg.lines.soft_p else {}))},
                          seed=base.seed, probe_cache=probe_cache_file())
        return run_training("pretrain", trainer, faces_dir, pairs_dir, model_path, metrics_path, sheet_path,
                            live_dir, cfg.samples, base.seed, stop_at)
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
    pretrain(params, faces, pairs, model, state, metrics, sheet)
