"""animeface detection on small face crops, as the benchmark does it (kept free of torch: the
evaluation worker imports it)."""

from __future__ import annotations

import numpy as np

# The benchmark's framing of tight face crops (`features.animeface_attributes`): a white margin of
# half the crop's side, then upscaled to 384 px.
PAD_FRACTION, SIDE = 0.5, 384


def detect_framed(rgb: np.ndarray, pad_fraction: float = PAD_FRACTION, side: int = SIDE):
    """animeface's most likely face on `rgb` framed in white (`pad_fraction` of its side) and
    upscaled to `side` px (small crops need both to be found); (face, scale, pad) with which a
    position p of the face maps back to p / scale - pad on `rgb`, or (None, scale, pad)."""
    import animeface
    import cv2
    from PIL import Image

    pad = int(round(pad_fraction * max(rgb.shape[:2])))
    framed = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(255, 255, 255))
    scale = side / max(framed.shape[:2])
    faces = animeface.detect(Image.fromarray(cv2.resize(framed, (side, side), interpolation=cv2.INTER_CUBIC)))
    return (max(faces, key=lambda f: f.likelihood) if faces else None), scale, pad
