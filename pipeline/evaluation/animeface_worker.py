"""Child process of `features.animeface_attributes`: hair and eye colours of images[start:].

    python -m pipeline.evaluation.animeface_worker IMAGES.npy START PAD_FRACTION SIDE

IMAGES.npy: uint8 (B, H, W, 3). Prints one JSON line per image, in order: the 9 RGB values in
[0, 1] of (hair, left eye, right eye), or nulls where no face is found. Kept free of torch so it
starts fast.
"""

from __future__ import annotations

import json
import sys

import numpy as np

from pipeline.data.detect import detect_framed


def colours(rgb: np.ndarray, pad_fraction: float, side: int) -> list[float | None]:
    face, _, _ = detect_framed(rgb, pad_fraction, side)
    if face is None:
        return [None] * 9
    found = (face.hair.color, face.left_eye.color, face.right_eye.color)
    return [v / 255.0 for c in found for v in ((c.r, c.g, c.b) if hasattr(c, "r") else c)]


def main(argv: list[str]) -> None:
    path, start, pad_fraction, side = argv[0], int(argv[1]), float(argv[2]), int(argv[3])
    images = np.load(path, mmap_mode="r")
    for rgb in images[start:]:
        print(json.dumps(colours(np.ascontiguousarray(rgb), pad_fraction, side)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
