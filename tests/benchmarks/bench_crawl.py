"""Benchmark: synthetic face generation throughput (images/s, one process).

    python tests/benchmarks/bench_crawl.py [--n 200]

Prints the default renderer (supersampled, anti-aliased) next to a baseline in the same
run: the same faces rendered without supersampling (aliased lines), and the cost of the
PNG writes the crawl stage adds.
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from pipeline.data.imageio import write_png
from pipeline.data.synthetic import face_seed, render_face, sample_face


def bench(n: int, size: int, supersample=None, write=False) -> float:
    specs = [sample_face(np.random.default_rng(face_seed(0, i)), 0.1) for i in range(n)]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        for i, spec in enumerate(specs):
            rgb, label = render_face(spec, size, supersample)
            if write:
                write_png(Path(tmp) / f"{i}.png", rgb)
                write_png(Path(tmp) / f"{i}_l.png", label)
        return n / (time.perf_counter() - start)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    args = ap.parse_args()
    print(f"{'size':>5} {'baseline ss=1':>14} {'default (ss)':>14} {'default + PNG':>14}   images/s, 1 process")
    for size in (64, 128, 256):
        ss = 4 if size <= 128 else 2
        base = bench(args.n, size, supersample=1)
        default = bench(args.n, size)
        full = bench(args.n, size, write=True)
        print(f"{size:>5} {base:>14.1f} {default:>10.1f} (x{ss}) {full:>14.1f}")
