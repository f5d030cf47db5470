"""Benchmark: training and sampling throughput and peak memory, on whatever device is present.

    python tests/benchmarks/bench_train.py [--device cpu|cuda] [--quick]

Prints one table per section, each with its baseline in the same run:
  * pretraining step: default (small) and paper networks; on CUDA fp32 vs bf16 autocast (with
    autocast's fp32 GroupNorm, as before issue 17), plus channels_last and torch.compile variants;
  * sampling latency per image at 10 / 25 / 50 DDIM steps, guidance 2 batched into one forward
    vs two separate forwards (the baseline);
  * fine-tuning step through 10 unrolled DDIM steps, gradient checkpointing vs none: time and
    peak memory.
Timings skip warm-up iterations; CUDA timings synchronise. `bench_gpu.py` reuses these helpers
for the issue-17 comparison (bf16 GroupNorm, cudnn.benchmark, compile modes, profiles).
"""

from __future__ import annotations

import argparse
import resource
import time
from contextlib import contextmanager
from typing import Callable, NamedTuple

import torch

from pipeline.device import CompileMode, autocast, compiled
from pipeline.model.conditioning import ConditionDropout, conditioned, guided
from pipeline.model.diffusion import Diffusion
from pipeline.model.attention import GroupNorm
from pipeline.model.sampler import ddim_sample, noise
from pipeline.model.unet import UNet, UNetConfig
from pipeline.training.finetune import ReconstructionConfig, reconstruction_objective
from pipeline.training.loop import denoising_objective


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_mb(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak(device, free_cache: bool = True):
    """Start a new peak-memory count (CUDA); `free_cache=False` between warm-up and the timed steps,
    so that those do not pay for fresh allocations."""
    if device.type == "cuda":
        if free_cache:
            torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def batch(cfg: UNetConfig, n: int, device) -> dict:
    g = torch.Generator().manual_seed(0)
    s = cfg.image_size
    return {"target": torch.rand(n, 3, s, s, generator=g).mul(2).sub(1).to(device),
            "sketch": torch.rand(n, 1, s, s, generator=g).mul(2).sub(1).to(device),
            "reference": torch.rand(n, 3, s, s, generator=g).mul(2).sub(1).to(device)}


class TrainTiming(NamedTuple):
    images_per_s: float  # warm-up excluded
    peak_mb: float
    warmup_s: float  # the untimed first steps (compile, cudnn autotuning, allocator)
    first_loss: float  # same model, batch and seed in every variant: a numerics check


class SampleTiming(NamedTuple):
    s_per_image: float  # best of the timed runs, warm-up excluded
    peak_mb: float
    warmup_s: float


@contextmanager
def norm_in_bf16(on: bool):
    """GroupNorm in bf16 under CUDA autocast (on, the library default) or autocast's fp32 upcast (off)."""
    before = GroupNorm.bf16_under_autocast
    GroupNorm.bf16_under_autocast = on
    try:
        yield
    finally:
        GroupNorm.bf16_under_autocast = before


def train_step(cfg: UNetConfig, n: int, device, precision="fp32", channels_last=False,
               compile_mode: CompileMode | None = None) -> Callable[[int], torch.Tensor]:
    """One AdamW step of the pretraining objective on a fixed batch, as a function of the step
    index (which seeds t, eps and dropout); returns the loss, still on the device (no sync)."""
    torch.manual_seed(0)
    model = UNet(cfg).to(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    net = compiled(model, compile_mode is not None, device, compile_mode or "default")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    objective = denoising_objective(Diffusion(), ConditionDropout(p_uncond=0.1))
    data = {k: v.contiguous(memory_format=fmt) for k, v in batch(cfg, n, device).items()}

    def step(i: int) -> torch.Tensor:
        with autocast(device, precision):
            loss, _ = objective(net, data, torch.Generator().manual_seed(i))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach()

    return step


def time_steps(step: Callable[[int], torch.Tensor], n: int, device, iters=5, warmup=2) -> TrainTiming:
    """Run `warmup` untimed steps, then time `iters` steps of `n` images each."""
    reset_peak(device)
    start = time.perf_counter()
    first = float(step(0))
    for i in range(1, warmup):
        step(i)
    sync(device)
    reset_peak(device, free_cache=False)  # the steady state's peak, not cudnn's or the compiler's trials
    timed = time.perf_counter()
    for i in range(warmup, warmup + iters):
        step(i)
    sync(device)
    now = time.perf_counter()
    return TrainTiming(n * iters / (now - timed), peak_mb(device), timed - start, first)


def train_rate(cfg: UNetConfig, n: int, device, precision="fp32", channels_last=False,
               compile_mode: CompileMode | None = None, iters=5, warmup=2) -> TrainTiming:
    return time_steps(train_step(cfg, n, device, precision, channels_last, compile_mode), n, device, iters, warmup)


@torch.no_grad()
def sample_latency(cfg: UNetConfig, n: int, steps: int, device, batched: bool, precision="bf16",
                   compile_mode: CompileMode | None = None, repeats: int = 1) -> SampleTiming:
    torch.manual_seed(0)
    model = compiled(UNet(cfg).to(device).eval(), compile_mode is not None, device, compile_mode or "default")
    diffusion = Diffusion()
    data = batch(cfg, n, device)
    if batched:
        fn = guided(model, data["sketch"], data["reference"], 2.0)
    else:  # baseline: two separate forwards per step
        c = conditioned(model, data["sketch"], data["reference"])
        u = conditioned(model, data["sketch"], torch.zeros_like(data["reference"]))
        fn = lambda x, t: u(x, t) + 2.0 * (c(x, t) - u(x, t))  # noqa: E731
    x_T = noise((n, 3, cfg.image_size, cfg.image_size), torch.Generator().manual_seed(0), device)
    reset_peak(device)
    with autocast(device, precision):
        start = time.perf_counter()
        ddim_sample(fn, diffusion, x_T, 3)  # warm-up (compile; CUDA graphs record on a later call)
        sync(device)
        warm = time.perf_counter() - start
        reset_peak(device, free_cache=False)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            ddim_sample(fn, diffusion, x_T, steps)
            sync(device)
            times.append(time.perf_counter() - start)
    return SampleTiming(min(times) / n, peak_mb(device), warm)


def finetune_step(cfg: UNetConfig, n: int, device, checkpoint: bool, precision="fp32") -> tuple[float, float]:
    torch.manual_seed(0)
    model = UNet(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    objective = reconstruction_objective(Diffusion(), ReconstructionConfig(unroll_steps=10, grad_checkpoint=checkpoint))
    data = batch(cfg, n, device)
    reset_peak(device)
    times = []
    for i in range(2):
        sync(device)
        start = time.perf_counter()
        with autocast(device, precision):
            loss, _ = objective(model, data, torch.Generator().manual_seed(i))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync(device)
        times.append(time.perf_counter() - start)
    return times[-1], peak_mb(device)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="fewer configurations (CPU)")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    gpu = device.type == "cuda"
    print(f"device: {torch.cuda.get_device_name() if gpu else 'cpu'}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}")
    small = UNetConfig(image_size=64, channels=32, channel_mults=(1, 2, 2), res_blocks=1)
    paper = UNetConfig.paper(256)

    print("\n## pretraining step (images/s, peak MB)")
    rows = [("small 64 px", small, 16 if not gpu else 128), ("paper 256 px", paper, 2 if not gpu else 32)]
    variants = [("fp32", {})]
    if gpu:
        variants += [("bf16", {"precision": "bf16"}), ("bf16+channels_last", {"precision": "bf16", "channels_last": True}),
                     ("bf16+compile", {"precision": "bf16", "compile_mode": "default"})]
    for name, cfg, n in rows:
        for label, kw in variants:
            iters = 3 if (not gpu and cfg is paper) else 5
            with norm_in_bf16(False):
                rate, mem, _, _ = train_rate(cfg, n, device, iters=iters, warmup=1 if not gpu else 3, **kw)
            print(f"| {name} | batch {n} | {label} | {rate:8.1f} img/s | {mem:9.0f} MB |")

    print("\n## sampling latency per image, guidance 2 (s/image)")
    cfg, n = (paper, 16) if gpu else (small, 8)
    for steps in ((10, 25, 50) if gpu or not args.quick else (10,)):
        with norm_in_bf16(False):
            one = sample_latency(cfg, n, steps, device, batched=True).s_per_image
            two = sample_latency(cfg, n, steps, device, batched=False).s_per_image
        print(f"| {cfg.image_size} px | {steps} steps | batched CFG {one:.4f} | two forwards {two:.4f} | "
              f"x{two / one:.2f} |")

    print("\n## fine-tuning step, 10 unrolled DDIM steps (s/step, peak MB)")
    cfg, n = (paper, 4) if gpu else (small, 4)
    for ckpt in (True, False):
        seconds, mem = finetune_step(cfg, n, device, ckpt, "bf16" if gpu else "fp32")
        print(f"| {cfg.image_size} px batch {n} | checkpointing {'on ' if ckpt else 'off'} | {seconds:.2f} s | "
              f"{mem:.0f} MB |")


if __name__ == "__main__":
    main()
