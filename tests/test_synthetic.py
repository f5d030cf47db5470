import cv2
import numpy as np
import pytest

from pipeline.data.synthetic import REGION_IDS, REGIONS, generate_face, hex_to_rgb, render_face, sample_face


def test_same_seed_same_face_different_seed_different_face():
    _, a, la = generate_face(seed=3, index=5, size=64, heterochromia_p=0.1)
    _, b, lb = generate_face(seed=3, index=5, size=64, heterochromia_p=0.1)
    _, c, _ = generate_face(seed=3, index=6, size=64, heterochromia_p=0.1)
    _, d, _ = generate_face(seed=4, index=5, size=64, heterochromia_p=0.1)
    assert np.array_equal(a, b) and np.array_equal(la, lb)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a, d)


@pytest.mark.parametrize("size", [32, 64, 100, 256])
def test_shapes_and_types(size):
    _, rgb, label = generate_face(0, 0, size, 0.1)
    assert rgb.shape == (size, size, 3) and rgb.dtype == np.uint8
    assert label.shape == (size, size) and label.dtype == np.uint8
    assert set(np.unique(label)) <= set(REGIONS)


def test_label_map_matches_colours_in_the_image():
    """Inside each region (away from its inked outline) the image shows the manifest colour."""
    for index in range(12):
        spec, rgb, label = generate_face(1, index, 128, 0.1)
        for name in ("background", "hair", "skin", "clothes", "sclera"):
            mask = (label == REGION_IDS[name]).astype(np.uint8)
            inner = cv2.erode(mask, np.ones((5, 5), np.uint8)) > 0
            if inner.sum() < 20:
                continue
            median = np.median(rgb[inner].astype(float), axis=0)
            target = np.array(hex_to_rgb(spec.attributes()[f"color_{name}"]), float)
            # Shading (bangs shadow, hair sheen) moves a minority of pixels only.
            assert np.abs(median - target).max() <= 12, (index, name, median, target)


def test_regions_are_distinct_and_all_appear():
    seen = set()
    for index in range(60):
        spec, _, label = generate_face(2, index, 64, 0.5)
        seen |= set(np.unique(label).tolist())
        colors = spec.colors
        assert colors["hair"] != colors["skin"]
    assert seen == set(REGIONS), set(REGIONS) - seen


def test_outlines_are_dark_ink():
    spec, rgb, label = generate_face(0, 1, 128, 0.1)
    boundary = cv2.morphologyEx((label == REGION_IDS["skin"]).astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3)))
    luma = rgb.astype(float).mean(axis=2)
    assert np.median(luma[boundary > 0]) < np.median(luma[label == REGION_IDS["skin"]]) - 60


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_heterochromia_fraction_follows_parameter(p):
    n = 2000
    specs = [sample_face(np.random.default_rng(i), heterochromia_p=p) for i in range(n)]
    frac = np.mean([s.heterochromia for s in specs])
    assert abs(frac - p) < 0.035
    for s in specs:
        assert (s.colors["iris_left"] != s.colors["iris_right"]) == s.heterochromia


def test_heterochromatic_irises_render_in_their_own_colours():
    spec = sample_face(np.random.default_rng(11), heterochromia_p=1.0)
    rgb, label = render_face(spec, 256)
    for name in ("iris_left", "iris_right"):
        pixels = rgb[label == REGION_IDS[name]].astype(float)
        target = np.array(spec.colors[name], float)
        # The iris is shaded (dark under the lid), so compare the chroma direction.
        mean = pixels.mean(axis=0)
        cos = mean @ target / (np.linalg.norm(mean) * np.linalg.norm(target))
        assert cos > 0.97, (name, mean, target)


def test_too_small_size_is_rejected():
    spec = sample_face(np.random.default_rng(0))
    with pytest.raises(ValueError, match="too small"):
        render_face(spec, 8)
