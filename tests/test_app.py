"""`animecolor app`: the page in a real browser (headless system Chromium via Playwright), its
request logic without a browser, and the command's one-line errors.

The model is a tiny randomly initialised network exported in the test (no training: latency
and plumbing do not depend on the weights). The browser steps (tests/browser.py) are the ones
scripts/figures/app_screenshot.py uses for docs/img/app.png.
"""

from __future__ import annotations

import io
import json
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

pytest.importorskip("gradio", reason="the app needs the `app` extra: pip install -e '.[app]'")

from pipeline.app import (Colorizer, build_app, drawing_input, extracted_lines, make_examples,  # noqa: E402
                          PageInputs, add_hint, pad_drawing, read_upload, request)
from pipeline.colorize import layer_paths  # noqa: E402
from loopback import png_header  # noqa: E402
from pipeline.errors import AnimecolorError  # noqa: E402
from tests import browser as steps  # noqa: E402
from tests.benchmarks.bench_app import untrained_model  # noqa: E402


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width x height but whose pixel data is a few bytes."""
    path.write_bytes(png_header(width, height))
    return path


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("app-model") / "tiny.safetensors"
    return untrained_model(path, image_size=32, channels=8, channel_mults=(1, 2), heads=2,
                           reference_attention=(16,), text=True)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The example pairs (made by the pipeline), an odd-sized drawing, a corrupt file, oversized headers."""
    root = tmp_path_factory.mktemp("app-files")
    pairs = make_examples(root / "examples", size=96)
    drawing = root / "my drawing.png"  # odd size and aspect, a space in the name
    sketch = cv2.imread(str(pairs[0][0]), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(drawing), cv2.resize(sketch, (77, 101), interpolation=cv2.INTER_AREA))
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    return {"drawing": drawing, "reference": pairs[0][1], "pairs": pairs, "broken": root / "broken.png",
            "huge": png_header_only(root / "huge.png", 5000, 4000),          # 20 MP > the app's 16 MP
            "bomb": png_header_only(root / "bomb.png", 20_000, 20_000)}     # > 2 x PIL's limit


@pytest.fixture(scope="module")
def colorizer(model_file, tmp_path_factory):
    return Colorizer(model_file, "cpu", tmp_path_factory.mktemp("app-results"))


# ---------------------------------------------------------------- without a browser
def test_examples_are_made_by_the_pipeline(files):
    for drawing, reference in files["pairs"]:
        lines, ref = read_upload(drawing, "drawing"), read_upload(reference, "reference")
        assert lines.shape == ref.shape and lines.shape[0] > lines.shape[1]  # portrait, same size
        gray = lines[..., 0]
        assert np.array_equal(gray, lines[..., 1]) and (gray > 128).mean() > 0.7  # white paper, dark lines
        assert ref[..., :3].std(axis=2).mean() > 10  # in colour


@pytest.mark.parametrize("name, message", [("broken", "broken.png: not a readable image"),
                                           ("huge", "too large (5000x4000"), ("bomb", "too large")])
def test_bad_files_are_one_clean_line(files, name, message):
    with pytest.raises(AnimecolorError) as info:
        read_upload(files[name], "reference")
    text = str(info.value)
    assert message in text and "\n" not in text
    assert str(files[name].parent) not in text  # the visitor's file name, never the server's path


def test_request_progress_variations_and_png_metadata(colorizer, files):
    calls = []
    inputs = PageInputs("upload", str(files["drawing"]), reference=str(files["reference"]), steps=3, guidance=1.5,
                        seed=7)
    result = request(colorizer, 4, inputs, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(0, 3), (1, 3), (2, 3), (3, 3)]  # one batch: the bar moves once per DDIM step
    assert result.seeds == [7, 8, 9, 10] and "4 variations" in result.status
    single = request(colorizer, 1, PageInputs("upload", str(files["drawing"]), reference=str(files["reference"]),
                                              steps=3, guidance=1.5, seed=9))
    for path, seed in zip(result.paths, result.seeds):
        with Image.open(path) as im:
            assert im.size == (77, 101)  # the drawing's own size
            params = json.loads(im.text["animecolor"])
        assert params["seed"] == seed and params["sample_steps"] == 3 and params["sketch"] == "my drawing.png"
    assert np.array_equal(np.asarray(Image.open(result.paths[2])), np.asarray(Image.open(single.paths[0])))


def test_request_inputs_pad_and_colour_picture(colorizer, files):
    pad = np.zeros((64, 64, 4), np.uint8)  # transparent canvas
    with pytest.raises(AnimecolorError, match="sketch pad is empty"):
        drawing_input("draw", None, {"composite": pad, "layers": [], "background": None}, None)
    pad[20:40, 30:33] = (0, 0, 0, 255)
    rgba, mode, _ = drawing_input("draw", None, {"composite": pad}, None)
    assert mode == "lines" and pad_drawing({"composite": pad}) is not None
    with pytest.raises(AnimecolorError, match="no reference"):
        request(colorizer, 1, PageInputs("draw", pad={"composite": pad}, steps=2))
    picture = str(files["reference"])  # a colour picture: lines by XDoG, previewed as extracted_lines
    preview = extracted_lines(read_upload(picture, "colour picture"))
    result = request(colorizer, 1, PageInputs("picture", picture=picture, reference=picture, steps=2))
    with Image.open(result.paths[0]) as im:
        assert im.size == preview.shape[::-1]
        assert json.loads(im.text["animecolor"])["mode"] == "xdog"
    with pytest.raises(AnimecolorError, match="no line drawing"):
        request(colorizer, 1, PageInputs("upload", reference=picture, steps=2))


def test_request_with_a_prompt_and_no_reference(colorizer, files):
    """The tiny test model is a text model: a prompt alone is enough,
    a bad prompt is one line, and the prompt is stored with the picture."""
    result = request(colorizer, 1, PageInputs("upload", str(files["drawing"]), steps=2,
                                              prompt="pink hair, heterochromia, red eyes, blue eyes",
                                              text_guidance=2.0))
    assert 'prompt "pink hair' in result.status
    with Image.open(result.paths[0]) as im:
        params = json.loads(im.text["animecolor"])
    assert params["prompt"].startswith("pink hair") and params["text_guidance"] == 2.0 and params["reference"] == ""
    with pytest.raises(AnimecolorError, match="unknown colour 'pinkk'"):
        request(colorizer, 1, PageInputs("upload", str(files["drawing"]), steps=2, prompt="pinkk hair"))


def test_request_keeps_the_paper_unless_unticked(colorizer, files, monkeypatch):
    """The page's "keep the paper" box is `colorize --keep-paper/--paint-paper`: ticked (the default)
    the paper around a drawing on white comes back white and the status says so; unticked the
    model's colours stay there. Both are stored with the picture. (The tiny test model paints the
    paper any colour: the tint is widened so that its paper counts.)"""
    import pipeline.hints

    monkeypatch.setattr(pipeline.hints, "PAPER_TINT", 500.0)
    page = dict(source="upload", drawing=str(files["drawing"]), reference=str(files["reference"]), steps=2)
    kept = request(colorizer, 1, PageInputs(**page))
    painted = request(colorizer, 1, PageInputs(**page, keep_paper=False))
    assert "the paper around the figure kept as drawn" in kept.status and "paper" not in painted.status
    with Image.open(kept.paths[0]) as a, Image.open(painted.paths[0]) as b:
        assert [json.loads(im.text["animecolor"])["keep_paper"] for im in (a, b)] == [True, False]
        corner_a, corner_b = np.asarray(a.convert("RGB"))[:3, :3], np.asarray(b.convert("RGB"))[:3, :3]
    assert (corner_a == 255).all() and (corner_b != 255).any()


@pytest.mark.parametrize("field", ["guidance", "eta", "text_guidance", "steps", "seed", "match_chroma", "tile_scale",
                                   "match_lightness", "even_regions"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1e9, "abc"])
def test_request_refuses_what_the_cli_refuses(colorizer, files, field, value):
    """NaN guidance once made an all-black picture reported as "Done" (issue 37): every number is
    checked in the request function, whatever the page's sliders let through."""
    inputs = PageInputs("upload", str(files["drawing"]), reference=str(files["reference"]), prompt="pink hair",
                        **{"steps": 2, field: value})
    with pytest.raises(AnimecolorError, match=field.replace("_", " ")) as info:
        request(colorizer, 1, inputs)
    assert "\n" not in str(info.value) and len(str(info.value)) < 200


@pytest.mark.parametrize("prompt", [",,,", " . ", " and "])
def test_a_prompt_naming_no_colour_is_no_prompt(colorizer, files, prompt):
    with pytest.raises(AnimecolorError, match="give a colour reference, a prompt, or both"):
        request(colorizer, 1, PageInputs("upload", str(files["drawing"]), steps=2, prompt=prompt))


def test_a_long_prompt_is_named_not_pasted(colorizer, files):
    with pytest.raises(AnimecolorError) as info:
        request(colorizer, 1, PageInputs("upload", str(files["drawing"]), steps=2, prompt="pink " * 200_000))
    assert len(str(info.value)) < 200


def test_uploads_that_are_not_regular_files(colorizer, files, tmp_path):
    import os

    os.mkfifo(tmp_path / "fifo.png")
    (tmp_path / "zero.png").symlink_to("/dev/zero")
    for path in (tmp_path / "fifo.png", tmp_path / "zero.png", tmp_path):
        with pytest.raises(AnimecolorError, match="not a regular file"):
            request(colorizer, 1, PageInputs("upload", str(files["drawing"]), reference=str(path), steps=2))


class _Checked:
    """A stand-in for Colorizer that samples nothing: it asserts every value reached it checked, and
    parses the prompt as the real one does (the real model and vocabulary)."""

    def __init__(self, colorizer):
        self.real = colorizer

    def __call__(self, sketch, reference, opts, seeds, names, step):
        from pipeline.colorize import check_options, encode_prompt

        try:
            check_options(opts)
        except AnimecolorError as exc:
            raise AssertionError(f"the request let a bad value through: {exc}") from None
        assert all(0 <= s <= 2**31 - 1 for s in seeds)
        encode_prompt(self.real.model, opts.prompt, self.real.info)
        if reference is None and not opts.prompt.strip():
            raise AssertionError("no reference and no prompt reached the model")
        return [], None


_anything = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**30, 10**30), st.booleans(),
                      st.none(), st.text(max_size=12))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=_anything, guidance=_anything, eta=_anything, seed=_anything, text_guidance=_anything,
       tile_scale=_anything, match_lightness=_anything, even_regions=_anything, prompt=st.one_of(st.text(max_size=60), st.none(), st.sampled_from(["pink hair", ",,,", "blue eyes and red hair"])),
       source=st.one_of(st.sampled_from(["upload", "draw", "picture"]), st.text(max_size=8)),
       reference=st.one_of(st.none(), st.just("REF"), st.text(max_size=12)), n=st.sampled_from([1, 4]))
def test_request_property_a_picture_or_one_line(colorizer, files, steps, guidance, eta, seed, text_guidance,
                                                tile_scale, match_lightness, even_regions, prompt, source, reference,
                                                n):
    """Any number (NaN and inf included), any string, in any field: the request reaches the model
    with checked values, or is one AnimecolorError line; never another exception."""
    reference = str(files["reference"]) if reference == "REF" else reference
    inputs = PageInputs(source, str(files["drawing"]), None, str(files["reference"]), reference, steps, guidance, eta,
                        seed, True, prompt, text_guidance, tile_scale=tile_scale, match_lightness=match_lightness,
                        even_regions=even_regions)
    try:
        result = request(_Checked(colorizer), n, inputs)
    except AnimecolorError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 400, str(exc)
        return
    assert len(result.seeds) == n and "Done" in result.status


def test_request_hints_and_layers(colorizer, tmp_path):
    """Hints from the page's box: only their regions change (same seed), each to its colour; every
    picture has its layers beside it; a hint that cannot apply is one line."""
    from skimage.color import deltaE_ciede2000, rgb2lab

    from pipeline.hints import line_regions

    shapes = np.full((90, 120), 255, np.uint8)
    cv2.circle(shapes, (40, 45), 25, 0, 2, cv2.LINE_AA)
    cv2.rectangle(shapes, (75, 20), (110, 70), 0, 2, cv2.LINE_AA)
    cv2.imwrite(str(tmp_path / "shapes.png"), shapes)
    page = dict(source="upload", drawing=str(tmp_path / "shapes.png"), prompt="pink hair", steps=2, seed=5)
    plain = request(colorizer, 1, PageInputs(**page))
    hints = add_hint("40,45,#3060ff", 92, 45, "rgba(255, 102, 170, 1)")  # a click, as some browsers send colours
    assert hints == "40,45,#3060ff; 92,45,#ff66aa"
    hinted = request(colorizer, 1, PageInputs(**page, hints=hints))
    assert "2 colour hints" in hinted.status
    a, b = (np.asarray(Image.open(r.paths[0])) for r in (plain, hinted))
    _, labels = line_regions(shapes)
    for (x, y), rgb in (((40, 45), (0x30, 0x60, 0xFF)), ((92, 45), (255, 102, 170))):
        region = labels == labels[y, x]
        median = np.median(rgb2lab(b[region][:, None] / 255.0)[:, 0], axis=0)
        assert deltaE_ciede2000(median, rgb2lab(np.array([[rgb]]) / 255.0)[0, 0]) < 1.0
    changed = (labels == labels[45, 40]) | (labels == labels[45, 92])
    assert np.array_equal(a[~changed], b[~changed])
    for path in hinted.paths:
        colour, lines = layer_paths(path)
        assert Image.open(colour).size == Image.open(lines).size == (120, 90) and Image.open(lines).mode == "RGBA"
    cv2.imwrite(str(tmp_path / "clear.png"), np.zeros((40, 40, 4), np.uint8))
    for bad, message in (("40,20,red", "is on a line"), ("500,3,red", "is outside the drawing"),
                         ("40,45,pnk", "unknown colour 'pnk'"), ("40", "expected X,Y,COLOUR")):
        with pytest.raises(AnimecolorError, match=message) as info:
            request(colorizer, 1, PageInputs(**page, hints=bad))
        assert "\n" not in str(info.value)
    with pytest.raises(AnimecolorError, match="fully transparent"):
        request(colorizer, 1, PageInputs(**{**page, "drawing": str(tmp_path / "clear.png")}))


def test_a_click_on_the_picture_adds_a_hint(model_file, tmp_path):
    """The output image's select event (a click at x, y with the picker's colour): the hint joins the
    box and the picture is made again with it; a click on a line is the status line, the box unchanged."""
    import gradio as gr

    demo = build_app(model_file, "cpu", work_dir=tmp_path / "app")
    clicked = next(f.fn for f in demo.fns.values() if getattr(f.fn, "__name__", "") == "clicked")
    shapes = np.full((90, 120), 255, np.uint8)
    cv2.circle(shapes, (40, 45), 25, 0, 2, cv2.LINE_AA)
    cv2.imwrite(str(tmp_path / "shapes.png"), shapes)
    widgets = ["upload", str(tmp_path / "shapes.png"), None, None, None, 2, 1.0, 0.0, 5, True, "pink hair", 1.0]

    def click(x, y, hints):
        return clicked(*widgets, hints, True, 0.3, 0.7, 0.2, 0.6, False, [], "#3060ff",  # chroma, tile scale,
                       gr.SelectData(None, {"index": [x, y], "value": None}))  # lightness, evening: distinct

    picture, downloads, _, _, status, hints = click(40, 45, "")
    assert hints == "40,45,#3060ff" and "1 colour hint" in status
    with Image.open(picture) as im:
        params = json.loads(im.text["animecolor"])
    assert ((params["match_chroma"], params["tile_scale"], params["match_lightness"], params["even_regions"],
             params["keep_paper"]) == (0.3, 0.7, 0.2, 0.6, False))  # each its own knob
    assert [Path(d).name for d in downloads] == [Path(picture).name, *(p.name for p in layer_paths(Path(picture)))]
    *_, status, hints = click(15, 45, "40,45,#3060ff")  # on the circle's line
    assert "is on a line" in status and isinstance(hints, type(gr.skip()))


def test_page_says_what_the_model_was_trained_on(tmp_path):
    """Under the title: the training data from the model file, and the procedural-faces warning."""
    from pipeline.colorize import export_model, load_model

    model, diffusion, info = load_model(untrained_model(tmp_path / "plain.safetensors", image_size=32,
                                                        channels=8, channel_mults=(1, 2), heads=2))
    data = [{"stage": "pretrain", "faces": 32, "sources": {"synthetic": 32}}]
    export_model({"unet": info["unet"], "diffusion": info["diffusion"], "step": 6, "meta": {"data": data},
                  "ema": {k: v.detach() for k, v in model.state_dict().items()}}, tmp_path / "synthetic.safetensors")
    for name, said, warned in (("plain", "trained on unknown data", False),
                               ("synthetic", "trained on 32 procedural (synthetic) faces (pretrain)", True)):
        demo = build_app(tmp_path / f"{name}.safetensors", "cpu", work_dir=tmp_path / name)
        text = " ".join(str(c.get("props", {}).get("value", "")) for c in demo.config["components"])
        assert said in text and ("trained on procedural faces: expect pale colours" in text) == warned


def test_guidance_slider_is_fixed_for_a_model_trained_without_reference_dropout(tmp_path, files):
    """A model whose pretraining never dropped the reference has no unconditional output to guide
    from: the page's guidance slider stays at 1 and says why, and an API call with another scale
    gets a note in the status line; with dropout the slider is live and there is no note."""
    from pipeline.colorize import export_model, load_model

    model, diffusion, info = load_model(untrained_model(tmp_path / "plain.safetensors", image_size=32,
                                                        channels=8, channel_mults=(1, 2), heads=2))
    for name, dropout in (("nodrop", 0.0), ("drop", 0.1)):
        data = [{"stage": "pretrain", "faces": 32, "sources": {"folder": 32}, "reference_dropout": dropout}]
        export_model({"unet": info["unet"], "diffusion": info["diffusion"], "step": 6, "meta": {"data": data},
                      "ema": {k: v.detach() for k, v in model.state_dict().items()}}, tmp_path / f"{name}.safetensors")
        demo = build_app(tmp_path / f"{name}.safetensors", "cpu", work_dir=tmp_path / name)
        slider = next(c["props"] for c in demo.config["components"] if c.get("props", {}).get("elem_id") == "guidance")
        assert slider["value"] == 1 and slider.get("interactive", True) is (dropout > 0)
        assert ("trained without reference dropout" in slider["label"]) is (dropout == 0)
        colorizer = Colorizer(tmp_path / f"{name}.safetensors", "cpu", tmp_path / f"{name}-results")
        for guidance in (1.0, 2.0):
            status = request(colorizer, 1, PageInputs("upload", str(files["drawing"]), reference=str(files["reference"]),
                                                      steps=1, guidance=guidance)).status
            assert ("without reference dropout" in status) is (dropout == 0 and guidance == 2.0), status


def test_command_errors_are_one_line(tmp_path, monkeypatch):
    import typer
    from typer.testing import CliRunner

    from stages import app as stage

    cli = typer.Typer()
    cli.command()(stage.main)
    runner = CliRunner()
    result = runner.invoke(cli, ["--model", str(tmp_path / "missing.safetensors")])
    assert result.exit_code == 2 and "run `dvc repro` or pass --model" in result.output
    assert "Traceback" not in result.output
    monkeypatch.setitem(sys.modules, "gradio", None)  # `import gradio` now raises ImportError
    result = runner.invoke(cli, [])
    assert result.exit_code == 2 and "pip install -e '.[app]'" in result.output


def test_app_on_every_interface_says_so_with_the_real_address(model_file, monkeypatch):
    """--host 0.0.0.0 printed a localhost address and no warning (issue 37)."""
    import typer
    from typer.testing import CliRunner

    import pipeline.app
    from stages import app as stage

    class Served:
        def block_thread(self):
            pass

    monkeypatch.setattr(pipeline.app, "launch", lambda *a, **k: (Served(), "http://localhost:7860/"))
    cli = typer.Typer()
    cli.command()(stage.main)
    result = CliRunner().invoke(cli, ["--model", str(model_file), "--host", "0.0.0.0", "--port", "7860"])
    text = " ".join(result.output.split())
    assert result.exit_code == 0 and "http://0.0.0.0:7860/" in text and "localhost" not in text, text
    assert "warning: the page is open to every network interface (0.0.0.0) without a login" in text
    local = CliRunner().invoke(cli, ["--model", str(model_file), "--port", "7860"])
    assert "http://127.0.0.1:7860/" in local.output and "warning" not in local.output


def test_app_keeps_its_files_private_and_removes_them_on_stop(model_file, monkeypatch):
    """Results were 0644 in 0755 folders and stayed after exit; SIGTERM left the work folders; Ctrl-C
    said "rerun the same command to resume" (issue 37)."""
    import os
    import signal
    import stat

    import typer
    from typer.testing import CliRunner

    import pipeline.app
    from stages import app as stage

    seen = {}

    class Served:
        def block_thread(self):
            os.kill(os.getpid(), signal.SIGTERM)  # as `kill <pid>` would

    def fake_launch(model, host, port, device, block, quiet, work_dir):
        work = Path(os.environ["GRADIO_TEMP_DIR"]).parent
        work_dir.mkdir(parents=True)
        (work_dir / "result.png").write_bytes(b"x")
        seen.update(work=work, folder=stat.S_IMODE(work.stat().st_mode),
                    file=stat.S_IMODE((work_dir / "result.png").stat().st_mode))
        return Served(), "http://localhost:7860/"

    monkeypatch.setattr(pipeline.app, "launch", fake_launch)
    cli = typer.Typer()
    cli.command()(stage.main)
    result = CliRunner().invoke(cli, ["--model", str(model_file)])
    assert result.exit_code == 0 and "stopped" in result.output and "resume" not in result.output, result.output
    assert seen["folder"] == 0o700 and seen["file"] == 0o600 and not seen["work"].exists()


@pytest.mark.parametrize("host, message", [("999.1.1.1", "--host '999.1.1.1': not a valid host name or IP address"),
                                           ("10.255.255.254", "cannot listen there")])
def test_a_bad_host_is_blamed_on_the_host(model_file, tmp_path, host, message):
    from pipeline.app import launch

    with pytest.raises(AnimecolorError, match=message):
        launch(model_file, host, steps.free_port(), "cpu", block=False, quiet=True, work_dir=tmp_path)


def test_build_app_refuses_a_missing_model(tmp_path):
    with pytest.raises(AnimecolorError, match="not found"):
        build_app(tmp_path / "nope.safetensors", "cpu", work_dir=tmp_path)


def test_old_results_are_pruned(colorizer):
    import os

    old = colorizer.out_dir / "old-request"
    old.mkdir()
    os.utime(old, (time.time() - 2 * 86400,) * 2)
    colorizer.prune()
    assert not old.exists()


# ---------------------------------------------------------------- in the browser
@pytest.fixture(scope="module")
def server(model_file, tmp_path_factory):
    from pipeline.app import launch

    demo, url = launch(model_file, port=steps.free_port(), device="cpu", block=False, quiet=True,
                       work_dir=tmp_path_factory.mktemp("app-server"))
    yield url
    demo.close()


@pytest.fixture(scope="module")
def browser():
    chromium = steps.find_chromium()
    if chromium is None:
        pytest.skip("no system Chromium (apt-get install chromium; .ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[test]' (playwright)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


def fetch_png(page, src: str) -> Image.Image:
    """The output image's bytes, fetched by the page's own browser context."""
    response = page.request.get(src)
    assert response.ok
    return Image.open(io.BytesIO(response.body()))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*no_silent_downcasting", "ignore:The copy keyword is deprecated")
def test_page_colours_a_drawing_and_survives_bad_input(server, browser, files, tmp_path):
    t0 = time.perf_counter()
    page = steps.open_page(browser, server)
    page.evaluate("""() => { window.progressSeen = [];
        new MutationObserver(() => window.progressSeen.push(document.querySelector('#output').innerText))
            .observe(document.querySelector('#output'), {subtree: true, childList: true, characterData: true}); }""")

    # a drawing and a reference through the page's file inputs, then Colorize
    src, _ = steps.colorize(page, files["drawing"], files["reference"])
    image = fetch_png(page, src)
    assert image.size == (77, 101)  # the drawing's own size
    rgb = np.asarray(image.convert("RGB")).astype(np.float32)
    assert rgb.std() > 10 and rgb.std(axis=2).mean() > 3  # not blank, and in colour
    assert json.loads(image.text["animecolor"])["sketch"] == "my drawing.png"  # the parameters ride along
    assert "Done: 77×101 px" in page.locator("#status").inner_text()
    assert any("DDIM" in text and "/20" in text for text in page.evaluate("window.progressSeen"))
    assert page.locator("#download a").count() >= 1

    # the random-seed button
    page.locator("#random_seed").click()
    page.wait_for_function("document.querySelector('#seed input').value !== '0'")

    # 4 variations in one batch -> 5 pictures in the gallery
    steps.colorize(page, button="variations")
    assert page.locator("#gallery img").count() == 5
    assert "4 variations" in page.locator("#status").inner_text()

    # a corrupt reference: one clean line in the page, no traceback, and the server keeps serving
    page.locator("#reference input[type=file]").set_input_files(str(files["broken"]))
    with pytest.raises(RuntimeError, match="reference broken.png: not a readable image"):
        steps.colorize(page)
    status = page.locator("#status").inner_text()
    assert "Traceback" not in status and "/tmp" not in status
    # an image over the pixel limit (its header says 5000x4000), then a file over the upload limit
    page.locator("#reference input[type=file]").set_input_files(str(files["huge"]))
    with pytest.raises(RuntimeError, match=r"reference huge.png: image too large \(5000x4000"):
        steps.colorize(page)
    page.locator("#reference input[type=file]").set_input_files(
        {"name": "big.png", "mimeType": "image/png", "buffer": b"\x89PNG" + bytes(21_000_000)})
    page.get_by_text("exceed the maximum allowed size").first.wait_for()
    page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
    assert (tmp_path / "app.png").stat().st_size > 10_000
    with urllib.request.urlopen(server, timeout=10) as response:
        assert response.status == 200
    src, _ = steps.colorize(page, reference=files["reference"])
    assert fetch_png(page, src).size == (77, 101)

    # the first example (made by the pipeline at start-up) works on first open
    fresh = steps.open_page(browser, server)
    fresh.locator("#examples tbody tr").first.click()
    fresh.locator("#drawing img").first.wait_for()
    fresh.locator("#reference img").first.wait_for()
    src, _ = steps.colorize(fresh)
    assert fetch_png(fresh, src).size[1] > fetch_png(fresh, src).size[0]  # the example is a portrait
    assert time.perf_counter() - t0 < 60

