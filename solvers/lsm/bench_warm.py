"""The warm-start study of ``krylearn bench darcy``: Krylov solves of Darcy systems from ``x0 = 0`` and from guesses.

:func:`warm_start_study` builds ``A u = b`` (:func:`~krylearn.operators.darcy.darcy_system`)
for every coefficient field and solves it with each method to ``rtol`` from
zero and from the interior of each guess (network predictions, or a file's
stored solutions); :func:`summarise_warm` turns the per-sample runs into
table rows (medians and warm/cold ratios).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse.linalg
from tqdm.auto import tqdm

from ...operators.darcy import darcy_system, interior
from ..api import solve

__all__ = ["warm_start_study", "summarise_warm"]


def _solve(A, b, method, x0, rtol, repeats, maxiter):
    """The fastest of ``repeats`` solves (their iterations are the same)."""
    best = None
    for _ in range(repeats):
        res = solve(A, b, method=method, x0=x0, rtol=rtol, maxiter=maxiter, check_symmetry=False)
        if best is None or res.setup_seconds + res.solve_seconds < best.setup_seconds + best.solve_seconds:
            best = res
    return best


def _check_study_args(a, guesses, u_data, methods, repeats):
    """``(a as float64, guesses dict, methods tuple)``; ``ValueError`` naming a bad argument."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 3:
        raise ValueError(f"a must have shape (N, s1, s2), got {a.shape}")
    guesses = dict(guesses or {})
    if "zero" in guesses:
        raise ValueError("guesses: the name 'zero' is reserved for x0 = 0")
    for k, g in guesses.items():
        if np.shape(g) != a.shape:
            raise ValueError(f"guesses[{k!r}] must have the shape of a {a.shape}, got {np.shape(g)}")
    if u_data is not None and np.shape(u_data) != a.shape:
        raise ValueError(f"u_data must have the shape of a {a.shape}, got {np.shape(u_data)}")
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
    return a, guesses, ((methods,) if isinstance(methods, str) else tuple(methods))


def _empty_runs(methods, names) -> dict:
    return {m: {g: {"iterations": [], "converged": [], "setup_s": [], "solve_s": [], "initial_residual": [],
                    **({"x0_error_vs_fd": []} if g != "zero" else {})} for g in names} for m in methods}


def _record(r: dict, res, x0, u_fd) -> None:
    r["iterations"].append(int(res.iterations))
    r["converged"].append(bool(res.converged))
    r["setup_s"].append(float(res.setup_seconds))
    r["solve_s"].append(float(res.solve_seconds))
    r["initial_residual"].append(float(res.residuals[0]))
    if x0 is not None:
        r["x0_error_vs_fd"].append(float(np.linalg.norm(x0 - u_fd) / np.linalg.norm(u_fd)))


def _fd_vs_data(u_fd, ud) -> float:
    """``||u_FD - u_data|| / ||u_data||`` over the whole grid (``u_FD`` is zero on the boundary)."""
    ud = np.asarray(ud, dtype=np.float64)
    full = np.zeros_like(ud)
    full[1:-1, 1:-1] = u_fd.reshape(ud.shape[0] - 2, ud.shape[1] - 2)
    return float(np.linalg.norm(full - ud) / np.linalg.norm(ud))


def warm_start_study(a, guesses: dict | None = None, *, u_data=None, methods=("cg", "pcg-amg"), rtol: float = 1e-8,
                     repeats: int = 1, maxiter: int | None = None, keep_histories: int = 1,
                     progress: bool = True) -> dict:
    """Iterations and seconds to ``rtol`` on ``darcy_system(a_i)`` from ``x0 = 0`` and from each guess.

    Parameters
    ----------
    a : array_like, (N, s1, s2)
        Coefficients at the nodes (boundary included).
    guesses : dict[str, array_like (N, s1, s2)], optional
        Initial guesses as fields on the same grid (their interiors are used),
        e.g. network predictions.  The name ``"zero"`` is reserved.
    u_data : array_like (N, s1, s2), optional
        Reference fields (a file's stored solutions): ``fd_vs_data`` reports
        ``||u_FD - u_data|| / ||u_data||`` over the whole grid.
    methods : sequence of str
        :func:`krylearn.solve` methods.
    rtol : float
        Stopping rule ``||b - A x|| <= rtol ||b||``.
    repeats : int
        Timed runs per solve; the fastest is kept (iterations do not change).
    maxiter : int, optional
    keep_histories : int
        Residual histories are kept for this many first samples.
    progress : bool

    Returns
    -------
    dict
        ``n``, ``unknowns``, ``methods``, ``guesses`` (names, ``"zero"``
        first), ``runs[method][guess]`` with per-sample lists
        ``iterations``, ``converged``, ``setup_s``, ``solve_s``,
        ``initial_residual``, and for guesses ``x0_error_vs_fd``
        (``||x0 - u_FD|| / ||u_FD||`` over the unknowns); ``fd_vs_data`` (per
        sample, when ``u_data``); ``histories[method][guess]`` (lists);
        ``direct_residual`` (per sample, of the direct ``u_FD``).
    """
    a, guesses, methods = _check_study_args(a, guesses, u_data, methods, repeats)
    names = ["zero", *guesses]
    runs = _empty_runs(methods, names)
    histories = {m: {g: [] for g in names} for m in methods}
    fd_vs_data, direct_residual = [], []
    for i in tqdm(range(a.shape[0]), desc="warm starts", unit="sample", disable=not progress):
        A, b = darcy_system(a[i])
        u_fd = scipy.sparse.linalg.spsolve(A.tocsc(), b, permc_spec="MMD_AT_PLUS_A")
        direct_residual.append(float(np.linalg.norm(b - A @ u_fd) / np.linalg.norm(b)))
        if u_data is not None:
            fd_vs_data.append(_fd_vs_data(u_fd, u_data[i]))
        x0s = {"zero": None, **{k: interior(np.asarray(g[i], dtype=np.float64)) for k, g in guesses.items()}}
        for m in methods:
            for g, x0 in x0s.items():
                res = _solve(A, b, m, x0, rtol, repeats, maxiter)
                _record(runs[m][g], res, x0, u_fd)
                if i < keep_histories:
                    histories[m][g].append(np.asarray(res.residuals, dtype=float).tolist())
    return {"n": a.shape[0], "unknowns": int((a.shape[1] - 2) * (a.shape[2] - 2)), "methods": list(methods),
            "guesses": names, "rtol": rtol, "runs": runs, "fd_vs_data": fd_vs_data or None,
            "direct_residual": direct_residual, "histories": histories}


def summarise_warm(study: dict) -> list[dict]:
    """Table rows of a :func:`warm_start_study`: per (method, x0), medians and warm / cold ratios."""
    rows = []
    for m in study["methods"]:
        cold = study["runs"][m]["zero"]
        cold_it = np.asarray(cold["iterations"], dtype=float)
        cold_s = np.asarray(cold["setup_s"]) + np.asarray(cold["solve_s"])
        for g in study["guesses"]:
            r = study["runs"][m][g]
            it = np.asarray(r["iterations"], dtype=float)
            sec = np.asarray(r["setup_s"]) + np.asarray(r["solve_s"])
            rows.append({
                "method": m, "x0": g,
                "iterations_median": float(np.median(it)), "iterations_min": int(it.min()),
                "iterations_max": int(it.max()),
                "iteration_ratio_median": float(np.median(it / np.maximum(cold_it, 1))),
                "seconds_median": float(np.median(sec)),
                "solve_seconds_median": float(np.median(r["solve_s"])),
                "seconds_ratio_median": float(np.median(sec / cold_s)),
                "all_converged": bool(all(r["converged"])),
                "initial_residual_median": float(np.median(r["initial_residual"])),
                "x0_error_vs_fd_median": (float(np.median(r["x0_error_vs_fd"])) if "x0_error_vs_fd" in r else None),
            })
    return rows
