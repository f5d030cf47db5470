"""A manga drawing's screentone taken out of the lines the model reads (`scan.descreened`,
`colorize --descreen`)."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from pipeline.colorize import letterbox, prepare_sketch
from pipeline.data.synthetic import generate_face
from pipeline.data.xdog import XDoGConfig, screentone
from pipeline.scan import descreened, tone_lattice
from stages.cli import app

runner = CliRunner()
FACES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "anime-faces-256"


def panel(period: float = 5.0, angle: float = 45.0, levels=((0.55, 0.2),), size: int = 192):
    """(A procedural face's XDoG lines over screentone where it is dark, the lines alone, the face)."""
    _, rgb, _ = generate_face(3, 1, size, 0.0)
    lines = XDoGConfig().sketch(rgb, 0.5)
    return screentone(rgb, lines, period, angle, levels), lines, rgb


def test_the_tone_lattice_is_found_to_a_fraction_of_a_pixel():
    """A square lattice of `period` px turned by `angle`: the two steps found span the same lattice
    (each a whole combination of the true steps, within 0.15 px)."""
    for period, angle in ((5.0, 45.0), (6.0, 0.0), (4.0, 30.0)):
        tone = screentone(np.zeros((160, 160, 3), np.uint8), np.full((160, 160), 255, np.uint8), period, angle,
                          ((1.0, 0.2),))
        found = tone_lattice(tone)
        assert found is not None
        turn = np.deg2rad(angle)
        true = period * np.array([[np.cos(turn), np.sin(turn)], [-np.sin(turn), np.cos(turn)]])
        for step in found:
            whole = np.linalg.solve(true.T, step)  # in units of the true steps
            assert np.abs(whole - np.round(whole)).max() * period < 0.15, (period, angle, step)
            assert np.abs(np.round(whole)).sum() >= 1


def test_tone_is_erased_and_the_lines_over_it_kept():
    for period in (4.0, 6.0):
        toned, lines, _ = panel(period)
        out, erased = descreened(toned)
        tone_ink, line_ink = (toned < 128) & (lines >= 128), lines < 128
        assert tone_ink.mean() > 0.03  # the panel has tone to take out
        assert (out[tone_ink] >= 128).mean() > 0.65  # 0.74-0.85: the dots cut by a region's edge stay
        assert (out[line_ink] < 128).mean() > 0.95
        assert 0 < erased < 1 and erased == pytest.approx((out != toned).mean())


def test_a_lattice_between_pixels_is_erased_as_well_as_one_on_them():
    """A 4 px tone turned 30 degrees: its lattice steps fall between pixels in both directions, so
    each pixel is compared with its neighbours read between pixels (bicubic keeps a small dot's core
    dark there; bilinear greyed it and left 0.62 of that tone's ink)."""
    toned, lines, _ = panel(4.0, 30.0)
    out, _ = descreened(toned)
    tone_ink, line_ink = (toned < 128) & (lines >= 128), lines < 128
    assert (out[tone_ink] >= 128).mean() > 0.78  # 0.86
    assert (out[line_ink] < 128).mean() > 0.97


def test_a_dark_tone_of_holes_in_the_ink_is_erased_too():
    toned, lines, _ = panel(5.0, 45.0, ((0.55, 0.65),))
    out, _ = descreened(toned)
    tone_ink = (toned < 128) & (lines >= 128)
    assert (out[tone_ink] >= 128).mean() > 0.75  # 0.88


def test_drawings_without_tone_come_back_unchanged():
    """The training XDoG lines, a solid black fill and a pencil drawing: nothing erased, the same array."""
    _, lines, rgb = panel()
    filled = lines.copy()
    filled[20:80, 20:90] = 0
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    pencil = np.clip(grey * 255 / np.maximum(255 - cv2.GaussianBlur(255 - grey, (0, 0), 4), 1), 0, 255)
    for drawing in (lines, filled, pencil.astype(np.uint8), np.full((64, 64), 255, np.uint8)):
        out, erased = descreened(drawing)
        assert erased == 0.0 and out is drawing


@pytest.mark.skipif(not FACES.is_dir(), reason="../shared/data/anime-faces-256 not present")
def test_real_faces_xdog_lines_are_left_alone_and_their_manga_tone_taken_out():
    """40 real faces: their XDoG lines are untouched; drawn as manga panels (period 4), the model's
    64 px view of the descreened drawing is at least twice as close to the clean lines' as drawn."""
    files = sorted(FACES.glob("*.jpg"))[:40]
    drawn, cleaned = [], []
    for f in files:
        rgb = cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB)
        lines = XDoGConfig().sketch(rgb, 0.5)
        assert descreened(lines)[1] == 0.0, f.name
        toned = screentone(rgb, lines, 4.0)
        view = letterbox(lines, 64)[0].astype(float)
        drawn.append(np.abs(letterbox(toned, 64)[0] - view).mean())
        cleaned.append(np.abs(letterbox(descreened(toned)[0], 64)[0] - view).mean())
    assert np.mean(cleaned) < 0.5 * np.mean(drawn)


def test_prepare_sketch_descreens_when_asked_and_says_so():
    toned, _, _ = panel()
    rgba = np.dstack([toned] * 3 + [np.full(toned.shape, 255, np.uint8)])
    _, as_drawn, _, notice = prepare_sketch(rgba, 64)
    assert np.array_equal(as_drawn, toned) and notice is None
    _, line_layer, _, notice = prepare_sketch(rgba, 64, descreen=True)
    assert np.array_equal(line_layer, descreened(toned)[0])
    assert notice.startswith("screentone taken out of the lines (")


def test_the_cli_descreens_by_default_and_records_it(model_file, tmp_path):
    toned, lines, rgb = panel()
    Image.fromarray(toned).save(tmp_path / "panel.png")
    Image.fromarray(rgb).save(tmp_path / "ref.png")
    layer = {}
    for name, flags in (("on", []), ("off", ["--no-descreen"])):
        out = tmp_path / f"{name}.png"
        result = runner.invoke(app, ["colorize", str(tmp_path / "panel.png"), "-r", str(tmp_path / "ref.png"),
                                     "--model", str(model_file), "-o", str(out), "--steps", "1", "--layers", *flags])
        assert result.exit_code == 0, result.output
        assert ("screentone taken out" in result.output) == (name == "on")
        assert json.loads(Image.open(out).text["animecolor"])["descreen"] == (name == "on")
        layer[name] = np.asarray(Image.open(tmp_path / f"{name}_lines.png").convert("RGBA"))[..., 3]
    tone = (toned < 128) & (lines >= 128)  # the lines layer: the tone's dots gone from it, or kept
    assert (layer["on"][tone] < 128).mean() > 0.6 and (layer["off"][tone] >= 128).mean() > 0.9
