"""CG-SENSE with coil maps from narrow fully sampled centres (docs/dds.md, "Coil maps from narrow centres").

A 64^2 Shepp-Logan phantom, 8 birdcage coils, 30 dB complex noise, a x4
uniform column mask whose centre is 1, 2, 3, 5, 6 or 8 lines wide.  For
each: PSNR (dB) of CG-SENSE with the true maps, with the maps `krylearn
reconstruct mri` picks by itself, with the joint maps, with the
low-resolution maps, and of the zero-filled image.  Run: ``python benchmarks/scripts/narrow_centre.py``
(a few seconds on a CPU).
"""

import tempfile
import warnings
from pathlib import Path

import h5py
import numpy as np
import torch

from krylearn.datasets.fastmri import read_reconstruction, write_kspace
from krylearn.operators.mri import birdcage_maps, fft2c, joint_maps, lowres_maps
from krylearn.pipelines.reconstruct import reconstruct_mri
from krylearn.problems.phantoms import shepp_logan

N = 64


def psnr(a, b):
    return 20 * np.log10(np.abs(b).max() / np.sqrt(np.mean((np.abs(a) - np.abs(b)) ** 2)))


def centre_mask(accel: int, acs: int, n: int = N) -> np.ndarray:
    """A uniform column mask (every ``accel``-th line) whose fully sampled centre is exactly ``acs`` lines."""
    mask = np.zeros(n, bool)
    mask[::accel] = True
    c = n // 2 - acs // 2
    mask[c - 1:c + acs + 1] = False
    mask[c:c + acs] = True
    return mask


def run(tmp: Path, x, maps, k, acs):
    mask = centre_mask(4, acs)
    ku = (k * mask).astype(np.complex64)
    row = {}

    def cg(path):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rep = reconstruct_mri(path, tmp / "out.h5", "cg-sense", progress=False, previews=False)
        return psnr(read_reconstruction(tmp / "out.h5")[0][0], x[0]), rep["maps"]

    for name, m in (("true maps", np.broadcast_to(maps, ku.shape)),
                    ("joint maps", joint_maps(ku[0], mask)[None]),
                    ("low-resolution maps", lowres_maps(ku[0], (None, acs))[None])):
        with h5py.File(tmp / "f.h5", "w") as f:
            f["kspace"], f["sensitivity_maps"], f["mask"] = ku, np.ascontiguousarray(m), mask
        row[name] = f"{cg(tmp / 'f.h5')[0]:.1f}"
    write_kspace(tmp / "k.h5", ku, mask=mask)
    try:
        value, label = cg(tmp / "k.h5")
        row["default maps"] = f"{label.split(' (')[0]}, {value:.1f}"
    except ValueError:
        row["default maps"] = "none: error"
    reconstruct_mri(tmp / "k.h5", tmp / "zf.h5", "zero-filled", progress=False, previews=False)
    row["zero-filled"] = f"{psnr(read_reconstruction(tmp / 'zf.h5')[0][0], x[0]):.1f}"
    return row


def main():
    rng = np.random.default_rng(0)
    x = np.abs(shepp_logan((N, N))).astype(np.complex64)[None]
    maps = birdcage_maps(8, (N, N)).astype(np.complex64)
    k = fft2c(torch.as_tensor(maps[None] * x[:, None])).numpy()
    sigma = np.linalg.norm(k) / np.sqrt(k.size) * 10 ** (-30 / 20)
    k = k + (sigma / np.sqrt(2) * (rng.standard_normal(k.shape) + 1j * rng.standard_normal(k.shape))).astype(k.dtype)
    cols = ("true maps", "default maps", "joint maps", "low-resolution maps", "zero-filled")
    print("| centre lines | " + " | ".join(cols) + " |\n|---:|" + "---:|" * len(cols))
    with tempfile.TemporaryDirectory() as tmp:
        for acs in (1, 2, 3, 5, 6, 8):
            row = run(Path(tmp), x, maps, k, acs)
            print(f"| {acs} | " + " | ".join(row[c] for c in cols) + " |")


if __name__ == "__main__":
    main()
