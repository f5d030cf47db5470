"""Issue 14's levers: region-balanced loss weights, the fused attention kernel, bf16 on CPU."""

import shutil

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import pipeline.device as device_mod
from pipeline.data.dataset import PairDataset, region_weights
from pipeline.device import autocast, resolve_precision
from pipeline.model.diffusion import Diffusion, DiffusionConfig
from pipeline.model.attention import attend, attend_unfused
from pipeline.model.unet import UNet, UNetConfig

CPU = torch.device("cpu")


def _drawing() -> np.ndarray:
    """64 x 64, white, a frame splitting it in two big halves and one small closed circle."""
    img = np.full((64, 64), 255, np.uint8)
    cv2.line(img, (32, 0), (32, 63), 0, 1)
    cv2.circle(img, (16, 16), 3, 0, 1)
    return img


# ------------------------------------------------------------------------------ region weights
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


def test_weighted_loss_is_the_plain_loss_at_uniform_weight_and_follows_the_weights():
    torch.manual_seed(0)
    diffusion = Diffusion(DiffusionConfig())
    x0, eps = torch.rand(2, 3, 8, 8) * 2 - 1, torch.randn(2, 3, 8, 8)
    t = torch.tensor([10, 500])
    bias = torch.zeros(1, 3, 8, 8)
    bias[..., :2, :2] = 1.0  # the model is wrong only in a 2 x 2 corner

    def model(x_t, t):
        return diffusion.target(x0, t, eps) + bias

    plain = diffusion.loss(model, x0, t, eps)
    assert diffusion.loss(model, x0, t, eps, torch.ones(2, 1, 8, 8)) == pytest.approx(plain.item())
    corner = torch.full((2, 1, 8, 8), 0.5)
    corner[..., :2, :2] = 8.5  # mean 1, the error's pixels weigh 17x the rest
    assert diffusion.loss(model, x0, t, eps, corner) == pytest.approx(8.5 * plain.item(), rel=1e-5)


def test_dataset_carries_the_weights_only_when_asked(tiny_data):
    faces, pairs = tiny_data
    plain = PairDataset(faces, pairs, "train")[(0, 1)]
    weighted = PairDataset(faces, pairs, "train", region_balance=1.0)[(0, 1)]
    assert "weight" not in plain
    assert weighted["weight"].shape == (1, *weighted["sketch"].shape[1:])
    assert weighted["weight"].mean().item() == pytest.approx(1.0, abs=1e-4)
    assert torch.equal(plain["reference"], weighted["reference"])  # same random stream either way


# ------------------------------------------------------------------------------ attention kernel
def test_attend_takes_the_fused_kernel_and_matches_the_math_path():
    torch.manual_seed(0)
    feats = torch.randn(2, 32, 8, 8, requires_grad=True)  # (B, C, H, W), read as in CrossAttention
    q = feats.flatten(2).transpose(1, 2).reshape(2, 64, 4, 8).transpose(1, 2)  # stride != 1 in the last dim
    k, v = torch.randn(2, 4, 10, 8), torch.randn(2, 4, 10, 8)
    assert q.stride(-1) != 1
    out = attend(q, k, v)
    assert "Flash" in type(out.grad_fn).__name__
    reference = torch.softmax(q @ k.transpose(-1, -2) / 8 ** 0.5, -1) @ v
    assert torch.allclose(out, reference, atol=1e-5)
    assert torch.allclose(out, F.scaled_dot_product_attention(q, k, v), atol=1e-5)


def test_attend_trains_bf16_on_cpu_unfused_in_slices_and_samples_with_the_fused_kernel():
    torch.manual_seed(0)
    q, k, v = (torch.randn(5, 4, n, 16).mul(2 if i < 2 else 1).bfloat16().requires_grad_()
               for i, n in enumerate((64, 32, 32)))
    exact = [t.detach().double().requires_grad_() for t in (q, k, v)]
    truth = F.scaled_dot_product_attention(*exact)
    grad_out = torch.randn_like(truth)
    truth.backward(grad_out)
    out = attend(q, k, v)
    assert "Flash" not in type(out.grad_fn).__name__  # the unfused path: its backward is the fast one on CPU
    grads = torch.autograd.grad(out, (q, k, v), grad_out.bfloat16())
    rel = lambda a, b: ((a.double() - b).norm() / b.norm()).item()  # noqa: E731
    assert rel(out, truth) < 2e-2
    assert all(rel(g, t.grad) < 4e-2 for g, t in zip(grads, exact))
    sliced = attend_unfused(q, k, v, chunk=4 * 64 * 32 * 2)  # two samples a slice: 3 slices, same numbers
    assert torch.equal(sliced, attend_unfused(q, k, v, chunk=1 << 30))
    with torch.no_grad():  # sampling keeps the fused kernel
        assert torch.equal(attend(q, k, v), F.scaled_dot_product_attention(q, k, v))


# ------------------------------------------------------------------------------ CPU precision
def test_auto_precision_follows_the_cpus_bf16_support(monkeypatch):
    monkeypatch.setattr(device_mod, "cpu_has_bf16", lambda: True)
    assert resolve_precision(CPU, "auto") == "bf16"
    with autocast(CPU, "auto"):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    monkeypatch.setattr(device_mod, "cpu_has_bf16", lambda: False)
    assert resolve_precision(CPU, "auto") == "fp32"
    with autocast(CPU, "auto"):
        assert not torch.is_autocast_enabled("cpu")
    assert resolve_precision(CPU, "bf16") == "bf16" and resolve_precision(CPU, "fp32") == "fp32"


def test_bf16_autocast_runs_the_network_in_bf16_on_cpu():
    model = UNet(UNetConfig(image_size=16, channels=8, channel_mults=(1,), heads=2, reference_attention=(16,),
                            reference_tokens=8))
    x, t = torch.randn(2, 7, 16, 16), torch.tensor([3, 400])
    with autocast(CPU, "bf16"):
        low = model(x, t)
    with autocast(CPU, "fp32"):
        full = model(x, t)
    assert low.dtype == torch.bfloat16 and full.dtype == torch.float32
    assert torch.allclose(low.float(), full, atol=0.1)


def test_training_reports_the_precision_it_ran_in():
    from tests.test_speed_paths import _trainer

    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        trainer = _trainer(precision=precision)
        ran = set()  # the dtype the network's first convolution computed in, at every training forward
        first_conv = next(m for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d))
        hook = first_conv.register_forward_hook(lambda module, args, out: ran.add(out.dtype))
        result = trainer.run()
        hook.remove()
        assert ran == {dtype}, f"{precision}: the network ran in {ran}"
        assert result["precision"] == precision and len(result["losses"]) == 3


# ------------------------------------------------------------------------------ decoupled text attention
@pytest.mark.parametrize("separate", [False, True])
def test_separate_text_attention_reads_the_prompt_apart_from_the_reference(separate):
    from pipeline.model.reference import CrossAttention

    torch.manual_seed(0)
    block = CrossAttention(16, 12, heads=2, groups=4, token_side=2, separate_extra=separate)
    torch.nn.init.normal_(block.proj.weight)  # past the zero init
    x, extra = torch.randn(1, 16, 4, 4), torch.randn(1, 3, 12)
    grids = torch.randn(1, 4, 12), torch.randn(1, 4, 12)
    with torch.no_grad():  # what the prompt adds, over two different references
        added = [block(x, torch.cat([g, extra], 1)) - block(x, g) for g in grids]
    # separate: the prompt's reading has its own softmax, so what it adds does not depend on the reference
    assert torch.allclose(added[0], added[1], atol=1e-5) == separate
    assert (block.extra_kv is not None) == separate


def test_separate_text_attention_is_a_switch_with_its_own_weights():
    shared = UNet(UNetConfig(image_size=16, channels=8, channel_mults=(1,), heads=2, reference_attention=(16,),
                             reference_tokens=8, text=True))
    separate = UNet(UNetConfig(image_size=16, channels=8, channel_mults=(1,), heads=2, reference_attention=(16,),
                               reference_tokens=8, text=True, text_attention="separate"))
    extra = set(separate.state_dict()) - set(shared.state_dict())
    assert extra and all(".extra_kv." in k for k in extra) and set(shared.state_dict()) <= set(separate.state_dict())
    no_text = UNet(UNetConfig(image_size=16, channels=8, channel_mults=(1,), heads=2, reference_attention=(16,),
                              reference_tokens=8, text_attention="separate"))
    assert not any(".extra_kv." in k for k in no_text.state_dict())  # the switch only matters with text


# ------------------------------------------------------------------------------ correspondence supervision
def _corr_unet() -> UNet:
    return UNet(UNetConfig(image_size=32, channels=16, channel_mults=(1, 2, 2), norm_groups=4,
                           reference_attention=(16, 8), reference_tokens=8))


def test_recorded_attention_is_a_distribution_over_the_grid_and_recording_ends():
    from pipeline.model.reference import CrossAttention, recorded_attention

    torch.manual_seed(0)
    net = _corr_unet()
    for m in net.modules():  # open the zero-initialised paths so the attention has something to say
        if isinstance(m, CrossAttention):
            torch.nn.init.normal_(m.kv.weight)
    x = torch.randn(2, 7, 32, 32)
    with recorded_attention(net) as records:
        net(x, torch.tensor([3, 700]))
    assert len(records) == 6  # at 16 and at 8 px: one block down, two up
    for log_attention, pos, side in records:  # the 16 px maps are read at every second position
        assert side == 8 and log_attention.shape == (2, 64, 64) and pos.shape == (64, 2)
        assert torch.allclose(log_attention.exp().sum(-1), torch.ones(2, 64), atol=1e-4)
    assert {round(float(p[0, 0]), 5) for _, p, _ in records} == {1 / 32, 1 / 16}  # pixel centres of 16 and 8 px maps
    assert all(m.record is None for m in net.modules() if isinstance(m, CrossAttention))


def _pretrain_logs_correspondence(faces, pairs, tmp_path, overrides: dict) -> dict:
    """A 2-step tiny pretrain with `overrides`: it logs a positive loss_correspondence; returns its params."""
    import yaml

    from stages.pretrain import pretrain
    from tests.conftest import ROOT, TINY_PRETRAIN, set_key, stage_paths

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for key, value in {**TINY_PRETRAIN, "pretrain.loop.train_steps": 2, **overrides}.items():
        set_key(params, key, value)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    pretrain(tmp_path / "params.yaml", faces, pairs, **stage_paths(tmp_path, "pretrain"))
    logged = tmp_path / "dvclive" / "pretrain" / "plots" / "metrics" / "train" / "loss_correspondence.tsv"
    values = [float(line.split("\t")[-1]) for line in logged.read_text().splitlines()[1:]]
    assert values and all(v > 0 for v in values)
    return params


def test_pretrain_stage_with_correspondence_logs_the_term_and_needs_reference_attention(tiny_data, tmp_path):
    import yaml

    from pipeline.errors import ParamsError
    from stages.pretrain import pretrain
    from tests.conftest import set_key, stage_paths

    faces, pairs = tiny_data
    params = _pretrain_logs_correspondence(faces, pairs, tmp_path, {"pretrain.correspondence.weight": 1.0})
    set_key(params, "pretrain.unet.reference_attention", [])
    set_key(params, "pretrain.unet.text", False)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ParamsError, match="correspondence.weight supervises the reference attention"):
        pretrain(tmp_path / "params.yaml", faces, pairs, **stage_paths(tmp_path, "pretrain"))


def test_region_correspondence_loss_rewards_the_querys_own_region_and_weighs_regions_alike():
    from pipeline.model.attention import fourier_grid
    from pipeline.training.correspondence import region_correspondence_loss

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
    from pipeline.model.attention import fourier_grid
    from pipeline.training.correspondence import region_correspondence_loss
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


def test_recolour_pair_gives_a_region_one_new_colour_in_both_pictures_and_keeps_its_shading():
    from pipeline.data.dataset import RecolourConfig, recolour_pair

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


def test_pretrain_with_region_supervision_and_recolouring_trains_and_says_when_labels_are_missing(tiny_data, tmp_path,
                                                                                             capsys):
    from pipeline.data.dataset import RecolourConfig
    from stages.pretrain import pretrain
    from tests.conftest import stage_paths

    faces, pairs = tiny_data
    plain = PairDataset(faces, pairs, "train")[(0, 1)]
    item = PairDataset(faces, pairs, "train", recolour=RecolourConfig(p=1.0))[(0, 1)]
    assert torch.equal(item["sketch"], plain["sketch"]) and not torch.equal(item["target"], plain["target"])
    _pretrain_logs_correspondence(faces, pairs, tmp_path, {
        "pretrain.unet.text": False, "pretrain.correspondence.weight": 1.0,
        "pretrain.correspondence.heads": "one", "pretrain.recolour.p": 0.5})
    shutil.copytree(pairs, tmp_path / "pairs")  # the shared fixture stays as it is
    items = pd.read_csv(tmp_path / "pairs" / "train" / "items.csv", dtype=str, keep_default_na=False)
    items.loc[0, "label"] = ""  # one image without its label map
    items.to_csv(tmp_path / "pairs" / "train" / "items.csv", index=False)
    capsys.readouterr()
    metrics = pretrain(tmp_path / "params.yaml", faces, tmp_path / "pairs", **stage_paths(tmp_path, "again"))
    said = " ".join(capsys.readouterr().err.split())  # Rich wraps long lines
    assert "have no label maps (real data): the region-supervised attention" in said
    assert "and pretrain.recolour are off" in said
    assert metrics["steps"] == 2
    assert not (tmp_path / "dvclive" / "again" / "plots" / "metrics" / "train" / "loss_correspondence.tsv").exists()
    # colour clusters stand in for the missing label maps: the supervision is on again, recolouring stays off
    import yaml
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["pretrain"]["correspondence"]["colour_regions"] = 6
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    pretrain(tmp_path / "params.yaml", faces, tmp_path / "pairs", **stage_paths(tmp_path, "clustered"))
    said = " ".join(capsys.readouterr().err.split())
    assert "pretrain.recolour is off" in said and "uses each target's 6 colour clusters" in said
    assert (tmp_path / "dvclive" / "clustered" / "plots" / "metrics" / "train" / "loss_correspondence.tsv").exists()


def test_colour_clusters_are_a_function_of_the_picture_and_follow_its_flat_colours():
    from pipeline.data.dataset import colour_clusters

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
