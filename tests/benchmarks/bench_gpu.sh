#!/bin/sh
# The GPU speed paths' device run, from the repository root on a machine with one H100/H200 (under 8 minutes):
#   sh tests/benchmarks/bench_gpu.sh        # then commit $OUT/bench_gpu-*.md under tests/benchmarks/results/
# First the CUDA-only check of the bf16 GroupNorm (seconds), then every section of bench_gpu.py under
# its time budget. Jobs skipped or stopped for time can be rerun alone in a second call, e.g.
#   python tests/benchmarks/bench_gpu.py --jobs train-autotune,trainer,sample-graphs --budget 400 --out $OUT/more.md
set -u
OUT=${OUT:-tests/benchmarks/results}
python -m pytest -q -p no:cacheprovider tests/test_attention.py -k cuda_autocast 2>&1 | tail -3
python tests/benchmarks/bench_gpu.py --out "$OUT/bench_gpu-$(date +%F).md"
