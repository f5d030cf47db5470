"""The benchmark: colourise the fixed test pairs with each model, score them next to baselines.

Candidates are the models given (EMA weights) plus two baselines that put every number in
context: `reference_copy` (the distorted reference itself; self_ref only) and `flat_fill` (the
sketch's lines over the reference's mean colour). Every candidate's outputs are written as PNGs
(clean-fid reads folders) and scored per image (PSNR, MS-SSIM, LPIPS, region colour errors)
and per set (FID when the Inception file is present, fd_vgg16 and kid_vgg16 always,
heterochromia success, seconds per image).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import Field
from torch import nn

from pipeline.config import Config, fingerprint
from pipeline.data.benchmark import SETTINGS, load_benchmark
from pipeline.data.dataset import to_uint8
from pipeline.data.imageio import write_png
from pipeline.data.labels import COLOUR_REGIONS
from pipeline.data.prompt import lab_of, parse_prompt
from pipeline.device import Precision, autocast, cpu_has_bf16, machine_description, probe_precision, resolve_precision
from pipeline.evaluation import metrics as M
from pipeline.evaluation.fullsize import FullSizeConfig
from pipeline.evaluation.features import (ANIMEFACE_ATTRIBUTES, animeface_attributes, inception_extractor,
                                          vgg_feature_extractor)
from pipeline.model.defaults import SAMPLING
from pipeline.model.conditioning import guided
from pipeline.model.diffusion import Diffusion
from pipeline.model.generate import colorize_batch
from pipeline.model.perceptual import VGGLPIPS

BASELINES = ("reference_copy", "flat_fill", "upscaled_truth")  # the last: the full-size benchmark's (fullsize.py)
HETEROCHROMIA_GRID = "_heterochromia"  # grids key suffix: the setting's heterochromatic references only


class EvalConfig(Config):
    """The benchmark run (params `evaluate`)."""

    sample_steps: int = Field(10, ge=1, le=1000, description="DDIM steps, trailing spacing "
                                                             "from t = 999 (official: 10)")
    eta: float = Field(0.0, ge=0, le=1, description="0: deterministic DDIM; 1: official (ancestral-like)")
    guidance: float = Field(1.0, ge=0, description="classifier-free guidance scale on "
                                                   "the reference (1: conditional only)")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="starting noise of test image i depends only on (seed, i)")
    limit: int | None = Field(None, ge=1, description="test pairs per setting (null: all)")
    batch_size: int = Field(32, ge=1, description="images per sampling / feature batch")
    precision: Precision = Field("auto", description="auto (native bf16: the faster by a timed probe; else fp32) | "
                                                     "fp32 | bf16")
    inception_path: str | None = Field(None, description="clean-fid's Inception file; null: "
                                                         "its cache (no FID when absent)")
    kid_subsets: int = Field(100, ge=1, description="KID subsets")
    iris_threshold: float = Field(15.0, gt=0, description="CIEDE2000 within which an output iris counts as the "
                                                          "reference's colour")
    region_erode: int = Field(1, ge=0, le=8, description="px removed from each region's edge before averaging its "
                                                         "colour")
    text_limit: int = Field(64, ge=1, description="text models: test faces per text-benchmark setting")
    text_guidance: float = Field(SAMPLING.text_guidance, ge=0, description="text models: guidance scale on "
                                                                  "the prompt (1: conditional only)")
    animeface: Literal["auto", "on", "off"] = Field("auto", description="hair/eye colours by animeface (auto: "
                                                                        "when there are no label maps)")
    full_size: FullSizeConfig = Field(default_factory=FullSizeConfig, description="test faces at full size, coloured "
                                                                                     "by colorize's path")


def flat_fill(sketch: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Baseline: the reference's mean colour everywhere, darkened by the sketch's lines; [-1, 1]."""
    mean = ((reference + 1) / 2).mean((2, 3), keepdim=True)
    return (mean * (sketch + 1) / 2) * 2 - 1


def reference_iris_gap(reference: torch.Tensor, labels: torch.Tensor, table: pd.DataFrame, erode: int) -> np.ndarray:
    """CIEDE2000 between each reference's two irises: the exact colours of its caption where it
    codes both (hex: the synthetic generator's own spec), else the measured region means.

    Measured means are a poor judge of "two different irises": the iris gradient, the pupil and
    the highlight fall differently in the two eyes, so on the synthetic benchmark a tenth of the
    references with one iris colour measured more than 12 apart, and 27 of the 48 self-reference
    pairs counted as heterochromatic had one colour."""
    lab = M.to_lab(((reference.float() + 1) / 2).cpu())
    measured = M.delta_e(*(M.region_means(lab, labels.numpy(), COLOUR_REGIONS[side], erode)
                           for side in ("iris_left", "iris_right")))
    captions = table["reference_caption"] if "reference_caption" in table else [""] * len(table)
    for i, caption in enumerate(captions):
        spec = parse_prompt(caption).slots if caption else {}
        left, right = spec.get("iris_left"), spec.get("iris_right")
        if left is not None and right is not None and left.name is None and right.name is None:
            measured[i] = float(M.delta_e(lab_of(left.rgb), lab_of(right.rgb)))
    return measured


def _write_folder(folder: Path, names: list[str], images: torch.Tensor) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, image in zip(names, images):
        write_png(folder / f"{name}.png", to_uint8(image))


def _features(folder: Path, extractor, batch_size: int, device: torch.device, inception: bool = False) -> np.ndarray:
    """clean-fid's features of a folder's PNGs: as stored for the VGG, or with clean-fid's own 299 px
    PIL-bicubic resize for its Inception."""
    from cleanfid.fid import get_folder_features

    resize = {} if inception else {"custom_fn_resize": lambda x: x.astype(np.float32)}
    return get_folder_features(str(folder), model=extractor, num_workers=0, batch_size=batch_size, device=device,
                               mode="clean", verbose=False, **resize)


@torch.no_grad()
def _lpips(net: VGGLPIPS, out: torch.Tensor, target_taps: list[torch.Tensor]) -> np.ndarray:
    return net.distance_to(out.float(), target_taps).cpu().numpy()


def sampling_precision(models: dict[str, tuple[nn.Module, Diffusion]], faces_dir: Path, pairs_dir: Path,
                       cfg: EvalConfig, device: torch.device, cache: Path | None) -> tuple[Literal["fp32", "bf16"], str]:
    """`evaluate.precision` made concrete, with why. A set value stays; auto is bf16 on CUDA, fp32 on
    a CPU without native bf16, and on a CPU with it the faster of the two by `probe_precision`:
    one guided denoising step of the last (shipped) model on the first benchmark batch, cached per
    machine like training's probe, so every later evaluation here samples in the same precision."""
    if cfg.precision != "auto":
        return cfg.precision, f"evaluate.precision {cfg.precision} (set)"
    if device.type == "cuda":
        return "bf16", "auto: bf16 on CUDA"
    if not cpu_has_bf16():
        return "fp32", "auto: this CPU has no native bf16"
    model, diffusion = list(models.values())[-1]
    _, data = load_benchmark(faces_dir, pairs_dir, SETTINGS[0], cfg.batch_size)
    sketch, reference = data["sketch"].to(device), data["reference"].to(device)
    x_t = torch.randn((sketch.shape[0], 3, *sketch.shape[-2:]), generator=torch.Generator().manual_seed(0)).to(device)
    t = torch.full((sketch.shape[0],), diffusion.T - 1, device=device, dtype=torch.long)
    fn = guided(model.eval().to(device), sketch, reference, cfg.guidance)

    def step(precision: str) -> None:
        with torch.no_grad(), autocast(device, precision):
            fn(x_t, t)

    shape = f"sampling | unet {fingerprint(model.config.to_dict())} | batch {tuple(sketch.shape)} | guidance {cfg.guidance}"
    return probe_precision(step, shape, cache)


def run_benchmark(models: dict[str, tuple[nn.Module, Diffusion]], faces_dir: Path, pairs_dir: Path, out_dir: Path,
                  cfg: EvalConfig, device: torch.device, inception_file: str | Path,
                  progress: Callable[[int], None] | None = None,
                  precision_reason: str = "") -> tuple[dict, pd.DataFrame, dict]:
    """Returns (metrics {candidate: {setting: {metric: value}}}, per-image table, outputs for grids).

    `inception_file`: clean-fid's Inception TorchScript (FID is skipped, with the reason in the
    metrics' notes, when it is absent). `precision_reason`: why `cfg.precision` is what it is
    (`sampling_precision`), for the notes."""
    lpips = VGGLPIPS().to(device)
    vgg_fx = vgg_feature_extractor(lpips, device)
    inception, fid_reason = inception_extractor(inception_file, device)
    metrics: dict = {"_notes": {"fid": fid_reason or "standard clean-fid Inception features",
                                "fd_vgg16": "Frechet distance on 512-d pooled VGG16 relu5_3 features "
                                            "(LPIPS trunk), images at native size; not comparable to FID",
                                "precision": f"sampling in {resolve_precision(device, cfg.precision)} "
                                             f"({precision_reason or f'evaluate.precision {cfg.precision}'})",
                                "machine": f"seconds_per_image on {machine_description(device)}"}}
    rows, grids = [], {}
    for setting in SETTINGS:
        table, data = load_benchmark(faces_dir, pairs_dir, setting, cfg.limit, with_labels=True)
        names = table.name.tolist()
        target = data["target"].to(device)
        real_dir = out_dir / "target" / setting
        _write_folder(real_dir, names, target)
        real_vgg = _features(real_dir, vgg_fx, cfg.batch_size, device)
        real_inc = _features(real_dir, inception, cfg.batch_size, device, inception=True) if inception else None
        with torch.no_grad():
            target_taps = lpips.taps(target.float())  # every candidate is scored against the same targets
        candidates: dict[str, tuple[torch.Tensor, float | None]] = {}
        sketch, reference = data["sketch"].to(device), data["reference"].to(device)
        for name, (model, diffusion) in models.items():
            model.eval().to(device)
            start = time.perf_counter()
            out = colorize_batch(model, diffusion, sketch, reference, sample_steps=cfg.sample_steps, guidance=cfg.guidance,
                                 eta=cfg.eta, seed=cfg.seed, batch_size=cfg.batch_size,
                                 autocast=autocast(device, cfg.precision), progress=progress)
            candidates[name] = (out, (time.perf_counter() - start) / len(names))
        if setting == "self_ref":
            candidates["reference_copy"] = (reference, None)
        candidates["flat_fill"] = (flat_fill(sketch, reference), None)
        grids[setting] = {"sketch": sketch.cpu(), "reference": reference.cpu(), "target": target.cpu(),
                          **{k: v[0].cpu() for k, v in candidates.items()}}
        has_labels = "target_label" in data
        if has_labels:  # the references with two different irises get a grid of their own
            iris_gap = reference_iris_gap(reference, data["reference_label"], table, cfg.region_erode)
            hetero = torch.from_numpy(np.flatnonzero(iris_gap > M.HETEROCHROMIA_GAP))
            if len(hetero):
                grids[f"{setting}{HETEROCHROMIA_GRID}"] = {k: v[hetero] for k, v in grids[setting].items()}
        use_animeface = cfg.animeface == "on" or (cfg.animeface == "auto" and not has_labels)
        if use_animeface:  # colours the output should have: the target's (self) or the reference's (random)
            on_target = animeface_attributes((target.float().cpu() + 1) / 2)
            expected = on_target if setting == "self_ref" else animeface_attributes((reference.float().cpu() + 1) / 2)
            target_detected = round(float((~np.isnan(on_target[:, 0, 0])).mean()), 4)
        for cand, (out, seconds) in candidates.items():
            out01, tgt01 = (out.float() + 1) / 2, (target.float() + 1) / 2
            per = {"psnr": M.psnr(out01, tgt01).cpu().numpy(), "ms_ssim": M.ms_ssim(out01, tgt01).cpu().numpy(),
                   "lpips": _lpips(lpips, out, target_taps)}
            summary = {k: M.summarise(v) for k, v in per.items()}
            if has_labels:
                ref01 = ((reference.float() + 1) / 2).cpu()
                errors = M.region_colour_errors(out01.cpu(), data["target_label"].numpy(), ref01,
                                                data["reference_label"].numpy(), COLOUR_REGIONS, cfg.region_erode)
                for region, err in errors.items():
                    per[f"de_{region}"] = err
                    summary[f"de_{region}"] = M.summarise(err)
                rate, n = M.heterochromia_success(errors["iris_left"], errors["iris_right"], iris_gap, cfg.iris_threshold)
                summary["heterochromia_success"] = None if np.isnan(rate) else round(rate, 4)
                summary["heterochromia_n"] = n
            if use_animeface:
                found = animeface_attributes((out.float().cpu() + 1) / 2)
                for name, err in M.attribute_errors(found, expected, ANIMEFACE_ATTRIBUTES).items():
                    per[f"af_de_{name}"] = err
                    summary[f"af_de_{name}"] = M.summarise(err)
                summary["af_detected"] = round(float((~np.isnan(found[:, 0, 0])).mean()), 4)
                summary["af_detected_target"] = target_detected  # the same detector on the true pictures
            folder = out_dir / cand / setting
            _write_folder(folder, names, out)
            feats = _features(folder, vgg_fx, cfg.batch_size, device)
            summary["fd_vgg16"] = round(M.frechet_distance(feats, real_vgg), 4)
            summary["kid_vgg16"] = round(M.kid(feats, real_vgg, cfg.kid_subsets, cfg.seed), 6)
            summary["fid"] = (round(M.frechet_distance(
                _features(folder, inception, cfg.batch_size, device, inception=True), real_inc), 4) if inception else None)
            summary["seconds_per_image"] = None if seconds is None else round(seconds, 4)
            summary["images"] = len(names)
            metrics.setdefault(cand, {})[setting] = summary
            for i, name in enumerate(names):
                rows.append({"candidate": cand, "setting": setting, "name": name,
                             **{k: float(v[i]) for k, v in per.items()}})
    return metrics, pd.DataFrame(rows), grids
