"""Feature networks for set metrics: VGG16 features (offline, `model.perceptual.VGGLPIPS`) and the
standard Inception (clean-fid's TorchScript file) when it is present. Nothing is downloaded.
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from pipeline.data.detect import PAD_FRACTION, SIDE
from pipeline.model.perceptual import VGGLPIPS

INCEPTION_FILE = "inception-2015-12-05.pt"  # clean-fid's TorchScript Inception file name


def vgg_feature_extractor(net: VGGLPIPS, device: torch.device):
    """clean-fid custom feature extractor: (B, 3, H, W) floats in [0, 255] -> numpy-able (B, 512)."""

    def fn(x: torch.Tensor) -> torch.Tensor:
        return net.embed(x.to(device) / 127.5 - 1.0)

    return fn


def inception_extractor(path: str | Path, device: torch.device):
    """clean-fid's Inception in "clean" mode if its TorchScript file is present, else (None, reason).

    `path` is the file (any name; the stage passes clean-fid's own cache file when params say
    null). Nothing is downloaded.
    """
    from cleanfid.inception_torchscript import InceptionV3W

    file = Path(path)
    if not file.is_file():
        return None, (f"Inception weights not found at {file} (this machine cannot download them; put "
                      f"clean-fid's {INCEPTION_FILE} there or set evaluate.inception_path)")
    folder = file.parent
    if file.name != INCEPTION_FILE:  # InceptionV3W wants its file name; link it into a private folder
        folder = Path(tempfile.mkdtemp(prefix="animecolor-inception-"))
        (folder / INCEPTION_FILE).symlink_to(file.resolve())
    try:
        model = InceptionV3W(str(folder), download=False, resize_inside=False).to(device).eval()
    except Exception as exc:  # a corrupt or foreign file: report, do not crash the benchmark
        return None, f"{file}: not a usable Inception TorchScript file ({type(exc).__name__})"
    return (lambda x: model(x.to(device))), None


ANIMEFACE_ATTRIBUTES = ("hair", "eye_left", "eye_right")


def animeface_attributes(images: torch.Tensor, pad_fraction: float = PAD_FRACTION, side: int = SIDE,
                         timeout: float = 30.0) -> np.ndarray:
    """Hair and eye colours found by `animeface` on each image: (B, 3, 3) RGB in [0, 1], NaN where
    no face is found. Images (B, 3, H, W) in [0, 1]. Tight face crops get a white margin
    (`pad_fraction` of their side) and are upscaled to `side` px first: on 64 px crops from
    ../shared/data this finds a face in 24 of 30 images, against 2 of 30 without.

    The detector (a C++ library) runs in a child process (`python -m pipeline.evaluation.animeface_worker`,
    so it works from any caller, notebooks and unguarded scripts included): an image it takes more
    than `timeout` seconds on (a stall once held up a whole benchmark for half an hour) counts as
    "no face" with a warning, and a new child goes on from the next image."""
    arr = (images.permute(0, 2, 3, 1).clamp(0, 1) * 255).round().byte().cpu().numpy()
    out = np.full((arr.shape[0], 3, 3), np.nan)
    skipped: list[int] = []
    with tempfile.TemporaryDirectory(prefix="animecolor-animeface-") as tmp:
        path = Path(tmp) / "images.npy"
        np.save(path, arr)
        start = 0
        while start < len(arr):
            child = subprocess.Popen([sys.executable, "-m", "pipeline.evaluation.animeface_worker", str(path),
                                      str(start), str(pad_fraction), str(side)],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            try:
                for line in _lines_within(child.stdout, timeout, first_extra=60.0):  # the first waits for imports
                    out[start] = np.asarray(json.loads(line), dtype=np.float64).reshape(3, 3)
                    start += 1
            finally:
                child.kill()
                child.wait()
                child.stdout.close()
            if start < len(arr):  # the child stalled or died on this image
                skipped.append(start)
                start += 1
    if skipped:
        warnings.warn(f"animeface: no answer within {timeout:g} s (or a crash) on images {skipped}; "
                      f"counted as no face found", stacklevel=2)
    return out


def _lines_within(stream, timeout: float, first_extra: float = 0.0):
    """Lines of a child's stdout; stops (StopIteration) when one takes longer than `timeout` s."""
    wait = timeout + first_extra
    while True:
        ready, _, _ = select.select([stream], [], [], wait)
        line = stream.readline() if ready else ""
        if not line:
            return
        yield line
        wait = timeout
