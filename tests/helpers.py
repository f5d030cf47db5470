"""Shared test helpers: params overrides, the tiny stage settings, a synthetic data builder and a
small Trainer. Fixtures live in conftest.py; test files import these from `tests.helpers`."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]

TINY_PRETRAIN = {  # a reference-only model (the shipped design) that trains in seconds on CPU
    "base.image_size": 32, "pretrain.unet.channels": 8, "pretrain.unet.channel_mults": [1, 2],
    "pretrain.unet.res_blocks": 1, "pretrain.unet.heads": 2, "pretrain.loop.train_steps": 6,
    "pretrain.loop.batch_size": 4, "pretrain.loop.checkpoint_every": 2, "pretrain.loop.log_every": 2,
    "pretrain.loop.num_workers": 0, "pretrain.samples.sample_steps": 2, "pretrain.samples.count": 2,
    "pretrain.loop.warmup_steps": 2, "pretrain.unet.text": False,
}
TINY_FINETUNE = {
    "finetune.subset": 8, "finetune.loop.batch_size": 4, "finetune.reconstruction.unroll_steps": 2,
    "finetune.samples.sample_steps": 2, "finetune.samples.count": 2, "finetune.loop.num_workers": 0,
    "finetune.loop.checkpoint_every": 1, "finetune.loop.log_every": 1,
}
TINY_TEXT = {  # the prompt adapter's stage, as small
    "text.loop.train_steps": 4, "text.loop.batch_size": 4, "text.loop.warmup_steps": 1, "text.loop.num_workers": 0,
    "text.loop.checkpoint_every": 2, "text.loop.log_every": 2, "text.samples.sample_steps": 2, "text.samples.count": 2,
}
JOINT_TEXT = {"pretrain.unet.text": True}  # the joint-text network: the prompt trained with the reference


def set_key(params: dict, dotted: str, value) -> None:
    """params["a"]["b"]["c"] = value for "a.b.c" (missing levels are created)."""
    *parents, name = dotted.split(".")
    for part in parents:
        params = params.setdefault(part, {})
    params[name] = value


def params_file(path: Path, overrides: dict) -> Path:
    """The project's params.yaml with `overrides` ({"a.b.c": value}) written to `path`."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for key, value in overrides.items():
        set_key(params, key, value)
    path.write_text(yaml.safe_dump(params))
    return path


def stage_paths(folder: Path, name: str) -> dict:
    """Output paths for calling a training stage function into `folder`."""
    return dict(model_path=folder / f"{name}.pt", state_path=folder / f"{name}-state.pt",
                metrics_path=folder / f"{name}.json", sheet_path=folder / f"{name}.png",
                live_dir=folder / "dvclive" / name)


def tiny_pretrain(root: Path, data: tuple[Path, Path], overrides: dict | None = None) -> Path:
    """A tiny pretrain run in `root` (params.yaml with every tiny stage's settings, pretrain.pt); returns root."""
    from stages.pretrain import pretrain

    root.mkdir(parents=True, exist_ok=True)
    params_file(root / "params.yaml", {**TINY_PRETRAIN, **TINY_FINETUNE, **TINY_TEXT, **(overrides or {})})
    pretrain(root / "params.yaml", *data, **stage_paths(root, "pretrain"))
    return root


def make_faces(root: Path, n: int, size: int, heterochromia_p: float, test_fraction: float) -> tuple[Path, Path]:
    """`n` synthetic faces at `size` px through crawl -> clean -> pairs under `root`: (faces_dir, pairs_dir)."""
    from pipeline.data.clean import CleanConfig, clean_dataset
    from pipeline.data.crawl import crawl_synthetic
    from pipeline.data.pairs import build_pairs
    from pipeline.data.tps import TPSConfig
    from pipeline.data.xdog import XDoGConfig

    crawl_synthetic(root / "raw", n, size, seed=0, heterochromia_p=heterochromia_p)
    clean_dataset(root / "raw", root / "faces", CleanConfig(test_fraction=test_fraction), size)
    build_pairs(root / "faces", root / "pairs", seed=0, xdog=XDoGConfig(sigma=(0.4,)), tps=TPSConfig())
    return root / "faces", root / "pairs"


def export(checkpoint: Path, out: Path) -> Path:
    """`animecolor export checkpoint -o out` (the model file users get)."""
    from typer.testing import CliRunner

    from stages.cli import app

    result = CliRunner().invoke(app, ["export", str(checkpoint), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out


# ------------------------------------------------------------------------------ a small Trainer
TINY_UNET = dict(image_size=16, channels=8, channel_mults=(1,), res_blocks=1, heads=2)  # builds in milliseconds


class Triples(torch.utils.data.Dataset):
    """Eight fixed random (target, sketch, reference) triples at 16 px."""

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.data = {k: torch.rand(8, c, 16, 16, generator=g).mul(2).sub(1)
                     for k, c in (("target", 3), ("sketch", 1), ("reference", 3))}

    def __len__(self):
        return 8

    def __getitem__(self, key):
        return {k: v[key[0]] for k, v in self.data.items()}


def triples_trainer(**loop):
    """A 3-step denoising Trainer of the TINY_UNET on Triples, CPU; `loop` overrides LoopConfig fields."""
    from pipeline.model.conditioning import ConditionDropout
    from pipeline.model.diffusion import Diffusion
    from pipeline.model.unet import UNet, UNetConfig
    from pipeline.training.loop import LoopConfig, Trainer, denoising_objective

    torch.manual_seed(0)
    diffusion = Diffusion()
    cfg = LoopConfig(train_steps=3, batch_size=4, warmup_steps=0, num_workers=0, checkpoint_every=100, **loop)
    objective = denoising_objective(diffusion, ConditionDropout(p_uncond=0.5))
    return Trainer(UNet(UNetConfig(**TINY_UNET)), diffusion, Triples(), objective, cfg, torch.device("cpu"))
