import json

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from pipeline.data.crawl import crawl_synthetic
from pipeline.data.imageio import read_label, read_rgb
from pipeline.data.synthetic import generate_face
from stages.cli import app


def _run(tmp_path, params):
    return CliRunner().invoke(app, ["crawl", "--params", str(params), "--out", str(tmp_path / "raw"),
                                    "--metrics", str(tmp_path / "m.json"), "--sheet", str(tmp_path / "sheet.png")])


def test_cli_crawl_writes_images_labels_manifest_metrics_sheet(tmp_path, write_params):
    params = write_params({"crawl.n_images": 12, "base.image_size": 48, "crawl.sheet_size": 9})
    result = _run(tmp_path, params)
    assert result.exit_code == 0, result.output
    raw = tmp_path / "raw"
    manifest = pd.read_csv(raw / "manifest.csv")
    assert len(manifest) == 12
    for column in ("file", "label", "source", "seed", "identity", "hair_style", "heterochromia",
                   "color_hair", "color_iris_left", "color_iris_right", "color_skin"):
        assert column in manifest.columns
    rgb = read_rgb(raw / manifest.file[3])
    label = read_label(raw / manifest.label[3])
    assert rgb.shape == (48, 48, 3) and label.shape == (48, 48)
    # The file on disk is exactly the generator's output for that seed and index.
    _, expected, expected_label = generate_face(0, 3, 48, 0.1)
    assert np.array_equal(rgb, expected) and np.array_equal(label, expected_label)
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["n_images"] == 12 and metrics["generated"] == 12 and metrics["images_per_s"] > 0
    sheet = read_rgb(tmp_path / "sheet.png")
    assert sheet.shape[1] > sheet.shape[0]  # 9 faces on an 8-wide grid: 2 rows


def test_rerun_after_interruption_equals_uninterrupted_run(tmp_path):
    clean, _ = crawl_synthetic(tmp_path / "a", 10, 32, seed=5, heterochromia_p=0.2)
    crawl_synthetic(tmp_path / "b", 10, 32, seed=5, heterochromia_p=0.2)
    # Simulate a kill: one image missing, one label missing, a half-written temp file.
    (tmp_path / "b/images/000004.png").unlink()
    (tmp_path / "b/labels/000007.png").unlink()
    (tmp_path / "b/images/.000008.png.abc.tmp").write_bytes(b"partial")
    resumed, stats = crawl_synthetic(tmp_path / "b", 10, 32, seed=5, heterochromia_p=0.2)
    assert stats["generated"] == 2 and stats["skipped"] == 8
    pd.testing.assert_frame_equal(clean, resumed)
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*"))
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*"))
    assert files_a == files_b
    for rel in files_a:
        if rel.suffix == ".png":
            assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()


def test_changed_settings_regenerate_and_fewer_images_drop_the_rest(tmp_path):
    crawl_synthetic(tmp_path, 6, 32, seed=1, heterochromia_p=0.1)
    _, stats = crawl_synthetic(tmp_path, 4, 40, seed=1, heterochromia_p=0.1)
    assert stats["generated"] == 4
    assert len(list((tmp_path / "images").glob("*.png"))) == 4
    assert read_rgb(tmp_path / "images/000000.png").shape == (40, 40, 3)
