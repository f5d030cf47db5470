"""Colour hints: "this area is that colour", applied exactly after the model.

A hint is a point of the drawing (x from the left, y from the top, in the drawing's own pixels)
and a colour (`#rrggbb`, `#rgb`, or a colour word of the prompt language, `data/prompt.py`).
Its region is the connected component (4-neighbours, so a diagonal line still closes an area)
of the drawing's non-line pixels under the point, at the drawing's own size; line pixels are the
dark side of the Otsu threshold of the drawing's line layer -- the binarisation `colorize
--binarize` applies.

The region is recoloured in CIELAB: every pixel gets the hint's a*, b*, and its own L* shifted so
that the region's median L* is the hint's (the model's shading kept), clamped to the lightness
range where the hint's a*, b* exist in sRGB. Clamping is monotone, so the region's median colour
(per-channel median in CIELAB) is the hint up to 8-bit rounding; pixels outside the region are
not touched.
"""

from __future__ import annotations

import difflib
import re
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
from skimage.color import deltaE_cie76, lab2rgb, rgb2lab

from pipeline.chroma import lab_pixels, rgb8_pixels
from pipeline.data.prompt import ALIASES, COLOURS, hex_code, hex_rgb, lab_of
from pipeline.errors import AnimecolorError

_HEX_CODE = re.compile(r"#([0-9a-f]{6}|[0-9a-f]{3})")
PAPER_TINT = 25.0  # CIE76: a background area whose mean colour lies this near the paper's stays paper
PAPER_BESIDE = 10  # ... and nearer the paper than all but this percentage of the figure's pixels beside it
_SYNTAX = "expected X,Y,COLOUR, e.g. 120,80,#ff66aa or 120,80,pink"


@dataclass(frozen=True)
class Hint:
    x: int                     # column in the drawing, 0 = left
    y: int                     # row in the drawing, 0 = top
    rgb: tuple[int, int, int]  # the colour the region gets
    text: str                  # as the user wrote it (for messages and the PNG metadata)

    def __str__(self) -> str:
        return self.text


def hint_colour(word: str, what: str = "hint") -> tuple[int, int, int]:
    """'#ff66aa', '#f6a', 'pink', 'light blue', 'light_blue' -> (r, g, b); an unknown word is one line."""
    word = " ".join(word.strip().lower().replace("_", " ").split())
    if _HEX_CODE.fullmatch(word):
        return hex_rgb(word)
    name = ALIASES.get(word, word)
    if name in COLOURS:
        return tuple(COLOURS[name])
    if word.startswith("#"):
        raise AnimecolorError(f"{what}: {word!r} is not a hex colour (#rrggbb or #rgb)")
    close = difflib.get_close_matches(word, list(COLOURS) + list(ALIASES), n=4, cutoff=0.6)
    known = f"close: {', '.join(close)}" if close else f"known: {', '.join(COLOURS)}, or #rrggbb"
    raise AnimecolorError(f"{what}: unknown colour {word!r} ({known})")


def parse_hint(text: str) -> Hint:
    """'X,Y,COLOUR' -> Hint; a malformed hint or an unknown colour is one AnimecolorError line."""
    parts = [p.strip() for p in str(text).split(",", 2)]
    what = f"hint {str(text).strip()[:80]}"
    if len(parts) != 3 or not all(parts):
        raise AnimecolorError(f"{what}: {_SYNTAX}")
    try:
        x, y = int(parts[0]), int(parts[1])
    except ValueError:
        raise AnimecolorError(f"{what}: X and Y are whole pixel numbers ({_SYNTAX})") from None
    return Hint(x, y, hint_colour(parts[2], what), f"{x},{y},{parts[2]}")


def parse_hints(text: str) -> tuple[Hint, ...]:
    """Hints separated by ";" or new lines (the app's box) -> Hints; empty parts are skipped."""
    return tuple(parse_hint(part) for part in re.split(r"[;\n]", text or "") if part.strip())


def click_hint(x: int, y: int, rgb: tuple[int, int, int]) -> Hint:
    """A hint from a click on the picture (the app): the colour as its hex code."""
    return Hint(int(x), int(y), tuple(int(c) for c in rgb), f"{int(x)},{int(y)},{hex_code(rgb)}")


# ---------------------------------------------------------------- regions
def binarize_lines(gray: np.ndarray) -> np.ndarray:
    """uint8 (H, W) -> uint8 (H, W) of 0 (line) and 255 (paper), Otsu's threshold."""
    return cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)[1]


def line_regions(lines: np.ndarray) -> tuple[int, np.ndarray]:
    """The line layer (uint8 (H, W), 255 = paper) -> (number of regions, int32 labels (H, W): 0 on
    line pixels, 1..n for the 4-connected areas of paper between them)."""
    count, labels = cv2.connectedComponents((binarize_lines(lines) == 255).astype(np.uint8), connectivity=4)
    return count - 1, labels


def sealed_regions(lines: np.ndarray, seal: int) -> np.ndarray:
    """`line_regions`' labels (int32 (H, W)) with the lines' gaps up to twice `seal` px wide closed:
    the ink is grown by `seal` px (a disc) before the areas are found, so a broken outline does
    not join the areas on either side of it, and the pixels within `seal` px of a line stay 0
    (unlabelled). `seal` 0: `line_regions`' own labels."""
    if seal <= 0:
        return line_regions(lines)[1]
    ink = (binarize_lines(lines) == 0).astype(np.uint8)
    grown = cv2.dilate(ink, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * seal + 1, 2 * seal + 1)))
    return cv2.connectedComponents(1 - grown, connectivity=4)[1]


def paper_background(lines: np.ndarray, close: int = 0, bottom: bool = True) -> np.ndarray:
    """The line layer (uint8 (H, W), 255 = paper) -> bool (H, W): the paper areas (`line_regions`)
    that touch the picture's edge, the background of a drawing on opaque paper. A figure whose
    lines leave a gap to the edge loses that area to the background too, unless `close` (px) seals
    gaps up to twice that wide first (the lines thickened by `close` to find the areas, which then
    grow back by as much over the paper); `bottom=False` leaves out areas that touch the picture's
    bottom edge only (a figure cut off by the frame at its feet or chest)."""
    paper = binarize_lines(lines) == 255
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * close + 1, 2 * close + 1)) if close > 0 else None
    open_paper = paper if kernel is None else cv2.dilate((~paper).astype(np.uint8), kernel) == 0
    _, labels = cv2.connectedComponents(open_paper.astype(np.uint8), connectivity=4)
    edges = [labels[0], labels[:, 0], labels[:, -1]] + [labels[-1]] * bottom
    edge = np.unique(np.concatenate(edges))
    background = np.isin(labels, edge[edge > 0])
    if kernel is not None:
        background = (cv2.dilate(background.astype(np.uint8), kernel) > 0) & paper
    return background


def plain_paper(background: np.ndarray, colour: np.ndarray, tone: np.ndarray,
                tint: float | None = None, figure: np.ndarray | None = None, reach: int = 0) -> np.ndarray:
    """Of `paper_background`'s areas, those the model left near the paper: each connected area
    (4-neighbours) whose mean colour in `colour` (uint8 (H, W, 3)) lies within CIE76 `tint`
    (default `PAPER_TINT`) of the paper's `tone` (RGB). An area at the edge that the model painted
    clearly is more likely a part of the figure that the frame cuts (a sleeve, a skirt) than
    paper, and keeps its colour; a white part of the figure taken for paper loses little. With
    `figure` (bool (H, W): the figure's pixels off its lines), an area that reaches fewer than
    three sides of the picture must also lie nearer the paper than all but `PAPER_BESIDE` % of the
    figure's pixels within `reach` px of it: a pale area painted like the figure beside it (a pale
    head of hair the frame cuts at the top, a corner of it) is that figure's, not paper. An area
    that reaches three sides goes round the figure: the background, however pale the figure beside
    it (a haze the model paints like a pale dress)."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(background.astype(np.uint8), connectivity=4)
    if count < 2:
        return np.zeros(background.shape, bool)
    lab = cv2.cvtColor(colour.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)
    flat, pixels = labels.ravel(), lab.reshape(-1, 3)
    area = np.bincount(flat, minlength=count)
    mean = np.stack([np.bincount(flat, pixels[:, c], count) for c in range(3)], 1) / np.maximum(area, 1)[:, None]
    paper_lab = cv2.cvtColor(np.asarray(tone, np.float32).reshape(1, 1, 3) / 255, cv2.COLOR_RGB2Lab).reshape(3)
    off = np.linalg.norm(mean - paper_lab, axis=1)
    near = off < (PAPER_TINT if tint is None else tint)
    near[0] = False  # the figure
    if figure is not None and reach > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * reach + 1, 2 * reach + 1))
        h, w = labels.shape
        for k in np.flatnonzero(near):
            x, y, bw, bh = (int(v) for v in stats[k, :4])
            if (x == 0) + (y == 0) + (x + bw == w) + (y + bh == h) >= 3:
                continue
            ys, xs = slice(max(y - reach, 0), min(y + bh + reach, h)), slice(max(x - reach, 0), min(x + bw + reach, w))
            beside = (cv2.dilate((labels[ys, xs] == k).astype(np.uint8), kernel) > 0) & figure[ys, xs]
            if beside.any():
                distance = np.linalg.norm(lab[ys, xs][beside] - mean[k], axis=1)
                near[k] = off[k] < np.percentile(distance, PAPER_BESIDE)
    return near[labels]


def paper_tone(drawing: np.ndarray, background: np.ndarray) -> np.ndarray:
    """The paper's colour: the median of the drawing's RGB (uint8 (H, W, 3)) over its background
    (white when there is none)."""
    return np.median(drawing[background].reshape(-1, 3), axis=0) if background.any() else np.full(3, 255.0)


def lay_paper(colour: np.ndarray, paper: np.ndarray, tone: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    """`colour` (uint8 (H, W, 3)) with the `paper` pixels back at the paper's `tone`, feathered by
    `sigma` px so no seam shows where a sealed gap cut the paper off; the rest is untouched."""
    if not paper.any():
        return colour
    weight = np.where(paper, 1.0, cv2.GaussianBlur(paper.astype(np.float32), (0, 0), sigma))[..., None]
    return np.round(colour + weight * (tone - colour.astype(np.float64))).clip(0, 255).astype(np.uint8)


def hint_masks(hints: list[Hint] | tuple[Hint, ...], lines: np.ndarray,
               alpha: np.ndarray | None = None) -> list[np.ndarray]:
    """One bool mask (H, W) per hint: the region under its point. A point outside the picture, on a
    line or on transparent paper, or a drawing whose lines enclose no area, is one AnimecolorError
    line naming the hint."""
    if not hints:
        return []
    h, w = lines.shape
    count, labels = line_regions(lines)
    masks = []
    for hint in hints:
        what = f"hint {hint}"
        if not (0 <= hint.x < w and 0 <= hint.y < h):
            raise AnimecolorError(f"{what}: ({hint.x}, {hint.y}) is outside the drawing ({w}x{h} px: "
                                  f"x 0-{w - 1}, y 0-{h - 1})")
        if count < 2:
            raise AnimecolorError(f"{what}: the drawing has no closed regions (its lines enclose no area "
                                  "to fill)")
        label = labels[hint.y, hint.x]
        if label == 0:
            raise AnimecolorError(f"{what}: ({hint.x}, {hint.y}) is on a line (point inside an area the "
                                  "lines enclose)")
        if alpha is not None and alpha[hint.y, hint.x] == 0:
            raise AnimecolorError(f"{what}: ({hint.x}, {hint.y}) is on the drawing's transparent background")
        masks.append(labels == label)
    return masks


# ---------------------------------------------------------------- recolouring
def lightness_range(rgb: tuple[int, int, int], step: float = 0.1) -> tuple[float, float]:
    """The L* interval, around the colour's own, over which its a*, b* stay inside sRGB."""
    lab = lab_of(rgb)
    grid = np.arange(0.0, 100.0 + step / 2, step)
    wanted = np.stack([grid, np.full_like(grid, lab[1]), np.full_like(grid, lab[2])], axis=-1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lab2rgb warns when it clips, which is what is measured here
        back = rgb2lab(lab2rgb(wanted))
    inside = deltaE_cie76(back, wanted) < 0.5
    k = int(round(lab[0] / step))
    inside[k] = True  # the colour itself is in sRGB (8-bit rounding aside)
    lo, hi = k, k
    while lo > 0 and inside[lo - 1]:
        lo -= 1
    while hi < len(grid) - 1 and inside[hi + 1]:
        hi += 1
    return float(grid[lo]), float(grid[hi])


def _median_lightness(rgb: np.ndarray) -> float:
    return float(np.median(lab_pixels(rgb)[:, 0]))


def fill_region(colour: np.ndarray, mask: np.ndarray, rgb: tuple[int, int, int],
                lines: np.ndarray | None = None) -> np.ndarray:
    """uint8 RGB (H, W, 3) with the pixels of `mask` recoloured to `rgb`, shading kept (module
    docstring); a new array, equal to `colour` outside the mask.

    `lines` (uint8 (H, W), 255 = paper): the line layer that will be multiplied over the result;
    the lightness shift is then chosen so that the median holds in the composite too (the faint
    edges of lines inside the region darken a few of its pixels), when it can."""
    out = colour.copy()
    if not mask.any():
        return out
    target = lab_of(rgb)
    lightness = lab_pixels(colour[mask])[:, 0]
    shading = lightness - np.median(lightness)
    lo, hi = lightness_range(rgb)

    def pixels(shift: float) -> np.ndarray:
        shaded = np.clip(shading + target[0] + shift, lo, hi)
        return rgb8_pixels(np.stack([shaded, np.full_like(shaded, target[1]), np.full_like(shaded, target[2])],
                                    axis=-1))

    shift = 0.0
    if lines is not None and (lines[mask] < 255).any():
        shade = lines[mask].astype(np.float32)[:, None] / 255.0  # as `Colored.image` multiplies them

        def shown(shift: float) -> float:
            return _median_lightness(np.round(pixels(shift).astype(np.float32) * shade).astype(np.uint8))

        low, high = 0.0, 100.0
        if shown(low) < target[0] <= shown(high):  # else: out of reach (grey paper), the layer's median it is
            for _ in range(20):
                mid = (low + high) / 2
                low, high = (mid, high) if shown(mid) < target[0] else (low, mid)
            shift = min((low, high), key=lambda s: abs(shown(s) - target[0]))
    out[mask] = pixels(shift)
    return out


def apply_hints(colour: np.ndarray, hints, masks: list[np.ndarray], lines: np.ndarray | None = None) -> np.ndarray:
    """Each hint's region of the colour layer recoloured (`fill_region`), in order (a later hint in
    the same region wins)."""
    for hint, mask in zip(hints, masks):
        colour = fill_region(colour, mask, hint.rgb, lines)
    return colour
