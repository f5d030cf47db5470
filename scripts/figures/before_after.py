"""Before / after grid of two benchmark runs on the same test pairs (README figures).

    python scripts/figures/before_after.py --before OLD_DIR --after data/evaluate/finetune/random_ref \
        --setting random_ref [--heterochromia] [--count 8] [-o docs/img/before_after.png]

OLD_DIR / the --after folder: an `evaluate` output folder (data/evaluate/<candidate>/<setting>,
one PNG per test pair, named after the target), e.g. a copy kept before changing the default.
Columns: test pairs; rows: line drawing, reference, before, after. With --heterochromia, only
the pairs whose reference has two iris colours more than 10 CIEDE2000 apart (as `evaluate`);
with --eyes, each picture cropped to a square around its eyes (label maps), so the irises show.
"""

import argparse
from pathlib import Path

import numpy as np

from pipeline.data.benchmark import load_benchmark
from pipeline.data.dataset import to_uint8
from pipeline.data.imageio import read_rgb, write_png
from pipeline.data.labels import REGION_IDS
from pipeline.evaluation import metrics as M
from pipeline.evaluation.evaluate import reference_iris_gap
from pipeline.report import contact_sheet


def eye_crop(image: np.ndarray, label: np.ndarray, margin: int = 3) -> np.ndarray:
    """A square of `image` around the eyes of `label` (sclera to highlight), `margin` px around."""
    ys, xs = np.nonzero((label >= REGION_IDS["sclera"]) & (label <= REGION_IDS["highlight"]))
    if not len(ys):
        return image
    side = max(ys.max() - ys.min(), xs.max() - xs.min()) + 1 + 2 * margin
    cy, cx = (ys.min() + ys.max()) // 2, (xs.min() + xs.max()) // 2
    y0 = int(np.clip(cy - side // 2, 0, image.shape[0] - side))
    x0 = int(np.clip(cx - side // 2, 0, image.shape[1] - side))
    return image[y0:y0 + side, x0:x0 + side]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", type=Path, required=True)
    ap.add_argument("--after", type=Path, required=True)
    ap.add_argument("--setting", default="random_ref")
    ap.add_argument("--heterochromia", action="store_true")
    ap.add_argument("--count", type=int, default=8)
    ap.add_argument("--eyes", action="store_true", help="crop to the eyes")
    ap.add_argument("--faces", default="data/faces")
    ap.add_argument("--pairs", default="data/pairs")
    ap.add_argument("-o", "--out", type=Path, default=Path("docs/img/before_after_heterochromia.png"))
    args = ap.parse_args()
    rows, data = load_benchmark(args.faces, args.pairs, args.setting, with_labels=args.heterochromia or args.eyes)
    chosen = np.arange(len(rows))
    if args.heterochromia:
        gap = reference_iris_gap(data["reference"], data["reference_label"], rows, 1)
        chosen = np.flatnonzero(gap > M.HETEROCHROMIA_GAP)
    chosen = chosen[: args.count]
    names = [Path(rows.target[i]).name for i in chosen]
    crop = (lambda image, i, key: eye_crop(image, data[key][i].numpy())) if args.eyes else (lambda image, i, key: image)
    grid = ([crop(to_uint8(data["sketch"][i]), i, "target_label") for i in chosen]
            + [crop(to_uint8(data["reference"][i]), i, "reference_label") for i in chosen]
            + [crop(read_rgb(args.before / n), i, "target_label") for i, n in zip(chosen, names)]
            + [crop(read_rgb(args.after / n), i, "target_label") for i, n in zip(chosen, names)])
    write_png(args.out, contact_sheet(grid, ncol=len(chosen), tile=160 if args.eyes else None))
    print(f"{args.out}: {len(chosen)} pairs; rows: drawing, reference, before ({args.before}), after ({args.after})")


if __name__ == "__main__":
    main()
