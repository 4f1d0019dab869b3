#!/usr/bin/env bash
# Regenerates the bandit-tuned SOR tables and plots in benchmarks/results/relax/ (quoted in benchmarks/README.md).
# About 40 minutes on a 2-core CPU (the 99^2 heat sequence with T = 5000 is most of it).
# The grid-cost caches (*.npz) are written beside the results and not committed.
# One torch thread: on a shared 2-core machine torch's thread pool made small CG steps 30-80x slower.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
out=benchmarks/results/relax
mkdir -p "$out"
krylearn bench relax --sequence shifted-low,shifted-high --T 5000 --seeds 5 --out "$out" -q | tee "$out/shifted-T5000.txt"
krylearn bench relax --sequence heat2d --n 64 --T 1000 --seeds 5 --out "$out" -q | tee "$out/heat2d-n64-T1000.txt"
krylearn bench relax --sequence heat2d --n 64 --T 1000 --seeds 5 --no-warm-start --out "$out" -q | tee "$out/heat2d-n64-T1000-cold.txt"
krylearn bench relax --sequence heat2d --n 99 --T 5000 --seeds 5 --out "$out" -q | tee "$out/heat2d-n99-T5000.txt"
