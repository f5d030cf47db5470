"""The face pass: faces in a larger drawing coloured again at the scale the model was trained on.

A whole figure shrunk to the model's square (64 px) leaves its face a few pixels wide, and the model
was trained on face crops. So `colorize` also colours each face `animeface` finds in the drawing
from a crop framed as `clean` frames training faces (its box grown by `clean.margin`'s default),
with the reference's own face crop as reference, and feathers that colour into the whole picture's
colour layer before hints and lines. A drawing that is a face crop already (its face's crop more
than `MAX_FACE_FRACTION` of its longer side) gets no face pass: its one pass is at face scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.data.clean import CleanConfig, crop_square, detect_faces, square_box
from pipeline.data.imageio import WHITE

MARGIN = CleanConfig().margin  # training crops: the face box grown by this fraction of its side
MIN_LIKELIHOOD = CleanConfig().min_likelihood
MAX_FACE_FRACTION = 0.5  # a face crop larger than this share of the drawing's longer side: no face pass
MAX_FACES = 8  # the largest faces of a group picture
FEATHER = 0.2  # the face pass fades into the whole picture over this share of its crop's side


@dataclass(frozen=True)
class FaceCrop:
    """A square on the drawing (may extend past its edges) that is coloured at face scale."""

    x0: int
    y0: int
    side: int

    def crop(self, image: np.ndarray) -> np.ndarray:
        """The square of `image` (RGB), white outside the picture."""
        return crop_square(image, self.x0, self.y0, self.side, WHITE)

    def weight(self) -> np.ndarray:
        """(side, side, 1) float: 1 inside, falling to a small floor over the outer `FEATHER` of the side."""
        edge = np.minimum(np.arange(self.side), np.arange(self.side)[::-1]) + 0.5
        ramp = np.clip(edge / max(FEATHER * self.side, 1.0), 0.02, 1.0)
        return np.minimum.outer(ramp, ramp)[..., None]

    def accumulate(self, total: np.ndarray, weights: np.ndarray, face: np.ndarray) -> None:
        """Add `face` (side x side RGB) times `weight` into `total` (H, W, 3) and the weight into `weights`."""
        h, w = total.shape[:2]
        x0, y0, x1, y1 = max(self.x0, 0), max(self.y0, 0), min(self.x0 + self.side, w), min(self.y0 + self.side, h)
        if x1 <= x0 or y1 <= y0:
            return
        part = (slice(y0 - self.y0, y1 - self.y0), slice(x0 - self.x0, x1 - self.x0))
        weight = self.weight()[part]
        total[y0:y1, x0:x1] += weight * face[part]
        weights[y0:y1, x0:x1] += weight

    def blend(self, colour: np.ndarray, face: np.ndarray) -> np.ndarray:
        """`colour` (H, W, 3 uint8) with `face` (side x side RGB uint8, this square's colours) feathered
        in: weight 1 inside, falling to 0 over the outer `FEATHER` of the square's side."""
        edge = np.minimum(np.arange(self.side), np.arange(self.side)[::-1]) + 0.5
        ramp = np.clip(edge / max(FEATHER * self.side, 1.0), 0.0, 1.0)
        weight = np.minimum.outer(ramp, ramp)[..., None]
        h, w = colour.shape[:2]
        x0, y0, x1, y1 = max(self.x0, 0), max(self.y0, 0), min(self.x0 + self.side, w), min(self.y0 + self.side, h)
        if x1 <= x0 or y1 <= y0:
            return colour
        fx, fy = x0 - self.x0, y0 - self.y0
        part = (slice(fy, fy + y1 - y0), slice(fx, fx + x1 - x0))
        out = colour.copy()
        mixed = weight[part] * face[part].astype(np.float32) + (1 - weight[part]) * colour[y0:y1, x0:x1]
        out[y0:y1, x0:x1] = np.round(mixed).astype(np.uint8)
        return out


    def mapped(self, source: FaceCrop, target: FaceCrop) -> FaceCrop:
        """This square carried from `source`'s frame into `target`'s: the same place and size relative
        to the face (a drawing's tile -> its part of the reference, anchored on the two faces)."""
        k = target.side / source.side
        return FaceCrop(round((self.x0 - source.x0) * k + target.x0), round((self.y0 - source.y0) * k + target.y0),
                        max(1, round(self.side * k)))


def tiles(face: FaceCrop, shape) -> list[FaceCrop]:
    """Squares of the face's side, half-overlapping, on a grid through the face, covering a picture
    of `shape`: the whole figure at the scale the model was trained on."""
    h, w = shape[:2]
    step = max(1, face.side // 2)
    xs = range(face.x0 % step - step, w, step)
    ys = range(face.y0 % step - step, h, step)
    return [FaceCrop(x, y, face.side) for y in ys for x in xs if x + face.side > 0 and y + face.side > 0]


def face_square(face, shape) -> FaceCrop:
    """The square a face (animeface box first) is coloured in: its box grown by `MARGIN`, as training crops."""
    return FaceCrop(*square_box(face[:4], MARGIN, shape))


def drawing_faces(rgb: np.ndarray) -> list[FaceCrop]:
    """The face squares of a drawing (RGB: lines or colours, on white) that the face pass colours,
    largest first: animeface's faces, when every face's square is at most `MAX_FACE_FRACTION` of the
    drawing's longer side; none in a face picture."""
    crops = [face_square(face, rgb.shape) for face in detect_faces(rgb, MIN_LIKELIHOOD)[:MAX_FACES]]
    if any(c.side > MAX_FACE_FRACTION * max(rgb.shape[:2]) for c in crops):
        return []  # a face picture already: a smaller find in it is an eye or a mistake, not another face
    return crops


def reference_face_square(rgb: np.ndarray) -> FaceCrop | None:
    """The reference's largest face's square (framed as training faces are), or None when animeface finds none."""
    found = detect_faces(rgb, MIN_LIKELIHOOD)
    return face_square(found[0], rgb.shape) if found else None


def resize_square(image: np.ndarray, side: int) -> np.ndarray:
    """A model-size square output scaled to `side` px (bicubic, as `colorize.unletterbox`)."""
    return cv2.resize(image, (side, side), interpolation=cv2.INTER_CUBIC)
