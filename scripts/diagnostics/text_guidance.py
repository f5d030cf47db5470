"""The text benchmark of one text model at several prompt guidance scales (s_text), one row each.

    python scripts/diagnostics/text_guidance.py --model models/finetune.pt --scales 1 2 3

Prints the text benchmark's columns (docs/results/text.md), one row per scale; the
other evaluate settings are those of params.yaml. Sampling only: about 2.5 min per scale for the
64 faces on 2 CPU cores.
"""

from __future__ import annotations

import argparse

from pipeline.device import resolve_device
from pipeline.evaluation.evaluate import EvalConfig
from pipeline.evaluation.text_bench import run_text_benchmark
from pipeline.model.checkpoint import load_checkpoint, model_from_checkpoint
from stages.common import load_params

TEXT_COLUMNS = [("text_only", "de_hair"), ("text_only", "de_iris_left"), ("text_only", "de_iris_right"),
                ("text_only", "de_clothes"), ("masked_hair", "de_hair_no_text"), ("masked_hair", "de_hair_text"),
                ("masked_hair", "ratio_hair"), ("masked_eyes", "ratio_iris_left"), ("masked_eyes", "ratio_iris_right"),
                ("hetero_text", "success"), ("counterfactual", "follow_rate"), ("counterfactual", "bleed_de")]


def text_header(first: str = "run") -> None:
    print(f"| {first} | " + " | ".join(f"{s} {k}" for s, k in TEXT_COLUMNS) + " |")
    print("|---|" + "---|" * len(TEXT_COLUMNS))


def text_row(label: str, text: dict) -> None:
    """One row of the text benchmark's metrics ({setting: {metric: value}}, as in evaluate.json)."""
    cells = [text.get(s, {}).get(k) for s, k in TEXT_COLUMNS]
    print(f"| {label} | " + " | ".join("-" if v is None else f"{v:.3g}" for v in cells) + " |", flush=True)


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
