"""How :func:`~krylearn.solvers.bandit.tune` runs one solve: a :class:`~krylearn.solvers.Solver` per instance.

Sequences of thousands of small systems make per-call overhead matter, so
each instance gets one :class:`~krylearn.solvers.Solver` (checks, null space,
preconditioner set up once) and each suggested value is applied with
``Solver.update(omega=...)``, which for ``"sor"``/``"ssor"`` costs nothing
and for ``"pcg-ssor"`` rebuilds only the SSOR diagonal.  One real fp64
right-hand side on the CPU then runs in the methods' compiled whole-solve
loops (``sor``/``ssor``: :func:`~krylearn.solvers._relax_kernels.sor_solve`;
``pcg-ssor``: :func:`~krylearn.solvers._cg_kernels.pcg_ssor_solve`), which
keep the shared driver's contract (stopping rule, true-residual
confirmation, reasons; tested against it).  A user callable is called as
``fn(A, b, x0, **{parameter: value}, rtol=, atol=, maxiter=)``.
"""

from __future__ import annotations

import numpy as np

from ..relaxation import DEFAULT_MAXITER
from ..solver import Solver

__all__ = ["OMEGA_METHODS", "make_path"]

#: Parameter ranges of the known omega-taking methods: (hi, hi_open).
OMEGA_METHODS = {"sor": (2.0, True), "ssor": (2.0, True), "pcg-ssor": (2.0, True), "jacobi": (1.0, False)}


class _SolverPath:
    """Solves of one matrix with a varying parameter: one :class:`Solver`, updated per value."""

    def __init__(self, A, method: str, parameter: str, rtol, atol, maxiter, options: dict):
        self.A, self.method, self.parameter = A, method, parameter
        self.kw = {"rtol": rtol, "atol": atol, "maxiter": maxiter, **options}
        self.callback = self.kw.pop("callback", None)
        self.solver = None
        self.value = None

    def __call__(self, b, x0, value):
        if self.solver is None:
            self.solver = Solver(self.A, self.method, **self.kw, **{self.parameter: value})
        elif value != self.value:
            self.solver.update(**{self.parameter: value})
        self.value = value
        return self.solver.solve(b, x0, callback=self.callback)


class _CallablePath:
    """A user's solver function ``fn(A, b, x0, **{parameter: value}, rtol=, atol=, maxiter=)``."""

    def __init__(self, A, fn, parameter, rtol, atol, maxiter, options):
        self.A, self.fn, self.parameter = A, fn, parameter
        self.kw = {"rtol": rtol, "atol": atol, "maxiter": maxiter, **options}

    def __call__(self, b, x0, value):
        return self.fn(self.A, b, x0, **{self.parameter: value}, **self.kw)


def make_path(A, b, solver, parameter, rtol, atol, maxiter, options):
    """A callable ``path(b, x0, value) -> SolveResult`` for the matrix ``A`` (``b``: a sample right-hand side)."""
    if callable(solver):
        return _CallablePath(A, solver, parameter, rtol, atol, maxiter, options)
    if maxiter is None and solver in ("sor", "ssor", "jacobi", "gauss-seidel"):
        maxiter = DEFAULT_MAXITER
    if isinstance(b, np.ndarray) and b.dtype.kind in "iu":
        b = b.astype(np.float64)
    return _SolverPath(A, solver, parameter, rtol, atol, maxiter, options)
