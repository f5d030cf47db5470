"""Feature networks for set metrics: VGG16 features (offline, `model.perceptual.VGGLPIPS`) and the
standard Inception (clean-fid's TorchScript file) when it is present. Nothing is downloaded.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

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


def animeface_attributes(images: torch.Tensor, pad_fraction: float = 0.5, side: int = 384,
                         timeout: float = 30.0) -> np.ndarray:
    """Hair and eye colours found by `animeface` on each image: (B, 3, 3) RGB in [0, 1], NaN where
    no face is found. Images (B, 3, H, W) in [0, 1]. Tight face crops get a white margin
    (`pad_fraction` of their side) and are upscaled to `side` px first: on 64 px crops from
    ../shared/data this finds a face in 24 of 30 images, against 2 of 30 without.

    The detector (a C++ library) runs in a child process: an image it takes more than `timeout`
    seconds on (a stall once held up a whole benchmark for half an hour) counts as "no face"
    with a warning, and the child is restarted for the rest."""
    import multiprocessing as mp

    arr = (images.permute(0, 2, 3, 1).clamp(0, 1) * 255).round().byte().cpu().numpy()
    out = np.full((arr.shape[0], 3, 3), np.nan)
    ctx, start, skipped = mp.get_context("spawn"), 0, []
    while start < len(arr):
        receive, send = ctx.Pipe(duplex=False)
        child = ctx.Process(target=_animeface_worker, args=(arr[start:], pad_fraction, side, send), daemon=True)
        child.start()
        send.close()
        try:
            for i in range(start, len(arr)):
                if not receive.poll(timeout + (60.0 if i == start else 0.0)):  # the first one also waits for imports
                    skipped.append(i)
                    break
                out[i] = receive.recv()
            else:
                i = len(arr)
        except EOFError:  # the child died (not a stall): count the image as not detected
            skipped.append(i)
        finally:
            child.kill()
            child.join()
            receive.close()
        start = i + 1
    if skipped:
        warnings.warn(f"animeface: no answer within {timeout:g} s (or a crash) on images {skipped}; "
                      f"counted as no face found", stacklevel=2)
    return out


def _animeface_worker(arr: np.ndarray, pad_fraction: float, side: int, send) -> None:
    """Child process of `animeface_attributes`: one (3, 3) array (or NaNs) per image, in order."""
    import animeface
    import cv2
    from PIL import Image

    for rgb in arr:
        pad = int(round(pad_fraction * max(rgb.shape[:2])))
        framed = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(255, 255, 255))
        faces = animeface.detect(Image.fromarray(cv2.resize(framed, (side, side), interpolation=cv2.INTER_CUBIC)))
        colours = np.full((3, 3), np.nan)
        if faces:
            face = max(faces, key=lambda f: f.likelihood)
            found = (face.hair.color, face.left_eye.color, face.right_eye.color)
            colours = np.asarray([[c.r, c.g, c.b] if hasattr(c, "r") else list(c) for c in found]) / 255.0
        send.send(colours)
    send.close()
