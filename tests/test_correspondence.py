"""pipeline/training/correspondence.py: the region-supervised reference attention (each query's own
region in the reference, or the said slot's text token), and the pretrain stage that uses it."""

import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from pipeline.data.dataset import PairDataset
from pipeline.model.attention import fourier_grid
from pipeline.training.correspondence import region_correspondence_loss
from stages.pretrain import pretrain
from tests.helpers import TINY_PRETRAIN, params_file, set_key, stage_paths

CPU = torch.device("cpu")


def test_region_correspondence_loss_rewards_the_querys_own_region_and_weighs_regions_alike():
    side, b = 4, 2
    label = torch.zeros(b, 8, 8, dtype=torch.int64)
    label[:, :2, :2] = 4  # a small "iris" in the top-left token; the rest background
    reference_label = label.flip(-1)  # the reference shows it in the top-right token
    pos = fourier_grid(side, side, CPU)
    iris_token, n = side - 1, side * side
    on_iris = torch.full((b, n, n), -30.0)
    on_iris[..., iris_token] = 0.0  # every query looks at the reference's iris token
    uniform = torch.full((b, n, n), -np.log(n))
    keep = torch.tensor([True, True])
    loss = lambda att, regions=(0, 4), keep=keep: region_correspondence_loss(  # noqa: E731
        [(att, pos, side)], label, reference_label, keep, regions).item()
    assert loss(on_iris, (4,)) < 1e-3  # the iris query found the iris
    assert loss(uniform, (4,)) == pytest.approx(np.log(n), rel=1e-4)  # one token of 16 is the iris
    assert loss(uniform, (0,)) == pytest.approx(-np.log(15 / 16), rel=1e-3)  # 15 of 16 are background
    # regions weigh alike: the one iris query of 16 counts as much as the 15 background queries
    assert loss(on_iris) == pytest.approx((loss(on_iris, (0,)) + loss(on_iris, (4,))) / 2, rel=1e-5)
    assert loss(on_iris, keep=torch.tensor([False, False])) == 0.0  # no reference: nothing to supervise
    assert loss(uniform, (5,)) == 0.0  # a region the picture does not have


def test_region_correspondence_loss_counts_a_said_slots_text_token_as_its_region():
    from pipeline.training.loop import said_regions

    side, n = 4, 16
    label = torch.zeros(1, 8, 8, dtype=torch.int64)
    label[:, :2, :2] = 4  # the "iris" of the top-left token
    pos = fourier_grid(side, side, CPU)
    text = torch.zeros(1, 6, 4)
    text[0, 1, 0] = 3  # iris_left said; its token is the grid's n + 1-th
    regions = said_regions(text)
    assert regions.tolist() == [[-1, 4, -1, -1, -1, -1]]
    on_text = torch.full((1, n, n + 6), -30.0)
    on_text[..., n + 1] = 0.0  # every query reads the iris_left text token
    on_hair_token = torch.full((1, n, n + 6), -30.0)
    on_hair_token[..., n] = 0.0  # ... or the unspecified hair slot's
    altered = torch.full_like(label, 15)  # the reference shows nothing of any region (all blanked)
    loss = lambda att, keep, text_regions=regions: region_correspondence_loss(  # noqa: E731
        [(att, pos, side)], label, altered, torch.tensor([keep]), (4,), text_regions).item()
    assert loss(on_text, True) < 1e-3 and loss(on_text, False) < 1e-3  # the text is the iris's only source
    assert loss(on_hair_token, True) > 20  # an unspecified slot's token is no region's
    assert loss(on_text, True, None) == 0.0  # without the prompt: nothing of the iris to look at
    # a dropped reference's grid counts for nothing, even where its labels show the region
    on_grid = torch.full((1, n, n + 6), -30.0)
    on_grid[..., 0] = 0.0
    shown = region_correspondence_loss([(on_grid, pos, side)], label, label, torch.tensor([True]), (4,), regions)
    dropped = region_correspondence_loss([(on_grid, pos, side)], label, label, torch.tensor([False]), (4,), regions)
    assert shown.item() < 1e-3 and dropped.item() > 20


# ------------------------------------------------------------------------------- the pretrain stage
def _pretrain_logs_correspondence(faces, pairs, tmp_path, overrides: dict) -> dict:
    """A 2-step tiny pretrain with `overrides`: it logs a positive loss_correspondence; returns its params."""
    params_file(tmp_path / "params.yaml", {**TINY_PRETRAIN, "pretrain.loop.train_steps": 2, **overrides})
    pretrain(tmp_path / "params.yaml", faces, pairs, **stage_paths(tmp_path, "pretrain"))
    logged = tmp_path / "dvclive" / "pretrain" / "plots" / "metrics" / "train" / "loss_correspondence.tsv"
    values = [float(line.split("\t")[-1]) for line in logged.read_text().splitlines()[1:]]
    assert values and all(v > 0 for v in values)
    return yaml.safe_load((tmp_path / "params.yaml").read_text())


@pytest.mark.slow
def test_pretrain_stage_with_correspondence_logs_the_term_and_needs_reference_attention(tiny_data, tmp_path):
    from pipeline.errors import ParamsError

    faces, pairs = tiny_data
    params = _pretrain_logs_correspondence(faces, pairs, tmp_path, {"pretrain.correspondence.weight": 1.0})
    set_key(params, "pretrain.unet.reference_attention", [])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ParamsError, match="correspondence.weight supervises the reference attention"):
        pretrain(tmp_path / "params.yaml", faces, pairs, **stage_paths(tmp_path, "pretrain"))


@pytest.mark.slow
def test_pretrain_with_region_supervision_and_recolouring_trains_and_says_when_labels_are_missing(tiny_data, tmp_path,
                                                                                             capsys):
    from pipeline.data.dataset import RecolourConfig

    faces, pairs = tiny_data
    plain = PairDataset(faces, pairs, "train")[(0, 1)]
    item = PairDataset(faces, pairs, "train", recolour=RecolourConfig(p=1.0))[(0, 1)]
    assert torch.equal(item["sketch"], plain["sketch"]) and not torch.equal(item["target"], plain["target"])
    _pretrain_logs_correspondence(faces, pairs, tmp_path, {
        "pretrain.correspondence.weight": 1.0,
        "pretrain.correspondence.heads": "one", "pretrain.recolour.p": 0.5})
    shutil.copytree(pairs, tmp_path / "pairs")  # the shared fixture stays as it is
    items = pd.read_csv(tmp_path / "pairs" / "train" / "items.csv", dtype=str, keep_default_na=False)
    items.loc[0, "label"] = ""  # one image without its label map
    items.to_csv(tmp_path / "pairs" / "train" / "items.csv", index=False)
    capsys.readouterr()
    metrics = pretrain(tmp_path / "params.yaml", faces, tmp_path / "pairs", **stage_paths(tmp_path, "again"))
    said = " ".join(capsys.readouterr().err.split())  # Rich wraps long lines
    assert "do not all have label maps (real data): the region-supervised attention" in said
    assert "and pretrain.recolour are off" in said  # the shipped iris weight stays on the labelled images
    assert "training images have label maps only: pretrain.diffusion.eye_weight weighs their irises" in said
    assert metrics["steps"] == 2
    assert not (tmp_path / "dvclive" / "again" / "plots" / "metrics" / "train" / "loss_correspondence.tsv").exists()
    # colour clusters stand in for the missing label maps: the supervision is on again, recolouring stays off
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["pretrain"]["correspondence"]["colour_regions"] = 6
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    pretrain(tmp_path / "params.yaml", faces, tmp_path / "pairs", **stage_paths(tmp_path, "clustered"))
    said = " ".join(capsys.readouterr().err.split())
    assert "pretrain.recolour and pretrain.diffusion.eye_weight are off" in said and "uses each target's 6 colour clusters" in said
    assert (tmp_path / "dvclive" / "clustered" / "plots" / "metrics" / "train" / "loss_correspondence.tsv").exists()
