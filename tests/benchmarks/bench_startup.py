"""Start-up cost of the command line: `animecolor --help` and one 64 px `colorize`, side by side
with a baseline revision of the repository in the same run.

    python tests/benchmarks/bench_startup.py [--baseline 44c354c] [--repeats 5]

The baseline is checked out into a temporary git worktree and run with the same Python, so both
columns see the same machine, caches and load. The model is the default params.yaml architecture
(untrained weights: start-up and sampling cost do not depend on training), exported by each
revision's own code path. Prints the median wall time of `--repeats` runs (after one warm-up).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

MAKE_INPUTS = r"""
import sys, numpy as np, cv2, torch
sys.path.insert(0, ".")
from pipeline.model.unet import UNet, UNetConfig
from pipeline.model.diffusion import DiffusionConfig
from pipeline.colorize import export_model
out = sys.argv[1]
cfg = UNetConfig(image_size=64, channels=32, channel_mults=(1, 2, 2), res_blocks=1)
torch.manual_seed(0)
model = UNet(cfg)
to_dict = getattr(cfg, "to_dict")
checkpoint = {"unet": to_dict(), "diffusion": DiffusionConfig().to_dict(), "ema": model.state_dict()}
export_model(checkpoint, out + "/m.safetensors")
img = np.full((64, 64, 3), 255, np.uint8); cv2.circle(img, (32, 32), 20, (0, 0, 0), 1)
cv2.imwrite(out + "/sketch.png", img)
ref = np.zeros((64, 64, 3), np.uint8); ref[:] = (40, 90, 200)
cv2.imwrite(out + "/ref.png", ref)
"""


def timed(cmd: list[str], cwd: Path, repeats: int) -> float:
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)  # warm-up (page cache, .pyc)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(src: Path, work: Path, repeats: int) -> tuple[float, float]:
    subprocess.run([sys.executable, "-c", MAKE_INPUTS, str(work)], cwd=src, check=True)
    cli = [sys.executable, "-c", "import sys; sys.path.insert(0, '.'); from stages.cli import app; app()"]
    help_s = timed([*cli, "--help"], src, repeats)
    colorize_s = timed([*cli, "colorize", str(work / "sketch.png"), "-r", str(work / "ref.png"), "--model",
                        str(work / "m.safetensors"), "-o", str(work / "out.png"), "--device", "cpu"], src, repeats)
    return help_s, colorize_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", default="44c354c", help="git revision to compare with")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base_src = tmp / "baseline"
        subprocess.run(["git", "worktree", "add", "--detach", str(base_src), args.baseline], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            (tmp / "a").mkdir(), (tmp / "b").mkdir()
            new = measure(ROOT, tmp / "a", args.repeats)
            old = measure(base_src, tmp / "b", args.repeats)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base_src)], cwd=ROOT, capture_output=True)
    print(f"median of {args.repeats} runs, seconds | this tree | {args.baseline}")
    print(f"animecolor --help                       | {new[0]:.2f} | {old[0]:.2f}")
    print(f"animecolor colorize (64 px, 20 steps)   | {new[1]:.2f} | {old[1]:.2f}")


if __name__ == "__main__":
    main()
