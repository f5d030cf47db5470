"""Image files in and out: clear errors on bad input, atomic writes (never half a file)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

from pipeline.errors import AnimecolorError

MAX_PIXELS = 64_000_000  # decompression-bomb guard for user-supplied images


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as uint8 RGB (H, W, 3); raises `AnimecolorError` if unusable."""
    path = Path(path)
    if not path.is_file():
        raise AnimecolorError(f"{path}: no such file")
    data = np.fromfile(path, np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if img is None:
        raise AnimecolorError(f"{path}: not a readable image")
    if img.shape[0] * img.shape[1] > MAX_PIXELS:
        raise AnimecolorError(f"{path}: image too large ({img.shape[1]}x{img.shape[0]})")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_label(path: str | Path) -> np.ndarray:
    """Read a region label map (uint8 PNG, one id per pixel)."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None or img.ndim != 2:
        raise AnimecolorError(f"{path}: not a single-channel label map")
    return img


def _atomic_bytes(path: Path, payload: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_png(path: str | Path, image: np.ndarray, level: int = 1) -> None:
    """Write uint8 RGB (H, W, 3) or single-channel (H, W) as PNG, atomically."""
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, level])
    if not ok:
        raise AnimecolorError(f"{path}: PNG encoding failed")
    _atomic_bytes(Path(path), buf.tobytes())


def write_json(path: str | Path, obj) -> None:
    """Write JSON atomically (metrics files are read by dvc while stages run)."""
    _atomic_bytes(Path(path), (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def write_png_text(path: str | Path, image: np.ndarray, text: dict[str, str]) -> None:
    """PNG with tEXt chunks (e.g. the parameters that made it), written atomically."""
    import io

    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in text.items():
        info.add_text(key, value)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", pnginfo=info)
    _atomic_bytes(Path(path), buf.getvalue())


def read_user_image(path: str | Path) -> np.ndarray:
    """Any image a user may have: gray/RGB/RGBA/palette, 8 or 16 bit -> uint8 RGBA (H, W, 4).

    The pixel count is checked from the header before decoding (decompression bombs)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise AnimecolorError(f"{path}: no such file")
    try:
        with Image.open(path) as im:
            width, height = im.size
    except (UnidentifiedImageError, OSError, ValueError):
        raise AnimecolorError(f"{path}: not a readable image") from None
    if width * height > MAX_PIXELS:
        raise AnimecolorError(f"{path}: image too large ({width}x{height} > {MAX_PIXELS:,} pixels)")
    img = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise AnimecolorError(f"{path}: not a readable image")
    if img.dtype == np.uint16:
        img = (img / 257.0).round().astype(np.uint8)
    elif img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGBA)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGBA)
