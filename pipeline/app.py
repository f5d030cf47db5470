"""`animecolor app`: a web page (Gradio Blocks) to colour line drawings with the exported model.

    build_app(model_path, device) -> gr.Blocks     the page, model loaded once, queue configured
    launch(model_path, host, port, device)         serve it (127.0.0.1 by default, never a share link)

The model is loaded once, when the page is built, and shared by every visitor. Requests that run
it go through one queue with a concurrency limit (default 1: on a CPU, two pictures at once only
split the cores and both take twice as long; later visitors see their place in the queue). A
DDIM-step progress bar moves over the output while a picture is made.

Inputs: a line drawing (upload, the sketch pad, or a colour picture whose lines are extracted with
the pipeline's XDoG, with a preview), the reference and/or a colour prompt (text models:
`data/prompt.py`) with its guidance scale, DDIM steps, guidance, eta, seed, keep-lines, the face pass
(a figure's faces and face-sized tiles coloured again: `faces.py`) with the tiles' size, the
figure's lightness and its regions evened out, the reference's saturation (`chroma.py`).
Output: the coloured drawing at the drawing's own size as a PNG with the parameters in its tEXt
chunks (as `animecolor colorize` writes them) and its two layers as downloads (`colorize
--layers`), a gallery of recent results, and "4 variations" (seeds seed .. seed+3 in one batch;
variation k is exactly `colorize --seed <seed+k>`). A click on the picture with the colour
picker's colour adds a colour hint (`colorize --hint`) and makes the picture again with it. Under
the title: what the model was trained on, from its file.

Every problem with a visitor's file (unreadable, too many pixels, missing) or any other failure
in a request ends as one line in the page's status box: never a traceback, and the server keeps
serving. Uploads are capped at MAX_FILE_SIZE by Gradio, images at MAX_PIXELS here.

Gradio never reaches the network: analytics off, no share link, the theme's fonts are local.
"""

from __future__ import annotations

import atexit
import logging
import math
import random
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np

from pipeline.chroma import EVEN as EVEN_REGIONS
from pipeline.chroma import LIGHTNESS as MATCH_LIGHTNESS
from pipeline.chroma import MAX_EVEN
from pipeline.chroma import STRENGTH as MATCH_CHROMA
from pipeline.colorize import (LINES, ColorizeOptions, check_options, colorize_layers, flatten_alpha,
                               guidance_warning, layer_paths, load_model, png_text, training_data,
                               without_reference_dropout)
from pipeline.data.imageio import decode_image, write_png, write_png_text
from pipeline.data.synthetic import generate_face
from pipeline.data.tps import TPSConfig, apply_warp, random_warp
from pipeline.device import resolve_device
from pipeline.errors import AnimecolorError, shown
from pipeline.hints import click_hint, hint_colour, parse_hints
from pipeline.model.defaults import DEFAULT_MODEL, SAMPLING, TILE_SCALE, TILE_SCALES

log = logging.getLogger("animecolor.app")

MAX_FILE_SIZE = "20mb"       # Gradio refuses bigger uploads before they reach us
MAX_PIXELS = 16_000_000      # per image; the CLI's guard is imageio.MAX_PIXELS (64 MP)
N_VARIATIONS = 4
GALLERY_SIZE = 12            # recent results kept per visitor
RESULTS_KEPT_S = 24 * 3600   # result PNGs older than this are removed (Gradio's cache: the same)
MAX_SEED = 2**31 - 1
XDOG_SIGMA = 0.5             # the sigma `prepare_sketch` uses for colour pictures
EXAMPLE_SEED = 777           # crawl seed of the example faces; the pipeline trains on base.seed (0)


# ---------------------------------------------------------------- reading uploads, examples, the model, one request
def read_upload(path: str | Path | None, what: str, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """A visitor's image file -> uint8 RGBA, or AnimecolorError with a one-line message that names
    the file as the visitor called it (never the server's temporary path). The one decoder
    (`imageio.decode_image`: header pixel check before decoding, 16 bit, alpha)."""
    if not path:
        raise AnimecolorError(f"no {what}: upload one")
    path = Path(path)
    try:
        if path.exists() and not path.is_file():  # a FIFO or /dev/zero would never end
            raise AnimecolorError(f"{what} {shown(path.name)}: not a regular file")
        data = path.read_bytes()
    except (OSError, ValueError):  # ValueError: a NUL in the name
        raise AnimecolorError(f"{what} {shown(path.name)}: not a readable file") from None
    return decode_image(data, f"{what} {path.name}", max_pixels)


def extracted_lines(rgba: np.ndarray) -> np.ndarray:
    """The full-resolution XDoG line layer of a colour picture, exactly as `prepare_sketch` makes it."""
    return LINES.sketch(flatten_alpha(rgba), XDOG_SIGMA)


def pad_drawing(value) -> np.ndarray | None:
    """The sketch pad's composite as uint8 RGBA, or None when nothing is drawn on it."""
    composite = value.get("composite") if isinstance(value, dict) else value
    if composite is None:
        return None
    img = np.asarray(composite)
    if img.dtype.kind not in "uif" or img.ndim not in (2, 3) or img.size == 0 or \
            (img.ndim == 3 and img.shape[2] not in (3, 4)):
        raise AnimecolorError("the sketch pad's picture is not an image (H x W x 3 or 4)")
    if img.ndim == 2:
        img = np.dstack([img] * 3)
    if img.shape[2] == 3:
        img = np.dstack([img, np.full(img.shape[:2], 255, np.uint8)])
    img = img.astype(np.uint8)
    if flatten_alpha(img).min() > 245:  # blank paper
        return None
    return img


def make_examples(folder: str | Path, size: int = 256) -> list[tuple[Path, Path]]:
    """Two (drawing, reference) pairs made by the pipeline itself, written as PNGs into `folder`.

    Procedural faces from crawl seed EXAMPLE_SEED (training uses base.seed), at a portrait size
    so the letterboxing shows; lines by the training XDoG. Example 1: the drawing's own character
    as reference, TPS-warped as in training; example 2: another character's colours.
    """
    folder = Path(folder)
    rng = np.random.default_rng(0)
    width = int(size * 0.8) | 1
    faces = []
    for index in range(3):
        rgb = generate_face(EXAMPLE_SEED, index, size, 0.3)[1]
        faces.append(np.ascontiguousarray(rgb[:, (size - width) // 2:(size - width) // 2 + width]))
    pairs = []
    for k, (drawing, ref) in enumerate([(0, 0), (1, 2)], start=1):
        reference = faces[ref]
        if drawing == ref:
            reference = apply_warp(reference, random_warp(TPSConfig(), rng, *reference.shape[:2]))
        sketch = LINES.sketch(faces[drawing], XDOG_SIGMA)
        d, r = folder / f"example{k}_drawing.png", folder / f"example{k}_reference.png"
        write_png(d, sketch)
        write_png(r, reference)
        pairs.append((d, r))
    return pairs


class Colorizer:
    """The model, loaded once, and one request's work: colour, then write PNGs with the parameters."""

    def __init__(self, model_path: str | Path, device: str = "auto", out_dir: str | Path | None = None):
        self.model_path = Path(model_path)
        self.device = resolve_device(device)
        self.model, self.diffusion, self.info = load_model(self.model_path, self.device)
        self.out_dir = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="animecolor-app-"))
        self.out_dir.mkdir(parents=True, exist_ok=True)

    def __call__(self, sketch_rgba: np.ndarray, reference_rgba: np.ndarray | None, opts: ColorizeOptions,
                 seeds: list[int], names: tuple[str, str] = ("drawing", "reference"),
                 step_progress=None) -> tuple[list[Path], str | None]:
        """Colour the drawing once per seed (one batch); returns the PNG paths and the pipeline's notice.
        Each picture's layers (colours without lines, lines on transparency) are written beside it
        (`colorize.layer_paths`)."""
        layers, notice = colorize_layers(self.model, self.diffusion, sketch_rgba, reference_rgba, opts, seeds,
                                         self.device, step_progress, self.info)
        self.prune()
        folder = self.out_dir / uuid.uuid4().hex[:12]
        stem = re.sub(r"[^\w.-]+", "_", Path(names[0]).stem)[:60] or "drawing"
        paths = []
        for seed, colored in zip(seeds, layers):
            seed_opts = ColorizeOptions(**{**opts.__dict__, "seed": seed})
            path = folder / f"{stem}_colored_seed{seed}.png"
            metadata = png_text(seed_opts, Path(names[0]), Path(names[1]) if names[1] else None, self.model_path,
                                self.info)
            write_png_text(path, colored.image(), metadata)
            for layer_path, image in zip(layer_paths(path), (colored.colour_layer(), colored.lines_layer())):
                write_png_text(layer_path, image, metadata)
            paths.append(path)
        return paths, notice


    def prune(self, max_age_s: float = RESULTS_KEPT_S) -> None:
        """Remove result folders older than `max_age_s` (a visitor's gallery refers to recent ones)."""
        now = time.time()
        for folder in self.out_dir.iterdir():
            try:
                if folder.is_dir() and now - folder.stat().st_mtime > max_age_s:
                    shutil.rmtree(folder, ignore_errors=True)
            except OSError:
                pass


def drawing_input(source: str, drawing: str | None, pad, picture: str | None) -> tuple[np.ndarray, str, str]:
    """(RGBA drawing, `prepare_sketch` mode, its name) from the input tab the visitor is on:
    "upload" (mode auto: a colour upload gets XDoG lines, with a notice), "draw", "picture" (XDoG)."""
    if source == "draw":
        rgba = pad_drawing(pad)
        if rgba is None:
            raise AnimecolorError("the sketch pad is empty: draw something (or use the Upload tab)")
        return rgba, "lines", "sketchpad.png"
    if source == "picture":
        if not picture:
            raise AnimecolorError("no colour picture: upload one (or use the Upload tab)")
        return read_upload(picture, "colour picture"), "xdog", Path(picture).name
    if not drawing:
        raise AnimecolorError("no line drawing: upload one, draw one, or pick an example below")
    return read_upload(drawing, "drawing"), "auto", Path(drawing).name


@dataclass(frozen=True)
class Result:
    paths: list[Path]   # PNGs with the parameters in their tEXt chunks, one per seed
    seeds: list[int]
    status: str         # the line for the page's status box


@dataclass(frozen=True)
class PageInputs:
    """The page's widget values for one request, as Gradio hands them over (numbers may be floats,
    the seed None when the box is empty)."""
    source: str = "upload"          # the drawing's input tab: upload | draw | picture (`drawing_input`)
    drawing: str | None = None      # uploaded line drawing (a file path)
    pad: dict | None = None         # the sketch pad's value
    picture: str | None = None      # colour picture whose lines are extracted (a file path)
    reference: str | None = None    # colour reference (a file path)
    steps: float = SAMPLING.sample_steps
    guidance: float = SAMPLING.guidance
    eta: float = SAMPLING.eta
    seed: float | None = SAMPLING.seed
    keep_lines: bool = True
    prompt: str = ""
    text_guidance: float = SAMPLING.text_guidance
    hints: str = ""                 # colour hints "X,Y,COLOUR", separated by ";" or new lines (`hints.parse_hints`)
    face_pass: bool = True          # a figure's faces and its tiles coloured again (`colorize --faces --tiles`)
    match_chroma: float = MATCH_CHROMA  # `colorize --match-chroma`: the reference's saturation, 0 to 1
    tile_scale: float = TILE_SCALE  # `colorize --tile-scale`: the figure's tiles' side, times the face's
    match_lightness: float = MATCH_LIGHTNESS  # `colorize --match-lightness`: the figure's, 0 to 1
    even_regions: float = EVEN_REGIONS  # `colorize --even-regions`: the figure's regions, 0 to MAX_EVEN
    keep_paper: bool = True         # `colorize --keep-paper`: a drawing on opaque paper keeps its paper


def add_hint(hints: str | None, x: int, y: int, colour: str | None) -> str:
    """The hints box after a click at (x, y) on the picture with the colour picker's value (a hex code,
    or the "rgb(a)(r, g, b, ...)" some browsers send)."""
    value = (colour or "").strip()
    numbers = re.fullmatch(r"rgba?\(\s*([\d.]+)\s*,\s*([\d.]+)\s*,\s*([\d.]+)\s*(?:,\s*[\d.]+\s*)?\)", value)
    if numbers:
        rgb = tuple(min(255, round(float(c))) for c in numbers.groups())
    else:
        rgb = hint_colour(value or "#000000", "colour picker")
    new = str(click_hint(x, y, rgb))
    return f"{hints.strip()}; {new}" if hints and hints.strip() else new


def request(colorizer: Colorizer, n: int, inputs: PageInputs,
            progress: Callable[[int, int], None] | None = None) -> Result:
    """One press of Colorize (n = 1) or of the variations button (n seeds: seed .. seed+n-1, one batch).
    `progress(done, total)` is called before the first DDIM step and after each one. Raises
    AnimecolorError for anything the visitor can fix."""
    t0 = time.perf_counter()
    # every value as the CLI checks it, before any file is read: the page's sliders are no guard (an API
    # call may send NaN, a string, anything JSON)
    numbers = dict(sample_steps=_number(inputs.steps, whole=True), guidance=_number(inputs.guidance),
                   eta=_number(inputs.eta), text_guidance=_number(inputs.text_guidance),
                   seed=_number(SAMPLING.seed if inputs.seed is None else inputs.seed, whole=True),
                   match_chroma=_number(inputs.match_chroma), tile_scale=_number(inputs.tile_scale),
                   match_lightness=_number(inputs.match_lightness), even_regions=_number(inputs.even_regions))
    check_options(ColorizeOptions(**numbers))  # the library's own ranges, before any file is read
    if numbers["seed"] > MAX_SEED:  # the page's seed box holds 31 bits
        raise AnimecolorError(f"seed {shown(inputs.seed)}: must be a whole number from 0 to {MAX_SEED}")
    if not isinstance(inputs.prompt, (str, type(None))):
        raise AnimecolorError("prompt: must be text")
    if inputs.source not in ("upload", "draw", "picture"):
        raise AnimecolorError(f"source {shown(inputs.source)}: expected upload, draw or picture")
    for what, value in (("drawing", inputs.drawing), ("colour picture", inputs.picture), ("reference", inputs.reference)):
        if not isinstance(value, (str, Path, type(None))):
            raise AnimecolorError(f"{what}: expected an uploaded file")
    sketch, mode, name = drawing_input(inputs.source, inputs.drawing, inputs.pad, inputs.picture)
    reference, prompt = inputs.reference, (inputs.prompt or "").strip()
    if not reference and not prompt:
        raise AnimecolorError("no reference: upload a colour picture of the character, or describe its colours "
                              "in the prompt")
    ref = read_upload(reference, "reference") if reference else None
    opts = ColorizeOptions(**numbers, mode=mode, keep_lines=bool(inputs.keep_lines), prompt=prompt,
                           faces=bool(inputs.face_pass), tiles=bool(inputs.face_pass),
                           keep_paper=bool(inputs.keep_paper),
                           hints=parse_hints(_text(inputs.hints, "hints")))
    seed = opts.seed
    seeds = [min(seed + k, MAX_SEED) for k in range(n)]
    done = 0

    def step(k: int = 1) -> None:
        nonlocal done
        done += k
        if progress:
            progress(done, opts.sample_steps)

    if progress:
        progress(0, opts.sample_steps)
    paths, notice = colorizer(sketch, ref, opts, seeds, (name, Path(reference).name if reference else ""), step)
    h, w = sketch.shape[:2]
    what = f"{n} variations (seeds {seeds[0]}-{seeds[-1]})" if n > 1 else f"seed {seed}"
    said = f", prompt \"{_escape(opts.prompt)}\" (text guidance {opts.text_guidance:g})" if opts.prompt else ""
    said += f", {len(opts.hints)} colour hint{'s' if len(opts.hints) > 1 else ''}" if opts.hints else ""
    status = (f"Done: {w}×{h} px, {what}, {opts.sample_steps} DDIM steps, guidance {opts.guidance:g}, "
              f"eta {opts.eta:g}{said}: {time.perf_counter() - t0:.1f} s")
    for note in (notice, guidance_warning(colorizer.info, opts.guidance) if ref is not None else None):
        if note:
            status += f"  \nNote: {_escape(note)}"
    return Result(paths, seeds, status)


def _number(value, whole: bool = False) -> int | float:
    """A widget's number as Python's int (`whole`, when it is one) or float: Gradio hands over int, float
    or numeric text, an API call any JSON. Anything else is NaN, which `check_options` refuses in one line."""
    try:
        number = float(value) if isinstance(value, (int, float, str)) and not isinstance(value, bool) else math.nan
    except (ValueError, OverflowError):
        number = math.nan
    return int(number) if whole and math.isfinite(number) and number == int(number) else number


def _text(value, name: str) -> str:
    """A text box's value ("" for None); anything else (an API call may send any JSON) is one line."""
    if not isinstance(value, (str, type(None))):
        raise AnimecolorError(f"{name}: must be text")
    return value or ""


def _escape(text: str) -> str:
    return re.sub(r"([\\`*_\[\]<>#|~])", r"\\\1", text)


def _error_line(exc: BaseException) -> str:
    """One line for the page: the message of an AnimecolorError, a generic line for anything else."""
    if isinstance(exc, AnimecolorError):
        return str(exc).splitlines()[0] if str(exc) else "invalid input"
    if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():  # also torch.OutOfMemoryError
        return "out of memory: try a smaller image or fewer variations"
    log.exception("request failed")  # the traceback goes to the server's log, never to the page
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    return f"unexpected error ({type(exc).__name__}{': ' + first if first else ''})"


def _status_error(exc: BaseException) -> str:
    return f"**Error:** {_escape(_error_line(exc))}"


# ---------------------------------------------------------------- the page
class UploadImage(gr.Image):
    """gr.Image that hands the uploaded file's path over without opening it.

    Gradio's own preprocessing opens every upload with PIL, so a corrupt file or a decompression
    bomb would fail there with Gradio's generic error; here `read_upload` reads it and says what is
    wrong. Same front-end component as gr.Image (a "template" of it, like gr.Sketchpad).
    """

    is_template = True

    def preprocess(self, payload):
        if payload is None:
            return None
        if payload.path:
            return str(payload.path)
        try:  # a data: URL (pasted image): Gradio decodes it into a file
            return super().preprocess(payload)
        except Exception:  # noqa: BLE001
            raise gr.Error("the pasted image is not readable") from None


def build_app(model_path: str | Path = DEFAULT_MODEL, device: str = "auto", *, concurrency: int = 1,
              work_dir: str | Path | None = None) -> gr.Blocks:
    """The page with the model loaded (AnimecolorError if it is missing or not a model file).

    `concurrency`: model requests running at once (the rest wait in the queue); `work_dir`: where
    results and the generated examples go (default: a temporary folder removed at exit).
    """
    if work_dir is None:
        work_dir = Path(tempfile.mkdtemp(prefix="animecolor-app-"))
        atexit.register(shutil.rmtree, work_dir, ignore_errors=True)
    work_dir = Path(work_dir)
    colorizer = Colorizer(model_path, device, work_dir / "results")
    examples = make_examples(work_dir / "examples", size=max(256, 2 * colorizer.info["image_size"]))
    info = colorizer.info
    model_line = (f"Model `{_escape(colorizer.model_path.name)}`: {info['image_size']} px, "
                  f"training step {info.get('step')}, running on {colorizer.device.type}.")
    data_line, data_warning = training_data(info)
    model_line += f" It was {_escape(data_line)}."
    if data_warning:
        model_line += f"  \n**Warning:** {_escape(data_warning)}."

    def run(n: int, inputs: PageInputs, history, progress):
        try:
            result = request(colorizer, n, inputs,
                             lambda done, total: progress((done, total), desc="DDIM", unit="steps"))
        except Exception as exc:  # noqa: BLE001 - every failure is one line in the page
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), _status_error(exc)
        items = [(str(p), f"seed {s}") for p, s in zip(result.paths, result.seeds)]
        history = (items + list(history or []))[:GALLERY_SIZE]
        downloads = [str(f) for p in result.paths for f in (p, *layer_paths(p))]  # the picture, then its layers
        return str(result.paths[0]), downloads, history, history, result.status

    def button(n: int):
        """The callback of a button making n pictures. Gradio finds the progress tracker by a positional
        parameter with a gr.Progress default, so the widget values are named one by one, in the order
        of `inputs` below, and unpacked into PageInputs here."""
        def colorize(source, drawing, pad, picture, reference, steps, guidance, eta, seed, keep_lines, prompt,
                     text_guidance, hints, face_pass, match_chroma, tile_scale, match_lightness, even_regions,
                     keep_paper, history, progress=gr.Progress()):
            inputs = PageInputs(source, drawing, pad, picture, reference, steps, guidance, eta, seed, keep_lines,
                                prompt, text_guidance, hints, face_pass, match_chroma, tile_scale, match_lightness,
                                even_regions, keep_paper)
            return run(n, inputs, history, progress)
        return colorize

    def clicked(source, drawing, pad, picture, reference, steps, guidance, eta, seed, keep_lines, prompt,
                text_guidance, hints, face_pass, match_chroma, tile_scale, match_lightness, even_regions, keep_paper,
                history, colour,
                evt: gr.SelectData,
                progress=gr.Progress()):
        """A click on the picture: its region gets the picker's colour (a hint), and the picture is made
        again with it (same seed: only that region changes). A hint that cannot apply is the status
        line, and the hints box stays as it was."""
        try:
            x, y = (int(v) for v in evt.index)
            new = add_hint(hints, x, y, colour)
        except Exception as exc:  # noqa: BLE001
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), _status_error(exc), gr.skip()
        inputs = PageInputs(source, drawing, pad, picture, reference, steps, guidance, eta, seed, keep_lines,
                            prompt, text_guidance, new, face_pass, match_chroma, tile_scale, match_lightness,
                            even_regions, keep_paper)
        values = run(1, inputs, history, progress)
        failed = isinstance(values[4], str) and values[4].startswith("**Error")
        return (*values, gr.skip() if failed else new)

    def preview_lines(picture):
        if not picture:
            return None, ""
        try:
            return extracted_lines(read_upload(picture, "colour picture")), ""
        except Exception as exc:  # noqa: BLE001
            return None, _status_error(exc)

    def drawing_uploaded(drawing):
        if not drawing:
            return gr.skip(), gr.skip()
        return "upload", gr.Tabs(selected="upload")

    with gr.Blocks(title="animecolor", analytics_enabled=False, delete_cache=(3600, RESULTS_KEPT_S)) as demo:
        source = gr.State("upload")
        history = gr.State([])
        gr.Markdown("# animecolor\nColour a line drawing in the colours of a reference picture of the same "
                    f"character (reference-based diffusion colorization). {model_line}")
        with gr.Row(equal_height=False):
            with gr.Column():
                with gr.Tabs(selected="upload") as tabs:
                    with gr.Tab("Upload a drawing", id="upload", elem_id="tab_upload") as tab_upload:
                        drawing = UploadImage(label="Line drawing", type="filepath", image_mode=None,
                                              sources=["upload", "clipboard"], height=340, elem_id="drawing")
                    with gr.Tab("Draw", id="draw", elem_id="tab_draw") as tab_draw:
                        pad = gr.Sketchpad(label="Sketch pad (dark lines on white)", type="numpy", height=340,
                                           canvas_size=(512, 512), layers=False, transforms=(), elem_id="sketchpad",
                                           brush=gr.Brush(colors=["#000000"], default_color="#000000",
                                                          color_mode="fixed", default_size=3))
                    with gr.Tab("From a colour picture", id="picture", elem_id="tab_picture") as tab_picture:
                        picture = UploadImage(label="Colour picture (its lines are extracted)", type="filepath",
                                              image_mode=None, sources=["upload", "clipboard"], height=240,
                                              elem_id="picture")
                        picture_lines = gr.Image(label=f"Extracted lines (XDoG, sigma {XDOG_SIGMA}, as in training)",
                                                 interactive=False, format="png", height=240,
                                                 buttons=["download", "fullscreen"], elem_id="picture_lines")
            with gr.Column():
                reference = UploadImage(label="Reference (the character in colour)", type="filepath", image_mode=None,
                                        sources=["upload", "clipboard"], height=340, elem_id="reference")
                has_text = colorizer.model.config.text
                prompt = gr.Textbox(label="Colour prompt: what the reference lacks, or overrides"
                                    if has_text else "Colour prompt (this model was trained without text)",
                                    interactive=has_text, elem_id="prompt",
                                    placeholder="pink hair, left eye red, right eye #3060ff, white shirt"
                                    if has_text else "retrain with pretrain.unet.text: true to use prompts")
                text_guidance = gr.Slider(0.0, 5.0, value=SAMPLING.text_guidance, step=0.1,
                                          label="Text guidance (prompt strength)", interactive=has_text,
                                          elem_id="text_guidance")
            with gr.Column():
                output = gr.Image(label="Coloured drawing (drawing's own size)", type="filepath", format="png",
                                  interactive=False, height=340, buttons=["download", "fullscreen"],
                                  elem_id="output")
                status = gr.Markdown(elem_id="status")
                with gr.Row():
                    picker = gr.ColorPicker(value="#ff66aa", label="Hint colour: click the picture to fill an area",
                                            elem_id="hint_colour")
                    clear_hints = gr.Button("Clear hints", size="sm", elem_id="clear_hints")
                hints = gr.Textbox(label="Colour hints (X,Y,COLOUR; ...)", elem_id="hints",
                                   placeholder="120,80,#ff66aa; 40,60,light blue")
                download = gr.File(label="PNG downloads: the picture, its colours without lines (_colour) and its "
                                         "lines on transparency (_lines); parameters in the metadata",
                                   file_count="multiple", interactive=False, elem_id="download")
        with gr.Row():
            run_button = gr.Button("Colorize", variant="primary", elem_id="run")
            variations_button = gr.Button(f"{N_VARIATIONS} variations", elem_id="variations")
        with gr.Row():
            steps = gr.Slider(1, 100, value=SAMPLING.sample_steps, step=1, label="DDIM steps", elem_id="steps")
            guided = not without_reference_dropout(info)  # else the scale has no unconditional output: 1 only
            guidance = gr.Slider(0.0, 5.0, value=SAMPLING.guidance if guided else 1.0, step=0.1, interactive=guided,
                                 elem_id="guidance",
                                 label="Guidance (reference strength)" if guided
                                 else "Guidance (this model was trained without reference dropout: 1 only)")
            eta = gr.Slider(0.0, 1.0, value=SAMPLING.eta, step=0.05, label="eta (0: deterministic)", elem_id="eta")
            with gr.Column(min_width=160):
                seed = gr.Number(value=SAMPLING.seed, minimum=0, maximum=MAX_SEED, precision=0, label="Seed",
                                 elem_id="seed")
                dice = gr.Button("Random seed", size="sm", elem_id="random_seed")
            keep_lines = gr.Checkbox(value=True, label="Keep the drawing's lines", elem_id="keep_lines")
            face_pass = gr.Checkbox(value=True, label="Whole figures: colour faces and the figure at face scale",
                                    elem_id="face_pass")
            match_chroma = gr.Slider(0.0, 1.0, value=MATCH_CHROMA, step=0.05, elem_id="match_chroma",
                                     label="Reference's saturation (0: the model's own colours)")
            tile_scale = gr.Slider(*TILE_SCALES, value=TILE_SCALE, step=0.05, elem_id="tile_scale",
                                   label="Whole figures: tile size, x the face (0.7: a reference in the same pose, "
                                         "real-art-pose model)")
            match_lightness = gr.Slider(0.0, 1.0, value=MATCH_LIGHTNESS, step=0.05, elem_id="match_lightness",
                                        label="Whole figures: reference's lightness outside the faces (0: the "
                                              "model's own)")
            even_regions = gr.Slider(0.0, MAX_EVEN, value=EVEN_REGIONS, step=0.05, elem_id="even_regions",
                                     label="Even the colours out inside each outlined area: whole figures over "
                                           "this many face sides, a face picture over a fraction of that (0: off)")
            keep_paper = gr.Checkbox(value=True, elem_id="keep_paper",
                                     label="Drawings on paper (no transparency): keep the paper around the figure")
        gallery = gr.Gallery(label="Recent results (newest first)", columns=8, height=200, format="png",
                             interactive=False, preview=False, object_fit="contain", fit_columns=False,
                             elem_id="gallery")
        gr.Examples(examples=[[str(d), str(r)] for d, r in examples], inputs=[drawing, reference],
                    label="Examples (procedural faces drawn by the pipeline; never seen in training)",
                    elem_id="examples")

        inputs = [source, drawing, pad, picture, reference, steps, guidance, eta, seed, keep_lines, prompt,
                  text_guidance, hints, face_pass, match_chroma, tile_scale, match_lightness, even_regions, keep_paper,
                  history]
        outputs = [output, download, gallery, history, status]
        run_button.click(button(1), inputs, outputs, api_name="colorize", concurrency_id="model",
                         concurrency_limit=concurrency)
        variations_button.click(button(N_VARIATIONS), inputs, outputs, api_name="variations", concurrency_id="model",
                                concurrency_limit=concurrency)
        dice.click(lambda: random.randint(0, MAX_SEED), None, seed, queue=False, api_visibility="private")
        output.select(clicked, [*inputs, picker], [*outputs, hints], concurrency_id="model",
                      concurrency_limit=concurrency, api_visibility="private")
        clear_hints.click(lambda: "", None, hints, queue=False, api_visibility="private")
        picture.change(preview_lines, picture, [picture_lines, status], concurrency_limit=4,
                       api_visibility="private")
        drawing.change(drawing_uploaded, drawing, [source, tabs], queue=False, api_visibility="private")
        for tab, name in [(tab_upload, "upload"), (tab_draw, "draw"), (tab_picture, "picture")]:
            tab.select(lambda name=name: name, None, source, queue=False, api_visibility="private")
    demo.queue(default_concurrency_limit=concurrency, max_size=64)
    demo.animecolor_work_dir = work_dir
    return demo


def check_address(host: str, port: int) -> None:
    """Fail before the model loads when the page cannot be served at host:port, naming the culprit:
    a host that is no address ("999.1.1.1"), one that is not this machine's, or a port in use."""
    import errno
    import ipaddress
    import socket

    looks_numeric = host.replace(".", "").isdigit() or ":" in host
    try:
        if looks_numeric:
            ipaddress.ip_address(host)
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (ValueError, UnicodeError, OSError):  # OSError: socket.gaierror
        raise AnimecolorError(f"--host {shown(host)}: not a valid host name or IP address") from None
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise AnimecolorError(f"port {port} is in use on {host}: pass another --port") from None
            raise AnimecolorError(f"--host {host}: cannot listen there ({exc.strerror}); give an address of this "
                                  "machine, e.g. 127.0.0.1") from None


def bind_url(host: str, port: int) -> str:
    """The address the server really listens on (Gradio reports 0.0.0.0 as localhost)."""
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


def exposure_warning(host: str) -> str | None:
    """A line for a page served beyond this machine (there is no login), None for a loopback address."""
    import ipaddress

    if host in ("0.0.0.0", "::", ""):
        return (f"the page is open to every network interface ({host or 'all'}) without a login: anyone who "
                "can reach this machine can use it and its model")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    return None if loopback else f"the page is open to the network at {host} without a login"


def launch(model_path: str | Path = DEFAULT_MODEL, host: str = "127.0.0.1", port: int = 7860, device: str = "auto",
           *, block: bool = True, quiet: bool = False, concurrency: int = 1,
           work_dir: str | Path | None = None) -> tuple[gr.Blocks, str]:
    """Build and serve the page; returns (blocks, local URL). `block=False` serves from a thread
    (stop it with `blocks.close()`). Never a public share link."""
    check_address(host, port)
    demo = build_app(model_path, device, concurrency=concurrency, work_dir=work_dir)
    try:
        _, url, _ = demo.launch(server_name=host, server_port=port, share=False, inbrowser=False,
                                prevent_thread_lock=not block, quiet=quiet, show_error=False,
                                max_file_size=MAX_FILE_SIZE, allowed_paths=[str(demo.animecolor_work_dir)],
                                ssr_mode=False, mcp_server=False, pwa=False, enable_monitoring=False,
                                footer_links=[], theme=gr.themes.Default())
    except OSError as exc:
        raise AnimecolorError(f"cannot serve on {host}:{port} ({exc}); pass another --port") from None
    return demo, url
