"""The full-size benchmark: the test faces at their own resolution, coloured the way a user colours a drawing.

The 64 px benchmark (`evaluate.py`) scores the model's own square output. A user instead brings a
300-1,000 px drawing: `colorize` letterboxes it to the model's size, colours it and scales the colours
back under the drawing's own full-resolution lines. This benchmark follows that path exactly:

- the test faces at `size` px: a folder source's face crop taken again from the raw image (the
  crop `clean` made, before it was shrunk); procedural faces rendered again at `size` px with
  their label maps (same seed and index as the crawl);
- their lines drawn by `animecolor extract-lines` (the training XDoG at full resolution);
- the self reference warped by the pairs stage's own TPS draw (same seed and index, at `size` px),
  the random reference the 64 px benchmark's partner face at `size` px; with `moved_ref`, also the
  self reference mirrored, turned and scaled on top of that warp (`MOVES`): the same colours in
  another layout, as in another picture of the character, scored against the same truth;
- coloured by `colour` (the evaluate stage passes `colorize_layers`, the CLI's and the app's
  function, with the drawing read as lines: this layer does not import `colorize`);
- scored at full size: PSNR, LPIPS, the chroma ratio (mean CIELAB C* of the output over the truth's:
  below 1 is a paler picture), region CIEDE2000 with label maps, `animeface` colours without.

The baseline `upscaled_truth` is the truth shrunk to the model's size and put through the same
compositor (`baseline`: `colorize.upscaled_truth`): what a perfect model-size colour layer gives.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from pydantic import Field
from torch import nn

from pipeline.chroma import STRENGTH as MATCH_CHROMA
from pipeline.config import Config
from pipeline.data.clean import crop_square, resize
from pipeline.data.imageio import WHITE, decode_image, flatten_alpha
from pipeline.data.labels import COLOUR_REGIONS
from pipeline.data.manifest import zoom_rows
from pipeline.data.synthetic import generate_face
from pipeline.data.tps import TPSConfig, apply_warp, random_warp
from pipeline.data.xdog import XDoGConfig
from pipeline.errors import AnimecolorError
from pipeline.evaluation import metrics as M
from pipeline.evaluation.features import ANIMEFACE_ATTRIBUTES, animeface_attributes
from pipeline.model.diffusion import Diffusion
from pipeline.model.perceptual import VGGLPIPS

UPSCALED_TRUTH = "upscaled_truth"  # the baseline candidate
SETTINGS = ("full_self_ref", "full_random_ref")
MOVED = "full_moved_ref"  # the self reference in another layout (`FullSizeConfig.moved_ref`)
MOVES = {"flip_p": 1.0, "rotate_deg": 15.0, "scale_min": 0.85, "scale_max": 1.15, "moves_p": 1.0}  # over pairs.tps


class FullSizeConfig(Config):
    """The full-size benchmark (params `evaluate.full_size`)."""

    faces: int = Field(16, ge=0, description="test faces per setting; 0: off")
    size: int = Field(256, ge=32, le=2048, description="side in px (procedural faces rendered at it, "
                                                       "real ones re-cropped)")
    all_models: bool = Field(False, description="score every model given; false: the last one (the shipped model)")
    line_sigma: float = Field(0.5, ge=0.1, le=5.0, description="XDoG sigma of the drawings "
                                                               "(extract-lines' default)")
    moved_ref: bool = Field(True, description="also the self reference mirrored, turned and scaled")
    match_chroma: float = Field(MATCH_CHROMA, ge=0, le=1, description="colorize --match-chroma: chroma "
                                "moved this share toward the reference's")

    def settings(self) -> tuple[str, ...]:
        return SETTINGS + ((MOVED,) if self.moved_ref else ())


def chroma_ratio(out: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Mean CIELAB chroma C* of each output over its truth's, (B,); images (B, H, W, 3) uint8 RGB."""
    def mean_chroma(images: np.ndarray) -> np.ndarray:
        lab = M.to_lab(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255)
        return np.hypot(lab[..., 1], lab[..., 2]).reshape(len(images), -1).mean(1)

    return mean_chroma(out) / np.maximum(mean_chroma(truth), 1e-6)


class FullSizeFaces:
    """The test faces at full size, from the crawl's raw data and `clean`'s manifest."""

    def __init__(self, raw_dir: str | Path, faces_dir: str | Path, size: int):
        self.raw, self.size = Path(raw_dir), size
        manifest = Path(faces_dir) / "manifest.csv"
        state = self.raw / "state.json"
        for path in (manifest, state):
            if not path.is_file():
                raise AnimecolorError(f"{path}: not found (the full-size benchmark re-reads the crawl and "
                                      f"clean outputs; run `dvc repro clean`)")
        self.state = json.loads(state.read_text())
        table = pd.read_csv(manifest, dtype=str, keep_default_na=False)
        kept = table[table.status == "kept"]
        self.kept = kept[~zoom_rows(kept)].reset_index(drop=True)  # faces: the pairs stage's rng index
        self.by_file = {row.file: i for i, row in self.kept.iterrows()}

    def index(self, faces_file: str) -> int:
        """Row of a face (its path under the faces folder) among the kept faces: the pairs stage's
        per-image rng index."""
        if faces_file not in self.by_file:
            raise AnimecolorError(f"{faces_file}: not in the faces manifest (rerun `dvc repro pairs`)")
        return self.by_file[faces_file]

    def face(self, faces_file: str) -> tuple[np.ndarray, np.ndarray | None]:
        """uint8 RGB (size, size, 3) and the label map (size, size) or None."""
        row = self.kept.iloc[self.index(faces_file)]
        if self.state.get("source") == "synthetic":
            index = int(Path(row.raw_file).stem)
            _, rgb, label = generate_face(self.state["seed"], index, self.size, self.state["heterochromia_p"],
                                          self.state.get("achromatic_eyes_p", 0.0))
            return rgb, label
        rgb = flatten_alpha(decode_image((self.raw / row.raw_file).read_bytes(), row.raw_file))
        x0, y0, side = (int(v) for v in row.box.split(","))
        return resize(crop_square(rgb, x0, y0, side, WHITE), self.size), None


    def self_reference(self, faces_file: str, rgb: np.ndarray, label: np.ndarray | None, tps: TPSConfig,
                       seed: int) -> tuple[np.ndarray, np.ndarray | None]:
        """The face's self reference at full size: the pairs stage's own TPS draw for it (`build_pairs`:
        rng [seed, 2, index]), applied at this size; with its label map warped alike."""
        return self._warped(faces_file, rgb, label, tps, seed)

    def _warped(self, faces_file: str, rgb: np.ndarray, label: np.ndarray | None, tps: TPSConfig,
                seed: int) -> tuple[np.ndarray, np.ndarray | None]:
        """`rgb` (and its label map) under `tps`, drawn from the pairs stage's rng for this face."""
        maps = random_warp(tps, np.random.default_rng([seed, 2, self.index(faces_file)]), *rgb.shape[:2])
        return apply_warp(rgb, maps), None if label is None else apply_warp(label, maps, label=True)

    def moved_reference(self, faces_file: str, rgb: np.ndarray, label: np.ndarray | None, tps: TPSConfig,
                        seed: int) -> tuple[np.ndarray, np.ndarray | None]:
        """The self reference in another layout: the same TPS draw as `self_reference` (the same rng
        stream), then always mirrored, turned and scaled by `MOVES` (drawn after it; they replace any
        flip, turn or scale of `pairs.tps` itself). A mirror swaps two irises of different colours, so
        on heterochromatic faces this setting's eye scores expect the eyes swapped back."""
        return self._warped(faces_file, rgb, label, TPSConfig.model_validate({**tps.model_dump(), **MOVES}), seed)


Colour = Callable[[nn.Module, Diffusion, np.ndarray, np.ndarray, int], np.ndarray]
Baseline = Callable[[np.ndarray, np.ndarray, int], np.ndarray]


def run_full_size(models: dict[str, tuple[nn.Module, Diffusion]], faces_dir: Path, pairs_dir: Path, raw_dir: Path,
                  cfg: FullSizeConfig, tps: TPSConfig, seed: int, colour: Colour, baseline: Baseline,
                  lpips: VGGLPIPS, device: torch.device, use_animeface: bool | None = None,
                  progress: Callable[[int], None] | None = None) -> tuple[dict, pd.DataFrame, dict]:
    """Returns (metrics {candidate: {setting: summary}}, per-image rows, grids {setting: {row: uint8 images}}).

    `colour(model, diffusion, lines (H, W), reference RGB, index)` -> the coloured picture (H, W, 3);
    `baseline(truth, lines, model_size)` -> the upscaled-truth picture. `seed`: the pairs stage's
    seed (its TPS draw per face). `use_animeface`: None = when there are no label maps."""
    path = pairs_dir / "test" / "pairs.csv"
    if not path.is_file():
        raise AnimecolorError(f"{path}: not found (run `animecolor pairs` first)")
    pairs = pd.read_csv(path, dtype=str, keep_default_na=False)
    faces = FullSizeFaces(raw_dir, faces_dir, cfg.size)
    metrics: dict = {}
    rows, grids = [], {}
    model_size = next(iter(models.values()))[0].config.image_size if models else 64
    for setting in cfg.settings():
        source = "random_ref" if setting == "full_random_ref" else "self_ref"  # the moved reference: self pairs
        table = pairs[pairs.setting == source].head(cfg.faces).reset_index(drop=True)
        name_to_file = dict(zip(pairs.name, pairs.target))
        truths, labels, refs, ref_labels, drawings = [], [], [], [], []
        for row in table.itertuples():
            truth, label = faces.face(row.target)
            lines = XDoGConfig().sketch(truth, cfg.line_sigma)  # `animecolor extract-lines`
            if setting == "full_self_ref":
                ref, ref_label = faces.self_reference(row.target, truth, label, tps, seed)
            elif setting == MOVED:
                ref, ref_label = faces.moved_reference(row.target, truth, label, tps, seed)
            else:
                ref, ref_label = faces.face(name_to_file[row.reference_name])
            truths.append(truth), labels.append(label), refs.append(ref), ref_labels.append(ref_label)
            drawings.append(lines)
        outputs: dict[str, tuple[list[np.ndarray], float | None]] = {}
        for name, (model, diffusion) in models.items():
            model.eval().to(device)
            start, images = time.perf_counter(), []
            for i, (lines, ref) in enumerate(zip(drawings, refs)):
                images.append(colour(model, diffusion, lines, ref, i))
                if progress:
                    progress(1)
            outputs[name] = (images, (time.perf_counter() - start) / len(images))
        outputs[UPSCALED_TRUTH] = ([baseline(t, d, model_size) for t, d in zip(truths, drawings)], None)
        truth_arr = np.stack(truths)
        truth01 = torch.from_numpy(truth_arr).permute(0, 3, 1, 2).float() / 255
        has_labels = all(lab is not None for lab in labels) and all(lab is not None for lab in ref_labels)
        animeface = (not has_labels) if use_animeface is None else use_animeface
        with torch.no_grad():
            target_taps = lpips.taps((truth01 * 2 - 1).to(device))
        if animeface:
            expected = animeface_attributes(truth01 if setting != "full_random_ref" else
                                            torch.from_numpy(np.stack(refs)).permute(0, 3, 1, 2).float() / 255)
        grids[setting] = {"sketch": np.stack(drawings), "reference": np.stack(refs), "target": truth_arr}
        for cand, (images, seconds) in outputs.items():
            out_arr = np.stack(images)
            out01 = torch.from_numpy(out_arr).permute(0, 3, 1, 2).float() / 255
            with torch.no_grad():
                lp = lpips.distance_to((out01 * 2 - 1).to(device), target_taps).cpu().numpy()
            per = {"psnr": M.psnr(out01, truth01).numpy(), "lpips": lp, "chroma_ratio": chroma_ratio(out_arr, truth_arr)}
            if has_labels:
                errors = M.region_colour_errors(out01, np.stack(labels),
                                                torch.from_numpy(np.stack(refs)).permute(0, 3, 1, 2).float() / 255,
                                                np.stack(ref_labels), COLOUR_REGIONS, 1)
                per.update({f"de_{region}": err for region, err in errors.items()})
            summary = {k: M.summarise(v) for k, v in per.items()}
            if animeface:
                found = animeface_attributes(out01)
                for attr, err in M.attribute_errors(found, expected, ANIMEFACE_ATTRIBUTES).items():
                    per[f"af_de_{attr}"] = err
                    summary[f"af_de_{attr}"] = M.summarise(err)
                summary["af_detected"] = round(float((~np.isnan(found[:, 0, 0])).mean()), 4)
            summary["seconds_per_image"] = None if seconds is None else round(seconds, 4)
            summary["images"] = len(images)
            summary["size"] = cfg.size
            metrics.setdefault(cand, {})[setting] = summary
            grids[setting][cand] = out_arr
            for i, row in enumerate(table.itertuples()):
                rows.append({"candidate": cand, "setting": setting, "name": row.name,
                             **{k: float(v[i]) for k, v in per.items()}})
    return metrics, pd.DataFrame(rows), grids
