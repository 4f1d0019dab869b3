#!/usr/bin/env bash
# Geometric-multigrid PCG (mgpcg) on the per-frame job and across grid sizes (benchmarks/README.md,
# "Per-frame pressure solves" and "Iterations against grid size").
# One thread everywhere (torch, numba, BLAS), one benchmark at a time. About 80 minutes on a 2-core
# CPU; the 128^3 frames dominate. The simulations solve their own pressure with mgpcg (--sim-solver).
set -euo pipefail
cd "$(dirname "$0")/.."
out=benchmarks/results/frames
mkdir -p "$out"
export OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
frames() { krylearn bench poisson --scene smoke-obstacle --sim-solver mgpcg --out "$out" -q "$@"; }
frames --dim 2 --n 256 --sequence 50 --methods cg,pcg-ic,pcg-amg,mgpcg,dcdm | tee "$out/mgpcg-2d-256.txt"
frames --dim 2 --n 512 --sequence 50 --methods cg,pcg-ic,pcg-amg,mgpcg,dcdm | tee "$out/mgpcg-2d-512.txt"
frames --dim 3 --n 64 --sequence 50 --methods cg,pcg-ic,pcg-amg,mgpcg | tee "$out/mgpcg-3d-64.txt"
frames --dim 3 --n 128 --sequence 50 --methods pcg-amg,mgpcg | tee "$out/mgpcg-3d-128.txt"
frames --dim 3 --n 128 --sequence 10 --methods cg,pcg-ic,mgpcg | tee "$out/mgpcg-3d-128-cg.txt"
scaling=benchmarks/results/mgpcg
mkdir -p "$scaling/2d" "$scaling/3d" "$scaling/3d-256"
krylearn bench dcdm --dim 2 --sizes 128,256,512,1024 --methods cg,pcg-amg,mgpcg --sim-solver mgpcg \
  --out "$scaling/2d" -q | tee "$scaling/2d/scaling-2d.txt"
krylearn bench dcdm --dim 3 --sizes 64,128 --methods cg,pcg-amg,mgpcg --sim-solver mgpcg \
  --out "$scaling/3d" -q | tee "$scaling/3d/scaling-3d.txt"
krylearn bench dcdm --dim 3 --sizes 256 --methods mgpcg --sim-solver mgpcg --warmup 0 \
  --out "$scaling/3d-256" -q | tee "$scaling/3d-256/scaling-3d-256.txt"
