"""pipeline/model/diffusion.py: the region-weighted loss, the cached schedule tables, and the regression
objective (`pretrain.diffusion.objective: regression`): one forward pass at a zero noisy image, trained
by L1, through every stage that trains, samples or exports a model."""

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from pipeline.colorize import ColorizeOptions, colorize_image, load_model
from pipeline.model.checkpoint import load_checkpoint, model_from_checkpoint
from pipeline.model.conditioning import guided, null_condition
from pipeline.model.diffusion import Diffusion, DiffusionConfig
from pipeline.model.sampler import ddim_sample, ddpm_sample, noise
from stages.cli import app
from tests.helpers import TINY_FINETUNE, TINY_PRETRAIN, params_file, stage_paths

REGRESSION = Diffusion(DiffusionConfig(objective="regression"))


class _Calls(torch.nn.Module):
    """Records (x, t) of every call; the output depends on both, so a wrong input shows."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, x, t):
        self.calls.append((x.clone(), t.clone()))
        return torch.tanh(x + 0.3) * (1 + t.float().view(-1, 1, 1, 1) / 1000) - 0.5


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


def test_schedule_tables_are_copied_to_a_device_once():
    d = Diffusion()
    assert d._on(d.alpha_bar, torch.device("cpu")) is d.alpha_bar
    meta = torch.device("meta")
    assert d._on(d.alpha_bar, meta) is d._on(d.alpha_bar, meta)
    assert d._on(d._sqrt_ab, meta) is not d._on(d.alpha_bar, meta)


# ------------------------------------------------------------------------------- the regression objective
def test_loss_is_the_l1_of_one_pass_at_a_zero_image_and_t_max():
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.rand(3, 3, 8, 8, generator=g) * 2 - 1, torch.randn(3, 3, 8, 8, generator=g)
    model = _Calls()
    loss = REGRESSION.loss(model, x0, torch.tensor([0, 5, 500]), eps)
    (x, t), = model.calls
    assert torch.equal(x, torch.zeros_like(x0)) and t.tolist() == [999, 999, 999]
    expected = (model(torch.zeros_like(x0), t) - x0).abs().mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    weight = torch.ones(3, 1, 8, 8)
    weight[0] = 4.0  # the first image's pixels count four times
    per_image = (model(torch.zeros_like(x0), t) - x0).abs().mean((1, 2, 3))
    weighted = REGRESSION.loss(model, x0, torch.tensor([0, 5, 500]), eps, weight)
    assert weighted.item() == pytest.approx(((4 * per_image[0] + per_image[1:].sum()) / 3).item(), rel=1e-5)


def test_samplers_make_one_pass_whatever_the_noise_steps_and_eta():
    model = _Calls()
    g = torch.Generator().manual_seed(1)
    outs = [ddim_sample(model, REGRESSION, noise((2, 3, 8, 8), g), steps=10, eta=1.0, generator=g),
            ddim_sample(model, REGRESSION, noise((2, 3, 8, 8), g), steps=3, t_start=500),
            ddpm_sample(model, REGRESSION, noise((2, 3, 8, 8), g), generator=g)]
    assert len(model.calls) == 3 and all(torch.equal(x, torch.zeros(2, 3, 8, 8)) for x, _ in model.calls)
    one_pass = model(torch.zeros(2, 3, 8, 8), torch.full((2,), 999)).clamp(-1, 1)
    assert all(torch.equal(out, one_pass) for out in outs)
    ticks = []
    ddim_sample(model, REGRESSION, noise((2, 3, 8, 8), g), steps=7, progress=ticks.append)
    assert sum(ticks) == 7  # a progress bar sized for the DDIM steps still completes


def test_guidance_still_mixes_the_conditional_and_unconditional_pass():
    torch.manual_seed(0)
    net = torch.nn.Conv2d(7, 3, 1)
    model = lambda inputs, t: net(inputs)  # noqa: E731
    sketch, reference = torch.rand(2, 1, 8, 8) * 2 - 1, torch.rand(2, 3, 8, 8) * 2 - 1
    x_T = noise((2, 3, 8, 8), torch.Generator().manual_seed(0))
    with torch.no_grad():
        cond, uncond, mixed = (ddim_sample(guided(model, sketch, ref, scale), REGRESSION, x_T, steps=5, clip_x0=False)
                               for ref, scale in ((reference, 1.0), (null_condition(reference), 1.0),
                                                  (reference, 2.0)))
    assert not torch.allclose(cond, uncond)
    torch.testing.assert_close(mixed, uncond + 2.0 * (cond - uncond), atol=1e-5, rtol=0)


def test_min_snr_weighting_is_refused():
    with pytest.raises(ValueError, match="regression objective has one"):
        DiffusionConfig(objective="regression", min_snr_gamma=5.0)


@pytest.mark.slow
def test_the_stages_train_save_export_and_colorize_a_regression_model(tiny_data, tmp_path):
    """pretrain -> finetune -> export -> colorize: the objective travels in the checkpoint and the
    model file, and the output no longer depends on the seed or the number of steps."""
    from stages.finetune import finetune
    from stages.pretrain import pretrain

    params_file(tmp_path / "params.yaml", {**TINY_PRETRAIN, **TINY_FINETUNE, "pretrain.diffusion.objective": "regression"})
    faces, pairs = tiny_data
    first = pretrain(tmp_path / "params.yaml", faces, pairs, **stage_paths(tmp_path, "pretrain"))
    assert first["steps"] == 6 and np.isfinite(first["final_loss"])
    tuned = finetune(tmp_path / "params.yaml", tmp_path / "pretrain.pt", faces, pairs, **stage_paths(tmp_path, "ft"))
    assert tuned["steps"] > 0 and tuned["passthrough"] is False
    a, b = load_checkpoint(tmp_path / "pretrain.pt"), load_checkpoint(tmp_path / "ft.pt")
    assert any(not torch.equal(a["ema"][k], b["ema"][k]) for k in a["ema"])  # the one-step unroll trains
    _, diffusion = model_from_checkpoint(b)
    assert diffusion.regression
    result = CliRunner().invoke(app, ["export", str(tmp_path / "ft.pt"), "-o", str(tmp_path / "reg.safetensors")])
    assert result.exit_code == 0, result.output
    model, exported, _ = load_model(tmp_path / "reg.safetensors")
    assert exported.regression
    rgb = (np.random.default_rng(0).random((40, 36, 3)) * 255).astype(np.uint8)
    sketch = np.full((40, 36), 255, np.uint8)
    sketch[10:30, 18] = 0
    rgba = lambda a: np.array(Image.fromarray(a).convert("RGBA"))  # noqa: E731  (as the CLI reads files)
    one, _ = colorize_image(model, exported, rgba(sketch), rgba(rgb), ColorizeOptions(sample_steps=2, seed=1))
    two, _ = colorize_image(model, exported, rgba(sketch), rgba(rgb), ColorizeOptions(sample_steps=9, seed=7))
    assert np.array_equal(one, two) and one.shape == (40, 36, 3)
    Image.fromarray(sketch).save(tmp_path / "s.png")
    Image.fromarray(rgb).save(tmp_path / "r.png")
    result = CliRunner().invoke(app, ["colorize", str(tmp_path / "s.png"), "--reference", str(tmp_path / "r.png"),
                                      "--model", str(tmp_path / "reg.safetensors"), "-o", str(tmp_path / "out.png")])
    assert result.exit_code == 0, result.output
    assert np.asarray(Image.open(tmp_path / "out.png").convert("RGB")).shape == (40, 36, 3)


@pytest.mark.slow
def test_evaluate_scores_a_regression_model_beside_a_diffusion_one(tiny_data, tmp_path):
    """One benchmark run, both objectives (the same weights): each is scored, and the regression
    candidate's scores do not move with the number of DDIM steps."""
    from pipeline.evaluation.evaluate import EvalConfig, run_benchmark
    from pipeline.model.unet import UNet, UNetConfig

    faces, pairs = tiny_data
    torch.manual_seed(0)
    net = UNet(UNetConfig(image_size=32, channels=8, channel_mults=(1, 2), res_blocks=1, heads=2))
    for p in net.out.parameters():  # the zero-initialised output layer would make every candidate grey
        torch.nn.init.normal_(p, std=0.05)
    runs = {steps: run_benchmark({"diffusion": (net, Diffusion()), "regression": (net, REGRESSION)}, faces, pairs,
                                 tmp_path / f"out{steps}", EvalConfig(sample_steps=steps, limit=4),
                                 torch.device("cpu"), tmp_path / "absent.pt")[0]
            for steps in (2, 5)}
    for setting in ("self_ref", "random_ref"):
        two, five = runs[2]["regression"][setting], runs[5]["regression"][setting]
        assert two["psnr"] == five["psnr"] and two["lpips"] == five["lpips"]
        assert runs[2]["diffusion"][setting]["psnr"] != runs[5]["diffusion"][setting]["psnr"]
        assert runs[2]["diffusion"][setting]["psnr"] != two["psnr"]
