"""Does the model find each colour by what it is, or copy it by position? (issue 35's diagnostic)

    python scripts/diagnostics/position_copy.py [--model models/animecolor.safetensors] [--limit 305]

Self-reference PSNR on the 64 px benchmark (`data/pairs`, the pairs stage's own test pairs):
- as the benchmark gives them;
- the drawing and its reference both mirrored, the output mirrored back. The pair is as fair as
  before (the same face, the same warp mirrored), so a model that reads the reference by content
  scores the same; one tuned to the training warp's direction (the official TPS moves points
  along the main diagonal only) scores lower;
- the reference alone mirrored, shifted by a tenth of the side, turned by 15 degrees or scaled
  by 0.85 against its drawing: every colour is still in the reference, in another place. What a
  model loses here it loses on another character's reference, whose layout never matches.
Works for every model file (`animecolor export`), real or synthetic data.
"""

import argparse
import sys

import cv2
import numpy as np
import torch

from pipeline.colorize import load_model
from pipeline.data.benchmark import load_benchmark
from pipeline.errors import AnimecolorError
from pipeline.evaluation import metrics as M
from pipeline.model.generate import colorize_batch


def moved(reference: torch.Tensor, angle: float = 0.0, scale: float = 1.0, shift: float = 0.0) -> torch.Tensor:
    """(N, 3, H, W) references turned by `angle` degrees, scaled and shifted right by `shift` x width
    (edges replicated, as the training warp does)."""
    h, w = reference.shape[-2:]
    matrix = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle, scale)
    matrix[0, 2] += shift * w
    images = reference.permute(0, 2, 3, 1).numpy()
    out = [cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
           for image in images]
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="models/animecolor.safetensors")
    ap.add_argument("--faces", default="data/faces")
    ap.add_argument("--pairs", default="data/pairs")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--steps", type=int, default=10, help="DDIM steps (regression models: one pass)")
    args = ap.parse_args()
    try:
        _, data = load_benchmark(args.faces, args.pairs, "self_ref", args.limit)
        model, diffusion, _ = load_model(args.model)
    except AnimecolorError as exc:  # a missing model or benchmark: one line
        print(f"position_copy: {exc}", file=sys.stderr)
        sys.exit(2)
    model.eval()
    sketch, reference, truth = data["sketch"], data["reference"], (data["target"] + 1) / 2

    def score(s: torch.Tensor, r: torch.Tensor, mirrored: bool = False) -> float:
        with torch.no_grad():
            out = colorize_batch(model, diffusion, s, r, sample_steps=args.steps)
        out = out.flip(-1) if mirrored else out
        return float(M.psnr((out + 1) / 2, truth).mean())

    rows = {
        "as given": score(sketch, reference),
        "drawing and reference mirrored": score(sketch.flip(-1), reference.flip(-1), mirrored=True),
        "reference mirrored": score(sketch, reference.flip(-1)),
        "reference shifted 10 %": score(sketch, moved(reference, shift=0.1)),
        "reference turned 15 deg": score(sketch, moved(reference, angle=15)),
        "reference scaled 0.85": score(sketch, moved(reference, scale=0.85)),
    }
    print(f"{args.model}: self-reference PSNR on {len(sketch)} pairs")
    for name, value in rows.items():
        print(f"  {name:32s} {value:6.2f}  ({value - rows['as given']:+.2f})")


if __name__ == "__main__":
    main()
