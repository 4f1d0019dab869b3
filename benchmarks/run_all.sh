#!/usr/bin/env bash
# Regenerates every table and plot in benchmarks/results/ (quoted in benchmarks/README.md).
# About 10 minutes on a 2-core CPU; run it on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
out=benchmarks/results
mkdir -p "$out"
methods=cg,pcg-jacobi,pcg-ic,pcg-ssor,pcg-amg
krylearn bench baselines --dim 2 --n 512 --frames 10 --repeats 5 --out "$out" -q | tee "$out/baselines-2d-512.txt"
krylearn bench baselines --dim 3 --n 64 --frames 10 --repeats 5 --out "$out" -q | tee "$out/baselines-3d-64.txt"
for scene in smoke-plume smoke-obstacle; do
  krylearn bench poisson --scene "$scene" --dim 2 --n 512 --frames 10 --methods "$methods" --out "$out" -q | tee "$out/$scene-2d-512-f10.txt"
  krylearn bench poisson --scene "$scene" --dim 3 --n 64 --frames 10 --methods "$methods" --out "$out" -q | tee "$out/$scene-3d-64-f10.txt"
done
krylearn demo -q --out "$out/demo" | tee "$out/demo.txt"
