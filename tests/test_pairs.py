import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.data.clean import CleanConfig, clean_dataset
from pipeline.data.crawl import crawl_synthetic
from pipeline.data.dataset import PairDataset, to_tensor, to_uint8
from pipeline.data.pairs import build_pairs, derangement
from pipeline.data.synthetic import REGION_IDS, generate_face
from pipeline.data.tps import TPSConfig, TrainWarpConfig, apply_warp, control_points, random_warp, tps_maps
from pipeline.data.xdog import (SOFT_SCALES, LineAugmentConfig, XDoGConfig, augment_lines, grey_edges, pencil,
                                soft_drawing, to_gray, xdog)
from pipeline.errors import AnimecolorError, ParamsError
from pipeline.scan import soft_lines

XDOG = dict(k=3.5, p=10.0, eps=0.01, phi=1e9)


# ---------------------------------------------------------------- XDoG
def test_xdog_range_and_white_paper():
    _, rgb, _ = generate_face(0, 0, 64, 0.1)
    out = xdog(to_gray(rgb), 0.5, **XDOG)
    assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1
    assert np.array_equal(xdog(np.ones((40, 30), np.float32), 0.5, **XDOG), np.ones((40, 30), np.float32))
    soft = xdog(to_gray(rgb), 0.5, k=3.5, p=10, eps=0.01, phi=20)
    assert ((soft > 0.05) & (soft < 0.95)).any()  # a soft phi gives grey levels


def test_xdog_turns_a_filled_circle_into_a_ring():
    img = np.ones((64, 64), np.float32)
    cv2.circle(img, (32, 32), 16, 0.45, -1, cv2.LINE_AA)
    dark = xdog(img, 0.5, **XDOG) < 0.5
    ys, xs = np.nonzero(dark)
    r = np.hypot(ys - 32, xs - 32)
    assert dark.sum() > 60
    assert np.abs(r - 16).max() <= 3.0  # every dark pixel is near the circle's edge
    assert not dark[28:36, 28:36].any()  # the inside stays paper


def test_xdog_official_params_reproduce_fixture():
    img = np.ones((12, 12), np.float32)
    img[2:10, 2:10] = 0.5
    img[5:7, 5:7] = 0.0
    expected = ["111111111111", "111111111111", "110000000011", "110001100011", "110011110011", "110110011011",
                "110110011011", "110011110011", "110001100011", "110000000011", "111111111111", "111111111111"]
    out = xdog(img, 0.4, **XDOG)
    assert set(np.unique(out)) <= {0.0, 1.0}
    assert ["".join(str(int(v)) for v in row) for row in out] == expected


def test_xdog_matches_a_scipy_reference_implementation():
    from scipy.ndimage import gaussian_filter

    _, rgb, _ = generate_face(0, 3, 128, 0.1)
    gray = to_gray(rgb)
    ours = xdog(gray, 0.5, **XDOG)
    g1 = gaussian_filter(gray, 0.5, mode="reflect", truncate=4.0)
    g2 = gaussian_filter(gray, 1.75, mode="reflect", truncate=4.0)
    S = (11 * g1 - 10 * g2) * gray
    ref = np.where(S >= 0.01, 1.0, 0.0)
    assert (ours == ref).mean() > 0.995


def test_line_augment_is_seeded_and_changes_line_width():
    _, rgb, _ = generate_face(0, 4, 64, 0.1)
    sketch = np.round(xdog(to_gray(rgb), 0.5, **XDOG) * 255).astype(np.uint8)
    a = augment_lines(sketch, np.random.default_rng(1), LineAugmentConfig(thicken_p=1.0, noise_std=0.02))
    b = augment_lines(sketch, np.random.default_rng(1), LineAugmentConfig(thicken_p=1.0, noise_std=0.02))
    assert np.array_equal(a, b)
    thick = augment_lines(sketch, np.random.default_rng(0), LineAugmentConfig(thicken_p=1.0))
    thin = augment_lines(sketch, np.random.default_rng(0), LineAugmentConfig(thin_p=1.0))
    assert (thick < 128).sum() > (sketch < 128).sum() > (thin < 128).sum()
    assert np.array_equal(augment_lines(sketch, np.random.default_rng(0), LineAugmentConfig()), sketch)  # default: off


def _greys(drawing: np.ndarray) -> float:
    """The share of a drawing's pixels neither paper nor black ink."""
    return float(((drawing > 16) & (drawing < 224)).mean())


def test_soft_line_augment_draws_the_picture_in_greys():
    _, rgb, _ = generate_face(0, 4, 64, 0.1)
    sketch = np.round(xdog(to_gray(rgb), 0.5, **XDOG) * 255).astype(np.uint8)
    soft = LineAugmentConfig(soft_p=1.0)
    drawings = [augment_lines(sketch, np.random.default_rng(seed), soft, picture=rgb) for seed in range(8)]
    assert np.array_equal(drawings[0], augment_lines(sketch, np.random.default_rng(0), soft, picture=rgb))
    for drawn in drawings:
        assert drawn.shape == sketch.shape and drawn.dtype == np.uint8
        assert (drawn < 250).mean() > 0.05 and not np.array_equal(drawn, sketch)
    assert len({d.tobytes() for d in drawings}) == 8  # style, scale and darkness drawn per call
    assert _greys(sketch) == 0 and sum(_greys(drawn) > 0.02 for drawn in drawings) >= 6
    assert sum(map(soft_lines, drawings)) >= 4  # what `colorize --reline auto` reads as soft
    with pytest.raises(ValueError, match="needs the picture"):
        augment_lines(sketch, np.random.default_rng(0), soft)
    # soft_p = 0 leaves the random stream as it was: the other augmentations draw the same numbers
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    augment_lines(sketch, rng_a, LineAugmentConfig(blur_p=0.5, soft_p=0.0), picture=rgb)
    augment_lines(sketch, rng_b, LineAugmentConfig(blur_p=0.5))
    assert rng_a.random() == rng_b.random()


def test_soft_drawings_are_drawn_large_and_shrunk():
    _, rgb, _ = generate_face(0, 4, 64, 0.1)
    scales = set()
    for seed in range(40):  # the scale is the first draw after the style's
        rng = np.random.default_rng(seed)
        scales.add(int(rng.choice(SOFT_SCALES)))
        drawn = soft_drawing(rgb, np.random.default_rng(seed))
        assert drawn.shape == rgb.shape[:2] and drawn.min() < 200 and np.median(drawn) > 200
    assert scales == set(SOFT_SCALES)
    # drawn at 4x and shrunk, a pencil's strokes are finer greys than at 1x: fewer pixels near black
    big = cv2.resize(rgb, (256, 256), interpolation=cv2.INTER_CUBIC)
    shrunk = cv2.resize(pencil(big, 4.0), (64, 64), interpolation=cv2.INTER_AREA)
    assert (shrunk < 64).mean() < (pencil(rgb, 1.0) < 64).mean() + 1e-9
    assert grey_edges(np.full((16, 16, 3), 200, np.uint8)).min() == 255  # flat: no lines


def test_dataset_hands_the_target_to_the_soft_augment(faces, tmp_path):
    _build(faces, tmp_path)
    plain = PairDataset(faces, tmp_path, "train", line_augment=LineAugmentConfig())[(0, 1)]
    soft = PairDataset(faces, tmp_path, "train", line_augment=LineAugmentConfig(soft_p=1.0))[(0, 1)]
    assert torch.equal(plain["target"], soft["target"])
    assert _greys(to_uint8(plain["sketch"])) == 0 and _greys(to_uint8(soft["sketch"])) > 0.02


# ---------------------------------------------------------------- TPS
def test_tps_zero_displacement_is_identity():
    _, rgb, label = generate_face(0, 5, 64, 0.1)
    maps = random_warp(TPSConfig(strength=0.0), np.random.default_rng(0), 64, 64)
    ys, xs = np.mgrid[0:64, 0:64]
    assert np.abs(maps[0] - xs).max() < 0.05 and np.abs(maps[1] - ys).max() < 0.05
    assert np.abs(apply_warp(rgb, maps).astype(int) - rgb).max() <= 2
    assert (apply_warp(label, maps, label=True) == label).mean() > 0.999


def test_tps_moves_control_points_where_asked():
    src, dst = control_points(TPSConfig(), np.random.default_rng(3))
    map_x, map_y = tps_maps(src, dst, 201, 201, coarse=201)
    for s, d in zip(src, dst):
        x, y = np.clip(np.round(s * 201 - 0.5).astype(int), 0, 200)
        assert abs((map_x[y, x] + 0.5) / 201 - d[0]) < 0.01 and abs((map_y[y, x] + 0.5) / 201 - d[1]) < 0.01


@pytest.mark.parametrize("cfg", [TPSConfig(), TPSConfig(scheme="random", strength=0.3),
                                 TPSConfig(flip_p=1.0, rotate_deg=10, scale_min=0.9, scale_max=1.1)])
def test_tps_warps_image_and_label_consistently_and_is_seeded(cfg):
    spec, rgb, label = generate_face(0, 6, 128, 0.1)
    maps = random_warp(cfg, np.random.default_rng(7), 128, 128)
    again = random_warp(cfg, np.random.default_rng(7), 128, 128)
    other = random_warp(cfg, np.random.default_rng(8), 128, 128)
    assert np.array_equal(maps[0], again[0]) and not np.array_equal(maps[0], other[0])
    warped, wlabel = apply_warp(rgb, maps), apply_warp(label, maps, label=True)
    assert not np.array_equal(warped, rgb)
    for name in ("hair", "skin", "clothes"):  # each region's inside still wears its colour after the warp
        inner = cv2.erode((wlabel == REGION_IDS[name]).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        assert inner.sum() > 30, name
        median = np.median(warped[inner].astype(float), 0)
        assert np.abs(median - spec.colors[name]).max() < 20, name


def test_training_warp_replaces_only_what_it_sets_and_checks_the_result():
    bench = TPSConfig(strength=0.2, rotate_deg=5)
    assert TrainWarpConfig().over(bench, "pretrain") is bench  # nothing set: training draws the benchmark's warp
    warp = TrainWarpConfig(flip_p=0.5, scale_min=0.8, scale_max=1.2).over(bench, "pretrain")
    assert (warp.flip_p, warp.scale_min, warp.scale_max) == (0.5, 0.8, 1.2)
    assert (warp.scheme, warp.strength, warp.rotate_deg) == ("diagonal", 0.2, 5)
    with pytest.raises(ParamsError, match="pretrain.reference_warp over pairs.tps"):
        TrainWarpConfig(scale_min=1.2).over(bench, "pretrain")  # above the benchmark's scale_max 1.0


def test_moves_p_moves_that_share_of_the_draws_and_keeps_the_default_stream():
    """moves_p < 1: each draw is either the full move (the same as moves_p 1 from the same rng) or
    the TPS alone (the same as no moves); moves_p 1 draws exactly as before the knob existed."""
    tps_only = TPSConfig()
    moved = TPSConfig(flip_p=1.0, rotate_deg=15, scale_min=0.8, scale_max=1.2)
    half = moved.model_copy(update={"moves_p": 0.5})
    kinds = []
    for seed in range(40):
        got = random_warp(half, np.random.default_rng(seed), 32, 32)[0]
        full = random_warp(moved, np.random.default_rng(seed), 32, 32)[0]
        plain = random_warp(tps_only, np.random.default_rng(seed), 32, 32)[0]
        same_full, same_plain = np.allclose(got, full), np.allclose(got, plain)
        assert same_full != same_plain
        kinds.append(same_full)
    assert 10 <= sum(kinds) <= 30  # about half moved
    for seed in range(5):  # moves_p 1 draws exactly the TPS, turn, scale and flip; below 1, one number more
        replay = np.random.default_rng(seed)
        control_points(moved, replay), replay.uniform(-15, 15), replay.uniform(0.8, 1.2), replay.random()
        rng = np.random.default_rng(seed)
        random_warp(moved, rng, 16, 16)
        assert rng.random() == replay.random()
        rng = np.random.default_rng(seed)
        random_warp(half, rng, 16, 16)
        again = np.random.default_rng(seed)
        control_points(moved, again), again.uniform(-15, 15), again.uniform(0.8, 1.2), again.random(), again.random()
        assert rng.random() == again.random()
    for seed in range(5):  # moves_p 0: the TPS alone
        never = moved.model_copy(update={"moves_p": 0.0})
        assert np.allclose(random_warp(never, np.random.default_rng(seed), 32, 32)[0],
                           random_warp(tps_only, np.random.default_rng(seed), 32, 32)[0])
    assert TrainWarpConfig(moves_p=0.25).over(moved, "pretrain").moves_p == 0.25
    with pytest.raises(ValueError):
        TrainWarpConfig(moves_p=1.5)


# ---------------------------------------------------------------- pairs + dataset
def test_derangement_never_pairs_an_image_or_identity_with_itself():
    rng = np.random.default_rng(0)
    ids = [f"id{i // 2}" for i in range(40)]  # two images per identity
    for _ in range(20):
        perm = derangement(ids, rng)
        assert sorted(perm) == list(range(40))
        assert all(perm[i] != i and ids[perm[i]] != ids[i] for i in range(40))
    perm = derangement(["a"] * 5, rng)  # impossible to avoid the identity: still never itself
    assert all(perm[i] != i for i in range(5))
    with pytest.raises(AnimecolorError):
        derangement(["a"], rng)


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    crawl_synthetic(root / "raw", 30, 48, seed=0, heterochromia_p=0.2)
    clean_dataset(root / "raw", root / "faces", CleanConfig(test_fraction=0.3), 48)
    return root / "faces"


def _build(faces, out):
    return build_pairs(faces, out, seed=0, xdog=XDoGConfig(), tps=TPSConfig())


def test_pairs_files_and_stable_reruns(faces, tmp_path):
    table, stats = _build(faces, tmp_path / "a")
    _build(faces, tmp_path / "b")
    assert stats["train"] + stats["test"] == 30 and stats["test"] >= 2
    assert set(table.setting) == {"self_ref", "random_ref"} and len(table) == 2 * stats["test"]
    rand = table[table.setting == "random_ref"]
    own = table[table.setting == "self_ref"].set_index("name").reference_identity
    assert (rand.reference_identity.values != own.loc[rand.name].values).all()
    assert (rand.reference_name != rand.name).all()
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert files and files == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    for row in table.itertuples():
        assert (tmp_path / "a" / row.sketch).is_file() and (tmp_path / "a" / row.reference).is_file()
        assert (faces / row.target).is_file() and (tmp_path / "a" / row.reference_label).is_file()
    items = pd.read_csv(tmp_path / "a/train/items.csv")
    assert set(items.sigma) <= {0.3, 0.4, 0.5}


def test_dataset_draws_the_training_warp(faces, tmp_path):
    _build(faces, tmp_path)
    still = TPSConfig(scheme="none")
    plain = PairDataset(faces, tmp_path, "train", tps=still)[(0, 1)]
    assert torch.equal(plain["reference"], plain["target"])
    flipped = PairDataset(faces, tmp_path, "train", tps=TrainWarpConfig(flip_p=1.0).over(still, "pretrain"))[(0, 1)]
    assert torch.equal(flipped["reference"], flipped["target"].flip(-1))


def test_dataset_tensors_and_fresh_distortion_per_fetch(faces, tmp_path):
    _build(faces, tmp_path)
    torch.manual_seed(0)
    ds = PairDataset(faces, tmp_path, "train", with_labels=True)
    a, b = ds[0], ds[0]
    assert a["sketch"].shape == (1, 48, 48) and a["reference"].shape == a["target"].shape == (3, 48, 48)
    for key in ("sketch", "reference", "target"):
        assert a[key].dtype == torch.float32 and a[key].min() >= -1 and a[key].max() <= 1
    assert torch.equal(a["target"], b["target"]) and torch.equal(a["sketch"], b["sketch"])
    assert not torch.equal(a["reference"], b["reference"])  # re-sampled TPS on every fetch
    assert a["label"].shape == (48, 48) and a["reference_label"].shape == (48, 48)
    # Same seed, same stream of distortions.
    torch.manual_seed(0)
    again = PairDataset(faces, tmp_path, "train")[0]
    assert torch.equal(again["reference"], a["reference"])
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2)
    batch = next(iter(loader))
    assert batch["reference"].shape == (4, 3, 48, 48)


def test_tensor_conversions_round_trip():
    img = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    assert np.array_equal(to_uint8(to_tensor(img)), img)
    gray = img[..., 0]
    assert to_tensor(gray).shape == (1, 5, 7) and np.array_equal(to_uint8(to_tensor(gray)), gray)


def test_missing_inputs_are_clear_errors(tmp_path):
    with pytest.raises(AnimecolorError, match="run `animecolor clean` first"):
        _build(tmp_path / "nope", tmp_path / "out")
    with pytest.raises(AnimecolorError, match="run `animecolor pairs` first"):
        PairDataset(tmp_path, tmp_path / "nope")


def test_zoom_crops_leave_the_faces_sketches_and_the_benchmark_as_they_were(tmp_path):
    """The crops of `clean.zoom_crops` draw their sketches from a stream of their own: every face's
    sketch, its self reference and the benchmark pairs are byte for byte the same with them."""
    crawl_synthetic(tmp_path / "raw", 16, 96, seed=0, heterochromia_p=0.2)
    clean_dataset(tmp_path / "raw", tmp_path / "plain", CleanConfig(test_fraction=0.3), 48)
    clean_dataset(tmp_path / "raw", tmp_path / "zoom", CleanConfig(test_fraction=0.3, zoom_crops=2), 48)
    _build(tmp_path / "plain", tmp_path / "a")
    table, stats = _build(tmp_path / "zoom", tmp_path / "b")
    plain_files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.png"))
    for rel in plain_files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    assert (tmp_path / "a/test/pairs.csv").read_bytes() == (tmp_path / "b/test/pairs.csv").read_bytes()
    items = pd.read_csv(tmp_path / "b/train/items.csv")
    crops = items[items.name.str.contains("_z")]
    assert len(crops) == 2 * (len(items) - len(crops)) and stats["train"] == len(items)
    for row in crops.itertuples():  # sketched like any face: white paper with lines on it
        sketch = cv2.imread(str(tmp_path / "b" / row.sketch), cv2.IMREAD_GRAYSCALE)
        assert sketch.shape == (48, 48) and 0.5 < (sketch > 128).mean() < 1.0
