"""Training data for the diffusion model: (sketch, reference, target) triples as tensors.

The reference is re-distorted on every fetch (a new TPS warp each time), as in the
official code; a frozen distortion per image would let the model memorise it. Randomness
comes either from a seed passed with the index (the training loop's sampler does this: the
distortion of sample i in epoch e is a function of (seed, e, i), so resumed runs match) or
from a numpy generator seeded from `torch.initial_seed()`, which the DataLoader sets per
worker and per epoch.

Tensors: sketch (1, H, W), reference (3, H, W), target (3, H, W), float32 in [-1, 1].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from pipeline.data.imageio import read_label, read_rgb
from pipeline.data.tps import TPSConfig, apply_warp, random_warp
from pipeline.data.xdog import LineAugmentConfig, augment_lines
from pipeline.errors import AnimecolorError


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 (H, W) or (H, W, C) -> float32 (C, H, W) in [-1, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(image)).float().div_(127.5).sub_(1.0)
    return t[None] if t.ndim == 2 else t.permute(2, 0, 1)


def to_uint8(tensor: torch.Tensor) -> np.ndarray:
    """float (C, H, W) in [-1, 1] -> uint8 (H, W, C), or (H, W) for one channel."""
    arr = ((tensor.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().byte().numpy()
    return arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0)


class PairDataset(Dataset):
    """Training triples from `pairs_dir/<split>/items.csv` with targets in `faces_dir`."""

    def __init__(self, faces_dir: str | Path, pairs_dir: str | Path, split: str = "train",
                 tps: TPSConfig = TPSConfig(), line_augment: LineAugmentConfig | None = None, with_labels: bool = False,
                 limit: int | None = None):
        self.faces, self.pairs = Path(faces_dir), Path(pairs_dir)
        items_path = self.pairs / split / "items.csv"
        if not items_path.is_file():
            raise AnimecolorError(f"{items_path}: not found (run `animecolor pairs` first)")
        self.items = pd.read_csv(items_path, dtype=str, keep_default_na=False)
        if len(self.items) == 0:
            raise AnimecolorError(f"{items_path}: no images in the {split} split")
        if limit is not None:  # names are content hashes: the first N are a fixed, unbiased subset
            self.items = self.items.head(limit).reset_index(drop=True)
        self.tps, self.line_augment, self.with_labels = tps, line_augment, with_labels
        self._rng: np.random.Generator | None = None
        self._rng_seed: int | None = None

    def __len__(self) -> int:
        return len(self.items)

    def _generator(self) -> np.random.Generator:
        seed = torch.initial_seed()
        if self._rng is None or seed != self._rng_seed:  # new worker or new epoch's workers
            self._rng, self._rng_seed = np.random.default_rng(seed), seed
        return self._rng

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        """key: an index, or (index, seed) to make this fetch's distortion a function of the seed
        (the training loop does this so that resumed runs see the same augmentations)."""
        if isinstance(key, tuple):
            index, rng = key[0], np.random.default_rng(key[1])
        else:
            index, rng = key, self._generator()
        row = self.items.iloc[index]
        target = read_rgb(self.faces / row.image)
        sketch = read_rgb(self.pairs / row.sketch)[..., 0]
        if self.line_augment is not None:  # draws from rng even when every probability is 0 (fixed stream)
            sketch = augment_lines(sketch, rng, self.line_augment)
        maps = random_warp(self.tps, rng, *target.shape[:2])
        out = {"sketch": to_tensor(sketch), "reference": to_tensor(apply_warp(target, maps)),
               "target": to_tensor(target)}
        if self.with_labels and row.label:
            label = read_label(self.faces / row.label)
            out["label"] = torch.from_numpy(label.astype(np.int64))
            out["reference_label"] = torch.from_numpy(apply_warp(label, maps, label=True).astype(np.int64))
        return out
