"""pipeline/data/dataset.py: region-balanced loss weights, recolouring a region in both pictures,
colour clusters standing in for label maps."""

import cv2
import numpy as np
import pytest
import torch

from pipeline.data.dataset import (CaptionConfig, PairAugmentConfig, PairDataset, RecolourConfig, colour_clusters,
                                   recolour_pair, region_weights)
from pipeline.errors import AnimecolorError


def _drawing() -> np.ndarray:
    """64 x 64, white, a frame splitting it in two big halves and one small closed circle."""
    img = np.full((64, 64), 255, np.uint8)
    cv2.line(img, (32, 0), (32, 63), 0, 1)
    cv2.circle(img, (16, 16), 3, 0, 1)
    return img


# ----------------------------------------------------------------------------------- region weights
def test_small_closed_regions_weigh_more_and_the_mean_is_one():
    sketch = _drawing()
    w = region_weights(sketch, 1.0)
    assert w.shape == sketch.shape and w.dtype == np.float32
    assert w.mean() == pytest.approx(1.0, abs=1e-5)
    inside, big, line = w[16, 16], w[40, 50], w[0, 32]
    assert inside > 3 * big  # the circle's inside (~21 px) vs a 2,000 px half
    assert big == pytest.approx(line)  # regions above 1/16 of the picture weigh what lines do
    assert inside / big <= 8.0 + 1e-4  # the clip


def test_power_zero_is_uniform_and_power_orders_the_weights():
    sketch = _drawing()
    assert np.allclose(region_weights(sketch, 0.0), 1.0)
    half, full = region_weights(sketch, 0.5), region_weights(sketch, 1.0)
    assert full[16, 16] / full[40, 50] > half[16, 16] / half[40, 50] > 1.0


def test_dataset_carries_the_weights_only_when_asked(tiny_data):
    faces, pairs = tiny_data
    plain = PairDataset(faces, pairs, "train")[(0, 1)]
    weighted = PairDataset(faces, pairs, "train", region_balance=1.0)[(0, 1)]
    assert "weight" not in plain
    assert weighted["weight"].shape == (1, *weighted["sketch"].shape[1:])
    assert weighted["weight"].mean().item() == pytest.approx(1.0, abs=1e-4)
    assert torch.equal(plain["reference"], weighted["reference"])  # same random stream either way


def test_eye_weight_weighs_the_irises_of_the_label_map_and_goes_off_without_label_maps(tiny_data, tmp_path):
    import shutil

    import pandas as pd

    from pipeline.data.imageio import read_label
    from pipeline.data.labels import REGION_IDS

    faces, pairs = tiny_data
    plain = PairDataset(faces, pairs, "train")
    eyes = PairDataset(faces, pairs, "train", eye_weight=10.0)
    assert eyes.drop_label_uses() == []
    item, row = eyes[(0, 1)], eyes.items.iloc[0]
    label = read_label(faces / row.label)
    iris = np.isin(label, [REGION_IDS["iris_left"], REGION_IDS["iris_right"]])
    assert iris.any() and not iris.all()
    weight = item["weight"][0].numpy()
    assert np.all(weight[iris] == 10.0) and np.all(weight[~iris] == 1.0)  # not renormalised
    assert torch.equal(item["reference"], plain[(0, 1)]["reference"])  # the same random stream
    assert "weight" not in plain[(0, 1)]
    # real data (no label maps): the weight is dropped and said to be
    shutil.copytree(pairs, tmp_path / "pairs")
    items = pd.read_csv(tmp_path / "pairs" / "train" / "items.csv", dtype=str, keep_default_na=False)
    items["label"] = ""
    items.to_csv(tmp_path / "pairs" / "train" / "items.csv", index=False)
    real = PairDataset(faces, tmp_path / "pairs", "train", eye_weight=10.0)
    assert real.drop_label_uses() == ["eye weight"]
    assert "weight" not in real[(0, 1)]


def test_eye_weight_stays_on_when_some_faces_have_eye_label_maps(tiny_data, tmp_path):
    """Some training faces lack a label map (mixed data): the labelled faces' irises weigh more,
    the others' loss stays plain, and a mixed batch still stacks."""
    import shutil

    import pandas as pd
    from torch.utils.data import default_collate

    faces, pairs = tiny_data
    shutil.copytree(pairs, tmp_path / "pairs")
    items = pd.read_csv(tmp_path / "pairs" / "train" / "items.csv", dtype=str, keep_default_na=False)
    items.loc[1, "label"] = ""  # this face has no label map
    items.to_csv(tmp_path / "pairs" / "train" / "items.csv", index=False)
    mixed = PairDataset(faces, tmp_path / "pairs", "train", eye_weight=10.0, with_labels=True)
    assert mixed.labelled == len(items) - 1
    assert mixed.drop_label_uses() == ["label maps"]  # the region outputs need every map; the iris weight does not
    assert mixed.eye_weight == 10.0
    labelled, unlabelled = mixed[(0, 1)], mixed[(1, 1)]
    assert labelled["weight"].max().item() == 10.0 and labelled["weight"].min().item() == 1.0
    assert torch.equal(unlabelled["weight"], torch.ones_like(unlabelled["weight"]))
    assert "label" not in labelled
    assert default_collate([labelled, unlabelled])["weight"].shape == (2, 1, *labelled["sketch"].shape[1:])
    clustered = PairDataset(faces, tmp_path / "pairs", "train", eye_weight=10.0, with_labels=True, colour_regions=4)
    assert clustered.drop_label_uses() == ["eye weight"] and "weight" not in clustered[(0, 1)]


def test_a_mirrored_pair_mirrors_target_lines_and_label_map_together(tiny_data):
    """flip_p 1: every item is the unmirrored item's target, lines and label map mirrored (so the iris
    weight sits on the mirrored irises); flip_p 0 draws nothing, so the default stream is unchanged."""
    faces, pairs = tiny_data
    plain = PairDataset(faces, pairs, "train", eye_weight=10.0, with_labels=True)
    mirrored = PairDataset(faces, pairs, "train", eye_weight=10.0, with_labels=True, augment=PairAugmentConfig(flip_p=1.0))
    a, b = plain[(0, 5)], mirrored[(0, 5)]
    for key in ("target", "sketch", "weight", "label"):
        assert torch.equal(b[key], a[key].flip(-1)), key
    assert not torch.equal(a["target"], a["target"].flip(-1))  # the face is not symmetric: the test can fail
    off = PairDataset(faces, pairs, "train", augment=PairAugmentConfig(flip_p=0.0))
    assert torch.equal(off[(0, 5)]["reference"], PairDataset(faces, pairs, "train")[(0, 5)]["reference"])
    with pytest.raises(AnimecolorError, match="pretrain.augment.flip_p"):
        PairDataset(faces, pairs, "train", captions=CaptionConfig(), augment=PairAugmentConfig(flip_p=0.5))


# -------------------------------------------------------------------------------------- recolouring
def test_recolour_pair_gives_a_region_one_new_colour_in_both_pictures_and_keeps_its_shading():
    torch.manual_seed(0)
    label = np.zeros((16, 16), np.uint8)
    label[4:8, 4:8], label[10:14, 2:6] = 4, 1
    reference_label = np.roll(label, 3, axis=1)
    target, reference = torch.rand(3, 16, 16) * 0.4 - 0.2, torch.rand(3, 16, 16) * 0.4 - 0.2
    cfg = RecolourConfig(p=1.0, regions=("iris_left",))
    new_t, new_r = recolour_pair(target, reference, label, reference_label, np.random.default_rng(3), cfg)
    iris_t, iris_r = torch.from_numpy(label == 4), torch.from_numpy(reference_label == 4)
    mean_t, mean_r = new_t[:, iris_t].mean(1), new_r[:, iris_r].mean(1)
    assert torch.allclose(mean_t, mean_r, atol=1e-5) and not torch.allclose(mean_t, target[:, iris_t].mean(1), atol=0.05)
    shading = lambda img, m: img[:, m] - img[:, m].mean(1, keepdim=True)  # noqa: E731
    assert torch.allclose(shading(new_t, iris_t), shading(target, iris_t), atol=1e-5)
    assert torch.equal(new_t[:, ~iris_t], target[:, ~iris_t]) and torch.equal(new_r[:, ~iris_r], reference[:, ~iris_r])
    same = recolour_pair(target, reference, label, reference_label, np.random.default_rng(3),
                         RecolourConfig(p=0.0, regions=("iris_left",)))
    assert torch.equal(same[0], target) and torch.equal(same[1], reference)


def test_colour_clusters_are_a_function_of_the_picture_and_follow_its_flat_colours():
    image = np.zeros((16, 16, 3), np.uint8)
    image[:, :8] = (200, 40, 60)  # a red half, a blue quarter, a white quarter
    image[:8, 8:] = (30, 60, 200)
    image[8:, 8:] = (250, 250, 250)
    rng = np.random.default_rng(0)
    noisy = np.clip(image + rng.normal(0, 3, image.shape), 0, 255).astype(np.uint8)
    ids = colour_clusters(noisy, 3)
    assert ids.shape == (16, 16) and ids.dtype == np.uint8
    assert [len(np.unique(part)) for part in (ids[:, :8], ids[:8, 8:], ids[8:, 8:])] == [1, 1, 1]
    assert len({ids[0, 0], ids[0, 15], ids[15, 15]}) == 3
    assert np.array_equal(ids, colour_clusters(noisy, 3))  # the same picture, the same clusters
