"""Face crops of the openly licensed Ren'Py sprites in Debian's `renpy-thequestion` and `renpy-demo`:
real anime art that was never in any training data (README figures)."""

import zlib
from pathlib import Path

import cv2
import numpy as np

from pipeline.data.clean import crop_square, detect_faces, square_box
from pipeline.data.imageio import WHITE, flatten_alpha, read_user_image
from pipeline.errors import AnimecolorError

GAMES = Path("/usr/share/games/renpy")
QUESTION = GAMES / "the_question/game/images"  # renpy-thequestion: Sylvie, two outfits, four faces each
DEMO = GAMES / "demo/game/images"  # renpy-demo: Eileen and Lucy
SCAN_PAPER = np.array([245, 236, 214], np.float32)  # `scan_photo`: cream paper, RGB


def face(path: Path, size: int) -> np.ndarray:
    """The sprite's first animeface face, cropped as `clean` crops (margin 0.5), at size x size RGB."""
    if not path.is_file():
        raise SystemExit(f"{path} is missing: apt-get install renpy-thequestion renpy-demo")
    rgb = flatten_alpha(read_user_image(path))
    found = detect_faces(rgb, 0.3)
    if not found:
        raise AnimecolorError(f"{path}: animeface found no face (Pillow >= 12?)")
    x0, y0, side = square_box(found[0][:4], 0.5, rgb.shape)
    return cv2.resize(crop_square(rgb, x0, y0, side, WHITE), (size, size), interpolation=cv2.INTER_AREA)


def rgba(rgb: np.ndarray) -> np.ndarray:
    """RGB or grey -> opaque RGBA, as `colorize` reads files."""
    rgb = np.dstack([rgb] * 3) if rgb.ndim == 2 else rgb
    return np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])


def scan_photo(lines: np.ndarray, name: str) -> np.ndarray:
    """A line layer (uint8 (H, W), 255 = paper) as an RGB phone photo of it on cream paper:
    ink at a fifth of the paper's light, the light falling off linearly across the page from 0.97 to
    0.72 in a direction drawn from `name`, grain (sigma 5 levels), then a JPEG at quality 60."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    h, w = lines.shape
    angle = rng.uniform(0, 2 * np.pi)
    y, x = np.mgrid[0:h, 0:w]
    ramp = x * np.cos(angle) + y * np.sin(angle)
    ramp = (ramp - ramp.min()) / max(np.ptp(ramp), 1)
    light = 0.97 - 0.25 * ramp
    ink = 1 - lines.astype(np.float32) / 255
    rgb = SCAN_PAPER * (1 - 0.8 * ink[..., None]) * light[..., None] + rng.normal(0, 5, (h, w, 1))
    _, jpeg = cv2.imencode(".jpg", np.clip(rgb, 0, 255).astype(np.uint8)[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 60])
    return cv2.imdecode(jpeg, cv2.IMREAD_COLOR)[..., ::-1].copy()
