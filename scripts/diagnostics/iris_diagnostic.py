"""Does the model read the irises from the reference at all? (issue 14's diagnostic)

    python scripts/diagnostics/iris_diagnostic.py [--model models/finetune.pt] [--limit 64]

Gives the model the *aligned* reference (the target itself, no warp: the easiest possible
case) and prints, per timestep t, the colour error (CIEDE2000 of region means) of its one-step
prediction of x0 from x_t, once with that reference and once with the null reference. Where the
two columns are close, the model takes that region's colour from x_t or the sketch, not from
the reference. Then the full 10-step DDIM sample with the aligned reference and with the
benchmark's warped one. Last, where the reference attention looks (models with
`reference_attention`): for the denoiser positions of each region, the share of the attention
(head mean, every attention layer) on the reference tokens of the same region and, for the
irises, on the other eye's; with the benchmark's warped references. Synthetic benchmark (label
maps) only.
"""

import argparse

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.data.benchmark import load_benchmark
from pipeline.data.labels import COLOUR_REGIONS
from pipeline.device import autocast, resolve_device
from pipeline.evaluation import metrics as M
from pipeline.model.checkpoint import load_checkpoint, model_from_checkpoint
from pipeline.model.conditioning import guided
from pipeline.model.generate import colorize_batch
from pipeline.model.reference import CrossAttention, recorded_attention

REGIONS = ("hair", "iris_left", "iris_right")


def errors(images: torch.Tensor, labels: torch.Tensor, truth: torch.Tensor) -> list[float]:
    e = M.region_colour_errors((images.float().clamp(-1, 1).cpu() + 1) / 2, labels.numpy(), (truth + 1) / 2,
                               labels.numpy(), COLOUR_REGIONS, 1)
    return [float(np.nanmean(e[r])) for r in REGIONS]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/finetune.pt")
    ap.add_argument("--faces", default="data/faces")
    ap.add_argument("--pairs", default="data/pairs")
    ap.add_argument("--limit", type=int, default=64)
    args = ap.parse_args()
    device = resolve_device("auto")
    _, data = load_benchmark(args.faces, args.pairs, "self_ref", args.limit, with_labels=True)
    model, diffusion = model_from_checkpoint(load_checkpoint(args.model), "ema")
    model.eval().to(device)
    x0, sketch, labels = data["target"].to(device), data["sketch"].to(device), data["target_label"]
    cast = autocast(device, "auto")
    print("| t | " + " | ".join(f"{r} dE, aligned ref" for r in REGIONS) + " | "
          + " | ".join(f"{r} dE, null ref" for r in REGIONS) + " |")
    print("|---" * (1 + 2 * len(REGIONS)) + "|")
    for t in (50, 150, 300, 500, 700, 900, 999):
        eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1)).to(device)
        tt = torch.full((x0.shape[0],), t, device=device)
        x_t = diffusion.q_sample(x0, tt, eps)
        row = []
        for reference in (x0, torch.zeros_like(x0)):
            with torch.no_grad(), cast:
                prediction = guided(model, sketch, reference, 1.0)(x_t, tt).float()
            row += errors(diffusion.to_x0_eps(prediction, x_t, tt)[0], labels, data["target"])
        print(f"| {t} | " + " | ".join(f"{v:.1f}" for v in row) + " |")
    for name, reference in (("aligned", x0), ("warped (benchmark)", data["reference"].to(device))):
        out = colorize_batch(model, diffusion, sketch, reference, sample_steps=10, autocast=cast)
        print(f"10-step DDIM, {name} reference: " + ", ".join(
            f"{r} {v:.1f}" for r, v in zip(REGIONS, errors(out, labels, data["target"]))))
    print_attention(model, diffusion, data, cast)


def attention_shares(records: list, label: torch.Tensor, reference_label: torch.Tensor, region: int,
                     other: int | None) -> tuple[float, float, float]:
    """(share of the attention of `region`'s positions on `region`'s tokens, on `other`'s tokens,
    the share of tokens that are `region`'s), averaged over the recorded layers. A token belongs
    to a region when a quarter of its patch or more has that label."""
    own, wrong, chance = [], [], []
    for log_attention, pos, side in records:
        h, w = label.shape[-2:]
        qx, qy = (pos[:, 0] * w).long().clamp(0, w - 1), (pos[:, 1] * h).long().clamp(0, h - 1)
        queries = label[:, qy, qx] == region                                              # (B, M)
        tokens = lambda r: (F.adaptive_avg_pool2d((reference_label == r).float()[:, None], side).flatten(1) >= 0.25)  # noqa: E731
        attention = log_attention[..., :side * side].exp()  # the grid's share (text tokens, if any, follow it)
        own.append((attention * tokens(region)[:, None].float()).sum(-1)[queries].mean().item())
        wrong.append((attention * tokens(other)[:, None].float()).sum(-1)[queries].mean().item() if other else np.nan)
        chance.append(tokens(region).float().mean().item())
    return float(np.mean(own)), float(np.mean(wrong)), float(np.mean(chance))


def print_attention(model, diffusion, data: dict, cast) -> None:
    if not any(isinstance(m, CrossAttention) for m in model.modules()):
        return
    device = next(model.parameters()).device
    x0, sketch, reference = (data[k].to(device) for k in ("target", "sketch", "reference"))
    print("\n| t | " + " | ".join(f"{r}: own region (chance)" for r in REGIONS) + " | iris_left: other eye | iris_right: other eye |")
    print("|---" * (3 + len(REGIONS)) + "|")
    for t in (999, 600, 200):
        tt = torch.full((x0.shape[0],), t, device=device)
        x_t = diffusion.q_sample(x0, tt, torch.randn(x0.shape, generator=torch.Generator().manual_seed(1)).to(device))
        with torch.no_grad(), cast, recorded_attention(model) as records:
            guided(model, sketch, reference, 1.0)(x_t, tt)
        records = [(a.cpu(), p.cpu(), s) for a, p, s in records]
        cells, others = [], []
        for r in REGIONS:
            other = COLOUR_REGIONS["iris_right" if r == "iris_left" else "iris_left"] if r.startswith("iris") else None
            own, wrong, chance = attention_shares(records, data["target_label"], data["reference_label"],
                                                  COLOUR_REGIONS[r], other)
            cells.append(f"{own:.3f} ({chance:.3f})")
            if other:
                others.append(f"{wrong:.3f}")
        print(f"| {t} | " + " | ".join(cells + others) + " |")


if __name__ == "__main__":
    main()
