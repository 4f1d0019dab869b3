#!/usr/bin/env bash
# LSM against FNO and U-Net on Darcy flow at 85^2, plus LSM-warm-started CG / AMG-PCG (benchmarks/README.md, "LSM").
#   data: 1200 training-file samples (seed 0: 1000 train + 100 validation) and a separate
#         200-sample test file (seed 1), both 421^2 solves sub-sampled by 5 (about 25 min).
#   training: the same data and budget for every model (35 epochs, StepLR x0.5 every 7,
#         the paper's 501/100 schedule compressed); LSM width 16 (the shipped lsm-darcy is this run),
#         FNO 12 modes / width 32 / 4 layers, U-Net width 32 / 4 levels. About 50, 60 and 45 min on
#         one core each. The baselines are not shipped; their weights land in $work.
# Torch runs single-threaded (OMP_NUM_THREADS=1): on the 2-core VM this is faster than 2 threads,
# and two trainings run side by side.  Set RETRAIN_LSM=1 to retrain LSM instead of using lsm-darcy.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${WORK:-krylearn-work/darcy}
out=benchmarks/results/darcy
mkdir -p "$work" "$out"
export OMP_NUM_THREADS=1
train=$work/darcy_r421_s5_n1200.h5
test=$work/darcy_r421_s5_n200_seed1.h5
[ -f "$train" ] || krylearn data darcy --n 1200 --res 421 --sub 5 --seed 0 -q -o "$train"
[ -f "$test" ] || krylearn data darcy --n 200 --res 421 --sub 5 --seed 1 -q -o "$test"
common="--data $train --test $test --ntrain 1000 --nval 100 --ntest 200 --epochs 35 --step-size 7 -q"
lsm=lsm-darcy
if [ "${RETRAIN_LSM:-0}" = 1 ]; then
  krylearn train lsm --kind lsm --width 16 $common --out "$work/lsm-darcy" & lsm=$work/lsm-darcy
fi
[ -f "$work/fno-darcy.safetensors" ] || krylearn train lsm --kind fno $common --out "$work/fno-darcy" &
wait
[ -f "$work/unet-darcy.safetensors" ] || krylearn train lsm --kind unet $common --out "$work/unet-darcy"
krylearn bench darcy --data "$test" --start 0 --count 200 --models "$lsm,$work/fno-darcy,$work/unet-darcy" \
  --warm-count 20 --rtol 1e-8 --out "$out" -q | tee "$out/darcy.txt"
