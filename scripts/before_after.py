"""Before / after grid of two benchmark runs on the same test pairs (README figures).

    python scripts/before_after.py --before OLD_DIR --after data/evaluate/finetune/random_ref \
        --setting random_ref [--heterochromia] [--count 8] [-o docs/before_after.png]

OLD_DIR / the --after folder: an `evaluate` output folder (data/evaluate/<candidate>/<setting>,
one PNG per test pair, named after the target), e.g. a copy kept before changing the default.
Columns: test pairs; rows: line drawing, reference, before, after. With --heterochromia, only
the pairs whose reference has two iris colours more than 10 CIEDE2000 apart (as `evaluate`).
"""

import argparse
from pathlib import Path

import numpy as np

from pipeline.data.benchmark import load_benchmark
from pipeline.data.dataset import to_uint8
from pipeline.data.imageio import read_rgb, write_png
from pipeline.evaluation import metrics as M
from pipeline.evaluation.evaluate import reference_iris_gap
from pipeline.report import contact_sheet


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", type=Path, required=True)
    ap.add_argument("--after", type=Path, required=True)
    ap.add_argument("--setting", default="random_ref")
    ap.add_argument("--heterochromia", action="store_true")
    ap.add_argument("--count", type=int, default=8)
    ap.add_argument("--faces", default="data/faces")
    ap.add_argument("--pairs", default="data/pairs")
    ap.add_argument("-o", "--out", type=Path, default=Path("docs/before_after.png"))
    args = ap.parse_args()
    rows, data = load_benchmark(args.faces, args.pairs, args.setting, with_labels=args.heterochromia)
    chosen = np.arange(len(rows))
    if args.heterochromia:
        gap = reference_iris_gap(data["reference"], data["reference_label"], rows, 1)
        chosen = np.flatnonzero(gap > M.HETEROCHROMIA_GAP)
    chosen = chosen[: args.count]
    names = [Path(rows.target[i]).name for i in chosen]
    grid = ([to_uint8(data["sketch"][i]) for i in chosen] + [to_uint8(data["reference"][i]) for i in chosen]
            + [read_rgb(args.before / n) for n in names] + [read_rgb(args.after / n) for n in names])
    write_png(args.out, contact_sheet(grid, ncol=len(chosen)))
    print(f"{args.out}: {len(chosen)} pairs; rows: drawing, reference, before ({args.before}), after ({args.after})")


if __name__ == "__main__":
    main()
