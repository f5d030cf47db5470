"""pipeline/device.py: the training precision (auto follows the CPU's bf16 support; what the network
really ran in) and torch.compile (auto is CUDA-only; compiled training gives the eager losses)."""

import shutil

import pytest
import torch

import pipeline.device as device_mod
from pipeline.config import validate
from pipeline.device import autocast, compiles, resolve_precision
from pipeline.errors import ParamsError
from pipeline.model.unet import UNet, UNetConfig
from pipeline.training.loop import LoopConfig
from tests.helpers import triples_trainer

CPU = torch.device("cpu")


# ---------------------------------------------------------------------------------------- precision
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
    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        trainer = triples_trainer(precision=precision)
        ran = set()  # the dtype the network's first convolution computed in, at every training forward
        first_conv = next(m for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d))
        hook = first_conv.register_forward_hook(lambda module, args, out: ran.add(out.dtype))
        result = trainer.run()
        hook.remove()
        assert ran == {dtype}, f"{precision}: the network ran in {ran}"
        assert result["precision"] == precision and len(result["losses"]) == 3


# ------------------------------------------------------------------------------------------ compile
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
    trainer = triples_trainer()  # the default, auto: eager on CPU, so CPU runs are what they were
    assert trainer.cfg.compile == "auto" and not trainer.compiled and trainer.net is trainer.model


@pytest.mark.slow
@pytest.mark.skipif(not any(shutil.which(cc) for cc in ("g++", "c++", "clang++")),
                    reason="torch.compile on CPU needs a C++ compiler (none on PATH)")
def test_compiled_training_gives_the_eager_losses():
    """The compiled network trains like the eager one (inductor's CPU code, 3 steps of a 16 px net)."""
    import torch._dynamo
    import torch._inductor.config

    eager = triples_trainer(compile=False).run()
    # scalar C++ kernels: a build about twice as fast on a small machine; the maths is the same
    with torch._inductor.config.patch({"cpp.vec_isa_ok": False}):
        trainer = triples_trainer(compile=True)
        result = trainer.run()
    torch._dynamo.reset()
    assert trainer.compiled and result["compiled"] and not eager["compiled"]
    assert result["losses"] == pytest.approx(eager["losses"], rel=1e-4, abs=1e-6)
    assert result["warmup_seconds"] > 0
