"""The text benchmark of one text model at several prompt guidance scales (s_text), one row each.

    python scripts/text_guidance.py --model models/finetune.pt --scales 1 2 3

Prints the README's text-benchmark columns (`scripts/results_table.py --text`) per scale; the
other evaluate settings are those of params.yaml. Sampling only: about 1.5 min per scale for the
64 faces on 2 CPU cores.
"""

from __future__ import annotations

import argparse

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
    print("| s_text | text only: hair | iris L / R | clothes | masked hair ratio | masked eyes ratio L / R "
          "| heterochromia in text | counterfactual follow | bleeding dE |")
    print("|---" * 9 + "|")
    for scale in args.scales:
        m, _ = run_text_benchmark(model, diffusion, args.faces, args.pairs,
                                  cfg.model_copy(update={"text_guidance": scale}), device)
        t, h, e, x, c = (m[k] for k in ("text_only", "masked_hair", "masked_eyes", "hetero_text", "counterfactual"))
        print(f"| {scale:g} | {t['de_hair']:.1f} | {t['de_iris_left']:.1f} / {t['de_iris_right']:.1f} "
              f"| {t['de_clothes']:.1f} | {h['ratio_hair']:.2f} | {e['ratio_iris_left']:.2f} / "
              f"{e['ratio_iris_right']:.2f} | {x['success']:.2f} | {c['follow_rate']:.2f} | {c['bleed_de']:.2f} |",
              flush=True)


if __name__ == "__main__":
    main()
