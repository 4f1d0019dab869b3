#!/usr/bin/env bash
# DCDM against CG / IC-PCG / AMG-PCG on held-out smoke frames (benchmarks/README.md, "DCDM").
# 2D 128^2/256^2/512^2 and 3D 32^3/64^3/128^3, both scenes, scene seed 0 (training used 100/101).
# About 40 minutes on a 2-core CPU (the 3D 128^3 runs dominate). Torch runs single-threaded
# (OMP_NUM_THREADS=1): on this 2-core VM torch's 2-thread pool is slower, and erratic under load.
set -euo pipefail
cd "$(dirname "$0")/.."
out=benchmarks/results/dcdm
mkdir -p "$out"
export OMP_NUM_THREADS=1
krylearn bench dcdm --dim 2 --sizes 128,256,512 --methods cg,pcg-ic,pcg-amg,dcdm,dcdm-pure --model dcdm-2d --out "$out" -q | tee "$out/dcdm-2d.txt"
krylearn bench dcdm --dim 3 --sizes 32,64,128 --methods cg,pcg-ic,pcg-amg,dcdm,dcdm-pure --model dcdm-3d --warmup 0 --out "$out" -q | tee "$out/dcdm-3d.txt"
