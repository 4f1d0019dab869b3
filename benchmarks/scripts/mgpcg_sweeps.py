"""import time, torch
from krylearn.benchmarks.frames import record_frames
from krylearn.solvers.api import solve
from krylearn.solvers.solver import Solver
torch.set_num_threads(1)

def fresh(seq, s):
    t = it = 0
    for A, b in zip(seq["ops"], seq["b"]):
        r = solve(A, b, method="mgpcg", rtol=1e-6, sweeps=s); assert r.converged
        t += r.setup_seconds + r.solve_seconds; it += r.iterations
    return t / len(seq["b"]), it / len(seq["b"])

def reused(seq, s):
    t = it = 0; S = x = last = None
    for A, b in zip(seq["ops"], seq["b"]):
        t0 = time.perf_counter()
        if S is None: S = Solver(A, "mgpcg", rtol=1e-6, sweeps=s)
        elif A is not last: S.update(A)
        setup = time.perf_counter() - t0
        r = S.solve(b, x0=x); assert r.converged
        t += setup + r.solve_seconds; it += r.iterations; x, last = r.x, A
    return t / len(seq["b"]), it / len(seq["b"])

print("| scene | grid, frames | fresh: it/frame 2 / 3 sweeps | fresh: ms/frame 2 / 3 | 3 / 2 | Solver: it/frame 2 / 3 | Solver: ms/frame 2 / 3 | 3 / 2 |", flush=True)
print("|---|---|---|---|---:|---|---|---:|", flush=True)
for scene in ("smoke-obstacle", "smoke-plume"):
    for dim, n, F in ((2, 256, 50), (2, 512, 50), (3, 64, 50), (3, 128, 10)):
        seq = record_frames(scene, dim, n, F, sim_solver="mgpcg")
        res = {}
        for path, fn in (("fresh", fresh), ("solver", reused)):
            for s in (2, 3):
                res[path, s] = min((fn(seq, s) for _ in range(2)), key=lambda v: v[0])
        f2, f3, s2, s3 = res["fresh", 2], res["fresh", 3], res["solver", 2], res["solver", 3]
        print(f"| {scene} | {n}^{dim}, {F} | {f2[1]:.1f} / {f3[1]:.1f} | {1e3*f2[0]:.1f} / {1e3*f3[0]:.1f} | {f3[0]/f2[0]:.3f} "
              f"| {s2[1]:.1f} / {s3[1]:.1f} | {1e3*s2[0]:.1f} / {1e3*s3[0]:.1f} | {s3[0]/s2[0]:.3f} |", flush=True)
"""

import time

import torch

from krylearn.benchmarks.frames import record_frames
from krylearn.solvers.api import solve
from krylearn.solvers.solver import Solver

CASES = ((2, 256, 50), (2, 512, 50), (3, 64, 50), (3, 128, 10))


def fresh(seq, sweeps):
    """Mean (seconds, iterations) per frame, a new solve each frame."""
    t = it = 0
    for A, b in zip(seq["ops"], seq["b"]):
        r = solve(A, b, method="mgpcg", rtol=1e-6, sweeps=sweeps)
        assert r.converged
        t += r.setup_seconds + r.solve_seconds
        it += r.iterations
    return t / len(seq["b"]), it / len(seq["b"])


def reused(seq, sweeps):
    """Mean (seconds, iterations) per frame, one Solver warm-started from the previous frame."""
    t = it = 0
    S = x = last = None
    for A, b in zip(seq["ops"], seq["b"]):
        t0 = time.perf_counter()
        if S is None:
            S = Solver(A, "mgpcg", rtol=1e-6, sweeps=sweeps)
        elif A is not last:
            S.update(A)
        setup = time.perf_counter() - t0
        r = S.solve(b, x0=x)
        assert r.converged
        t += setup + r.solve_seconds
        it += r.iterations
        x, last = r.x, A
    return t / len(seq["b"]), it / len(seq["b"])


def main():
    torch.set_num_threads(1)
    print("| scene | grid, frames | fresh: it/frame 2 / 3 sweeps | fresh: ms/frame 2 / 3 | 3 / 2 | "
          "Solver: it/frame 2 / 3 | Solver: ms/frame 2 / 3 | 3 / 2 |")
    print("|---|---|---|---|---:|---|---|---:|", flush=True)
    for scene in ("smoke-obstacle", "smoke-plume"):
        for dim, n, frames in CASES:
            seq = record_frames(scene, dim, n, frames, sim_solver="mgpcg")
            res = {(path, s): min((fn(seq, s) for _ in range(2)), key=lambda v: v[0])
                   for path, fn in (("fresh", fresh), ("solver", reused)) for s in (2, 3)}
            f2, f3, s2, s3 = res["fresh", 2], res["fresh", 3], res["solver", 2], res["solver", 3]
            print(f"| {scene} | {n}^{dim}, {frames} | {f2[1]:.1f} / {f3[1]:.1f} | {1e3 * f2[0]:.1f} / "
                  f"{1e3 * f3[0]:.1f} | {f3[0] / f2[0]:.3f} | {s2[1]:.1f} / {s3[1]:.1f} | {1e3 * s2[0]:.1f} / "
                  f"{1e3 * s3[0]:.1f} | {s3[0] / s2[0]:.3f} |", flush=True)


if __name__ == "__main__":
    main()
