"""Does bfloat16 autocast change what the Darcy LSM learns?  Same data, seed and schedule, float32 against bf16.

300 Darcy samples made at 85^2 directly (``generate_darcy(res=85, sub=1,
seed=5)``), 250 for training and 50 for validation; LSM width 16, 12
epochs, StepLR every 4, 2 threads.  Prints the wall time and the
validation relative L2 per epoch of each run (benchmarks/README.md, LSM).
Run: ``python benchmarks/scripts/lsm_bf16_ab.py [epochs]`` (about 4 minutes
on a 2-core CPU).
"""

import sys
import tempfile
import time
from pathlib import Path

import torch

from krylearn.datasets.pde_formats import read_darcy
from krylearn.problems.darcy import generate_darcy
from krylearn.solvers.lsm import LSM2d, train_operator


def ab_data():
    """The A/B runs' 300 Darcy samples at 85^2 (seed 5): ``DarcyData``, 250 to train on and 50 to validate."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "darcy85.h5"
        generate_darcy(path, 300, res=85, sub=1, seed=5, progress=False, workers=1)
        return read_darcy(path)


def main():
    epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 12
    torch.set_num_threads(2)
    d = ab_data()
    for bf16 in (False, True):
        torch.manual_seed(0)
        t = time.perf_counter()
        r = train_operator(LSM2d(1, 1, width=16), d.a[:250], d.u[:250], d.a[250:], d.u[250:], epochs=epochs,
                           step_size=4, seed=0, progress=False, bf16=bf16)
        print(f"{'bf16' if bf16 else 'fp32'}: {time.perf_counter() - t:.0f} s; validation rel. L2 per epoch "
              + ", ".join(f"{v:.4f}" for v in r["val_loss"]))


if __name__ == "__main__":
    main()
