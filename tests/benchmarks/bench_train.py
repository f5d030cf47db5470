"""Benchmark: training and sampling throughput and peak memory, on whatever device is present.

    python tests/benchmarks/bench_train.py [--device cpu|cuda] [--quick]

Prints one table per section, each with its baseline in the same run:
  * pretraining step: default (small) and paper networks; on CUDA fp32 vs bf16 autocast, plus
    channels_last and torch.compile variants;
  * sampling latency per image at 10 / 25 / 50 DDIM steps, guidance 2 batched into one forward
    vs two separate forwards (the baseline);
  * fine-tuning step through 10 unrolled DDIM steps, gradient checkpointing vs none: time and
    peak memory.
Timings skip warm-up iterations; CUDA timings synchronise.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from pipeline.device import autocast
from pipeline.model.conditioning import ConditionDropout, conditioned, guided
from pipeline.model.diffusion import Diffusion
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


def reset_peak(device):
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def batch(cfg: UNetConfig, n: int, device) -> dict:
    g = torch.Generator().manual_seed(0)
    s = cfg.image_size
    return {"target": torch.rand(n, 3, s, s, generator=g).mul(2).sub(1).to(device),
            "sketch": torch.rand(n, 1, s, s, generator=g).mul(2).sub(1).to(device),
            "reference": torch.rand(n, 3, s, s, generator=g).mul(2).sub(1).to(device)}


def train_rate(cfg: UNetConfig, n: int, device, precision="fp32", channels_last=False, compile=False,
               iters=5, warmup=2) -> tuple[float, float]:
    torch.manual_seed(0)
    model = UNet(cfg).to(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    net = torch.compile(model) if compile else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    diffusion = Diffusion()
    objective = denoising_objective(diffusion, ConditionDropout(p_uncond=0.1))
    data = {k: v.contiguous(memory_format=fmt) for k, v in batch(cfg, n, device).items()}
    reset_peak(device)
    for i in range(warmup + iters):
        if i == warmup:
            sync(device)
            start = time.perf_counter()
        with autocast(device, precision):
            loss, _ = objective(net, data, torch.Generator().manual_seed(i))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync(device)
    return n * iters / (time.perf_counter() - start), peak_mb(device)


@torch.no_grad()
def sample_latency(cfg: UNetConfig, n: int, steps: int, device, batched: bool, precision="bf16") -> float:
    torch.manual_seed(0)
    model = UNet(cfg).to(device).eval()
    diffusion = Diffusion()
    data = batch(cfg, n, device)
    if batched:
        fn = guided(model, data["sketch"], data["reference"], 2.0)
    else:  # baseline: two separate forwards per step
        c = conditioned(model, data["sketch"], data["reference"])
        u = conditioned(model, data["sketch"], torch.zeros_like(data["reference"]))
        fn = lambda x, t: u(x, t) + 2.0 * (c(x, t) - u(x, t))  # noqa: E731
    x_T = noise((n, 3, cfg.image_size, cfg.image_size), torch.Generator().manual_seed(0), device)
    with autocast(device, precision):
        ddim_sample(fn, diffusion, x_T, 2)  # warm-up
        sync(device)
        start = time.perf_counter()
        ddim_sample(fn, diffusion, x_T, steps)
        sync(device)
    return (time.perf_counter() - start) / n


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
                     ("bf16+compile", {"precision": "bf16", "compile": True})]
    for name, cfg, n in rows:
        for label, kw in variants:
            iters = 3 if (not gpu and cfg is paper) else 5
            rate, mem = train_rate(cfg, n, device, iters=iters, warmup=1 if not gpu else 3, **kw)
            print(f"| {name} | batch {n} | {label} | {rate:8.1f} img/s | {mem:9.0f} MB |")

    print("\n## sampling latency per image, guidance 2 (s/image)")
    cfg, n = (paper, 16) if gpu else (small, 8)
    for steps in ((10, 25, 50) if gpu or not args.quick else (10,)):
        one = sample_latency(cfg, n, steps, device, batched=True)
        two = sample_latency(cfg, n, steps, device, batched=False)
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
