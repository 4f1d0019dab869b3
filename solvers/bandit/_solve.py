"""How :func:`~krylearn.solvers.bandit.tune` runs one solve: compiled whole-solve fast paths.

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
checks the matrix's symmetry once per instance instead of once per solve and,
without extra options (and without a singular Neumann component), runs the
whole SSOR-preconditioned CG in one compiled loop (:func:`_pcg_ssor_loop`)
with the recurrences, stopping tests and residual history of
:func:`~krylearn.solvers.krylov.cg` with
:func:`~krylearn.solvers.preconditioners.ssor_preconditioner` (same iteration
counts, histories equal up to rounding; ``tests/test_bandit_pcg.py``).
Measured on the stiffest heat2d step (``I - 5e-3 Lap_h``, cold start,
omega = 1.5, loaded 2-core CPU, torch on 1 thread): n = 4096, 23 iterations,
23.7 ms -> 7.0 ms; n = 9801, 34 iterations, 37.1 ms -> 10.7 ms; on heat2d's
warm-started early steps (~4 iterations) 4.3 -> 0.8 ms (n = 4096) and 6.6 ->
1.9 ms (n = 9801) per solve, and the per-instance preparation (symmetry
check, null-space test) ~1-2 ms.  Otherwise (options such as ``callback``)
it calls ``cg`` itself.  Anything else goes through :func:`krylearn.solve`
(or the user's callable).
"""

from __future__ import annotations

import time

import numba
import numpy as np
import scipy.sparse
import torch
from .. import _relax_kernels as K
from ..result import SolveResult

#: Same constant as :data:`krylearn.solvers.relaxation.DIVERGENCE_FACTOR`.
_DIVERGENCE = 1e10
_REASONS = ("maxiter", "converged", "nonfinite", "diverged")
#: Column indices read as uint64: no negative-index wraparound check (as the sweep kernels).
_U = numba.uint64


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


_PCG_REASONS = ("maxiter", "converged", "nonfinite", "indefinite")


@numba.njit(cache=True)
def _dotv(a, b):
    s = 0.0
    for i in range(a.shape[0]):
        s += a[i] * b[i]
    return s


@numba.njit(cache=True)
def _pcg_ssor_loop(indptr, indices, data, diag, wdinv, empty_rows, omega, x, b, tol, maxiter, hist):
    """SSOR-preconditioned CG on ``x`` (n,) in place, step for step as :func:`krylearn.solvers.krylov.cg`.

    ``diag``/``wdinv`` as in :func:`krylearn.solvers._relax_kernels.ssor_apply`
    (empty rows carry ``w (2-w)`` and are then reset to the identity exactly,
    as :class:`~krylearn.solvers.preconditioners.SSORPreconditioner`).
    Absolute residual norms go into ``hist``.  Returns ``(iterations, code,
    nonzero_x0)`` with code -1 initially converged, 0 maxiter, 1 converged,
    2 nonfinite, 3 indefinite.
    """
    n = x.shape[0]
    r = np.empty(n)
    Z = np.empty((1, n))
    z = Z[0]
    p = np.empty(n)
    q = np.empty(n)
    nonzero_x0 = False
    for i in range(n):
        if x[i] != 0.0:
            nonzero_x0 = True
            break
    if nonzero_x0:
        for i in range(n):
            s = b[i]
            for k in range(indptr[i], indptr[i + 1]):
                s -= data[k] * x[_U(indices[k])]
            r[i] = s
    else:
        for i in range(n):
            r[i] = b[i]
    rn = np.sqrt(_dotv(r, r))
    hist[0] = rn
    if rn <= tol:
        return 0, -1, nonzero_x0
    z[:] = r
    K.ssor_apply(indptr, indices, data, diag, omega, wdinv, Z)
    for e in empty_rows:
        z[e] = r[e]
    rz = _dotv(r, z)
    if rz <= 0.0:
        return 0, 3, nonzero_x0
    p[:] = z
    it = 0
    code = 0
    while it < maxiter:
        for i in range(n):
            s = 0.0
            for k in range(indptr[i], indptr[i + 1]):
                s += data[k] * p[_U(indices[k])]
            q[i] = s
        pq = _dotv(p, q)
        if not np.isfinite(pq):
            code = 2
            break
        if pq <= 0.0:
            code = 3
            break
        it += 1
        alpha = rz / pq
        for i in range(n):
            x[i] += alpha * p[i]
            r[i] -= alpha * q[i]
        rn = np.sqrt(_dotv(r, r))
        hist[it] = rn
        if not np.isfinite(rn):
            code = 2
            break
        if rn <= tol:
            code = 1
            break
        z[:] = r
        K.ssor_apply(indptr, indices, data, diag, omega, wdinv, Z)
        for e in empty_rows:
            z[e] = r[e]
        rz_new = _dotv(r, z)
        if rz_new <= 0.0:
            code = 3
            break
        beta = rz_new / rz if rz != 0.0 else rz_new
        for i in range(n):
            p[i] = beta * p[i] + z[i]
        rz = rz_new
    return it, code, nonzero_x0


@numba.njit(cache=True)
def _asymmetry(indptr, indices, data):
    """``max |A_ij - A_ji|`` of a CSR matrix with sorted column indices (binary search per entry)."""
    n = indptr.shape[0] - 1
    worst = 0.0
    for i in range(n):
        for k in range(indptr[i], indptr[i + 1]):
            j = indices[k]
            lo = indptr[j]
            hi = indptr[j + 1]
            while lo < hi:
                mid = (lo + hi) // 2
                if indices[mid] < i:
                    lo = mid + 1
                else:
                    hi = mid
            v = data[lo] if (lo < indptr[j + 1] and indices[lo] == i) else 0.0
            d = abs(data[k] - v)
            worst = max(worst, d)
    return worst


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
    """Prepared SSOR-preconditioned CG solves of one matrix (symmetry checked once).

    Without solver options and when :func:`~krylearn.solvers.nullspace.detect_constant_nullspace`
    finds no singular component, each solve runs in one compiled loop
    (:func:`_pcg_ssor_loop`, the same recurrences and stopping tests as
    :func:`~krylearn.solvers.krylov.cg` with
    :func:`~krylearn.solvers.preconditioners.ssor_preconditioner`); otherwise
    it calls ``cg`` itself.
    """

    def __init__(self, A, rtol: float, atol: float, maxiter, options: dict):
        t0 = time.perf_counter()
        csr = canonical_csr(A)
        scale = float(np.abs(csr.data).max()) if csr.nnz else 0.0
        asym = _asymmetry(csr.indptr, csr.indices, csr.data) if csr.nnz else 0.0
        if asym > 1e-12 * scale:
            raise ValueError(
                f"A is not symmetric (max |A - A^T| = {asym:.3g}, max |A| = {scale:.3g}): pcg-ssor needs a "
                "symmetric positive definite matrix"
            )
        self.csr = csr
        self.n = csr.shape[0]
        self.common = {"rtol": rtol, "atol": atol, "maxiter": maxiter}
        self.options = options
        self._op = None
        empty = np.diff(csr.indptr) == 0
        diag = csr.diagonal()
        self.compiled = not options and not self._singular(csr, empty, diag)
        if self.compiled:
            K.check_diagonal(diag, empty, positive=True)  # SSOR-PCG needs SPD A, so a positive diagonal
            self.empty = empty
            self.empty_rows = np.nonzero(empty)[0].astype(np.int64)
            self.diag = diag
            self.rtol, self.atol = float(rtol), float(atol)
            self.maxiter = 10 * self.n if maxiter is None else int(maxiter)
            self.hist = np.empty(self.maxiter + 1)
        self.setup = time.perf_counter() - t0

    @property
    def op(self):
        """The matrix as a :class:`~krylearn.operators.sparse.SparseMatrix` (built on first use)."""
        if self._op is None:
            from ...operators.sparse import SparseMatrix

            self._op = SparseMatrix(self.csr)
        return self._op

    def _singular(self, csr, empty, diag) -> bool:
        """Whether ``cg``'s ``nullspace="auto"`` would find a singular component (then ``cg`` is called).

        Same test as :func:`~krylearn.solvers.nullspace.detect_constant_nullspace`,
        whose early exit (no nonzero row summing to zero) is done here without
        building the torch operator.
        """
        rowsum = np.abs(np.asarray(csr.sum(axis=1)).ravel())
        if not np.any(~empty & (rowsum <= 1e-10 * np.abs(diag))):
            return False
        from ..nullspace import detect_constant_nullspace

        return detect_constant_nullspace(self.op) is not None

    def __call__(self, b, x0, omega):
        if self.compiled:
            return self._compiled(b, x0, omega)
        from ..krylov import cg
        from ..preconditioners import ssor_preconditioner

        t0 = time.perf_counter()
        M = ssor_preconditioner(self.op, omega)
        setup = time.perf_counter() - t0
        res = cg(self.op, b, x0, M=M, **self.common, **self.options)
        res.setup_seconds += setup
        res.method = "pcg-ssor"
        return res

    def _compiled(self, b, x0, omega) -> SolveResult:
        t0 = time.perf_counter()
        if not (isinstance(omega, (int, float, np.floating, np.integer)) and 0.0 < omega < 2.0):
            raise ValueError(f"omega must be a real number in (0, 2), got {omega!r}")
        omega = float(omega)
        c = self.csr
        b = np.ascontiguousarray(b, dtype=np.float64)
        if b.shape != (self.n,):
            raise ValueError(f"b must have shape ({self.n},), got {b.shape}")
        x = np.zeros(self.n) if x0 is None else np.array(x0, dtype=np.float64, copy=True).reshape(-1)
        if x.shape != (self.n,):
            raise ValueError(f"x0 must have shape ({self.n},), got {np.shape(x0)}")
        if not (np.all(np.isfinite(b)) and np.all(np.isfinite(x))):
            raise ValueError("b and x0 must be finite")
        bnorm = float(torch.linalg.vector_norm(torch.from_numpy(b)))  # as prepare() (same rounding)
        tol = max(self.rtol * bnorm, self.atol)
        diag = self.diag.copy()
        diag[self.empty] = omega * (2.0 - omega)  # as SSORPreconditioner: empty rows act as the identity
        wdinv = omega / diag
        setup = self.setup + (time.perf_counter() - t0)
        t1 = time.perf_counter()
        it, code, nonzero_x0 = _pcg_ssor_loop(c.indptr, c.indices, c.data, diag, wdinv, self.empty_rows, omega,
                                              x, b, tol, self.maxiter, self.hist)
        if code == -1:
            reason = "zero_rhs" if bnorm == 0 else "converged"
            if bnorm == 0:
                x[:] = 0.0
        else:
            reason = _PCG_REASONS[code]
        hist = self.hist[: it + 1] / (bnorm if bnorm > 0 else 1.0)
        info = {"null_space": 0, "matvecs": int(it) + int(nonzero_x0), "omega": omega, "fast_path": True}
        return SolveResult(x, reason in ("converged", "zero_rhs"), int(it), hist, reason,
                           setup_seconds=setup, solve_seconds=time.perf_counter() - t1,
                           method="pcg-ssor", info=info)


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
        from ..api import solve

        return solve(self.A, b, method=self.solver, x0=x0, **kw)


#: Parameter ranges of the known omega-taking methods: (hi, hi_open).
OMEGA_METHODS = {"sor": (2.0, True), "ssor": (2.0, True), "pcg-ssor": (2.0, True), "jacobi": (1.0, False)}


def make_path(A, b, solver, parameter, rtol, atol, maxiter, options):
    """A callable ``path(b, x0, value) -> SolveResult`` for the matrix ``A`` (``b``: a sample right-hand side)."""
    real = (scipy.sparse.issparse(A) and A.dtype.kind in "fiu" and isinstance(b, np.ndarray)
            and b.dtype.kind in "fiu" and b.ndim == 1)
    if real and isinstance(solver, str) and parameter == "omega":
        if solver in ("sor", "ssor") and not options:
            from ..relaxation import DEFAULT_MAXITER

            return _SORPath(A, solver, rtol, atol, DEFAULT_MAXITER if maxiter is None else maxiter)
        if solver == "pcg-ssor" and set(options) <= {"callback", "nullspace", "dtype"}:  # compiled if none
            return _PCGSSORPath(A, rtol, atol, maxiter, options)
    return _GenericPath(A, solver, parameter, rtol, atol, maxiter, options)
