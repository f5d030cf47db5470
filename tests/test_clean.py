import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from pipeline.data.clean import CleanConfig, clean_dataset, split_of
from pipeline.data.crawl import crawl_synthetic
from pipeline.data.imageio import read_label, read_rgb

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
REAL256 = SHARED / "anime-faces-256"


def _raw_folder(tmp_path, files: dict[str, bytes]) -> Path:
    raw = tmp_path / "raw"
    (raw / "images").mkdir(parents=True)
    for name, data in files.items():
        (raw / "images" / name).write_bytes(data)
    pd.DataFrame({"file": [f"images/{n}" for n in files], "source": "test",
                  "identity": list(files)}).to_csv(raw / "manifest.csv", index=False)
    return raw


def _png(img) -> bytes:
    return cv2.imencode(".png", img)[1].tobytes()


def _jpg(img, q=90) -> bytes:
    return cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])[1].tobytes()


def _real(i: int) -> np.ndarray:
    files = sorted(REAL256.glob("*.jpg"))
    if not files:
        pytest.skip("../shared/data is not available")
    return cv2.imread(str(files[i]))  # BGR, as the encoders expect


def test_rejections_are_recorded_with_their_reason(tmp_path):
    a, b = _real(0), _real(1)
    gray = cv2.cvtColor(cv2.cvtColor(_real(2), cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    files = {
        "a.png": _png(a),
        "a_copy.png": _png(a),  # same bytes
        "a_small_jpeg.jpg": _jpg(cv2.resize(a, (160, 160), interpolation=cv2.INTER_AREA), 80),  # near dup
        "b.jpg": _jpg(b),
        "manga.png": _png(gray),
        "tiny.png": _png(cv2.resize(b, (20, 20))),
        "broken.jpg": _jpg(b)[:200],
        "text.png": b"<html>not an image</html>",
    }
    raw = _raw_folder(tmp_path, files)
    manifest, _ = clean_dataset(raw, tmp_path / "faces", CleanConfig(), 64)
    reasons = dict(zip(manifest.raw_file.str[7:], manifest.reason.fillna("")))
    assert reasons == {"a.png": "", "a_copy.png": "duplicate", "a_small_jpeg.jpg": "near_duplicate", "b.jpg": "",
                       "manga.png": "monochrome", "tiny.png": "too_small", "broken.jpg": "decode_error",
                       "text.png": "decode_error"}
    kept = manifest[manifest.status == "kept"]
    for f in kept.file:
        assert read_rgb(tmp_path / "faces" / f).shape == (64, 64, 3)


def test_distinct_synthetic_faces_are_not_near_duplicates(tmp_path):
    crawl_synthetic(tmp_path / "raw", 300, 64, seed=0, heterochromia_p=0.1)
    manifest, _ = clean_dataset(tmp_path / "raw", tmp_path / "faces", CleanConfig(), 64)
    assert (manifest.status == "kept").all()


def test_label_maps_get_the_same_crop(tmp_path):
    crawl_synthetic(tmp_path / "raw", 6, 64, seed=0, heterochromia_p=0.1)
    manifest, _ = clean_dataset(tmp_path / "raw", tmp_path / "faces", CleanConfig(), 48)
    for _, row in manifest.iterrows():
        label = read_label(tmp_path / "faces" / row.label)
        rgb = read_rgb(tmp_path / "faces" / row.file)
        assert label.shape == (48, 48)
        hair = rgb[cv2.erode((label == 1).astype(np.uint8), np.ones((3, 3))) > 0].astype(float)
        assert np.abs(np.median(hair, 0) - np.array(list(bytes.fromhex(row.color_hair[1:])))).max() < 20
    assert {"identity", "color_iris_left", "heterochromia"} <= set(manifest.columns)


def test_rgba_is_composited_on_the_background(tmp_path):
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[16:48, 16:48] = (40, 80, 200, 255)  # opaque coloured square, transparent around
    raw = _raw_folder(tmp_path, {"sprite.png": _png(rgba)})
    manifest, _ = clean_dataset(raw, tmp_path / "faces", CleanConfig(min_colour_fraction=0.01), 64)
    out = read_rgb(tmp_path / "faces" / manifest.file[0])
    assert tuple(out[2, 2]) == (255, 255, 255) and tuple(out[32, 32]) == (200, 80, 40)


def test_split_is_stable_when_images_are_added(tmp_path):
    import hashlib

    shas = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(2000)]
    first = {s: split_of(s, 0.2) for s in shas}
    assert 0.1 < np.mean([v == "test" for v in first.values()]) < 0.3
    crawl_synthetic(tmp_path / "raw", 20, 32, seed=0, heterochromia_p=0.1)
    small, _ = clean_dataset(tmp_path / "raw", tmp_path / "f1", CleanConfig(test_fraction=0.3), 32)
    crawl_synthetic(tmp_path / "raw", 40, 32, seed=0, heterochromia_p=0.1)
    big, _ = clean_dataset(tmp_path / "raw", tmp_path / "f2", CleanConfig(test_fraction=0.3), 32)
    merged = small.merge(big, on="sha256", suffixes=("_small", "_big"))
    assert len(merged) == 20 and (merged.split_small == merged.split_big).all()


@pytest.mark.parametrize("zoom_crops", [0, 2])
def test_resume_after_interruption(tmp_path, zoom_crops):
    """A killed clean resumes to the uninterrupted result: a torn last line is dropped, and the
    last image in the log is decided again (its zoom crops may be cut short)."""
    crawl_synthetic(tmp_path / "raw", 12, 32, seed=0, heterochromia_p=0.1)
    cfg, size = CleanConfig(zoom_crops=zoom_crops), 32
    full, _ = clean_dataset(tmp_path / "raw", tmp_path / "a", cfg, size)

    calls = {"n": 0}

    def interrupt_after_five(_):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        clean_dataset(tmp_path / "raw", tmp_path / "b", cfg, size, progress=interrupt_after_five)
    log = tmp_path / "b" / "progress.jsonl"
    lines = log.read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    faces = [r for r in rows if "zoom" not in r]
    assert len(faces) == 5 and len(rows) - 5 == zoom_crops * sum(r.get("split") == "train" for r in faces)
    cut = lines[:-1] if zoom_crops else lines  # a group cut short: the last image's last crop is missing
    log.write_text("\n".join(cut) + '\n{"raw_file": "images/0000')  # and the torn last line of a killed process
    resumed, stats = clean_dataset(tmp_path / "raw", tmp_path / "b", cfg, size)
    assert stats["resumed"] == 4
    cols = ["raw_file", "sha256", "status", "split", "file"]
    pd.testing.assert_frame_equal(full[cols], resumed[cols])
    assert sorted(p.name for p in (tmp_path / "a").rglob("*.png")) == sorted(
        p.name for p in (tmp_path / "b").rglob("*.png"))
    crops = full.zoom.notna().sum() if zoom_crops else 0
    assert crops == zoom_crops * ((full.split == "train") & full.get("zoom", pd.Series(dtype=float)).isna()).sum()
    assert len(list((tmp_path / "b").glob("train/images/*_z*.png"))) == crops


def test_interrupted_clean_starts_over_when_the_raw_data_changed(tmp_path):
    crawl_synthetic(tmp_path / "raw", 12, 32, seed=0, heterochromia_p=0.1)
    cfg, size = CleanConfig(), 32

    def interrupt(_):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        clean_dataset(tmp_path / "raw", tmp_path / "b", cfg, size, progress=interrupt)
    # Another crawl seed: same file names, other faces. Old decisions must not be reused.
    crawl_synthetic(tmp_path / "raw", 12, 32, seed=1, heterochromia_p=0.1)
    resumed, stats = clean_dataset(tmp_path / "raw", tmp_path / "b", cfg, size)
    fresh, _ = clean_dataset(tmp_path / "raw", tmp_path / "c", cfg, size)
    assert stats["resumed"] == 0
    pd.testing.assert_frame_equal(fresh[["raw_file", "sha256", "status", "file"]],
                                  resumed[["raw_file", "sha256", "status", "file"]])


@pytest.mark.slow
def test_face_detection_recall_on_real_anime_faces(tmp_path):
    files = sorted(REAL256.glob("*.jpg"))[:80]
    if not files:
        pytest.skip("../shared/data is not available")
    raw = _raw_folder(tmp_path, {f.name: f.read_bytes() for f in files})
    manifest, _ = clean_dataset(raw, tmp_path / "faces", CleanConfig(face_detect="animeface"), 64)
    decided = manifest[manifest.reason != "near_duplicate"]
    recall = (decided.status == "kept").mean()
    assert recall > 0.9, recall
    box_sides = manifest[manifest.status == "kept"].box.str.split(",").str[2].astype(int)
    assert (box_sides < 400).all()  # crops are around faces, not the whole canvas grown


def test_faces_are_found_on_full_figure_renpy_sprites(tmp_path):
    """13 openly licensed RGBA sprites from Debian's renpy-thequestion / renpy-demo packages."""
    sprites = [p for p in Path("/usr/share/games/renpy").glob("*/game/images/*.png")
               if p.name.split()[0] in ("sylvie", "eileen", "lucy")]
    if len(sprites) < 13:
        pytest.skip("apt-get install renpy-thequestion renpy-demo (done by .ci/run)")
    raw = _raw_folder(tmp_path, {p.name: p.read_bytes() for p in sprites})
    size = 128
    cfg = CleanConfig(face_detect="animeface", thumb_tolerance=0.0)  # keep all expressions
    manifest, _ = clean_dataset(raw, tmp_path / "faces", cfg, size)
    assert (manifest.status == "kept").all(), manifest[["raw_file", "reason"]]
    for _, row in manifest.iterrows():
        x0, y0, side = map(int, row.box.split(","))
        assert 100 < side < 400 and y0 < 300  # a head-sized square in the upper part of a 700 px figure
        face = read_rgb(tmp_path / "faces" / row.file)
        assert face.shape == (128, 128, 3)
        assert (face.reshape(-1, 3) == 255).all(axis=1).mean() < 0.6  # mostly character, not background


def test_hamming_distances_do_not_need_numpy_2(monkeypatch):
    """pyproject allows NumPy 1.24, which has no np.bitwise_count: the pHash distance must not use it."""
    from pipeline.data.clean import hamming_distances

    rng = np.random.default_rng(0)
    hashes = [int(v) for v in rng.integers(0, 2**63, 50, dtype=np.int64)] + [0, 2**64 - 1]
    h = int(rng.integers(0, 2**63, dtype=np.int64))
    monkeypatch.delattr(np, "bitwise_count", raising=False)
    got = hamming_distances(hashes, h)
    assert got.tolist() == [(v ^ h).bit_count() for v in hashes]


def test_eye_labels_mark_the_two_irises_of_real_training_faces(tmp_path):
    """clean.eye_labels: real 64 px faces get label maps of their irises from animeface's eye
    boxes (training split only), image-left iris first, everything else no region."""
    from pipeline.data.labels import NO_REGION, REGION_IDS

    files = sorted((SHARED / "anime-faces-64").glob("*.jpg"))[::500][:24]  # named by hash: spread over both splits
    if not files:
        pytest.skip("../shared/data is not available")
    raw = _raw_folder(tmp_path, {f.name: f.read_bytes() for f in files})
    manifest, _ = clean_dataset(raw, tmp_path / "faces", CleanConfig(eye_labels=True, test_fraction=0.2), 64)
    kept = manifest[manifest.status == "kept"]
    train, test = kept[kept.split == "train"], kept[kept.split == "test"]
    assert len(test) and test.label.isna().all()  # the benchmark's faces keep none
    assert train.label.notna().all()  # every training face has a map (all no region where nothing is found)
    found = train[train.eye_labels.astype(bool)]
    assert len(train) and len(found) >= 0.6 * len(train), (len(found), len(train))
    left_id, right_id = REGION_IDS["iris_left"], REGION_IDS["iris_right"]
    for _, row in train.iterrows():
        label = read_label(tmp_path / "faces" / row.label)
        assert label.shape == (64, 64) and set(np.unique(label)) <= {left_id, right_id, NO_REGION}
        if not row.eye_labels:
            assert (label == NO_REGION).all()
            continue
        left, right = np.argwhere(label == left_id), np.argwhere(label == right_id)
        assert 8 <= len(left) <= 400 and 8 <= len(right) <= 400, (len(left), len(right))
        assert left[:, 1].mean() < right[:, 1].mean()  # image-left first
        assert abs(left[:, 0].mean() - right[:, 0].mean()) < 16  # the two eyes of one face, side by side
        assert 12 <= left[:, 0].mean() <= 52  # in the upper-middle of an aligned face crop, not at its edge
    # zoom crops carry the part of their face's iris map that they show
    zoom, _ = clean_dataset(raw, tmp_path / "zoom", CleanConfig(eye_labels=True, test_fraction=0.2, zoom_crops=1), 64)
    crops = zoom[zoom.zoom.fillna(0).astype(int) > 0]
    face_label = dict(zip(train.sha256, train.label))
    assert len(crops) == len(train) and crops.label.notna().all()
    for row in crops.itertuples():
        x0, y0, side = (int(v) for v in row.box.split(","))  # the face square is the whole 64 px picture
        part = read_label(tmp_path / "faces" / face_label[row.sha256])[y0:y0 + side, x0:x0 + side]
        want = cv2.resize(part, (64, 64), interpolation=cv2.INTER_NEAREST)
        assert (read_label(tmp_path / "zoom" / row.label) == want).all()
    # off (the default): no label maps for real faces, and the resume state is the old one
    off, _ = clean_dataset(raw, tmp_path / "off", CleanConfig(test_fraction=0.2), 64)
    assert "label" not in off or off.label.isna().all()
    assert "eye_labels" not in json.loads((tmp_path / "off" / "state.json").read_text())["config"]


def test_zoom_crops_add_parts_of_each_training_face_with_their_labels(tmp_path):
    """clean.zoom_crops: each training face gains that many random squares inside its square,
    taken from the raw picture at full resolution (with its label map), the same on a rerun; the
    faces themselves and the test split are as without them."""
    crawl_synthetic(tmp_path / "raw", 12, 128, seed=0, heterochromia_p=0.1)
    cfg = CleanConfig(test_fraction=0.6, zoom_crops=2, zoom_min=0.4, zoom_max=0.5)
    manifest, _ = clean_dataset(tmp_path / "raw", tmp_path / "z", cfg, 32)
    plain, _ = clean_dataset(tmp_path / "raw", tmp_path / "p", CleanConfig(test_fraction=0.6), 32)
    raw_labels = pd.read_csv(tmp_path / "raw" / "manifest.csv").set_index("file").label
    zoom = manifest.zoom.fillna(0).astype(int)
    faces, crops = manifest[zoom == 0], manifest[zoom > 0]
    assert faces.file.tolist() == plain.file.tolist()  # the same faces, in the same order
    for f in faces.file:
        assert (tmp_path / "z" / f).read_bytes() == (tmp_path / "p" / f).read_bytes()
    train = faces[faces.split == "train"]
    assert len(train) and len(faces) > len(train)  # both splits
    assert (crops.split == "train").all() and len(crops) == 2 * len(train)
    for row in crops.itertuples():
        x0, y0, side = (int(v) for v in row.box.split(","))
        assert 0.4 * 128 - 1 <= side <= 0.5 * 128 + 1 and 0 <= x0 <= 128 - side and 0 <= y0 <= 128 - side
        raw = read_rgb(tmp_path / "raw" / row.raw_file)[y0:y0 + side, x0:x0 + side]
        got = read_rgb(tmp_path / "z" / row.file)
        want = cv2.resize(raw, (32, 32), interpolation=cv2.INTER_AREA)
        assert got.shape == (32, 32, 3) and np.abs(got.astype(int) - want).mean() < 1.0
        raw_label = read_label(tmp_path / "raw" / raw_labels[row.raw_file])[y0:y0 + side, x0:x0 + side]
        label = read_label(tmp_path / "z" / row.label)
        assert (label == cv2.resize(raw_label, (32, 32), interpolation=cv2.INTER_NEAREST)).all()
    boxes = crops.groupby("sha256").box.apply(list)
    assert all(len(set(b)) == 2 for b in boxes)  # two different parts of each face
    again, _ = clean_dataset(tmp_path / "raw", tmp_path / "z2", cfg, 32)
    assert again.box.tolist() == manifest.box.tolist()
    # off (the default): the resume state is the one of runs before the option
    assert "zoom_crops" not in json.loads((tmp_path / "p" / "state.json").read_text())["config"]
    with pytest.raises(ValueError, match="zoom_min 0.7 is above zoom_max 0.5"):
        CleanConfig(zoom_min=0.7, zoom_max=0.5)
