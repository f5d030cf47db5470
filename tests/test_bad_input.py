"""Bad input never gets a traceback or loses a file: every user-facing command x every bad input class.

Each case runs one CLI command in a folder that holds a drawing, a reference and a model, and
asserts: the promised exit code (2 for a refused command, 1 for a batch that lists its
failures), exactly one error line per failure, no traceback, nothing outside the output touched,
and no half-written file left anywhere.
"""

import io
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from loopback import png_header
from PIL import Image
import yaml
from typer.testing import CliRunner

from pipeline.data.imageio import decode_image
from pipeline.errors import AnimecolorError, ParamsError
from stages.cli import app
from stages.params import SECTIONS, validate_section

runner = CliRunner()


@pytest.fixture(scope="module")
def bad_headers(tmp_path_factory, model_file):
    """Model files whose JSON header is not an object, is nested 100,000 deep, or has a bad version or vocabulary."""
    folder = tmp_path_factory.mktemp("bad-headers")
    for name, header in (("hnull", "null"), ("hlist", "[]"), ("hone", "1"), ("hdeep", "[" * 100_000 + "]" * 100_000)):
        _edit_header(model_file, folder / f"{name}.safetensors", lambda h, text=header: _Raw(text))
    for name, edit in (("vtrue", {"version": True}), ("vtext", {"version": "1"}), ("vlist", {"vocabulary": ["pink"]}),
                       ("vbad", {"vocabulary": {"pink": "#12"}}),
                       ("vbig", {"vocabulary": {f"w{i}": "#ffffff" for i in range(1_000_000)}})):
        _edit_header(model_file, folder / f"{name}.safetensors", lambda h, edit=edit: {**h, **edit})
    return folder


@pytest.fixture
def work(tmp_path, model_file, tiny_text, bad_headers):
    """A folder as a new user has it: sketch.png, ref.png, a model, a checkpoint, bad files of each kind."""
    rng = np.random.default_rng(0)
    sketch = np.full((40, 40), 255, np.uint8)
    sketch[10:30, 20] = 0
    Image.fromarray(sketch).save(tmp_path / "sketch.png")
    boxes = np.full((40, 40), 255, np.uint8)
    boxes[8:31, [8, 30]] = boxes[[8, 30], 8:31] = 0  # a closed square: inside, outside and its line
    Image.fromarray(boxes).save(tmp_path / "boxes.png")
    Image.fromarray(np.zeros((40, 40, 4), np.uint8)).save(tmp_path / "clear.png")  # fully transparent
    Image.fromarray(np.full((3, 90), 255, np.uint8)).save(tmp_path / "sliver.png")  # no drawing fits in 3 px
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "ref.jpg")
    Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(tmp_path / "icon.png")
    (tmp_path / "M.safetensors").write_bytes(model_file.read_bytes())
    (tmp_path / "ckpt.pt").write_bytes((tiny_text / "text.pt").read_bytes())
    (tmp_path / "text.png").write_text("not an image")
    (tmp_path / "bomb.png").write_bytes(png_header(100_000, 100_000))
    (tmp_path / "big150.png").write_bytes(png_header(12_300, 12_300))  # 151 MP: PIL warns, we refuse
    (tmp_path / "existing_dir").mkdir()
    os.mkfifo(tmp_path / "fifo.png")  # not a regular file: an output may not replace it, an input is not read
    (tmp_path / "zero.png").symlink_to("/dev/zero")
    os.link(tmp_path / "sketch.png", tmp_path / "hardlink.png")  # the drawing under another name
    (tmp_path / "fifodir").mkdir()
    os.mkfifo(tmp_path / "fifodir" / "sketch.png")
    (tmp_path / "one.csv").write_text("sketch,reference\nsketch.png,ref.jpg\n")
    for model in bad_headers.iterdir():  # links: the million-word header is made once per module
        (tmp_path / model.name).symlink_to(model)
    batch = tmp_path / "batch"
    batch.mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(sketch).save(batch / name)
    clash = tmp_path / "clash"
    clash.mkdir()
    Image.fromarray(sketch).save(clash / "a.png")
    Image.fromarray(sketch).save(clash / "a.jpg")
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "header.csv").write_text("sketch,reference\n")
    (tmp_path / "quote.csv").write_text('sketch,reference\n"sketch.png,ref.jpg\n')
    (tmp_path / "twice.csv").write_text("sketch,reference\nsketch.png,ref.jpg\nsketch.png,ref.jpg\n")
    from pipeline.colorize import export_model
    from pipeline.model.diffusion import DiffusionConfig
    from pipeline.model.unet import UNet, UNetConfig

    plain = UNet(UNetConfig(image_size=32, channels=8, channel_mults=(1, 2), heads=2))  # trained without text
    export_model({"unet": plain.config.to_dict(), "diffusion": DiffusionConfig().to_dict(),
                  "ema": plain.state_dict()}, tmp_path / "plain.safetensors")
    from pipeline.model.checkpoint import save_checkpoint

    referenced = UNet(UNetConfig(image_size=32, channels=8, channel_mults=(1, 2), heads=2, reference_attention=(16,)))
    save_checkpoint(tmp_path / "ref_only.pt", {"unet": referenced.config.to_dict(), "ema": referenced.state_dict(),
                                               "diffusion": DiffusionConfig().to_dict()})
    params = yaml.safe_load(_PARAMS.read_text())
    params["base"]["image_size"] = 32
    params["text"]["prompt_attention"] = [5]
    (tmp_path / "side5.yaml").write_text(yaml.safe_dump(params))
    for name, header in (("size0", lambda h: {**h, "unet": {**h["unet"], "image_size": 0}}),
                         ("nounet", lambda h: {k: v for k, v in h.items() if k != "unet"}),
                         ("sideways", lambda h: {**h, "unet": {**h["unet"], "text_attention": "sideways"}})):
        _edit_header(model_file, tmp_path / f"{name}.safetensors", header)
    return tmp_path


class _Raw(str):
    """A header text written as it is (not JSON-encoded again)."""


def _edit_header(src: Path, dst: Path, edit) -> None:
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(src), "pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    header = edit(json.loads(meta["animecolor"]))
    save_file(tensors, str(dst), metadata={"animecolor": header if isinstance(header, _Raw) else json.dumps(header)})


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file()}


M = ["--model", "M.safetensors", "--steps", "2"]
# id: (args, exit code, fragments of the error lines (one per failure), outputs the command may create)
_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"  # the shipped params, for the stage commands

CASES = {
    "unreadable sketch": (["colorize", "text.png", "-r", "ref.jpg", *M], 2, ["text.png: not a readable image"], []),
    "missing sketch": (["colorize", "nope.png", "-r", "ref.jpg", *M], 2, ["nope.png: no such file"], []),
    "bomb header sketch": (["colorize", "bomb.png", "-r", "ref.jpg", *M], 2, ["bomb.png: image too large"], []),
    "150 MP header reference": (["colorize", "sketch.png", "-r", "big150.png", *M], 2,
                                ["big150.png: image too large (12300x12300"], []),
    "bomb in a batch": (["colorize", "batch", "-r", "ref.jpg", *M, "-o", "out"], 0, [], ["out/a.png", "out/b.png"]),
    "bomb header extract-lines": (["extract-lines", "bomb.png", "sketch.png", "-o", "lines"], 1,
                                  ["bomb.png: image too large"], ["lines/sketch.png"]),
    "output is a folder": (["colorize", "sketch.png", "-r", "ref.jpg", *M, "-o", "existing_dir"], 2,
                           ["existing_dir: is a folder"], []),
    "output under a file": (["colorize", "sketch.png", "-r", "ref.jpg", *M, "-o", "sketch.png/x.png"], 2,
                            ["sketch.png is a file, not a folder"], []),
    "read-only output": (["colorize", "sketch.png", "-r", "ref.jpg", *M, "-o", "/proc/sys/out.png"], 2,
                         ["cannot write in /proc/sys"], []),
    "export to a folder": (["export", "ckpt.pt", "-o", "existing_dir"], 2, ["existing_dir: is a folder"], []),
    "export under a file": (["export", "ckpt.pt", "-o", "sketch.png/m.safetensors"], 2,
                            ["sketch.png is a file, not a folder"], []),
    "folder clash a.png a.jpg": (["colorize", "clash", "-r", "ref.jpg", *M, "-o", "out"], 0, [],
                                 ["out/a_png.png", "out/a_jpg.png"]),
    "csv lists a drawing twice": (["colorize", "--pairs", "twice.csv", *M, "-o", "out"], 0, [],
                                  ["out/sketch_ref.png", "out/sketch_ref_2.png"]),
    "empty csv": (["colorize", "--pairs", "empty.csv", *M], 2, ["empty.csv: empty"], []),
    "no drawing, no csv": (["colorize", "-r", "ref.jpg", *M], 2, ["give a line drawing"], []),
    "header-only csv": (["colorize", "--pairs", "header.csv", *M], 2, ["header.csv: no rows"], []),
    "unterminated quote csv": (["colorize", "--pairs", "quote.csv", *M], 2,
                               ["quote.csv: not a readable CSV"], []),
    "guidance inf": (["colorize", "sketch.png", "-r", "ref.jpg", *M, "--guidance", "inf"], 2, ["--guidance"], []),
    "guidance nan": (["colorize", "sketch.png", "-r", "ref.jpg", *M, "--guidance", "nan"], 2,
                     ["Invalid value for '--guidance'"], []),
    "huge seed": (["colorize", "sketch.png", "-r", "ref.jpg", *M, "--seed", "99999999999999999999999"], 2,
                  ["--seed"], []),
    "header image_size 0": (["colorize", "sketch.png", "-r", "ref.jpg", "--model", "size0.safetensors"], 2,
                            ["header unet.image_size: Input should be greater than or equal to 4 (got 0)"], []),
    "app without a model": (["app", "--model", "nope.safetensors"], 2,
                            ["nope.safetensors: model file not found: run `dvc repro` or pass --model"], []),
    "app on port 0": (["app", "--model", "M.safetensors", "--port", "0"], 2, ["Invalid value for '--port'"], []),
    "export a missing checkpoint": (["export", "nope.pt", "-o", "m.safetensors"], 2,
                                    ["nope.pt: checkpoint not found"], []),
    "text stage on a missing model": (["text", "--params", str(_PARAMS), "--init", "nope.pt"], 2,
                                      ["nope.pt: checkpoint not found"], []),
    "text stage on a model file": (["text", "--params", str(_PARAMS), "--init", "M.safetensors"], 2,
                                   ["M.safetensors: not an animecolor checkpoint"], []),
    "text stage prompt attention at no side": (["text", "--params", "side5.yaml", "--init", "ref_only.pt"], 2,
                                               ["text: prompt_attention [5]: feature-map sides are [32, 16]"], []),
    "export a model file as checkpoint": (["export", "M.safetensors", "-o", "m.safetensors"], 2,
                                          ["M.safetensors: not an animecolor checkpoint"], []),
    "extract-lines into a file": (["extract-lines", "sketch.png", "-o", "M.safetensors"], 2,
                                  ["M.safetensors: is a file (--out is a folder)"], []),
    "extract-lines into a JPEG": (["extract-lines", "sketch.png", "-o", "ref.jpg"], 2,
                                  ["ref.jpg: the lines are written as PNG (give --out a .png file name or a folder)"],
                                  []),
    "extract-lines of two into one file": (["extract-lines", "sketch.png", "ref.jpg", "-o", "both.png"], 2,
                                           ["both.png: 2 images go to a folder"], []),
    "unknown colour word": (["colorize", "sketch.png", "-r", "ref.jpg", *M, "-p", "pnk hair"], 2,
                            ["unknown colour 'pnk' (close: pink)"], []),
    "colour without a part": (["colorize", "sketch.png", *M, "-p", "blonde"], 2,
                              ["blonde what? say the part, e.g. 'blonde hair'"], []),
    "neither reference nor prompt": (["colorize", "sketch.png", *M], 2,
                                     ["--reference is required (or --prompt"], []),
    "text guidance inf": (["colorize", "sketch.png", *M, "-p", "pink hair", "--text-guidance", "inf"], 2,
                          ["--text-guidance"], []),
    "text guidance nan": (["colorize", "sketch.png", *M, "-p", "pink hair", "--text-guidance", "nan"], 2,
                          ["Invalid value for '--text-guidance'"], []),
    "prompt to a model without text": (["colorize", "sketch.png", "-r", "ref.jpg", "--model", "plain.safetensors",
                                        "-p", "pink hair"], 2, ["this model was trained without text"], []),
    "header text_attention sideways": (["colorize", "sketch.png", "-r", "ref.jpg", "--model", "sideways.safetensors"],
                                       2, ["header unet.text_attention: Input should be 'shared', 'separate' or 'adapter'"], []),
    "header without unet": (["colorize", "sketch.png", "-r", "ref.jpg", "--model", "nounet.safetensors"], 2,
                            ["header unet: section is missing or empty"], []),
    # outputs that are not regular files, outputs over inputs, prompts that name nothing
    "output is a FIFO": (["colorize", "sketch.png", "-r", "ref.jpg", *M, "-o", "fifo.png"], 2,
                         ["fifo.png: exists and is not a regular file"], []),
    "output is a link to /dev/zero": (["colorize", "sketch.png", "-r", "ref.jpg", *M, "-o", "zero.png"], 2,
                                      ["zero.png: exists and is not a regular file"], []),
    "export over a FIFO": (["export", "ckpt.pt", "-o", "fifo.png"], 2, ["fifo.png: exists and is not a regular"], []),
    "extract-lines over a FIFO": (["extract-lines", "sketch.png", "-o", "fifodir"], 2,
                                  ["fifodir/sketch.png: exists and is not a regular file"], []),
    "output is the drawing": (["colorize", "sketch.png", "-r", "ref.jpg", *M, "-o", "sketch.png"], 2,
                              ["sketch.png: is the drawing (an input)"], []),
    "output is the reference": (["colorize", "sketch.png", "-r", "ref.jpg", *M, "-o", "./ref.jpg"], 2,
                                ["ref.jpg: is the reference (an input)"], []),
    "output is the model": (["colorize", "sketch.png", "-r", "ref.jpg", *M, "-o", "M.safetensors"], 2,
                            ["M.safetensors: is the model (an input)"], []),
    "output is a hard link to the drawing": (["colorize", "sketch.png", "-r", "ref.jpg", *M, "-o", "hardlink.png"], 2,
                                             ["hardlink.png: is the drawing (an input)"], []),
    "batch written into its own folder": (["colorize", "batch", "-r", "ref.jpg", *M, "-o", "batch"], 2,
                                          ["batch/a.png: is the drawing (an input)"], []),
    "pairs output over a drawing": (["colorize", "--pairs", "one.csv", *M, "-o", "."], 2,
                                    ["is the drawing (an input)"], []),
    "extract-lines over its image": (["extract-lines", "sketch.png", "-o", "."], 2,
                                     ["sketch.png: is the image (an input)"], []),
    "export over its checkpoint": (["export", "ckpt.pt", "-o", "ckpt.pt"], 2, ["ckpt.pt: is the checkpoint"], []),
    "prompt of commas": (["colorize", "sketch.png", *M, "-p", ",,,"], 2,
                         ["names no colour: give a colour reference, a prompt, or both"], []),
    "prompt of a dot": (["colorize", "sketch.png", *M, "-p", " . "], 2, ["give a colour reference, a prompt"], []),
    "prompt of an and": (["colorize", "sketch.png", *M, "-p", " and "], 2, ["give a colour reference, a prompt"], []),
    "eta nan": (["colorize", "sketch.png", "-r", "ref.jpg", *M, "--eta", "nan"], 2, ["Invalid value for '--eta'"], []),
    "model is a FIFO": (["colorize", "sketch.png", "-r", "ref.jpg", "--model", "fifo.png"], 2,
                        ["fifo.png: not a regular file"], []),
    "model is a folder": (["colorize", "sketch.png", "-r", "ref.jpg", "--model", "existing_dir"], 2,
                          ["existing_dir: not a regular file"], []),
    "model is a link to /dev/zero": (["colorize", "sketch.png", "-r", "ref.jpg", "--model", "zero.png"], 2,
                                     ["zero.png: not a regular file"], []),
    "reference is a FIFO": (["colorize", "sketch.png", "-r", "fifo.png", *M], 2, ["fifo.png: not a regular file"], []),
    "reference is a link to /dev/zero": (["colorize", "sketch.png", "-r", "zero.png", *M], 2,
                                         ["zero.png: not a regular file"], []),
    "pairs CSV is a FIFO": (["colorize", "--pairs", "fifo.png", *M], 2, ["fifo.png: not a regular file"], []),
    "app on a FIFO model": (["app", "--model", "fifo.png"], 2, ["fifo.png: not a regular file"], []),
    "export a FIFO checkpoint": (["export", "fifo.png", "-o", "m.safetensors"], 2, ["fifo.png: not a regular file"], []),
    "header null": (["colorize", "sketch.png", "-r", "ref.jpg", "--model", "hnull.safetensors"], 2,
                    ["header is not a JSON object (got NoneType)"], []),
    "header a list": (["colorize", "sketch.png", "-r", "ref.jpg", "--model", "hlist.safetensors"], 2,
                      ["header is not a JSON object (got list)"], []),
    "header a number": (["colorize", "sketch.png", "-r", "ref.jpg", "--model", "hone.safetensors"], 2,
                        ["header is not a JSON object (got int)"], []),
    "header nested 100000 deep": (["colorize", "sketch.png", "-r", "ref.jpg", "--model", "hdeep.safetensors"], 2,
                                  ["header is nested too deeply"], []),
    "header version true": (["colorize", "sketch.png", "-r", "ref.jpg", "--model", "vtrue.safetensors"], 2,
                            ["version must be an integer (got True)"], []),
    "header version text": (["colorize", "sketch.png", "-r", "ref.jpg", "--model", "vtext.safetensors"], 2,
                            ["version must be an integer (got '1')"], []),
    "header vocabulary a list": (["colorize", "sketch.png", "-r", "ref.jpg", "--model", "vlist.safetensors"], 2,
                                 ["header vocabulary must be an object"], []),
    "header vocabulary bad colour": (["colorize", "sketch.png", "-r", "ref.jpg", "--model", "vbad.safetensors"], 2,
                                     ["header vocabulary 'pink': '#12' is not a colour"], []),
    "header vocabulary of a million words": (["colorize", "sketch.png", "-p", "pink hair", "--model",
                                              "vbig.safetensors"], 2,
                                             ["header vocabulary has 1,000,000 words, but the network's embedding"], []),
    "app on a header that is null": (["app", "--model", "hnull.safetensors"], 2, ["header is not a JSON object"], []),
    "app on a host that is no address": (["app", "--model", "M.safetensors", "--host", "999.1.1.1"], 2,
                                         ["--host '999.1.1.1': not a valid host name or IP address"], []),
    # colour hints and transparency
    "hint outside the picture": (["colorize", "boxes.png", "-r", "ref.jpg", *M, "--hint", "40,5,red"], 2,
                                 ["hint 40,5,red: (40, 5) is outside the drawing (40x40 px"], []),
    "hint on a line": (["colorize", "boxes.png", "-r", "ref.jpg", *M, "--hint", "8,15,red"], 2,
                       ["hint 8,15,red: (8, 15) is on a line"], []),
    "hint in an unknown colour": (["colorize", "boxes.png", "-r", "ref.jpg", *M, "--hint", "15,15,pnk"], 2,
                                  ["hint 15,15,pnk: unknown colour 'pnk' (close: pink)"], []),
    "hint without a colour": (["colorize", "boxes.png", "-r", "ref.jpg", *M, "--hint", "15,15"], 2,
                              ["hint 15,15: expected X,Y,COLOUR"], []),
    "hint on a drawing with no closed regions": (["colorize", "sketch.png", "-r", "ref.jpg", *M, "--hint", "5,5,red"],
                                                 2, ["hint 5,5,red: the drawing has no closed regions"], []),
    "fully transparent drawing": (["colorize", "clear.png", "-r", "ref.jpg", *M], 2,
                                  ["the drawing is fully transparent"], []),
    "drawing too small": (["colorize", "sliver.png", "-r", "ref.jpg", *M], 2,
                          ["the drawing is 90x3 px: its shorter side must be at least 32 px"], []),
    "reference too small": (["colorize", "sketch.png", "-r", "icon.png", *M], 2,
                            ["the reference is 8x8 px: its shorter side must be at least 16 px"], []),
    # recipes (the rest of `animecolor recipe`'s bad input: tests/test_recipe.py)
    "recipe that does not exist": (["recipe", "nope", "--folder", ".", "--dry-run"], 2, ["no recipes/nope.yaml"], []),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(work, case, monkeypatch):
    args, code, fragments, outputs = CASES[case]
    if case == "bomb in a batch":
        (work / "batch" / "c.png").write_bytes((work / "bomb.png").read_bytes())
        code, fragments = 1, ["c.png: image too large"]
    monkeypatch.chdir(work)
    before = _tree(work)
    result = runner.invoke(app, args)
    text = result.output
    assert result.exit_code == code, text
    assert "Traceback" not in text and not isinstance(result.exception, (AssertionError, TypeError, KeyError)), text
    error_lines = [line for line in text.splitlines()
                   if any(mark in line.lower() for mark in ("error:", "failed:", "invalid value"))]
    assert len(error_lines) == len(fragments), text
    for fragment in fragments:
        assert fragment in text.replace("\n", " "), text
    after = _tree(work)
    changed = {k for k in after if before.get(k) != after[k]} | (set(before) - set(after))
    assert changed == set(outputs), (changed, text)
    assert not [p for p in work.rglob("*") if p.name.endswith(".tmp")]


def test_plain_function_refuses_non_finite_guidance(work, monkeypatch):
    """The CLI's range check is not the only guard: Python callers get the same clear error."""
    from stages.colorize import colorize_files

    monkeypatch.chdir(work)
    for bad in (float("inf"), float("nan"), -1.0):
        with pytest.raises(AnimecolorError, match="must be a number from 0 to 50"):
            colorize_files(Path("sketch.png"), Path("ref.jpg"), model=Path("M.safetensors"), guidance=bad)


@pytest.mark.parametrize("option, value", [("--text-guidance", "nan"), ("--guidance", "60"), ("--eta", "nan"),
                                           ("--match-chroma", "1.5"), ("--match-chroma", "nan"),
                                           ("--tile-scale", "0.3"), ("--tile-scale", "inf"),
                                           ("--match-lightness", "-0.1"), ("--match-lightness", "nan"),
                                           ("--even-regions", "2.5"), ("--even-regions", "-inf")])
def test_out_of_range_numbers_are_the_projects_one_line(work, monkeypatch, option, value):
    """Not Typer's six-line box (which also said nan "should be less than or equal to 50")."""
    monkeypatch.chdir(work)
    result = runner.invoke(app, ["colorize", "sketch.png", *M, "-p", "pink hair", option, value])
    assert result.exit_code == 2 and result.output.strip().startswith("error:"), result.output
    assert len(result.output.strip().splitlines()) == 1 and "must be a number from" in result.output
    assert option in result.output and not list(Path(work).glob("*_colored.png"))


def test_tile_scale_lightness_and_evening_are_checked_for_every_caller():
    """`ColorizeOptions` from a notebook or the app meets the CLI's range: one line naming the knob."""
    from pipeline.colorize import ColorizeOptions, check_options

    check_options(ColorizeOptions(tile_scale=0.7))
    for bad in (0.49, 2.5, float("nan"), True, "0.7"):
        with pytest.raises(AnimecolorError, match=r"^tile scale .*: must be a number from 0.5 to 2"):
            check_options(ColorizeOptions(tile_scale=bad))
    for bad in (1.5, -0.1, float("nan"), True, "0.5"):
        with pytest.raises(AnimecolorError, match=r"^match lightness .*: must be a number from 0 to 1"):
            check_options(ColorizeOptions(match_lightness=bad))
    check_options(ColorizeOptions(even_regions=0.0))
    for bad in (2.01, -0.1, float("inf"), True, "0.25", None):
        with pytest.raises(AnimecolorError, match=r"^even regions .*: must be a number from 0 to 2"):
            check_options(ColorizeOptions(even_regions=bad))
    for bad in ("yes", "", None, True):
        with pytest.raises(AnimecolorError, match=r"^reline .*: expected auto, on, off$"):
            check_options(ColorizeOptions(reline=bad))
    check_options(ColorizeOptions(align=np.bool_(False)))
    for name, bad in (("align", "no"), ("align", None), ("keep_paper", "yes"), ("keep_paper", 1), ("faces", 1),
                      ("tiles", "False"), ("keep_lines", 0.0),
                      ("binarize", "yes"), ("auto_levels", None), ("descreen", "no"), ("descreen", 1)):
        with pytest.raises(AnimecolorError, match=rf"^{name.replace('_', ' ')} .*: must be true or false"):
            check_options(ColorizeOptions(**{name: bad}))


def test_an_unknown_reline_is_one_line_and_writes_nothing(work, monkeypatch):
    monkeypatch.chdir(work)
    result = runner.invoke(app, ["colorize", "sketch.png", "-r", "ref.jpg", *M, "--reline", "always"])
    assert result.exit_code == 2 and result.output.strip() == "error: --reline 'always': expected auto, on or off", \
        result.output
    assert not list(Path(work).glob("*_colored.png"))


def test_long_inputs_are_named_not_pasted(work, monkeypatch):
    """A 100k-character prompt phrase: one short line (it was 200 KB)."""
    monkeypatch.chdir(work)
    for prompt in ("x" * 100_000 + " hair", "pink hair, " + "y" * 900):
        result = runner.invoke(app, ["colorize", "sketch.png", *M, "-p", prompt])
        assert result.exit_code == 2 and len(result.output) < 400, result.output[:400]
        assert len(result.output.strip().splitlines()) == 1


def test_extract_lines_on_a_full_disk_is_one_line_per_image(work, monkeypatch):
    import errno

    import stages.colorize

    def full(path, image):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(stages.colorize, "write_png", full)
    monkeypatch.chdir(work)
    result = runner.invoke(app, ["extract-lines", "sketch.png", "ref.jpg", "-o", "lines"])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    failed = [line for line in result.output.splitlines() if "failed:" in line]
    assert len(failed) == 2 and all("cannot write (No space left on device)" in line for line in failed)


def test_skip_existing_says_what_it_did(work, monkeypatch):
    monkeypatch.chdir(work)
    first = runner.invoke(app, ["colorize", "batch", "-r", "ref.jpg", *M, "-o", "out"])
    assert first.exit_code == 0 and "2 of 2 written" in first.output
    again = runner.invoke(app, ["colorize", "batch", "-r", "ref.jpg", *M, "-o", "out", "--skip-existing"])
    assert again.exit_code == 0 and "0 of 2 written, 2 skipped" in again.output.replace("\n", " ")


def test_existing_output_is_overwritten_by_design(work, monkeypatch):
    monkeypatch.chdir(work)
    (work / "out.png").write_bytes(b"old")
    result = runner.invoke(app, ["colorize", "sketch.png", "-r", "ref.jpg", *M, "-o", "out.png"])
    assert result.exit_code == 0 and Image.open(work / "out.png").size == (40, 40)
    assert "overwritten" in runner.invoke(app, ["colorize", "--help"]).output


def test_new_files_get_the_umask_mode(work, monkeypatch):
    monkeypatch.chdir(work)
    old = os.umask(0o022)
    try:
        assert runner.invoke(app, ["colorize", "sketch.png", "-r", "ref.jpg", *M, "-o", "o.png"]).exit_code == 0
        assert runner.invoke(app, ["export", "ckpt.pt", "-o", "e.safetensors"]).exit_code == 0
    finally:
        os.umask(old)
    for name in ("o.png", "e.safetensors"):
        assert stat.S_IMODE((work / name).stat().st_mode) == 0o644, name


# ---------------------------------------------------------------- property-based
_value = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30), st.floats(allow_nan=True),
                                st.text(max_size=8)),
                      lambda inner: st.one_of(st.lists(inner, max_size=3),
                                              st.dictionaries(st.text(max_size=12), inner, max_size=4)),
                      max_leaves=12)
_keys = st.sampled_from(["seed", "image_size", "source", "n_images", "download", "workers", "unet", "loop",
                         "train_steps", "channel_mults", "xdog", "sigma", "tps", "steps", "sample_steps", "zzz"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(section=st.sampled_from(list(SECTIONS)), data=st.dictionaries(_keys, _value, max_size=4))
def test_params_loader_never_crashes(section, data):
    """Random nesting, types and keys: a typed section or one ParamsError line naming the key."""
    try:
        typed = validate_section(section, data)
    except ParamsError as exc:
        message = str(exc)
        assert "\n" not in message and message.startswith(section), message
        return
    assert isinstance(typed, SECTIONS[section])


def test_an_unprintable_key_is_named_on_one_line():
    with pytest.raises(ParamsError) as err:  # found by the fuzz test above
        validate_section("pretrain", {"unet": {"\n": None}})
    assert str(err.value).startswith("pretrain.unet.'\\n': unknown key") and "\n" not in str(err.value)


def _valid_images() -> list[bytes]:
    out = []
    rng = np.random.default_rng(1)
    for fmt, mode in (("PNG", "RGB"), ("PNG", "RGBA"), ("PNG", "L"), ("JPEG", "RGB"), ("PNG", "I;16")):
        buf = io.BytesIO()
        arr = rng.integers(0, 255, (12, 9, 3), dtype=np.uint8)
        img = Image.fromarray(arr).convert(mode) if mode != "I;16" else Image.fromarray(
            arr[..., 0].astype(np.uint16) * 257)
        img.save(buf, format=fmt)
        out.append(buf.getvalue())
    exif = Image.Exif()
    exif[0x0112] = 6  # a phone's JPEG: mutations reach the EXIF block the reader now parses
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (12, 9, 3), dtype=np.uint8)).save(buf, format="JPEG", exif=exif.tobytes())
    out.append(buf.getvalue())
    return out


VALID = _valid_images()


@settings(max_examples=300, deadline=None)
@given(base=st.sampled_from(range(len(VALID))), edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)),
                                                               max_size=6),
       cut=st.one_of(st.none(), st.integers(0, 10**6)))
def test_image_reader_mutated_files(base, edits, cut):
    """Mutated valid PNG/JPEG bytes: a clean AnimecolorError or a correct uint8 RGBA image, never a crash."""
    data = bytearray(VALID[base])
    for pos, value in edits:
        data[pos % len(data)] = value
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    try:
        img = decode_image(bytes(data), "x.png")
    except AnimecolorError as exc:
        assert "\n" not in str(exc)
        return
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 4


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=256))
def test_image_reader_random_bytes(data):
    """Any bytes: one AnimecolorError line, or (the rare valid file) a uint8 RGBA image."""
    try:
        img = decode_image(data, "x")
    except AnimecolorError as exc:
        assert "\n" not in str(exc)
        return
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 4


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "TIFF"])
def test_image_reader_stands_pictures_as_viewers_show_them(fmt):
    """Every EXIF orientation (a phone's photo of a drawing) gives the pixels PIL's exif_transpose
    shows, in each format (cv2 turns TIFF itself and ignores the tag elsewhere)."""
    from PIL import ImageOps

    stored = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        buf = io.BytesIO()
        Image.fromarray(stored).save(buf, format=fmt, exif=exif.tobytes(),
                                     **{"JPEG": {"quality": 100, "subsampling": 0}, "WEBP": {"lossless": True}}.get(fmt, {}))
        shown = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(buf.getvalue()))).convert("RGB"))
        got = decode_image(buf.getvalue(), "x")
        assert got.shape[:2] == shown.shape[:2], (fmt, orientation)
        assert np.abs(got[..., :3].astype(int) - shown).max() <= (8 if fmt == "JPEG" else 0), (fmt, orientation)


def test_image_reader_reads_a_pngs_header_without_its_pixels(monkeypatch):
    """The size check and the orientation come from the header: PIL never decodes a PNG (its
    `getexif` would, for a PNG without an eXIf chunk before the pixels), so a huge flat PNG is
    refused at the cost of its header, and a small one is decoded once, by cv2."""
    import cv2
    from PIL import PngImagePlugin

    decoded, load = [], PngImagePlugin.PngImageFile.load

    def counted(self):
        decoded.append(self.size)
        return load(self)

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", counted)
    huge = cv2.imencode(".png", np.zeros((4000, 4000), np.uint8))[1].tobytes()
    with pytest.raises(AnimecolorError, match="too large"):
        decode_image(huge, "huge.png", max_pixels=1_000_000)
    small = cv2.imencode(".png", np.full((5, 7, 3), 40, np.uint8))[1].tobytes()
    assert decode_image(small, "small.png").shape == (5, 7, 4)
    assert decoded == []


@pytest.mark.parametrize("value", [0, 9, 65535])
def test_image_reader_odd_orientation_tags_keep_the_stored_pixels(value):
    """An out-of-range or mistyped orientation tag is ignored, not a crash."""
    stored = np.random.default_rng(2).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = value
    buf = io.BytesIO()
    Image.fromarray(stored).save(buf, format="PNG", exif=exif.tobytes())
    assert np.array_equal(decode_image(buf.getvalue(), "x")[..., :3], stored)


def test_image_reader_16_bit_and_alpha_are_handled_the_same_everywhere():
    from pipeline.data.clean import decode
    from pipeline.data.imageio import flatten_alpha

    png16 = VALID[4]
    rgba = decode_image(png16, "x")
    assert rgba.dtype == np.uint8 and np.array_equal(flatten_alpha(rgba), decode(png16))
    assert rgba[..., 3].min() == 255


NEED_FULL = "--passes, --figure, --even, --firm, --align, --paper, --scan, --pencil and --mirror need --full"


@pytest.mark.parametrize("spec, extra, fragment", [
    ("nope", [], "--model 'nope': expected NAME=PATH"),
    ("a=/nonexistent/m.safetensors", [], "model file not found"),
    ("a=/nonexistent/m.safetensors", ["--passes"], NEED_FULL),
    ("a=/nonexistent/m.safetensors", ["--figure"], NEED_FULL),
    ("a=/nonexistent/m.safetensors", ["--even"], NEED_FULL),
    ("a=/nonexistent/m.safetensors", ["--firm"], NEED_FULL),
    ("a=/nonexistent/m.safetensors", ["--align"], NEED_FULL),
    ("a=/nonexistent/m.safetensors", ["--mirror"], NEED_FULL),
    ("a=/nonexistent/m.safetensors", ["--paper"], NEED_FULL),
    ("a=/nonexistent/m.safetensors", ["--scan"], NEED_FULL),
    ("a=/nonexistent/m.safetensors", ["--pencil"], NEED_FULL),
    ("a=/nonexistent/m.safetensors", ["--full", "--figure", "--chroma"], "one at a time"),
    ("a=/nonexistent/m.safetensors", ["--full", "--even", "--passes"], "one at a time"),
    ("a=/nonexistent/m.safetensors", ["--full", "--align", "--even"], "one at a time"),
    ("a=/nonexistent/m.safetensors", ["--full", "--firm", "--even"], "one at a time"),
    ("a=/nonexistent/m.safetensors", ["--full", "--paper", "--align"], "one at a time"),
    ("a=/nonexistent/m.safetensors", ["--full", "--scan", "--paper"], "one at a time"),
    ("a=/nonexistent/m.safetensors", ["--full", "--pencil", "--scan"], "one at a time")])
@pytest.mark.slow  # a Python start-up and the torch import per case
def test_sprite_compare_script_refuses_bad_models_in_one_line(spec, extra, fragment):
    """scripts/figures/sprite_compare.py (a README helper): a bad --model, --passes or --figure without
    --full, or two views at once, is one line on stderr, no traceback."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, str(root / "scripts" / "figures" / "sprite_compare.py"), "--model", spec,
                           *extra], capture_output=True, text=True, cwd=root)
    assert done.returncode != 0 and fragment in done.stderr and "Traceback" not in done.stderr
    assert len([line for line in done.stderr.splitlines() if "error" in line]) == 1



@pytest.mark.parametrize("extra, fragment", [
    (["--model", "/nonexistent/m.safetensors"], "model file not found"),
    (["--model", "/nonexistent/m.safetensors", "--out", "/nonexistent/dir/poses.png"], "no folder /nonexistent/dir")])
@pytest.mark.slow  # a Python start-up and the torch import per case
def test_concert_poses_script_refuses_bad_input_in_one_line(extra, fragment, tmp_path):
    """scripts/figures/concert_poses.py: a missing model or an output folder that does not exist is
    one line on stderr, exit 2, no traceback, nothing written."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, str(root / "scripts" / "figures" / "concert_poses.py"), *extra]
                          + (["--out", str(tmp_path / "poses.png")] if "--out" not in extra else []),
                          capture_output=True, text=True, cwd=root)
    assert done.returncode == 2 and fragment in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "poses.png").exists()

_json = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30), st.floats(allow_nan=True),
                               st.text(max_size=8)),
                     lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner,
                                                                                          max_size=3)),
                     max_leaves=8)
_fields = st.sampled_from(["format", "version", "unet", "diffusion", "image_size", "step", "training", "metrics",
                           "vocabulary", "unet.image_size", "unet.channels", "unet.text", "unet.vocabulary",
                           "unet.channel_mults", "diffusion.timesteps", "diffusion.schedule", "vocabulary.pink", None])


@settings(max_examples=150, deadline=None)
@given(field=_fields, value=_json)
def test_model_header_property_one_line_or_a_model(model_file, tmp_path_factory, field, value):
    """Any JSON value in any header field (or as the whole header): one AnimecolorError line, or a
    model that loads and takes a prompt; never a traceback."""
    from pipeline.colorize import encode_prompt, load_model, model_vocabulary

    def edit(header):
        if field is None:
            return _Raw(json.dumps(value))
        if "." in field:
            section, key = field.split(".")
            inner = header.get(section)
            return {**header, section: {**inner, key: value} if isinstance(inner, dict) else {key: value}}
        return {**header, field: value}

    path = tmp_path_factory.mktemp("header") / "m.safetensors"
    _edit_header(model_file, path, edit)
    try:
        model, _, info = load_model(path)
        model_vocabulary(model, info)
        encode_prompt(model, "pink hair, blue eyes", info)
    except AnimecolorError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 600, str(exc)
