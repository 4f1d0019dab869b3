"""The one result type every iterative solve in krylearn returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Values ``SolveResult.reason`` takes.
REASONS = (
    "converged",  # ||r|| <= max(rtol * ||b||, atol)
    "zero_rhs",  # b == 0: x = 0 is exact, no iteration run
    "maxiter",  # iteration budget spent before the tolerance was met
    "breakdown",  # a Krylov scalar vanished (e.g. r.z == 0 with r != 0)
    "indefinite",  # p.Ap <= 0 (or z.r <= 0): A or M is not SPD
    "nonfinite",  # NaN/Inf appeared in the iterate or residual
    "diverged",  # residual grew beyond 1e10 x its initial value (relaxation)
    "stagnated",  # the true residual stopped improving above the tolerance
    "unreachable",  # the tolerance lies below the rounding floor of the working precision
    "least_squares",  # singular, inconsistent: x is the minimum-norm least-squares solution, which misses the rule
)


@dataclass
class SolveResult:
    """Outcome of an iterative solve.

    Attributes
    ----------
    x : numpy.ndarray, torch.Tensor or the caller's DLPack array type
        Approximate solution, in the array type and shape of ``b``; dtype
        ``promote(A.dtype, b.dtype)`` (at least float32), or the higher
        precision a method iterates in (DCDM: float64).
    converged : bool or numpy.ndarray of bool, shape (k,)
        Whether the stopping rule ``||b - A x|| <= max(rtol*||b||, atol)``
        holds for the returned ``x`` and the caller's ``b`` (checked on the
        true residual, per system for a batched right-hand side).
    iterations : int or numpy.ndarray of int, shape (k,)
        Iterations taken (per system for a batched right-hand side).
    residuals : numpy.ndarray, shape (iterations+1,) or (max_iterations+1, k)
        Relative residual history ``||r_i|| / ||b||``, the initial one first.
        For a batch, a system's column stays constant after it stopped.
    reason : str or list of str
        Why the solve stopped; one of :data:`REASONS`.
    setup_seconds : float
        Wall time spent building preconditioners / factorizations.
    solve_seconds : float
        Wall time spent iterating.
    method : str
        Name of the method that produced the result.
    info : dict
        Method-specific extras, e.g. ``true_residual`` (final relative true
        residual), ``null_space`` (number of constant null-space components
        projected out) and ``inconsistency`` (share of ``b`` in them, which
        no ``x`` can match), ``matvecs``.
    """

    x: Any
    converged: Any
    iterations: Any
    residuals: np.ndarray
    reason: Any
    setup_seconds: float = 0.0
    solve_seconds: float = 0.0
    method: str = ""
    info: dict = field(default_factory=dict)

    @property
    def final_residual(self):
        """Last relative residual (per system for a batch)."""
        return self.residuals[-1]

    def __repr__(self) -> str:
        shape = tuple(getattr(self.x, "shape", ()))
        res = np.asarray(self.final_residual)
        res_s = f"{float(res):.3e}" if res.ndim == 0 else f"max {float(res.max()):.3e}"
        return (
            f"SolveResult(method={self.method!r}, x.shape={shape}, converged={self.converged}, "
            f"iterations={self.iterations}, final_residual={res_s}, reason={self.reason!r}, "
            f"setup_seconds={self.setup_seconds:.3g}, solve_seconds={self.solve_seconds:.3g})"
        )
