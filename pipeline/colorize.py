"""Colour your own line drawing: user images in, exported model, letterboxing, PNG out.

The exported model is one `.safetensors` file: the EMA weights plus a JSON header entry
("animecolor") with the architecture, diffusion schedule, image size, training params and
metrics. Loading it never unpickles anything.

Any input size and aspect works: the sketch is letterboxed (white padding) to the model's square
resolution, coloured, cropped and resized back; with `keep_lines` the drawing's own lines are
multiplied over the result at full resolution so they stay exactly where they were drawn. In a
drawing larger than a face, each face found is coloured again at the scale the model was trained
on, and the figure in face-sized tiles (`faces.py`; `tile_scale` times that), all in the same batch
as the whole picture.

A result is layers (`Colored`): the colour layer (the model's colours, a figure's lightness outside
its faces and the whole layer's chroma moved toward the reference's, then the figure's colours
evened out inside its line-enclosed regions: `chroma.py`; colour hints applied: `hints.py`), the
drawing's line layer, and the drawing's alpha when it is a sprite on a transparent background
(the model sees it composited on white; the picture keeps its alpha).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from pipeline.chroma import (EVEN, LIGHTNESS, MAX_EVEN, OPAQUE, STRENGTH, darken_rim, even_regions, match_chroma,
                             match_lightness)
from pipeline.config import validate
from pipeline.data.dataset import to_tensor, to_uint8
from pipeline.data.imageio import colour_fraction, flatten_alpha
from pipeline.data.prompt import encode, hex_code, hex_rgb, parse_prompt, vocabulary_colours
from pipeline.data.xdog import XDoGConfig
from pipeline.errors import AnimecolorError, shown
from pipeline.faces import (Mosaic, Square, confidence, drawing_faces, found_faces, largest_face_square,
                            local_source, register, resize_square, tile_count, tiles)
from pipeline.files import atomic_path
from pipeline.hints import (Hint, apply_hints, binarize_lines, hint_masks, lay_paper,
                           paper_background, paper_tone, plain_paper, sealed_regions)
from pipeline.model.defaults import MAX_GUIDANCE, MAX_SEED, MAX_STEPS, SAMPLING, TILE_SCALE, TILE_SCALES
from pipeline.model.diffusion import Diffusion, DiffusionConfig
from pipeline.model.generate import colorize_batch
from pipeline.model.unet import UNet, UNetConfig
from pipeline.scan import descreened, level_lines, soft_lines, untinted

EXPORT_FORMAT = "animecolor-model"
EXPORT_VERSION = 1
LINES = XDoGConfig()  # the training line extractor (official XDoG values)
_HEX_CODE = re.compile(r"#?([0-9a-fA-F]{6}|[0-9a-fA-F]{3})")  # what `prompt.hex_rgb` reads
MODES = ("auto", "lines", "xdog")  # how a drawing is read (`prepare_sketch`)
RELINES = ("auto", "on", "off")  # whether a drawing read as lines is drawn again at the model's size (`relined`)
RELINE_SHRINK = 4  # ... the whole picture's view when it is shrunk at most this much, or is a face picture
RELINE_SIGMA = 0.5  # ... by the training XDoG at this sigma (extract-lines' default)
MAX_BATCH = 64  # images sampled at once: a figure's tiles come in chunks of this many
MAX_TILES = 256  # a figure needing more tiles (a tiny face in a huge picture, small tiles) gets its faces only
PAPER = 200  # a tile whose drawing has no pixel darker than this is blank paper
CLOSE_GAPS = 0.025  # a figure on opaque paper: gaps in its outline up to twice this many face sides are sealed
PAPER_SEAL = 0.1  # ... and for the paper kept as drawn (`keep_paper`), sealed wider: none of the figure leaks out
PAPER_REACH = 0.04  # ... and an area of it told from the figure's pixels within this many face sides (`plain_paper`)
NO_FACE_SHARE = 3  # ... where no face is found, the face taken as the picture's shorter side / this
MIN_FIGURE = 0.05  # an opaque reference's figure found smaller than this share of it: all its pixels count
MIN_REFERENCE_COVERAGE = 0.9  # a tile whose part of the reference lies less than this on it is left out
EVEN_WHOLE = 2.0  # a picture coloured whole, enlarged: its regions evened over this many model pixels (at EVEN)
EVEN_SEAL = 0.4  # ... its lines' gaps sealed, and the pixels beside its lines left as painted, this many model pixels wide
MIN_ENLARGED = 2.0  # ... when its longer side is at least this many times the model's size
MAX_AREA = 0.75  # ... but an area holding more than this share of it is left as painted: its lines are broken
MIN_SIDES = {"drawing": 32, "reference": 16}  # px, the shorter side below which a picture holds nothing to read


# ---------------------------------------------------------------- model files
def export_model(checkpoint: dict, path: str | Path) -> dict:
    """Write a checkpoint's EMA weights and configs as a safetensors model file; returns its info."""
    path = Path(path)
    info = {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "unet": checkpoint["unet"],
            "diffusion": checkpoint["diffusion"], "image_size": checkpoint["unet"]["image_size"],
            "step": checkpoint.get("step"), "training": checkpoint.get("meta", {}),
            "metrics": checkpoint.get("metrics", {})}
    if checkpoint["unet"].get("text"):  # the model carries its prompt vocabulary: word -> colour
        info["vocabulary"] = {name: hex_code(rgb)
                              for name, rgb in vocabulary_colours(checkpoint["unet"]["vocabulary"]).items()}
    tensors = {k: v.detach().cpu().contiguous() for k, v in checkpoint["ema"].items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"animecolor": json.dumps(info, default=str)})
    return info


def load_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[UNet, Diffusion, dict]:
    """Load an exported model file; wrong kinds and versions are one clear error."""
    path = Path(path)
    if not path.exists():
        raise AnimecolorError(f"{path}: model file not found (train with `dvc repro`, or `animecolor export`)")
    if not path.is_file():  # a folder, a FIFO, a link to /dev/zero
        raise AnimecolorError(f"{path}: not a regular file (a model is one .safetensors file)")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        hint = " (a training checkpoint? convert it with `animecolor export`)" if path.suffix == ".pt" else ""
        raise AnimecolorError(f"{path}: not a safetensors model file{hint}") from exc
    try:
        info = json.loads(meta["animecolor"])
    except (KeyError, json.JSONDecodeError):
        raise AnimecolorError(f"{path}: a safetensors file, but not an animecolor model") from None
    except RecursionError:
        raise AnimecolorError(f"{path}: its animecolor header is nested too deeply (not an animecolor model)") from None
    if not isinstance(info, dict):
        raise AnimecolorError(f"{path}: its animecolor header is not a JSON object (got {type(info).__name__})")
    if info.get("format") != EXPORT_FORMAT:
        raise AnimecolorError(f"{path}: not an animecolor model (format {shown(info.get('format'))})")
    version = info.get("version")
    if type(version) is not int:  # noqa: E721 - true is not 1, "1" is not 1
        raise AnimecolorError(f"{path}: the header's model format version must be an integer (got {shown(version)})")
    if version != EXPORT_VERSION:
        raise AnimecolorError(f"{path}: model format version {version} "
                              f"(this animecolor reads {EXPORT_VERSION}); re-export it")
    # the header is user-editable text: validate it with the same schemas as params.yaml
    unet = validate(UNetConfig, info.get("unet"), f"{path}: header unet")
    diffusion = validate(DiffusionConfig, info.get("diffusion"), f"{path}: header diffusion")
    model = UNet(unet)
    try:
        model.load_state_dict(tensors)
    except RuntimeError:
        raise AnimecolorError(f"{path}: weights do not match the architecture in its header") from None
    _check_vocabulary(info.get("vocabulary"), model, path)
    step = info.get("step")
    info = {**info, "image_size": unet.image_size,  # what the network is, whatever else the header said
            "step": step if type(step) is int else None}  # noqa: E721
    return model.to(device).eval(), Diffusion(diffusion), info


def _check_vocabulary(stored, model: UNet, path: Path) -> None:
    """The header's prompt words ({word: "#rrggbb"}, in embedding order) must be colours, and no more
    than the network's embedding table has rows for (a word past it would fail mid-sampling)."""
    if stored is None or stored == {}:
        return
    if not isinstance(stored, dict):
        raise AnimecolorError(f"{path}: header vocabulary must be an object of word: \"#rrggbb\" "
                              f"(got {type(stored).__name__})")
    for word, code in stored.items():
        if not word.strip() or not isinstance(code, str) or not _HEX_CODE.fullmatch(code):
            raise AnimecolorError(f"{path}: header vocabulary {shown(word)}: {shown(code)} is not a colour (#rrggbb)")
    rows = model.text_encoder.value.num_embeddings - 2 if model.text_encoder is not None else 0
    if len(stored) > rows:
        raise AnimecolorError(f"{path}: header vocabulary has {len(stored):,} words, but the network's embedding "
                              f"table has {rows}")


REAL_FACE_RECIPE = "docs/usage.md#training-data-sources"


def _faces(count: int, source: str) -> str:
    return {"synthetic": f"{count} procedural (synthetic) faces", "folder": f"a folder of {count} faces",
            "urls": f"{count} faces from a URL list", "booru": f"{count} faces from a booru"}.get(
        source, f"{count} faces ({source})")


def _training_records(info: dict):
    """The header's `training.data` (per training stage: what it saw), as written or None; not yet checked."""
    return (info.get("training") or {}).get("data") if isinstance(info.get("training"), dict) else None


def _pretrain_record(info: dict) -> dict:
    """The first pretrain record of the header's `training.data`, or {} (none, or a header edited by hand)."""
    records = _training_records(info)
    if not isinstance(records, list):
        return {}
    return next((r for r in records if isinstance(r, dict) and r.get("stage") == "pretrain"), {})


def training_data(info: dict) -> tuple[str, str | None]:
    """What a model file says it was trained on: (one line, one warning line or None).

    From the header's `training.data` (per training stage: the faces it saw, counted by the
    crawl source in the faces' manifest); a model exported before that was recorded says
    "unknown". The warning is for models trained on procedural faces."""
    records = _training_records(info)
    if not records or not isinstance(records, list):
        return "trained on unknown data (this model file does not record it)", None
    said: dict[str, list[str]] = {}
    synthetic = False
    for record in records:
        if not isinstance(record, dict):
            continue
        sources = record.get("sources") or {}
        synthetic |= "synthetic" in sources
        what = " + ".join(_faces(n, source) for source, n in sources.items()) or f"{record.get('faces')} faces"
        said.setdefault(what, []).append(str(record.get("stage", "?")))
    line = "trained on " + "; ".join(f"{what} ({', '.join(stages)})" for what, stages in said.items())
    warning = (f"this model was trained on procedural faces: expect pale colours on real art; see "
               f"{REAL_FACE_RECIPE} for the real-face recipe") if synthetic else None
    layout = None if synthetic else _reference_layout(records)
    return (f"{line}; {layout}" if layout else line), warning


def _moved_share(record: dict) -> float | None:
    """The share of a training stage's references that were mirrored, turned or scaled (its
    recorded `reference_warp`: the moves, and `moves_p`, all moved when not recorded); None when the
    record has no such entry (older files, a header edited by hand)."""
    warp = record.get("reference_warp")
    if not isinstance(warp, dict):
        return None
    moves = warp.get("flip_p") or warp.get("rotate_deg") or (warp.get("scale_min"), warp.get("scale_max")) != (1.0, 1.0)
    share = warp.get("moves_p", 1.0)
    share = share if isinstance(share, (int, float)) and not isinstance(share, bool) and 0 <= share <= 1 else 1.0
    return float(share) if moves else 0.0


def _reference_layout(records: list) -> str | None:
    """What the training records say of the references' layout (pretraining's, and fine-tuning's
    when it moved them), as a clause; None when pretraining does not record it."""
    shares = {r.get("stage"): _moved_share(r) for r in records if isinstance(r, dict)}
    pretrain, finetune = shares.get("pretrain"), shares.get("finetune")
    if pretrain is None:
        return None
    if pretrain >= 1:
        return "its references mirrored, turned or scaled in training: for a reference in another pose"
    if pretrain > 0:
        percent = min(99, max(1, round(pretrain * 100)))
        return (f"{percent}% of its pretraining references drawn with moves (mirror, turn, scale), the rest in the "
                "drawing's layout: for a reference in either")
    tuned = " (moved in fine-tuning only)" if finetune else ""
    return (f"its references in the drawing's layout in pretraining{tuned}: it copies colours partly by position, "
            "so a reference in another pose suits the real-art-pose recipe better")


def without_reference_dropout(info: dict) -> bool:
    """True when the model file says its pretraining never dropped the reference (`reference_dropout`
    0 in the pretrain record of `training.data`): its output for a dropped reference was never
    trained, so classifier-free guidance on the reference has nothing to extrapolate from. False
    for files that do not record it."""
    return _pretrain_record(info).get("reference_dropout") == 0


def guidance_warning(info: dict, guidance: float) -> str | None:
    """One warning line for a guidance scale other than 1 on a model `without_reference_dropout`."""
    if guidance == 1 or not without_reference_dropout(info):
        return None
    return (f"guidance {guidance:g}: this model was trained without reference dropout "
            f"(pretrain.condition_dropout.p_uncond 0), so it has no unconditional output to guide from; "
            f"use guidance 1")


def model_vocabulary(model: UNet, info: dict | None = None) -> dict[str, tuple[int, int, int]]:
    """The colour words a text model was trained with, in its embedding order (from its file's
    header when it has one, so a model keeps its words when this code's vocabulary grows)."""
    stored = (info or {}).get("vocabulary")
    if stored:
        return {name: hex_rgb(code) for name, code in stored.items()}
    return vocabulary_colours(model.config.vocabulary)


def encode_prompt(model: UNet, prompt: str, info: dict | None = None) -> torch.Tensor | None:
    """A user's prompt as the model's text input (1, slots, 4); None for an empty prompt, or one
    that names no colour (",,,", " and "). A prompt for a model trained without text is one clear error."""
    if not prompt.strip():
        return None
    if not model.config.text:
        raise AnimecolorError("this model was trained without text, so it cannot follow --prompt "
                              "(train with pretrain.unet.text: true)")
    vocabulary = model_vocabulary(model, info)
    parsed = parse_prompt(prompt, vocabulary)
    if not parsed:
        return None
    return torch.from_numpy(encode(parsed, vocabulary))[None]


# ---------------------------------------------------------------- images
def is_colour_image(rgb: np.ndarray, fraction: float = 0.05) -> bool:
    """True for a colour picture, False for a line drawing or a gray scan (`imageio.colour_fraction`)."""
    return colour_fraction(rgb) > fraction


@dataclass(frozen=True)
class Letterbox:
    """Where the original image sits inside the square model canvas."""

    height: int
    width: int
    x0: int
    y0: int
    inner_w: int
    inner_h: int


def letterbox(image: np.ndarray, size: int, fill: int = 255) -> tuple[np.ndarray, Letterbox]:
    """Scale the long side to `size` and pad to size x size with `fill` (white paper)."""
    h, w = image.shape[:2]
    scale = size / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    inner = cv2.resize(image, (nw, nh), interpolation=interp)
    canvas = np.full((size, size, *image.shape[2:]), fill, np.uint8)
    x0, y0 = (size - nw) // 2, (size - nh) // 2
    canvas[y0:y0 + nh, x0:x0 + nw] = inner
    return canvas, Letterbox(h, w, x0, y0, nw, nh)


def unletterbox(image: np.ndarray, box: Letterbox) -> np.ndarray:
    """Inverse of `letterbox`: crop the padding and resize back to the original size."""
    inner = image[box.y0:box.y0 + box.inner_h, box.x0:box.x0 + box.inner_w]
    return cv2.resize(inner, (box.width, box.height), interpolation=cv2.INTER_CUBIC)


def upscaled_truth(truth: np.ndarray, lines: np.ndarray, model_size: int) -> np.ndarray:
    """A picture through the compositor alone: shrunk to the model's size, scaled back under the
    full-size `lines` as a coloured drawing is. The full-size benchmark's baseline: what a perfect
    model-size colour layer would give (uint8 RGB at the picture's size)."""
    small, box = letterbox(truth, model_size)
    return Colored(unletterbox(small, box), lines, None).image()


def reads_as_colour(rgb: np.ndarray, mode: str) -> bool:
    """Whether `prepare_sketch` draws the picture's lines with XDoG (a colour picture) or reads it as
    lines; in auto mode judged with the paper's tint taken out (`scan.untinted`: cream paper is not colour),
    on the 64 px copy `colour_fraction` reads anyway."""
    if mode != "auto":
        return mode == "xdog"
    rgb = np.dstack([rgb] * 3) if rgb.ndim == 2 else rgb[..., :3]  # grey, or RGBA's colours
    return is_colour_image(untinted(cv2.resize(rgb, (64, 64), interpolation=cv2.INTER_AREA)))


def prepare_sketch(rgba: np.ndarray, size: int, mode: str = "auto", auto_levels: bool = True,
                   binarize: bool = False, sigma: float = 0.5,
                   descreen: bool = False) -> tuple[np.ndarray, np.ndarray, Letterbox, str | None]:
    """User drawing -> (model-size sketch uint8 (size, size), full-size line layer uint8 (H, W), box, notice).

    mode: "auto" (colour images get XDoG lines, with a notice), "lines" (use as drawn), "xdog" (always extract).
    auto_levels levels a scan's or photo's paper to white and its darkest lines to black (`scan.py`; a
    drawing already on white paper is unchanged); descreen erases a manga drawing's screentone and
    keeps the lines over it (`scan.descreened`; a drawing without tone is unchanged); binarize applies Otsu.
    """
    rgb = flatten_alpha(rgba)
    notice = None
    if reads_as_colour(rgb, mode):
        small, box = letterbox(rgb, size)
        sketch, full = LINES.sketch(small, sigma), LINES.sketch(rgb, sigma)
        notice = "colour image: lines extracted with XDoG (as in training)" if mode == "auto" else None
        return sketch, full, box, notice
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if auto_levels:
        gray = level_lines(gray)
    if descreen:
        gray, erased = descreened(gray)
        if erased:
            notice = f"screentone taken out of the lines ({erased:.0%} of the drawing)"
    if binarize:
        gray = binarize_lines(gray)
    sketch, box = letterbox(gray, size)
    return sketch, gray, box, notice


def relined(lines: np.ndarray, reline: str, traced: bool, levelled: bool = True, soft_trained: bool = False) -> bool:
    """Whether the model's views of a drawing get their lines drawn again by the training XDoG at the
    model's size: `reline` "on", or "auto" for a drawing marked in greys (`scan.soft_lines`: pencil,
    a soft brush), which shrunk to the model's size is a faint grey blur; "auto" judges only a
    drawing `levelled` by `--auto-levels` (as drawn, grey paper would count as marks), and leaves
    every drawing as drawn for a model trained on soft drawings too (`soft_trained`:
    `trained_on_soft_lines`). Never for a colour picture (`traced`), whose views are XDoG already.
    `lines`: the full-size line layer (`prepare_sketch`).
    `colorize_layers` draws the whole picture's view again only when it is shrunk at most
    `RELINE_SHRINK` times or is a face picture (`faces.face_picture`): a larger figure's whole view
    is a blur of tone at the model's size; a face's and a tile's squares always."""
    return not traced and (reline == "on" or reline == "auto" and levelled and not soft_trained and soft_lines(lines))


def trained_on_soft_lines(info: dict) -> bool:
    """True when the model file says its pretraining drew some sketches as soft drawings (`soft_lines`,
    `pretrain.lines.soft_p` > 0, in the pretrain record of `training.data`): it reads a pencil
    drawing as drawn. False for files that do not record it."""
    soft = _pretrain_record(info).get("soft_lines")
    return isinstance(soft, (int, float)) and soft > 0


def prepare_reference(rgba: np.ndarray, size: int) -> np.ndarray:
    """Colour reference -> uint8 RGB (size, size), letterboxed on white."""
    return letterbox(flatten_alpha(rgba), size)[0]


@dataclass(frozen=True)
class ColorizeOptions:
    sample_steps: int = SAMPLING.sample_steps  # DDIM steps
    guidance: float = SAMPLING.guidance
    eta: float = SAMPLING.eta
    seed: int = SAMPLING.seed
    mode: str = "auto"        # auto | lines | xdog
    auto_levels: bool = True  # a scan's or photo's paper levelled to white, its darkest lines to black (scan.py)
    binarize: bool = False
    descreen: bool = True     # a manga drawing's screentone erased, the lines over it kept (scan.descreened)
    reline: str = "auto"      # a pencil or soft drawing's lines drawn again at the model's size (`relined`)
    keep_lines: bool = True   # multiply the drawing's own full-resolution lines over the result
    prompt: str = ""          # colour prompt (data/prompt.py) for a text model; "" = reference only
    text_guidance: float = SAMPLING.text_guidance  # guidance scale on the prompt (conditioning.guided)
    hints: tuple[Hint, ...] = ()  # colour hints: regions recoloured exactly after the model (hints.py)
    faces: bool = True        # colour each face found in a larger drawing again at face scale (faces.py)
    tiles: bool = True        # ... and the whole figure in face-sized tiles (faces.py; size: tile_scale)
    align: bool = True        # the reference's parts for the face and the tiles by its lines laid on the drawing's
    tile_scale: float = TILE_SCALE  # the tiles' side, times the face square's
    match_chroma: float = STRENGTH  # the reference's saturation, 0 (off) to 1 (chroma.py)
    match_lightness: float = LIGHTNESS  # the reference's lightness on a figure outside its faces, 0 to 1 (chroma.py)
    even_regions: float = EVEN  # a figure's colours evened out in each line-enclosed region (sigma, face sides)
    keep_paper: bool = True   # a drawing on opaque paper: the paper around the figure keeps the paper's colour


def check_options(opts: ColorizeOptions) -> None:
    """Every sampling knob in range, whoever calls (the CLI, the app, a notebook): a NaN or inf
    scale would only paint a black picture. One AnimecolorError line naming the knob."""
    for name, value, low, high, integer in (("steps", opts.sample_steps, 1, MAX_STEPS, True),
                                            ("guidance", opts.guidance, 0, MAX_GUIDANCE, False),
                                            ("eta", opts.eta, 0, 1, False),
                                            ("text guidance", opts.text_guidance, 0, MAX_GUIDANCE, False),
                                            ("seed", opts.seed, 0, MAX_SEED, True),
                                            ("match chroma", opts.match_chroma, 0, 1, False),
                                            ("match lightness", opts.match_lightness, 0, 1, False),
                                            ("even regions", opts.even_regions, 0, MAX_EVEN, False),
                                            ("tile scale", opts.tile_scale, *TILE_SCALES, False)):
        number = isinstance(value, int if integer else (int, float)) and not isinstance(value, bool)
        if not number or not math.isfinite(value) or not low <= value <= high:
            kind = "a whole number" if integer else "a number"
            raise AnimecolorError(f"{name} {shown(value)}: must be {kind} from {low} to {high}")
    for name, value in (("auto levels", opts.auto_levels), ("binarize", opts.binarize), ("descreen", opts.descreen),
                        ("keep lines", opts.keep_lines), ("faces", opts.faces), ("tiles", opts.tiles),
                        ("align", opts.align), ("keep paper", opts.keep_paper)):
        if not isinstance(value, (bool, np.bool_)):
            raise AnimecolorError(f"{name} {shown(value)}: must be true or false")
    if opts.mode not in MODES:
        raise AnimecolorError(f"mode {shown(opts.mode)}: expected {', '.join(MODES)}")
    if opts.reline not in RELINES:
        raise AnimecolorError(f"reline {shown(opts.reline)}: expected {', '.join(RELINES)}")
    if not isinstance(opts.prompt, str):
        raise AnimecolorError(f"prompt {shown(opts.prompt)}: must be text")


def check_sizes(**pictures: np.ndarray | None) -> None:
    """A drawing or reference (uint8 (H, W, C); None: not given) too small to hold anything (a
    thumbnail, an icon, a wrong file) is one AnimecolorError line, before any work."""
    for name, picture in pictures.items():
        if picture is not None and min(picture.shape[:2]) < MIN_SIDES[name]:
            height, width = picture.shape[:2]
            raise AnimecolorError(f"the {name} is {width}x{height} px: its shorter side must be at least "
                                  f"{MIN_SIDES[name]} px")


def sprite_alpha(rgba: np.ndarray, lines: np.ndarray) -> np.ndarray | None:
    """The drawing's alpha channel (uint8 (H, W)) when the picture keeps it, else None.

    None for an opaque drawing, and for lines on transparent paper (its opaque pixels are mostly
    line pixels: the paper is paper, coloured as on white). A sprite -- its opaque part is more
    than its lines -- keeps its alpha exactly. A fully transparent drawing is one error."""
    alpha = rgba[..., 3]
    if alpha.min() == 255:
        return None
    if alpha.max() == 0:
        raise AnimecolorError("the drawing is fully transparent: nothing is drawn on it")
    opaque = alpha >= 128
    paper = binarize_lines(lines) == 255
    if np.count_nonzero(opaque & paper) <= 0.5 * np.count_nonzero(opaque):
        return None
    return alpha.copy()


def with_alpha(rgb: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    return rgb if alpha is None else np.dstack([rgb, alpha])


@dataclass(frozen=True)
class Colored:
    """One coloured drawing as layers, at the drawing's size (uint8)."""

    colour: np.ndarray        # (H, W, 3) RGB: the model's colours, hints applied, without lines
    lines: np.ndarray         # (H, W): the drawing's line layer as the model read it, 255 = paper
    alpha: np.ndarray | None  # (H, W): the drawing's alpha for a sprite (`sprite_alpha`), else None
    keep_lines: bool = True

    def image(self) -> np.ndarray:
        """The picture: RGB, or RGBA with the drawing's alpha; the lines multiplied over the colours
        with keep_lines (= `lines_layer` stacked over `colour_layer`)."""
        rgb = self.colour
        if self.keep_lines:
            rgb = np.round(rgb.astype(np.float32) * (self.lines.astype(np.float32)[..., None] / 255.0)).astype(np.uint8)
        return with_alpha(rgb, self.alpha)

    def colour_layer(self) -> np.ndarray:
        """The colours without lines: RGB, or RGBA with the drawing's alpha."""
        return with_alpha(self.colour, self.alpha)

    def lines_layer(self) -> np.ndarray:
        """The lines on transparency: RGBA, black, alpha 255 - line layer (a line's darkness)."""
        out = np.zeros((*self.lines.shape, 4), np.uint8)
        out[..., 3] = 255 - self.lines
        return out


def colorize_image(model: UNet, diffusion: Diffusion, sketch_rgba: np.ndarray, reference_rgba: np.ndarray | None,
                   opts: ColorizeOptions, device: torch.device | str = "cpu",
                   step_progress: Callable[[int], None] | None = None,
                   info: dict | None = None) -> tuple[np.ndarray, str | None]:
    """One drawing and one reference (uint8 RGBA, any sizes; None with a prompt) -> uint8 RGB (RGBA
    for a sprite) at the drawing's size, notice."""
    images, notice = colorize_variations(model, diffusion, sketch_rgba, reference_rgba, opts, [opts.seed], device,
                                         step_progress, info)
    return images[0], notice


def colorize_variations(model: UNet, diffusion: Diffusion, sketch_rgba: np.ndarray, reference_rgba: np.ndarray | None,
                        opts: ColorizeOptions, seeds: list[int], device: torch.device | str = "cpu",
                        step_progress: Callable[[int], None] | None = None,
                        info: dict | None = None) -> tuple[list[np.ndarray], str | None]:
    """The same drawing and reference coloured once per seed, in one batch; variation k is exactly
    what `colorize_image` gives with seed seeds[k]. Returns uint8 RGB (RGBA for a sprite) images at
    the drawing's size. Without a reference the prompt alone gives the colours (the null reference,
    as in training)."""
    layers, notice = colorize_layers(model, diffusion, sketch_rgba, reference_rgba, opts, seeds, device,
                                     step_progress, info)
    return [colored.image() for colored in layers], notice


def colorize_layers(model: UNet, diffusion: Diffusion, sketch_rgba: np.ndarray, reference_rgba: np.ndarray | None,
                    opts: ColorizeOptions, seeds: list[int], device: torch.device | str = "cpu",
                    step_progress: Callable[[int], None] | None = None,
                    info: dict | None = None) -> tuple[list[Colored], str | None]:
    """`colorize_variations` as layers (`Colored`), one per seed. A hint that cannot apply (outside
    the picture, on a line, no closed regions), a drawing or reference too small (`MIN_SIDES`) and a
    fully transparent drawing fail before sampling."""
    check_options(opts)
    check_sizes(drawing=sketch_rgba, reference=reference_rgba)
    size = model.config.image_size
    text = encode_prompt(model, opts.prompt, info)
    if reference_rgba is None and text is None:
        raise AnimecolorError("give a colour reference, a prompt, or both")
    sketch, lines, box, notice = prepare_sketch(sketch_rgba, size, opts.mode, opts.auto_levels, opts.binarize,
                                                descreen=opts.descreen)
    alpha = sprite_alpha(sketch_rgba, lines)
    masks = hint_masks(opts.hints, lines, alpha)
    traced = reads_as_colour(flatten_alpha(sketch_rgba), opts.mode)  # a colour picture: its lines by XDoG
    redrawn = relined(lines, opts.reline, traced, opts.auto_levels, trained_on_soft_lines(info or {}))
    # a figure shrunk further is a blur of tone at the model's size: only its faces and tiles
    found = None  # animeface's finds, sought once for the face-picture rule and the face pass
    if redrawn and max(lines.shape) > RELINE_SHRINK * size:
        found = found_faces(flatten_alpha(sketch_rgba))
    whole_redrawn = redrawn and (found is None or found[1])
    if whole_redrawn:
        sketch = LINES.sketch(sketch, RELINE_SIGMA)
    views, face_notice, mirrored, ref_side = _face_views(sketch_rgba, reference_rgba, lines, size, opts, traced,
                                                         redrawn, None if found is None else found[0])
    if whole_redrawn or redrawn and views:
        why = "soft lines" if opts.reline == "auto" else "--reline on"
        notice = "; ".join(filter(None, (notice, f"{why}: drawn again by XDoG at the model's size")))
    if mirrored:  # the reference faces the other way (`faces.register`): the whole picture takes it turned too
        reference_rgba = np.ascontiguousarray(reference_rgba[:, ::-1])
    n, k_views = len(seeds), 1 + len(views)  # the whole drawing, then each view, per seed
    s = torch.stack([to_tensor(x) for x in [sketch, *(v.sketch for v in views)]]).repeat_interleave(n, 0).to(device)
    if reference_rgba is None:
        r = torch.zeros(n * k_views, 3, size, size, device=device)
    else:
        refs = [prepare_reference(reference_rgba, size), *(v.reference for v in views)]
        r = torch.stack([to_tensor(x) for x in refs]).repeat_interleave(n, 0).to(device)
    guidance = opts.guidance if reference_rgba is not None else 1.0  # no reference: u = e_r, scale is moot
    chunk = max(n, min(n * k_views, MAX_BATCH))
    out = colorize_batch(model, diffusion, s, r, sample_steps=opts.sample_steps, guidance=guidance,
                         eta=opts.eta, seeds=list(seeds) * k_views, batch_size=chunk,
                         step_progress=_per_step(step_progress, math.ceil(n * k_views / chunk)),
                         text=None if text is None else text.expand(n * k_views, -1, -1),
                         text_guidance=opts.text_guidance)
    shown_lines = lines if opts.keep_lines else None  # hints hold their colour in the picture, lines multiplied
    figure_pixels = figure = reference_paper = background = None
    # a face's side sets how wide a gap in the outline is sealed; without one found, a third of the shorter side
    main = next((v.square.side for v in views if not v.tile), min(lines.shape) / NO_FACE_SHARE)
    if opts.keep_paper and alpha is None and not traced:
        background = paper_background(lines, close=round(PAPER_SEAL * main), bottom=False)
        beside = ~background & (binarize_lines(lines) == 255)  # the figure off its lines, for `plain_paper`
        # the paper as the drawing was read (its line layer, levelled by --auto-levels or --binarize):
        # white under the lines multiplied over it, else the line layer's own paper grey
        tone = np.full(3, 255.0) if opts.keep_lines else paper_tone(np.dstack([lines] * 3), background)
    if views:  # the figure's own pixels: a sprite's opaque ones, or those off the paper around it
        if alpha is None:  # sealed, the frame's bottom taken as a line
            figure_pixels = ~paper_background(lines, close=round(CLOSE_GAPS * main), bottom=False)
        else:
            figure_pixels = alpha > 0
        kept = np.zeros((*lines.shape, 1))  # the faces' feathers: where the face pass was blended in
        for v in views:
            if not v.tile and (part := v.square.inside(lines.shape)) is not None:
                kept[part[0], part[1]] = np.maximum(kept[part[0], part[1]], v.square.weight()[part[2], part[3]])
        figure = figure_pixels & (kept[..., 0] == 0)  # the faces keep the model's lightness
    # the reference's pixels that the figure's are matched to: where only the drawing's figure counts (a
    # sprite, or the figure off its paper), an opaque reference's figure too, off the paper around it
    reference_lines = reference_figure = off_paper = None
    matched = opts.match_chroma > 0 or (opts.match_lightness > 0 and views)
    if reference_rgba is not None and matched and (views or alpha is not None):
        reference_rgb = flatten_alpha(reference_rgba)
        reference_lines = LINES.sketch(reference_rgb, 0.5)
        if reference_rgba.shape[-1] < 4 or reference_rgba[..., 3].min() >= OPAQUE:
            side = ref_side or min(reference_rgba.shape[:2]) / NO_FACE_SHARE
            edge = paper_background(reference_lines, close=round(CLOSE_GAPS * side), bottom=False)
            # of the areas reaching its edge, those near white: paper, not hair cut by the frame or a scene
            reference_figure = ~plain_paper(edge, reference_rgb, np.full(3, 255.0))
            off_paper = reference_figure
            if reference_figure.mean() < MIN_FIGURE:  # the paper ran into the figure: its saturation counts
                reference_figure = None  # whole; its lightness, off the paper reaching its edge (unsealed)
                off_paper = ~paper_background(reference_lines)
    if reference_rgba is not None and opts.match_lightness > 0 and views:  # the lightness the figure takes
        reference_paper = reference_lines >= 128  # off its lines: the colour layer has none
        if off_paper is not None:
            reference_paper &= off_paper
    regions = None
    if views and opts.even_regions > 0:  # the figure's areas, its outline's gaps sealed as for its mask, evened
        seal = max(1, round(CLOSE_GAPS * main))  # at the main face's scale; the faces count, and keep their colours
        regions = np.where(figure_pixels, sealed_regions(lines, seal), 0)
        sigma = opts.even_regions * main  # the faces' colours come back by their feather: no seam
        rim = figure_pixels
    elif opts.even_regions > 0 and (enlarged := max(lines.shape) / size) >= MIN_ENLARGED:
        # a picture coloured whole (a face picture): the enlarged colour layer's halos along the lines
        # and its bleed across them, evened inside areas found with the lines' gaps sealed
        seal = max(1, round(EVEN_SEAL * enlarged))
        regions = sealed_regions(lines, seal)
        rim = np.ones(lines.shape, bool) if alpha is None else alpha > 0
        if alpha is not None:
            regions = np.where(alpha > 0, regions, 0)
        sizes = np.bincount(regions.ravel())
        sizes[0] = 0  # an area holding most of the picture is not one its lines enclose (they are broken)
        regions[np.isin(regions, np.flatnonzero(sizes > MAX_AREA * regions.size))] = 0
        sigma = EVEN_WHOLE * enlarged * opts.even_regions / EVEN
        kept = np.zeros((*lines.shape, 1))
    if regions is not None:  # the pixels beside the lines, which the evening leaves as painted: a pale halo goes
        rim = rim & (regions == 0) & (binarize_lines(lines) == 255)
    layers, kept_paper = [], []
    for k in range(n):
        colour = unletterbox(to_uint8(out[k]), box)
        tiled = [(v, out[j * n + k]) for j, v in enumerate(views, start=1) if v.tile]
        if tiled:  # the tiles' feathered mean over the whole picture's colour, each pixel by its colour's firmness
            mosaic = Mosaic(colour.shape)
            for v, image in tiled:
                image = to_uint8(image)
                mosaic.add(v.square, resize_square(image, v.square.side).astype(np.float64),
                           confidence(image, v.square.side))
            colour = mosaic.over(colour)
        for j, v in enumerate(views, start=1):
            if not v.tile:
                colour = v.square.blend(colour, resize_square(to_uint8(out[j * n + k]), v.square.side))
        if reference_rgba is not None:
            opaque = figure_pixels if alpha is None else alpha > 0  # a figure on paper: not the paper's haze
            if figure is not None:
                colour = match_lightness(colour, reference_rgba, opts.match_lightness, figure, reference_paper)
            colour = match_chroma(colour, reference_rgba, opts.match_chroma, opaque, reference_figure)
        if regions is not None:
            evened = darken_rim(colour, even_regions(colour, regions, sigma), regions, rim, seal + 1).astype(np.float64)
            colour = np.round(evened + kept * (colour - evened)).astype(np.uint8)
        if background is not None:  # after the model, before the hints: a hint on the paper still colours it
            paper = plain_paper(background, colour, tone, figure=beside, reach=round(PAPER_REACH * main))
            colour = lay_paper(colour, paper, tone)
            kept_paper.append(paper.mean())
        layers.append(Colored(apply_hints(colour, opts.hints, masks, shown_lines), lines, alpha, opts.keep_lines))
    return layers, "; ".join(filter(None, (notice, face_notice, _paper_notice(kept_paper)))) or None


def _paper_notice(shares: list[float]) -> str | None:
    """What `colorize_layers` says of the paper it kept: its share of the picture, per variation."""
    kept = [share for share in shares if share > 0]
    if not kept:
        return None
    if len(shares) == 1:
        return f"the paper around the figure kept as drawn ({kept[0]:.0%} of the picture)"
    return (f"the paper around the figure kept as drawn in {len(kept)} of {len(shares)} variations "
            f"({min(kept):.0%}-{max(kept):.0%} of the picture)")


def _per_step(step_progress: Callable[[int], None] | None, chunks: int) -> Callable[[int], None] | None:
    """`step_progress` advanced once per DDIM step of the whole request, however many chunks it is sampled in."""
    if step_progress is None or chunks == 1:
        return step_progress
    calls = 0

    def advance(k: int = 1) -> None:
        nonlocal calls
        calls += k
        while calls >= chunks:
            calls -= chunks
            step_progress(1)

    return advance


@dataclass(frozen=True)
class _View:
    """A square of the drawing coloured on its own at the model's size (`faces.py`)."""

    square: Square
    sketch: np.ndarray            # model-size sketch, read as the whole drawing is read
    reference: np.ndarray | None  # model-size reference; None without a reference
    tile: bool                    # a tile of the whole figure (averaged) or a face (feathered over)


def _face_views(sketch_rgba: np.ndarray, reference_rgba: np.ndarray | None, lines: np.ndarray, size: int,
                opts: ColorizeOptions, xdog: bool, redrawn: bool = False,
                faces: list[Square] | None = None) -> tuple[list[_View], str | None, bool, int | None]:
    """The squares of a larger drawing coloured again at face scale (`faces.py`), a notice, whether
    the reference was mirrored, and the reference's face's side (None when none was sought or
    found): each face found, with the reference's own face square as its reference (else the
    whole reference), and with `opts.tiles` the figure in tiles of
    `opts.tile_scale` times the face's side, each with the part of the reference at the same place
    relative to the two faces, scaled alike; with `opts.align` the first face's reference square
    is laid by the lines (`register`), the reference mirrored when that fits better, and each
    tile's part of the reference is then sought near there by the tile's own lines (`local_source`). `lines` is
    the drawing's full-size line layer (`prepare_sketch`): a drawing read as lines is cropped from
    it, so every square is read with the same levels as the whole; a colour picture's squares (`xdog`:
    `reads_as_colour`) get their lines by XDoG at the model's size, as the whole does, and so do a soft
    drawing's (`redrawn`: `relined`) after the crop is shrunk. Tiles of blank paper, and tiles
    whose part of the reference lies less than `MIN_REFERENCE_COVERAGE` on it, are left to the
    whole-picture pass. `faces`: the drawing's `drawing_faces` when the caller has sought them."""
    if not opts.faces:
        return [], None, False, None
    rgb = flatten_alpha(sketch_rgba)
    faces = drawing_faces(rgb) if faces is None else faces
    if not faces:
        return [], None, False, None

    def sketch_of(square: Square) -> np.ndarray:
        interpolation = cv2.INTER_AREA if square.side >= size else cv2.INTER_CUBIC
        if xdog:
            crop = cv2.resize(square.crop(rgb), (size, size), interpolation=interpolation)
            return prepare_sketch(np.dstack([crop, np.full((size, size), 255, np.uint8)]), size, "xdog")[0]
        small = cv2.resize(square.crop(lines, 255), (size, size), interpolation=interpolation)
        return LINES.sketch(small, RELINE_SIGMA) if redrawn else small

    said = f"{len(faces)} face{'s' * (len(faces) > 1)} coloured again at face scale"
    reference = ref_face = laid = reference_lines = None
    mirrored = False
    if reference_rgba is not None:
        reference = flatten_alpha(reference_rgba)
        ref_face = laid = largest_face_square(reference)
        said += ", from the reference's face" if ref_face is not None else " (no face found in the reference)"
        if ref_face is not None and opts.align:
            reference_lines = LINES.sketch(reference, 0.5)
            laid, mirrored, gain = register(lines, reference_lines, faces[0], ref_face)
            if laid.coverage(reference.shape) < min(MIN_REFERENCE_COVERAGE, ref_face.coverage(reference.shape)):
                laid, mirrored, gain = ref_face, False, 0.0  # the face's crop would fall off the reference
            if mirrored:
                reference = np.ascontiguousarray(reference[:, ::-1])
                reference_lines = np.ascontiguousarray(reference_lines[:, ::-1])
                ref_face = Square(reference.shape[1] - ref_face.x0 - ref_face.side, ref_face.y0, ref_face.side)
            if gain:
                said += f", laid on the drawing's lines{' mirrored' * mirrored} (correlation +{gain:.2f})"

    def reference_of(square: Square | None) -> np.ndarray | None:
        if reference is None:
            return None
        return letterbox(reference if square is None else square.crop(reference), size)[0]

    views = []
    if opts.tiles and reference is not None and ref_face is None:
        said += "; no tiles: they need the reference's face"
    elif opts.tiles and (count := tile_count(faces[0], rgb.shape, opts.tile_scale)) > MAX_TILES:
        at = "" if opts.tile_scale == 1 else f" at tile scale {opts.tile_scale:g}; a larger --tile-scale takes fewer"
        said += f"; no tiles: the figure would take {count} (at most {MAX_TILES}{at})"
    elif opts.tiles:
        placed = 0  # tiles whose part of the reference their own lines moved
        for tile in tiles(faces[0], rgb.shape, opts.tile_scale):
            part = tile.inside(lines.shape)
            if part is None or not np.any(lines[part[0], part[1]] < PAPER):
                continue  # blank paper
            if reference is not None:
                source = tile.mapped(faces[0], laid)
                if source.coverage(reference.shape) < MIN_REFERENCE_COVERAGE:
                    continue  # its part of the reference is mostly outside the reference
                if reference_lines is not None:  # --align: the tile's part sought by its own lines
                    moved, _ = local_source(lines, reference_lines, tile, source)
                    if moved.coverage(reference.shape) >= MIN_REFERENCE_COVERAGE:
                        source, placed = moved, placed + (moved != source)
                views.append(_View(tile, sketch_of(tile), reference_of(source), True))
            else:
                views.append(_View(tile, sketch_of(tile), None, True))
        sized = "face-sized" if opts.tile_scale == 1 else f"{opts.tile_scale:g}x-face-sized"
        said += f"; the figure in {len(views)} {sized} tiles" + (f", {placed} placed by their lines" if placed else "")
    views += [_View(face, sketch_of(face), reference_of(laid if j == 0 else ref_face), False)
              for j, face in enumerate(faces)]
    return views, said, mirrored, None if ref_face is None else ref_face.side


def layer_paths(path: Path) -> tuple[Path, Path]:
    """Where a picture's layers go beside it: `<stem>_colour.png` (`Colored.colour_layer`) and
    `<stem>_lines.png` (`Colored.lines_layer`)."""
    return path.with_name(f"{path.stem}_colour.png"), path.with_name(f"{path.stem}_lines.png")


def png_text(opts: ColorizeOptions, sketch: Path, reference: Path | None, model_path: Path,
             info: dict) -> dict[str, str]:
    params = {**asdict(opts), "sketch": str(sketch), "reference": str(reference or ""), "model": str(model_path),
              "model_step": info.get("step"), "image_size": info.get("image_size")}
    params.pop("hints")
    if opts.hints:
        params["hints"] = [str(hint) for hint in opts.hints]
    return {"Software": "animecolor", "animecolor": json.dumps(params)}
