"""Training data for the diffusion model: (sketch, reference, target) triples as tensors.

The reference is re-distorted on every fetch (a new TPS warp each time), as in the
official code; a frozen distortion per image would let the model memorise it. Randomness
comes either from a seed passed with the index (the training loop's sampler does this: the
distortion of sample i in epoch e is a function of (seed, e, i), so resumed runs match) or
from a numpy generator seeded from `torch.initial_seed()`, which the DataLoader sets per
worker and per epoch.

Tensors: sketch (1, H, W), reference (3, H, W), target (3, H, W), float32 in [-1, 1]; with
`region_balance`, also weight (1, H, W), the loss weights of `region_weights`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

import cv2
from pydantic import Field, field_validator

from pipeline.config import Config
from pipeline.data.imageio import read_label, read_rgb
from pipeline.data.labels import NO_REGION, REGION_IDS
from pipeline.data.prompt import (COLOURS, SLOTS, Colour, Prompt, encode, named, parse_prompt, slot_words,
                                  vocabulary_colours)
from pipeline.data.tps import TPSConfig, apply_warp, random_warp
from pipeline.data.xdog import LineAugmentConfig, augment_lines
from pipeline.errors import AnimecolorError


def known_names(names: tuple[str, ...], known, kind: str) -> tuple[str, ...]:
    """`names` if each is one of `known`, else a ValueError naming the first unknown one and the known ones."""
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown {kind} {unknown[0]!r} (known: {', '.join(known)})")
    return names


class CaptionConfig(Config):
    """How a face's caption becomes the training prompt (params `pretrain.captions`; text models only)."""

    p_empty: float = Field(0.1, ge=0, le=1, description="probability of the empty prompt (guidance on text)")
    p_slot: float = Field(0.3, ge=0, le=1, description="probability that a captioned slot is left unsaid")
    p_named: float = Field(0.5, ge=0, le=1, description="probability that a hex caption "
                                                        "colour is said as its nearest word")
    p_mask: float = Field(0.3, ge=0, le=1, description="probability of blanking a captioned region of the reference")
    p_recolour: float = Field(0.0, ge=0, le=1, description="probability of recolouring a "
                                                           "captioned region of the reference")
    recolour_slots: tuple[str, ...] = Field(SLOTS, description="slots to recolour")
    p_recolour_eyes: float = Field(0.0, ge=0, le=1, description="probability of recolouring "
                                                                "both irises of the reference")
    p_repaint: float = Field(0.0, ge=0, le=1, description="probability of repainting the "
                                                          "target's slots in a said random word")
    repaint_slots: tuple[str, ...] = Field(("iris_left", "iris_right"), description="slots p_repaint repaints")
    altered_weight: float = Field(1.0, ge=1, le=100, description="loss weight of regions whose colour "
                                                                 "only the prompt gives; 1: uniform")

    @field_validator("recolour_slots", "repaint_slots")
    @classmethod
    def _slots(cls, slots):
        return known_names(slots, SLOTS, "slot")


class RecolourConfig(Config):
    """Region colour augmentation (params `pretrain.recolour`; label maps only)."""

    p: float = Field(0.0, ge=0, le=1, description="probability a listed region gets a random "
                                                  "colour in target and reference; 0: off")
    regions: tuple[str, ...] = Field(("hair", "iris_left", "iris_right", "clothes"),
                                     description="label-map regions recoloured (data/labels.py)")

    @field_validator("regions")
    @classmethod
    def _known(cls, regions):
        return known_names(regions, REGION_IDS, "region")


class PairAugmentConfig(Config):
    """Augmentation of the whole training pair (params `pretrain.augment`): the target, its lines and its
    label map change together, so the reference warped from the target follows. Off by default: the
    random stream, and so every default run, is then what it was without it."""

    flip_p: float = Field(0.0, ge=0.0, le=1.0, description="probability of mirroring the whole pair; 0: off")


def recolour_pair(target: torch.Tensor, reference: torch.Tensor, label: np.ndarray, reference_label: np.ndarray,
                  rng: np.random.Generator, cfg: RecolourConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Target and reference (3, H, W) in [-1, 1] with each of `cfg.regions` moved, with probability
    `cfg.p`, to one random mean colour in both (each pixel's offset from its region's mean kept;
    exact label masks, so the lines around a region keep their colour). The same draws whatever
    happens, so every item's stream is fixed."""
    draws, colours = rng.random(len(cfg.regions)), rng.uniform(-1, 1, (len(cfg.regions), 3))
    target, reference = target.clone(), reference.clone()
    for region, draw, colour in zip(cfg.regions, draws, colours):
        if draw >= cfg.p:
            continue
        new = torch.as_tensor(colour, dtype=target.dtype)[:, None]
        for image, labels in ((target, label), (reference, reference_label)):
            mask = torch.from_numpy(labels == REGION_IDS[region])
            if mask.any():
                pixels = image[:, mask]
                image[:, mask] = (pixels - pixels.mean(1, keepdim=True) + new).clamp(-1, 1)
    return target, reference


def colour_clusters(image: np.ndarray, k: int) -> np.ndarray:
    """(H, W) uint8 ids 0..k-1: k-means of an RGB uint8 picture's pixels in CIELAB (k-means++ from a
    fixed seed, so a function of the picture). Stand-in label maps for pictures without any: an
    anime face is painted in a few flat colours, so a cluster is mostly one region (hair, skin,
    the irises, the clothes), and the warp carries it to the reference like a label map."""
    lab = cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab).reshape(-1, 3)
    cv2.setRNGSeed(0)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 10, 0.5)
    _, ids, _ = cv2.kmeans(lab, k, None, criteria, 1, cv2.KMEANS_PP_CENTERS)
    return ids.reshape(image.shape[:2]).astype(np.uint8)


def blank_region(reference: torch.Tensor, reference_label: np.ndarray, slot: str) -> torch.Tensor:
    """The reference (3, H, W) in [-1, 1] with `slot`'s region (`region_mask`) set to the null value
    0 (mid grey, as a dropped reference)."""
    out = reference.clone()
    out[:, torch.from_numpy(region_mask(reference_label, slot))] = 0.0
    return out


def region_mask(reference_label: np.ndarray, slot: str) -> np.ndarray:
    """`slot`'s region in a label map, grown by 1 px so no outline colour is left at its edge."""
    return cv2.dilate((reference_label == REGION_IDS[slot]).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0


def repaint_region(image: torch.Tensor, label: np.ndarray, slot: str, old, new) -> torch.Tensor:
    """The image (3, H, W) in [-1, 1] with `slot`'s region (exact label mask) repainted from RGB
    colour `old` to `new` (0-255), each pixel keeping its shading: the synthetic faces are palette x
    shade (`data/synthetic.py`), so a pixel p of a region painted c has shade s = <p, c> / <c, c>,
    and the same pixel painted n is s n."""
    out = image.clone()
    mask = torch.from_numpy(label == REGION_IDS[slot])
    c, n = (torch.tensor(col, dtype=torch.float32) / 255 for col in (old, new))
    shade = (c @ (out[:, mask].float() + 1) / 2) / (c @ c).clamp_min(1e-6)
    out[:, mask] = ((n[:, None] * shade[None]).clamp(0, 1) * 2 - 1).to(out.dtype)
    return out


def recolour_region(reference: torch.Tensor, reference_label: np.ndarray, slot: str, colour: np.ndarray) -> torch.Tensor:
    """The reference (3, H, W) in [-1, 1] with `slot`'s region moved to mean `colour` (3,) in [-1, 1],
    its shading (each pixel's offset from the region's mean) kept."""
    mask = torch.from_numpy(region_mask(reference_label, slot))
    out = reference.clone()
    region = out[:, mask]
    if region.numel():
        out[:, mask] = (region - region.mean(1, keepdim=True) + torch.as_tensor(colour, dtype=out.dtype)[:, None]
                        ).clamp(-1, 1)
    return out


def caption_text(caption: str, rng: np.random.Generator, cfg: CaptionConfig, keep=(),
                 colours: dict | None = None) -> np.ndarray:
    """One training prompt from a caption: random slots dropped (never those in `keep`), hex colours
    named at random; encoded (`prompt.encode`) in the words `colours` (default: the vocabulary)."""
    keep = {keep} if isinstance(keep, str) else set(keep or ())
    prompt = parse_prompt(caption, colours)
    drop = rng.random(len(SLOTS)) < cfg.p_slot
    name = rng.random(len(SLOTS)) < cfg.p_named
    kept = {s: c for s, c in prompt.slots.items() if s in keep or not drop[SLOTS.index(s)]}
    return encode(named(Prompt(kept), {s for s in kept if name[SLOTS.index(s)]}, colours), colours)


def region_weights(sketch: np.ndarray, power: float, max_weight: float = 8.0) -> np.ndarray:
    """Loss weights (H, W) float32, mean 1, from a line drawing (uint8, dark lines on white): every
    pixel of a closed region between the lines weighs (A / the region's area)^power, clipped to
    [1, max_weight], with A = 1/16 of the picture; line pixels and larger regions weigh 1.

    Per-pixel MSE lets big flat regions (hair, background) decide the loss; an iris of ~25 px out
    of 4,096 barely counts, and the network learns to paint a generic one. Weighting by region size
    (from the drawing alone, so it works on any data) gives small regions a say (issue 14)."""
    free = (sketch >= 128).astype(np.uint8)
    _, labels, stats, _ = cv2.connectedComponentsWithStats(free, connectivity=4)
    area = np.maximum(stats[:, cv2.CC_STAT_AREA].astype(np.float64), 1.0)
    per_region = np.clip((sketch.size / 16.0 / area) ** power, 1.0, max_weight)
    weight = np.where(free > 0, per_region[labels], 1.0)
    return (weight / weight.mean()).astype(np.float32)


def altered_weights(label: np.ndarray, slots, weight: float) -> np.ndarray:
    """Loss weights (H, W) float32: `weight` on the regions of `slots` (exact label masks), 1 elsewhere
    (not renormalised: the rest of the picture keeps its plain weight)."""
    ids = [REGION_IDS[slot] for slot in slots]
    return np.where(np.isin(label, ids), np.float32(weight), np.float32(1.0)).astype(np.float32)


def _weigh(item: dict, weights: np.ndarray) -> None:
    """Multiply an item's loss weights (1, H, W; all 1 when it has none) by `weights` (H, W)."""
    extra = torch.from_numpy(weights)[None]
    item["weight"] = item["weight"] * extra if "weight" in item else extra


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 (H, W) or (H, W, C) -> float32 (C, H, W) in [-1, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(image)).float().div_(127.5).sub_(1.0)
    return t[None] if t.ndim == 2 else t.permute(2, 0, 1)


def to_uint8(tensor: torch.Tensor) -> np.ndarray:
    """float (C, H, W) in [-1, 1] -> uint8 (H, W, C), or (H, W) for one channel."""
    arr = ((tensor.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().byte().numpy()
    return arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0)


class PairDataset(Dataset):
    """Training triples from `pairs_dir/<split>/items.csv` with targets in `faces_dir`."""

    def __init__(self, faces_dir: str | Path, pairs_dir: str | Path, split: str = "train",
                 tps: TPSConfig = TPSConfig(), line_augment: LineAugmentConfig | None = None, with_labels: bool = False,
                 limit: int | None = None, captions: CaptionConfig | None = None,
                 vocabulary: tuple[str, ...] | None = None, region_balance: float = 0.0,
                 recolour: RecolourConfig | None = None, colour_regions: int = 0, eye_weight: float = 1.0,
                 augment: PairAugmentConfig = PairAugmentConfig()):
        self.faces, self.pairs = Path(faces_dir), Path(pairs_dir)
        items_path = self.pairs / split / "items.csv"
        if not items_path.is_file():
            raise AnimecolorError(f"{items_path}: not found (run `animecolor pairs` first)")
        self.items = pd.read_csv(items_path, dtype=str, keep_default_na=False)
        if len(self.items) == 0:
            raise AnimecolorError(f"{items_path}: no images in the {split} split")
        if limit is not None:  # names are content hashes: the first N are a fixed, unbiased subset
            self.items = self.items.head(limit).reset_index(drop=True)
        self.tps, self.line_augment, self.with_labels, self.captions = tps, line_augment, with_labels, captions
        if captions is not None and augment.flip_p > 0:
            raise AnimecolorError("pretrain.augment.flip_p: a mirrored face swaps the eyes its caption names "
                                  "left and right; set it to 0 with pretrain.unet.text")
        self.augment = augment
        self.region_balance = region_balance  # > 0: items carry `weight` (region_weights of the sketch)
        self.eye_weight = eye_weight  # != 1: items with a label map carry `weight`, the irises' this much
        self.recolour = recolour if recolour is not None and recolour.p > 0 else None  # region colour augmentation
        self.colour_regions = colour_regions  # > 0: label maps for data without any (drop_label_uses, colour_clusters)
        self.clustered = False  # the label outputs are colour clusters (ids 0..colour_regions-1)
        self.colours = vocabulary_colours(vocabulary) if vocabulary else None  # the model's words (text models)
        if captions is not None and "caption" not in self.items:
            raise AnimecolorError(f"{items_path}: no caption column (rerun `animecolor clean` and `pairs`)")
        self._rng: np.random.Generator | None = None
        self._rng_seed: int | None = None

    def __len__(self) -> int:
        return len(self.items)

    def sources(self) -> dict[str, int]:
        """How many of the images come from each crawl source (synthetic, folder, urls, booru), from
        the `source` column of the faces' manifest; "unknown" where it does not say."""
        manifest = self.faces / "manifest.csv"
        known: dict[str, str] = {}
        if manifest.is_file():
            table = pd.read_csv(manifest, dtype=str, keep_default_na=False)
            if {"file", "source"} <= set(table.columns):
                known = dict(zip(table.file, table.source))
        counts = pd.Series([known.get(image) or "unknown" for image in self.items.image]).value_counts()
        return {str(source): int(n) for source, n in counts.items()}

    @property
    def labelled(self) -> int:
        """How many items have a label map (all on synthetic data and on real data with
        `clean.eye_labels`, whose maps are empty where the detector found no eyes; none on other real data)."""
        return int(self.items.label.astype(bool).sum()) if "label" in self.items else 0

    def drop_label_uses(self) -> list[str]:
        """Unless every item has a label map (synthetic data; real images have none), turn off what
        needs them and return its names, for the caller to say so: recolouring, and the label
        outputs -- those are then the target's `colour_regions` colour clusters instead, if set.
        The eye weight stays on while some items have label maps (it weighs those items' irises
        and leaves the others' loss plain), unless colour clusters replace the label maps."""
        if self.labelled == len(self.items):
            return []
        self.clustered = self.with_labels and self.colour_regions > 0
        keep_eyes = self.labelled > 0 and not self.clustered
        dropped = [name for name, used in (("label maps", self.with_labels and not self.clustered),
                                           ("recolour", self.recolour),
                                           ("eye weight", self.eye_weight != 1 and not keep_eyes)) if used]
        self.with_labels, self.recolour = self.clustered, None
        if not keep_eyes:
            self.eye_weight = 1.0
        return dropped

    def _generator(self) -> np.random.Generator:
        seed = torch.initial_seed()
        if self._rng is None or seed != self._rng_seed:  # new worker or new epoch's workers
            self._rng, self._rng_seed = np.random.default_rng(seed), seed
        return self._rng

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        """key: an index, or (index, seed) to make this fetch's distortion a function of the seed
        (the training loop does this so that resumed runs see the same augmentations)."""
        if isinstance(key, tuple):
            index, rng = key[0], np.random.default_rng(key[1])
        else:
            index, rng = key, self._generator()
        row = self.items.iloc[index]
        target = read_rgb(self.faces / row.image)
        sketch = read_rgb(self.pairs / row.sketch)[..., 0]
        mirror = self.augment.flip_p > 0 and rng.random() < self.augment.flip_p  # no draw when off
        if mirror:
            target, sketch = np.ascontiguousarray(target[:, ::-1]), np.ascontiguousarray(sketch[:, ::-1])
        if self.line_augment is not None:  # draws from rng even when every probability is 0 (fixed stream)
            sketch = augment_lines(sketch, rng, self.line_augment, picture=target)
        maps = random_warp(self.tps, rng, *target.shape[:2])
        label = reference_label = None
        if self.clustered:
            label = colour_clusters(target, self.colour_regions)
        elif (self.with_labels or self.captions is not None or self.recolour is not None
              or self.eye_weight != 1) and row.label:
            label = read_label(self.faces / row.label)
            if mirror:  # the irises keep their ids: left and right only swap sides (no captions here)
                label = np.ascontiguousarray(label[:, ::-1])
        if label is not None:
            reference_label = apply_warp(label, maps, label=True)
        reference, target = to_tensor(apply_warp(target, maps)), to_tensor(target)
        if self.recolour is not None and label is not None:
            target, reference = recolour_pair(target, reference, label, reference_label, rng, self.recolour)
        out = {"sketch": to_tensor(sketch), "target": target}
        if self.region_balance > 0:
            out["weight"] = torch.from_numpy(region_weights(sketch, self.region_balance))[None]
        if self.eye_weight != 1 and not self.clustered:  # every item carries a weight, or a batch would not stack
            _weigh(out, np.ones(target.shape[1:], np.float32) if label is None
                   else altered_weights(label, ("iris_left", "iris_right"), self.eye_weight))
        if self.captions is not None:  # drawn after the warp: a model without text sees the same stream
            regions = None if self.clustered else reference_label  # clusters name no slot: nothing to blank
            target_label = None if self.clustered else label
            reference, target, out["text"], altered = self._text(row.caption, reference, regions, target,
                                                                 target_label, rng)
            out["target"] = target
            if self.captions.altered_weight != 1 and target_label is not None:
                _weigh(out, altered_weights(target_label, altered, self.captions.altered_weight))
            if altered and reference_label is not None:  # what the reference no longer shows has no region
                reference_label = reference_label.copy()
                for slot in altered:
                    reference_label[region_mask(reference_label, slot)] = NO_REGION
        out["reference"] = reference
        if self.with_labels and label is not None:
            out["label"] = torch.from_numpy(label.astype(np.int64))
            out["reference_label"] = torch.from_numpy(reference_label.astype(np.int64))
        return out

    def _text(self, caption: str, reference: torch.Tensor, reference_label: np.ndarray | None,
              target: torch.Tensor, label: np.ndarray | None,
              rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
        """Reference-region masking and recolouring (the altered regions' text is kept), target-region
        repainting (the new colour said), the prompt, and the altered slots (the reference no longer
        shows their colour). The same number of draws whatever happens, so every item's stream is
        fixed."""
        cfg, keep = self.captions, []
        draws, colour = rng.random(5), rng.uniform(-1, 1, 3)
        # drawn only when on (the draws depend on the settings, never on what happens): the streams of
        # settings without them are those of before they existed
        eyes_draw, eye_colours = (rng.random(), rng.uniform(-1, 1, (2, 3))) if cfg.p_recolour_eyes > 0 else (1.0, None)
        repaint_draw, word_draws = ((rng.random(), rng.random(len(cfg.repaint_slots))) if cfg.p_repaint > 0
                                    else (1.0, None))
        if draws[4] < cfg.p_empty:  # the empty prompt: nothing may contradict the (unaltered) reference
            return reference, target, torch.zeros(len(SLOTS), 4), []
        if caption and reference_label is not None:
            present = [s for s in parse_prompt(caption).slots if (reference_label == REGION_IDS[s]).any()]
            if present and draws[0] < cfg.p_mask:
                keep.append(present.pop(int(draws[1] * len(present))))
                reference = blank_region(reference, reference_label, keep[-1])
            recolourable = [s for s in present if s in cfg.recolour_slots]
            if recolourable and draws[2] < cfg.p_recolour:
                keep.append(recolourable[int(draws[3] * len(recolourable))])
                reference = recolour_region(reference, reference_label, keep[-1], colour)
            eyes = [s for s in ("iris_left", "iris_right") if s in present and s not in keep]
            if eyes and eyes_draw < cfg.p_recolour_eyes:
                for slot, eye_colour in zip(eyes, eye_colours):
                    reference = recolour_region(reference, reference_label, slot, eye_colour)
                keep.extend(eyes)
        if caption and label is not None and repaint_draw < cfg.p_repaint:
            target, caption, repainted = self._repaint(caption, target, label, word_draws)
            keep.extend(s for s in repainted if s not in keep)
        return reference, target, torch.from_numpy(caption_text(caption, rng, cfg, keep, self.colours)), keep

    def _repaint(self, caption: str, target: torch.Tensor, label: np.ndarray,
                 word_draws: np.ndarray) -> tuple[torch.Tensor, str, list[str]]:
        """The target with each of `repaint_slots` that it shows and its caption says painted in the
        word of that part `word_draws` picks (its exact colour, shading kept), the caption saying it."""
        colours = self.colours if self.colours is not None else COLOURS
        said = parse_prompt(caption).slots
        repainted = []
        for slot, u in zip(self.captions.repaint_slots, word_draws):
            words = slot_words(slot, colours)
            if slot in said and words and (label == REGION_IDS[slot]).any():
                rgb = tuple(colours[words[int(u * len(words))]])
                target = repaint_region(target, label, slot, said[slot].rgb, rgb)
                said[slot] = Colour(rgb)
                repainted.append(slot)
        return target, str(Prompt(said)), repainted
