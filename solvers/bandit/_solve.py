"""How :func:`~krylearn.solvers.bandit.tune` runs one solve: a fast path for tiny systems.

Sequences of thousands of ``n = 100`` systems make per-call overhead matter.
Measured on the 10x10 shifted Laplacian (2-core CPU, ~39 SOR iterations per
solve): ``krylearn.solve(..., method="sor")`` costs ~0.95 ms per solve and
``relaxation.sor`` ~0.84 ms, ~22 us per iteration, almost all of it the
Python loop around the compiled sweep.  For the known method names
``"sor"`` and ``"ssor"`` (real fp64 CPU input, no extra solver options)
:class:`_SORPath` therefore runs the *whole* iteration in one compiled
(numba) loop around the same sweep kernels (:mod:`krylearn.solvers._relax_kernels`),
with the same stopping rule, divergence test and residual history, so
results equal ``krylearn.solve``'s (the tests check it).  ``"pcg-ssor"``
builds the SSOR preconditioner and calls :func:`~krylearn.solvers.krylov.cg`
directly, checking the matrix's symmetry once per instance instead of once
per solve.  Anything else goes through :func:`krylearn.solve` (or the user's
callable).
"""

from __future__ import annotations

import time

import numba
import numpy as np
import scipy.sparse
import torch
from krylearn.solvers import _relax_kernels as K
from krylearn.solvers.result import SolveResult

#: Same constant as :data:`krylearn.solvers.relaxation.DIVERGENCE_FACTOR`.
_DIVERGENCE = 1e10
_REASONS = ("maxiter", "converged", "nonfinite", "diverged")


@numba.njit(cache=True)
def _sor_loop(indptr, indices, data, dinv, first, last, x, b, omega, tol, r0, maxiter, symmetric, hist):
    """Iterate SOR (or SSOR) sweeps on ``x`` until ``||r|| <= tol``; absolute residuals into ``hist``.

    Returns ``(iterations, code)`` with code 0 maxiter, 1 converged, 2 nonfinite, 3 diverged.
    """
    it = 0
    code = 0
    while it < maxiter:
        it += 1
        if symmetric:
            K.sor_forward(indptr, indices, data, dinv, last, x, b, omega, False)
            rr = K.sor_backward(indptr, indices, data, dinv, first, x, b, omega, True)
        else:
            rr = K.sor_forward(indptr, indices, data, dinv, last, x, b, omega, True)
        rn = np.sqrt(rr)
        hist[it] = rn
        if not np.isfinite(rn):
            code = 2
            break
        if rn <= tol:
            code = 1
            break
        if rn > _DIVERGENCE * r0:
            code = 3
            break
    return it, code


def canonical_csr(A, name: str = "A") -> scipy.sparse.csr_matrix:
    """Sorted, duplicate-free, zero-free fp64 CSR copy of ``A`` with int64 indices (as ``matrix_form``)."""
    if not scipy.sparse.issparse(A):
        raise TypeError(f"{name} must be a scipy sparse matrix here, got {type(A).__name__}")
    M = scipy.sparse.csr_matrix(A, dtype=np.float64, copy=True)
    if M.shape[0] != M.shape[1]:
        raise ValueError(f"{name} must be square, got shape {M.shape}")
    M.sum_duplicates()
    M.eliminate_zeros()
    M.sort_indices()
    if not np.all(np.isfinite(M.data)):
        raise ValueError(f"{name} contains NaN or Inf")
    M.indptr = M.indptr.astype(np.int64)
    M.indices = M.indices.astype(np.int64)
    return M


class _SORPath:
    """Prepared SOR/SSOR solves of one matrix (compiled whole-loop path)."""

    def __init__(self, A, method: str, rtol: float, atol: float, maxiter: int):
        t0 = time.perf_counter()
        self.method = method
        self.symmetric = method == "ssor"
        self.rtol, self.atol, self.maxiter = float(rtol), float(atol), int(maxiter)
        csr = canonical_csr(A)
        empty = np.diff(csr.indptr) == 0
        diag = csr.diagonal()
        K.check_diagonal(diag, empty)
        self.csr = csr
        self.n = csr.shape[0]
        self.empty = empty
        self.dinv = np.where(empty, 0.0, 1.0 / np.where(empty, 1.0, diag))
        self.first, self.last = K.first_last_columns(csr.indptr, csr.indices)
        self.hist = np.empty(self.maxiter + 1)
        self.setup = time.perf_counter() - t0

    def __call__(self, b: np.ndarray, x0, omega: float) -> SolveResult:
        t0 = time.perf_counter()
        if not (0.0 < omega < 2.0):
            raise ValueError(f"omega must be a real number in (0, 2), got {omega!r}")
        c = self.csr
        b = np.ascontiguousarray(b, dtype=np.float64)
        x = np.zeros(self.n) if x0 is None else np.array(x0, dtype=np.float64, copy=True)
        bnorm = float(torch.linalg.vector_norm(torch.from_numpy(b)))  # as relaxation.sor (same rounding)
        tol = max(self.rtol * bnorm, self.atol)
        info = {"omega": float(omega), "ordering": "lexicographic", "sweep": "symmetric" if self.symmetric else "forward",
                "empty_rows": int(self.empty.sum()), "residual_refreshes": 0, "fast_path": True}
        if bnorm == 0:
            x[:] = 0.0
            return self._result(x, 0, "zero_rhs", np.zeros(1), info, t0)
        r0 = np.sqrt(K.residual_norm2(c.indptr, c.indices, c.data, x, b))
        hist = self.hist
        hist[0] = r0
        if r0 <= tol:
            return self._result(x, 0, "converged", hist[:1] / bnorm, info, t0)
        it, code = _sor_loop(c.indptr, c.indices, c.data, self.dinv, self.first, self.last, x, b, float(omega),
                             tol, r0, self.maxiter, self.symmetric, hist)
        return self._result(x, int(it), _REASONS[code], hist[: it + 1] / bnorm, info, t0)

    def _result(self, x, it, reason, residuals, info, t0):
        info["sweeps"] = it * (2 if self.symmetric else 1)
        return SolveResult(x, reason in ("converged", "zero_rhs"), it, residuals, reason,
                           setup_seconds=self.setup, solve_seconds=time.perf_counter() - t0,
                           method=self.method, info=info)


class _PCGSSORPath:
    """Prepared SSOR-preconditioned CG solves of one matrix (symmetry checked once)."""

    def __init__(self, A, rtol: float, atol: float, maxiter: int, options: dict):
        from krylearn.operators.sparse import SparseMatrix

        csr = canonical_csr(A)
        scale = abs(csr).max() if csr.nnz else 0.0
        asym = abs(csr - csr.T).max() if csr.nnz else 0.0
        if asym > 1e-12 * scale:
            raise ValueError(
                f"A is not symmetric (max |A - A^T| = {asym:.3g}, max |A| = {scale:.3g}): pcg-ssor needs a "
                "symmetric positive definite matrix"
            )
        self.op = SparseMatrix(csr)
        self.common = {"rtol": rtol, "atol": atol, "maxiter": maxiter}
        self.options = options

    def __call__(self, b, x0, omega):
        from krylearn.solvers.krylov import cg
        from krylearn.solvers.preconditioners import ssor_preconditioner

        t0 = time.perf_counter()
        M = ssor_preconditioner(self.op, omega)
        setup = time.perf_counter() - t0
        res = cg(self.op, b, x0, M=M, **self.common, **self.options)
        res.setup_seconds += setup
        res.method = "pcg-ssor"
        return res


class _GenericPath:
    """``krylearn.solve`` by name, or a user callable ``fn(A, b, x0, **{parameter: value}, rtol=, atol=, maxiter=)``."""

    def __init__(self, A, solver, parameter, rtol, atol, maxiter, options):
        self.A, self.solver, self.parameter = A, solver, parameter
        self.common = {"rtol": rtol, "atol": atol, "maxiter": maxiter}
        self.options = options

    def __call__(self, b, x0, value):
        kw = {self.parameter: value, **self.common, **self.options}
        if callable(self.solver):
            return self.solver(self.A, b, x0, **kw)
        import krylearn

        return krylearn.solve(self.A, b, method=self.solver, x0=x0, **kw)


#: Parameter ranges of the known omega-taking methods: (hi, hi_open).
OMEGA_METHODS = {"sor": (2.0, True), "ssor": (2.0, True), "pcg-ssor": (2.0, True), "jacobi": (1.0, False)}


def make_path(A, b, solver, parameter, rtol, atol, maxiter, options):
    """A callable ``path(b, x0, value) -> SolveResult`` for the matrix ``A`` (``b``: a sample right-hand side)."""
    real = (scipy.sparse.issparse(A) and A.dtype.kind in "fiu" and isinstance(b, np.ndarray)
            and b.dtype.kind in "fiu" and b.ndim == 1)
    if real and isinstance(solver, str) and parameter == "omega":
        if solver in ("sor", "ssor") and not options:
            from krylearn.solvers.relaxation import DEFAULT_MAXITER

            return _SORPath(A, solver, rtol, atol, DEFAULT_MAXITER if maxiter is None else maxiter)
        if solver == "pcg-ssor" and set(options) <= {"callback", "nullspace", "dtype"}:
            return _PCGSSORPath(A, rtol, atol, maxiter, options)
    return _GenericPath(A, solver, parameter, rtol, atol, maxiter, options)
