"""`animecolor colorize`, `extract-lines` and `export` end to end with a tiny model."""

import json

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from skimage.color import rgb2lab
from typer.testing import CliRunner

from pipeline.colorize import ColorizeOptions, colorize_image, letterbox, load_model, unletterbox
from pipeline.data.synthetic import generate_face
from pipeline.data.xdog import XDoGConfig
from pipeline.errors import AnimecolorError
from pipeline.model.checkpoint import load_checkpoint, model_from_checkpoint
from stages.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def drawing(tmp_path_factory):
    """A held-out synthetic face at an odd size and aspect, its sketch and its colour reference."""
    root = tmp_path_factory.mktemp("drawing")
    _, rgb, _ = generate_face(99, 7, 96, 0.0)
    rgb = cv2.resize(rgb, (77, 101), interpolation=cv2.INTER_AREA)  # odd, portrait
    sketch = XDoGConfig().sketch(rgb, 0.5)
    Image.fromarray(sketch).save(root / "sketch.png")
    Image.fromarray(rgb).save(root / "reference.png")
    return root


def test_export_round_trip_gives_identical_outputs(tiny_text, model_file, drawing):
    model, diffusion, info = load_model(model_file)
    ckpt_model, ckpt_diffusion = model_from_checkpoint(load_checkpoint(tiny_text / "text.pt"))
    assert info["image_size"] == 32 and info["unet"]["channels"] == 8
    sketch = np.array(Image.open(drawing / "sketch.png").convert("RGBA"))
    ref = np.array(Image.open(drawing / "reference.png").convert("RGBA"))
    a, _ = colorize_image(model, diffusion, sketch, ref, ColorizeOptions(sample_steps=3, seed=5))
    b, _ = colorize_image(ckpt_model, ckpt_diffusion, sketch, ref, ColorizeOptions(sample_steps=3, seed=5))
    assert np.array_equal(a, b) and a.shape == (101, 77, 3)


def test_match_chroma_takes_the_references_saturation_through_the_cli(model_file, drawing, tmp_path):
    """`--match-chroma 1` gives the picture the reference's chroma distribution (a tiny model's
    output is nearly grey), 0 leaves the model's own, and the PNG records the strength. (Not evened
    out: the tiny model's colours are noise, which averages to grey inside each region.)"""
    ref = np.array(Image.open(drawing / "reference.png"))
    outputs = {}
    for strength in ("0", "1"):
        out = tmp_path / f"m{strength}.png"
        result = runner.invoke(app, ["colorize", str(drawing / "sketch.png"), "-r", str(drawing / "reference.png"),
                                     "--model", str(model_file), "-o", str(out), "--steps", "2", "--seed", "3",
                                     "--match-chroma", strength, "--no-keep-lines", "--even-regions", "0"])
        assert result.exit_code == 0, result.output
        image = Image.open(out)
        assert json.loads(image.text["animecolor"])["match_chroma"] == float(strength)
        outputs[strength] = np.asarray(image.convert("RGB"))
    chroma = {k: np.hypot(*rgb2lab(v / 255.0)[..., 1:].transpose(2, 0, 1)).mean() for k, v in
              {**outputs, "ref": ref}.items()}
    assert abs(chroma["1"] - chroma["ref"]) < 0.25 * abs(chroma["0"] - chroma["ref"]), chroma


def test_letterbox_round_trip_keeps_geometry():
    img = np.zeros((50, 120, 3), np.uint8)
    img[10:20, 30:40] = 255
    boxed, box = letterbox(img, 64)
    assert boxed.shape == (64, 64, 3) and boxed[0, 0].tolist() == [255, 255, 255]  # white padding
    back = unletterbox(boxed, box)
    assert back.shape == img.shape
    ys, xs = np.nonzero(back[..., 0] > 128)
    assert abs(ys.mean() - 14.5) < 2 and abs(xs.mean() - 34.5) < 2


@pytest.mark.parametrize("kind", ["gray", "rgba", "palette", "gray16", "phone"])
def test_cli_any_input_kind_keeps_size_and_stores_parameters(model_file, drawing, tmp_path, kind):
    sketch = np.array(Image.open(drawing / "sketch.png"))
    path = tmp_path / f"in-{kind}.png"
    if kind == "phone":  # a phone's JPEG: stored turned a quarter, EXIF orientation 6 turns it back
        path = path.with_suffix(".jpg")
        exif = Image.Exif()
        exif[0x0112] = 6
        Image.fromarray(np.rot90(sketch).copy()).save(path, quality=95, exif=exif.tobytes())
    elif kind == "gray":
        Image.fromarray(sketch).save(path)
    elif kind == "rgba":  # transparent paper with opaque lines
        rgba = np.zeros((*sketch.shape, 4), np.uint8)
        rgba[..., 3] = 255 - sketch
        Image.fromarray(rgba).save(path)
    elif kind == "palette":
        Image.fromarray(sketch).convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=4).save(path)
    else:
        cv2.imwrite(str(path), sketch.astype(np.uint16) * 257)
    out = tmp_path / f"out-{kind}.png"
    result = runner.invoke(app, ["colorize", str(path), "-r", str(drawing / "reference.png"), "--model",
                                 str(model_file), "-o", str(out), "--steps", "2", "--seed", "3"])
    assert result.exit_code == 0, result.output
    image = Image.open(out)
    assert image.size == (77, 101) and image.mode == "RGB"
    params = json.loads(image.text["animecolor"])
    assert params["sample_steps"] == 2 and params["seed"] == 3 and params["reference"].endswith("reference.png")
    lines = np.asarray(image.convert("L"))[sketch < 64]
    assert lines.mean() < 80  # the drawing's dark lines stay dark where they were drawn


def test_colour_input_gets_xdog_with_a_notice(model_file, drawing, tmp_path):
    out = tmp_path / "o.png"
    result = runner.invoke(app, ["colorize", str(drawing / "reference.png"), "-r", str(drawing / "reference.png"),
                                 "--model", str(model_file), "-o", str(out), "--steps", "1"])
    assert result.exit_code == 0 and "XDoG" in result.output and out.is_file()


def test_batch_mode_continues_past_a_corrupt_file(model_file, drawing, tmp_path):
    folder = tmp_path / "sketches"
    folder.mkdir()
    for name in ("a", "c"):
        (folder / f"{name}.png").write_bytes((drawing / "sketch.png").read_bytes())
    (folder / "b.png").write_bytes(b"\x89PNG broken")
    out = tmp_path / "colored"
    (out).mkdir()
    (out / "old.png").write_bytes(b"kept")
    result = runner.invoke(app, ["colorize", str(folder), "-r", str(drawing / "reference.png"), "--model",
                                 str(model_file), "-o", str(out), "--steps", "1"])
    assert result.exit_code == 1
    assert "2 of 3 written" in result.output and "b.png: not a readable image" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "c.png", "old.png"]
    assert (out / "old.png").read_bytes() == b"kept"
    csv = tmp_path / "pairs.csv"
    csv.write_text(f"sketch,reference\nsketches/a.png,{drawing / 'reference.png'}\n")
    result = runner.invoke(app, ["colorize", "--pairs", str(csv), "--model", str(model_file),
                                 "-o", str(tmp_path / "from-csv"), "--steps", "1"])
    assert result.exit_code == 0 and (tmp_path / "from-csv" / "a.png").is_file()
    # a drawing argument beside --pairs would be ignored: refused instead, nothing written
    result = runner.invoke(app, ["colorize", str(folder), "--pairs", str(csv), "--model", str(model_file),
                                 "-o", str(tmp_path / "both"), "--steps", "1"])
    assert result.exit_code == 2 and "give no drawing argument" in result.output
    assert not (tmp_path / "both").exists()


def test_errors_are_one_clear_line(model_file, drawing, tmp_path, tiny_pretrained, monkeypatch):
    ref = str(drawing / "reference.png")
    sketch = str(drawing / "sketch.png")
    cases = {
        "no such file": ["colorize", str(tmp_path / "missing.png"), "-r", ref, "--model", str(model_file)],
        "not a readable image": ["colorize", str(tmp_path / "text.png"), "-r", ref, "--model", str(model_file)],
        "image too large": ["colorize", str(tmp_path / "huge.png"), "-r", ref, "--model", str(model_file)],
        "convert it with `animecolor export`": ["colorize", sketch, "-r", ref, "--model",
                                                str(tiny_pretrained / "pretrain.pt")],
        "model file not found": ["colorize", sketch, "-r", ref, "--model", str(tmp_path / "none.safetensors")],
        "--reference is required": ["colorize", sketch, "--model", str(model_file)],
    }
    (tmp_path / "text.png").write_text("hello")
    Image.new("L", (9000, 8000), 255).save(tmp_path / "huge.png")
    for expected, args in cases.items():
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (expected, result.output)
        assert expected in result.output and "Traceback" not in result.output, result.output
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = runner.invoke(app, ["colorize", sketch, "-r", ref, "--model", str(model_file), "--device", "cuda"])
    assert result.exit_code == 2 and "no CUDA GPU" in result.output


def test_wrong_kind_or_version_of_model(model_file, tmp_path):
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(AnimecolorError, match="not an animecolor model"):
        load_model(tmp_path / "other.safetensors")
    from safetensors import safe_open

    with safe_open(str(model_file), "pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    info = json.loads(meta["animecolor"])
    save_file(tensors, str(tmp_path / "v9.safetensors"), metadata={"animecolor": json.dumps({**info, "version": 9})})
    with pytest.raises(AnimecolorError, match="version 9"):
        load_model(tmp_path / "v9.safetensors")


def test_extract_lines_of_one_image_to_a_png_file_name(drawing, tmp_path):
    """`-o name.png` with one image writes that file (not a folder named name.png), and may replace it."""
    out = tmp_path / "sub" / "lines.png"
    for _ in range(2):
        result = runner.invoke(app, ["extract-lines", str(drawing / "reference.png"), "-o", str(out)])
        assert result.exit_code == 0, result.output
        assert out.is_file() and "1 of 1 written" in result.output
    lines = np.asarray(Image.open(out))
    assert lines.shape == (101, 77) and set(np.unique(lines)) <= {0, 255}


def test_extract_lines(drawing, tmp_path):
    result = runner.invoke(app, ["extract-lines", str(drawing / "reference.png"), str(tmp_path / "nope.png"),
                                 "-o", str(tmp_path / "lines")])
    assert result.exit_code == 1 and "1 of 2 written" in result.output
    lines = np.asarray(Image.open(tmp_path / "lines" / "reference.png"))
    assert lines.shape == (101, 77) and set(np.unique(lines)) <= {0, 255} and (lines == 0).mean() > 0.02
