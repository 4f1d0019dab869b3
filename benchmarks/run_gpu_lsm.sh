#!/usr/bin/env bash
# LSM at the paper's width on a GPU, in two stages that each fit one 10-minute device call
# (benchmarks/README.md, "LSM" and "Navier-Stokes on a CPU budget"):
#   darcy  the FNO-recipe data made on the host's cores (1200 training-file samples, seed 0: 1000 train +
#          100 validation; 200 test samples, seed 1; 421^2 solves sub-sampled to 85^2, about 2 minutes on
#          16 cores), the paper's LSM (width 64, 19 M parameters) timed for 2 epochs, then trained for the
#          epochs that fit DARCY_MINUTES (cosine schedule, best validation epoch kept), and the test file
#          scored beside the shipped lsm-darcy (krylearn bench darcy).
#   ns     the Navier-Stokes data solved on the GPU (NS_TRAIN + NS_VAL trajectories, seed 0; NS_TEST, seed 1),
#          then LSM (width 64) and FNO (12 modes, width 20), each timed for 1 epoch and trained for what
#          fits its minutes, and both rolled out on the test file (krylearn bench ns).
# Usage: bash benchmarks/run_gpu_lsm.sh darcy|ns   (first install as benchmarks/run_gpu.sh does, or let
# INSTALL=1 do it). Results, cards and weights land in $OUT (or benchmarks/results/gpu-lsm); data in $WORK.
# Ship new weights only if they beat the CPU weights on validation: lsm-darcy's best_val_rel_l2 is 0.0103;
# the CPU NS runs reached 0.269 (LSM width 16) and 0.154 (FNO) on validation. Every size and budget is an
# environment variable, so the same script runs on a CPU at toy sizes (tests/test_gpu_scripts.py does).
set -euo pipefail
cd "$(dirname "$0")/.."
stage=${1:?usage: run_gpu_lsm.sh darcy|ns}
out=${OUT:-benchmarks/results/gpu-lsm}
work=${WORK:-krylearn-work/gpu-lsm}
device=${DEVICE:-cuda}
mkdir -p "$out" "$work"
if [ "${INSTALL:-0}" = 1 ]; then
  if compgen -G ".whl/*.whl" > /dev/null; then python3 -m pip install -q --no-deps --no-index .whl/*.whl; fi
  python3 -m pip install -q --no-deps --no-build-isolation -e .
fi
kl() { python3 -m krylearn "$@"; }
if [ "$device" = cuda ]; then nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$out/gpu.txt"; fi

# the epochs of a run that fit $2 minutes, from a timed run's card $1 (its "seconds" over its "epochs")
fit_epochs() {
  python3 - "$1" "$2" <<'EOF'
import json, sys
card = json.load(open(sys.argv[1] + ".json"))
per_epoch = card["seconds"] / card["epochs"]
print(max(1, int(0.9 * float(sys.argv[2]) * 60 / per_epoch)))
EOF
}

# time a 1-2 epoch run of "$@" into $work/$name-probe, then train for what fits $minutes into $out/$name
train_in_budget() {
  local name=$1 minutes=$2 probe_epochs=$3
  shift 3
  kl train lsm "$@" --epochs "$probe_epochs" --no-resume --out "$work/$name-probe" -q
  local epochs
  epochs=$(fit_epochs "$work/$name-probe" "$minutes")
  echo "$name: $(python3 -c "import json; c=json.load(open('$work/$name-probe.json')); print(round(c['seconds']/c['epochs'], 2))") s/epoch; training $epochs epochs" | tee -a "$out/$stage.txt"
  kl train lsm "$@" --epochs "$epochs" --schedule cosine --max-minutes "$minutes" --no-resume --out "$out/$name" -q
}

if [ "$stage" = darcy ]; then
  n=${DARCY_N:-1200}; ntest=${DARCY_TEST:-200}; res=${DARCY_RES:-421}
  nval=$(( n / 12 )); ntrain=$(( n - nval - n / 12 ))
  train=$work/darcy_r${res}_n$n.h5; test=$work/darcy_r${res}_n${ntest}_seed1.h5
  [ -f "$train" ] || kl data darcy --n "$n" --res "$res" --sub 5 --seed 0 -q -o "$train"
  [ -f "$test" ] || kl data darcy --n "$ntest" --res "$res" --sub 5 --seed 1 -q -o "$test"
  : > "$out/darcy.txt"
  train_in_budget lsm-darcy-w${DARCY_WIDTH:-64} "${DARCY_MINUTES:-4}" 2 --kind lsm --width "${DARCY_WIDTH:-64}" \
    --data "$train" --test "$test" --ntrain "$ntrain" --nval "$nval" --ntest "$ntest" --device "$device"
  base=${DARCY_BASELINE-lsm-darcy}  # the shipped CPU weights (85^2 only; empty: none)
  kl bench darcy --data "$test" --start 0 --count "$ntest" --models "${base:+$base,}$out/lsm-darcy-w${DARCY_WIDTH:-64}" \
    --no-warm-start --device "$device" --out "$out" -q | tee -a "$out/darcy.txt"
elif [ "$stage" = ns ]; then
  ntrain=${NS_TRAIN:-1000}; nval=${NS_VAL:-100}; ntest=${NS_TEST:-200}
  size=${NS_SIZE:-64}; dt=${NS_DT:-1e-4}; batch=${NS_BATCH:-550}
  train=$work/ns_s0_n$((ntrain + nval))_$size.h5; test=$work/ns_s1_n${ntest}_$size.h5
  [ -f "$train" ] || kl data ns --n $((ntrain + nval)) --seed 0 --size "$size" --dt "$dt" --batch "$batch" \
    --device "$device" -q -o "$train"
  [ -f "$test" ] || kl data ns --n "$ntest" --seed 1 --size "$size" --dt "$dt" --batch "$batch" \
    --device "$device" -q -o "$test"
  : > "$out/ns.txt"
  common=(--task ns --data "$train" --test "$test" --ntrain "$ntrain" --nval "$nval" --ntest "$ntest"
          --batch-size 20 --lr 1e-3 --device "$device")
  train_in_budget lsm-ns-w${NS_WIDTH:-64} "${NS_MINUTES_LSM:-3}" 1 --kind lsm --width "${NS_WIDTH:-64}" "${common[@]}"
  train_in_budget fno-ns "${NS_MINUTES_FNO:-1.5}" 1 --kind fno "${common[@]}"
  kl bench ns --data "$test" --models "$out/lsm-ns-w${NS_WIDTH:-64},$out/fno-ns" --device "$device" \
    --out "$out" -q | tee -a "$out/ns.txt"
else
  echo "usage: run_gpu_lsm.sh darcy|ns" >&2
  exit 2
fi
