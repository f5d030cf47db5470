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

from dataclasses import dataclass
from typing import Any, Callable

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


@dataclass
class _Run:
    """What every setting of one benchmark run shares: the model and its sampling settings (`cfg`,
    an EvalConfig), and the test faces: sketch (N, 1, H, W) in [-1, 1] on `device`, target (N, 3,
    H, W) in [-1, 1] on the CPU, labels (N, H, W) their label maps, truth their captions parsed
    with the model's own colour words `words`."""

    model: nn.Module
    diffusion: Diffusion
    cfg: Any
    device: torch.device
    progress: Callable[[int], None] | None
    words: dict[str, tuple[int, int, int]]
    sketch: torch.Tensor
    target: torch.Tensor
    labels: np.ndarray
    truth: list[Prompt]

    def texts(self, prompts: list[Prompt]) -> torch.Tensor:
        """(N, slots, 4) encoded prompts."""
        return torch.from_numpy(np.stack([encode(p, self.words) for p in prompts]))

    def colorize(self, sketch: torch.Tensor, ref: torch.Tensor, text: torch.Tensor | None,
                 progress: Callable[[int], None] | None) -> torch.Tensor:
        cfg = self.cfg
        return colorize_batch(self.model, self.diffusion, sketch, ref.to(self.device), sample_steps=cfg.sample_steps,
                              guidance=cfg.guidance, eta=cfg.eta, seed=cfg.seed, batch_size=cfg.batch_size,
                              autocast=autocast(self.device, cfg.precision), progress=progress, text=text,
                              text_guidance=cfg.text_guidance).cpu()

    def sample(self, ref: torch.Tensor, prompts: list[Prompt] | None) -> torch.Tensor:
        """Every test sketch coloured with references `ref` and `prompts` (None: the empty prompt), on the CPU."""
        return self.colorize(self.sketch, ref, None if prompts is None else self.texts(prompts), self.progress)

    def region_lab(self, images: torch.Tensor, region: str) -> np.ndarray:
        return _region_lab(images, self.labels, region, self.cfg.region_erode)

    def de(self, out: torch.Tensor, region: str, colours: np.ndarray) -> np.ndarray:
        """(N,) CIEDE2000 of `region` of `out` from `colours` (N, 3) Lab."""
        return M.delta_e(self.region_lab(out, region), colours)

    def asked(self, region: str, prompts: list[Prompt]) -> np.ndarray:
        """(N, 3) Lab the prompts ask of `region`, painted on the true face (NaN where unnamed)."""
        return painted(self.target, self.labels, region, [p.slots.get(region) for p in self.truth],
                       [p.slots.get(region) for p in prompts], self.cfg.region_erode)


def run_text_benchmark(model: nn.Module, diffusion: Diffusion, faces_dir, pairs_dir, cfg, device: torch.device,
                       progress: Callable[[int], None] | None = None) -> tuple[dict, dict]:
    """Returns (metrics {setting: {metric: value}}, grids {name: tiles (rows of images)})."""
    table, data = load_benchmark(faces_dir, pairs_dir, "self_ref", cfg.text_limit, with_labels=True)
    if "target_label" not in data or "target_caption" not in table or not all(table.target_caption):
        return {"_skipped": "needs label maps and captions (the synthetic source)"}, {}
    _, rnd = load_benchmark(faces_dir, pairs_dir, "random_ref", cfg.text_limit, with_labels=True)
    rng = np.random.default_rng([cfg.seed, 15])
    words = vocabulary_colours(model.config.vocabulary)  # the model's own words, in its embedding order
    run = _Run(model, diffusion, cfg, device, progress, words, data["sketch"].to(device), data["target"],
               data["target_label"].numpy(), [parse_prompt(c, words) for c in table.target_caption])
    reference, reference_label = data["reference"].to(device), data["reference_label"]

    metrics: dict = {}
    grids: dict[str, list[torch.Tensor]] = {}
    metrics["text_only"], grids["text_only"] = _text_only(run, torch.zeros_like(reference))
    for setting, slots in (("masked_hair", ("hair",)), ("masked_eyes", ("iris_left", "iris_right"))):
        metrics[setting], grids[setting] = _masked(run, reference, reference_label, slots)
    metrics["hetero_text"], grids["hetero_text"] = _hetero_text(run, rnd["reference"], rng)
    metrics["counterfactual"], grids["counterfactual"] = _counterfactual(run, reference, reference_label, rng)
    grids["prompts"] = _prompt_rows(run, rnd["reference"])
    grids = {name: [run.sketch.cpu()] + rows for name, rows in grids.items()}
    return metrics, grids


def _text_only(run: _Run, null_ref: torch.Tensor) -> tuple[dict, list[torch.Tensor]]:
    """No reference, every slot in words: dE of each region vs the word painted, and vs its flat colour."""
    said = [named(p, colours=run.words) for p in run.truth]
    out = run.sample(null_ref, said)
    row = {f"de_{r}": M.summarise(run.de(out, r, run.asked(r, said))) for r in COLOUR_REGIONS}
    row.update({f"de_{r}_flat": M.summarise(run.de(out, r, _labs([p.slots.get(r) for p in said])))
                for r in COLOUR_REGIONS})
    return row, [out]


def _masked(run: _Run, reference: torch.Tensor, reference_label: torch.Tensor,
            slots: tuple[str, ...]) -> tuple[dict, list[torch.Tensor]]:
    """The self-reference with `slots` blanked, without and with their true colours in the prompt."""
    refs = []
    for i in range(reference.shape[0]):
        ref = reference[i].cpu()
        for slot in slots:
            ref = blank_region(ref, reference_label[i].numpy(), slot)
        refs.append(ref)
    masked = torch.stack(refs)
    plain = run.sample(masked, None)
    told = run.sample(masked, [Prompt({s: truth.slots[s] for s in slots if s in truth.slots}) for truth in run.truth])
    row: dict = {}
    for slot in slots:
        want = run.region_lab(run.target, slot)
        a, b = M.summarise(run.de(plain, slot, want)), M.summarise(run.de(told, slot, want))
        row[f"de_{slot}_no_text"], row[f"de_{slot}_text"] = a, b
        row[f"ratio_{slot}"] = round(a / b, 3) if a and b else None
    return row, [masked, plain, told]


def _eye_word_pairs(n: int, rng: np.random.Generator) -> list[tuple[str, str]]:
    """n (left, right) eye words, each pair more than 20 dE apart."""
    pairs = []
    for _ in range(n):
        while True:
            left, right = rng.choice(EYE_WORDS, 2, replace=False)
            if M.delta_e(lab_of(COLOURS[left])[None], lab_of(COLOURS[right])[None])[0] > 20:
                break
        pairs.append((str(left), str(right)))
    return pairs


def _rate(hit: np.ndarray, where: np.ndarray) -> float | None:
    return round(float(hit[where].mean()), 4) if where.any() else None


def _hetero_text(run: _Run, random_reference: torch.Tensor,
                 rng: np.random.Generator) -> tuple[dict, list[torch.Tensor]]:
    """Heterochromia named in text over the random reference: both irises within `iris_threshold`."""
    pairs = _eye_word_pairs(len(run.truth), rng)
    prompts = [parse_prompt(f"left eye {a}, right eye {b}", run.words) for a, b in pairs]
    out = run.sample(random_reference, prompts)
    err_l = run.de(out, "iris_left", run.asked("iris_left", prompts))
    err_r = run.de(out, "iris_right", run.asked("iris_right", prompts))
    threshold = run.cfg.iris_threshold
    ok = (err_l < threshold) & (err_r < threshold)
    valid = np.isfinite(err_l) & np.isfinite(err_r)
    chromatic = valid & np.array([not {a, b} & set(ACHROMATIC) for a, b in pairs])
    eye_words = np.array(pairs).T                                                          # (2, n): left, right
    eye_hit, eye_valid = np.stack([err_l, err_r]) < threshold, np.stack([valid, valid])
    row = {"success": _rate(ok, valid), "success_chromatic": _rate(ok, chromatic),
           "eye_success_by_word": {w: _rate(eye_hit, eye_valid & (eye_words == w))
                                   for w in EYE_WORDS if ((eye_words == w) & eye_valid).any()},
           "de_iris_left": M.summarise(err_l), "de_iris_right": M.summarise(err_r), "n": int(valid.sum())}
    return row, [random_reference, out]


def _counterfactual(run: _Run, reference: torch.Tensor, reference_label: torch.Tensor,
                    rng: np.random.Generator) -> tuple[dict, list[torch.Tensor]]:
    """The self-reference says one hair colour, the prompt another (> 30 dE away): follow rate and bleeding."""
    ref_hair = _region_lab(reference, reference_label.numpy(), "hair", run.cfg.region_erode)
    hair_words = []
    for hair in ref_hair:
        far = [w for w in HAIR_WORDS if not np.isfinite(hair).all()
               or M.delta_e(lab_of(COLOURS[w])[None], hair[None])[0] > 30]
        hair_words.append(str(rng.choice(far)))
    prompts = [parse_prompt(f"{w} hair", run.words) for w in hair_words]
    base = run.sample(reference, None)
    out = run.sample(reference, prompts)
    to_named = run.de(out, "hair", run.asked("hair", prompts))
    to_ref = run.de(out, "hair", ref_hair)
    valid = np.isfinite(to_named) & np.isfinite(to_ref)
    bleed = np.nanmean(np.stack([M.delta_e(run.region_lab(out, r), run.region_lab(base, r))
                                 for r in BLEED_REGIONS]), 0)
    row = {"follow_rate": round(float((to_named < to_ref)[valid].mean()), 4) if valid.any() else None,
           "de_hair_named": M.summarise(to_named), "bleed_de": M.summarise(bleed), "n": int(valid.sum())}
    return row, [reference.cpu(), base, out]


def _prompt_rows(run: _Run, random_reference: torch.Tensor) -> list[torch.Tensor]:
    """The README's picture: the first `sheet_size` drawings with their random references, under several prompts."""
    k = min(run.cfg.sheet_size, len(run.truth))
    rows = [random_reference[:k]]
    for text in GRID_PROMPTS:
        prompt = parse_prompt(text, run.words)
        rows.append(run.colorize(run.sketch[:k], random_reference[:k], run.texts([prompt] * k), None))
    return rows


def grid_tiles(rows: list[torch.Tensor], count: int) -> list[np.ndarray]:
    """Rows of (N, C, H, W) images -> tiles, `count` per row, grey sketches as RGB."""
    tiles = [to_uint8(row[i]) for row in rows for i in range(min(count, row.shape[0]))]
    return [t if t.ndim == 3 else t[..., None].repeat(3, -1) for t in tiles]
