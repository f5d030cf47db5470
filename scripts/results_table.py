"""Print metrics/evaluate.json (or any evaluate JSON) as the README's markdown table.

    python scripts/results_table.py [metrics/evaluate.json] [--keys psnr,ms_ssim,lpips,...]
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
    args = ap.parse_args()
    metrics = json.load(open(args.path))
    rows = [(c, s, r) for c, v in metrics.items() if not c.startswith("_") for s, r in v.items()]
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


if __name__ == "__main__":
    main()
