"""Typed parameter schemas, one per `params.yaml` section.

Pure validation: the stages read YAML and hand each section's dict to `validate_section`,
which returns a typed object or raises `ParamsError` with one line naming the bad key.
Unknown keys, wrong types (strict: "64" is not an int) and out-of-range values are errors.
"""

from __future__ import annotations

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


class CrawlParams(_Section):
    source: Literal["synthetic"] = "synthetic"
    n_images: int = Field(2000, ge=1, le=10_000_000)
    heterochromia_p: float = Field(0.1, ge=0.0, le=1.0)
    sheet_size: int = Field(64, ge=1, le=1024)  # faces on the contact sheet


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


SECTIONS: dict[str, type[_Section]] = {
    "base": BaseParams,
    "crawl": CrawlParams,
    "clean": CleanParams,
    "pairs": PairsParams,
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
