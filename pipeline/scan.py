"""A scan or a photo of a drawing read as the clean line layer the model was trained on.

Training drawings are XDoG lines on pure white paper. A scan has grey or cream paper, a photo
has light that falls off across the page, and both have noise; the model reads all of that as
texture to paint (a figure on grey paper comes back smeared with colour from edge to edge). So
`colorize` levels a drawing read as lines first (`--auto-levels`, on by default):

- the paper's light is fitted as a smooth surface (a quadratic in x and y) to the pixels on the
  paper side of the drawing's Otsu threshold, on a copy at most `FIT_SIDE` px wide, refitted once
  without the pixels far off the first fit (faint lines, smudges);
- then corrected cell by cell (`LOCAL_CELL` px of that copy) by the median of the paper's pixels off
  the surface where a cell is at least `LOCAL_PAPER` paper, the corrections median-filtered over 3 x 3
  cells: a shadow with an edge (a hand's, a phone's) that no quadratic follows;
- every pixel is divided by that surface, less `WHITE_SIGMAS` of the paper's noise, so the paper
  comes out white with its grain clipped;
- the darkest percent is taken to black (its level capped at `MAX_BLACK`, so a sparse sketch's
  paper is never stretched into grey).

Cream or tinted paper is not colour: whether a drawing is read as lines or as a colour picture is
decided on it with its paper's tint taken out (`untinted`: each channel scaled so that the median of
its brighter half is white, when that median looks like paper), so a photo of a pencil drawing on
cream paper is levelled, not traced.

A drawing whose median level is `WHITE_PAPER` or more is on white paper already (a digital drawing,
XDoG lines) and comes back unchanged, its lines' soft edges included; a drawing that is mostly ink
(paper under `MIN_PAPER` of it) is only stretched between its first and 99th percentiles.

A pencil or soft-brush drawing is marked in greys, not in ink: shrunk to the model's size its
strokes and shading turn into a faint grey blur, unlike the hard XDoG lines of training.
`soft_lines` tells one (the median level of its marks above `SOFT_MARKS`), and `colorize` then
draws the shrunk drawing's lines again with the training XDoG at the model's size
(`--reline auto`).

A manga drawing shades with screentone: a regular lattice of small dots (or, in a dark tone, of
small holes in the ink). Shrunk to the model's size it is a grey wash over the parts, which the
model never saw in training, and over the colours it is a dot pattern. `descreened` takes it out
(`--descreen`, on by default):

- the tone's lattice is found from the drawing's small ink dots (or paper holes) that sit in a
  regular field of their like (`TONE_CORE` of them within `TONE_REACH` spacings, their nearest
  neighbours about equally far and about as large): the most common steps between neighbours,
  averaged to a fraction of a pixel;
- a pixel repeats when its level is within `TONE_MATCH` of the median of the 8 pixels one lattice
  step away (and those agree); tone is where most of the ink in a window of two periods repeats,
  and no solid fill (ink over `TONE_FILL` of the window);
- there the ink that repeats is erased; the ink darker than the tone's own level at that place
  (a line drawn over the tone), closed over a dot's width where a line crosses a dot, is kept.

A drawing without such a field (XDoG lines, inked lines, a pencil drawing) comes back unchanged.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.spatial import cKDTree

FIT_SIDE = 256  # the paper's light is fitted on a copy at most this many px on its longer side
MIN_PAPER = 0.3  # the paper side's least share of the picture for the light to be fitted
OUTLIER_SIGMAS = 2.5  # the refit leaves out pixels this many noise sigmas off the first fit
WHITE_SIGMAS = 3.0  # the white point: the fitted paper less this many sigmas of its noise
MAX_BLACK = 127  # the black point (the darkest percent's level) is at most this
BLACK_PERCENTILE = 1.0
WHITE_PAPER = 253  # a drawing whose median level is at least this is on white paper already: left as drawn
LOCAL_CELL = 16  # the local correction's cells, px of the fitted copy (1/16 of its longer side)
LOCAL_PAPER = 0.25  # a cell is corrected when at least this share of it is paper:
LOCAL_REACH = 7  # ... a pixel within LOCAL_LINE of the brightest in this square around it (px) ...
LOCAL_LINE = 0.85
LOCAL_FLOOR = 0.5  # ... where that brightest is at least this share of the fitted light
PAPER_LEVEL = 150  # `untinted`: paper has every channel at least this ...
PAPER_SPREAD = 64  # ... and its channels at most this far apart (cream paper: about 30)
MARK_LEVEL = 224  # `soft_lines`: a drawing's marks are its pixels darker than this ...
SOFT_MARKS = 90  # ... and it is soft (pencil, soft brush) when their median level is above this
MIN_MARKS = 0.002  # ... and they are at least this share of it
TONE_INK = 128  # `descreened`: ink is darker than this
TONE_DOT = 64  # a tone's dot or hole: a component of at most this many px ...
TONE_DOT_SIDE = 10  # ... and at most this wide and high
TONE_NEIGHBOURS = 3  # its nearest neighbours, at most `TONE_REGULAR` times as far as each other ...
TONE_REGULAR = 1.6
TONE_SIZES = 3.5  # ... and at most this many times as large or small
TONE_CORE = 12  # a field: at least this many such regular dots within `TONE_REACH` spacings
TONE_REACH = 3.0
TONE_STEP_BIN = 0.5  # the lattice's steps: the most common neighbour offset (px bins), averaged
TONE_MATCH = 64  # a pixel repeats: within this many levels of its lattice neighbours' median
TONE_SHARE = 0.6  # tone: at least this share of the ink in a two-period window repeats ...
TONE_MIN_INK = 0.03  # ... the window at least this much ink ...
TONE_FILL = 0.9  # ... and at most this much (more is a solid fill, kept)


def untinted(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB (H, W, 3) with each channel scaled so that the per-channel median of the picture's
    brighter half (by grey level) is white, when that median looks like paper (each channel at least
    `PAPER_LEVEL`, channels at most `PAPER_SPREAD` apart): a cream or tinted paper turned white. A new
    array, or `rgb` itself."""
    grey = rgb.mean(-1)
    paper = np.median(rgb[grey >= np.median(grey)], 0)
    if paper.min() < PAPER_LEVEL or np.ptp(paper) > PAPER_SPREAD:
        return rgb
    return np.clip(rgb * (255.0 / paper), 0, 255).astype(np.uint8)


def _basis(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The quadratic surface's terms at normalised coordinates (-1..1)."""
    return np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], -1)


def _coords(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    return 2 * x / max(w - 1, 1) - 1, 2 * y / max(h - 1, 1) - 1


def paper_light(gray: np.ndarray) -> tuple[np.ndarray, float] | None:
    """The fitted light of the paper at every pixel (float32 (H, W)) and the paper's noise (the
    standard deviation of the kept paper pixels off the quadratic), or None when too little of the
    picture is paper."""
    h, w = gray.shape
    k = min(1.0, FIT_SIDE / max(h, w))
    small = gray if k == 1 else cv2.resize(gray, (max(1, round(w * k)), max(1, round(h * k))),
                                           interpolation=cv2.INTER_AREA)
    threshold, _ = cv2.threshold(small, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    paper = small > threshold
    if paper.mean() < MIN_PAPER:
        return None
    x, y = _coords(*small.shape)
    basis, values = _basis(x[paper], y[paper]), small[paper].astype(np.float64)
    coef = np.linalg.lstsq(basis, values, rcond=None)[0]
    residual = values - basis @ coef
    keep = np.abs(residual) <= OUTLIER_SIGMAS * max(residual.std(), 1.0)
    if keep.sum() >= basis.shape[1]:
        coef = np.linalg.lstsq(basis[keep], values[keep], rcond=None)[0]
        residual = (values - basis @ coef)[keep]  # the grain: the kept paper off the quadratic
    surface = (_basis(x, y) @ coef.astype(np.float32)).astype(np.float32)
    surface += _local_correction(small, surface)
    if k < 1:
        surface = cv2.resize(surface, (w, h), interpolation=cv2.INTER_LINEAR)
    return surface, float(residual.std())


def _local_correction(small: np.ndarray, surface: np.ndarray) -> np.ndarray:
    """float32 (h, w): each `LOCAL_CELL` cell's median of its paper pixels off `surface` (0 in a cell
    under `LOCAL_PAPER` paper), median-filtered over 3 x 3 cells and interpolated between cells' centres.
    Paper here is local (a shadow's paper is darker than the lit ink's Otsu threshold may allow): a
    pixel within `LOCAL_LINE` of its neighbourhood's brightest (a `LOCAL_REACH` px square), where that
    is at least `LOCAL_FLOOR` of the fitted light (a black fill is not a shadow)."""
    h, w = small.shape
    brightest = cv2.dilate(small, np.ones((LOCAL_REACH, LOCAL_REACH), np.uint8)).astype(np.float32)
    paper = (small >= LOCAL_LINE * brightest) & (brightest >= LOCAL_FLOOR * surface)
    rows, cols = max(1, round(h / LOCAL_CELL)), max(1, round(w / LOCAL_CELL))
    off = small.astype(np.float32) - surface
    grid = np.zeros((rows, cols), np.float32)
    ys, xs = np.linspace(0, h, rows + 1).astype(int), np.linspace(0, w, cols + 1).astype(int)
    for i in range(rows):
        for j in range(cols):
            cell = paper[ys[i]:ys[i + 1], xs[j]:xs[j + 1]]
            if cell.size and cell.mean() >= LOCAL_PAPER:
                grid[i, j] = np.median(off[ys[i]:ys[i + 1], xs[j]:xs[j + 1]][cell])
    if rows >= 3 and cols >= 3:
        grid = cv2.medianBlur(grid, 3)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_LINEAR)


def level_lines(gray: np.ndarray) -> np.ndarray:
    """A grey drawing (uint8 (H, W)) with its paper levelled to white and its darkest lines to black
    (module docstring); a new array."""
    if np.median(gray) >= WHITE_PAPER:  # a digital drawing: its soft line edges are not to be stretched
        return gray.copy()
    fitted = paper_light(gray)
    if fitted is None:  # mostly ink: a plain stretch of its levels
        lo, hi = np.percentile(gray, (BLACK_PERCENTILE, 100 - BLACK_PERCENTILE))
        if hi <= lo:
            return gray.copy()
        return np.clip((gray.astype(np.float32) - lo) * 255.0 / (hi - lo), 0, 255).astype(np.uint8)
    surface, noise = fitted
    white = np.clip(surface - WHITE_SIGMAS * noise, 1.0, 255.0)
    flat = np.clip(gray.astype(np.float32) * 255.0 / white, 0, 255)
    black = min(float(np.percentile(flat, BLACK_PERCENTILE)), MAX_BLACK)
    return np.clip((flat - black) * 255.0 / (255.0 - black), 0, 255).round().astype(np.uint8)


def soft_lines(gray: np.ndarray) -> bool:
    """Whether a levelled grey drawing (uint8 (H, W)) is marked in greys (pencil, a soft brush)
    rather than inked: the median level of its marks (pixels below `MARK_LEVEL`, at least `MIN_MARKS`
    of it) is above `SOFT_MARKS`. Inked lines have a black core (median 0-64 anti-aliased)."""
    marks = gray[gray < MARK_LEVEL]
    return marks.size >= MIN_MARKS * gray.size and float(np.median(marks)) > SOFT_MARKS


def _tone_elements(binary: np.ndarray, connectivity: int) -> tuple[np.ndarray, np.ndarray]:
    """Centroids (N, 2) and areas (N,) of the components of `binary` small enough to be a tone's dots."""
    _, _, stats, centroids = cv2.connectedComponentsWithStats(binary.astype(np.uint8), connectivity=connectivity)
    small = (stats[:, cv2.CC_STAT_AREA] <= TONE_DOT) & (stats[:, 2:4].max(1) <= TONE_DOT_SIDE)
    small[0] = False  # the background
    return centroids[small], stats[small, cv2.CC_STAT_AREA].astype(np.float64)


def _tone_field(points: np.ndarray, areas: np.ndarray) -> np.ndarray:
    """The points (M, 2) in a regular field of their like: their nearest neighbours about equally far
    and about as large, `TONE_CORE` such within `TONE_REACH` spacings."""
    if len(points) <= max(TONE_CORE, TONE_NEIGHBOURS):
        return points[:0]
    distances, nearest = cKDTree(points).query(points, k=TONE_NEIGHBOURS + 1)
    distances, nearest = distances[:, 1:], nearest[:, 1:]
    sizes = np.abs(np.log(areas[nearest] / areas[:, None])).max(1)
    regular = (distances.max(1) <= TONE_REGULAR * distances.min(1)) & (sizes <= np.log(TONE_SIZES))
    if regular.sum() < TONE_CORE:
        return points[:0]
    reach = TONE_REACH * np.median(distances, 1)
    counts = np.array([len(found) for found in cKDTree(points[regular]).query_ball_point(points, reach)])
    return points[regular & (counts >= TONE_CORE)]


def _common_step(steps: np.ndarray) -> np.ndarray:
    """The most common of the offsets (N, 2), averaged over those within a bin of it."""
    keys, counts = np.unique(np.round(steps / TONE_STEP_BIN).astype(int), axis=0, return_counts=True)
    mode = keys[np.argmax(counts)] * TONE_STEP_BIN
    return steps[np.hypot(*(steps - mode).T) <= 2 * TONE_STEP_BIN].mean(0)


def tone_lattice(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The two steps (x, y) in px of a screentone's lattice in a grey drawing (uint8 (H, W)), from its
    dots, or from the holes of a dark tone, whichever field is larger; None without a field."""
    ink = gray < TONE_INK
    fields = [_tone_field(*_tone_elements(ink, 8)), _tone_field(*_tone_elements(~ink, 4))]
    points = max(fields, key=len)
    if len(points) < TONE_CORE:
        return None
    _, nearest = cKDTree(points).query(points, k=5)
    steps = (points[nearest[:, 1:]] - points[:, None]).reshape(-1, 2)
    steps[(steps[:, 1] < 0) | ((steps[:, 1] == 0) & (steps[:, 0] < 0))] *= -1  # one half-plane
    first = _common_step(steps)
    sine = np.abs(steps[:, 0] * first[1] - steps[:, 1] * first[0]) / (np.hypot(*steps.T) * np.hypot(*first) + 1e-9)
    across = steps[sine > np.sin(np.deg2rad(25))]
    if len(across) < TONE_CORE:
        return None
    return first, _common_step(across)


def _shifted(image: np.ndarray, step: np.ndarray) -> np.ndarray:
    """`image` read one `step` away: out(x) = image(x + step), bicubic (a step between pixels keeps a
    small dot's core dark, where bilinear would grey it), the edges reflected."""
    move = np.float32([[1, 0, -step[0]], [0, 1, -step[1]]])
    return cv2.warpAffine(image, move, (image.shape[1], image.shape[0]), flags=cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_REFLECT)


def descreened(gray: np.ndarray) -> tuple[np.ndarray, float]:
    """A grey drawing (uint8 (H, W)) with its screentone erased to white and the lines over it kept
    (module docstring), and the share of the picture erased; the drawing itself and 0.0 without tone."""
    lattice = tone_lattice(gray)
    if lattice is None:
        return gray, 0.0
    a, b = lattice
    level = gray.astype(np.float32)
    ink = gray < TONE_INK
    around = np.stack([_shifted(level, s) for s in (a, -a, b, -b, a + b, -a - b, a - b, b - a)])
    expected = np.median(around, 0)  # the tone's level at this place, from its lattice neighbours
    spread = np.percentile(around, 75, 0) - np.percentile(around, 25, 0)
    repeats = (np.abs(level - expected) <= TONE_MATCH) & (spread <= TONE_MATCH)
    period = max(np.hypot(*a), np.hypot(*b))
    window = (int(2 * period) | 1,) * 2
    local_ink = cv2.boxFilter(ink.astype(np.float32), -1, window)
    tone = (cv2.boxFilter((ink & repeats).astype(np.float32), -1, window) >= TONE_SHARE * local_ink) \
        & (local_ink >= TONE_MIN_INK) & (local_ink <= TONE_FILL)
    box = np.ones(window, np.uint8)
    tone = cv2.dilate(tone.astype(np.uint8), box).astype(bool)
    fill = cv2.dilate((local_ink > TONE_FILL).astype(np.uint8), box).astype(bool)
    gap = max(3, round(period / 2) | 1)  # a line crossing a dot: its pixels there repeat too
    line = ink & (level < expected - TONE_MATCH)
    line = cv2.morphologyEx(line.astype(np.uint8), cv2.MORPH_CLOSE,
                            cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (gap, gap))).astype(bool)
    erase = tone & ~fill & ~line & (gray < 250)
    if not erase.any():
        return gray, 0.0
    out = gray.copy()
    out[erase] = 255
    return out, float(erase.mean())
