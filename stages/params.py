"""The `params.yaml` sections: each composed of the library's own config types, nothing renamed.

A section is either a library config extended by the stage's report settings (`crawl`,
`clean`, `evaluate`) or a mapping of library configs under their own names (`pairs`,
`pretrain`, `finetune`). Every knob's type, range, default and description is declared once,
in the library module that uses it; `params_yaml` and `params_markdown` render them as
params.yaml and docs/params.md (`scripts/figures/params_table.py`). Key names from before this
layout give a one-line error naming the new key.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from pipeline.config import Config, render_params_markdown, render_params_yaml, validate
from pipeline.data.clean import CleanConfig
from pipeline.data.crawl import CrawlConfig
from pipeline.data.dataset import CaptionConfig, PairAugmentConfig, RecolourConfig
from pipeline.data.tps import TPSConfig, TrainWarpConfig
from pipeline.data.xdog import LineAugmentConfig, XDoGConfig
from pipeline.errors import ParamsError
from pipeline.evaluation.evaluate import EvalConfig
from pipeline.model.conditioning import ConditionDropout
from pipeline.model.diffusion import DiffusionConfig
from pipeline.model.unet import SIZE_LATER, PromptAdapterConfig, UNetConfig
from pipeline.training.adapter import AdapterConfig
from pipeline.training.correspondence import CorrespondenceConfig
from pipeline.training.finetune import FinetuneLoopConfig, ReconstructionConfig
from pipeline.training.loop import LoopConfig
from pipeline.training.samples import SampleGridConfig

_LOOP_KEYS = ("epochs", "batch_size", "lr", "optimizer", "weight_decay", "warmup_steps", "lr_schedule", "grad_clip",
              "ema_decay", "ema_warmup", "precision", "channels_last", "compile", "checkpoint_every", "log_every",
              "num_workers")
_SAMPLE_KEYS = {"sample_every": "samples.every", "sample_steps": "samples.sample_steps",
                "sample_guidance": "samples.guidance", "sample_size": "samples.count"}


def _moved(section: str, keys, to: str) -> dict[str, str]:
    return {k: f"{section}.{to}.{k}" for k in keys}


class BaseParams(Config):
    """Shared by every stage."""

    seed: int = Field(0, ge=0, le=2**32 - 1, description="everything random derives from this")
    image_size: int = Field(64, ge=16, le=2048, description="square side in pixels; the paper uses 256")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto | cpu | cuda")


class CrawlParams(CrawlConfig):
    sheet_size: int = Field(64, ge=1, le=1024, description="faces on reports/crawl_samples.png")


class CleanParams(CleanConfig):
    pass


class PairsParams(Config):
    xdog: XDoGConfig = Field(default_factory=XDoGConfig, description="XDoG line extraction")
    tps: TPSConfig = Field(default_factory=TPSConfig, description="reference distortion")
    sheet_size: int = Field(8, ge=1, le=64, description="test images on reports/pairs_samples.png")

    renamed = {**_moved("pairs", ("sigma", "k", "p", "eps", "phi"), "xdog"),
               **{f"tps_{k}": f"pairs.tps.{k}" for k in ("scheme", "strength", "grid")},
               **_moved("pairs", ("flip_p", "rotate_deg", "scale_min", "scale_max"), "tps")}


class PretrainParams(Config):
    unet: UNetConfig = Field(default_factory=UNetConfig, description="the network")
    diffusion: DiffusionConfig = Field(default_factory=DiffusionConfig, description="schedule and prediction")
    condition_dropout: ConditionDropout = Field(default_factory=ConditionDropout,
                                                description="classifier-free guidance training")
    lines: LineAugmentConfig = Field(default_factory=LineAugmentConfig, description="line-style augmentation")
    reference_warp: TrainWarpConfig = Field(default_factory=TrainWarpConfig,
                                            description="more reference distortion in training only")
    augment: PairAugmentConfig = Field(default_factory=PairAugmentConfig,
                                       description="whole-pair augmentation (target, lines, labels alike)")
    correspondence: CorrespondenceConfig = Field(default_factory=CorrespondenceConfig,
                                                 description="reference attention supervised by the label maps")
    captions: CaptionConfig = Field(default_factory=CaptionConfig, description="training prompts (unet.text)")
    recolour: RecolourConfig = Field(default_factory=RecolourConfig, description="region colour augmentation")
    loop: LoopConfig = Field(default_factory=LoopConfig, description="optimisation loop")
    samples: SampleGridConfig = Field(default_factory=SampleGridConfig, description="samples grid")

    renamed = {**_moved("pretrain", ("channels", "channel_mults", "res_blocks", "attention_resolutions", "heads",
                                     "dropout", "norm_groups"), "unet"),
               **_moved("pretrain", ("timesteps", "schedule", "beta_start", "beta_end", "prediction"), "diffusion"),
               **_moved("pretrain", ("p_uncond", "p_sketch"), "condition_dropout"),
               **{f"line_{k}": f"pretrain.lines.{k}" for k in ("thicken_p", "thin_p", "noise_std", "blur_p")},
               "steps": "pretrain.loop.train_steps", **_moved("pretrain", _LOOP_KEYS, "loop"),
               **{k: f"pretrain.{v}" for k, v in _SAMPLE_KEYS.items()}}

    # UNetConfig fields that are not `pretrain.unet` params: where each comes from instead
    NOT_PARAMS: ClassVar[dict[str, str]] = {
        "image_size": "it follows base.image_size", "in_channels": "it follows the model's inputs",
        "out_channels": "it follows the model's outputs", "vocabulary": "it follows data/prompt.py's colour words",
        **{key: f"the text stage sets it: use text.{key}" for key in PromptAdapterConfig.model_fields}}

    @model_validator(mode="before")
    @classmethod
    def _not_params(cls, data):
        unet = data.get("unet") if isinstance(data, dict) else None
        for key, where in cls.NOT_PARAMS.items():
            if isinstance(unet, dict) and key in unet:
                raise ValueError(f"unet.{key} is not a parameter ({where})")
        return data

    @model_validator(mode="after")
    def _correspondence_needs_attention(self):
        if self.correspondence.weight and not self.unet.reference_attention:
            raise ValueError("correspondence.weight supervises the reference attention: set unet.reference_attention")
        if self.augment.flip_p and self.unet.text:
            raise ValueError("augment.flip_p mirrors the eyes that captions name left and right: "
                             "it needs unet.text false")
        if self.recolour.p and self.unet.text:
            raise ValueError("recolour.p changes colours that the captions name: it needs unet.text false")
        return self

    def unet_config(self, image_size: int) -> UNetConfig:
        """The network for `base.image_size` px images."""
        return validate(UNetConfig, {**self.unet.to_dict(), "image_size": image_size}, "pretrain.unet (with base)")


class FinetuneParams(Config):
    subset: int | None = Field(128, ge=1, description="training images fine-tuned on; null: all")
    loop: FinetuneLoopConfig = Field(default_factory=FinetuneLoopConfig, description="optimisation loop")
    reconstruction: ReconstructionConfig = Field(default_factory=ReconstructionConfig,
                                                 description="the unrolled sampler and its loss")
    reference_warp: TrainWarpConfig = Field(default_factory=TrainWarpConfig,
                                            description="more reference distortion in fine-tuning only")
    samples: SampleGridConfig = Field(default_factory=SampleGridConfig, description="samples grid")

    renamed = {"steps": "finetune.loop.train_steps", **_moved("finetune", _LOOP_KEYS, "loop"),
               **{k: f"finetune.{v}" for k, v in _SAMPLE_KEYS.items()},
               "unroll_steps": "finetune.reconstruction.unroll_steps",
               "grad_checkpoint": "finetune.reconstruction.grad_checkpoint",
               **_moved("finetune", ("start", "t_start", "guidance", "eta", "mse_weight", "l1_weight",
                                     "ms_ssim_weight", "lpips_weight", "eps_weight", "p_uncond"), "reconstruction")}


class TextParams(AdapterConfig):
    pass


class EvaluateParams(EvalConfig):
    sheet_size: int = Field(8, ge=1, le=64, description="test images per grid")

    renamed = {"steps": "evaluate.sample_steps"}


# Where the shipped params.yaml deliberately differs from the library's default, and why (one line;
# the measurements are in docs/). The library keeps the paper's network as its default, so an old
# checkpoint loads as the network it is; the CPU profile turns on what measured better at equal CPU
# time. tests/test_params.py holds params.yaml to the schema except for these.
SHIPPED: dict[str, tuple[object, str]] = {
    "pretrain.unet.reference_attention": ([32, 16], "better colours than 16 px alone at equal CPU time"),
    "pretrain.loop.train_steps": (480, "the whole DAG within 20 minutes on the slowest 2-core CPU seen"),
    "pretrain.loop.batch_size": (4, "more, smaller updates: better at equal CPU time"),
    "pretrain.correspondence.weight": (0.02, "truer irises and heterochromia; off where there are no label maps"),
    "pretrain.diffusion.eye_weight": (10, "the irises learnt from a tenth of the full study's images; off where there are no label maps"),
    "finetune.subset": (32, "8 fine-tuning steps: the 20-minute budget"),
    "text.loop.train_steps": (20, "the 20-minute budget; recipes/full.yaml trains 300"),
    "evaluate.limit": (32, "the 20-minute budget; recipes/full.yaml scores all 193 test pairs"),
    "evaluate.text_limit": (6, "the 20-minute budget; recipes/full.yaml takes 32"),
    "evaluate.full_size.faces": (6, "the 20-minute budget; recipes/full.yaml takes 16"),
    "text.prompt_decoder": (True, "paints the eye words the frozen network never learnt; the empty prompt is exact"),
    "text.prompt_decoder_levels": (1, "as good as the whole decoder's copy at a tenth of its parameters"),
    "text.captions.p_repaint": (0.6, "the copy learns the eye words the data never shows (black, grey, white)"),
    "text.captions.altered_weight": (40, "a repainted iris (~25 px of 4,096) counts in the loss"),
    "finetune.reconstruction.colour_weight": (0.3, "truer irises for a little PSNR; off where there are no label maps"),
}

# A section is validated before it meets base.image_size: the U-Net's size checks run in `unet_config`.
SECTION_CONTEXT = {SIZE_LATER: True}

SECTIONS: dict[str, type[Config]] = {
    "base": BaseParams,
    "crawl": CrawlParams,
    "clean": CleanParams,
    "pairs": PairsParams,
    "pretrain": PretrainParams,
    "finetune": FinetuneParams,
    "text": TextParams,
    "evaluate": EvaluateParams,
}


def validate_section(section: str, data) -> Config:
    """One `params.yaml` section as its typed params object, or a one-line `ParamsError` naming the key."""
    if section not in SECTIONS:
        raise ParamsError(f"{section}: unknown params section (known: {', '.join(SECTIONS)})")
    return validate(SECTIONS[section], data, section, context=SECTION_CONTEXT)


def check_across(sections: dict[str, Config]) -> None:
    """The checks that need two validated sections (those present): the training warp over the
    benchmark's (`pretrain.reference_warp` and `finetune.reference_warp` over `pairs.tps`). A
    one-line `ParamsError`."""
    for section in ("pretrain", "finetune"):
        if "pairs" in sections and section in sections:
            sections[section].reference_warp.over(sections["pairs"].tps, section)


HEADER = """\
# animecolor parameters: each stage reads its own section (dvc.yaml); a bad key or value stops it
# with a one-line error. Generated from the library's configs: every key and comment is declared
# once there (docs/params.md; python scripts/figures/params_table.py --yaml prints this file).
# Defaults: the whole DAG within 20 minutes on 2 CPU cores; the full study is recipes/full.yaml."""

INTRO = """\
# Parameters

Every key of `params.yaml`, its shipped value and what it does, one table per section.
Generated from the config classes by `python scripts/figures/params_table.py` (tests/test_params.py
fails when this page or params.yaml is stale); each stage reads the sections dvc.yaml lists."""

NOT_PARAMS = frozenset(f"pretrain.unet.{key}" for key in PretrainParams.NOT_PARAMS)


def params_yaml() -> str:
    """The shipped params.yaml: every key, its default (or SHIPPED value) and its description."""
    return render_params_yaml(SECTIONS, HEADER, SHIPPED, NOT_PARAMS)


def params_markdown() -> str:
    """docs/params.md: one table per section."""
    return render_params_markdown(SECTIONS, INTRO, SHIPPED, NOT_PARAMS)
