#!/usr/bin/env bash
# LSM against FNO on Navier-Stokes (2D vorticity, nu = 1e-5, 64^2; frames t = 1..10 in, 11..20 out) at a CPU
# budget (benchmarks/README.md, "Navier-Stokes on a CPU budget").
#   data: 400 training-file trajectories (seed 0: 360 train + 40 validation) and a separate 100-trajectory test
#         file (seed 1), solved at 64^2 (about 85 and 22 min on one core each, side by side).
#   training: the same data and budget for both models, one core each, side by side: batch 8, lr 1e-3, cosine
#         schedule over an epoch count that fits about 45 minutes (FNO 35, LSM 15), --max-minutes 50 as a cap.
#         FNO is FNO's fourier_2d_time configuration (12 modes, width 20, 4 layers, 0.93 M parameters); LSM is
#         the width-16 network of the shipped lsm-darcy (1.21 M parameters): the authors' width 64 (19.2 M) takes
#         about 3 s per trajectory per epoch on one core here, 18 minutes per epoch.
#   Set NS_TRAIN, NS_VAL, NS_TEST, EPOCHS_FNO, EPOCHS_LSM, LSM_WIDTH, MINUTES to change the budget (a GPU: the
#   paper's 1000/200 split, LSM_WIDTH=64, 500 epochs).
set -euo pipefail
cd "$(dirname "$0")/.."
work=${WORK:-krylearn-work/ns}
out=${RESULTS:-benchmarks/results/ns-cpu}
mkdir -p "$work" "$out"
export OMP_NUM_THREADS=1
ntrain=${NS_TRAIN:-360}
nval=${NS_VAL:-40}
ntest=${NS_TEST:-100}
train=$work/ns_s0_n$((ntrain + nval)).h5
test=$work/ns_s1_n$ntest.h5
[ -f "$train" ] || krylearn data ns --n $((ntrain + nval)) --seed 0 --batch 8 -q -o "$train" &
[ -f "$test" ] || krylearn data ns --n "$ntest" --seed 1 --batch 10 -q -o "$test" &
wait
common="--task ns --data $train --test $test --ntrain $ntrain --nval $nval --ntest $ntest --batch-size 8 --lr 1e-3
        --schedule cosine --max-minutes ${MINUTES:-50} -q"
krylearn train lsm --kind fno $common --epochs "${EPOCHS_FNO:-35}" --out "$work/fno-ns" &
krylearn train lsm --kind lsm --width "${LSM_WIDTH:-16}" $common --epochs "${EPOCHS_LSM:-15}" --out "$work/lsm-ns" &
wait
krylearn bench ns --data "$test" --models "$work/lsm-ns,$work/fno-ns" --out "$out" -q | tee "$out/ns.txt"
cp "$work"/{lsm,fno}-ns.json "$work"/{lsm,fno}-ns-loss.png "$out"/
