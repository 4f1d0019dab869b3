"""Coil maps from narrow centres on real scans (docs/dds.md, "Coil maps from narrow centres").

The narrow-centre table of ``narrow_centre.py`` on images that are not a
phantom: 4 real EPI brain slices (nibabel's ``example4d.nii.gz``, see
``dds_auto.py``) and 4 slices of the brain template's test band, with a
smooth random phase, 8 birdcage coils simulated on the 2x finer grid, 30 dB
noise, a uniform column mask x4 / x8 whose fully sampled centre is 2 to 6
lines wide.  For each: mean (and worst) PSNR in dB of CG-SENSE with the true
maps, the joint maps (``joint_maps``, its defaults), the low-resolution maps,
ESPIRiT (6 lines), and of the zero-filled image.

Run: ``OMP_NUM_THREADS=1 python benchmarks/scripts/narrow_centre_scans.py [epi] [brain]``
(about 3 minutes per set on one CPU thread).
"""

import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from krylearn.operators.mri import SenseOperator, espirit_maps, ifft2c, joint_maps, lowres_maps, rss
from krylearn.pipelines.reconstruct import run_method
from krylearn.problems.simulate import simulate_mri
from krylearn.solvers.imaging import psnr

sys.path.insert(0, str(Path(__file__).parent))
from dds_auto import images  # noqa: E402  (the same image sets as the per-scan choice benchmark)
from narrow_centre import N, centre_mask  # noqa: E402

COLS = ("true", "joint", "low-resolution", "espirit", "zero-filled")


def row(x, accel, acs):
    mask = centre_mask(accel, acs)
    sim = simulate_mri(x, 8, mask=mask, snr_db=30, seed=1, downsample=2)
    ref = np.abs(sim.image)
    out = {c: [] for c in COLS}
    for i in range(len(x)):
        k = sim.kspace[i]
        maps = {"true": sim.maps[i], "joint": joint_maps(k, mask), "low-resolution": lowres_maps(k, (None, acs))}
        if acs >= 6:
            maps["espirit"] = espirit_maps(k, calib_width=acs, kernel_width=min(6, acs // 2))
        for name, m in maps.items():
            A = SenseOperator(m.astype(np.complex64), mask.astype(np.float32))
            out[name].append(psnr(np.abs(run_method("mri", "cg-sense", A, k)[0]), ref[i]))
        out["zero-filled"].append(psnr(rss(ifft2c(torch.as_tensor(k))).numpy(), ref[i]))
    return {c: (np.mean(v), np.min(v)) for c, v in out.items() if v}


def main(sets):
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    print("| set | accel | centre lines | " + " | ".join(COLS) + " |\n|---|---:|---:|" + "---:|" * len(COLS))
    for name in sets:
        x = images(name, "mri", N)[:4]
        for accel in (4, 8):
            for acs in (2, 3, 4, 5, 6):
                r = row(x, accel, acs)
                cells = [f"{r[c][0]:.1f} ({r[c][1]:.1f})" if c in r else "-" for c in COLS]
                print(f"| {name} | x{accel} | {acs} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or ["epi", "brain"])
