#!/usr/bin/env bash
# The GPU checks and timings in one run, for a machine with an NVIDIA GPU and torch installed but no package
# index (benchmarks/README.md then gets the tables, with the card named). Steps:
#   1. install what that machine lacks from wheels carried in .whl/ (made beforehand, where an index works:
#      python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#          --platform manylinux2014_x86_64 pyamg sigpy PyWavelets -d .whl), then this package (editable);
#   2. the device tests (tests/test_devices.py: every CUDA path of the solvers, cycles and networks);
#   3. per-frame pressure solves, one Solver per method, warm-started: 3D 128^3 (20 frames) and 256^3
#      (3 frames) for cg, mgpcg, dcdm (the learned V-cycle) on the GPU, and pcg-amg and mgpcg on the
#      host CPU for reference. The simulation runs on the host CPU (mgpcg).
# About 10 minutes on an H100 host with 16 cores; results land in $OUT (or benchmarks/results/gpu).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-benchmarks/results/gpu}"
mkdir -p "$out"
if compgen -G ".whl/*.whl" > /dev/null; then python3 -m pip install -q --no-deps --no-index .whl/*.whl; fi
python3 -m pip install -q --no-deps --no-build-isolation -e .
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -m pytest -q -p no:cacheprovider tests/test_devices.py 2>&1 | tail -5 | tee "$out/test_devices.txt"
frames() { python3 -m krylearn bench poisson --sim-solver mgpcg --solver-only -q --out "$out" "$@"; }
frames --scene smoke-obstacle --dim 3 --n 128 --sequence 20 --methods cg,mgpcg,dcdm --device cuda \
  | tee "$out/3d-128-cuda.txt"
frames --scene smoke-obstacle --dim 3 --n 128 --sequence 20 --methods pcg-amg,mgpcg | tee "$out/3d-128-cpu.txt"
frames --scene smoke-obstacle --dim 3 --n 256 --sequence 3 --methods cg,mgpcg,dcdm --device cuda \
  | tee "$out/3d-256-cuda.txt"
