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
    pngs = [rel for rel in files_a if rel.suffix == ".png"]
    assert len(pngs) == 2 * 10, pngs  # every image and its label map
    for rel in pngs:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


def test_changed_settings_regenerate_and_fewer_images_drop_the_rest(tmp_path):
    crawl_synthetic(tmp_path, 6, 32, seed=1, heterochromia_p=0.1)
    _, stats = crawl_synthetic(tmp_path, 4, 40, seed=1, heterochromia_p=0.1)
    assert stats["generated"] == 4
    assert len(list((tmp_path / "images").glob("*.png"))) == 4
    assert read_rgb(tmp_path / "images/000000.png").shape == (40, 40, 3)


def test_folder_source_copies_dedupes_and_resumes(tmp_path):
    import cv2
    import numpy as np
    import pytest

    from pipeline.data.crawl import crawl_folder
    from pipeline.errors import AnimecolorError

    src = tmp_path / "art"
    (src / "nested").mkdir(parents=True)
    a = np.full((40, 30, 3), 200, np.uint8)
    b = np.zeros((50, 50, 3), np.uint8)
    cv2.imwrite(str(src / "a.png"), a)
    cv2.imwrite(str(src / "nested" / "b.jpg"), b)
    (src / "copy_of_a.png").write_bytes((src / "a.png").read_bytes())  # exact duplicate
    (src / "notes.txt").write_text("not an image")
    manifest, stats = crawl_folder(tmp_path / "raw", src)
    assert len(manifest) == 2 and stats["duplicates"] == 1 and stats["generated"] == 2
    assert set(manifest.origin) <= {"a.png", "copy_of_a.png", "nested/b.jpg"} and "nested/b.jpg" in set(manifest.origin)
    assert all((tmp_path / "raw" / f).is_file() for f in manifest.file)
    again, stats = crawl_folder(tmp_path / "raw", src)
    assert stats["generated"] == 0 and stats["skipped"] == 2 and again.file.tolist() == manifest.file.tolist()
    capped, _ = crawl_folder(tmp_path / "raw", src, max_images=1)
    assert len(capped) == 1 and len(list((tmp_path / "raw" / "images").iterdir())) == 1
    with pytest.raises(AnimecolorError, match="no such folder"):
        crawl_folder(tmp_path / "raw2", tmp_path / "missing")
    with pytest.raises(AnimecolorError, match="no image files"):
        crawl_folder(tmp_path / "raw3", _empty(tmp_path))


def _empty(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir(exist_ok=True)
    (folder / "readme.txt").write_text("x")
    return folder


def test_folder_source_needs_a_folder_param():
    import pytest

    from stages.params import validate_section
    from pipeline.errors import ParamsError

    with pytest.raises(ParamsError, match="needs crawl.folder"):
        validate_section("crawl", {"source": "folder"})


def test_synthetic_achromatic_eyes_are_drawn_only_when_asked():
    from pipeline.data.crawl import face_seed
    from pipeline.data.synthetic import ACHROMATIC_EYES, sample_face

    def spec(i, p):
        return sample_face(np.random.default_rng(face_seed(0, i)), 0.3, seed=i, achromatic_eyes_p=p)

    for i in range(20):  # off: the face is the one drawn before the option existed
        a, b = spec(i, 0.0), sample_face(np.random.default_rng(face_seed(0, i)), 0.3, seed=i)
        assert a == b
    grey = lambda rgb: max(rgb) - min(rgb) <= 30  # noqa: E731
    on = [spec(i, 1.0) for i in range(30)]
    assert all(grey(s.colors["iris_left"]) for s in on)
    assert all(s.colors["iris_right"] == s.colors["iris_left"] for s in on if not s.heterochromia)
    assert any(s.heterochromia and s.colors["iris_right"] != s.colors["iris_left"] for s in on)
    lights = {min(range(3), key=lambda k: sum(abs(x - y) for x, y in zip(s.colors["iris_left"], ACHROMATIC_EYES[k])))
              for s in on}
    assert lights == {0, 1, 2}  # black, grey and white all drawn
    for i, s in enumerate(on):  # everything but the eyes is the default face's
        base = spec(i, 0.0)
        assert {k: v for k, v in s.colors.items() if k not in ("iris_left", "iris_right", "pupil")} == \
               {k: v for k, v in base.colors.items() if k not in ("iris_left", "iris_right", "pupil")}
