"""Checkpoint files: written atomically, read without unpickling arbitrary objects.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts -- exactly what
`torch.load(weights_only=True)` accepts -- and always carries the model's constructor config
(`"unet"`) and the diffusion config (`"diffusion"`), so any stage rebuilds the model from the
file alone.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from pipeline.errors import AnimecolorError
from pipeline.files import atomic_path
from pipeline.model.diffusion import Diffusion, DiffusionConfig
from pipeline.model.unet import UNet, UNetConfig

FORMAT = "animecolor-checkpoint"
VERSION = 1


def save_checkpoint(path: str | Path, payload: dict) -> None:
    """torch.save, atomically (`files.atomic_path`)."""
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, "version": VERSION, **payload}, tmp)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load with weights_only=True; a missing, truncated or foreign file is one clear error."""
    path = Path(path)
    if not path.exists():
        raise AnimecolorError(f"{path}: checkpoint not found")
    if not path.is_file():  # a folder, a FIFO, a link to /dev/zero
        raise AnimecolorError(f"{path}: not a regular file (a checkpoint is one .pt file)")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AnimecolorError(f"{path}: not a readable animecolor checkpoint ({first[:160]})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise AnimecolorError(f"{path}: not an animecolor checkpoint")
    if data.get("version") != VERSION:
        raise AnimecolorError(f"{path}: checkpoint version {data.get('version')} (this animecolor reads {VERSION})")
    return data


def model_from_checkpoint(data: dict, weights: str = "ema") -> tuple[UNet, Diffusion]:
    """Rebuild (UNet, Diffusion) from a checkpoint dict; `weights` is "ema" or "model"."""
    model = UNet(UNetConfig.from_dict(data["unet"]))
    model.load_state_dict(data[weights])
    return model.eval(), Diffusion(DiffusionConfig.model_validate(data["diffusion"]))
