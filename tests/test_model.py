"""U-Net shapes, schedules, conditioning, samplers: small exact tests with analytic dummy models."""


import numpy as np
import pytest
import torch

from pipeline.model.conditioning import ConditionDropout, drop_conditions, guided, null_condition
from pipeline.model.diffusion import Diffusion, DiffusionConfig, make_betas
from pipeline.model.sampler import ddim_sample, ddim_timesteps, ddpm_sample, noise
from pipeline.model.unet import UNet, UNetConfig, count_parameters


@pytest.mark.parametrize("cfg", [
    UNetConfig(image_size=16, channels=8, channel_mults=(1, 2), res_blocks=1, heads=2),
    UNetConfig(image_size=32, channels=8, channel_mults=(1, 2, 2), res_blocks=2, attention_resolutions=(16,)),
    UNetConfig(image_size=24, channels=16, channel_mults=(1, 2, 4, 4), res_blocks=1, dropout=0.1, norm_groups=32),
])
def test_unet_shapes(cfg):
    torch.manual_seed(0)
    model = UNet(cfg)
    size = cfg.image_size if cfg.image_size % 8 == 0 else 32
    x = torch.randn(2, 7, size, size)
    out = model(x, torch.tensor([0, 999]))
    assert out.shape == (2, 3, size, size)
    (out - 1).pow(2).sum().backward()  # zero-initialised output layer still receives gradient
    assert model.out[-1].weight.grad.abs().sum() > 0


def test_unet_rejects_indivisible_size():
    with pytest.raises(ValueError, match="divisible"):
        UNet(UNetConfig(image_size=30, channel_mults=(1, 2, 2)))


def test_paper_preset_size():
    n = count_parameters(UNet(UNetConfig.paper()))
    assert 50e6 < n < 58e6  # the official network has about 52 M parameters


def test_config_round_trip():
    cfg = UNetConfig(image_size=32, channel_mults=(1, 2), attention_resolutions=(16,))
    assert UNetConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("schedule,kwargs", [("linear", dict(beta_start=1e-6, beta_end=1e-2)),
                                             ("linear", {}), ("cosine", {})])
def test_schedules(schedule, kwargs):
    betas = make_betas(schedule, 1000, **kwargs)
    assert betas.dtype == np.float64 and betas.shape == (1000,)
    d = Diffusion(DiffusionConfig(schedule=schedule, **kwargs))
    ab = d.alpha_bar.numpy()
    assert d.alpha_bar.dtype == torch.float32
    assert np.all(np.diff(ab) < 0) and 0 < ab[-1] < ab[0] < 1


def test_schedule_endpoints():
    paper = Diffusion(DiffusionConfig(schedule="linear", beta_start=1e-6, beta_end=1e-2)).alpha_bar
    assert paper[0] == pytest.approx(1 - 1e-6) and paper[-1] == pytest.approx(0.0066, abs=5e-4)  # REFERENCE.md
    cosine = Diffusion(DiffusionConfig(schedule="cosine")).alpha_bar
    assert cosine[-1] < 1e-4 and cosine[0] > 0.9999


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_prediction_round_trip(prediction):
    d = Diffusion(DiffusionConfig(prediction=prediction))
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.rand(4, 3, 8, 8, generator=g) * 2 - 1, torch.randn(4, 3, 8, 8, generator=g)
    t = torch.tensor([0, 10, 500, 999])
    x_t = d.q_sample(x0, t, eps)
    x0_hat, eps_hat = d.to_x0_eps(d.target(x0, t, eps), x_t, t)
    torch.testing.assert_close(eps_hat, eps, atol=1e-3, rtol=1e-3)
    # x0 from eps divides by sqrt(alpha_bar), ~0 at t = 999: check x0 where it is well conditioned
    torch.testing.assert_close(x0_hat[:3], x0[:3], atol=1e-3, rtol=1e-3)


def test_ddim_timesteps_exact():
    assert ddim_timesteps(1000, 10) == [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]
    assert ddim_timesteps(1000, 4) == [999, 749, 499, 249]
    assert ddim_timesteps(1000, 1) == [999]
    assert ddim_timesteps(1000, 5, t_start=899) == [899, 719, 539, 359, 179]
    with pytest.raises(ValueError):
        ddim_timesteps(10, 11)


def _oracle(d: Diffusion, x0: torch.Tensor):
    """A perfect model for a single known image: predicts the target from x_t exactly."""
    def fn(x_t, t):
        a = d.alpha_bar_at(t, x_t)
        eps = (x_t - a.sqrt() * x0) / (1 - a).sqrt()
        return d.target(x0.expand_as(x_t), t, eps)
    return fn


@pytest.mark.parametrize("T", [1000, 50])
def test_ddim_timesteps_every_count(T):
    """Every step count: exactly n entries, strictly decreasing, first T - 1, last >= 0 (61 used to
    give 62 entries ending in -1)."""
    for n in range(1, T + 1):
        ts = ddim_timesteps(T, n)
        assert len(ts) == n and ts[0] == T - 1 and ts[-1] >= 0, n
        assert all(a > b for a, b in zip(ts, ts[1:])), n


def _noisy_model(x, t):
    return 0.3 * x + 0.01 * t.float().view(-1, 1, 1, 1) / 1000


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_colorize_batch_independent_of_batch_size(eta):
    """Image i's draws depend only on (seed, i): batch 1 and batch 7 agree, with eta > 0 too."""
    from pipeline.model.generate import colorize_batch

    model = lambda x, t: _noisy_model(x[:, :3], t)  # noqa: E731
    d = Diffusion()
    g = torch.Generator().manual_seed(0)
    sketch, ref = torch.rand(7, 1, 8, 8, generator=g) * 2 - 1, torch.rand(7, 3, 8, 8, generator=g) * 2 - 1
    one = colorize_batch(model, d, sketch, ref, sample_steps=4, eta=eta, seed=3, batch_size=1)
    seven = colorize_batch(model, d, sketch, ref, sample_steps=4, eta=eta, seed=3, batch_size=7)
    torch.testing.assert_close(one, seven, atol=1e-6, rtol=0)


def test_step_noise_does_not_repeat_another_images_start():
    """x_T and the eta > 0 step noise are independent streams: no image's first step noise is a
    copy of any image's starting noise (it used to be: seed + start == seed * 1_000_003 + i at seed 0)."""
    from pipeline.model.generate import image_generators

    starts = [noise((1, 3, 4, 4), image_generators(0, i)[0]) for i in range(8)]
    steps = [noise((1, 3, 4, 4), image_generators(0, i)[1]) for i in range(8)]
    assert not any(torch.equal(a, b) for a in starts for b in steps)


def test_colorize_batch_seeds_are_single_runs():
    from pipeline.model.generate import colorize_batch

    model = lambda x, t: _noisy_model(x[:, :3], t)  # noqa: E731
    d = Diffusion()
    sketch, ref = torch.zeros(3, 1, 8, 8), torch.zeros(3, 3, 8, 8)
    batch = colorize_batch(model, d, sketch, ref, sample_steps=3, eta=1.0, seeds=[5, 6, 7])
    for k, s in enumerate([5, 6, 7]):
        single = colorize_batch(model, d, sketch[:1], ref[:1], sample_steps=3, eta=1.0, seed=s)
        torch.testing.assert_close(batch[k:k + 1], single, atol=1e-6, rtol=0)


@pytest.mark.parametrize("prediction", ["eps", "v"])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_with_oracle_recovers_image(prediction, eta):
    d = Diffusion(DiffusionConfig(prediction=prediction))
    x0 = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 1.6 - 0.8
    g = torch.Generator().manual_seed(0)
    out = ddim_sample(_oracle(d, x0), d, noise((2, 3, 8, 8), g), steps=10, eta=eta, generator=g)
    torch.testing.assert_close(out, x0.expand(2, -1, -1, -1), atol=1e-3, rtol=0)


def test_ddpm_with_oracle_recovers_image():
    d = Diffusion(DiffusionConfig(timesteps=50))
    x0 = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(2)) * 1.6 - 0.8
    g = torch.Generator().manual_seed(0)
    out = ddpm_sample(_oracle(d, x0), d, noise((1, 3, 4, 4), g), generator=g)
    torch.testing.assert_close(out, x0, atol=1e-3, rtol=0)


def test_ddim_is_seeded_and_eta_zero_deterministic():
    d = Diffusion()
    model = lambda x, t: 0.1 * x  # noqa: E731
    x_T = noise((1, 3, 4, 4), torch.Generator().manual_seed(0))
    a = ddim_sample(model, d, x_T, 5, eta=1.0, generator=torch.Generator().manual_seed(3))
    b = ddim_sample(model, d, x_T, 5, eta=1.0, generator=torch.Generator().manual_seed(3))
    c = ddim_sample(model, d, x_T, 5, eta=1.0, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


class _Recorder(torch.nn.Module):
    """A model whose output depends on the reference channels; counts forward batch sizes."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, x, t):
        self.calls.append(x.shape[0])
        return x[:, :3] * 0.5 + x[:, 4:7] + x[:, 3:4]


def test_guidance_scale_one_is_conditional_and_batched_otherwise():
    g = torch.Generator().manual_seed(0)
    x, sketch, ref = torch.randn(2, 3, 4, 4, generator=g), torch.randn(2, 1, 4, 4, generator=g), torch.randn(2, 3, 4, 4, generator=g)
    t = torch.tensor([5, 5])
    model = _Recorder()
    cond = model(torch.cat([x, sketch, ref], 1), t)
    uncond = model(torch.cat([x, sketch, torch.zeros_like(ref)], 1), t)
    model.calls.clear()
    torch.testing.assert_close(guided(model, sketch, ref, 1.0)(x, t), cond)
    assert model.calls == [2]  # w = 1: one plain forward
    model.calls.clear()
    torch.testing.assert_close(guided(model, sketch, ref, 3.0)(x, t), uncond + 3 * (cond - uncond))
    assert model.calls == [4]  # cond and uncond in one batched forward
    torch.testing.assert_close(guided(model, sketch, ref, 0.0)(x, t), uncond)


def test_condition_dropout_rates():
    sketch, ref = torch.ones(20000, 1, 2, 2), torch.ones(20000, 3, 2, 2)
    s, r = drop_conditions(sketch, ref, ConditionDropout(p_uncond=0.2, p_sketch=0.05), torch.Generator().manual_seed(0))
    ref_dropped = (r == 0).all(dim=(1, 2, 3)).float().mean().item()
    sketch_dropped = (s == 0).all(dim=(1, 2, 3)).float().mean().item()
    assert ref_dropped == pytest.approx(0.2, abs=0.01) and sketch_dropped == pytest.approx(0.05, abs=0.005)
    assert torch.equal(null_condition(ref), torch.zeros_like(ref))
    s0, r0 = drop_conditions(sketch, ref, ConditionDropout(p_uncond=0.0), torch.Generator().manual_seed(0))
    assert torch.equal(r0, ref) and torch.equal(s0, sketch)


def test_ddim_gradient_checkpoint_matches():
    torch.manual_seed(0)
    model = UNet(UNetConfig(image_size=8, channels=8, channel_mults=(1, 2), res_blocks=1, heads=2))
    for p in model.out.parameters():  # make the output layer non-zero so gradients are informative
        torch.nn.init.normal_(p, std=0.1)
    d = Diffusion()
    sketch, ref = torch.randn(2, 1, 8, 8), torch.randn(2, 3, 8, 8)
    x_T = noise((2, 3, 8, 8), torch.Generator().manual_seed(0))
    grads = []
    for ckpt in (False, True):
        model.zero_grad()
        out = ddim_sample(guided(model, sketch, ref, 2.0), d, x_T, 3, checkpoint=ckpt)
        out.pow(2).mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=1e-4)
    assert grads[0].abs().sum() > 0


# ---------------------------------------------------------------- reference attention, Min-SNR
RA = UNetConfig(image_size=32, channels=8, channel_mults=(1, 2), res_blocks=1, heads=2, reference_attention=(16,),
                reference_tokens=8)


def test_reference_attention_off_is_the_paper_network():
    """The switch adds nothing when off: same parameters, same initial weights as before it existed."""
    torch.manual_seed(0)
    plain = UNet(UNetConfig(image_size=32, channels=8, channel_mults=(1, 2), res_blocks=1, heads=2))
    assert plain.reference_encoder is None and count_parameters(plain) == 41_603
    # the sum of the initial weights recorded before the switch existed (commit 8fd39ca)
    assert abs(float(sum(p.detach().sum() for p in plain.parameters())) - 267.0402526855469) < 1e-3
    assert UNetConfig.paper(256).reference_attention == ()


def test_reference_attention_starts_as_identity_and_reads_every_token():
    from pipeline.model.reference import CrossAttention

    torch.manual_seed(0)
    model = UNet(RA).eval()
    attention = {id(m.proj.weight) for m in model.modules() if isinstance(m, CrossAttention)}
    with torch.no_grad():  # a "trained" network: the zero-initialised layers get weights, except attention's
        for p in model.parameters():
            if id(p) not in attention and not p.any():
                torch.nn.init.normal_(p, std=0.2)
    x, t = torch.randn(2, 7, 32, 32), torch.tensor([10, 500])
    tokens = model.reference_encoder(x[:, 4:7])

    def output_with(context):  # the same input, the attention given other reference tokens
        original = model.reference_encoder.forward
        model.reference_encoder.forward = lambda reference: context
        try:
            return model(x, t)
        finally:
            model.reference_encoder.forward = original

    far = tokens.clone()
    far[:, :4] = torch.randn_like(far[:, :4])  # only the tokens of the top-left corner change
    with torch.no_grad():
        # at initialisation the output projection is zero: the block is the identity
        assert torch.equal(output_with(far), output_with(tokens))
        for module in model.modules():
            if isinstance(module, CrossAttention):
                torch.nn.init.normal_(module.proj.weight, std=0.5)
        # with weights, the bottom-right pixels read the top-left tokens: a path concatenation lacks
        corner = (slice(None), slice(None), slice(24, 32), slice(24, 32))
        assert not torch.allclose(output_with(far)[corner], output_with(tokens)[corner], atol=1e-5)


def test_reference_attention_trains_its_encoder():
    torch.manual_seed(0)
    model = UNet(RA)
    with torch.no_grad():  # let gradients reach the encoder: no zero-initialised layer on the path
        for p in model.parameters():
            if not p.any():
                torch.nn.init.normal_(p, std=0.1)
    model(torch.randn(2, 7, 32, 32), torch.tensor([1, 2])).pow(2).mean().backward()
    assert model.reference_encoder.stem.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("bad, message", [
    ({"reference_attention": (12,)}, "feature-map sides are"),
    ({"reference_attention": (16,), "reference_tokens": 5}, "reference_tokens 5 must be one of"),
])
def test_reference_attention_config_is_checked(bad, message):
    with pytest.raises(ValueError, match=message):
        UNetConfig(**{**RA.model_dump(), **bad})


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_min_snr_weighting(prediction):
    """gamma beyond every SNR is the uniform loss for eps; weights fall where SNR is large."""
    x0 = torch.rand(4, 3, 4, 4) * 2 - 1
    eps = torch.randn(4, 3, 4, 4)
    t = torch.tensor([0, 10, 500, 990])
    model = lambda x, tt: torch.zeros_like(x)  # noqa: E731
    plain = Diffusion(DiffusionConfig(prediction=prediction))
    big = Diffusion(DiffusionConfig(prediction=prediction, min_snr_gamma=1e9))
    small = Diffusion(DiffusionConfig(prediction=prediction, min_snr_gamma=1.0))
    if prediction == "eps":
        torch.testing.assert_close(big.loss(model, x0, t, eps), plain.loss(model, x0, t, eps))
    low_t = torch.tensor([0, 0, 0, 0])  # SNR huge: min(SNR, 1) / SNR is tiny
    assert small.loss(model, x0, low_t, eps) < 0.01 * plain.loss(model, x0, low_t, eps)
