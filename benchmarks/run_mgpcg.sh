#!/usr/bin/env bash
# Geometric-multigrid PCG (mgpcg) on the per-frame job and across grid sizes (benchmarks/README.md,
# "Per-frame pressure solves" and "Iterations against grid size").
# One thread everywhere (torch, numba, BLAS), one benchmark at a time. About 75 minutes on a 2-core
# CPU for steps 1-3; step 4, the re-run after the kernel rewrite ("mgpcg after the kernel rewrite"),
# about 20 minutes. The simulations solve their own pressure with mgpcg (--sim-solver). In steps 1-3
# the network DCDM runs on a few frames at 512^2 and not in 3D: one 512^2 solve takes about a minute
# here, one 64^3 solve 20 s; step 4 runs the default dcdm (the learned V-cycle) beside mgpcg.
set -euo pipefail
cd "$(dirname "$0")/.."
out=benchmarks/results/frames
scaling=benchmarks/results/mgpcg
mkdir -p "$out" "$scaling/2d" "$scaling/3d" "$scaling/3d-256"
export OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
frames() { krylearn bench poisson --scene smoke-obstacle --sim-solver mgpcg --out "$out" -q "$@"; }
sizes() { krylearn bench dcdm --sim-solver mgpcg -q "$@"; }
step="${1:-all}"
if [[ $step == all || $step == 1 ]]; then
  frames --dim 2 --n 256 --sequence 50 --methods cg,pcg-ic,pcg-amg,mgpcg,dcdm | tee "$out/mgpcg-2d-256.txt"
fi
if [[ $step == all || $step == 2 ]]; then
  frames --dim 3 --n 128 --sequence 50 --methods pcg-amg,mgpcg | tee "$out/mgpcg-3d-128.txt"
  sizes --dim 3 --sizes 64,128 --methods cg,pcg-amg,mgpcg --out "$scaling/3d" | tee "$scaling/3d/scaling-3d.txt"
  sizes --dim 2 --sizes 128,256,512,1024 --methods cg,pcg-amg,mgpcg --out "$scaling/2d" | tee "$scaling/2d/scaling-2d.txt"
  frames --dim 2 --n 512 --sequence 50 --methods cg,pcg-ic,pcg-amg,mgpcg | tee "$out/mgpcg-2d-512.txt"
  frames --dim 3 --n 64 --sequence 50 --methods cg,pcg-ic,pcg-amg,mgpcg | tee "$out/mgpcg-3d-64.txt"
fi
if [[ $step == all || $step == 3 ]]; then
  frames --dim 3 --n 128 --sequence 10 --methods cg,pcg-ic,mgpcg | tee "$out/mgpcg-3d-128-10.txt"
  sizes --dim 3 --sizes 256 --methods mgpcg --warmup 0 --out "$scaling/3d-256" | tee "$scaling/3d-256/scaling-3d-256.txt"
  frames --dim 2 --n 512 --sequence 5 --methods mgpcg,dcdm | tee "$out/mgpcg-2d-512-dcdm.txt"
fi
if [[ $step == all || $step == 4 ]]; then
  k=benchmarks/results/mgpcg-kernels
  mkdir -p "$k"
  kframes() { krylearn bench poisson --scene smoke-obstacle --sim-solver mgpcg --out "$k" -q "$@"; }
  kframes --dim 2 --n 256 --sequence 50 --methods cg,pcg-amg,mgpcg | tee "$k/mgpcg-2d-256.txt"
  kframes --dim 3 --n 64 --sequence 50 --methods cg,pcg-amg,mgpcg | tee "$k/mgpcg-3d-64.txt"
  kframes --dim 2 --n 512 --sequence 50 --methods pcg-amg,mgpcg | tee "$k/mgpcg-2d-512.txt"
  kframes --dim 3 --n 128 --sequence 10 --methods pcg-amg,mgpcg | tee "$k/mgpcg-3d-128.txt"
  mkdir -p "$k/dcdm"
  dframes() { krylearn bench poisson --sim-solver mgpcg --methods mgpcg,dcdm --out "$k/dcdm" -q "$@"; }
  dframes --scene smoke-obstacle --dim 2 --n 512 --sequence 50 | tee "$k/dcdm/2d-512.txt"
  dframes --scene smoke-obstacle --dim 3 --n 128 --sequence 20 | tee "$k/dcdm/3d-128.txt"
fi
