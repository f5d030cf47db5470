"""A scan or photo of a drawing read as clean lines (`pipeline/scan.py`, `colorize --auto-levels`)."""

import json

import cv2
import numpy as np
from PIL import Image
from typer.testing import CliRunner

import pipeline.colorize as C
from pipeline.colorize import ColorizeOptions, letterbox, prepare_sketch, reads_as_colour, relined
from pipeline.data.synthetic import generate_face
from pipeline.data.xdog import XDoGConfig
from pipeline.scan import level_lines, paper_light, soft_lines, untinted
from stages.cli import app

runner = CliRunner()
CREAM = np.array([245, 236, 214], np.float32)


def lines_of(seed: int = 3, size: int = 192) -> np.ndarray:
    """A procedural face's XDoG lines: uint8 (H, W), 255 = paper."""
    _, rgb, _ = generate_face(seed, 1, size, 0.0)
    return XDoGConfig().sketch(rgb, 0.5)


def photo_of(lines: np.ndarray, low: float = 0.65, grain: float = 5.0, seed: int = 0) -> np.ndarray:
    """The lines as a photo on cream paper: ink at a fifth of the paper, the light falling from the
    top left (0.97) to the bottom right (`low`), grain, uint8 RGB."""
    h, w = lines.shape
    y, x = np.mgrid[0:h, 0:w]
    light = 0.97 - (0.97 - low) * (x / (w - 1) + y / (h - 1)) / 2
    ink = 1 - lines.astype(np.float32) / 255
    rgb = CREAM * (1 - 0.8 * ink[..., None]) * light[..., None]
    rgb += np.random.default_rng(seed).normal(0, grain, (h, w, 1))
    return np.clip(rgb, 0, 255).astype(np.uint8)


def pencil_of(seed: int = 3, size: int = 192) -> np.ndarray:
    """A procedural face as a pencil drawing: its grey levels divided by their blurred negative (the
    dodge of a pencil sketch: soft grey strokes and shading, no black), uint8 (H, W)."""
    _, rgb, _ = generate_face(seed, 1, size, 0.0)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    negative = cv2.GaussianBlur(255 - grey, (0, 0), 4)
    return np.clip(grey * 255 / np.maximum(255 - negative, 1), 0, 255).astype(np.uint8)


def test_clean_lines_on_white_come_back_unchanged():
    """A drawing on flat white paper whose lines reach black: the levelling is the identity."""
    for seed in (1, 2, 3):
        lines = lines_of(seed)
        assert np.array_equal(level_lines(lines), lines)


def test_a_digital_drawing_with_soft_edged_lines_comes_back_unchanged():
    """Anti-aliased 2 px lines on pure white, dense (about 13 % ink) and sparse (under 1 %): the lines'
    grey edges are neither counted as paper grain nor stretched by a black point taken off the paper."""
    rng = np.random.default_rng(0)
    for count in (60, 3):
        drawing = np.full((800, 800), 255, np.uint8)
        for _ in range(count):
            x0, y0, x1, y1 = (int(v) for v in rng.integers(0, 800, 4))
            cv2.line(drawing, (x0, y0), (x1, y1), 0, 2, cv2.LINE_AA)
        assert np.abs(level_lines(drawing).astype(int) - drawing).max() <= 1


def test_a_photo_on_cream_paper_with_falling_light_comes_back_on_white():
    lines = lines_of()
    grey = cv2.cvtColor(photo_of(lines), cv2.COLOR_RGB2GRAY)
    paper, ink = lines == 255, lines < 32
    # before: the paper's light falls from top left to bottom right by about a third
    corner = slice(0, 40)
    assert grey[corner, corner][paper[corner, corner]].mean() - grey[-40:, -40:][paper[-40:, -40:]].mean() > 50
    out = level_lines(grey)
    for part in ((corner, corner), (slice(-40, None), slice(-40, None))):
        assert out[part][paper[part]].mean() > 245  # white in both corners
    assert np.median(out[ink]) < 40  # the lines dark
    assert (out[paper] < 200).mean() < 0.01  # no grain left standing out on the paper
    surface, noise = paper_light(grey)
    assert surface[0, 0] > surface[-1, -1] + 50 and 3 < noise < 8


def test_a_shadow_with_an_edge_is_lifted_and_a_black_fill_kept():
    """A shadow across two fifths of the page (0.6 of the light, a soft edge), which no quadratic follows,
    comes out white like the lit paper; a solid black fill (hair) stays black."""
    lines = lines_of(4, 256)
    lines[150:210, 30:90] = 0  # a black fill
    h, w = lines.shape
    y, x = np.mgrid[0:h, 0:w]
    shadow = cv2.GaussianBlur(np.where(x > 0.6 * w, 0.6, 1.0).astype(np.float32), (0, 0), 3)
    grey = 235 * (1 - 0.8 * (1 - lines / 255.0)) * shadow + np.random.default_rng(2).normal(0, 3, lines.shape)
    out = level_lines(np.clip(grey, 0, 255).astype(np.uint8))
    paper = lines == 255
    dark, lit = paper & (x > 0.67 * w), paper & (x < 0.53 * w)
    assert out[lit].mean() > 245 and out[dark].mean() > 240
    assert out[155:205, 35:85].mean() < 20


def test_a_sparse_sketch_keeps_its_paper_white():
    """A few faint strokes (well under a percent of the picture): the black point is capped, so the
    paper is not stretched into grey."""
    grey = np.full((200, 200), 220, np.uint8)
    grey[100, 20:180] = 150  # one faint stroke, 0.8 % of the picture
    grey = np.clip(grey + np.random.default_rng(1).normal(0, 2, grey.shape), 0, 255).astype(np.uint8)
    out = level_lines(grey)
    assert (out[:90] < 200).mean() < 0.01 and out[100, 20:180].mean() < 180


def test_a_picture_that_is_mostly_ink_gets_a_plain_stretch():
    grey = np.full((100, 100), 40, np.uint8)
    grey[:20] = 140  # a fifth light, the rest dark ink
    out = level_lines(grey)
    assert out[50, 50] == 0 and out[5, 5] == 255


def test_cream_paper_is_not_colour_but_a_colour_picture_still_is():
    lines = lines_of()
    photo = photo_of(lines)
    assert not reads_as_colour(photo, "auto") and reads_as_colour(photo, "xdog")
    grey = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)  # a grey or an RGBA array is judged as its colours
    assert not reads_as_colour(grey, "auto") and not reads_as_colour(np.dstack([photo, grey]), "auto")
    assert np.array_equal(untinted(photo)[0, 0], [255, 255, 255]) or untinted(photo)[0, 0].min() > 240
    _, face, _ = generate_face(3, 1, 192, 0.0)
    assert reads_as_colour(face, "auto")
    dark = np.full((32, 32, 3), (40, 90, 160), np.uint8)  # not paper-like: left as it is
    assert untinted(dark) is dark


def test_prepare_sketch_levels_by_default_and_not_when_asked():
    lines = lines_of()
    photo = photo_of(lines)
    rgba = np.dstack([photo, np.full(lines.shape, 255, np.uint8)])
    _, levelled, _, notice = prepare_sketch(rgba, 64)
    _, as_drawn, _, _ = prepare_sketch(rgba, 64, auto_levels=False)
    paper = lines == 255
    assert notice is None  # read as lines, not traced with XDoG
    assert levelled[paper].mean() > 245 and as_drawn[paper].mean() < 215


def test_the_cli_levels_a_photo_and_records_it(model_file, tmp_path):
    lines = lines_of(5, 96)
    Image.fromarray(photo_of(lines)).save(tmp_path / "photo.jpg", quality=70)
    _, ref, _ = generate_face(5, 1, 96, 0.0)
    Image.fromarray(ref).save(tmp_path / "ref.png")
    read = {}
    for name, flags in (("on", []), ("off", ["--no-auto-levels"])):
        out = tmp_path / f"{name}.png"
        result = runner.invoke(app, ["colorize", str(tmp_path / "photo.jpg"), "-r", str(tmp_path / "ref.png"),
                                     "--model", str(model_file), "-o", str(out), "--steps", "1", "--layers", *flags])
        assert result.exit_code == 0, result.output
        assert "colour image" not in result.output  # cream paper: read as lines, not traced
        assert "soft lines" not in result.output  # inked lines; as drawn, "auto" does not judge grey paper
        assert json.loads(Image.open(out).text["animecolor"])["auto_levels"] == (name == "on")
        read[name] = np.asarray(Image.open(tmp_path / f"{name}_lines.png").convert("RGBA"))[..., 3]
    paper = lines == 255  # the lines layer is the drawing as read, on transparency: levelled, its paper clear
    assert read["on"][paper].mean() < 10 and read["off"][paper].mean() > 40


def test_a_pencil_drawing_reads_as_soft_and_inked_lines_do_not():
    for seed in (1, 2, 3):
        assert soft_lines(level_lines(pencil_of(seed)))
        assert not soft_lines(level_lines(lines_of(seed)))
        photo = cv2.cvtColor(photo_of(lines_of(seed), seed=seed), cv2.COLOR_RGB2GRAY)
        assert not soft_lines(level_lines(photo))  # a photo of inked lines, levelled
        _, rgb, _ = generate_face(seed, 1, 384, 0.0)  # XDoG drawn at twice the size and shrunk: anti-aliased
        smooth = cv2.resize(XDoGConfig().sketch(rgb, 0.5), (192, 192), interpolation=cv2.INTER_AREA)
        assert not soft_lines(smooth)  # the median of its marks: 64
    inked = np.full((400, 400), 255, np.uint8)  # anti-aliased 2 px digital lines: grey edges, black core
    for k in range(12):
        cv2.line(inked, (10, 15 + 30 * k), (390, 40 + 25 * k), 0, 2, cv2.LINE_AA)
    assert not soft_lines(inked)
    faint = np.full((400, 400), 255, np.uint8)  # a few grey specks are not a drawing
    faint[:4, :40] = 180
    assert not soft_lines(faint)


def test_relined_for_a_soft_drawing_read_as_lines_or_when_asked():
    pencil, inked = pencil_of(), lines_of()
    assert relined(pencil, "auto", False) and not relined(inked, "auto", False)
    grey_paper = cv2.cvtColor(photo_of(inked), cv2.COLOR_RGB2GRAY)  # inked lines read as drawn, not levelled
    assert soft_lines(grey_paper) and not relined(grey_paper, "auto", False, levelled=False)
    assert not relined(pencil, "auto", False, levelled=False) and relined(pencil, "on", False, levelled=False)
    assert not relined(pencil, "auto", True) and not relined(pencil, "on", True)  # a colour picture: XDoG already
    assert relined(inked, "on", False) and not relined(pencil, "off", False)
    # a model trained on soft drawings reads a pencil drawing as drawn; "on" still draws it again
    assert not relined(pencil, "auto", False, soft_trained=True) and relined(pencil, "on", False, soft_trained=True)


def test_colorize_gives_the_model_a_pencil_drawing_redrawn_by_xdog(model_file, monkeypatch):
    """The model's view of a face-sized pencil drawing is the training XDoG of the shrunk drawing
    (hard lines, no grey shading), with a notice; `reline="off"` gives it the shrunk greys; the
    full-size line layer multiplied over the result is the drawing as drawn either way."""
    net, diffusion, _ = C.load_model(model_file)
    _, ref, _ = generate_face(4, 1, 96, 0.0)
    ref = np.dstack([ref, np.full(ref.shape[:2], 255, np.uint8)])
    seen = {}
    real = C.colorize_batch

    def spy(model, diffusion, s, r, **kw):
        seen["views"] = np.round(s[:, 0].numpy() * 127.5 + 127.5).astype(np.uint8)
        seen["sketch"] = seen["views"][0]
        return real(model, diffusion, s, r, **kw)

    monkeypatch.setattr(C, "colorize_batch", spy)
    size = net.config.image_size
    assert C.RELINE_SHRINK * size == 128
    # a drawing shrunk at most RELINE_SHRINK times, or a face picture, is drawn again; a larger
    # figure's whole view is not (a blur of tone at the model's size), only its faces' and tiles'
    for side, reline, portrait, again in ((128, "auto", False, True), (128, "off", True, False),
                                          (192, "auto", True, True), (192, "auto", False, False)):
        monkeypatch.setattr(C, "found_faces", lambda rgb: ([], portrait))  # noqa: B023 (called within the iteration)
        pencil = pencil_of(3, side)
        drawing = np.dstack([pencil] * 3 + [np.full(pencil.shape, 255, np.uint8)])
        shrunk = letterbox(pencil, size)[0]
        opts = ColorizeOptions(sample_steps=1, mode="lines", faces=False, reline=reline)
        (layer,), notice = C.colorize_layers(net, diffusion, drawing, ref, opts, [0])
        want = XDoGConfig().sketch(shrunk, 0.5) if again else shrunk
        assert np.abs(seen["sketch"].astype(int) - want).max() <= 1
        assert ("soft lines" in (notice or "")) == again  # said only when something was drawn again
        assert np.array_equal(layer.lines, pencil)
    # a larger drawing with a face: its whole view is not drawn again, its face's square is
    face = C.Square(40, 30, 64)
    sought = []  # animeface is run once: the face-picture rule's finds are the face pass's
    monkeypatch.setattr(C, "found_faces", lambda image: sought.append("found") or ([face], False))
    monkeypatch.setattr(C, "drawing_faces", lambda image: sought.append("drawing") or [face])
    monkeypatch.setattr(C, "largest_face_square", lambda image: None)
    for reline in ("auto", "off"):
        opts = ColorizeOptions(sample_steps=1, mode="lines", tiles=False, align=False, reline=reline)
        _, notice = C.colorize_layers(net, diffusion, drawing, ref, opts, [0])
        crop = cv2.resize(face.crop(pencil, 255), (size, size), interpolation=cv2.INTER_AREA)
        assert len(seen["views"]) == 2 and np.array_equal(seen["views"][0], shrunk)
        want = XDoGConfig().sketch(crop, 0.5) if reline == "auto" else crop
        assert np.abs(seen["views"][1].astype(int) - want).max() <= 1
        assert ("soft lines" in (notice or "")) == (reline == "auto")
        assert sought == (["found"] if reline == "auto" else ["drawing"])
        sought.clear()
    # a model whose file says it was trained on soft drawings: `auto` leaves them as drawn
    soft_model = {"training": {"data": [{"stage": "pretrain", "soft_lines": 0.3}, {"stage": "finetune"}]}}
    opts = ColorizeOptions(sample_steps=1, mode="lines", tiles=False, align=False)
    _, notice = C.colorize_layers(net, diffusion, drawing, ref, opts, [0], info=soft_model)
    crop = cv2.resize(face.crop(pencil, 255), (size, size), interpolation=cv2.INTER_AREA)
    assert np.array_equal(seen["views"][1], crop) and "soft lines" not in (notice or "")
