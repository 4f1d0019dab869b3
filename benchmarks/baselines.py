"""krylearn's solvers and kernels against the reference implementations.

``krylearn bench baselines``: on the same system, krylearn ``cg`` against
``scipy.sparse.linalg.cg`` and ``pyamg.krylov.cg`` (iterations, seconds per
iteration), and ``pcg-amg`` against pyamg's own ``solve(accel="cg")``.

The same command also times one matrix-vector product with the
matrix-free stencil, krylearn's CSR operator and scipy CSR.

Timings are medians over repeats after a warm-up, in one process, and are
reported as ratios to the reference in the same run.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import pyamg
import scipy.sparse
import scipy.sparse.linalg
import torch


from ..operators.sparse import SparseMatrix
from ..operators.stencil import PoissonGrid
from ..solvers.api import solve
from ..utils.checks import check_int
from .poisson import Problem


def _median_time(fn, repeats: int, warmup: int = 1):
    check_int("repeats", repeats, 1)
    for _ in range(warmup):
        out = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def _restricted(problem: Problem):
    """The fluid-cell submatrix (pyamg cannot aggregate identically zero rows)."""
    keep = np.diff(problem.A.indptr) > 0
    A = problem.A[keep][:, keep].tocsr()
    return A, problem.b[keep]


def compare_cg(problem: Problem, *, rtol: float = 1e-6, repeats: int = 3) -> list[dict]:
    """Rows: krylearn cg, scipy cg, pyamg cg, krylearn pcg-amg, pyamg SA + accel cg.

    All run on the fluid-cell submatrix (the same system for every library),
    from x0 = 0, with scipy's relative stopping rule.
    """
    A, b = _restricted(problem)
    bnorm = np.linalg.norm(b)
    rows = []

    def row(name, iters, seconds, x, ref=None):
        rel = float(np.linalg.norm(b - A @ x) / bnorm)
        return {"solver": name, "iterations": int(iters), "seconds": seconds,
                "s_per_iter": seconds / max(iters, 1), "final_rel_residual": rel, "reference": ref}

    scipy_ref, amg_ref = "scipy.sparse.linalg.cg", "pyamg SA solve(accel='cg')"
    t, res = _median_time(lambda: solve(A, b, method="cg", rtol=rtol, nullspace=None), repeats)
    rows.append(row("krylearn cg", res.iterations, t, res.x, scipy_ref))

    def scipy_cg():
        count = [0]

        def cb(_):
            count[0] += 1

        x, _ = scipy.sparse.linalg.cg(A, b, rtol=rtol, atol=0.0, maxiter=10 * A.shape[0], callback=cb)
        return x, count[0]

    t, (x, iters) = _median_time(scipy_cg, repeats)
    rows.append(row(scipy_ref, iters, t, x))

    def pyamg_cg():
        residuals = []
        x, _ = pyamg.krylov.cg(A, b, tol=rtol, maxiter=10 * A.shape[0], residuals=residuals)
        return x, len(residuals) - 1

    t, (x, iters) = _median_time(pyamg_cg, repeats)
    rows.append(row("pyamg.krylov.cg", iters, t, x, scipy_ref))

    def ours_amg():
        return solve(A, b, method="pcg-amg", rtol=rtol, nullspace=None)

    t, res = _median_time(ours_amg, repeats)
    r = row("krylearn pcg-amg", res.iterations, t, res.x, amg_ref)
    r["setup_s"] = res.setup_seconds
    rows.append(r)

    def pyamg_amg():
        t0 = time.perf_counter()
        ml = pyamg.smoothed_aggregation_solver(A)
        setup = time.perf_counter() - t0
        residuals = []
        x = ml.solve(b, tol=rtol, accel="cg", residuals=residuals, maxiter=10 * A.shape[0])
        return x, len(residuals) - 1, setup

    t, (x, iters, setup) = _median_time(pyamg_amg, repeats)
    r = row(amg_ref, iters, t, x)
    r["setup_s"] = setup
    rows.append(r)
    return rows


def format_cg_table(rows: list[dict], rtol: float) -> str:
    by_name = {r["solver"]: r for r in rows}
    lines = ["| solver | iterations | total s | ms / iteration | s/iter vs reference | final rel. residual |",
             "|---|---:|---:|---:|---|---:|"]
    for r in rows:
        ref = by_name.get(r["reference"])
        ratio = f"{r['s_per_iter'] / ref['s_per_iter']:.2f}x {ref['solver']}" if ref else "(reference)"
        lines.append(f"| {r['solver']} | {r['iterations']} | {r['seconds']:.3f} | {r['s_per_iter'] * 1e3:.3f} | "
                     f"{ratio} | {r['final_rel_residual']:.2e} |")
    lines.append(f"\nStopping rule ||r|| <= rtol*||b||, rtol={rtol:g}, x0 = 0; medians of repeats after a warm-up.")
    return "\n".join(lines)


def compare_spmv(problem: Problem, *, repeats: int = 50) -> list[dict]:
    """Seconds per product: matrix-free stencil vs CSR kernels, on the full grid."""
    A = problem.A
    rng = np.random.default_rng(0)
    x = rng.standard_normal(A.shape[0])
    xt = torch.from_numpy(x)
    rows = []
    t_scipy, y_ref = _median_time(lambda: A @ x, repeats, warmup=3)
    rows.append({"kernel": "scipy CSR (csr_matvec)", "seconds": t_scipy})
    S = SparseMatrix(A)
    t, _ = _median_time(lambda: S.apply(xt), repeats, warmup=3)
    rows.append({"kernel": "krylearn SparseMatrix (torch CSR mv)", "seconds": t})
    X = torch.from_numpy(rng.standard_normal((4, A.shape[0])))
    t4, _ = _median_time(lambda: S.apply(X), repeats, warmup=3)
    t4s, _ = _median_time(lambda: A @ X.numpy().T, repeats, warmup=3)
    rows.append({"kernel": "krylearn SparseMatrix, 4 vectors (scipy csr_matvecs)", "seconds": t4 / 4})
    rows.append({"kernel": "scipy CSR, 4 vectors", "seconds": t4s / 4})
    if problem.grid_shape is not None:
        G = PoissonGrid(problem.grid_shape, flags=problem.flags, boundary=problem.meta.get("boundary", "solid"))
        t, y = _median_time(lambda: G.apply(xt), repeats, warmup=3)
        diff = scipy.sparse.linalg.norm(G.to_sparse() - A)
        rows.append({"kernel": "krylearn PoissonGrid (matrix-free)", "seconds": t,
                     "matches_csr": bool(diff == 0)})
    for r in rows:
        r["vs_scipy"] = r["seconds"] / t_scipy
    return rows


def format_spmv_table(rows: list[dict]) -> str:
    lines = ["| kernel | ms / product | time vs scipy CSR |", "|---|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['kernel']} | {r['seconds'] * 1e3:.3f} | {r['vs_scipy']:.2f}x |")
    return "\n".join(lines)
