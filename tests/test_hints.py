"""Output an artist can use: colour hints, transparency in and out, `--layers`, and the model
saying what it was trained on. End to end with the tiny trained model (`model_file`)."""

import json
import re

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from skimage.color import deltaE_ciede2000, rgb2lab
from typer.testing import CliRunner

from pipeline.colorize import guidance_warning, trained_on_soft_lines, training_data
from pipeline.data.prompt import COLOURS
from pipeline.errors import AnimecolorError
from pipeline.hints import binarize_lines, fill_region, line_regions, parse_hint, parse_hints, sealed_regions
from stages.cli import app
from tests.helpers import tiny_pretrain

runner = CliRunner()
PINK, BLUE = (255, 0x66, 0xAA), COLOURS["light blue"]


def _lab(rgb) -> np.ndarray:
    return rgb2lab(np.asarray(rgb, np.float64).reshape(-1, 1, 3) / 255.0)[:, 0]


def median_delta_e(image: np.ndarray, mask: np.ndarray, rgb) -> float:
    """CIEDE2000 between the region's median colour (per-channel median in CIELAB) and `rgb`."""
    median = np.median(_lab(image[..., :3][mask]), axis=0)
    return float(deltaE_ciede2000(median, _lab(rgb)[0]))


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """A drawing of a circle and a box with anti-aliased lines (90 x 120), and a reference."""
    root = tmp_path_factory.mktemp("shapes")
    drawing = np.full((90, 120), 255, np.uint8)
    cv2.circle(drawing, (40, 45), 25, 0, 2, cv2.LINE_AA)
    cv2.rectangle(drawing, (75, 20), (110, 70), 0, 2, cv2.LINE_AA)
    Image.fromarray(drawing).save(root / "shapes.png")
    reference = np.zeros((64, 64, 3), np.uint8)
    reference[:32], reference[32:] = (230, 120, 60), (60, 90, 200)
    Image.fromarray(reference).save(root / "ref.png")
    return root


def colorize(model_file, drawing, out, *extra):
    result = runner.invoke(app, ["colorize", str(drawing), "-r", str(drawing.parent / "ref.png"), "--model",
                                 str(model_file), "-o", str(out), "--steps", "2", "--seed", "3", *extra])
    assert result.exit_code == 0, result.output
    return result


# ---------------------------------------------------------------- hints
def test_hint_syntax():
    assert parse_hint("120,80,#ff66aa").rgb == PINK
    assert parse_hint(" 3, 4, light_blue ").rgb == BLUE and parse_hint("3,4,Light Blue").rgb == BLUE
    assert parse_hint("3,4,#f6a").rgb == PINK and parse_hint("3,4,gray").rgb == COLOURS["grey"]
    assert [str(h) for h in parse_hints("1,2,red; 3,4,#00ff00\n")] == ["1,2,red", "3,4,#00ff00"]
    for bad, message in (("1,2", "expected X,Y,COLOUR"), ("a,2,red", "whole pixel numbers"),
                         ("1,2,pnk", "unknown colour 'pnk' (close: pink)"), ("1,2,#12", "not a hex colour")):
        with pytest.raises(AnimecolorError, match=re.escape(message)):
            parse_hint(bad)


def test_regions_are_the_areas_the_lines_enclose(shapes):
    lines = np.asarray(Image.open(shapes / "shapes.png"))
    count, labels = line_regions(lines)
    assert count == 3  # outside, inside the circle, inside the box
    inside_circle, inside_box, outside = labels[45, 40], labels[45, 92], labels[2, 2]
    assert len({inside_circle, inside_box, outside}) == 3 and 0 not in (inside_circle, inside_box, outside)
    assert labels[45, 15] == 0  # on the circle's line
    assert np.array_equal(labels == 0, binarize_lines(lines) == 0)  # line pixels: the Otsu binarisation


def test_sealed_regions_close_a_gap_in_an_outline_and_leave_the_lines_border_unlabelled():
    """A ring with a 4 px gap: `line_regions` joins its inside to the paper around it through the
    gap; sealed by 3 px the two are separate areas, every pixel within 3 px of the ink is 0, and
    the rest of the paper keeps one label per area. Seal 0 is `line_regions`."""
    lines = np.full((80, 80), 255, np.uint8)
    cv2.circle(lines, (40, 40), 25, 0, 2)
    lines[38:42, 63:68] = 255  # the gap, on the ring's right
    plain = line_regions(lines)[1]
    assert plain[40, 40] == plain[2, 2] != 0  # one area through the gap
    labels = sealed_regions(lines, 3)
    assert labels[40, 40] not in (0, labels[2, 2]) and labels[2, 2] != 0
    ink = binarize_lines(lines) == 0
    near = cv2.dilate(ink.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))) > 0
    assert np.array_equal(labels == 0, near)
    assert len(np.unique(labels[~near])) == 2
    assert np.array_equal(sealed_regions(lines, 0), plain)


@pytest.mark.parametrize("rgb, shaded", [(PINK, True), (BLUE, True), ((20, 20, 30), True), ((250, 250, 250), True),
                                         ((255, 0, 0), False)])  # pure red exists at one lightness only
def test_fill_keeps_shading_and_hits_the_median(rgb, shaded):
    """A shaded random colour layer: the region's median colour is the hint (also with anti-aliased
    lines multiplied over it), the shading is kept where the colour's gamut allows, nothing else moves."""
    rng = np.random.default_rng(0)
    yy = np.linspace(0, 1, 60)[:, None]
    colour = np.clip(rng.normal(0, 6, (60, 80, 3)) + (60 + 120 * yy)[..., None] * [1.0, 0.8, 0.6], 0, 255)
    colour = colour.astype(np.uint8)
    lines = np.full((60, 80), 255, np.uint8)
    cv2.ellipse(lines, (40, 30), (30, 22), 0, 0, 360, 0, 2, cv2.LINE_AA)
    count, labels = line_regions(lines)
    mask = labels == labels[30, 40]
    for shade in (None, lines):
        out = fill_region(colour, mask, rgb, shade)
        assert np.array_equal(out[~mask], colour[~mask])
        shown = out if shade is None else np.round(out * (lines[..., None] / 255.0)).astype(np.uint8)
        assert median_delta_e(shown, mask, rgb) < 1.0
    spread = np.ptp(_lab(out[mask])[:, 0])
    assert (spread > 3) == shaded  # the model's shading, where the colour's gamut leaves room


def test_cli_hints_recolour_only_their_regions(model_file, shapes, tmp_path):
    drawing = shapes / "shapes.png"
    colorize(model_file, drawing, tmp_path / "plain.png")
    colorize(model_file, drawing, tmp_path / "hinted.png", "--hint", "40,45,#ff66aa", "--hint", "92,45,light blue")
    plain, hinted = np.asarray(Image.open(tmp_path / "plain.png")), np.asarray(Image.open(tmp_path / "hinted.png"))
    _, labels = line_regions(np.asarray(Image.open(drawing)))
    circle, box = labels == labels[45, 40], labels == labels[45, 92]
    assert np.array_equal(plain[~(circle | box)], hinted[~(circle | box)])  # byte-identical outside
    assert median_delta_e(hinted, circle, PINK) < 1.0 and median_delta_e(hinted, box, BLUE) < 1.0
    assert median_delta_e(plain, circle, PINK) > 5  # the model alone did not paint it so
    params = json.loads(Image.open(tmp_path / "hinted.png").text["animecolor"])
    assert params["hints"] == ["40,45,#ff66aa", "92,45,light blue"] and params["seed"] == 3
    assert "hints" not in json.loads(Image.open(tmp_path / "plain.png").text["animecolor"])


# ---------------------------------------------------------------- transparency and layers
def test_rgba_sprite_keeps_its_alpha(model_file, shapes, tmp_path):
    """A sprite (a filled, outlined shape on a transparent background, soft edges) comes out RGBA
    with exactly its alpha; the model sees it on white, so the colours are those of the white-composited drawing
    (with the model's own chroma: `--match-chroma` reads only a sprite's opaque pixels, test_chroma.py)."""
    sprite = np.zeros((90, 120, 4), np.uint8)
    cv2.circle(sprite, (60, 45), 30, (255, 255, 255, 255), -1, cv2.LINE_AA)
    cv2.circle(sprite, (60, 45), 30, (0, 0, 0, 255), 2, cv2.LINE_AA)
    sprite[..., 3] = cv2.GaussianBlur(sprite[..., 3], (5, 5), 0)
    Image.fromarray(sprite).save(shapes / "sprite.png")
    white = sprite.copy()
    white[..., 3] = 255
    white[..., :3] = np.round(sprite[..., :3] * (sprite[..., 3:] / 255.0) + 255 * (1 - sprite[..., 3:] / 255.0))
    Image.fromarray(white[..., :3]).save(shapes / "on_white.png")
    own = ("--match-chroma", "0")
    colorize(model_file, shapes / "sprite.png", tmp_path / "sprite.png", "--layers", "--hint", "60,45,red", *own)
    colorize(model_file, shapes / "on_white.png", tmp_path / "on_white.png", "--hint", "60,45,red", *own)
    out = Image.open(tmp_path / "sprite.png")
    assert out.mode == "RGBA" and np.asarray(out)[..., 3].tobytes() == sprite[..., 3].tobytes()
    opaque = sprite[..., 3] == 255  # the paper around the figure on white is evened as one area with it,
    assert np.array_equal(np.asarray(out)[..., :3][opaque], np.asarray(Image.open(tmp_path / "on_white.png"))[opaque])
    colour = Image.open(tmp_path / "sprite_colour.png")  # the sprite's transparent background is not
    assert colour.mode == "RGBA" and np.array_equal(np.asarray(colour)[..., 3], sprite[..., 3])


def test_lines_on_transparent_paper_are_coloured_as_on_white(model_file, shapes, tmp_path):
    """A line layer exported on transparency (only the lines opaque) is not a sprite: the paper is paper."""
    lines = np.asarray(Image.open(shapes / "shapes.png"))
    layer = np.zeros((*lines.shape, 4), np.uint8)
    layer[..., 3] = 255 - lines
    Image.fromarray(layer).save(shapes / "layer.png")
    colorize(model_file, shapes / "layer.png", tmp_path / "layer.png")
    colorize(model_file, shapes / "shapes.png", tmp_path / "shapes.png")
    out = Image.open(tmp_path / "layer.png")
    assert out.mode == "RGB" and np.array_equal(np.asarray(out), np.asarray(Image.open(tmp_path / "shapes.png")))


def test_layers_stack_to_the_picture(model_file, shapes, tmp_path):
    result = colorize(model_file, shapes / "shapes.png", tmp_path / "o.png", "--layers")
    assert "1 of 1 written" in result.output
    picture = np.asarray(Image.open(tmp_path / "o.png")).astype(np.float32)
    colour, lines = Image.open(tmp_path / "o_colour.png"), Image.open(tmp_path / "o_lines.png")
    assert colour.mode == "RGB" and lines.mode == "RGBA" and colour.size == lines.size == (120, 90)
    lines = np.asarray(lines).astype(np.float32)
    assert not lines[..., :3].any()  # black lines
    drawing = np.asarray(Image.open(shapes / "shapes.png")).astype(np.float32)
    assert np.array_equal(lines[..., 3], 255 - drawing)  # alpha = the line's darkness
    stacked = np.asarray(colour).astype(np.float32) * (1 - lines[..., 3:] / 255.0)  # lines over colours
    assert np.abs(stacked - picture).max() <= 1.0
    plain = tmp_path / "plain.png"
    colorize(model_file, shapes / "shapes.png", plain)
    assert np.array_equal(np.asarray(Image.open(plain)), picture.astype(np.uint8))  # --layers changes nothing


# ---------------------------------------------------------------- provenance
def train_faces(tiny_data) -> int:
    return len((tiny_data[1] / "train" / "items.csv").read_text().splitlines()) - 1


def test_colorize_says_what_the_model_was_trained_on(model_file, tiny_data, shapes, tmp_path):
    result = colorize(model_file, shapes / "shapes.png", tmp_path / "o.png")
    n = train_faces(tiny_data)  # the tiny model: pretrain and the text stage on the train split
    assert f"trained on {n} procedural (synthetic) faces (pretrain, text)" in result.output
    warnings = [line for line in result.output.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "trained on procedural faces: expect pale colours on real art" in warnings[0]
    assert "docs/usage.md#training-data-sources" in warnings[0]


def test_an_old_model_file_says_unknown(model_file, tiny_data, shapes, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(model_file), "pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    info = json.loads(meta["animecolor"])
    assert [(r["stage"], r["sources"]) for r in info["training"]["data"]] == \
        [(stage, {"synthetic": train_faces(tiny_data)}) for stage in ("pretrain", "text")]
    info["training"].pop("data")
    save_file(tensors, str(tmp_path / "old.safetensors"), metadata={"animecolor": json.dumps(info)})
    result = colorize(tmp_path / "old.safetensors", shapes / "shapes.png", tmp_path / "o.png")
    assert "trained on unknown data" in result.output and "warning" not in result.output


def test_guidance_on_a_model_trained_without_reference_dropout_warns(model_file, tiny_pretrained, shapes, tmp_path):
    """The pretrain record carries its reference dropout; at 0 (the real-art recipe) a guidance
    scale other than 1 gets one warning line, and the picture is still made."""
    import yaml
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(model_file), "pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    info = json.loads(meta["animecolor"])
    params = yaml.safe_load((tiny_pretrained / "params.yaml").read_text())
    pretrain = info["training"]["data"][0]
    assert pretrain["stage"] == "pretrain" and pretrain["reference_dropout"] > 0
    tps = params["pairs"]["tps"]  # the references' moves (pretrain.reference_warp over pairs.tps), recorded
    moves = {k: tps.get(k, 1.0 if k.startswith(("scale", "moves")) else 0.0)
             for k in ("flip_p", "rotate_deg", "scale_min", "scale_max", "moves_p")}
    assert pretrain["reference_warp"] == moves
    assert pretrain["reference_dropout"] == params["pretrain"]["condition_dropout"]["p_uncond"]
    assert "soft_lines" not in pretrain  # recorded only when pretrain.lines.soft_p draws soft sketches
    assert "without reference dropout" not in colorize(model_file, shapes / "shapes.png", tmp_path / "a.png",
                                                       "--guidance", "2").output
    pretrain["reference_dropout"] = 0.0
    save_file(tensors, str(tmp_path / "nodrop.safetensors"), metadata={"animecolor": json.dumps(info)})
    guided = colorize(tmp_path / "nodrop.safetensors", shapes / "shapes.png", tmp_path / "b.png", "--guidance", "2")
    warnings = [line for line in guided.output.splitlines() if "without reference dropout" in line]
    assert len(warnings) == 1 and "guidance 2" in warnings[0] and (tmp_path / "b.png").exists()
    plain = colorize(tmp_path / "nodrop.safetensors", shapes / "shapes.png", tmp_path / "c.png")
    assert "without reference dropout" not in plain.output


@pytest.mark.parametrize("data, guidance, warned", [
    ([{"stage": "pretrain", "reference_dropout": 0.0}], 2.0, True),
    ([{"stage": "pretrain", "reference_dropout": 0.0}], 0.5, True),
    ([{"stage": "pretrain", "reference_dropout": 0.0}, {"stage": "finetune"}], 1.0, False),
    ([{"stage": "pretrain", "reference_dropout": 0.1}], 2.0, False),
    ([{"stage": "pretrain"}], 2.0, False),  # exported before the dropout was recorded
    (None, 2.0, False),
    (5, 2.0, False)])  # a header edited by hand: no crash
def test_guidance_warning(data, guidance, warned):
    assert (guidance_warning({"training": {} if data is None else {"data": data}}, guidance) is not None) == warned


@pytest.mark.parametrize("data, soft", [
    ([{"stage": "pretrain", "soft_lines": 0.3}, {"stage": "finetune"}], True),
    ([{"stage": "pretrain", "soft_lines": 0}], False),
    ([{"stage": "pretrain"}], False),  # no soft sketches, or exported before they were recorded
    ([{"stage": "finetune", "soft_lines": 0.3}], False),  # only pretraining draws them
    ([{"stage": "pretrain", "soft_lines": "yes"}], False),  # a header edited by hand: no crash
    (None, False),
    (5, False)])
def test_trained_on_soft_lines(data, soft):
    assert trained_on_soft_lines({"training": {} if data is None else {"data": data}}) is soft


def test_pretraining_with_soft_sketches_says_so_in_its_record(tiny_data, tmp_path):
    root = tiny_pretrain(tmp_path / "soft", tiny_data, {"pretrain.lines.soft_p": 0.5, "pretrain.loop.train_steps": 2})
    record = torch.load(root / "pretrain.pt", weights_only=False)["meta"]["data"][0]
    assert record["stage"] == "pretrain" and record["soft_lines"] == 0.5


@pytest.mark.parametrize("data, line, warned", [
    ([{"stage": "pretrain", "faces": 500, "sources": {"folder": 500}}], "a folder of 500 faces (pretrain)", False),
    ([{"stage": "pretrain", "faces": 90, "sources": {"booru": 80, "urls": 10}}],
     "80 faces from a booru + 10 faces from a URL list (pretrain)", False),
    ([{"stage": "pretrain", "faces": 9, "sources": {"synthetic": 9}}, {"stage": "finetune", "faces": 4,
                                                                         "sources": {"folder": 4}}],
     "9 procedural (synthetic) faces (pretrain); a folder of 4 faces (finetune)", True),
    (None, "unknown data", False),
    ([{"stage": "pretrain", "faces": 9, "sources": {"folder": 9},
       "reference_warp": {"flip_p": 0.0, "rotate_deg": 0.0, "scale_min": 1.0, "scale_max": 1.0}}],
     "a folder of 9 faces (pretrain); its references in the drawing's layout in pretraining: it copies colours partly "
     "by position, so a reference in another pose suits the real-art-pose recipe better", False),
    ([{"stage": "pretrain", "faces": 9, "sources": {"folder": 9},
       "reference_warp": {"flip_p": 0.5, "rotate_deg": 15.0, "scale_min": 0.8, "scale_max": 1.2}}],
     "(pretrain); its references mirrored, turned or scaled in training: for a reference in another pose", False),
    ([{"stage": "pretrain", "faces": 9, "sources": {"folder": 9},
       "reference_warp": {"flip_p": 0.0, "rotate_deg": 0.0, "scale_min": 0.9, "scale_max": 1.0}}],
     "mirrored, turned or scaled", False),
    ([{"stage": "pretrain", "faces": 9, "sources": {"folder": 9},
       "reference_warp": {"flip_p": 0.5, "rotate_deg": 15.0, "scale_min": 0.8, "scale_max": 1.2, "moves_p": 0.5}}],
     "(pretrain); 50% of its pretraining references drawn with moves (mirror, turn, scale), the rest in the "
     "drawing's layout: for a reference in either", False),
    ([{"stage": "pretrain", "faces": 9, "sources": {"folder": 9},
       "reference_warp": {"flip_p": 0.5, "rotate_deg": 0.0, "scale_min": 1.0, "scale_max": 1.0, "moves_p": 0.999}}],
     "99% of its pretraining references", False),  # never "100% ..., the rest"
    ([{"stage": "pretrain", "faces": 9, "sources": {"folder": 9},
       "reference_warp": {"flip_p": 0.5, "rotate_deg": 15.0, "scale_min": 0.8, "scale_max": 1.2, "moves_p": "odd"}}],
     "mirrored, turned or scaled in training: for a reference in another pose", False),  # edited by hand: all moved
    ([{"stage": "pretrain", "faces": 9, "sources": {"folder": 9},
       "reference_warp": {"flip_p": 0.0, "rotate_deg": 0.0, "scale_min": 1.0, "scale_max": 1.0}},
      {"stage": "finetune", "faces": 4, "sources": {"folder": 4},
       "reference_warp": {"flip_p": 0.5, "rotate_deg": 15.0, "scale_min": 0.8, "scale_max": 1.2}}],
     "in the drawing's layout in pretraining (moved in fine-tuning only)", False),
    ([{"stage": "pretrain", "faces": 9, "sources": {"folder": 9},
       "reference_warp": {"flip_p": 0.5, "rotate_deg": 15.0, "scale_min": 0.8, "scale_max": 1.2, "moves_p": 0.0}}],
     "its references in the drawing's layout in pretraining: it copies", False),
    ([{"stage": "pretrain", "faces": 9, "sources": {"folder": 9}, "reference_warp": "odd"}],
     "a folder of 9 faces (pretrain)", False)])  # a header edited by hand: no layout clause, no crash
def test_training_data_lines(data, line, warned):
    said, warning = training_data({"training": {"stage": "text"} if data is None else {"data": data}})
    assert line in said and (warning is not None) == warned
    assert ("layout" in said or "mirrored" in said) == isinstance((data or [{}])[0].get("reference_warp"), dict)


def test_paper_background_is_the_paper_that_reaches_the_edge():
    """An opaque drawing's background (`colorize --match-lightness` leaves it white): the paper areas
    touching the picture's edge; a closed shape's inside is not background."""
    from pipeline.hints import paper_background

    lines = np.full((60, 80), 255, np.uint8)
    cv2.circle(lines, (40, 30), 18, 0, 2)
    background = paper_background(lines)
    assert background[0, 0] and background[59, 79] and not background[30, 40]
    assert not background[30, 22]  # on the line
    lines[30, 57:60] = 255  # a gap in the circle: the inside leaks to the background
    assert paper_background(lines)[30, 40]


def test_paper_background_seals_small_gaps_and_can_leave_the_bottom_edge_to_the_figure():
    """`close` seals an outline's gaps up to twice its width (the shape's inside is no longer
    background; the paper outside still is, right up to the line); `bottom=False` keeps a figure
    cut off by the frame's bottom edge out of the background."""
    from pipeline.hints import paper_background

    lines = np.full((60, 80), 255, np.uint8)
    cv2.circle(lines, (40, 30), 18, 0, 2)
    lines[29:32, 54:62] = 255  # a 3 px gap in the circle's right side
    assert paper_background(lines)[30, 40] and not paper_background(lines, close=2)[30, 40]
    sealed = paper_background(lines, close=2)
    assert sealed[0, 0] and sealed[30, 61] and sealed[30, 75]  # outside, up to the line
    lines[22:38, 54:62] = 255  # a 16 px gap: too wide for 2 px
    assert paper_background(lines, close=2)[30, 40]
    bust = np.full((60, 80), 255, np.uint8)
    cv2.ellipse(bust, (40, 60), (25, 30), 0, 180, 360, 0, 2)  # a shoulder line cut off by the bottom edge
    assert paper_background(bust)[55, 40] and not paper_background(bust, bottom=False)[55, 40]
    assert paper_background(bust, bottom=False)[5, 5]  # the paper above still reaches the top


def test_plain_paper_keeps_the_paper_the_model_left_pale_and_lays_it_back_at_the_papers_tone():
    """Of the background's areas, those whose mean colour the model left within `PAPER_TINT` of
    the paper's tone go back to that tone (a feather of a few px past them, nothing farther); an
    area the model painted clearly keeps its colour: a part of the figure the frame cuts."""
    from pipeline.hints import PAPER_TINT, lay_paper, paper_tone, plain_paper

    background = np.zeros((40, 90), bool)
    background[:, :30] = True  # the paper at the left, hazed
    background[:, 60:] = True  # a sleeve cut by the frame at the right, painted blue
    colour = np.full((40, 90, 3), 200, np.uint8)
    colour[:, :30] = (250, 236, 230)  # a pink haze, a few CIE76 off the paper
    colour[5, 3] = (200, 40, 40)  # one red speck in it: the area's mean stays near the paper
    colour[:, 60:] = (60, 90, 200)
    drawing = np.zeros((40, 90, 3), np.uint8)  # the figure's lines and ink
    drawing[background] = (250, 245, 230)  # cream paper
    drawing[0, 0] = (0, 0, 0)  # a stray dark pixel: the median ignores it
    tone = paper_tone(drawing, background)
    assert tone.tolist() == [250, 245, 230]
    assert paper_tone(drawing, np.zeros_like(background)).tolist() == [255, 255, 255]
    paper = plain_paper(background, colour, tone)
    assert paper[:, :30].all() and not paper[:, 30:].any()
    laid = lay_paper(colour, paper, tone)
    assert (laid[:, :30] == (250, 245, 230)).all()
    assert np.array_equal(laid[:, 36:], colour[:, 36:])  # past the feather, untouched
    assert (np.abs(laid[:, 30:33].astype(int) - colour[:, 30:33]).max(-1) > 0).all()  # the feather
    # the tint decides: a haze farther than it stays the model's
    assert not plain_paper(background, colour, tone, tint=1.0)[:, :30].any()
    assert plain_paper(background, colour, tone, tint=PAPER_TINT + 200)[:, 60:].all()
    assert not plain_paper(np.zeros_like(background), colour, tone).any()
    assert lay_paper(colour, np.zeros_like(background), tone) is colour


def test_plain_paper_leaves_a_pale_area_painted_like_the_figure_beside_it():
    """With the figure's pixels given, a pale area at the edge that the model painted like the
    figure across its outline (a pale head of hair the frame cuts at a top corner) is the figure's
    and keeps its colour, even within `PAPER_TINT`; an area that reaches three sides of the
    picture is the background round the figure and stays paper, even hazed like the pale dress
    beside it. Only the figure's pixels within `reach` count, and `reach` 0 is the tint alone."""
    from pipeline.hints import PAPER_TINT, plain_paper

    background = np.zeros((40, 120), bool)
    background[:, :30] = True  # the paper round the figure: the top, left and bottom sides
    background[:20, 90:] = True  # the top of a pale lavender head of hair: the top and right sides
    colour = np.full((40, 120, 3), 255, np.uint8)
    colour[:, :30] = (226, 234, 224)  # the paper hazed like ...
    colour[:, 32:60] = (222, 236, 220)  # ... the pale green dress beside it (a line at 30-31)
    colour[:, 60:] = (200, 190, 222)  # the hair below and beside the cut top (a line at 88-89, row 20-21) ...
    colour[:20, 90:] = (212, 200, 228)  # ... and that top, a little paler: within the tint of white
    white = np.full(3, 255.0)
    lab = cv2.cvtColor(colour[:1, [0, 90]].astype(np.float32) / 255, cv2.COLOR_RGB2Lab)[0]
    assert (np.linalg.norm(lab - (100, 0, 0), axis=1) < PAPER_TINT).all()  # the tint alone takes both for paper
    figure = ~background
    figure[:, 30:32] = figure[:22, 88:90] = figure[20:22, 88:] = False  # the lines
    assert plain_paper(background, colour, white)[background].all()
    assert plain_paper(background, colour, white, figure=figure, reach=0)[background].all()
    paper = plain_paper(background, colour, white, figure=figure, reach=4)
    assert paper[:, :30].all() and not paper[:, 30:].any()
    # nothing of the figure within reach of the hair but the lines: the tint alone, as with none given
    far = figure.copy()
    far[:, 60:] = False
    assert plain_paper(background, colour, white, figure=far, reach=4)[:20, 90:].all()
    # the paper reaching two sides only (its bottom rows not paper): the dress beside it makes it figure
    two = background.copy()
    two[30:, :30] = False
    assert not plain_paper(two, colour, white, figure=figure & ~two, reach=4)[:30, :30].any()


def test_a_drawing_without_a_face_keeps_its_paper_too(model_file, shapes, monkeypatch):
    """No face in the drawing (two shapes on white): the paper around them is kept as drawn as well,
    its outline's gaps sealed at a tenth of a third of the picture's width; the shapes' insides and
    their lines keep the model's colours; `--paint-paper` (and the tint narrowed to nothing) leaves
    the paper painted. (The tiny test model paints the paper any colour: the tint is widened.)"""
    import pipeline.hints
    from pipeline.colorize import ColorizeOptions, colorize_layers, load_model

    lines = np.asarray(Image.open(shapes / "shapes.png"))
    drawing = np.dstack([lines] * 3 + [np.full(lines.shape, 255, np.uint8)])
    reference = np.dstack([np.asarray(Image.open(shapes / "ref.png"))[..., :3], np.full((64, 64), 255, np.uint8)])
    model, diffusion, info = load_model(model_file)
    opts = ColorizeOptions(sample_steps=2, seed=3, mode="lines")
    monkeypatch.setattr(pipeline.hints, "PAPER_TINT", 500.0)
    (kept,), said = colorize_layers(model, diffusion, drawing, reference, opts, [3], info=info)
    (painted,), said_painted = colorize_layers(model, diffusion, drawing, reference,
                                               ColorizeOptions(sample_steps=2, seed=3, mode="lines", keep_paper=False),
                                               [3], info=info)
    labels = line_regions(lines)[1]
    far = cv2.erode((labels == labels[2, 2]).astype(np.uint8), np.ones((7, 7), np.uint8)) > 0  # the paper outside
    assert (kept.colour[far] == 255).all() and (painted.colour[far] != 255).any(-1).mean() > 0.5
    inside = (labels == labels[45, 40]) | (labels == labels[45, 92])  # the circle's and the box's
    core = cv2.erode(inside.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    assert np.array_equal(kept.colour[core], painted.colour[core])
    assert "the paper around the figure kept as drawn" in said and not said_painted
    monkeypatch.setattr(pipeline.hints, "PAPER_TINT", 0.0)
    (untinted,), said_untinted = colorize_layers(model, diffusion, drawing, reference, opts, [3], info=info)
    assert np.array_equal(untinted.colour, painted.colour) and not said_untinted


def test_a_picture_coloured_whole_is_evened_inside_its_sealed_regions(model_file, shapes, monkeypatch):
    """A picture with no face pass, enlarged from the model's size (the shapes, 120 px wide, to the
    tiny model's 32: 3.75 times): its colour layer is evened out inside each area its lines enclose,
    found with the gaps sealed by 2 px, so each area's colours spread less; the pixels within 2 px
    of a line, and a transparent background, keep the model's colours; `--even-regions 0` leaves
    the layer as painted, and so does a picture enlarged less than twice (60 px). An area holding
    more of the picture than `MAX_AREA` is one the lines do not enclose (broken lines): as painted."""
    import pipeline.colorize as C
    from pipeline.chroma import RIM_MARGIN, lab_pixels
    from pipeline.colorize import ColorizeOptions, colorize_layers, load_model

    lines = np.asarray(Image.open(shapes / "shapes.png"))
    alpha = np.full(lines.shape, 255, np.uint8)
    alpha[:, :8] = 0  # a strip of transparent background at the left
    reference = np.dstack([np.asarray(Image.open(shapes / "ref.png"))[..., :3], np.full((64, 64), 255, np.uint8)])
    model, diffusion, info = load_model(model_file)

    def run(picture, even):
        opts = ColorizeOptions(sample_steps=2, seed=3, mode="lines", even_regions=even, keep_paper=False)
        (colored,), _ = colorize_layers(model, diffusion, np.dstack([picture] * 3 + [np.full(picture.shape, 255, np.uint8)
                                        if picture is not lines else alpha]), reference, opts, [3], info=info)
        return colored.colour.astype(float)

    painted, evened = run(lines, 0.0), run(lines, 0.3)
    labels = sealed_regions(lines, 2)
    beside = (labels == 0) & (alpha > 0)  # beside the lines: as painted, but a pale halo takes its area's colour
    moved = beside & (painted != evened).any(-1)
    assert np.array_equal(painted[binarize_lines(lines) == 0], evened[binarize_lines(lines) == 0])  # the lines'
    assert (lab_pixels(painted[moved].astype(np.uint8))[:, 0]
            > lab_pixels(evened[moved].astype(np.uint8))[:, 0] + RIM_MARGIN - 0.5).all()
    assert np.array_equal(painted[alpha == 0], evened[alpha == 0])
    for area in (labels[45, 40], labels[45, 92], labels[2, 60]):  # the circle's, the box's, the paper's
        inside = (labels == area) & (alpha > 0)
        assert evened[inside].std(0).mean() < 0.7 * painted[inside].std(0).mean()
    paper, circle = labels == labels[2, 60], labels == labels[45, 40]
    monkeypatch.setattr(C, "MAX_AREA", 0.4)  # the paper around the shapes holds 0.47 of the picture
    capped = run(lines, 0.3)
    assert np.array_equal(capped[paper], painted[paper]) and np.array_equal(capped[circle], evened[circle])
    small = cv2.resize(lines, (60, 45), interpolation=cv2.INTER_AREA)
    assert np.array_equal(run(small, 0.0), run(small, 0.3))
