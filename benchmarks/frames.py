"""Per-frame pressure solves: one :class:`~krylearn.solvers.Solver` per simulation against a fresh solve per frame.

Simulation code solves one pressure system per time step.  ``krylearn bench
poisson --sequence N`` records ``N`` consecutive frames of the smoke
simulation (the matrix of a scene with static obstacles is the same every
frame; the right-hand side changes) and solves them with each method in two
ways:

* **fresh**: ``krylearn.solve(A, b_t)`` every frame, from zero: all setup
  (checks, null space, preconditioner, network) is paid every frame;
* **solver**: one ``Solver(A, method)``, ``solve(b_t, x0=x_{t-1})``: setup
  once, each frame warm-started from the previous frame's pressure (with
  ``update(A_t)`` whenever the matrix changes).

Both must meet the same stopping rule on every frame; the table reports
total setup and solve seconds, total iterations and the speed-up.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse
from tqdm.auto import tqdm

from ..problems.smoke import SmokeSimulation
from ..solvers.api import solve
from ..solvers.solver import Solver

__all__ = ["record_frames", "run_frames", "format_frames_table"]


def record_frames(scene: str, dim: int, n: int, frames: int, seed: int = 0, progress: bool = False) -> dict:
    """Simulate ``frames`` frames; return their pressure systems ``{"A": [...], "b": [...], ...}``.

    Consecutive identical matrices are stored once (``A[t] is A[t-1]``).
    """
    sim = SmokeSimulation((n,) * dim, scene=scene, seed=seed)
    it = range(frames)
    if progress:
        it = tqdm(it, desc=f"simulating {scene} {n}^{dim}", unit="frame")
    mats, rhs = [], []
    for _ in it:
        out = sim.step()
        A = scipy.sparse.csr_matrix(out.A)
        if mats and _same(mats[-1], A):
            A = mats[-1]
        mats.append(A)
        rhs.append(np.asarray(out.b, dtype=np.float64).reshape(-1))
    return {"A": mats, "b": rhs, "grid_shape": tuple(out.grid_shape), "flags": np.asarray(out.flags),
            "name": f"{scene}-{dim}d-{n}-{frames}frames", "scene": scene, "dim": dim, "n": n, "seed": seed}


def _same(A: scipy.sparse.csr_matrix, B: scipy.sparse.csr_matrix) -> bool:
    return (A.shape == B.shape and A.nnz == B.nnz and np.array_equal(A.indptr, B.indptr)
            and np.array_equal(A.indices, B.indices) and np.array_equal(A.data, B.data))


def _options(method: str, seq: dict) -> dict:
    if method.startswith("dcdm"):
        return {"grid_shape": seq["grid_shape"], "flags": seq["flags"]}
    return {}


def _fresh(seq, method, rtol, maxiter):
    row = {"setup_s": 0.0, "solve_s": 0.0, "iterations": 0, "converged": 0}
    for A, b in zip(seq["A"], seq["b"]):
        r = solve(A, b, method=method, rtol=rtol, maxiter=maxiter, **_options(method, seq))
        row["setup_s"] += r.setup_seconds
        row["solve_s"] += r.solve_seconds
        row["iterations"] += int(r.iterations)
        row["converged"] += bool(r.converged)
    return row


def _reused(seq, method, rtol, maxiter):
    row = {"setup_s": 0.0, "solve_s": 0.0, "iterations": 0, "converged": 0, "updates": 0}
    S, x, last = None, None, None
    for A, b in zip(seq["A"], seq["b"]):
        t0 = time.perf_counter()
        if S is None:
            S = Solver(A, method, rtol=rtol, maxiter=maxiter, **_options(method, seq))
        elif A is not last:
            S.update(A)
            row["updates"] += 1
        row["setup_s"] += time.perf_counter() - t0
        r = S.solve(b, x0=x)
        row["solve_s"] += r.solve_seconds
        row["iterations"] += int(r.iterations)
        row["converged"] += bool(r.converged)
        x, last = r.x, A
    return row


def run_frames(seq: dict, methods: list[str], *, rtol: float = 1e-6, maxiter=None, progress: bool = False) -> dict:
    """Solve every frame of ``seq`` with each method, fresh and with one Solver; return the report."""
    rows = []
    it = methods
    if progress:
        it = tqdm(methods, desc="methods", unit="method", leave=False)
    for m in it:
        fresh = _fresh(seq, m, rtol, maxiter)
        reused = _reused(seq, m, rtol, maxiter)
        total_f = fresh["setup_s"] + fresh["solve_s"]
        total_r = reused["setup_s"] + reused["solve_s"]
        rows.append({"method": m, "fresh": fresh, "solver": reused, "speedup": total_f / max(total_r, 1e-12)})
    frames = len(seq["b"])
    A0 = seq["A"][0]
    return {"benchmark": "poisson-frames", "problem": {
        "name": seq["name"], "frames": frames, "n": int(A0.shape[0]),
        "unknowns": int(np.count_nonzero(np.diff(A0.indptr))), "matrices": len({id(A) for A in seq["A"]}),
        "scene": seq["scene"], "dim": seq["dim"], "grid": seq["n"], "seed": seq["seed"]},
        "stopping_rule": {"rtol": rtol, "rule": "||r|| <= rtol*||b||, every frame"}, "rows": rows}


def format_frames_table(report: dict) -> str:
    """Markdown table of :func:`run_frames`."""
    p = report["problem"]
    lines = [f"{p['name']}: {p['frames']} frames, {p['unknowns']} unknowns, {p['matrices']} distinct matrix(es)",
             "",
             "| method | fresh: setup s | fresh: solve s | fresh: iterations | Solver: setup s | Solver: solve s "
             "| Solver: iterations | total speed-up | frames converged (fresh / Solver) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in report["rows"]:
        f, s = r["fresh"], r["solver"]
        lines.append(f"| {r['method']} | {f['setup_s']:.2f} | {f['solve_s']:.2f} | {f['iterations']} | "
                     f"{s['setup_s']:.2f} | {s['solve_s']:.2f} | {s['iterations']} | {r['speedup']:.2f}x | "
                     f"{f['converged']} / {s['converged']} |")
    rule = report["stopping_rule"]
    lines.append(f"\nStopping rule: {rule['rule']}, rtol={rule['rtol']:g}. fresh: krylearn.solve per frame "
                 "from x0 = 0; Solver: one Solver, warm-started from the previous frame.")
    return "\n".join(lines)
