"""The speed paths of issue 17: compile, the bf16 GroupNorm, cached schedule tables, the run-long sampler.

Each must leave CPU numerics as they were; the CUDA-only checks run where a GPU is present."""

import shutil

import pytest
import torch
from torch import nn

from pipeline.config import validate
from pipeline.device import compiles
from pipeline.errors import ParamsError
from pipeline.model.conditioning import ConditionDropout
from pipeline.model.diffusion import Diffusion
from pipeline.model.attention import GroupNorm, group_norm
from pipeline.model.unet import UNet, UNetConfig
from pipeline.training.distributed import Dist
from pipeline.training.loop import EpochBatches, LoopConfig, RunBatches, Trainer, denoising_objective

TINY = UNetConfig(image_size=16, channels=8, channel_mults=(1,), res_blocks=1, heads=2)  # builds in seconds
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


class Triples(torch.utils.data.Dataset):
    """Eight fixed random (target, sketch, reference) triples at 16 px."""

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.data = {k: torch.rand(8, c, 16, 16, generator=g).mul(2).sub(1)
                     for k, c in (("target", 3), ("sketch", 1), ("reference", 3))}

    def __len__(self):
        return 8

    def __getitem__(self, key):
        return {k: v[key[0]] for k, v in self.data.items()}


def _trainer(**loop) -> Trainer:
    torch.manual_seed(0)
    diffusion = Diffusion()
    cfg = LoopConfig(train_steps=3, batch_size=4, warmup_steps=0, num_workers=0, checkpoint_every=100, **loop)
    return Trainer(UNet(TINY), diffusion, Triples(), denoising_objective(diffusion, ConditionDropout(p_uncond=0.5)),
                   cfg, torch.device("cpu"))


# ------------------------------------------------------------------------------ compile
@pytest.mark.parametrize("value", ["auto", True, False])
def test_compile_accepts_auto_true_false(value):
    assert validate(LoopConfig, {"compile": value}, "pretrain.loop").compile == value


@pytest.mark.parametrize("value", ["yes", 1, None, "max-autotune"])
def test_compile_rejects_anything_else_in_one_line(value):
    with pytest.raises(ParamsError) as err:
        validate(LoopConfig, {"compile": value}, "pretrain.loop")
    assert str(err.value) == f"pretrain.loop.compile: should be auto, true or false (got {value!r})"
    with pytest.raises(ParamsError, match=r"^pretrain.loop.compile_mode: Input should be 'default' or "):
        validate(LoopConfig, {"compile_mode": "fast"}, "pretrain.loop")


def test_compile_auto_is_cuda_only():
    assert compiles("auto", torch.device("cuda", 0)) and not compiles("auto", torch.device("cpu"))
    assert compiles(True, torch.device("cpu")) and not compiles(False, torch.device("cuda", 0))
    trainer = _trainer()  # the default, auto: eager on CPU, so CPU runs are what they were
    assert trainer.cfg.compile == "auto" and not trainer.compiled and trainer.net is trainer.model


@pytest.mark.skipif(not any(shutil.which(cc) for cc in ("g++", "c++", "clang++")),
                    reason="torch.compile on CPU needs a C++ compiler (none on PATH)")
def test_compiled_training_gives_the_eager_losses():
    """The compiled network trains like the eager one (inductor's CPU code, 3 steps of a 16 px net)."""
    import torch._dynamo
    import torch._inductor.config

    eager = _trainer(compile=False).run()
    # scalar C++ kernels: a build about twice as fast on a small machine; the maths is the same
    with torch._inductor.config.patch({"cpp.vec_isa_ok": False}):
        trainer = _trainer(compile=True)
        result = trainer.run()
    torch._dynamo.reset()
    assert trainer.compiled and result["compiled"] and not eager["compiled"]
    assert result["losses"] == pytest.approx(eager["losses"], rel=1e-4, abs=1e-6)
    assert result["warmup_seconds"] > 0


# ------------------------------------------------------------------------------ GroupNorm
def test_group_norm_is_nn_group_norm_on_cpu():
    torch.manual_seed(0)
    ours = group_norm(12, 8)  # gcd: 4 groups
    with torch.no_grad():
        ours.weight.normal_(), ours.bias.normal_()
    plain = nn.GroupNorm(4, 12)
    plain.load_state_dict(ours.state_dict())  # same keys both ways: old checkpoints load
    assert isinstance(ours, nn.GroupNorm) and list(ours.state_dict()) == list(plain.state_dict())
    x = torch.randn(2, 12, 5, 7)
    assert torch.equal(ours(x), plain(x))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the bf16 path is CUDA-only
        assert torch.equal(ours(x), plain(x))


def test_bf16_group_norm_flag_leaves_cpu_results_alone(monkeypatch):
    torch.manual_seed(0)
    model = UNet(TINY).eval()
    x, t = torch.randn(2, 7, 16, 16), torch.tensor([3, 900])
    outs = {}
    for flag in (False, True):
        monkeypatch.setattr(GroupNorm, "bf16_under_autocast", flag)
        with torch.no_grad():
            fp32 = model(x, t)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                outs[flag] = fp32, model(x, t)
    assert torch.equal(outs[False][0], outs[True][0]) and torch.equal(outs[False][1], outs[True][1])


@CUDA
def test_group_norm_in_bf16_under_cuda_autocast(monkeypatch):
    torch.manual_seed(0)
    ours = group_norm(64, 32).cuda()
    plain = nn.GroupNorm(32, 64).cuda()
    plain.load_state_dict(ours.state_dict())
    x = torch.randn(4, 64, 16, 16, device="cuda", requires_grad=True)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        fast, slow = ours(x), plain(x)
        monkeypatch.setattr(GroupNorm, "bf16_under_autocast", False)
        upcast = ours(x)
    assert fast.dtype == torch.bfloat16 and slow.dtype == upcast.dtype == torch.float32
    torch.testing.assert_close(fast.float(), slow, rtol=2e-2, atol=2e-2)
    fast.float().sum().backward()
    assert ours.weight.grad is not None and ours.weight.grad.dtype == torch.float32


# ------------------------------------------------------------------------------ the rest of the step
def test_schedule_tables_are_copied_to_a_device_once():
    d = Diffusion()
    assert d._on(d.alpha_bar, torch.device("cpu")) is d.alpha_bar
    meta = torch.device("meta")
    assert d._on(d.alpha_bar, meta) is d._on(d.alpha_bar, meta)
    assert d._on(d._sqrt_ab, meta) is not d._on(d.alpha_bar, meta)


def test_run_batches_chain_the_epochs():
    run = iter(RunBatches(20, 3, seed=1, epoch=2, dist=Dist(), skip=4))
    expected = list(EpochBatches(20, 3, 1, 2, Dist(), skip=4)) + list(EpochBatches(20, 3, 1, 3, Dist()))
    assert [next(run) for _ in expected] == expected
    with pytest.raises(ValueError, match="no batch"):
        RunBatches(5, 3, 1, 0, Dist(0, 2))
