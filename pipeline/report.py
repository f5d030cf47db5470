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


def vega_png(spec: dict, scale: float = 1.0) -> bytes:
    """Render a Vega-Lite spec (what `dvc plots show --json` gives for a curve) to PNG bytes, offline.

    vl-convert bundles the Vega engine, so nothing is fetched from a CDN."""
    import vl_convert

    return vl_convert.vegalite_to_png(spec, scale=scale)


def plots_page(title: str, sections: Sequence[tuple[str, str]]) -> str:
    """A self-contained HTML page of (caption, image path relative to the page) pairs: no scripts."""
    from html import escape

    rows = "\n".join(f'<figure><img src="{escape(src)}" alt="{escape(caption)}">'
                     f"<figcaption>{escape(caption)}</figcaption></figure>" for caption, src in sections)
    return (f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{escape(title)}</title>\n"
            "<style>body{font-family:sans-serif} figure{display:inline-block;margin:8px;vertical-align:top}"
            " img{max-width:640px}</style></head>\n"
            f"<body><h1>{escape(title)}</h1>\n{rows}\n</body></html>\n")
