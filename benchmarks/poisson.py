"""Convergence benchmark on Poisson pressure systems.

``krylearn bench poisson`` loads (or generates) one system, runs each method
on it, and reports iterations, setup/solve seconds (median over repeats,
after a warm-up), final relative residual and convergence.  Results go to a
JSON file and a residual-vs-iteration PNG.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse
import torch
from tqdm.auto import tqdm

from ..datasets.matrix_market import read_mtx
from ..datasets.systems import SystemsFile
from ..problems.smoke import SmokeSimulation
from ..solvers.learned import cpu_name
from ..solvers.solver import Solver, takes_grid
from ..utils.atomic import atomic_write_text, save_figure
from ..utils.checks import check_int
from ..utils.version import __version__


@dataclass
class Problem:
    """One linear system to benchmark on."""

    name: str
    A: scipy.sparse.csr_matrix
    b: np.ndarray
    grid_shape: tuple | None = None
    flags: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    @property
    def unknowns(self) -> int:
        """Rows that are not identically zero (fluid cells)."""
        return int(np.count_nonzero(np.diff(self.A.indptr)))


def smoke_problem(scene: str = "smoke-obstacle", dim: int = 2, n: int = 128, frames: int = 10,
                  seed: int = 0, progress: bool = False, sim_solver: str = "pcg-amg") -> Problem:
    """Run the smoke simulation for ``frames`` frames; return the last frame's pressure system.

    ``sim_solver`` solves the simulation's own pressure systems (to rtol 1e-8).
    """
    frames = check_int("frames", frames, 1)
    shape = (n,) * dim
    sim = SmokeSimulation(shape, scene=scene, seed=seed, solver=sim_solver)
    it = range(frames)
    if progress:
        it = tqdm(it, desc=f"simulating {scene} {n}^{dim}", unit="frame")
    out = None
    for _ in it:
        out = sim.step()
    meta = {"scene": scene, "dim": dim, "n": n, "frame": frames, "seed": seed, "boundary": list(sim.sides)}
    return Problem(f"{scene}-{dim}d-{n}-f{frames}", scipy.sparse.csr_matrix(out.A),
                   np.asarray(out.b, dtype=np.float64).reshape(-1), tuple(out.grid_shape),
                   np.asarray(out.flags), meta)


def file_problem(path, index: int = -1) -> Problem:
    """A system from a krylearn HDF5 container (``index``-th, default last) or a Matrix Market file.

    For ``.mtx`` files the right-hand side is a fixed-seed standard normal
    vector, zero on empty rows, so runs are repeatable.
    """
    path = Path(path)
    if path.suffix == ".mtx":
        A = scipy.sparse.csr_matrix(read_mtx(path))
        rng = np.random.default_rng(0)
        b = rng.standard_normal(A.shape[0]) * (np.diff(A.indptr) > 0)
        return Problem(path.stem, A, b, meta={"file": str(path), "rhs": "randn(seed 0) on nonzero rows"})
    with SystemsFile(path) as f:
        i = f.check_index(index, allow_negative=True)  # -1: the last; out of range: IndexError naming the range
        s = f[i]
        params = f.attrs.get("parameters") or {}
    meta = {"file": str(path), "index": i, **{k: _jsonable(v) for k, v in s.attrs.items()}}
    if "sides" in params:
        meta["boundary"] = list(params["sides"])
    return Problem(f"{path.stem}-{i}", scipy.sparse.csr_matrix(s.A), np.asarray(s.b)[0], s.grid_shape,
                   s.flags, meta)


def _jsonable(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


def run_method(problem: Problem, method: str, *, rtol: float, atol: float = 0.0, maxiter=None,
               repeats: int = 3, warmup: int = 1, options=None) -> tuple[dict, np.ndarray]:
    """Run ``method`` ``warmup + repeats`` times; return a table row and the residual history."""
    repeats, warmup = check_int("repeats", repeats, 1), check_int("warmup", warmup, 0)
    options = dict(options or {})
    if takes_grid(method) and problem.grid_shape is not None:  # DCDM and MGPCG work on the grid behind the matrix
        options.setdefault("grid_shape", tuple(problem.grid_shape))
        if problem.flags is not None:
            options.setdefault("flags", problem.flags)
    times_setup, times_solve = [], []
    res = None
    for r in range(warmup + repeats):
        S = Solver(problem.A, method, rtol=rtol, atol=atol, maxiter=maxiter, **options)
        res = S.solve(problem.b)
        if r >= warmup:
            times_setup.append(S.setup_seconds)
            times_solve.append(res.solve_seconds)
    true_res = np.linalg.norm(problem.b - problem.A @ res.x) / max(np.linalg.norm(problem.b), 1e-300)
    row = {
        "method": method,
        "iterations": int(res.iterations),
        "setup_s": statistics.median(times_setup),
        "solve_s": statistics.median(times_solve),
        "s_per_iter": statistics.median(times_solve) / max(int(res.iterations), 1),
        "final_rel_residual": float(true_res),
        "converged": bool(res.converged),
        "reason": res.reason,
        "null_space": int(res.info.get("null_space", 0)),
        "options": {k: v for k, v in options.items() if k not in ("grid_shape", "flags")},
    }
    for key in ("fallback_steps", "switched_to_pcg_at", "network_seconds", "model"):
        if key in res.info:
            row[key] = res.info[key]
    return row, np.asarray(res.residuals)


def machine() -> dict:
    """A short description of the machine the numbers came from."""
    cpu = cpu_name()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "krylearn": __version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def format_table(rows: list[dict], *, rtol: float, atol: float = 0.0) -> str:
    """Markdown table of benchmark rows, naming the stopping rule."""
    head = ("| method | iterations | setup s | solve s | s/iter | final rel. residual | converged |\n"
            "|---|---:|---:|---:|---:|---:|---|")
    lines = [head]
    for r in rows:
        conv = "yes" if r["converged"] else f"no ({r['reason']})"
        lines.append(
            f"| {r['method']} | {r['iterations']} | {r['setup_s']:.4f} | {r['solve_s']:.4f} | "
            f"{r['s_per_iter'] * 1e3:.3f} ms | {r['final_rel_residual']:.2e} | {conv} |"
        )
    lines.append(f"\nStopping rule: ||r|| <= max(rtol*||b||, atol), rtol={rtol:g}, atol={atol:g}.")
    return "\n".join(lines)


def plot_residuals(histories: dict, path, *, title: str, rtol: float | None = None) -> None:
    """Write a semilog residual-vs-iteration PNG (atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = ("-", "--", "-.", ":")  # past the colour cycle, a new line style: every method its own
    for k, (name, h) in enumerate(histories.items()):
        h = np.asarray(h, dtype=float)
        ax.semilogy(np.arange(len(h)), np.maximum(h, 1e-300), label=name, lw=1.4, color=colors[k % len(colors)],
                    ls=styles[(k // len(colors)) % len(styles)])
    if rtol is not None:
        ax.axhline(rtol, color="k", ls=":", lw=1, label=f"rtol {rtol:g}")
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xlim(left=0)
    ax.set_xlabel("iteration (linear to 10, log beyond)")
    ax.set_ylabel("relative residual ||r||/||b||")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    path = Path(path)
    save_figure(fig, path)


def run_benchmark(problem: Problem, methods: list[str], *, rtol: float = 1e-6, atol: float = 0.0,
                  maxiter=None, repeats: int = 3, warmup: int = 1, out_dir=None, options=None,
                  progress: bool = True) -> dict:
    """Run every method on ``problem``; write JSON + PNG into ``out_dir`` when given."""
    rows, histories = [], {}
    options = options or {}
    it = methods
    if progress:
        it = tqdm(methods, desc="methods", unit="method", leave=False)
    for m in it:
        row, hist = run_method(problem, m, rtol=rtol, atol=atol, maxiter=maxiter, repeats=repeats,
                               warmup=warmup, options=options.get(m))
        rows.append(row)
        histories[m] = hist
    report = {
        "benchmark": "poisson",
        "problem": {"name": problem.name, "n": int(problem.A.shape[0]), "unknowns": problem.unknowns,
                    "nnz": int(problem.A.nnz), "grid_shape": problem.grid_shape, **problem.meta},
        "stopping_rule": {"rtol": rtol, "atol": atol, "rule": "||r|| <= max(rtol*||b||, atol)"},
        "timing": {"repeats": repeats, "warmup": warmup, "statistic": "median"},
        "machine": machine(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "rows": rows,
        "residuals": {k: v.tolist() for k, v in histories.items()},
    }
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / f"{problem.name}.json", json.dumps(report, indent=1))
        plot_residuals(histories, out / f"{problem.name}.png",
                       title=f"{problem.name} ({problem.unknowns} unknowns)", rtol=rtol)
        report["files"] = [str(out / f"{problem.name}.json"), str(out / f"{problem.name}.png")]
    return report
