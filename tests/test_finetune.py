"""Reconstruction fine-tuning: gradients through the unrolled sampler, checkpointing, the stage."""

import json

import pytest
import torch
import yaml

from pipeline.data.dataset import PairDataset
from pipeline.data.tps import TPSConfig
from pipeline.model.checkpoint import load_checkpoint
from pipeline.model.diffusion import Diffusion
from pipeline.model.unet import UNet, UNetConfig
from pipeline.training.finetune import ReconstructionConfig, colour_distribution_loss, reconstruction_objective
from stages.finetune import finetune
from tests.helpers import stage_paths as _paths


class _Recording(torch.nn.Module):
    """Wraps a U-Net and keeps every forward output, with its gradient after backward."""

    def __init__(self, net):
        super().__init__()
        self.net, self.outputs = net, []

    def forward(self, x, t):
        out = self.net(x, t)
        out.retain_grad()
        self.outputs.append(out)
        return out


def _batch(tiny_data, n=2):
    faces, pairs = tiny_data
    ds = PairDataset(faces, pairs, "train", tps=TPSConfig())
    items = [ds[(i, i)] for i in range(n)]
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def _net():
    torch.manual_seed(0)
    net = UNet(UNetConfig(image_size=32, channels=8, channel_mults=(1, 2), res_blocks=1, heads=2))
    for p in net.out.parameters():  # non-zero output so every step's gradient is informative
        torch.nn.init.normal_(p, std=0.05)
    return net


@pytest.mark.parametrize("start", ["reference", "target", "noise"])
def test_gradients_reach_every_unrolled_step(tiny_data, start):
    model = _Recording(_net())
    objective = reconstruction_objective(Diffusion(), ReconstructionConfig(unroll_steps=4, start=start, t_start=900,
                                                                           grad_checkpoint=False))
    loss, extras = objective(model, _batch(tiny_data), torch.Generator().manual_seed(0))
    loss.backward()
    assert len(model.outputs) == 4 and "loss_mse" in extras
    for out in model.outputs:
        assert out.grad is not None and out.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.net.parameters())


def test_checkpointing_gives_the_same_gradients(tiny_data):
    batch = _batch(tiny_data)
    grads = []
    for ckpt in (False, True):
        net = _net()
        cfg = ReconstructionConfig(unroll_steps=3, guidance=2.0, grad_checkpoint=ckpt, l1_weight=0.5, eps_weight=0.1)
        loss, _ = reconstruction_objective(Diffusion(), cfg)(net, batch, torch.Generator().manual_seed(1))
        loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in net.parameters()]))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-7)


def test_lpips_and_ms_ssim_terms_are_differentiable(tiny_data):
    net = _net()
    cfg = ReconstructionConfig(unroll_steps=2, mse_weight=0.0, lpips_weight=1.0, ms_ssim_weight=1.0)
    loss, extras = reconstruction_objective(Diffusion(), cfg)(net, _batch(tiny_data), torch.Generator().manual_seed(0))
    loss.backward()
    assert {"loss_lpips", "loss_ms_ssim"} <= set(extras)
    assert net.out[-1].weight.grad.abs().sum() > 0


def test_colour_distribution_term_sees_colours_not_places(tiny_data):
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    shuffled = x.flatten(2)[:, :, torch.randperm(256, generator=torch.Generator().manual_seed(1))].reshape(x.shape)
    assert colour_distribution_loss(x, x) == 0 and colour_distribution_loss(x, shuffled) < 1e-6  # any arrangement
    assert colour_distribution_loss(x, x * 0.5) > 0.05  # other colours
    net = _net()  # and it trains the network alone (no label maps needed)
    cfg = ReconstructionConfig(unroll_steps=2, mse_weight=0.0, swd_weight=1.0)
    loss, extras = reconstruction_objective(Diffusion(), cfg)(net, _batch(tiny_data), torch.Generator().manual_seed(0))
    loss.backward()
    assert "loss_swd" in extras and loss > 0 and net.out[-1].weight.grad.abs().sum() > 0


def test_epochs_zero_is_an_exact_passthrough(tiny_data, tiny_pretrained, tmp_path):
    faces, pairs = tiny_data
    data = yaml.safe_load((tiny_pretrained / "params.yaml").read_text())
    data["finetune"]["loop"]["epochs"] = 0
    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump(data))
    metrics = finetune(params, tiny_pretrained / "pretrain.pt", faces, pairs, **_paths(tmp_path, "ft"))
    assert metrics["steps"] == 0 and metrics["passthrough"] is True and metrics["final_loss"] > 0
    assert (tmp_path / "ft.png").is_file()
    a, b = load_checkpoint(tiny_pretrained / "pretrain.pt"), load_checkpoint(tmp_path / "ft.pt")
    for key in ("model", "ema"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key])


@pytest.mark.slow
def test_finetune_stage_trains_changes_weights_and_resumes(tiny_data, tiny_pretrained, tmp_path):
    faces, pairs = tiny_data
    params = tiny_pretrained / "params.yaml"
    partial = finetune(params, tiny_pretrained / "pretrain.pt", faces, pairs, **_paths(tmp_path, "ft"), stop_at=1)
    assert partial["steps"] == 1 and not (tmp_path / "ft.pt").exists()
    metrics = finetune(params, tiny_pretrained / "pretrain.pt", faces, pairs, **_paths(tmp_path, "ft"))
    assert metrics["resumed_from"] == 1 and metrics["steps"] == 2 and metrics["passthrough"] is False
    saved = json.loads((tmp_path / "ft.json").read_text())
    assert saved["steps"] == 2
    a, b = load_checkpoint(tiny_pretrained / "pretrain.pt"), load_checkpoint(tmp_path / "ft.pt")
    assert any(not torch.equal(a["ema"][k], b["ema"][k]) for k in a["ema"])
    assert b["meta"]["stage"] == "finetune" and (tmp_path / "ft.png").is_file()
    record = b["meta"]["data"][-1]  # the references' layout, recorded for colorize (the benchmark's warp here)
    tps = yaml.safe_load(params.read_text())["pairs"]["tps"]
    assert record["stage"] == "finetune" and record["reference_warp"] == {
        k: tps.get(k, 1.0 if k.startswith(("scale", "moves")) else 0.0)
        for k in ("flip_p", "rotate_deg", "scale_min", "scale_max", "moves_p")}


def test_region_colour_loss_is_zero_for_the_reference_colours_and_weighs_regions_alike():
    from pipeline.data.labels import NO_REGION
    from pipeline.training.finetune import region_colour_loss

    label = torch.zeros(1, 8, 8, dtype=torch.int64)
    label[:, 2:4, 2:4] = 4  # a 4-pixel iris on a 60-pixel background
    reference = torch.full((1, 3, 8, 8), -0.5)
    reference[:, 0, 2:4, 2:4] = 0.8  # a red iris
    reference_label = label.clone()
    assert region_colour_loss(reference, label, reference, reference_label, (0, 4)).item() < 1e-4
    wrong_iris = reference.clone()
    wrong_iris[:, :, 2:4, 2:4] = -0.5  # the iris painted like the background
    wrong_background = reference.clone()
    wrong_background[:, :, label[0] == 0] = 0.8
    iris_only = region_colour_loss(wrong_iris, label, reference, reference_label, (4,)).item()
    assert iris_only > 0.3  # red vs dark grey: a CIELAB distance over 30
    # regions weigh alike: 4 wrong pixels cost half of what they cost alone, like 60
    assert region_colour_loss(wrong_iris, label, reference, reference_label, (0, 4)).item() == pytest.approx(iris_only / 2, rel=1e-3)
    assert region_colour_loss(wrong_iris, label, reference, reference_label, (5,)).item() == 0.0  # no such region
    out = wrong_iris.clone().requires_grad_()
    region_colour_loss(out, label, reference, reference_label, (4,)).backward()
    assert out.grad[:, :, 2:4, 2:4].abs().sum() > 0 and out.grad[:, :, 5:, 5:].abs().sum() == 0
    # nothing to score (no region on both sides: detected eye labels, a random reference without
    # eyes): zero, and it still backpropagates, with zero gradients (a step need not crash)
    empty = torch.full_like(reference_label, NO_REGION)
    out = wrong_iris.clone().requires_grad_()
    nothing = region_colour_loss(out, label, reference, empty, (4, 5))
    assert nothing.item() == 0.0 and nothing.requires_grad
    nothing.backward()
    assert out.grad.abs().sum() == 0


def test_random_references_are_scored_by_colour_alone_and_need_the_colour_term(tiny_data):
    faces, pairs = tiny_data
    ds = PairDataset(faces, pairs, "train", tps=TPSConfig(), with_labels=True)
    items = [ds[(i, i)] for i in range(4)]
    batch = {k: torch.stack([it[k] for it in items]) for k in items[0]}
    cfg = dict(unroll_steps=2, grad_checkpoint=False, colour_weight=1.0)
    _, own = reconstruction_objective(Diffusion(), ReconstructionConfig(**cfg))(_net(), batch, torch.Generator().manual_seed(0))
    assert {"loss_mse", "loss_colour"} <= set(own)
    net = _net()
    loss, swapped = reconstruction_objective(Diffusion(), ReconstructionConfig(**cfg, p_random=1.0))(
        net, batch, torch.Generator().manual_seed(0))
    assert set(swapped) == {"loss_colour"}  # every sample had another face's reference: no pixel truth
    assert swapped["loss_colour"] != own["loss_colour"]
    loss.backward()
    assert net.out[-1].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="p_random: samples with another face's reference are scored by the colour"):
        ReconstructionConfig(p_random=0.5)
    # without label maps: the colour-distribution term scores them against their (other) reference
    no_labels = {k: v for k, v in batch.items() if k not in ("label", "reference_label")}
    cfg = dict(unroll_steps=2, grad_checkpoint=False, swd_weight=1.0)
    _, own = reconstruction_objective(Diffusion(), ReconstructionConfig(**cfg))(_net(), no_labels, torch.Generator().manual_seed(0))
    net = _net()
    loss, swapped = reconstruction_objective(Diffusion(), ReconstructionConfig(**cfg, p_random=1.0))(
        net, no_labels, torch.Generator().manual_seed(0))
    assert set(swapped) == {"loss_swd"} and swapped["loss_swd"] != own["loss_swd"]
    loss.backward()
    assert net.out[-1].weight.grad.abs().sum() > 0


def test_finetune_reference_warp_moves_the_fine_tuning_references_only(tiny_data, tiny_pretrained):
    """`finetune.reference_warp` over `pairs.tps`: the same draw per item, then mirrored; unset, the
    fine-tuning references are the benchmark's own warp; a warp the benchmark's cannot hold is one
    error naming the finetune key."""
    from stages.common import ParamsError
    from stages.finetune import _dataset
    from stages.params import FinetuneParams, PairsParams, check_across

    init = load_checkpoint(tiny_pretrained / "pretrain.pt")
    plain = _dataset(FinetuneParams(), PairsParams(), init, *tiny_data)
    assert plain.tps == PairsParams().tps
    mirrored = _dataset(FinetuneParams.model_validate({"reference_warp": {"flip_p": 1.0}}), PairsParams(), init,
                        *tiny_data)
    assert mirrored.tps.flip_p == 1.0 and mirrored.tps.strength == plain.tps.strength
    for i in range(3):
        a, b = plain[(i, i)], mirrored[(i, i)]
        assert torch.equal(a["sketch"], b["sketch"]) and torch.equal(a["target"], b["target"])
        assert torch.allclose(b["reference"], a["reference"].flip(-1), atol=1e-6)
        assert not torch.allclose(b["reference"], a["reference"], atol=1e-3)
    with pytest.raises(ParamsError, match="finetune.reference_warp over pairs.tps"):
        check_across({"pairs": PairsParams(), "finetune": FinetuneParams.model_validate(
            {"reference_warp": {"scale_min": 1.2}})})
