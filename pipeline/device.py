"""Device, precision and numerics, resolved once (nanoGPT style); used by training, evaluation and colorize."""

from __future__ import annotations

import json
import os
import statistics
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, Literal

import torch
from torch import nn

from pipeline.errors import AnimecolorError

Precision = Literal["auto", "fp32", "bf16"]
Compile = Literal["auto", True, False]
# "reduce-overhead" and "max-autotune" add CUDA graphs: for sampling at small batches, not for training
CompileMode = Literal["default", "max-autotune-no-cudagraphs", "reduce-overhead", "max-autotune"]


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """"auto" -> cuda when present else cpu; "cuda" without a GPU is a clear error."""
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise AnimecolorError("device cuda requested but no CUDA GPU is available (use --device cpu)")
        return torch.device("cuda", local_rank)
    if name not in ("auto", "cpu"):
        raise AnimecolorError(f"unknown device {name!r} (auto | cpu | cuda)")
    return torch.device("cpu")


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX tiles). There oneDNN's bf16
    convolutions and matmuls make a training step of the CPU profile about 1.3x faster than fp32
    (0.40 -> 0.31 s on this 2-core AMD EPYC, issue 14); without them bf16 is emulated, and slower."""
    checks = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
    return any(check is not None and check() for check in checks)


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, else the platform's), e.g. "AMD EPYC 7B13"."""
    import platform

    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_description(device: torch.device | None = None) -> str:
    """One line naming what a timing ran on: the GPU, or the CPU model, its vector capability as
    PyTorch sees it, native bf16 and the compute threads. Every reported speed carries it."""
    if device is not None and device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    capability = torch.backends.cpu.get_cpu_capability()
    bf16 = "native bf16" if cpu_has_bf16() else "no native bf16"
    return f"{cpu_model()}, {capability}, {bf16}, {torch.get_num_threads()} threads"


def resolve_precision(device: torch.device, precision: Precision) -> Literal["fp32", "bf16"]:
    """"auto" -> bf16 on CUDA and on CPUs with native bf16 (`cpu_has_bf16`), fp32 elsewhere."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" or cpu_has_bf16() else "fp32"
    return precision


# The timed probe behind training's `precision: auto` on CPUs with native bf16 (`probe_precision`).
# bf16 stays unless fp32 is clearly faster: a close call keeps the earlier choice, so a noisy
# probe cannot flip a machine's numbers from run to run.
FP32_MARGIN = 0.85  # fp32 wins when its step takes less than this fraction of bf16's
PROBE_REPEATS = 2   # timed steps per precision, after one warm-up step each


def probe_key(shape: str) -> str:
    """The cache key: CPU model, PyTorch's capability, torch version, threads and the probed workload."""
    return (f"{cpu_model()} | {torch.backends.cpu.get_cpu_capability()} | torch {torch.__version__} | "
            f"{torch.get_num_threads()} threads | {shape}")


def probe_precision(step: Callable[[str], None], shape: str, cache: Path | None,
                    clock: Callable[[], float] = time.perf_counter) -> tuple[Literal["fp32", "bf16"], str]:
    """Training's `precision: auto` on a CPU with native bf16: time `step(precision)` (one training
    step of the real network at the run's batch shape, on a copy) in fp32 and bf16, keep the faster
    (bf16 unless fp32 takes < FP32_MARGIN of its time), and cache the answer under `probe_key(shape)`
    so that every later run on this machine makes the same choice without timing (`cache` None: no
    cache, timed every time). Returns (choice, reason), the reason naming the two timings and whether
    they came from the cache."""
    key = probe_key(shape)
    try:
        known = json.loads(cache.read_text()) if cache is not None and cache.is_file() else {}
    except (OSError, ValueError):
        known = {}  # an unreadable cache is re-measured and rewritten
    entry = known.get(key) if isinstance(known, dict) else None
    if isinstance(entry, dict) and entry.get("choice") in ("fp32", "bf16"):
        return entry["choice"], (f"probe (cached in {cache}): fp32 {entry['fp32_s']:.3f} s, bf16 "
                                 f"{entry['bf16_s']:.3f} s a step")
    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for precision in times:
        step(precision)  # warm-up: allocator, oneDNN primitive caches
    for _ in range(PROBE_REPEATS):
        for precision in times:  # interleaved: a load change hits both alike
            start = clock()
            step(precision)
            times[precision].append(clock() - start)
    fp32_s, bf16_s = statistics.median(times["fp32"]), statistics.median(times["bf16"])
    choice: Literal["fp32", "bf16"] = "fp32" if fp32_s < FP32_MARGIN * bf16_s else "bf16"
    if not isinstance(known, dict):
        known = {}
    known[key] = {"choice": choice, "fp32_s": round(fp32_s, 4), "bf16_s": round(bf16_s, 4),
                  "when": time.strftime("%Y-%m-%d %H:%M:%S")}
    if cache is not None:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(known, indent=1))
            tmp.replace(cache)
        except OSError:
            pass  # a read-only home: the choice still holds for this run
    return choice, f"probe: fp32 {fp32_s:.3f} s, bf16 {bf16_s:.3f} s a step"


def autocast(device: torch.device, precision: Precision):
    """bf16 autocast (weights, optimizer and EMA stay fp32) when `resolve_precision` says bf16;
    plain fp32 otherwise."""
    if resolve_precision(device, precision) == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def compiles(setting: Compile, device: torch.device) -> bool:
    """Whether `setting` compiles on `device`: "auto" on CUDA only (on CPU inductor takes longer to
    build than the short CPU runs gain)."""
    return device.type == "cuda" if setting == "auto" else bool(setting)


def compiled(module: nn.Module, setting: Compile, device: torch.device, mode: CompileMode = "default") -> nn.Module:
    """torch.compile(module) when `compiles(setting, device)`, else module itself. The compiled
    module shares its parameters with `module`; it is built lazily, on its first call (the warm-up
    that benchmarks and the training summary time separately), and again for each new input
    shape (static shapes: training's never change; a sampler's last, smaller chunk costs one more
    build, so compile sampling only for long runs)."""
    return torch.compile(module, mode=mode, dynamic=False) if compiles(setting, device) else module


def configure_numerics() -> None:
    """TF32 matmuls on GPUs that have them (no effect on CPU), and cuDNN autotuning of each
    convolution: training shapes are fixed (the last partial batch is dropped), so every conv is
    timed once and the fastest algorithm kept. Called by the library entry points (training), so
    calling them from Python gives the same numerics as the CLI."""
    torch.set_float32_matmul_precision("high")
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True
