#!/usr/bin/env bash
# fcg-lsm (flexible CG with the LSM preconditioner) against CG, IC-PCG, AMG-PCG and mgpcg on held-out Darcy
# fields at 85^2, 170^2 and 340^2, rtol 1e-8 (benchmarks/README.md, "fcg-lsm: an LSM as the preconditioner").
# One thread; about 5 minutes on a 2-core CPU. Field seed 999 (training used 200, validation 201).
set -euo pipefail
cd "$(dirname "$0")/.."
out=benchmarks/results/fcg-lsm
mkdir -p "$out"
export OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
krylearn bench fcg-lsm --sizes 85,170,340 --fields 3 --repeats 3 --out "$out" -q "$@" | tee "$out/fcg-lsm.txt"
