"""Print metrics/evaluate.json (or any evaluate JSON) as the README's markdown table.

    python scripts/results_table.py [metrics/evaluate.json] [--keys psnr,ms_ssim,lpips,...]
    python scripts/results_table.py --text [metrics/evaluate.json ...]   # the text benchmark, one row per file
"""

import argparse
import json

DEFAULT_KEYS = ["psnr", "ms_ssim", "lpips", "fd_vgg16", "kid_vgg16", "de_hair", "de_skin", "de_iris_left",
                "de_iris_right", "de_clothes", "heterochromia_success", "af_de_hair", "af_de_eye_left",
                "af_de_eye_right", "af_detected", "seconds_per_image"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("path", nargs="?", default="metrics/evaluate.json")
    ap.add_argument("--keys", default=None)
    ap.add_argument("--text", nargs="*", default=None, help="text benchmark of the fine-tuned model in these files")
    args = ap.parse_args()
    if args.text is not None:
        return text_table(args.text or [args.path])
    metrics = json.load(open(args.path))
    rows = [(c, s, r) for c, v in metrics.items() if not c.startswith("_") for s, r in v.items() if s != "text"]
    keys = args.keys.split(",") if args.keys else [k for k in DEFAULT_KEYS if any(k in r for _, _, r in rows)]
    print("| candidate | setting | " + " | ".join(keys) + " |")
    print("|---|---|" + "---|" * len(keys))
    for c, s, r in rows:
        cells = []
        for k in keys:
            v = r.get(k)
            cells.append("-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v))
        print(f"| {c} | {s} | " + " | ".join(cells) + " |")
    for k, v in metrics.get("_notes", {}).items():
        print(f"\n{k}: {v}")


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


def text_table(paths: list[str], model: str = "finetune") -> None:
    text_header()
    for path in paths:
        text_row(path, json.load(open(path)).get(model, {}).get("text", {}))


if __name__ == "__main__":
    main()
