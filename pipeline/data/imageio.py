"""Image files in and out: one decoder for every image we did not write ourselves, atomic writes.

`decode_image` is the only way user- and crawl-supplied bytes become pixels: the pixel count is
read from the header before decoding (decompression bombs, including PIL's own bomb error, are
one clear "too large" error), 16-bit images are scaled by 1/257 (65535 -> 255, rounded), an EXIF
orientation (a phone's photo of a drawing) is applied so the pixels stand as every viewer shows
them, and the result is always uint8 RGBA. `flatten_alpha` composites it over white paper.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from pipeline.errors import AnimecolorError
from pipeline.files import write_bytes_atomic

MAX_PIXELS = 64_000_000  # decompression-bomb guard for user-supplied images
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
WHITE = (255, 255, 255)


_UPRIGHT = {  # EXIF orientation tag -> PIL's ImageOps.exif_transpose on an (H, W, C) array
    2: lambda a: a[:, ::-1],                      # mirrored left-right
    3: lambda a: a[::-1, ::-1],                   # turned 180 degrees
    4: lambda a: a[::-1],                         # mirrored top-bottom
    5: lambda a: a.transpose(1, 0, 2),            # transposed
    6: lambda a: np.rot90(a, -1),                 # turned a quarter clockwise
    7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],  # transposed the other way
    8: lambda a: np.rot90(a, 1),                  # turned a quarter counter-clockwise
}
_DECODER_TURNS = {"TIFF"}  # formats whose orientation cv2's decoder applies itself


def image_size(data: bytes, name: str = "image", max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """(width, height) as stored, from the header, without decoding the pixels (`max_pixels`: for
    the message)."""
    return _header(data, name, max_pixels)[0]


def _header(data: bytes, name: str, max_pixels: int) -> tuple[tuple[int, int], int]:
    """((width, height) as stored, EXIF orientation 1-8) from the header alone."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                width, height = im.size
                if width * height > max_pixels or im.format in _DECODER_TURNS:
                    return im.size, 1
                if im.format == "PNG" and "exif" not in im.info:  # PIL would decode the pixels to look further
                    return im.size, 1
                try:
                    orientation = int(im.getexif().get(0x0112, 1))
                except Exception:  # a damaged EXIF block: the pixels as stored
                    orientation = 1
                return im.size, orientation if orientation in range(1, 9) else 1
    except Image.DecompressionBombError:
        raise AnimecolorError(f"{name}: image too large (its header claims over "
                              f"{2 * Image.MAX_IMAGE_PIXELS:,} pixels; limit {max_pixels:,})") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise AnimecolorError(f"{name}: not a readable image") from None


def decode_image(data: bytes, name: str = "image", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Image file bytes (gray/RGB/RGBA/palette, 8 or 16 bit) -> uint8 RGBA (H, W, 4).

    Raises `AnimecolorError` naming `name` for unreadable data or more than `max_pixels` pixels."""
    (width, height), orientation = _header(data, name, max_pixels)
    if width * height > max_pixels:
        raise AnimecolorError(f"{name}: image too large ({width}x{height} > {max_pixels:,} pixels)")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise AnimecolorError(f"{name}: not a readable image")
    if img.dtype == np.uint16:
        img = (img / 257.0).round().astype(np.uint8)
    elif img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    if img.ndim == 2:
        rgba = cv2.cvtColor(img, cv2.COLOR_GRAY2RGBA)
    elif img.shape[2] == 4:
        rgba = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
    else:
        rgba = cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2RGBA)
    return upright(rgba, orientation)


def upright(img: np.ndarray, orientation: int) -> np.ndarray:
    """(H, W, C) pixels as stored -> as shown, for an EXIF orientation 1-8 (cv2's IMREAD_UNCHANGED
    ignores the tag)."""
    return np.ascontiguousarray(_UPRIGHT[orientation](img)) if orientation in _UPRIGHT else img


def flatten_alpha(rgba: np.ndarray, background: tuple[int, int, int] = WHITE) -> np.ndarray:
    """uint8 RGBA composited over `background` (white paper) -> uint8 RGB."""
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    out = rgba[..., :3].astype(np.float32) * alpha + np.asarray(background, np.float32) * (1 - alpha)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise AnimecolorError(f"{path}: no such file")
    if not path.is_file():  # a folder, a FIFO (reading it would wait forever), a link to /dev/zero
        raise AnimecolorError(f"{path}: not a regular file")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise AnimecolorError(f"{path}: cannot read ({exc.strerror or exc})") from None


def read_user_image(path: str | Path) -> np.ndarray:
    """Any image file -> uint8 RGBA (H, W, 4); see `decode_image`."""
    path = Path(path)
    return decode_image(_read_bytes(path), str(path))


def read_rgb(path: str | Path) -> np.ndarray:
    """Any image file -> uint8 RGB (H, W, 3), transparency over white."""
    return flatten_alpha(read_user_image(path))


def read_label(path: str | Path) -> np.ndarray:
    """Read a region label map (uint8 PNG, one id per pixel)."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None or img.ndim != 2:
        raise AnimecolorError(f"{path}: not a single-channel label map")
    return img


def colour_fraction(rgb: np.ndarray, min_chroma: int = 24) -> float:
    """Share of pixels whose chroma (max - min of R, G, B; = HSV saturation x value) is >= min_chroma.

    The one "is this a colour picture" measure: `clean` rejects manga pages with it and `colorize`
    decides whether a drawing needs XDoG. Measured on a 64 x 64 area-resampled copy: fast, and
    what matters is the bulk of the picture, not single pixels."""
    small = cv2.resize(rgb, (64, 64), interpolation=cv2.INTER_AREA).astype(np.int16)
    return float(((small.max(axis=2) - small.min(axis=2)) >= min_chroma).mean())


def write_png(path: str | Path, image: np.ndarray, level: int = 1) -> None:
    """Write uint8 RGB (H, W, 3) or single-channel (H, W) as PNG, atomically."""
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, level])
    if not ok:
        raise AnimecolorError(f"{path}: PNG encoding failed")
    write_bytes_atomic(path, buf.tobytes())


def write_json(path: str | Path, obj) -> None:
    """Write JSON atomically (metrics files are read by dvc while stages run)."""
    write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def write_png_text(path: str | Path, image: np.ndarray, text: dict[str, str]) -> None:
    """PNG with tEXt chunks (e.g. the parameters that made it), written atomically."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in text.items():
        info.add_text(key, value)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", pnginfo=info)
    write_bytes_atomic(path, buf.getvalue())
