"""Typed parameter schemas, one per `params.yaml` section.

Pure validation: the stages read YAML and hand each section's dict to `validate_section`,
which returns a typed object or raises `ParamsError` with one line naming the bad key.
Unknown keys, wrong types (strict: "64" is not an int) and out-of-range values are errors.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipeline.errors import ParamsError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class BaseParams(_Section):
    """Shared by every stage."""

    seed: int = Field(0, ge=0, le=2**32 - 1)
    image_size: int = Field(64, ge=16, le=2048)
    device: Literal["auto", "cpu", "cuda"] = "auto"


class DownloadParams(_Section):
    """The downloader of the `urls` and `booru` sources (pipeline/data/download.py)."""

    workers: int = Field(4, ge=1, le=64)
    rate_limit: float = Field(2.0, ge=0.0)        # requests per second per host; 0: unlimited
    timeout: float = Field(20.0, gt=0.0)          # connect / between-bytes timeout, seconds
    deadline: float = Field(120.0, gt=0.0)        # whole-response limit, seconds
    retries: int = Field(3, ge=0, le=20)
    backoff: float = Field(1.0, ge=0.0)           # first retry wait, doubled per retry (with jitter)
    max_backoff: float = Field(60.0, ge=0.0)      # cap on one wait, Retry-After included
    max_bytes: int = Field(20_000_000, ge=1024)
    max_pixels: int = Field(64_000_000, ge=1)
    max_redirects: int = Field(5, ge=0, le=30)
    user_agent: str = Field("", max_length=300)   # "": animecolor's own, naming the project
    respect_robots: bool = True

    def download_config(self):
        from pipeline.data.download import USER_AGENT, DownloadConfig

        values = self.model_dump()
        values["user_agent"] = self.user_agent or USER_AGENT
        return DownloadConfig(**values)


class CrawlParams(_Section):
    source: Literal["synthetic", "folder", "urls", "booru"] = "synthetic"
    folder: str | None = None  # source folder: your own images (searched recursively)
    urls: str | None = None    # source urls: a .txt (one URL per line) or .csv (a `url` column)
    booru_url: str | None = None  # source booru: a Danbooru-compatible site, e.g. https://danbooru.donmai.us
    tags: str = ""             # booru tag query, e.g. "1girl solo portrait"
    pages: int = Field(10, ge=1, le=100_000)
    page_limit: int = Field(100, ge=1, le=1000)   # posts per API page
    n_images: int = Field(2000, ge=1, le=10_000_000)  # synthetic: faces to generate; others: cap
    heterochromia_p: float = Field(0.1, ge=0.0, le=1.0)
    sheet_size: int = Field(64, ge=1, le=1024)  # faces on the contact sheet
    download: DownloadParams = Field(default_factory=DownloadParams)

    @model_validator(mode="after")
    def _source_keys(self):
        need = {"folder": ("folder", "a path to your images"), "urls": ("urls", "a .txt or .csv file of image URLs"),
                "booru": ("booru_url", "the site's base URL")}
        if self.source in need:
            key, what = need[self.source]
            if not getattr(self, key):
                raise ValueError(f"source {self.source} needs crawl.{key} ({what})")
        if self.source == "booru" and not self.booru_url.startswith(("http://", "https://")):
            raise ValueError(f"crawl.booru_url must start with http:// or https:// (got {self.booru_url!r})")
        return self


class CleanParams(_Section):
    face_detect: Literal["none", "animeface"] = "none"  # none: images are already aligned faces
    min_likelihood: float = Field(0.5, ge=0.0, le=1.0)
    margin: float = Field(0.5, ge=0.0, le=3.0)
    keep: Literal["largest", "all"] = "largest"
    min_size: int = Field(32, ge=8)
    min_colour_fraction: float = Field(0.05, ge=0.0, le=1.0)
    phash_threshold: int = Field(4, ge=0, le=64)
    thumb_tolerance: float = Field(12.0, ge=0.0, le=255.0)
    test_fraction: float = Field(0.1, gt=0.0, lt=1.0)


class PairsParams(_Section):
    sigma: list[float] = Field(default_factory=lambda: [0.3, 0.4, 0.5], min_length=1)  # official XDoG sigmas
    k: float = Field(3.5, gt=1.0)
    p: float = Field(10.0, ge=0.0)
    eps: float = 0.01
    phi: float = Field(1e9, gt=0.0)
    tps_scheme: Literal["diagonal", "random", "none"] = "diagonal"
    tps_strength: float = Field(0.25, ge=0.0, le=0.5)
    tps_grid: int = Field(4, ge=2, le=10)
    flip_p: float = Field(0.0, ge=0.0, le=1.0)
    rotate_deg: float = Field(0.0, ge=0.0, le=45.0)
    scale_min: float = Field(1.0, gt=0.0, le=2.0)
    scale_max: float = Field(1.0, gt=0.0, le=2.0)
    sheet_size: int = Field(8, ge=1, le=64)

    @model_validator(mode="after")
    def _scale_range(self):
        if self.scale_min > self.scale_max:
            raise ValueError(f"scale_min must be <= scale_max ({self.scale_min} > {self.scale_max})")
        return self

    def tps_config(self):
        from pipeline.data.tps import TPSConfig

        return TPSConfig(self.tps_scheme, self.tps_strength, self.tps_grid, self.flip_p, self.rotate_deg,
                         (self.scale_min, self.scale_max))


class _LoopParams(_Section):
    """Training-loop settings shared by `pretrain` and `finetune` (see pipeline/training/loop.py)."""

    steps: int = Field(700, ge=1)
    epochs: float | None = Field(None, gt=0)  # when set, overrides steps: ceil(epochs * images / batch)
    batch_size: int = Field(16, ge=1)
    lr: float = Field(2e-4, gt=0, le=1.0)
    optimizer: Literal["adam", "adamw"] = "adamw"
    weight_decay: float = Field(0.0, ge=0)
    warmup_steps: int = Field(50, ge=0)
    lr_schedule: Literal["constant", "cosine"] = "constant"
    grad_clip: float = Field(1.0, ge=0)
    ema_decay: float = Field(0.999, ge=0, lt=1)
    ema_warmup: bool = True
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    channels_last: bool = False
    compile: bool = False
    checkpoint_every: int = Field(100, ge=1)
    log_every: int = Field(10, ge=1)
    sample_every: int = Field(0, ge=0)
    num_workers: int = Field(1, ge=0, le=64)
    sample_steps: int = Field(20, ge=1, le=1000)  # DDIM steps for the samples grid
    sample_guidance: float = Field(1.0, ge=0)
    sample_size: int = Field(8, ge=1, le=64)      # test images on the samples grid

    def loop_config(self, seed: int, n_images: int):
        from pipeline.training.loop import LoopConfig

        steps = math.ceil(self.epochs * n_images / self.batch_size) if self.epochs is not None else self.steps
        keys = set(LoopConfig.__dataclass_fields__) - {"steps", "seed"}
        return LoopConfig(steps=steps, seed=seed, **{k: getattr(self, k) for k in keys})


class PretrainParams(_LoopParams):
    # network (pipeline/model/unet.py); the `paper` recipe is 64, [1, 2, 4, 8], 2, [], 4, 32
    channels: int = Field(32, ge=4)
    channel_mults: list[int] = Field(default_factory=lambda: [1, 2, 2], min_length=1, max_length=6)
    res_blocks: int = Field(1, ge=1, le=4)
    attention_resolutions: list[int] = Field(default_factory=list)
    heads: int = Field(4, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)
    norm_groups: int = Field(8, ge=1)
    # diffusion (pipeline/model/diffusion.py)
    timesteps: int = Field(1000, ge=10)
    schedule: Literal["linear", "cosine"] = "cosine"
    beta_start: float = Field(1e-4, gt=0, lt=1)
    beta_end: float = Field(0.02, gt=0, lt=1)
    prediction: Literal["eps", "v"] = "v"
    # classifier-free guidance: condition dropout
    p_uncond: float = Field(0.1, ge=0, le=1)   # drop the reference
    p_sketch: float = Field(0.0, ge=0, le=1)   # drop the sketch (independently)
    # line-style augmentation of the sketches (pipeline/data/xdog.py augment_lines)
    line_thicken_p: float = Field(0.0, ge=0, le=1)
    line_thin_p: float = Field(0.0, ge=0, le=1)
    line_noise_std: float = Field(0.0, ge=0, le=64)
    line_blur_p: float = Field(0.0, ge=0, le=1)

    @model_validator(mode="after")
    def _betas(self):
        if self.schedule == "linear" and self.beta_start >= self.beta_end:
            raise ValueError(f"beta_start must be < beta_end ({self.beta_start} >= {self.beta_end})")
        if self.line_thicken_p + self.line_thin_p > 1:
            raise ValueError("line_thicken_p + line_thin_p must be <= 1")
        return self

    def unet_config(self, image_size: int):
        from pipeline.model.unet import UNetConfig

        return UNetConfig(image_size=image_size, channels=self.channels, channel_mults=tuple(self.channel_mults),
                          res_blocks=self.res_blocks, attention_resolutions=tuple(self.attention_resolutions),
                          heads=self.heads, dropout=self.dropout, norm_groups=self.norm_groups)

    def diffusion_config(self):
        from pipeline.model.diffusion import DiffusionConfig

        return DiffusionConfig(self.timesteps, self.schedule, self.beta_start, self.beta_end, self.prediction)

    def line_augment(self) -> dict:
        return dict(thicken_p=self.line_thicken_p, thin_p=self.line_thin_p, noise_std=self.line_noise_std,
                    blur_p=self.line_blur_p)


class EvaluateParams(_Section):
    steps: int = Field(20, ge=1, le=1000)   # DDIM steps
    eta: float = Field(0.0, ge=0, le=1)
    guidance: float = Field(1.0, ge=0)      # classifier-free guidance scale (1 = plain conditional)
    seed: int = Field(0, ge=0)
    limit: int | None = Field(None, ge=1)   # test pairs per setting (null: all)
    batch_size: int = Field(32, ge=1)
    inception_path: str | None = None       # Inception TorchScript file; null: clean-fid's cache
    kid_subsets: int = Field(100, ge=1)
    iris_threshold: float = Field(15.0, gt=0)
    region_erode: int = Field(1, ge=0, le=8)
    animeface: Literal["auto", "on", "off"] = "auto"
    sheet_size: int = Field(8, ge=1, le=64)

    def eval_config(self):
        from pipeline.evaluation.evaluate import EvalConfig

        keys = set(EvalConfig.__dataclass_fields__) - {"precision"}
        return EvalConfig(**{k: getattr(self, k) for k in keys})


class FinetuneParams(_LoopParams):
    epochs: float | None = Field(1.0, ge=0)   # 0: models/finetune.pt = models/pretrain.pt (the ablation's control)
    subset: int | None = Field(256, ge=1)     # training images fine-tuned on (null: all); an epoch is this many
    batch_size: int = Field(4, ge=1)          # paper: 4
    lr: float = Field(2e-5, gt=0, le=1.0)
    warmup_steps: int = Field(0, ge=0)
    checkpoint_every: int = Field(20, ge=1)
    log_every: int = Field(5, ge=1)
    # the unrolled sampler (pipeline/training/finetune.py)
    unroll_steps: int = Field(10, ge=1, le=100)
    start: Literal["reference", "target", "noise"] = "reference"
    t_start: int = Field(999, ge=1)
    guidance: float = Field(1.0, ge=0)
    eta: float = Field(0.0, ge=0, le=1)
    grad_checkpoint: bool = True
    mse_weight: float = Field(1.0, ge=0)
    l1_weight: float = Field(0.0, ge=0)
    ms_ssim_weight: float = Field(0.0, ge=0)
    lpips_weight: float = Field(0.0, ge=0)
    eps_weight: float = Field(0.0, ge=0)
    p_uncond: float = Field(0.1, ge=0, le=1)

    @model_validator(mode="after")
    def _some_loss(self):
        if not any([self.mse_weight, self.l1_weight, self.ms_ssim_weight, self.lpips_weight, self.eps_weight]):
            raise ValueError("at least one loss weight must be > 0")
        return self

    def reconstruction_config(self):
        from pipeline.training.finetune import ReconstructionConfig

        return ReconstructionConfig(
            steps=self.unroll_steps, start=self.start, t_start=self.t_start, guidance=self.guidance, eta=self.eta,
            checkpoint=self.grad_checkpoint, mse_weight=self.mse_weight, l1_weight=self.l1_weight,
            ms_ssim_weight=self.ms_ssim_weight, lpips_weight=self.lpips_weight, eps_weight=self.eps_weight,
            p_uncond=self.p_uncond)


SECTIONS: dict[str, type[_Section]] = {
    "base": BaseParams,
    "crawl": CrawlParams,
    "clean": CleanParams,
    "pairs": PairsParams,
    "pretrain": PretrainParams,
    "finetune": FinetuneParams,
    "evaluate": EvaluateParams,
}


def _describe(error: dict, section: str) -> str:
    key = ".".join([section, *(str(p) for p in error["loc"])] or [section])
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"{key}: unknown key (allowed: {', '.join(SECTIONS[section].model_fields)})"
    if not error["loc"]:  # a check across keys (model validator)
        return f"{section}: {error['msg'].removeprefix('Value error, ')}"
    if kind == "missing":
        return f"{key}: required key is missing"
    return f"{key}: {error['msg']} (got {error['input']!r})"


def validate_section(section: str, data: Any):
    """Validate one `params.yaml` section; returns its typed params object."""
    if section not in SECTIONS:
        raise ParamsError(f"{section}: unknown params section (known: {', '.join(SECTIONS)})")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ParamsError(f"{section}: must be a mapping of keys to values (got {type(data).__name__})")
    try:
        return SECTIONS[section].model_validate(data)
    except ValidationError as exc:
        raise ParamsError(_describe(exc.errors()[0], section)) from None
