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
bf16 pays only on CPUs with native bf16 (`device.cpu_has_bf16`; printed); elsewhere it is emulated,
about 25x slower than fp32 (33 s a training step on a 2-core AVX2 EPYC), so its columns are skipped
there unless `--emulated-bf16` asks for them.
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
    ap.add_argument("--emulated-bf16", action="store_true", help="time bf16 even where the CPU emulates it (slow)")
    args = ap.parse_args()
    bf16 = cpu_has_bf16() or args.emulated_bf16
    cpu = torch.device("cpu")
    print(f"{machine_description()}; torch {torch.__version__}")
    base = dict(image_size=64, channels=32, channel_mults=(1, 2, 2), res_blocks=1, norm_groups=8, text=True)
    nets = {"attention at 16 px (620-step default before)": UNetConfig(**base, reference_attention=(16,)),
            "attention at 32 + 16 px (the new default)": UNetConfig(**base, reference_attention=(32, 16))}
    variants = [("fp32, unfused attention (before)", "fp32", "math"), ("fp32, flash attention", "fp32", "flash"),
                ("bf16, flash attention", "bf16", "flash"),
                ("bf16, unfused attention in batch slices (the training default)", "bf16", "slices")]
    if not bf16:
        print("\nthis CPU has no native bf16: the bf16 columns are skipped (--emulated-bf16 times them)")
        variants = [v for v in variants if v[1] == "fp32"]

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
    if bf16:
        print_rules(steps[default, "flashfp32"], steps[default, "slicesbf16"])
    else:
        print("\n## precision: auto for training\n\nfp32 under both rules (no native bf16: nothing to probe)", flush=True)
    sampling_columns = ("fp32", "bf16") if bf16 else ("fp32",)

    print("\n## sampling, batch 32, 10 DDIM steps, guidance 2 (seconds per image)\n")
    print("| network | " + " | ".join(sampling_columns) + " |")
    print("|---|" + "---|" * len(sampling_columns))
    for name, cfg in nets.items():
        cells = [f"{sample_latency(cfg, 32, 10, cpu, batched=True, precision=p).s_per_image:.3f}"
                 for p in sampling_columns]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


def print_rules(fp32_s: float, bf16_s: float) -> None:
    """The old rule (bf16 where native) against the timed probe's, on this run's timings."""
    old = "bf16" if cpu_has_bf16() else "fp32"
    new = "fp32" if not cpu_has_bf16() or fp32_s < FP32_MARGIN * bf16_s else "bf16"
    seconds = {"fp32": fp32_s, "bf16": bf16_s}
    print(f"\n## precision: auto for training (the default network)\n\n| rule | choice | s / step |\n|---|---|---|\n"
          f"| old: bf16 where native | {old} | {seconds[old]:.3f} |\n| new: timed probe | {new} | {seconds[new]:.3f} |\n"
          f"\nnew / old speed: {seconds[old] / seconds[new]:.2f}x", flush=True)


if __name__ == "__main__":
    main()
