"""Drive a tuner over a sequence of linear systems; grid-search oracles for benchmarks.

An *instance* is a :class:`krylearn.datasets.systems.LinearSystem` (``A``
scipy CSR, ``b`` of shape ``(k, n)`` of which row 0 is solved, optional
reference ``x``, ``attrs``; the scalar context, if any, is
``attrs["context"]``).  A *sequence* is any iterable of instances (a list,
a generator, a ``krylearn.problems.sequences.Sequence``).

Stopping rule everywhere: ``||b - A x|| <= max(rtol ||b||, atol)`` (from
``x0 = 0`` this is the paper's ``||r|| <= rtol ||r_0||``).  A solve that hits
``maxiter`` costs ``maxiter`` iterations.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from ..inputs import check_maxiter, check_tolerances
from ..solver import available_methods
from ._solve import OMEGA_METHODS, make_path
from .base import Tuner, check_context, check_grid, check_omega_grid
from .young import Young


@dataclass
class TuneResult:
    """What :func:`tune` observed, one entry per instance.

    Attributes
    ----------
    values : numpy.ndarray of float64, shape (T,)
        Parameter value used for each instance.
    iterations : numpy.ndarray of int64, shape (T,)
        Iterations of each solve.
    seconds : numpy.ndarray of float64, shape (T,)
        Wall time of each solve (matrix preparation, preconditioner set-up
        and iterations; the tuner's own time excluded).
    contexts : numpy.ndarray of float64, shape (T,), or None
        ``attrs["context"]`` per instance (NaN where missing); None when no
        instance had one.
    converged : numpy.ndarray of bool, shape (T,)
    extra_matvecs : int
        Matrix-vector products the tuner spent on its own.
    tuner, solver : str
        Labels.
    """

    values: np.ndarray
    iterations: np.ndarray
    seconds: np.ndarray
    contexts: np.ndarray | None
    converged: np.ndarray
    extra_matvecs: int
    tuner: str
    solver: str

    @property
    def total(self) -> int:
        """Total iterations over the sequence."""
        return int(self.iterations.sum())

    def cumulative(self) -> np.ndarray:
        """Cumulative iterations, shape (T,)."""
        return np.cumsum(self.iterations)

    def __len__(self) -> int:
        return int(self.values.size)


# ------------------------------------------------------------------ checks
def _check_solver(solver, parameter) -> None:
    if not isinstance(parameter, str) or not parameter:
        raise ValueError(f"parameter must be a non-empty string, got {parameter!r}")
    if callable(solver):
        return
    names = available_methods()
    if not isinstance(solver, str) or solver not in names:
        raise ValueError(f"solver must be one of {names} or a callable, got {solver!r}")
    if solver in OMEGA_METHODS:
        if parameter != "omega":
            raise ValueError(f"parameter must be 'omega' for solver {solver!r}, got {parameter!r}")
    elif solver in ("cg", "gauss-seidel") or solver.startswith("pcg-"):
        raise ValueError(f"solver {solver!r} has no tunable parameter {parameter!r}; "
                         f"omega-tunable methods are {sorted(OMEGA_METHODS)}")


def _check_values(grid, solver, parameter, name="grid") -> None:
    if isinstance(solver, str) and solver in OMEGA_METHODS and parameter == "omega":
        hi, hi_open = OMEGA_METHODS[solver]
        check_omega_grid(grid, name=name, hi=hi, hi_open=hi_open)


def _check_common(rtol, atol, maxiter, warm_start) -> None:
    check_tolerances(rtol, atol)
    check_maxiter(maxiter)
    if not isinstance(warm_start, (bool, np.bool_)):
        raise TypeError(f"warm_start must be a bool, got {type(warm_start).__name__}")


def _row0(inst, t):
    A = getattr(inst, "A", None)
    b = getattr(inst, "b", None)
    if A is None or b is None:
        raise TypeError(f"sequence item {t} must be a LinearSystem (with .A and .b), got {type(inst).__name__}")
    b = np.asarray(b)
    return A, (b[0] if b.ndim == 2 else b)


def _context_of(inst, t):
    attrs = getattr(inst, "attrs", None) or {}
    return check_context(attrs.get("context"), name=f"sequence item {t} attrs['context']")


def _progress(sequence, progress, desc):
    if not progress:
        return sequence
    total = len(sequence) if hasattr(sequence, "__len__") else None
    return tqdm(sequence, total=total, desc=desc, leave=False)


# -------------------------------------------------------------------- tune
def tune(sequence, tuner: Tuner, *, solver="sor", parameter: str = "omega", warm_start: bool = False,
         rtol: float = 1e-8, atol: float = 0.0, maxiter: int | None = 10_000, progress: bool = True,
         **solver_options) -> TuneResult:
    """Solve every instance of ``sequence`` with the parameter ``tuner`` suggests, feeding back the result.

    Parameters
    ----------
    sequence : iterable of LinearSystem
        Instances in order; row 0 of each ``b`` is solved.
    tuner : Tuner
        E.g. :class:`TsallisINF`, :class:`ChebCB`, :class:`Young`, :class:`Fixed`.
    solver : str or callable
        A :func:`krylearn.solve` method name (``"sor"``, ``"ssor"``,
        ``"pcg-ssor"``, ``"jacobi"`` or a registered method) or
        ``fn(A, b, x0, **{parameter: value}, rtol=, atol=, maxiter=, **solver_options) -> SolveResult``.
        Each instance gets one :class:`~krylearn.solvers.Solver`, updated
        per suggested value; ``"sor"``/``"ssor"``/``"pcg-ssor"`` run compiled
        whole-solve loops under the shared driver's contract (see :mod:`._solve`).
    parameter : str
        Keyword the tuned value is passed as (``"omega"``).
    warm_start : bool
        Start instance t from the solution computed at t-1 (zeros for the
        first instance and whenever the size changes).
    rtol, atol, maxiter
        Stopping rule ``||r|| <= max(rtol ||b||, atol)`` and iteration cap.
    progress : bool
        Show a tqdm bar.
    **solver_options
        Passed to the solver (a ``callback`` disables the compiled loops).

    Returns
    -------
    TuneResult

    Raises
    ------
    ValueError
        Unknown ``solver``; ``parameter`` not tunable for it; the tuner's
        ``grid`` outside the parameter's range (omega in (0, 2), (0, 1] for
        Jacobi); ``Young`` with a solver other than SOR; bad tolerances.
    TypeError
        ``tuner`` is not a :class:`Tuner`; an item is not a LinearSystem.
    """
    _check_tune(tuner, solver, parameter, rtol, atol, maxiter, warm_start)
    rows = []
    prev_x = None
    for t, inst in enumerate(_progress(sequence, progress, f"tune {tuner.name}")):
        A, b = _row0(inst, t)
        c = _context_of(inst, t)
        value = float(tuner.suggest(context=c, instance=inst))
        x0 = prev_x if (warm_start and prev_x is not None and prev_x.shape == b.shape) else None
        t0 = time.perf_counter()
        res = make_path(A, b, solver, parameter, rtol, atol, maxiter, solver_options)(b, x0, value)
        rows.append((value, int(np.sum(res.iterations)), time.perf_counter() - t0, np.nan if c is None else c,
                     bool(np.all(res.converged))))
        tuner.update(value, res, context=c)
        if warm_start:
            prev_x = np.asarray(res.x, dtype=np.result_type(res.x, np.float64)).reshape(b.shape)
    return _tune_result(rows, tuner, solver)


def _check_tune(tuner, solver, parameter, rtol, atol, maxiter, warm_start) -> None:
    if not isinstance(tuner, Tuner):
        raise TypeError(f"tuner must be a krylearn.solvers.bandit.Tuner, got {type(tuner).__name__}")
    _check_solver(solver, parameter)
    _check_common(rtol, atol, maxiter, warm_start)
    _check_values(tuner.grid, solver, parameter, name="grid")
    if isinstance(tuner, Young) and not (isinstance(solver, str) and solver == "sor"):
        raise ValueError(
            f"solver must be 'sor' for the Young tuner (it reads SOR's residual history; got {solver!r}); "
            "for SSOR or SSOR-preconditioned CG use TsallisINF or ChebCB"
        )


def _tune_result(rows, tuner, solver) -> TuneResult:
    values, its, secs, ctxs, conv = (list(c) for c in zip(*rows)) if rows else ([], [], [], [], [])
    ctx = np.asarray(ctxs, dtype=np.float64)
    return TuneResult(
        values=np.asarray(values, dtype=np.float64),
        iterations=np.asarray(its, dtype=np.int64),
        seconds=np.asarray(secs, dtype=np.float64),
        contexts=None if (ctx.size == 0 or np.all(np.isnan(ctx))) else ctx,
        converged=np.asarray(conv, dtype=bool),
        extra_matvecs=int(tuner.extra_matvecs),
        tuner=tuner.name,
        solver=solver if isinstance(solver, str) else getattr(solver, "__name__", "callable"),
    )


# ----------------------------------------------------------------- oracles
def grid_costs(sequence, grid, *, solver="sor", parameter: str = "omega", warm_start: bool = False,
               rtol: float = 1e-8, atol: float = 0.0, maxiter: int | None = 10_000, progress: bool = True,
               **solver_options) -> np.ndarray:
    """Iterations of every grid value on every instance (for the oracles).

    Parameters
    ----------
    sequence : iterable of LinearSystem
    grid : array_like of float, shape (K,)
        Sorted ascending on return order (columns follow ``np.sort(grid)``).
    solver, parameter, rtol, atol, maxiter, progress, **solver_options
        As in :func:`tune`.
    warm_start : bool
        Instance t starts from the stored reference solution ``x`` (row 0)
        of instance t-1 when it has one, else from zeros: every column sees
        the same start, independent of which value was used before.

    Returns
    -------
    numpy.ndarray of int64, shape (T, K)
    """
    g = check_grid(grid, name="grid")
    _check_solver(solver, parameter)
    _check_common(rtol, atol, maxiter, warm_start)
    _check_values(g, solver, parameter, name="grid")
    rows = []
    prev_ref = None
    for t, inst in enumerate(_progress(sequence, progress, "grid costs")):
        A, b = _row0(inst, t)
        path = make_path(A, b, solver, parameter, rtol, atol, maxiter, solver_options)
        x0 = prev_ref if (warm_start and prev_ref is not None and prev_ref.shape == b.shape) else None
        rows.append([int(np.sum(path(b, x0, float(v)).iterations)) for v in g])
        ref = getattr(inst, "x", None)
        prev_ref = None if ref is None else np.asarray(ref)[0] if np.ndim(ref) == 2 else np.asarray(ref)
    return np.asarray(rows, dtype=np.int64).reshape(len(rows), g.size)


def _check_costs(costs) -> np.ndarray:
    c = np.asarray(costs)
    if c.ndim != 2 or c.shape[0] == 0 or c.shape[1] == 0:
        raise ValueError(f"costs must be a non-empty 2-D array (T, K), got shape {c.shape}")
    if not np.issubdtype(c.dtype, np.number) or not np.all(np.isfinite(c)):
        raise ValueError("costs must be finite numbers")
    return c


def best_fixed(costs) -> tuple[int, int | float]:
    """Best single grid value in hindsight: ``(index, total)`` with ``total = costs[:, index].sum()``."""
    c = _check_costs(costs)
    totals = c.sum(axis=0)
    i = int(np.argmin(totals))
    return i, totals[i].item()


def instance_optimal(costs) -> tuple[np.ndarray, int | float]:
    """Per-instance best grid value: ``(indices (T,), total)``."""
    c = _check_costs(costs)
    idx = np.argmin(c, axis=1)
    return idx, c[np.arange(c.shape[0]), idx].sum().item()


__all__ = ["TuneResult", "best_fixed", "grid_costs", "instance_optimal", "tune"]
