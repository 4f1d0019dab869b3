#!/usr/bin/env bash
# DDS: the broad priors dds-mri-broad / dds-ct-broad, and the prior chosen per scan (benchmarks/README.md,
# "A broader prior, chosen per scan").
#   1. trains both priors on the broad corpus (krylearn.problems.broad_images), side by side, one core each,
#      for MINUTES minutes (default 68; the shipped ones: 7611 MRI steps, 4059 CT steps);
#   2. validation (the decision): DDS with each prior, defaults and --auto, on the template's val band and
#      on crops of the two held-out pictures (coffee, chelsea), MRI x4 / x8 and CT 8 / 16 views;
#   3. test: the same on the EPI slices, the photographs and the template's test band (CT at 16 views);
#      the classical rows come from benchmarks/results/dds-auto (every draw is seeded);
#   4. the denoising loss of all four priors on every set (benchmarks/scripts/dds_generalisation.py).
# Measured (2026-12-08, the 2-core AMD EPYC VM, one thread per job): 68 min of training, then about
# 50 min of evaluation on the two cores.  Outputs: WORK (default /tmp/dds-broad) and benchmarks/results/dds-broad.
set -euo pipefail
cd "$(dirname "$0")/.."
W=${WORK:-/tmp/dds-broad}
M=${MINUTES:-68}
D=benchmarks/results/dds-broad
S=benchmarks/scripts/dds_auto.py
C=benchmarks/scripts/dds_prior_compare.py
mkdir -p "$W" "$D"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
for k in mri ct; do
  krylearn train diffusion --corpus broad --kind $k --out "$W/dds-$k-broad" --max-minutes "$M" -q &
done
wait
mri() {
  python $S mri --sets val-brain,val-photo --out "$W/val-template-mri" --prior dds-mri
  python $S mri --sets val-brain,val-photo --out "$W/val-broad-mri" --prior "$W/dds-mri-broad" --methods dds \
    --baselines-from "$W/val-template-mri/mri.json"
  python $S mri --out "$W/test-template-mri" --prior dds-mri --methods dds \
    --baselines-from benchmarks/results/dds-auto/mri.json
  python $S mri --out "$W/test-broad-mri" --prior "$W/dds-mri-broad" --methods dds \
    --baselines-from benchmarks/results/dds-auto/mri.json
  python benchmarks/scripts/dds_generalisation.py dds-mri dds-ct "$W/dds-mri-broad" "$W/dds-ct-broad" \
    > "$D/generalisation.md"
  python $S ct --count 4 --levels 16 --out "$W/test-broad-ct" --prior "$W/dds-ct-broad" --methods dds \
    --baselines-from benchmarks/results/dds-auto/ct.json
}
ct() {
  python $S ct --sets val-brain,val-photo --count 4 --out "$W/val-template-ct" --prior dds-ct
  python $S ct --sets val-brain,val-photo --count 4 --out "$W/val-broad-ct" --prior "$W/dds-ct-broad" \
    --methods dds --baselines-from "$W/val-template-ct/ct.json"
  python $S ct --count 4 --levels 16 --out "$W/test-template-ct" --prior dds-ct --methods dds \
    --baselines-from benchmarks/results/dds-auto/ct.json
}
mri > "$W/mri.log" 2>&1 &
ct > "$W/ct.log" 2>&1 &
wait
for s in val test; do
  python $C "$W/$s-template-mri/mri.json" "$W/$s-broad-mri/mri.json" --names template,broad --out "$D/$s-mri.md"
  python $C "$W/$s-template-ct/ct.json" "$W/$s-broad-ct/ct.json" --names template,broad --out "$D/$s-ct.md"
done
cp "$W"/dds-*-broad-log.json "$W"/dds-*-broad-loss.png "$D"/
