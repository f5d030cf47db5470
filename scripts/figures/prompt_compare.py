"""Grid of prompted models on the same random-reference test pairs (README figures).

    python scripts/figures/prompt_compare.py --model old=OLD.pt@1.5 --model new=models/text.pt@1 \
        --prompt "left eye white, right eye red" --prompt "left eye black, right eye yellow" \
        [--count 8] [-o docs/img/text_prompt_weight.png]

Columns: the first `count` random-reference test pairs of the synthetic benchmark; rows: line
drawing, reference, then for each prompt each model (NAME=PATH@S_TEXT, in the order given) at
its prompt scale. The same seeds for every row, so rows differ by model and prompt alone. Prints
each row's label.
"""

import argparse

import numpy as np
import torch

from pipeline.data.benchmark import load_benchmark
from pipeline.data.dataset import to_uint8
from pipeline.data.imageio import write_png
from pipeline.data.prompt import encode, parse_prompt, vocabulary_colours
from pipeline.device import autocast, resolve_device
from pipeline.model.checkpoint import load_checkpoint, model_from_checkpoint
from pipeline.model.generate import colorize_batch
from pipeline.report import contact_sheet


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", action="append", required=True, help="NAME=PATH@S_TEXT (repeatable)")
    ap.add_argument("--prompt", action="append", required=True)
    ap.add_argument("--faces", default="data/faces")
    ap.add_argument("--pairs", default="data/pairs")
    ap.add_argument("--count", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("-o", "--out", default="docs/img/text_prompt_weight.png")
    args = ap.parse_args()
    device = resolve_device("auto")
    _, data = load_benchmark(args.faces, args.pairs, "random_ref", args.count, with_labels=False)
    sketch, reference = data["sketch"].to(device), data["reference"].to(device)
    rows = [sketch, reference]
    print("row 1: line drawing\nrow 2: reference")
    models = []
    for spec in args.model:
        name, rest = spec.split("=", 1)
        path, scale = rest.rsplit("@", 1)
        model, diffusion = model_from_checkpoint(load_checkpoint(path), "ema")
        models.append((name, model.eval().to(device), diffusion, float(scale)))
    for prompt in args.prompt:
        for name, model, diffusion, scale in models:
            words = vocabulary_colours(model.config.vocabulary)
            text = torch.from_numpy(np.stack([encode(parse_prompt(prompt, words), words)] * len(sketch)))
            rows.append(colorize_batch(model, diffusion, sketch, reference, sample_steps=args.steps, seed=0,
                                       autocast=autocast(device, "auto"), text=text, text_guidance=scale).cpu())
            print(f"row {len(rows)}: {name} (s_text {scale:g}): {prompt!r}")
    tiles = [to_uint8(image) for row in rows for image in row.cpu()]
    write_png(args.out, contact_sheet(tiles, ncol=len(sketch)))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
