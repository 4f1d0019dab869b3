"""mgpcg's smoothers on single smoke frames: damped Jacobi against red-black Gauss-Seidel.

Frame 10 of each scene (seed 0), solved to rtol 1e-6 on the ``PoissonGrid``
from scratch (setup + solve, best of 5), on one thread.  Prints a markdown
table: iterations and milliseconds per solve for each smoother setting.

    OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 python benchmarks/scripts/mgpcg_smoothers.py [--big]

``--big`` runs the 3D 128^3 frames instead of 2D 256^2 / 512^2 and 3D 64^3.
"""

import argparse

import torch

from krylearn.benchmarks.frames import record_frames
from krylearn.solvers.api import solve

SETTINGS = (("jacobi", 2), ("jacobi", 3), ("rbgs", 1), ("rbgs", 2))


def best_solve(A, b, smoother: str, sweeps: int, repeats: int = 5) -> tuple[int, float]:
    """(iterations, best seconds of setup + solve) over ``repeats`` fresh solves."""
    best, its = float("inf"), None
    for _ in range(repeats):
        r = solve(A, b, method="mgpcg", rtol=1e-6, smoother=smoother, sweeps=sweeps)
        assert r.converged
        best, its = min(best, r.setup_seconds + r.solve_seconds), r.iterations
    return its, best


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--big", action="store_true", help="3D 128^3 frames only")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cases = ((3, 128),) if args.big else ((2, 256), (2, 512), (3, 64))
    head = " | ".join(f"{s} × {n}" for s, n in SETTINGS)
    print(f"| scene | grid | {head} | best red-black / Jacobi 2 |")
    print("|---|---|" + "---|" * len(SETTINGS) + "---:|", flush=True)
    for scene in ("smoke-obstacle", "smoke-plume"):
        for dim, n in cases:
            seq = record_frames(scene, dim, n, 11, sim_solver="mgpcg")
            res = [best_solve(seq["ops"][10], seq["b"][10], s, k) for s, k in SETTINGS]
            cells = " | ".join(f"{it} it., {1e3 * t:.1f} ms" for it, t in res)
            ratio = min(t for (s, _), (_, t) in zip(SETTINGS, res) if s == "rbgs") / res[0][1]
            print(f"| {scene} | {n}^{dim} | {cells} | {ratio:.2f} |", flush=True)


if __name__ == "__main__":
    main()
