"""Procedural anime faces: the embedded, download-free default data source.

Every face is drawn from a `FaceSpec` (all random choices, sampled once from a seeded
generator) by `render_face`, which returns the colour image and a region label map that
are pixel-aligned. Later stages measure colour accuracy per region from the label map.

Rendering works on a supersampled canvas in a canonical frame (coordinates in [0, 1]):
  1. paint region ids into the label map, back to front (hair, clothes, neck, face, ...);
  2. colour = palette[label] times a shading map (shadow under the bangs, iris gradient);
  3. warp label / colour / ink strokes with one pose affine (shift, scale, small rotation);
  4. ink outlines where neighbouring regions differ, plus strokes (lashes, nose, closed mouth);
  5. area-downsample to the output size, which anti-aliases the lines.

Names: `size` is the output side in pixels; `S` the supersampled canvas side; `label` is
uint8 (H, W) with ids from `REGIONS`; images are uint8 RGB (H, W, 3).
"""

from __future__ import annotations

import colorsys
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

from pipeline.data.labels import REGION_IDS, REGIONS  # noqa: F401  (REGIONS: re-exported for the crawl)

# Regions that share one outline group are not inked against each other (no line between
# a cheek and its blush, or between an iris and its pupil/highlight).
_OUTLINE_GROUP = np.arange(256, dtype=np.uint8)
for _child, _parent in [(12, 2), (5, 4), (6, 4), (7, 4), (10, 9), (11, 9)]:
    _OUTLINE_GROUP[_child] = _parent

HAIR_STYLES = ("short", "bob", "long", "twintails")
MOUTHS = ("closed", "smile", "open", "open_teeth")
COLLARS = ("none", "shirt", "sailor")

# Base colours (RGB); each draw jitters hue/saturation/value a little.
HAIR_PALETTE = [
    (35, 32, 45), (85, 55, 40), (145, 95, 60), (240, 212, 125), (235, 135, 55), (190, 45, 50),
    (245, 165, 195), (145, 95, 195), (70, 110, 210), (145, 195, 240), (80, 170, 115),
    (205, 205, 222), (242, 240, 246), (55, 170, 170),
]
EYE_PALETTE = [
    (50, 110, 220), (60, 170, 90), (200, 40, 50), (220, 150, 40), (140, 70, 200),
    (120, 75, 45), (235, 110, 170), (40, 170, 180), (235, 200, 60), (120, 130, 150),
]
# Eye colours the palette lacks and anime has (Danbooru's black_eyes, grey_eyes, white_eyes): drawn
# only with `achromatic_eyes_p` > 0, so the default data and its rng stream are those of before.
ACHROMATIC_EYES = [(35, 32, 42), (135, 135, 148), (242, 240, 246)]
SKIN_PALETTE = [(255, 232, 216), (252, 220, 196), (242, 204, 176), (226, 182, 148), (190, 140, 108)]


@dataclass
class FaceSpec:
    """All random choices for one face (geometry in canonical [0, 1] units, colours RGB)."""

    seed: int
    hair_style: str
    n_bangs: int
    bangs_depth: float
    parted: bool
    mouth: str
    blush: bool
    collar: str
    heterochromia: bool
    eye_dx: float  # half distance between the eyes
    eye_y: float
    eye_w: float
    eye_h: float
    gaze: tuple[float, float]
    chin_y: float
    jaw_w: float
    pose: tuple[float, float, float, float]  # dx, dy, scale, degrees
    colors: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    ink: tuple[int, int, int] = (40, 26, 32)

    def attributes(self) -> dict:
        """Flat, CSV-friendly attributes: choices plus `color_<region>` as #rrggbb."""
        out = {k: v for k, v in asdict(self).items() if k not in ("colors", "gaze", "pose", "ink")}
        for name, rgb in self.colors.items():
            out[f"color_{name}"] = rgb_to_hex(rgb)
        return out


def rgb_to_hex(rgb) -> str:
    return "#{:02x}{:02x}{:02x}".format(*(int(c) for c in rgb))


def hex_to_rgb(text: str) -> tuple[int, int, int]:
    text = text.lstrip("#")
    return tuple(int(text[i : i + 2], 16) for i in (0, 2, 4))


def _jitter(rgb, rng: np.random.Generator, dh=0.03, ds=0.12, dv=0.08) -> tuple[int, int, int]:
    h, s, v = colorsys.rgb_to_hsv(*(c / 255.0 for c in rgb))
    h = (h + rng.uniform(-dh, dh)) % 1.0
    s = float(np.clip(s * (1 + rng.uniform(-ds, ds)), 0, 1))
    v = float(np.clip(v * (1 + rng.uniform(-dv, dv)), 0, 1))
    return tuple(int(round(c * 255)) for c in colorsys.hsv_to_rgb(h, s, v))


def _hsv(h, s, v) -> tuple[int, int, int]:
    return tuple(int(round(c * 255)) for c in colorsys.hsv_to_rgb(h % 1.0, s, v))


def _scale(rgb, f) -> tuple[int, int, int]:
    return tuple(int(np.clip(round(c * f), 0, 255)) for c in rgb)


def _mix(a, b, t) -> tuple[int, int, int]:
    return tuple(int(round((1 - t) * x + t * y)) for x, y in zip(a, b))


def _pupil(iris) -> tuple[int, int, int]:
    """A pupil's colour: its iris's, darkened."""
    return _scale(_mix(iris, (20, 10, 20), 0.5), 0.5)


def sample_face(rng: np.random.Generator, heterochromia_p: float = 0.1, seed: int = 0,
                achromatic_eyes_p: float = 0.0) -> FaceSpec:
    """Draw every random choice of one face from `rng` (nothing is rendered here). With
    `achromatic_eyes_p` > 0, that share of faces has its left iris (and the right one too, unless
    heterochromatic) in black, grey or white instead, drawn after everything else."""
    hair = _jitter(HAIR_PALETTE[rng.integers(len(HAIR_PALETTE))], rng)
    eye_idx = int(rng.integers(len(EYE_PALETTE)))
    iris_l = _jitter(EYE_PALETTE[eye_idx], rng)
    heterochromia = bool(rng.random() < heterochromia_p)
    if heterochromia:
        other = (eye_idx + 1 + int(rng.integers(len(EYE_PALETTE) - 1))) % len(EYE_PALETTE)
        iris_r = _jitter(EYE_PALETTE[other], rng)
    else:
        iris_r = iris_l
    skin = _jitter(SKIN_PALETTE[rng.integers(len(SKIN_PALETTE))], rng, dh=0.01, ds=0.08, dv=0.03)
    clothes = _hsv(rng.random(), rng.uniform(0.3, 0.9), rng.uniform(0.3, 0.95))
    collar = (248, 248, 250) if rng.random() < 0.6 else _hsv(rng.random(), rng.uniform(0.4, 0.9), rng.uniform(0.3, 0.9))
    background = _hsv(rng.random(), rng.uniform(0.08, 0.35), rng.uniform(0.8, 1.0))
    colors = {
        "background": background,
        "hair": hair,
        "skin": skin,
        "sclera": _jitter((250, 250, 252), rng, 0.0, 0.0, 0.02),
        "iris_left": iris_l,
        "iris_right": iris_r,
        "pupil": _pupil(iris_l),
        "highlight": (255, 255, 255),
        "eyebrow": _scale(hair, 0.6),
        "clothes": clothes,
        "collar": collar,
    }
    mouth = MOUTHS[rng.integers(len(MOUTHS))]
    if mouth.startswith("open"):
        colors["mouth"] = _jitter((150, 42, 55), rng)
        colors["tongue"] = _jitter((232, 112, 125), rng)
        if mouth == "open_teeth":
            colors["teeth"] = (250, 250, 250)
    blush = bool(rng.random() < 0.4)
    if blush:
        colors["blush"] = _mix(skin, (255, 130, 150), rng.uniform(0.35, 0.55))
    if achromatic_eyes_p > 0:
        draw, pick = rng.random(), int(rng.integers(len(ACHROMATIC_EYES)))
        if draw < achromatic_eyes_p:
            iris = _jitter(ACHROMATIC_EYES[pick], rng)
            colors["iris_left"] = iris
            colors["pupil"] = _pupil(iris)
            if not heterochromia:
                colors["iris_right"] = iris
    return FaceSpec(
        seed=int(seed),
        hair_style=HAIR_STYLES[rng.integers(len(HAIR_STYLES))],
        n_bangs=int(rng.integers(3, 8)),
        bangs_depth=float(rng.uniform(0.30, 0.36)),
        parted=bool(rng.random() < 0.35),
        mouth=mouth,
        blush=blush,
        collar=COLLARS[rng.integers(len(COLLARS))],
        heterochromia=heterochromia,
        eye_dx=float(rng.uniform(0.095, 0.115)),
        eye_y=float(rng.uniform(0.46, 0.49)),
        eye_w=float(rng.uniform(0.05, 0.062)),
        eye_h=float(rng.uniform(0.058, 0.072)),
        gaze=(float(rng.uniform(-0.012, 0.012)), float(rng.uniform(0.0, 0.01))),
        chin_y=float(rng.uniform(0.68, 0.72)),
        jaw_w=float(rng.uniform(0.20, 0.235)),
        pose=(float(rng.uniform(-0.04, 0.04)), float(rng.uniform(-0.03, 0.03)),
              float(rng.uniform(0.92, 1.06)), float(rng.uniform(-8, 8))),
        colors=colors,
        ink=_mix((38, 24, 30), hair, 0.15),
    )


class _Canvas:
    """Canonical-frame drawing helpers on an (S, S) uint8 image; coordinates in [0, 1]."""

    SHIFT = 4  # sub-pixel precision bits for OpenCV's drawing functions

    def __init__(self, S: int):
        self.S = S
        self.k = float(1 << self.SHIFT) * S

    def pts(self, points) -> np.ndarray:
        return np.round(np.asarray(points, np.float64) * self.k).astype(np.int32).reshape(-1, 1, 2)

    def poly(self, img, points, value):
        cv2.fillPoly(img, [self.pts(points)], value, lineType=cv2.LINE_8, shift=self.SHIFT)

    def ellipse(self, img, center, axes, value, angle=0.0, start=0, end=360, thickness=-1):
        c = tuple(int(round(v * self.k)) for v in center)
        a = tuple(max(1, int(round(v * self.k))) for v in axes)
        t = thickness if thickness < 0 else max(1, int(round(thickness * self.S)))
        cv2.ellipse(img, c, a, angle, start, end, value, t, cv2.LINE_8, self.SHIFT)

    def line(self, img, points, value, width):
        t = max(1, int(round(width * self.S)))
        cv2.polylines(img, [self.pts(points)], False, value, t, cv2.LINE_AA, self.SHIFT)


def _arc(center, axes, start_deg, end_deg, n=24) -> np.ndarray:
    t = np.deg2rad(np.linspace(start_deg, end_deg, n))
    return np.stack([center[0] + axes[0] * np.cos(t), center[1] + axes[1] * np.sin(t)], 1)


def _paint_label(spec: FaceSpec, cv: _Canvas, S: int):
    """Region ids in the canonical frame, plus the shading and ink-stroke maps."""
    label = np.zeros((S, S), np.uint8)
    shade = np.ones((S, S), np.float32)
    ink = np.zeros((S, S), np.uint8)
    head_c, head_r = (0.5, 0.38), (0.285, 0.295)

    # Back hair first: everything else covers it.
    cv.ellipse(label, head_c, head_r, 1)
    style = spec.hair_style
    if style == "bob":
        cv.poly(label, [(0.215, 0.38), (0.2, 0.66), (0.32, 0.70), (0.68, 0.70), (0.8, 0.66), (0.785, 0.38)], 1)
    elif style == "long":
        cv.poly(label, [(0.215, 0.36), (0.15, 1.02), (0.85, 1.02), (0.785, 0.36)], 1)
    elif style == "twintails":
        for side in (-1, 1):
            cv.ellipse(label, (0.5 + side * 0.33, 0.62), (0.09, 0.30), 1, angle=side * 8)
    else:  # short: locks just past the ears
        cv.poly(label, [(0.215, 0.38), (0.225, 0.56), (0.775, 0.56), (0.785, 0.38)], 1)

    # Clothes, collar, neck, face.
    cv.poly(label, [(0.02, 1.05), (0.08, 0.88), (0.34, 0.79), (0.66, 0.79), (0.92, 0.88), (0.98, 1.05)], 13)
    cv.poly(label, [(0.435, 0.58), (0.435, 0.84), (0.5, 0.87), (0.565, 0.84), (0.565, 0.58)], 2)
    if spec.collar == "shirt":
        for side in (-1, 1):
            cv.poly(label, [(0.5 + side * 0.075, 0.78), (0.5 + side * 0.015, 0.87), (0.5 + side * 0.17, 0.86)], 14)
    elif spec.collar == "sailor":
        for side in (-1, 1):
            cv.poly(label, [(0.5 + side * 0.07, 0.785), (0.5, 0.95), (0.5 + side * 0.05, 1.02), (0.5 + side * 0.30, 0.86)], 14)
    face_top = _arc((0.5, 0.40), (spec.jaw_w + 0.01, 0.25), 180, 360)
    jaw = [(0.5 + spec.jaw_w, 0.50), (0.5 + 0.62 * spec.jaw_w, spec.chin_y - 0.07), (0.5, spec.chin_y),
           (0.5 - 0.62 * spec.jaw_w, spec.chin_y - 0.07), (0.5 - spec.jaw_w, 0.50)]
    face = np.concatenate([face_top, np.asarray(jaw)])
    cv.poly(label, face, 2)
    # Shadow the chin casts on the neck.
    neck_shadow = np.zeros((S, S), np.uint8)
    cv.poly(neck_shadow, face + [0.0, 0.035], 1)
    cv.poly(neck_shadow, face, 0)
    shade[(neck_shadow > 0) & (label == 2)] = 0.86

    if spec.blush:
        for side in (-1, 1):
            cv.ellipse(label, (0.5 + side * 0.145, spec.eye_y + 0.09), (0.042, 0.017), 12)

    # Eyes: sclera, iris (clipped to the sclera), pupil, highlight, lashes.
    for side, iris_id in ((-1, 4), (1, 5)):
        c = (0.5 + side * spec.eye_dx, spec.eye_y)
        eye = np.zeros((S, S), np.uint8)
        cv.ellipse(eye, c, (spec.eye_w, spec.eye_h), 1)
        cv.poly(eye, [(c[0] - spec.eye_w * 1.1, c[1] - spec.eye_h * 1.2), (c[0] + spec.eye_w * 1.1, c[1] - spec.eye_h * 1.2),
                      (c[0] + spec.eye_w * 1.1, c[1] - spec.eye_h * 0.72), (c[0] - spec.eye_w * 1.1, c[1] - spec.eye_h * 0.72)], 0)
        inside = eye > 0
        label[inside] = 3
        ic = (c[0] + spec.gaze[0], c[1] + spec.gaze[1])
        iw, ih = spec.eye_w * 0.78, spec.eye_h * 0.82
        tmp = np.zeros((S, S), np.uint8)
        cv.ellipse(tmp, ic, (iw, ih), 1)
        iris = (tmp > 0) & inside
        label[iris] = iris_id
        # Iris gradient: dark under the lid, light at the bottom; darker rim.
        ys = np.linspace(0, 1, S, dtype=np.float32)[:, None]
        grad = 0.62 + 0.55 * np.clip((ys - (ic[1] - ih)) / (2 * ih), 0, 1)
        shade[iris] = np.broadcast_to(grad, (S, S))[iris]
        tmp[:] = 0
        cv.ellipse(tmp, ic, (iw, ih), 1, thickness=0.006)
        shade[(tmp > 0) & iris] *= 0.7
        tmp[:] = 0
        cv.ellipse(tmp, (ic[0], ic[1] + ih * 0.1), (iw * 0.38, ih * 0.45), 1)
        label[(tmp > 0) & iris] = 6
        tmp[:] = 0
        cv.ellipse(tmp, (ic[0] - side * iw * 0.35, ic[1] - ih * 0.4), (iw * 0.26, iw * 0.26), 1)
        label[(tmp > 0) & iris] = 7
        # Upper lash: a thick stroke along the top of the eye; a thin lower lash.
        lash = _arc(c, (spec.eye_w * 1.12, spec.eye_h * 0.72), 195, 345, 16)
        cv.line(ink, lash, 255, 0.013)
        cv.line(ink, _arc(c, (spec.eye_w * 0.6, spec.eye_h * 1.0), 60, 120, 8), 255, 0.004)
        brow = _arc((c[0], spec.eye_y - 0.02), (spec.eye_w * 1.1, spec.eye_h * 1.35), 205, 335, 12)
        cv.line(label, brow, 8, 0.011)

    # Nose hint and mouth.
    ny = spec.eye_y + 0.075
    cv.line(ink, [(0.5, ny), (0.495, ny + 0.012)], 255, 0.004)
    my = spec.eye_y + 0.14
    if spec.mouth == "closed":
        cv.line(ink, [(0.47, my), (0.5, my + 0.003), (0.53, my)], 255, 0.005)
    elif spec.mouth == "smile":
        cv.line(ink, _arc((0.5, my - 0.012), (0.035, 0.018), 30, 150, 10), 255, 0.005)
    else:
        mouth = np.zeros((S, S), np.uint8)
        cv.ellipse(mouth, (0.5, my), (0.034, 0.03), 1, start=0, end=180)
        cv.poly(mouth, [(0.466, my), (0.534, my), (0.5, my - 0.004)], 1)
        m = mouth > 0
        label[m] = 9
        tmp = np.zeros((S, S), np.uint8)
        cv.ellipse(tmp, (0.5, my + 0.032), (0.024, 0.016), 1)
        label[(tmp > 0) & m] = 11
        if spec.mouth == "open_teeth":
            tmp[:] = 0
            cv.poly(tmp, [(0.45, my - 0.01), (0.55, my - 0.01), (0.55, my + 0.008), (0.45, my + 0.008)], 1)
            label[(tmp > 0) & m] = 10

    # Bangs over the forehead: the head's top arc, then a zigzag of strand tips.
    top = _arc((0.5, 0.39), (0.295, 0.305), 180, 360, 28)
    n = spec.n_bangs
    xs = np.linspace(0.78, 0.22, 2 * n + 1)
    tips = []
    for i, x in enumerate(xs):
        if i % 2:  # strand tip
            tips.append((x, spec.bangs_depth + 0.02 * np.sin(i * 1.7)))
        else:  # notch between strands
            tips.append((x, spec.bangs_depth - 0.07))
    if spec.parted:
        tips[n] = (0.5, 0.2)
    bangs = np.concatenate([[(0.205, 0.40)], top, [(0.795, 0.40), (0.785, 0.55), (0.755, 0.56)], tips,
                            [(0.245, 0.56), (0.215, 0.55)]])
    bangs_mask = np.zeros((S, S), np.uint8)
    cv.poly(bangs_mask, bangs, 1)
    # Shadow the bangs cast on the forehead.
    shadow = np.zeros((S, S), np.uint8)
    cv.poly(shadow, bangs + [0.0, 0.022], 1)
    shade[(shadow > 0) & (bangs_mask == 0) & (label == 2)] = 0.88
    label[bangs_mask > 0] = 1
    # Hair sheen ("angel ring") and a few strand lines.
    tmp = np.zeros((S, S), np.uint8)
    cv.ellipse(tmp, (0.5, 0.25), (0.2, 0.05), 1, start=190, end=350, thickness=0.02)
    shade[(tmp > 0) & (label == 1)] = 1.18
    for i in range(1, 2 * n, 2):
        x, y = tips[i]
        cv.line(ink, [(x, y - 0.01), (x + (0.5 - x) * 0.15, y - 0.09)], 255, 0.0035)
    return label, shade, ink


def render_face(spec: FaceSpec, size: int, supersample: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Render one face.

    Returns:
        rgb: uint8 (size, size, 3), inked anime face.
        label: uint8 (size, size), region ids from `REGIONS`, aligned with `rgb`.
    """
    if size < 16:
        raise ValueError(f"image size {size} is too small (need >= 16)")
    ss = supersample or (4 if size <= 128 else 2)
    S = size * ss
    cv = _Canvas(S)
    label, shade, ink = _paint_label(spec, cv, S)

    palette = np.zeros((256, 3), np.float32)
    for name, rgb in spec.colors.items():
        palette[REGION_IDS[name]] = rgb
    colour = palette[label] * shade[..., None]

    dx, dy, scale, deg = spec.pose
    M = cv2.getRotationMatrix2D((S / 2, S / 2), deg, scale)
    M[:, 2] += (dx * S, dy * S)
    warp = dict(dsize=(S, S), borderMode=cv2.BORDER_REPLICATE)
    label = cv2.warpAffine(label, M, flags=cv2.INTER_NEAREST, **warp)
    colour = cv2.warpAffine(colour, M, flags=cv2.INTER_LINEAR, **warp)
    ink = cv2.warpAffine(ink, M, flags=cv2.INTER_LINEAR, **warp)

    # Outlines: a band where the outline group changes within the kernel.
    line_px = float(np.clip(size / 100.0, 0.9, 3.0)) * ss
    k = max(2, int(round(line_px)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    group = _OUTLINE_GROUP[label]
    edges = cv2.dilate(group, kernel) != cv2.erode(group, kernel)
    alpha = np.maximum(ink.astype(np.float32) / 255.0, edges.astype(np.float32))[..., None]
    colour = colour * (1 - alpha) + np.asarray(spec.ink, np.float32) * alpha

    rgb = cv2.resize(colour, (size, size), interpolation=cv2.INTER_AREA)
    rgb = np.clip(np.round(rgb), 0, 255).astype(np.uint8)
    label = label[ss // 2 :: ss, ss // 2 :: ss].copy()
    return rgb, label


def face_seed(seed: int, index: int) -> int:
    """Per-image seed: image `index` is the same whatever the total count."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def generate_face(seed: int, index: int, size: int, heterochromia_p: float, achromatic_eyes_p: float = 0.0):
    """Sample and render face `index` of the stream defined by `seed`."""
    s = face_seed(seed, index)
    spec = sample_face(np.random.default_rng(s), heterochromia_p, seed=s, achromatic_eyes_p=achromatic_eyes_p)
    rgb, label = render_face(spec, size)
    return spec, rgb, label
