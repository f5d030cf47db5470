"""Print an ablation table for docs/experiments.md: the experiments `dvc exp show --json` lists, their
metrics files read from each experiment's commit (the finetune model unless --model).

    python scripts/figures/ablation_table.py [--model finetune] [--names base64,ft0,...] [--rev COMMIT] [--colour]
"""

import argparse
import json
import subprocess
from pathlib import Path

COLOUR_KEYS = [("self_ref", "psnr"), ("self_ref", "lpips"), ("self_ref", "fd_vgg16"), ("random_ref", "de_hair"),
               ("random_ref", "de_iris_left"), ("random_ref", "de_iris_right"), ("random_ref", "de_clothes"),
               ("random_ref", "heterochromia_success"), ("self_ref", "heterochromia_success")]
KEYS = [("self_ref", "psnr"), ("self_ref", "lpips"), ("self_ref", "fd_vgg16"), ("random_ref", "psnr"),
        ("random_ref", "lpips"), ("random_ref", "fd_vgg16"), ("random_ref", "de_hair"), ("random_ref", "de_iris_left")]


def experiments(node, out):
    """Collect {name: commit} from dvc's nested exp-show JSON."""
    if isinstance(node, dict):
        if "data" in node and isinstance(node["data"], dict) and "rev" in node:
            out[node.get("name") or node["rev"]] = node["rev"]
        for value in node.values():
            experiments(value, out)
    elif isinstance(node, list):
        for value in node:
            experiments(value, out)
    return out


def metrics_file(rev: str, path: str) -> dict:
    """A metrics file as committed in `rev` (an experiment is a commit; only the headline is a declared
    DVC metric, the full files are plain git-tracked outputs), or the working copy's for "workspace"."""
    if rev == "workspace":
        return json.loads(Path(path).read_text()) if Path(path).is_file() else {}
    shown = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True, text=True)
    return json.loads(shown.stdout) if shown.returncode == 0 else {}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="finetune")
    ap.add_argument("--names", default="")
    ap.add_argument("--rev", default="HEAD", help="the commit the experiments were run from")
    ap.add_argument("--colour", action="store_true", help="the colour-fidelity columns (region CIEDE2000, "
                                                          "heterochromia success) instead")
    args = ap.parse_args()
    keys = COLOUR_KEYS if args.colour else KEYS
    shown = json.loads(subprocess.run(["dvc", "exp", "show", "--json", "--rev", args.rev], capture_output=True, text=True,
                                      check=True).stdout)
    found = experiments(shown, {})
    names = args.names.split(",") if args.names else sorted(found)
    print("| experiment | " + " | ".join(f"{s} {k}" for s, k in keys) + " | pretrain s |")
    print("|---|" + "---|" * (len(keys) + 1))
    for name in names:
        if name not in found:
            continue
        row = metrics_file(found[name], "metrics/evaluate.json").get(args.model, {})
        cells = [row.get(s, {}).get(k) for s, k in keys]
        seconds = metrics_file(found[name], "metrics/pretrain.json").get("seconds")
        print(f"| {name} | " + " | ".join("-" if c is None else f"{c:.4g}" for c in [*cells, seconds]) + " |")


if __name__ == "__main__":
    main()
