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


# ------------------------------------------------------------------------------------ precision probe
class FakeClock:
    """A clock the probed step advances by its precision's cost (seconds)."""

    def __init__(self, cost: dict):
        self.now, self.cost, self.calls = 0.0, cost, []

    def __call__(self) -> float:
        return self.now

    def step(self, precision: str) -> None:
        self.calls.append(precision)
        self.now += self.cost[precision]


@pytest.mark.parametrize("cost, choice", [({"fp32": 1.97, "bf16": 3.51}, "fp32"),  # the Intel Xeon of issue 38
                                          ({"fp32": 0.40, "bf16": 0.31}, "bf16"),  # the AMD EPYC
                                          ({"fp32": 0.95, "bf16": 1.0}, "bf16")])  # a close call keeps bf16
def test_probe_takes_the_faster_precision_and_caches_it(tmp_path, cost, choice):
    clock = FakeClock(cost)
    cache = tmp_path / "probe.json"
    got, reason = device_mod.probe_precision(clock.step, "net A", cache, clock)
    assert got == choice and f"fp32 {cost['fp32']:.3f} s, bf16 {cost['bf16']:.3f} s" in reason
    assert clock.calls.count("fp32") == clock.calls.count("bf16") == 1 + device_mod.PROBE_REPEATS
    again = FakeClock({"fp32": 9.0, "bf16": 0.1})  # a later run on this machine: no timing, the same answer
    assert device_mod.probe_precision(again.step, "net A", cache, again)[0] == choice and not again.calls
    other = FakeClock({"fp32": 1.0, "bf16": 5.0})  # another workload is timed on its own
    assert device_mod.probe_precision(other.step, "net B", cache, other)[0] == "fp32" and other.calls


def test_probe_survives_a_corrupt_or_unwritable_cache(tmp_path):
    cache = tmp_path / "probe.json"
    cache.write_text("{not json")
    clock = FakeClock({"fp32": 1.0, "bf16": 2.0})
    assert device_mod.probe_precision(clock.step, "net", cache, clock)[0] == "fp32"
    assert "fp32" in cache.read_text()
    blocked = tmp_path / "file" / "probe.json"
    (tmp_path / "file").write_text("a file where the folder should be")
    assert device_mod.probe_precision(clock.step, "net", blocked, clock)[0] == "fp32"


def test_auto_training_precision_is_probed_on_native_bf16_cpus_and_recorded(monkeypatch, tmp_path):
    import pipeline.training.loop as loop_mod

    monkeypatch.setattr(loop_mod, "cpu_has_bf16", lambda: True)
    probed = []

    def fake_probe(step, shape, cache):
        step("fp32"), step("bf16")  # the real step runs on a copy: the run's weights stay as they were
        probed.append(shape)
        return "fp32", "probe: fp32 1.000 s, bf16 2.000 s a step"

    monkeypatch.setattr(loop_mod, "probe_precision", fake_probe)
    trainer = triples_trainer(precision="auto")
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    ran = set()
    first_conv = next(m for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d))
    def record(module, args, out):  # the run's own network only (the probe's copy carries the hook too)
        if module is first_conv:
            ran.add(out.dtype)

    first_conv.register_forward_hook(record)
    reference = triples_trainer(precision="fp32").run()
    result = trainer.run()
    assert probed and "batch (4, 3, 16, 16)" in probed[0]
    assert result["precision"] == "fp32" and result["precision_reason"].startswith("probe")
    assert result["losses"] == reference["losses"]  # the probe changed nothing of the run itself
    assert ran == {torch.float32}
    assert trainer.state()["precision"] == "fp32"
    assert any(not torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())


def test_auto_precision_is_not_probed_without_native_bf16_or_when_set(monkeypatch):
    import pipeline.training.loop as loop_mod

    monkeypatch.setattr(loop_mod, "probe_precision", lambda *a: pytest.fail("no probe expected"))
    monkeypatch.setattr(loop_mod, "cpu_has_bf16", lambda: False)
    assert triples_trainer(precision="auto").run()["precision"] == "fp32"
    monkeypatch.setattr(loop_mod, "cpu_has_bf16", lambda: True)
    result = triples_trainer(precision="bf16").run()
    assert result["precision"] == "bf16" and result["precision_reason"] == "precision: bf16 (set)"


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
