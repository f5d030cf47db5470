"""The text + reference benchmark: does the prompt fill what the reference lacks, without bleeding?

Needs the synthetic data's label maps (exact regions) and captions (exact colours); runs on a
text model (`UNetConfig.text`). Settings, each on the first `text_limit` test faces:

  text_only       no reference; the prompt names every slot's colour in words (the nearest colour
                  word to the face's own): CIEDE2000 of each output region vs the named colour as
                  the face would wear it (`painted`: its own shading kept); `de_*_flat`: vs the
                  flat colour, which the true face's irises miss by about 20 (their gradient and rim).
  masked_hair     the self-reference with its hair blanked (mid grey, as in training), without and
  masked_eyes     with the hidden region's colour in the prompt (hex: the artist's exact colour);
                  dE of that region vs the target. Also with both irises blanked, one code per eye.
  hetero_text     the random reference; the prompt names two different eye colours ("left eye X,
                  right eye Y"): success = both output irises within `iris_threshold` of their word
                  (painted, as in text_only); also over the pairs of two hued words (no black,
                  grey or white: `success_chromatic`) and, per word, the share of eyes it landed on.
  counterfactual  the self-reference says one hair colour, the prompt another (> 30 dE away):
                  follow rate = output hair nearer the named colour (painted) than the reference's; bleeding =
                  mean dE, outside the hair, between the output with and without the prompt.

All use the same seeds as the empty-prompt run, so differences come from the prompt alone.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn

from pipeline.data.benchmark import load_benchmark
from pipeline.data.dataset import blank_region, repaint_region, to_uint8
from pipeline.data.labels import COLOUR_REGIONS, REGION_IDS
from pipeline.data.prompt import (COLOURS, EYE_WORDS, HAIR_WORDS, Colour, Prompt, encode, lab_of, named,
                                  parse_prompt, vocabulary_colours)
from pipeline.device import autocast
from pipeline.evaluation import metrics as M
from pipeline.model.diffusion import Diffusion
from pipeline.model.generate import colorize_batch

ACHROMATIC = ("black", "grey", "white")  # eye words without a hue: hetero_text also reports the pairs without them
BLEED_REGIONS = ("skin", "iris_left", "iris_right", "clothes", "background")
GRID_PROMPTS = ("", "pink hair", "aqua hair, left eye red, right eye yellow", "white hair, green eyes, black clothes")


def _region_lab(images: torch.Tensor, labels: np.ndarray, region: str, erode: int) -> np.ndarray:
    """(N, 3) mean Lab of `region` per image (NaN where absent); images in [-1, 1]."""
    return M.region_means(M.to_lab(((images.float() + 1) / 2).cpu()), labels, REGION_IDS[region], erode)


def painted(images: torch.Tensor, labels: np.ndarray, region: str, old: list[Colour | None],
            new: list[Colour | None], erode: int) -> np.ndarray:
    """(N, 3) mean Lab of `region` in `images` (in [-1, 1]) repainted from colour `old` to `new`
    (per image; NaN rows where either is None), each pixel keeping its shading: the synthetic
    faces are palette x shade (`data/synthetic.py`), so a pixel p of a region painted c has shade
    s = <p, c> / <c, c>, and the same pixel painted n is s n. Repainting a true face with its own
    caption gives back its region means within 0.2 CIEDE2000 (hair, skin, clothes) and 4 (irises:
    their 1-px rim blends with the outline at 64 px), where the flat caption colour is 19-20
    away from the irises: this is the colour a word asks of a region, not its flat swatch."""
    x = images.float().cpu()
    x = torch.stack([repaint_region(x[i], labels[i], region, old[i].rgb, new[i].rgb)
                     if old[i] is not None and new[i] is not None else x[i] for i in range(x.shape[0])])
    out = _region_lab(x, labels, region, erode)
    out[[o is None or n is None for o, n in zip(old, new)]] = np.nan
    return out


def _labs(colours: list[Colour | None]) -> np.ndarray:
    """(N, 3) Lab of each colour (NaN rows for None)."""
    return np.array([lab_of(c.rgb) if c is not None else np.full(3, np.nan) for c in colours])


SAMPLED_PER_FACE = 8  # pictures per test face that report progress (text only 1, masked 2 x 2, hetero 1, counterfactual 2)


def run_text_benchmark(model: nn.Module, diffusion: Diffusion, faces_dir, pairs_dir, cfg, device: torch.device,
                       progress: Callable[[int], None] | None = None) -> tuple[dict, dict]:
    """Returns (metrics {setting: {metric: value}}, grids {name: tiles (rows of images)})."""
    table, data = load_benchmark(faces_dir, pairs_dir, "self_ref", cfg.text_limit, with_labels=True)
    if "target_label" not in data or "target_caption" not in table or not all(table.target_caption):
        return {"_skipped": "needs label maps and captions (the synthetic source)"}, {}
    _, rnd = load_benchmark(faces_dir, pairs_dir, "random_ref", cfg.text_limit, with_labels=True)
    n = len(table)
    rng = np.random.default_rng([cfg.seed, 15])
    labels = data["target_label"].numpy()
    sketch, reference, target = data["sketch"].to(device), data["reference"].to(device), data["target"]
    words = vocabulary_colours(model.config.vocabulary)  # the model's own words, in its embedding order
    truth = [parse_prompt(c, words) for c in table.target_caption]
    erode = cfg.region_erode

    def texts(prompts: list[Prompt]) -> torch.Tensor:
        return torch.from_numpy(np.stack([encode(p, words) for p in prompts]))

    def sample(ref: torch.Tensor, prompts: list[Prompt] | None) -> torch.Tensor:
        return colorize_batch(model, diffusion, sketch, ref.to(device), sample_steps=cfg.sample_steps,
                              guidance=cfg.guidance, eta=cfg.eta, seed=cfg.seed, batch_size=cfg.batch_size,
                              autocast=autocast(device, cfg.precision), progress=progress,
                              text=None if prompts is None else texts(prompts), text_guidance=cfg.text_guidance).cpu()

    def de(out: torch.Tensor, region: str, colours: np.ndarray) -> np.ndarray:
        return M.delta_e(_region_lab(out, labels, region, erode), colours)

    metrics: dict = {}
    grids: dict[str, list[torch.Tensor]] = {}
    null_ref = torch.zeros_like(reference)

    def asked(region: str, prompts: list[Prompt]) -> np.ndarray:
        """(N, 3) Lab the prompts ask of `region`, painted on the true face (NaN where unnamed)."""
        return painted(target, labels, region, [p.slots.get(region) for p in truth],
                       [p.slots.get(region) for p in prompts], erode)

    # text only: every slot in words
    said = [named(p, colours=words) for p in truth]
    out = sample(null_ref, said)
    metrics["text_only"] = {f"de_{r}": M.summarise(de(out, r, asked(r, said))) for r in COLOUR_REGIONS}
    metrics["text_only"].update({f"de_{r}_flat": M.summarise(de(out, r, _labs([p.slots.get(r) for p in said])))
                                 for r in COLOUR_REGIONS})
    grids["text_only"] = [out]

    # masked reference, with and without the hidden region's colour
    for setting, slots in (("masked_hair", ("hair",)), ("masked_eyes", ("iris_left", "iris_right"))):
        refs = []
        for i in range(n):
            ref = reference[i].cpu()
            for slot in slots:
                ref = blank_region(ref, data["reference_label"][i].numpy(), slot)
            refs.append(ref)
        masked = torch.stack(refs)
        plain = sample(masked, None)
        told = sample(masked, [Prompt({s: truth[i].slots[s] for s in slots if s in truth[i].slots}) for i in range(n)])
        row: dict = {}
        for slot in slots:
            want = _region_lab(target, labels, slot, erode)
            a, b = M.summarise(de(plain, slot, want)), M.summarise(de(told, slot, want))
            row[f"de_{slot}_no_text"], row[f"de_{slot}_text"] = a, b
            row[f"ratio_{slot}"] = round(a / b, 3) if a and b else None
        metrics[setting] = row
        grids[setting] = [masked, plain, told]

    # heterochromia named in text, over the random reference
    pairs = []
    for _ in range(n):
        while True:
            left, right = rng.choice(EYE_WORDS, 2, replace=False)
            if M.delta_e(lab_of(COLOURS[left])[None], lab_of(COLOURS[right])[None])[0] > 20:
                break
        pairs.append((str(left), str(right)))
    prompts = [parse_prompt(f"left eye {a}, right eye {b}", words) for a, b in pairs]
    out = sample(rnd["reference"], prompts)
    err_l = de(out, "iris_left", asked("iris_left", prompts))
    err_r = de(out, "iris_right", asked("iris_right", prompts))
    ok = (err_l < cfg.iris_threshold) & (err_r < cfg.iris_threshold)
    valid = np.isfinite(err_l) & np.isfinite(err_r)
    rate = lambda hit, where: round(float(hit[where].mean()), 4) if where.any() else None  # noqa: E731
    chromatic = valid & np.array([not {a, b} & set(ACHROMATIC) for a, b in pairs])
    eye_words = np.array(pairs).T                                                          # (2, n): left, right
    eye_hit, eye_valid = np.stack([err_l, err_r]) < cfg.iris_threshold, np.stack([valid, valid])
    metrics["hetero_text"] = {"success": rate(ok, valid), "success_chromatic": rate(ok, chromatic),
                              "eye_success_by_word": {w: rate(eye_hit, eye_valid & (eye_words == w))
                                                      for w in EYE_WORDS if ((eye_words == w) & eye_valid).any()},
                              "de_iris_left": M.summarise(err_l), "de_iris_right": M.summarise(err_r),
                              "n": int(valid.sum())}
    grids["hetero_text"] = [rnd["reference"], out]

    # counterfactual hair: the reference says one colour, the prompt another
    ref_hair = _region_lab(reference, data["reference_label"].numpy(), "hair", erode)
    hair_words = []
    for i in range(n):
        far = [w for w in HAIR_WORDS if not np.isfinite(ref_hair[i]).all()
               or M.delta_e(lab_of(COLOURS[w])[None], ref_hair[i][None])[0] > 30]
        hair_words.append(str(rng.choice(far)))
    prompts = [parse_prompt(f"{w} hair", words) for w in hair_words]
    base = sample(reference, None)
    out = sample(reference, prompts)
    to_named = de(out, "hair", asked("hair", prompts))
    to_ref = de(out, "hair", ref_hair)
    valid = np.isfinite(to_named) & np.isfinite(to_ref)
    bleed = np.nanmean(np.stack([M.delta_e(_region_lab(out, labels, r, erode), _region_lab(base, labels, r, erode))
                                 for r in BLEED_REGIONS]), 0)
    metrics["counterfactual"] = {"follow_rate": round(float((to_named < to_ref)[valid].mean()), 4) if valid.any()
                                 else None, "de_hair_named": M.summarise(to_named),
                                 "bleed_de": M.summarise(bleed), "n": int(valid.sum())}
    grids["counterfactual"] = [reference.cpu(), base, out]

    # the README's picture: one drawing and reference (random), several prompts
    k = min(cfg.sheet_size, n)
    shown = [rnd["reference"][:k]]
    for text in GRID_PROMPTS:
        prompt = parse_prompt(text, words)
        shown.append(colorize_batch(model, diffusion, sketch[:k], rnd["reference"][:k].to(device),
                                    sample_steps=cfg.sample_steps, guidance=cfg.guidance, eta=cfg.eta, seed=cfg.seed,
                                    batch_size=cfg.batch_size, autocast=autocast(device, cfg.precision),
                                    text=texts([prompt] * k), text_guidance=cfg.text_guidance).cpu())
    grids["prompts"] = shown
    grids = {name: [sketch.cpu()] + rows for name, rows in grids.items()}
    return metrics, grids


def grid_tiles(rows: list[torch.Tensor], count: int) -> list[np.ndarray]:
    """Rows of (N, C, H, W) images -> tiles, `count` per row, grey sketches as RGB."""
    tiles = [to_uint8(row[i]) for row in rows for i in range(min(count, row.shape[0]))]
    return [t if t.ndim == 3 else t[..., None].repeat(3, -1) for t in tiles]
