"""Sweep: which small pretraining setup learns fastest per step (to choose the CPU defaults).

    python tests/benchmarks/sweep_pretrain.py [--steps 700,1400,2100] [--device cuda]

Trains each configuration on data/faces + data/pairs (run `dvc repro pairs` first) with the
real training loop, and scores its EMA weights at each step count on the first 64 test pairs
(20 DDIM steps): PSNR for self- and random-reference, and the CIEDE2000 hair / iris error in the
random-reference setting (colours taken from the other character). Only needs torch, pandas,
OpenCV, torchmetrics and scikit-image (runs on the GPU machine without the evaluate extras).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from skimage.color import deltaE_ciede2000, rgb2lab
from torchmetrics.functional.image import peak_signal_noise_ratio

from pipeline.data.benchmark import load_benchmark
from pipeline.data.dataset import PairDataset
from pipeline.data.synthetic import REGION_IDS
from pipeline.data.tps import TPSConfig
from pipeline.device import autocast
from pipeline.model.conditioning import ConditionDropout  # noqa: E402
from pipeline.model.diffusion import Diffusion, DiffusionConfig
from pipeline.model.generate import colorize_batch
from pipeline.model.unet import UNet, UNetConfig
from pipeline.training.loop import LoopConfig, Trainer, denoising_objective

CONFIGS = {
    "default ch32 122 rb1 lr2e-4": ({}, {}),
    "lr 5e-4": ({}, {"lr": 5e-4}),
    "lr 1e-3": ({}, {"lr": 1e-3}),
    "ch48 lr 5e-4": ({"channels": 48}, {"lr": 5e-4}),
    "rb2 lr 5e-4": ({"res_blocks": 2}, {"lr": 5e-4}),
}


def region_error(out01: torch.Tensor, ref01: torch.Tensor, out_lab: np.ndarray, ref_lab: np.ndarray, rid: int):
    errs = []
    for i in range(out01.shape[0]):
        m_o, m_r = out_lab[i] == rid, ref_lab[i] == rid
        if m_o.sum() > 2 and m_r.sum() > 2:
            a = rgb2lab(out01[i].permute(1, 2, 0).numpy())[m_o].mean(0)
            b = rgb2lab(ref01[i].permute(1, 2, 0).numpy())[m_r].mean(0)
            errs.append(float(deltaE_ciede2000(a, b)))
    return float(np.mean(errs)) if errs else float("nan")


def score(model, diffusion, data, device, guidance=1.0):
    out = {}
    for setting, d in data.items():
        x = colorize_batch(model, diffusion, d["sketch"].to(device), d["reference"].to(device), sample_steps=20,
                           guidance=guidance, seed=0, autocast=autocast(device, "auto")).cpu()
        o01, t01, r01 = (x + 1) / 2, (d["target"] + 1) / 2, (d["reference"] + 1) / 2
        out[f"{setting}_psnr"] = float(peak_signal_noise_ratio(o01, t01, data_range=1.0, reduction="none",
                                                               dim=(1, 2, 3)).mean())
        if setting == "random_ref":
            tl, rl = d["target_label"].numpy(), d["reference_label"].numpy()
            out["hair_de"] = region_error(o01, r01, tl, rl, REGION_IDS["hair"])
            out["iris_de"] = region_error(o01, r01, tl, rl, REGION_IDS["iris_left"])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", default="700,1400,2100")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--only", default="", help="comma-separated config names")
    args = ap.parse_args()
    device = torch.device(args.device)
    stops = [int(s) for s in args.steps.split(",")]
    data = {s: load_benchmark("data/faces", "data/pairs", s, limit=64, with_labels=True)[1]
            for s in ("self_ref", "random_ref")}
    ds = PairDataset("data/faces", "data/pairs", "train", tps=TPSConfig())
    names = [n for n in CONFIGS if not args.only or n in args.only.split(",")]
    print(f"device {device}; {len(ds)} training images; batch 16", flush=True)
    for name in names:
        unet_kw, loop_kw = CONFIGS[name]
        torch.manual_seed(0)
        model = UNet(UNetConfig(image_size=64, channels=unet_kw.get("channels", 32), channel_mults=(1, 2, 2),
                                res_blocks=unet_kw.get("res_blocks", 1)))
        diffusion = Diffusion(DiffusionConfig())
        loop = LoopConfig(train_steps=stops[-1], batch_size=16, warmup_steps=50, num_workers=6,
                          lr=loop_kw.get("lr", 2e-4), checkpoint_every=10**9)
        objective = denoising_objective(diffusion, ConditionDropout(p_uncond=0.1))
        trainer = Trainer(model, diffusion, ds, objective, loop, device)
        start = time.perf_counter()
        for stop in stops:
            res = trainer.run(stop_at=stop)
            s = score(trainer.ema.model, diffusion, data, device)
            extra = ""
            if stop == stops[-1]:
                g2 = score(trainer.ema.model, diffusion, data, device, guidance=2.0)
                extra = f" | g2 self {g2['self_ref_psnr']:.2f} random {g2['random_ref_psnr']:.2f} hair {g2['hair_de']:.1f}"
            print(f"| {name} | {stop} | loss {np.mean(res['losses'][-50:]):.4f} | self {s['self_ref_psnr']:.2f} | "
                  f"random {s['random_ref_psnr']:.2f} | hair dE {s['hair_de']:.1f} | iris dE {s['iris_de']:.1f} |"
                  f" {time.perf_counter() - start:.0f} s{extra}", flush=True)


if __name__ == "__main__":
    main()
