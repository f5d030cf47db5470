"""Benchmark: `clean` throughput and anime-face detection recall on real faces.

    python tests/benchmarks/bench_clean.py [--n 1200]

Runs on ../shared/data/anime-faces-256 (1,200 TV-anime face crops, every one a face, so
kept / (kept + no_face) is the detector's recall). Baseline in the same run: the same
images with face detection off (decode, checks, de-duplication, resize and write only).
"""

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd

from pipeline.data.clean import CleanConfig, clean_dataset

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "anime-faces-256"

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1200)
    args = ap.parse_args()
    files = sorted(DATA.glob("*.jpg"))[: args.n]
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw"
        raw.mkdir()
        pd.DataFrame({"file": [str(f) for f in files]}).to_csv(raw / "manifest.csv", index=False)
        for detect in ("none", "animeface"):
            start = time.perf_counter()
            m, _ = clean_dataset(raw, Path(tmp) / detect, CleanConfig(face_detect=detect), 256)
            secs = time.perf_counter() - start
            counts = m.reason.fillna("").replace("", "kept").value_counts().to_dict()
            kept, miss = counts.get("kept", 0), counts.get("no_face", 0)
            recall = f"{kept / (kept + miss):.3f}" if detect == "animeface" else "-"
            print(f"face_detect={detect:9s} {len(files)} images {secs:6.1f} s {len(files) / secs:6.1f} img/s "
                  f"recall={recall} outcomes={counts}")
