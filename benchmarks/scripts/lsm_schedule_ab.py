"""Which learning-rate schedule suits a short LSM training budget?  StepLR against cosine and one-cycle.

The data and network of ``lsm_bf16_ab.py``: 300 Darcy samples made at 85^2
(``generate_darcy(res=85, sub=1, seed=5)``), 250 for training and 50 for
validation; LSM width 16, float32, 2 threads, the same seed for
every run.  Each schedule gets the same epochs (default 12) and peak
learning rate 5e-4 (the paper's); StepLR halves it every ``epochs / 3``
epochs, as the paper's 100 of 501 would at this length.  Prints the wall
time, the best and the last validation relative L2 of each run
(benchmarks/README.md, LSM).  Run: ``python
benchmarks/scripts/lsm_schedule_ab.py [epochs]`` (about 8 minutes on a
2-core CPU at 12 epochs).
"""

import sys
import time

import torch
from lsm_bf16_ab import ab_data  # the same data (this folder is on sys.path when the script runs)

from krylearn.solvers.lsm import LSM2d, train_operator


def main():
    epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 12
    torch.set_num_threads(2)
    d = ab_data()
    print(f"{epochs} epochs, 250 training and 50 validation samples at 85^2, LSM width 16, float32, 2 threads")
    for schedule in ("step", "cosine", "onecycle"):
        torch.manual_seed(0)
        t = time.perf_counter()
        r = train_operator(LSM2d(1, 1, width=16), d.a[:250], d.u[:250], d.a[250:], d.u[250:], epochs=epochs,
                           step_size=max(1, epochs // 3), seed=0, progress=False, schedule=schedule)
        print(f"{schedule}: {time.perf_counter() - t:.0f} s; best validation rel. L2 {r['best_val']:.4f} "
              f"(epoch {r['best_epoch']}), last {r['val_loss'][-1]:.4f}; per epoch "
              + ", ".join(f"{v:.4f}" for v in r["val_loss"]))


if __name__ == "__main__":
    main()
