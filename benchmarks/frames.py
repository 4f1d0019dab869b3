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

Both must meet the same stopping rule on every frame.  The fresh path is
the per-frame cost when the solid/air flags change every frame (all setup
is paid again); the Solver path is the cost when they do not.  Matrix-free
methods (``mgpcg``) get the grid operator, the others its CSR matrix.  With
``device`` (``--device cuda``) both, and the right-hand sides, are moved
there once per distinct matrix before timing (AMG's hierarchy stays on the
CPU: ``pcg-amg`` then makes a round trip per iteration).  The
table reports seconds per frame (setup + solve) on both paths, total
iterations, the bytes per unknown the set-up solver holds, and each
method's per-frame time as a multiple of ``mgpcg``'s when it ran.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import scipy.sparse
import torch
from tqdm.auto import tqdm

from ..operators.base import Operator
from ..operators.sparse import SparseMatrix
from ..problems.smoke import SmokeSimulation
from ..solvers.api import solve
from ..solvers.solver import Solver, matrix_free, takes_grid
from ..utils.atomic import save_figure

__all__ = ["record_frames", "run_frames", "format_frames_table", "plot_frames", "held_bytes"]


def record_frames(scene: str, dim: int, n: int, frames: int, seed: int = 0, progress: bool = False,
                  sim_solver: str = "pcg-amg") -> dict:
    """Simulate ``frames`` frames; return their pressure systems ``{"A": [...], "ops": [...], "b": [...], ...}``.

    ``A`` holds the CSR matrices, ``ops`` the :class:`~krylearn.operators.PoissonGrid`
    operators; consecutive identical matrices are stored once (``A[t] is
    A[t-1]``).  ``sim_solver`` solves the simulation's own pressure systems
    (to rtol 1e-8; any converged method gives the same frames to that
    accuracy).
    """
    sim = SmokeSimulation((n,) * dim, scene=scene, seed=seed, solver=sim_solver)
    it = range(frames)
    if progress:
        it = tqdm(it, desc=f"simulating {scene} {n}^{dim}", unit="frame")
    mats, ops, rhs = [], [], []
    for _ in it:
        out = sim.step()
        A = scipy.sparse.csr_matrix(out.A)
        if mats and _same(mats[-1], A):
            A = mats[-1]
        mats.append(A)
        ops.append(sim.operator)
        rhs.append(np.asarray(out.b, dtype=np.float64).reshape(-1))
    return {"A": mats, "ops": ops, "b": rhs, "grid_shape": tuple(out.grid_shape), "flags": np.asarray(out.flags),
            "name": f"{scene}-{dim}d-{n}-{frames}frames", "scene": scene, "dim": dim, "n": n, "seed": seed}


def _same(A: scipy.sparse.csr_matrix, B: scipy.sparse.csr_matrix) -> bool:
    return (A.shape == B.shape and A.nnz == B.nnz and np.array_equal(A.indptr, B.indptr)
            and np.array_equal(A.indices, B.indices) and np.array_equal(A.data, B.data))


def _options(method: str, seq: dict) -> dict:
    if takes_grid(method) and not matrix_free(method):
        return {"grid_shape": seq["grid_shape"], "flags": seq["flags"]}
    return {}


def _systems(seq: dict, method: str, device=None):
    """``(A_t, b_t)`` of every frame, on ``device`` when given; a matrix repeated across frames stays one object."""
    mats = seq["ops"] if matrix_free(method) and "ops" in seq else seq["A"]
    if device is None:
        return list(zip(mats, seq["b"]))
    moved = {}
    for A in mats:
        if id(A) not in moved:
            moved[id(A)] = A.to(device=device) if isinstance(A, Operator) else SparseMatrix(A, device=device)
    return [(moved[id(A)], torch.from_numpy(b).to(device)) for A, b in zip(mats, seq["b"])]


def held_bytes(obj, _seen=None, _depth=0) -> int:
    """Bytes of the numpy arrays, torch tensors and scipy sparse matrices reachable from ``obj``'s attributes.

    The memory a set-up solver keeps between solves (matrix copies,
    preconditioner, hierarchy, network), each buffer counted once; work
    vectors of a running solve are not included.
    """
    seen = set() if _seen is None else _seen
    if id(obj) in seen or _depth > 6:
        return 0
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        base = obj if obj.base is None else obj.base
        if id(base) in seen and base is not obj:
            return 0
        seen.add(id(base))
        return int(obj.nbytes)
    if isinstance(obj, torch.Tensor) and obj.layout == torch.sparse_csr:
        return sum(held_bytes(t, seen, _depth + 1) for t in (obj.crow_indices(), obj.col_indices(), obj.values()))
    if isinstance(obj, torch.Tensor) and obj.layout == torch.sparse_coo:
        return held_bytes(obj._indices(), seen, _depth + 1) + held_bytes(obj._values(), seen, _depth + 1)
    if isinstance(obj, torch.Tensor):
        ptr = ("t", obj.untyped_storage().data_ptr())
        if ptr in seen:
            return 0
        seen.add(ptr)
        return int(obj.untyped_storage().nbytes())
    if scipy.sparse.issparse(obj):
        return sum(held_bytes(getattr(obj, k), seen, _depth + 1) for k in ("data", "indices", "indptr")
                   if hasattr(obj, k))
    if isinstance(obj, dict):
        items = obj.values()
    elif isinstance(obj, (list, tuple)):
        items = obj
    elif isinstance(obj, torch.nn.Module):
        items = list(obj.parameters()) + list(obj.buffers())
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        items = vars(obj).values()
    else:
        return 0
    return sum(held_bytes(v, seen, _depth + 1) for v in items)


def _fresh(seq, method, rtol, maxiter, device=None):
    row = {"setup_s": 0.0, "solve_s": 0.0, "iterations": 0, "converged": 0, "per_frame_s": []}
    for A, b in _systems(seq, method, device):
        r = solve(A, b, method=method, rtol=rtol, maxiter=maxiter, **_options(method, seq))
        row["setup_s"] += r.setup_seconds
        row["solve_s"] += r.solve_seconds
        row["iterations"] += int(r.iterations)
        row["converged"] += bool(r.converged)
        row["per_frame_s"].append(r.setup_seconds + r.solve_seconds)
    return row


def _reused(seq, method, rtol, maxiter, device=None):
    row = {"setup_s": 0.0, "solve_s": 0.0, "iterations": 0, "converged": 0, "updates": 0, "per_frame_s": []}
    S, x, last = None, None, None
    for A, b in _systems(seq, method, device):
        t0 = time.perf_counter()
        first = S is None
        if first:
            S = Solver(A, method, rtol=rtol, maxiter=maxiter, **_options(method, seq))
        elif A is not last:
            S.update(A)
            row["updates"] += 1
        setup = time.perf_counter() - t0
        r = S.solve(b, x0=x)
        if first:  # after a solve: work arrays kept between solves count too
            row["held_bytes"] = held_bytes(S) - held_bytes(A)  # what the solver adds to the caller's matrix
        row["setup_s"] += setup
        row["solve_s"] += r.solve_seconds
        row["iterations"] += int(r.iterations)
        row["converged"] += bool(r.converged)
        row["per_frame_s"].append(setup + r.solve_seconds)
        x, last = r.x, A
    return row


def run_frames(seq: dict, methods: list[str], *, rtol: float = 1e-6, maxiter=None, progress: bool = False,
               fresh: bool = True, device=None) -> dict:
    """Solve every frame of ``seq`` with each method, fresh (unless ``fresh=False``) and with one Solver.

    ``device``: where the systems are solved (default: the CPU, numpy in and out).
    """
    rows = []
    it = methods
    if progress:
        it = tqdm(methods, desc="methods", unit="method", leave=False)
    for m in it:
        f = _fresh(seq, m, rtol, maxiter, device) if fresh else None
        reused = _reused(seq, m, rtol, maxiter, device)
        total_r = reused["setup_s"] + reused["solve_s"]
        speedup = (f["setup_s"] + f["solve_s"]) / max(total_r, 1e-12) if f else None
        rows.append({"method": m, "fresh": f, "solver": reused, "speedup": speedup})
    frames = len(seq["b"])
    A0 = seq["A"][0]
    unknowns = int(np.count_nonzero(np.diff(A0.indptr)))
    _ratios(rows, frames)
    return {"benchmark": "poisson-frames", "problem": {
        "name": seq["name"], "frames": frames, "n": int(A0.shape[0]),
        "unknowns": unknowns, "matrices": len({id(A) for A in seq["A"]}),
        "scene": seq["scene"], "dim": seq["dim"], "grid": seq["n"], "seed": seq["seed"]},
        "stopping_rule": {"rtol": rtol, "rule": "||r|| <= rtol*||b||, every frame"},
        "device": str(device) if device is not None else "cpu", "rows": rows}


def _ratios(rows, frames) -> None:
    """Per-frame seconds of each path, and their multiple of mgpcg's (when mgpcg ran)."""
    paths = [(r, path) for r in rows for path in ("fresh", "solver") if r[path] is not None]
    for r, path in paths:
        r[path]["s_per_frame"] = (r[path]["setup_s"] + r[path]["solve_s"]) / frames
    ref = next((r for r in rows if r["method"] == "mgpcg"), None)
    for r, path in paths:
        q = ref[path] if ref is not None else None
        r[path]["vs_mgpcg"] = r[path]["s_per_frame"] / q["s_per_frame"] if q else None


def format_frames_table(report: dict) -> str:
    """Markdown table of :func:`run_frames`."""
    p = report["problem"]
    lines = [f"{p['name']}: {p['frames']} frames, {p['unknowns']} unknowns, {p['matrices']} distinct matrix(es)",
             "",
             "| method | fresh: s/frame | fresh: iterations | fresh: × mgpcg | Solver: s/frame | "
             "Solver: iterations | Solver: × mgpcg | bytes/unknown | frames converged (fresh / Solver) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]

    def cell(x, fmt):
        return "–" if x is None else format(x, fmt)

    for r in report["rows"]:
        f, s = r["fresh"] or {}, r["solver"]
        per_unknown = s.get("held_bytes", 0) / max(p["unknowns"], 1)
        lines.append(f"| {r['method']} | {cell(f.get('s_per_frame'), '.4f')} | {cell(f.get('iterations'), 'd')} | "
                     f"{cell(f.get('vs_mgpcg'), '.2f')} | {s['s_per_frame']:.4f} | {s['iterations']} | "
                     f"{cell(s.get('vs_mgpcg'), '.2f')} | {per_unknown:.0f} | "
                     f"{cell(f.get('converged'), 'd')} / {s['converged']} |")
    rule = report["stopping_rule"]
    lines.append(f"\nStopping rule: {rule['rule']}, rtol={rule['rtol']:g}. fresh: krylearn.solve per frame "
                 "from x0 = 0, all setup paid every frame (flags that change every frame); Solver: one Solver, "
                 "warm-started from the previous frame. s/frame = (setup + solve) / frames. bytes/unknown: what "
                 "the set-up Solver holds beyond the caller's matrix.")
    return "\n".join(lines)


def plot_frames(report: dict, path) -> None:
    """Seconds per frame against the frame index: Solver path solid, fresh path dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for i, r in enumerate(report["rows"]):
        color = f"C{i}"
        ax.semilogy(r["solver"]["per_frame_s"], color=color, label=f"{r['method']} (Solver)")
        if r["fresh"]:
            ax.semilogy(r["fresh"]["per_frame_s"], color=color, ls="--", label=f"{r['method']} (fresh)")
    p = report["problem"]
    ax.set_title(f"{p['name']}: seconds per frame (setup + solve)", fontsize=9)
    ax.set_xlabel("frame")
    ax.set_ylabel("seconds")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    save_figure(fig, Path(path))
