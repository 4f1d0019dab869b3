#!/usr/bin/env bash
# DDS: the MRI and CT tables and figures of benchmarks/README.md ("DDS"), from the shipped priors
# dds-mri (complex 64^2 brain slices) and dds-ct (128^2 brain slices).
#   MRI: the 16 held-out test-band slices of the MNI152 brain at 64^2, 8 birdcage coils, k-space SNR 30 dB,
#        simulated on a 2x finer grid (no inverse crime); uniform 1D x4 / x8 and Poisson-disc x8; zero-filled,
#        CG-SENSE, L1-wavelet, TV, DDS at 19/49/99 NFE and DPS-1000 on 8 of the slices (the DDS/DPS
#        quality and speed comparison uses exactly those 8). CG's iterations, the L1/TV weights and DDS's
#        (gamma, CG steps per diffusion step) are tuned per case on 2 validation-band slices (--tune), never on
#        test slices.
#   CT:  the 16-slice held-out test volume at 128^2 (MR anatomy used as an attenuation-like map), noiseless
#        sinograms simulated on a 2x finer grid, 8 / 16 / 32 views; FBP, least-squares CG, 3D ADMM-TV,
#        3D DDS-49 and DPS-1000 on 2 slices; CG iterations, the ADMM-TV weight and DDS's weight of TV along z
#        tuned on 4 validation slices. DPS's step zeta = 0.3 was chosen by hand on validation slices at 8 views
#        (DPS-1000, zeta 1 / 0.3 / 0.1: 21.3 dB on 2 slices / 23.4 dB on 2 / 21.7 dB on 4); DPS is too slow to tune
#        per case here.
# Measured (2026-11-27, the 2-core AMD EPYC VM, one torch thread per benchmark, each on its own core):
#   bench mri 16 min: classical ~0.15 s/slice, DDS 19/49/99 ~0.36/0.87/1.74 s/slice, DPS-1000 ~28 s/slice on
#        8 slices per case;
#   bench ct 14 min: FBP/CG < 0.1 s/slice, 3D ADMM-TV ~0.5 s/slice, 3D DDS-49 ~3.2 s/slice, DPS-1000 ~78 s/slice
#        on 2 slices per view count.
# A missing prior is reported (a note in the tables, "TARGET not run" lines) and the classical rows still
# come out. Outputs: benchmarks/results/dds/{mri,ct}.{json,md}, {mri,ct}-images.h5, one PNG per case.
set -euo pipefail
cd "$(dirname "$0")/.."
out=benchmarks/results/dds
mkdir -p "$out"
export OMP_NUM_THREADS=1
# The two benchmarks run side by side, one process (one torch thread) on each of the VM's two cores.
krylearn bench mri --prior dds-mri --size 64 --slices 16 --cases uniform1d:4,uniform1d:8,poisson2d:8 \
  --snr 30 --coils 8 --methods zero-filled,cg-sense,l1-wavelet,tv,dds,dps --dds-nfe 19,49,99 \
  --dps-nfe 1000 --dps-count 8 --tune --tune-slices 2 --seed 0 --out "$out" -q > "$out/mri.txt" 2>&1 &
mri=$!
krylearn bench ct --prior dds-ct --size 128 --slices 16 --views 8,16,32 --noise 0 \
  --methods fbp,cg,admm-tv,dds,dps --dds-nfe 49 --dps-nfe 1000 --dps-count 2 --dps-zeta 0.3 --tune --tune-slices 4 \
  --seed 0 --out "$out" -q > "$out/ct.txt" 2>&1 &
ct=$!
status=0
wait "$mri" || { echo "bench mri failed (see $out/mri.txt)"; status=1; }
wait "$ct" || { echo "bench ct failed (see $out/ct.txt)"; status=1; }
cat "$out/mri.txt" "$out/ct.txt"
exit "$status"
