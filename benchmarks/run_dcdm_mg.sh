#!/usr/bin/env bash
# DCDM's learned V-cycle (the default dcdm model) against mgpcg on the per-frame job and across grid sizes
# (benchmarks/README.md, "DCDM's learned V-cycle against mgpcg"). One thread everywhere, one benchmark at a
# time; about 55 minutes on a 2-core CPU (step 4, 256^3, another 20). Held-out scene seed 0 (training used seeds 100-161).
set -euo pipefail
cd "$(dirname "$0")/.."
out=benchmarks/results/dcdm-mg
mkdir -p "$out/frames" "$out/2d" "$out/3d"
export OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
frames() { krylearn bench poisson --sim-solver mgpcg --methods mgpcg,dcdm --out "$out/frames" -q "$@"; }
sizes() { krylearn bench dcdm --sim-solver mgpcg --methods mgpcg,dcdm --repeats 3 -q "$@"; }
step="${1:-all}"
if [[ $step == all || $step == 1 ]]; then
  frames --scene smoke-obstacle --dim 2 --n 512 --sequence 50 | tee "$out/frames/2d-512.txt"
  frames --scene smoke-obstacle --dim 3 --n 128 --sequence 50 | tee "$out/frames/3d-128.txt"
fi
if [[ $step == all || $step == 2 ]]; then
  frames --scene smoke-obstacle --dim 2 --n 256 --sequence 50 | tee "$out/frames/2d-256.txt"
  frames --scene smoke-obstacle --dim 3 --n 64 --sequence 50 | tee "$out/frames/3d-64.txt"
  sizes --dim 2 --sizes 128,256,512,1024 --out "$out/2d" | tee "$out/2d/scaling-2d.txt"
  sizes --dim 3 --sizes 64,128 --out "$out/3d" | tee "$out/3d/scaling-3d.txt"
fi
if [[ $step == all || $step == 3 ]]; then
  frames --scene smoke-plume --dim 2 --n 512 --sequence 50 | tee "$out/frames/plume-2d-512.txt"
  frames --scene smoke-plume --dim 3 --n 128 --sequence 50 | tee "$out/frames/plume-3d-128.txt"
fi
if [[ $step == all || $step == 4 ]]; then
  mkdir -p "$out/3d-256"
  sizes --dim 3 --sizes 256 --warmup 0 --repeats 1 --out "$out/3d-256" | tee "$out/3d-256/scaling-3d-256.txt"
fi
