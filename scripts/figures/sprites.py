"""Face crops of the openly licensed Ren'Py sprites in Debian's `renpy-thequestion` and `renpy-demo`:
real anime art that was never in any training data (README figures)."""

from pathlib import Path

import cv2
import numpy as np

from pipeline.data.clean import crop_square, detect_faces, square_box
from pipeline.data.imageio import WHITE, flatten_alpha, read_user_image
from pipeline.errors import AnimecolorError

GAMES = Path("/usr/share/games/renpy")
QUESTION = GAMES / "the_question/game/images"  # renpy-thequestion: Sylvie, two outfits, four faces each
DEMO = GAMES / "demo/game/images"  # renpy-demo: Eileen and Lucy


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
