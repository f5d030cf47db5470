"""Contact sheets: many small images on one canvas, for humans and `dvc plots`."""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np


def contact_sheet(images: Sequence[np.ndarray], ncol: int = 8, tile: int | None = None,
                  pad: int = 2, background: int = 255) -> np.ndarray:
    """Tile uint8 RGB or grayscale images (any sizes) into one uint8 RGB grid.

    `tile` is the side of each square cell (default: largest input side, at least 96 so
    64 px faces stay visible); images are resized with nearest-neighbour to keep pixels sharp.
    """
    if not images:
        raise ValueError("contact_sheet needs at least one image")
    tile = tile or max(96, max(max(im.shape[:2]) for im in images))
    ncol = min(ncol, len(images))
    nrow = math.ceil(len(images) / ncol)
    sheet = np.full((nrow * (tile + pad) + pad, ncol * (tile + pad) + pad, 3), background, np.uint8)
    for i, im in enumerate(images):
        if im.ndim == 2:
            im = np.repeat(im[..., None], 3, axis=2)
        im = cv2.resize(im, (tile, tile), interpolation=cv2.INTER_NEAREST)
        r, c = divmod(i, ncol)
        y, x = pad + r * (tile + pad), pad + c * (tile + pad)
        sheet[y : y + tile, x : x + tile] = im
    return sheet
