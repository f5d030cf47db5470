"""What a faces manifest's rows are (`data/faces/manifest.csv`, written by `clean`)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def zoom_rows(table: pd.DataFrame) -> np.ndarray:
    """Which rows are `clean.zoom_crops` crops (a `zoom` number), not faces; the table read with
    `dtype=str` or not."""
    if "zoom" not in table:
        return np.zeros(len(table), bool)
    return ~table["zoom"].fillna("").astype(str).str.strip().isin(["", "0", "nan"]).to_numpy()
