"""Benchmark: the CPU profile's training step and sampling, before and after issue 14's speed-ups.

    python tests/benchmarks/bench_cpu.py [--iters N]

Prints one markdown table per section, each variant next to its baseline in the same run:
  * training step (batch 16, 64 px) of the default network with reference attention at 16 px and
    at 32 + 16 px: PyTorch's unfused attention (what the strided feature maps used to get, forced
    here with `sdpa_kernel(MATH)`) vs the fused flash kernel (`attention.attend`), in fp32 and bf16;
  * sampling latency per image (batch 32, 10 DDIM steps, guidance 2 batched), fp32 vs bf16;
  * `precision: auto` for training: the old rule (bf16 wherever it is native) against the timed
    probe's rule (`device.probe_precision`: fp32 + flash when it takes < FP32_MARGIN of bf16 +
    unfused), applied to this run's timings of the default network, old and new side by side.
bf16 pays only on CPUs with native bf16 (`device.cpu_has_bf16`; printed); elsewhere it is emulated.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import nullcontext
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_train import sample_latency, train_rate  # noqa: E402

from pipeline.device import FP32_MARGIN, cpu_has_bf16, machine_description  # noqa: E402
from pipeline.model import attention  # noqa: E402
from pipeline.model.unet import UNetConfig  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=4, help="timed training steps per variant")
    args = ap.parse_args()
    cpu = torch.device("cpu")
    print(f"{machine_description()}; torch {torch.__version__}")
    base = dict(image_size=64, channels=32, channel_mults=(1, 2, 2), res_blocks=1, norm_groups=8, text=True)
    nets = {"attention at 16 px (620-step default before)": UNetConfig(**base, reference_attention=(16,)),
            "attention at 32 + 16 px (the new default)": UNetConfig(**base, reference_attention=(32, 16))}
    variants = [("fp32, unfused attention (before)", "fp32", "math"), ("fp32, flash attention", "fp32", "flash"),
                ("bf16, flash attention", "bf16", "flash"),
                ("bf16, unfused attention in batch slices (the training default)", "bf16", "slices")]

    steps: dict[tuple[str, str], float] = {}
    print("\n## training step, batch 16, 64 px (seconds per step; lower is better)\n")
    print("| network | " + " | ".join(v[0] for v in variants) + " |")
    print("|---|" + "---|" * len(variants))
    for name, cfg in nets.items():
        cells = []
        for _, precision, kernel in variants:
            attention.UNFUSED_CPU_TRAINING = kernel == "slices"
            with sdpa_kernel(SDPBackend.MATH) if kernel == "math" else nullcontext():
                timing = train_rate(cfg, 16, cpu, precision, iters=args.iters)
            steps[name, kernel + precision] = 16 / timing.images_per_s
            cells.append(f"{16 / timing.images_per_s:.3f}")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)

    default = list(nets)[-1]
    fp32_s, bf16_s = steps[default, "flashfp32"], steps[default, "slicesbf16"]
    old = "bf16" if cpu_has_bf16() else "fp32"
    new = "fp32" if not cpu_has_bf16() or fp32_s < FP32_MARGIN * bf16_s else "bf16"
    seconds = {"fp32": fp32_s, "bf16": bf16_s}
    print(f"\n## precision: auto for training (the default network)\n\n| rule | choice | s / step |\n|---|---|---|\n"
          f"| old: bf16 where native | {old} | {seconds[old]:.3f} |\n| new: timed probe | {new} | {seconds[new]:.3f} |\n"
          f"\nnew / old speed: {seconds[old] / seconds[new]:.2f}x", flush=True)

    print("\n## sampling, batch 32, 10 DDIM steps, guidance 2 (seconds per image)\n")
    print("| network | fp32 (before) | bf16 |")
    print("|---|---|---|")
    for name, cfg in nets.items():
        cells = [f"{sample_latency(cfg, 32, 10, cpu, batched=True, precision=p).s_per_image:.3f}"
                 for p in ("fp32", "bf16")]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
