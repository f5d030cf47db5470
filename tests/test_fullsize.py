"""The full-size benchmark: the test faces again at full size, coloured by colorize's path, scored."""

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.colorize import ColorizeOptions, load_model, upscaled_truth
from pipeline.data.clean import CleanConfig, clean_dataset
from pipeline.data.crawl import crawl_folder
from pipeline.data.imageio import read_label, read_rgb
from pipeline.data.tps import TPSConfig
from pipeline.evaluation.fullsize import (MOVED, SETTINGS, UPSCALED_TRUTH, FullSizeConfig, FullSizeFaces, chroma_ratio,
                                          run_full_size)
from pipeline.model.perceptual import VGGLPIPS
from stages.evaluate import full_size_colour
from tests.helpers import ROOT

REAL_256 = ROOT.parent / "shared" / "data" / "anime-faces-256"


def _test_rows(pairs_dir, setting="self_ref"):
    table = pd.read_csv(pairs_dir / "test" / "pairs.csv", dtype=str, keep_default_na=False)
    return table[table.setting == setting]


def test_procedural_faces_render_again_exactly_at_the_crawl_size(tiny_data):
    faces_dir, pairs_dir = tiny_data
    faces = FullSizeFaces(faces_dir.parent / "raw", faces_dir, 32)  # the tiny crawl's own size
    for row in _test_rows(pairs_dir).itertuples():
        rgb, label = faces.face(row.target)
        assert np.array_equal(rgb, read_rgb(faces_dir / row.target))
        assert np.array_equal(label, read_label(faces_dir / row.target_label))


def test_the_self_reference_is_the_pairs_stages_own_warp(tiny_data):
    """At the crawl's size the full-size self reference is, pixel for pixel, the benchmark's."""
    faces_dir, pairs_dir = tiny_data
    faces = FullSizeFaces(faces_dir.parent / "raw", faces_dir, 32)
    for row in _test_rows(pairs_dir).itertuples():
        rgb, label = faces.face(row.target)
        ref, ref_label = faces.self_reference(row.target, rgb, label, TPSConfig(), seed=0)
        assert np.array_equal(ref, read_rgb(pairs_dir / row.reference))
        assert np.array_equal(ref_label, read_label(pairs_dir / row.reference_label))


def test_the_self_reference_is_the_pairs_stages_own_warp_with_zoom_crops_too(tmp_path):
    """`clean.zoom_crops` rows do not shift the faces' rng index: the full-size self reference of
    each test face is still, pixel for pixel, the benchmark's."""
    from pipeline.data.crawl import crawl_synthetic
    from pipeline.data.pairs import build_pairs
    from pipeline.data.xdog import XDoGConfig

    crawl_synthetic(tmp_path / "raw", 16, 32, seed=0, heterochromia_p=0.1)
    clean_dataset(tmp_path / "raw", tmp_path / "faces", CleanConfig(test_fraction=0.4, zoom_crops=2), 32)
    build_pairs(tmp_path / "faces", tmp_path / "pairs", seed=0, xdog=XDoGConfig(), tps=TPSConfig())
    faces = FullSizeFaces(tmp_path / "raw", tmp_path / "faces", 32)
    rows = _test_rows(tmp_path / "pairs")
    assert len(rows) >= 2
    for row in rows.itertuples():
        rgb, label = faces.face(row.target)
        ref, _ = faces.self_reference(row.target, rgb, label, TPSConfig(), seed=0)
        assert np.array_equal(ref, read_rgb(tmp_path / "pairs" / row.reference))


def test_procedural_faces_at_full_size_are_the_same_faces(tiny_data):
    faces_dir, pairs_dir = tiny_data
    faces = FullSizeFaces(faces_dir.parent / "raw", faces_dir, 128)
    row = next(_test_rows(pairs_dir).itertuples())
    rgb, label = faces.face(row.target)
    assert rgb.shape == (128, 128, 3) and label.shape == (128, 128)
    small = read_rgb(faces_dir / row.target).astype(float)
    import cv2
    assert np.abs(cv2.resize(rgb, (32, 32), interpolation=cv2.INTER_AREA).astype(float) - small).mean() < 12


@pytest.mark.skipif(not REAL_256.is_dir(), reason="needs ../shared/data")
def test_real_faces_are_recropped_from_the_raw_image(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for path in sorted(REAL_256.glob("*.jpg"))[:6]:
        (folder / path.name).write_bytes(path.read_bytes())
    crawl_folder(tmp_path / "raw", folder)
    clean_dataset(tmp_path / "raw", tmp_path / "faces", CleanConfig(test_fraction=0.5), 64)
    manifest = pd.read_csv(tmp_path / "faces" / "manifest.csv", dtype=str, keep_default_na=False)
    kept = manifest[manifest.status == "kept"]
    full, small = FullSizeFaces(tmp_path / "raw", tmp_path / "faces", 256), FullSizeFaces(tmp_path / "raw", tmp_path / "faces", 64)
    for row in kept.itertuples():
        rgb, label = full.face(row.file)
        assert rgb.shape == (256, 256, 3) and label is None
        assert np.array_equal(small.face(row.file)[0], read_rgb(tmp_path / "faces" / row.file))  # clean's own crop


def test_chroma_ratio():
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    grey = np.repeat(colour.mean(-1, keepdims=True).astype(np.uint8), 3, -1)
    np.testing.assert_allclose(chroma_ratio(colour, colour), 1.0, rtol=1e-6)
    assert (chroma_ratio(grey, colour) < 0.02).all()
    washed = (colour * 0.5 + 127.5).astype(np.uint8)  # halfway to white: paler
    assert (chroma_ratio(washed, colour) < 0.7).all()


def test_upscaled_truth_at_the_models_size_is_the_truth_under_its_lines():
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    lines = np.full((32, 32), 255, np.uint8)
    lines[10, :] = 0
    out = upscaled_truth(truth, lines, 32)
    assert (out[10] == 0).all()
    rows = np.r_[0:9, 12:32]  # away from the line (its weight changes the neighbours' fill)
    assert np.abs(out[rows].astype(int) - truth[rows]).max() <= 1


def test_run_full_size_scores_the_model_and_the_baseline(tiny_data, model_file):
    faces_dir, pairs_dir = tiny_data
    model, diffusion, _ = load_model(model_file)
    cfg = FullSizeConfig(faces=3, size=96)
    calls = []
    metrics, table, grids = run_full_size({"tiny": (model, diffusion)}, faces_dir, pairs_dir, faces_dir.parent / "raw",
                                          cfg, TPSConfig(), 0, full_size_colour(ColorizeOptions(sample_steps=2), "cpu"),
                                          upscaled_truth, VGGLPIPS(), torch.device("cpu"), progress=calls.append)
    assert set(metrics) == {"tiny", UPSCALED_TRUTH} and sum(calls) == 3 * 3
    for cand in metrics:
        for setting in (*SETTINGS, MOVED):
            row = metrics[cand][setting]
            assert row["images"] == 3 and row["size"] == 96
            assert 0 < row["chroma_ratio"] < 3 and 0 <= row["lpips"] < 1 and row["psnr"] > 5
            assert row["de_hair"] is not None and row["de_iris_left"] is not None  # label maps at full size
    # the baseline is the truth itself under lines: far closer than a 6-step tiny model
    assert metrics[UPSCALED_TRUTH]["full_self_ref"]["psnr"] > metrics["tiny"]["full_self_ref"]["psnr"] + 3
    assert grids["full_self_ref"]["tiny"].shape == (3, 96, 96, 3)
    assert len(table) == 2 * 3 * 3 and set(table.setting) == {*SETTINGS, MOVED}
    # the moved setting: the same truths under another reference, the one `moved_reference` draws
    assert np.array_equal(grids[MOVED]["target"], grids["full_self_ref"]["target"])
    faces = FullSizeFaces(faces_dir.parent / "raw", faces_dir, 96)
    for i, row in enumerate(_test_rows(pairs_dir).head(3).itertuples()):
        truth, label = faces.face(row.target)
        assert np.array_equal(grids[MOVED]["reference"][i], faces.moved_reference(row.target, truth, label, TPSConfig(), 0)[0])
    assert not np.array_equal(grids[MOVED]["reference"], grids["full_self_ref"]["reference"])
    assert FullSizeConfig(moved_ref=False).settings() == SETTINGS


@pytest.mark.parametrize("scheme", ["diagonal", "random", "none"])
def test_the_moved_reference_is_the_self_reference_mirrored_turned_and_scaled(tiny_data, monkeypatch, scheme):
    """Its warp is the self reference's own TPS draw, then a mirror: with no turn and no scale it is the
    self reference mirrored exactly (labels too); with them, turned and scaled on top."""
    from pipeline.evaluation import fullsize

    faces_dir, pairs_dir = tiny_data
    faces = FullSizeFaces(faces_dir.parent / "raw", faces_dir, 96)
    tps = TPSConfig(scheme=scheme)
    for row in _test_rows(pairs_dir).head(3).itertuples():
        rgb, label = faces.face(row.target)
        ref, ref_label = faces.self_reference(row.target, rgb, label, tps, seed=0)
        moved, moved_label = faces.moved_reference(row.target, rgb, label, tps, seed=0)
        assert moved.shape == ref.shape and moved_label.shape == ref_label.shape
        assert np.abs(moved.astype(int) - ref).mean() > 5  # another layout
        with monkeypatch.context() as patch:
            patch.setattr(fullsize, "MOVES", {**fullsize.MOVES, "rotate_deg": 0.0, "scale_min": 1.0, "scale_max": 1.0})
            mirrored, mirrored_label = faces.moved_reference(row.target, rgb, label, tps, seed=0)
        assert np.abs(mirrored.astype(int) - ref[:, ::-1]).mean() < 1
        assert (mirrored_label != ref_label[:, ::-1]).mean() < 0.01
        assert np.abs(moved.astype(int) - mirrored).mean() > 2  # and then turned and scaled


def test_the_benchmark_colours_as_colorize_does(tiny_data, model_file, tmp_path, monkeypatch):
    """Its picture of a test face is byte for byte what `animecolor colorize --paint-paper` writes for
    that drawing and reference (seed = evaluate.seed + index); the benchmark's lines come from
    pictures, so no area of them is kept as paper."""
    from typer.testing import CliRunner

    from pipeline.data.imageio import write_png
    from stages.cli import app

    import pipeline.hints

    monkeypatch.setattr(pipeline.hints, "PAPER_TINT", 500.0)  # any paper the tiny model paints would be kept
    faces_dir, pairs_dir = tiny_data
    model, diffusion, _ = load_model(model_file)
    faces = FullSizeFaces(faces_dir.parent / "raw", faces_dir, 96)
    row = next(_test_rows(pairs_dir).itertuples())
    truth, label = faces.face(row.target)
    reference, _ = faces.self_reference(row.target, truth, label, TPSConfig(), 0)
    from pipeline.data.xdog import XDoGConfig
    lines = XDoGConfig().sketch(truth, 0.5)
    ours = full_size_colour(ColorizeOptions(sample_steps=2, seed=5), "cpu")(model, diffusion, lines, reference, 2)
    write_png(tmp_path / "lines.png", lines)
    write_png(tmp_path / "ref.png", reference)
    result = CliRunner().invoke(app, ["colorize", str(tmp_path / "lines.png"), "-r", str(tmp_path / "ref.png"),
                                      "--model", str(model_file), "--steps", "2", "--seed", "7", "--mode", "lines",
                                      "--paint-paper", "-o", str(tmp_path / "out.png")])
    assert result.exit_code == 0, result.output
    assert np.array_equal(ours, read_rgb(tmp_path / "out.png"))


def test_evaluate_scores_model_files_as_their_checkpoints(tiny_text, model_file):
    """`animecolor evaluate --model NAME=file.safetensors` scores the exported file: the checkpoint's EMA weights."""
    from stages.evaluate import load_scored_model

    exported, _ = load_scored_model(model_file)
    checkpoint, _ = load_scored_model(tiny_text / "text.pt")
    a, b = exported.state_dict(), checkpoint.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow  # a Python start-up, the torch import and LPIPS per run
def test_line_styles_diagnostic_scores_each_style_and_reline(tiny_data, model_file, tmp_path):
    """scripts/diagnostics/line_styles.py: the full-size benchmark's self reference with the drawings
    in other line styles, each model per `--reline`, the upscaled truth under the same lines; an
    unknown style is one line, exit 2."""
    import json
    import shutil
    import subprocess
    import sys

    faces_dir, _ = tiny_data
    workspace = tmp_path / "run"
    workspace.mkdir()
    (workspace / "data").symlink_to(faces_dir.parent)
    shutil.copy(ROOT / "params.yaml", workspace / "params.yaml")
    script = [sys.executable, str(ROOT / "scripts/diagnostics/line_styles.py"), "--workspace", str(workspace),
              "--model", f"tiny={model_file}"]
    done = subprocess.run([*script, "--styles", "xdog,pencil", "--reline", "off,on", "--faces", "2", "--size", "96",
                           "--steps", "1",
                           "--json", str(tmp_path / "styles.json")], capture_output=True, text=True, timeout=600,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    styles = json.loads((tmp_path / "styles.json").read_text())["styles"]
    assert set(styles) == {"xdog", "pencil"}
    for entry in styles.values():
        assert set(entry["scores"]) == {"tiny", UPSCALED_TRUTH} and set(entry["scores"]["tiny"]) == {"off", "on"}
        assert all(3 < s["psnr"] < 60 and 0 <= s["lpips"] < 1 for s in entry["scores"]["tiny"].values())
    xdog, pencil = (styles[s]["scores"] for s in ("xdog", "pencil"))
    assert xdog[UPSCALED_TRUTH]["off"]["psnr"] != pencil[UPSCALED_TRUTH]["off"]["psnr"]  # other lines laid over
    assert xdog["tiny"]["on"] != xdog["tiny"]["off"]  # the model read the lines drawn again (96 px: 3x its 32)
    unknown = subprocess.run([*script, "--styles", "watercolour"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert unknown.returncode == 2 and unknown.stdout == ""
    assert unknown.stderr.strip().splitlines() == ["line_styles: unknown style or reline 'watercolour'"]
