"""The real `pretrain` stage with each CPU training attention, alternating in one session.

    python tests/benchmarks/bench_stage_attention.py [--steps 90] [--rounds 2]

`bench_cpu.py` times the bare step; this runs the whole stage (DataLoader worker, EMA, logging)
on the pipeline's own data (`dvc repro` first: data/faces, data/pairs) with the default
params.yaml shortened to `--steps`, once with the flash kernel and once with the unfused slices
(`attention.UNFUSED_CPU_TRAINING`) per round, each in its own process so that neither warms the
other's caches. Everything is written under a temporary folder. Prints one images/s row per round:
these machines' speed drifts by about 10 % within minutes, so only rows of the same run compare.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]

RUN = r"""
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from pipeline.model import attention
from stages.pretrain import pretrain
attention.UNFUSED_CPU_TRAINING = sys.argv[3] == "slices"
out = Path(sys.argv[4])
m = pretrain(Path(sys.argv[2]), faces_dir=Path(sys.argv[1]) / "data/faces", pairs_dir=Path(sys.argv[1]) / "data/pairs",
             model_path=out / "model.pt", state_path=out / "state.pt", metrics_path=out / "metrics.json",
             sheet_path=out / "samples.png", live_dir=out / "live")
print(json.dumps({"images_per_s": m["images_per_s"], "seconds": m["seconds"]}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=90, help="optimizer steps per run")
    ap.add_argument("--rounds", type=int, default=2, help="flash / slices pairs")
    args = ap.parse_args()
    if not (ROOT / "data/pairs").is_dir():
        raise SystemExit("no data/pairs: run `dvc repro pairs` first")
    with tempfile.TemporaryDirectory(prefix="animecolor-bench-") as tmp:
        params = yaml.safe_load((ROOT / "params.yaml").read_text())
        params["pretrain"]["loop"].update(train_steps=args.steps, checkpoint_every=10 * args.steps)
        params_path = Path(tmp) / "params.yaml"
        params_path.write_text(yaml.safe_dump(params))
        print(f"pretrain stage, {args.steps} steps, default params (images/s; higher is better)\n")
        print("| round | flash attention, bf16 | unfused attention in batch slices (default) |")
        print("|---|---|---|")
        for r in range(args.rounds):
            cells = []
            for kernel in ("flash", "slices"):
                out = Path(tmp) / f"{kernel}{r}"
                out.mkdir()
                done = subprocess.run([sys.executable, "-c", RUN, str(ROOT), str(params_path), kernel, str(out)],
                                      capture_output=True, text=True, check=True)
                cells.append(f"{json.loads(done.stdout.strip().splitlines()[-1])['images_per_s']:.1f}")
            print(f"| {r + 1} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
