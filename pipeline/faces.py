"""The face pass: faces in a larger drawing coloured again at the scale the model was trained on.

A whole figure shrunk to the model's square (64 px) leaves its face a few pixels wide, and the model
was trained on face crops. So `colorize` also colours each face `animeface` finds in the drawing
from a crop framed as `clean` frames training faces (its box grown by `clean.margin`'s default),
with the reference's own face crop as reference, and feathers that colour into the whole picture's
colour layer before hints and lines. A drawing that is a face crop already (its face's crop more
than `MAX_FACE_FRACTION` of its longer side) gets no face pass: its one pass is at face scale.

Where the reference lies under the drawing comes first from the two face squares, then from the
two pictures' lines laid on each other (`register`: scale, shift and mirror), since `animeface`
frames one face differently in a line drawing and in a coloured picture.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.chroma import FIRM_POWER, firmness
from pipeline.data.clean import CleanConfig, crop_square, detect_faces, square_box
from pipeline.data.imageio import WHITE
from pipeline.model.defaults import TILE_SCALE

MARGIN = CleanConfig().margin  # training crops: the face box grown by this fraction of its side
MIN_LIKELIHOOD = CleanConfig().min_likelihood
MAX_FACE_FRACTION = 0.5  # a face crop larger than this share of the drawing's longer side: no face pass
MAX_FACES = 8  # the largest faces of a group picture
DETECT_SCALES = (1.0, 0.5, 1.5)  # animeface reads a picture at these scales in turn until it finds a face
DETECT_LONGEST = 1536  # ... enlarged to at most this longer side, px
MIN_SIDE = 24  # a face square smaller than this (px) is too small to colour again
FEATHER = 0.2  # the face pass fades into the whole picture over this share of its crop's side
CONFIDENCE_POWER = FIRM_POWER  # a tile pixel's weight in the tiles' mean: `chroma.firmness` of its colour
# laying the reference's lines on the drawing's (`register`): the search's working scale and range
REGISTER_FACE = 48  # the drawing's face square's side at the working scale, px
REGISTER_LONGEST = 1024  # ... unless that makes the drawing's longer side larger than this, px
REGISTER_BLUR = 1.5  # the lines' Gaussian at the working scale, px: a basin for the search
REGISTER_SCALE = 2.0  # scales from the face squares' ratio / this to times this ...
REGISTER_STEPS = 15  # ... in this many log steps, then as many again within one step of the best
REGISTER_REACH = 1.0  # shifts up to this many face sides from the face squares' centres matched
REGISTER_MARGIN = 0.02  # the correlation the best placement must gain over the face squares' own to be taken
# each tile's part of the reference sought by the tile's own lines (`local_source`)
LOCAL_SIDE = 48  # the tile's side at the search's working scale, px
LOCAL_BLUR = 1.0  # the lines' Gaussian at that scale, px
LOCAL_REACH = 1.0  # up to this many tile sides from where the laid faces put it (0: not sought)
LOCAL_MARGIN = 0.1  # the correlation the best place must gain over that place's to be taken
LOCAL_FLAT = 0.5  # a place whose lines vary less than this share of the tile's is not a match
LOCAL_MIN_SPREAD = 0.02  # a tile whose blurred ink's standard deviation is below this is left where it was


@dataclass(frozen=True)
class Square:
    """A square on the drawing (may extend past its edges) coloured on its own at the model's size:
    a face's, or a tile of the figure."""

    x0: int
    y0: int
    side: int

    def crop(self, image: np.ndarray, fill=WHITE) -> np.ndarray:
        """The square of `image` (RGB or grey), `fill` outside the picture."""
        return crop_square(image, self.x0, self.y0, self.side, fill)

    def inside(self, shape) -> tuple[slice, slice, slice, slice] | None:
        """(rows, cols) of the picture this square covers and (rows, cols) of the square that lie on
        it; None when it misses a picture of `shape`."""
        h, w = shape[:2]
        x0, y0, x1, y1 = max(self.x0, 0), max(self.y0, 0), min(self.x0 + self.side, w), min(self.y0 + self.side, h)
        if x1 <= x0 or y1 <= y0:
            return None
        return (slice(y0, y1), slice(x0, x1), slice(y0 - self.y0, y1 - self.y0), slice(x0 - self.x0, x1 - self.x0))

    def coverage(self, shape) -> float:
        """The share of the square that lies on a picture of `shape`."""
        part = self.inside(shape)
        return 0.0 if part is None else (part[0].stop - part[0].start) * (part[1].stop - part[1].start) / self.side ** 2

    def weight(self) -> np.ndarray:
        """(side, side, 1) float: 1 inside, falling towards 0 over the outer `FEATHER` of the side."""
        edge = np.minimum(np.arange(self.side), np.arange(self.side)[::-1]) + 0.5
        ramp = np.clip(edge / max(FEATHER * self.side, 1.0), 0.0, 1.0)
        return np.minimum.outer(ramp, ramp)[..., None]

    def blend(self, colour: np.ndarray, colours: np.ndarray) -> np.ndarray:
        """`colour` (H, W, 3 uint8) with `colours` (side x side RGB uint8, this square's) feathered in
        by `weight`; nothing outside the square changes."""
        mosaic = Mosaic(colour.shape)
        mosaic.add(self, colours.astype(np.float64))
        return mosaic.over(colour)

    def mapped(self, source: Square, target: Square) -> Square:
        """This square carried from `source`'s frame into `target`'s: the same place and size relative
        to the face (a drawing's tile -> its part of the reference, anchored on the two faces)."""
        k = target.side / source.side
        return Square(round((self.x0 - source.x0) * k + target.x0), round((self.y0 - source.y0) * k + target.y0),
                      max(1, round(self.side * k)))


class Mosaic:
    """Squares' colours laid into one layer: each pixel gets the mean of the squares over it, each
    square weighted by its feather (`Square.weight`) times its confidence there (`confidence`; 1
    without), and the layer lies over a picture by the feathers' sum up to 1 (`over`)."""

    def __init__(self, shape):
        h, w = shape[:2]
        self.total = np.zeros((h, w, 3))   # sum of feather * confidence * colour
        self.norm = np.zeros((h, w, 1))    # sum of feather * confidence
        self.cover = np.zeros((h, w, 1))   # sum of feather

    def add(self, square: Square, colours: np.ndarray, confidence: np.ndarray | None = None) -> None:
        """`colours` (side x side RGB) on `square`, with `confidence` (side x side, > 0) or 1; the
        part past the picture's edge is dropped."""
        part = square.inside(self.total.shape)
        if part is None:
            return
        rows, cols, square_rows, square_cols = part
        feather = square.weight()[square_rows, square_cols]
        weight = feather if confidence is None else feather * confidence[square_rows, square_cols, None]
        self.total[rows, cols] += weight * colours[square_rows, square_cols]
        self.norm[rows, cols] += weight
        self.cover[rows, cols] += feather

    def over(self, colour: np.ndarray) -> np.ndarray:
        """The mosaic over `colour` (uint8 RGB), each pixel by its feathers' sum up to 1: where the
        squares fade out or never reach, `colour` shows through without a seam."""
        alpha = np.minimum(self.cover, 1.0)
        mean = self.total / np.maximum(self.norm, 1e-12)
        return np.round(alpha * mean + (1 - alpha) * colour).astype(np.uint8)


def confidence(image: np.ndarray, side: int) -> np.ndarray:
    """A model-size output (uint8 RGB) -> how firmly each pixel commits to a colour, at `side` x
    `side` px: `chroma.firmness` of its CIELAB colour. Where half-overlapping tiles disagree, one
    painting a colour (or black) and another paper white, the colour wins: a face-trained model
    paints a tile of clothes in pale patches."""
    from skimage.color import rgb2lab

    firm = firmness(rgb2lab(image), 1.0).astype(np.float32)  # its base resized, then raised to the power
    return cv2.resize(firm, (side, side), interpolation=cv2.INTER_LINEAR) ** CONFIDENCE_POWER


def tile_side(face: Square, scale: float = TILE_SCALE) -> int:
    """The side of the figure's tiles: `scale` times the face square's, at least `MIN_SIDE` px."""
    return max(MIN_SIDE, round(face.side * scale))


def _grid(face: Square, shape, side: int) -> tuple[range, range]:
    """The left and top edges of tiles of `side` px: a half-side step through the face's top left
    corner, from just off the picture's top left (a tile there still overlaps it) to its far edges."""
    step = max(1, side // 2)
    return range(face.x0 % step - step, shape[1], step), range(face.y0 % step - step, shape[0], step)


def tiles(face: Square, shape, scale: float = TILE_SCALE) -> list[Square]:
    """Squares of `scale` times the face's side, half-overlapping, on a grid through the face,
    covering a picture of `shape`: the whole figure at (about) the scale the model was trained on."""
    side = tile_side(face, scale)
    xs, ys = _grid(face, shape, side)
    return [Square(x, y, side) for y in ys for x in xs]


def tile_count(face: Square, shape, scale: float = TILE_SCALE) -> int:
    """len(tiles(face, shape, scale)), without making them (a tiny face in a huge picture makes millions)."""
    xs, ys = _grid(face, shape, tile_side(face, scale))
    return len(xs) * len(ys)


def detected(rgb: np.ndarray) -> list[tuple[float, float, float, float, float, str]]:
    """animeface's faces at `MIN_LIKELIHOOD` (`clean.detect_faces`), largest first, boxes in the
    picture's pixels: read at its own size, and when nothing is found there, at the next of
    `DETECT_SCALES` until something is (an enlargement capped at `DETECT_LONGEST` px). The detector
    misses some line drawings at one size and finds them at another: lines with glasses, or faces
    whose strokes are thin or thick for the detector at the drawing's size."""
    longest, tried = max(rgb.shape[:2]), set()
    for scale in DETECT_SCALES:
        if scale > 1:
            scale = max(1.0, min(scale, DETECT_LONGEST / longest))
        if scale in tried:
            continue
        tried.add(scale)
        picture = rgb if scale == 1 else cv2.resize(
            rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
        if found := detect_faces(picture, MIN_LIKELIHOOD):
            return [(x / scale, y / scale, w / scale, h / scale, p, caption) for x, y, w, h, p, caption in found]
    return []


def face_square(face, shape) -> Square:
    """The square a face (animeface box first) is coloured in: its box grown by `MARGIN`, as training crops."""
    return Square(*square_box(face[:4], MARGIN, shape))


def found_faces(rgb: np.ndarray) -> tuple[list[Square], bool]:
    """animeface's faces in a drawing (RGB: lines or colours, on white) as (the squares the face pass
    colours, largest first; whether it is a face picture). A face picture has a face whose square is
    more than `MAX_FACE_FRACTION` of its longer side: it gets no face pass (a smaller find in it is an
    eye or a mistake, not another face). Squares under `MIN_SIDE` px are left out."""
    crops = [face_square(face, rgb.shape) for face in detected(rgb)[:MAX_FACES]]
    if any(c.side > MAX_FACE_FRACTION * max(rgb.shape[:2]) for c in crops):
        return [], True
    return [c for c in crops if c.side >= MIN_SIDE], False


def drawing_faces(rgb: np.ndarray) -> list[Square]:
    """The face squares of a drawing that the face pass colours, largest first (`found_faces`); none
    in a face picture."""
    return found_faces(rgb)[0]


def face_picture(rgb: np.ndarray) -> bool:
    """Whether a drawing is a face picture (`found_faces`)."""
    return found_faces(rgb)[1]


def largest_face_square(rgb: np.ndarray) -> Square | None:
    """The picture's largest face's square (framed as training faces are), or None when animeface finds none."""
    found = detected(rgb)
    return face_square(found[0], rgb.shape) if found else None


def resize_square(image: np.ndarray, side: int) -> np.ndarray:
    """A model-size square output scaled to `side` px (bicubic, as `colorize.unletterbox`)."""
    return cv2.resize(image, (side, side), interpolation=cv2.INTER_CUBIC)


def _ink(lines: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """A line layer (uint8, 255 = paper) as float32 ink (1 = line), shrunk by `scale` (INTER_AREA)."""
    ink = (255.0 - lines.astype(np.float32)) / 255.0
    return ink if scale >= 1 else cv2.resize(ink, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def _blurred(ink: np.ndarray, scale: float) -> np.ndarray:
    """`ink` resized by `scale` and blurred by `REGISTER_BLUR`: what the search correlates."""
    ink = cv2.resize(ink, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return cv2.GaussianBlur(ink, (0, 0), REGISTER_BLUR)


def _window(image: np.ndarray, x0: int, y0: int, w: int, h: int) -> np.ndarray:
    """The (h, w) window of `image` at (x0, y0), zero outside it."""
    out = np.zeros((h, w), image.dtype)
    ys, xs = slice(max(y0, 0), min(y0 + h, image.shape[0])), slice(max(x0, 0), min(x0 + w, image.shape[1]))
    if ys.stop > ys.start and xs.stop > xs.start:
        out[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0] = image[ys, xs]
    return out


def _canvas(ink: np.ndarray, scale: float, origin: np.ndarray, w: int, h: int) -> np.ndarray:
    """The (h, w) window at `origin` (px at `scale`) of `ink` resized by `scale` and blurred
    (`_blurred`), zero outside it. A reference much larger than the window at that scale (a small
    face in a large picture) is cropped around the window first, so the cost stays the window's;
    the crop's offset is then rounded to the nearest pixel at `scale`."""
    if ink.shape[0] * ink.shape[1] * scale ** 2 <= 4 * w * h:
        return _window(_blurred(ink, scale), *origin, w, h)
    pad = int(np.ceil(3 * REGISTER_BLUR)) + 1  # the blur's reach, px at `scale`
    x0, y0 = np.floor((origin - pad) / scale).astype(int)
    x1, y1 = np.ceil((origin + (w, h) + pad) / scale).astype(int) + 1
    part = _blurred(_window(ink, x0, y0, x1 - x0, y1 - y0), scale)
    return _window(part, *(origin - np.round(np.array([x0, y0]) * scale).astype(int)), w, h)


def register(lines: np.ndarray, reference_lines: np.ndarray, face: Square,
             ref_face: Square) -> tuple[Square, bool, float]:
    """Where the reference lies under the drawing's `face`: its square there, whether the reference is
    to be mirrored first, and the correlation gained. Found by laying the reference's line layer (and
    its mirror image's) on the drawing's: the scale and shift whose normalised cross-correlation of
    the two blurred layers is highest (`cv2.matchTemplate`), searched around the placement the two
    face squares give. Animeface frames one character's face a little differently in a line drawing
    and in a coloured picture; the figure's tiles take their part of the reference by this square,
    and the face its crop. `ref_face` itself, unmirrored, with a gain of 0, when no placement beats
    the face squares' own by `REGISTER_MARGIN` (a mirrored one must also beat the best unmirrored by
    as much), or either layer is blank. The square is in the mirrored reference's frame when mirrored.
    Both layers: uint8 grey (H, W), 255 = paper."""
    if lines.ndim != 2 or reference_lines.ndim != 2:
        raise ValueError(f"register: line layers are grey (H, W), got {lines.shape} and {reference_lines.shape}")
    k = min(REGISTER_FACE / face.side, REGISTER_LONGEST / max(lines.shape))
    drawing = _blurred(_ink(lines), k)
    if not drawing.any() or reference_lines.min() == 255:
        return ref_face, False, 0.0
    # the reference's ink shrunk once to the finest scale the search reads it at (its smallest scale's)
    finest = min(1.0, k * face.side / ref_face.side * REGISTER_SCALE * 1.25)
    ink = _ink(reference_lines, finest)
    mirror = Square(reference_lines.shape[1] - ref_face.x0 - ref_face.side, ref_face.y0, ref_face.side)
    own, best, square = _search(drawing, k, ink, finest, face, ref_face)
    _, flipped, flipped_square = _search(drawing, k, np.ascontiguousarray(ink[:, ::-1]), finest, face, mirror)
    if flipped - max(best, own) >= REGISTER_MARGIN:
        return flipped_square, True, flipped - own
    if best - own >= REGISTER_MARGIN:
        return square, False, best - own
    return ref_face, False, 0.0


def _search(drawing: np.ndarray, k: float, ink: np.ndarray, finest: float, face: Square,
            ref_face: Square) -> tuple[float, float, Square]:
    """`register`'s search on one reference: (the face squares' placement's correlation, the best
    correlation, the reference's square over `face` there). `drawing`: the drawing's blurred ink at
    scale `k`; `ink`: the reference's at scale `finest`."""
    reach = max(1, round(REGISTER_REACH * face.side * k))
    h, w = drawing.shape
    centre = np.array([face.x0, face.y0]) + face.side / 2
    ref_centre = np.array([ref_face.x0, ref_face.y0]) + ref_face.side / 2

    def best_at(scale: float) -> tuple[float, float, np.ndarray]:
        """(best correlation, the centred placement's, the drawing's origin in reference px) at `scale`
        (reference px per drawing px)."""
        f = k / scale  # reference px -> working px
        origin = np.round((ref_centre - scale * centre) * f).astype(int) - reach
        canvas = _canvas(ink, f / finest, origin, w + 2 * reach, h + 2 * reach)
        if not canvas.any():
            return 0.0, 0.0, (origin + reach) / f
        score = np.nan_to_num(cv2.matchTemplate(canvas, drawing, cv2.TM_CCORR_NORMED))
        y, x = np.unravel_index(np.argmax(score), score.shape)
        return float(score[y, x]), float(score[reach, reach]), (origin + (x, y)) / f

    s0 = ref_face.side / face.side
    step = 2 * np.log(REGISTER_SCALE) / (REGISTER_STEPS - 1)
    coarse = s0 * np.exp(np.linspace(-np.log(REGISTER_SCALE), np.log(REGISTER_SCALE), REGISTER_STEPS))
    found = {float(s): best_at(s) for s in coarse}
    own = found[float(coarse[REGISTER_STEPS // 2])][1]  # the face squares' placement (log step 0)
    best = max(found, key=lambda s: found[s][0])
    for s in best * np.exp(np.linspace(-step, step, REGISTER_STEPS)):
        found.setdefault(float(s), best_at(s))
    best = max(found, key=lambda s: found[s][0])
    score, _, origin = found[best]
    x0, y0 = origin + best * np.array([face.x0, face.y0])
    return own, score, Square(round(x0), round(y0), max(1, round(best * face.side)))


def _window_std(image: np.ndarray, side: int) -> np.ndarray:
    """The standard deviation of every `side` x `side` window of `image`, laid out as
    `cv2.matchTemplate`'s result (the window's top-left corner)."""
    total, squares = cv2.integral2(image.astype(np.float64))[:2]
    box = lambda t: t[side:, side:] - t[:-side, side:] - t[side:, :-side] + t[:-side, :-side]  # noqa: E731
    n = side * side
    return np.sqrt(np.maximum(box(squares) / n - (box(total) / n) ** 2, 0.0))


def local_source(lines: np.ndarray, reference_lines: np.ndarray, tile: Square,
                 source: Square) -> tuple[Square, float]:
    """A tile's part of the reference, moved from `source` (where the two faces, laid by `register`,
    put it) to where the tile's own lines correlate best with the reference's (normalised
    cross-correlation of the two blurred layers, zero-mean: `cv2.TM_CCOEFF_NORMED`), at the same
    scale, up to `LOCAL_REACH` tile sides away; and the correlation gained. A figure in another pose
    than its reference's has its parts elsewhere relative to the face: a sleeve raised, a skirt
    swung. A place whose lines vary less than `LOCAL_FLAT` of the tile's is no match (a near-blank
    window correlates by rounding). `source` itself, with a gain of 0, when no place beats it by
    `LOCAL_MARGIN`, the tile has too few lines to place (their spread under `LOCAL_MIN_SPREAD`), or
    `LOCAL_REACH` is 0. Both layers: uint8 grey (H, W), 255 = paper; `source` in `reference_lines`'
    frame."""
    reach = round(LOCAL_REACH * LOCAL_SIDE)
    if reach <= 0:
        return source, 0.0
    ink = cv2.resize(_ink(tile.crop(lines, 255)), (LOCAL_SIDE, LOCAL_SIDE), interpolation=cv2.INTER_AREA)
    template = cv2.GaussianBlur(ink, (0, 0), LOCAL_BLUR)
    if template.std() < LOCAL_MIN_SPREAD:  # a tile of a few specks: any place matches
        return source, 0.0
    margin = round(LOCAL_REACH * source.side)  # the search window: the source grown by the reach
    window = Square(source.x0 - margin, source.y0 - margin, source.side + 2 * margin)
    around = cv2.resize(_ink(window.crop(reference_lines, 255)), (LOCAL_SIDE + 2 * reach,) * 2,
                        interpolation=cv2.INTER_AREA)
    around = cv2.GaussianBlur(around, (0, 0), LOCAL_BLUR)
    score = np.nan_to_num(cv2.matchTemplate(around, template, cv2.TM_CCOEFF_NORMED), nan=-1.0)
    score[_window_std(around, LOCAL_SIDE) < LOCAL_FLAT * template.std()] = -1.0  # near-blank: 1 by rounding
    y, x = np.unravel_index(np.argmax(score), score.shape)
    gain = float(score[y, x] - score[reach, reach])
    if gain < LOCAL_MARGIN:
        return source, 0.0
    k = source.side / LOCAL_SIDE  # working px -> reference px
    return Square(source.x0 + round((x - reach) * k), source.y0 + round((y - reach) * k), source.side), gain
