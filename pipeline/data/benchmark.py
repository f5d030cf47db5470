"""The fixed benchmark pairs written by the `pairs` stage, as tensors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from pipeline.data.dataset import to_tensor
from pipeline.data.imageio import read_label, read_rgb
from pipeline.errors import AnimecolorError

SETTINGS = ("self_ref", "random_ref")


def load_benchmark(faces_dir: str | Path, pairs_dir: str | Path, setting: str, limit: int | None = None,
                   with_labels: bool = False) -> tuple[pd.DataFrame, dict[str, torch.Tensor]]:
    """Rows of test/pairs.csv for `setting` and their tensors: sketch (N,1,H,W), reference and target
    (N,3,H,W) in [-1, 1]; with_labels adds target_label / reference_label (N,H,W) int64 when present."""
    faces_dir, pairs_dir = Path(faces_dir), Path(pairs_dir)
    path = pairs_dir / "test" / "pairs.csv"
    if not path.is_file():
        raise AnimecolorError(f"{path}: not found (run `animecolor pairs` first)")
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    rows = table[table.setting == setting].reset_index(drop=True)
    if limit is not None:
        rows = rows.head(limit)
    if rows.empty:
        raise AnimecolorError(f"{path}: no {setting} pairs")
    out = {
        "sketch": torch.stack([to_tensor(read_rgb(pairs_dir / r.sketch)[..., 0]) for r in rows.itertuples()]),
        "reference": torch.stack([to_tensor(read_rgb(pairs_dir / r.reference)) for r in rows.itertuples()]),
        "target": torch.stack([to_tensor(read_rgb(faces_dir / r.target)) for r in rows.itertuples()]),
    }
    if with_labels and all(rows.target_label) and all(rows.reference_label):
        out["target_label"] = torch.from_numpy(np.stack([read_label(faces_dir / r.target_label)
                                                         for r in rows.itertuples()]).astype(np.int64))
        out["reference_label"] = torch.from_numpy(np.stack([read_label(pairs_dir / r.reference_label)
                                                            for r in rows.itertuples()]).astype(np.int64))
    return rows, out
