"""The text benchmark of one text model at several prompt guidance scales (s_text), one row each.

    python scripts/text_guidance.py --model models/finetune.pt --scales 1 2 3

Prints `scripts/results_table.py --text`'s columns, one row per scale; the
other evaluate settings are those of params.yaml. Sampling only: about 2.5 min per scale for the
64 faces on 2 CPU cores.
"""

from __future__ import annotations

import argparse

from results_table import text_header, text_row  # scripts/, beside this file

from pipeline.device import resolve_device
from pipeline.evaluation.evaluate import EvalConfig
from pipeline.evaluation.text_bench import run_text_benchmark
from pipeline.model.checkpoint import load_checkpoint, model_from_checkpoint
from stages.common import load_params


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/finetune.pt")
    ap.add_argument("--faces", default="data/faces")
    ap.add_argument("--pairs", default="data/pairs")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--scales", type=float, nargs="+", default=[1.0, 2.0, 3.0])
    args = ap.parse_args()
    cfg: EvalConfig = load_params(args.params, "evaluate")["evaluate"]
    device = resolve_device("auto")
    model, diffusion = model_from_checkpoint(load_checkpoint(args.model), "ema")
    model.eval().to(device)
    text_header("s_text")
    for scale in args.scales:
        metrics, _ = run_text_benchmark(model, diffusion, args.faces, args.pairs,
                                        cfg.model_copy(update={"text_guidance": scale}), device)
        text_row(f"{scale:g}", metrics)


if __name__ == "__main__":
    main()
