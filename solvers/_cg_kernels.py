"""A compiled (numba) whole-solve loop: SSOR-preconditioned CG for one real right-hand side.

Sequences of thousands of small systems (the bandit tuners) make Python's
per-iteration overhead dominate; this loop runs the whole solve in compiled
code under exactly the contract of the shared driver (:mod:`.driver`):
the same recurrences as :class:`~krylearn.solvers.krylov.CGStepper` with the
SSOR preconditioner, convergence confirmed on the true residual, restarts
from it when it misses, and the same stagnation and rounding-floor rules.
``tests/test_bandit_pcg.py`` checks it against the driver.
"""

from __future__ import annotations

import numba
import numpy as np

from ._relax_kernels import ssor_apply
from .driver import STALL_CONFIRMATIONS, STALL_FACTOR

#: Result codes of :func:`pcg_ssor_solve`, in order.
CODES = ("maxiter", "converged", "nonfinite", "indefinite", "stagnated", "unreachable")

_U = numba.uint64
_EPS = 2.220446049250313e-16  # float64


@numba.njit(cache=True)
def _dot(a, b):
    s = 0.0
    for i in range(a.shape[0]):
        s += a[i] * b[i]
    return s


@numba.njit(cache=True, fastmath={"reassoc"})
def update_xr(x, r, p, q, alpha):
    """CG's update in one pass over ``(n,)`` arrays: ``x += alpha p``, ``r -= alpha q``; returns ``||r||^2``.

    Only the sum of squares is reassociated (so it vectorises); every entry of
    ``x`` and ``r`` is rounded as torch's ``add_`` / ``sub_`` round it.
    """
    s = 0.0
    for i in range(x.shape[0]):
        x[i] += alpha * p[i]
        ri = r[i] - alpha * q[i]
        r[i] = ri
        s += ri * ri
    return s


@numba.njit(cache=True)
def new_direction(p, z, beta):
    """``p = z + beta p`` in one pass over ``(n,)`` arrays."""
    for i in range(p.shape[0]):
        p[i] = z[i] + beta * p[i]


@numba.njit(cache=True)
def _residual(indptr, indices, data, x, b, out):
    for i in range(x.shape[0]):
        s = b[i]
        for k in range(indptr[i], indptr[i + 1]):
            s -= data[k] * x[_U(indices[k])]
        out[i] = s


@numba.njit(cache=True)
def abs_product(indptr, indices, data, x):
    """``(m, || |A| |x| ||)``, ``m`` the most nonzeros in a row (see :func:`krylearn.solvers.base.rounding_error`)."""
    n = x.shape[0]
    m = 1
    ss = 0.0
    for i in range(n):
        m = max(m, indptr[i + 1] - indptr[i])
        s = 0.0
        for k in range(indptr[i], indptr[i + 1]):
            s += abs(data[k]) * abs(x[_U(indices[k])])
        ss += s * s
    return m, np.sqrt(ss)


@numba.njit(cache=True)
def _matvec(indptr, indices, data, p, q):
    for i in range(p.shape[0]):
        s = 0.0
        for k in range(indptr[i], indptr[i + 1]):
            s += data[k] * p[_U(indices[k])]
        q[i] = s


@numba.njit(cache=True)
def _axpby(beta, p, z):
    """``p <- beta p + z``."""
    for i in range(p.shape[0]):
        p[i] = beta * p[i] + z[i]


@numba.njit(cache=True)
def _update(alpha, p, q, x, r):
    """``x += alpha p``, ``r -= alpha q``."""
    for i in range(p.shape[0]):
        x[i] += alpha * p[i]
        r[i] -= alpha * q[i]


@numba.njit(cache=True)
def _ssor(indptr, indices, data, diag, wdinv, empty_rows, omega, r, Z):
    """``z = M^-1 r`` into ``Z[0]`` (empty rows: the identity); returns ``r.z``."""
    z = Z[0]
    z[:] = r
    ssor_apply(indptr, indices, data, diag, omega, wdinv, Z)
    for e in empty_rows:
        z[e] = r[e]
    return _dot(r, z)


@numba.njit(cache=True)
def pcg_ssor_solve(indptr, indices, data, diag, wdinv, empty_rows, omega, x, b, tol, maxiter, hist):
    """SSOR-preconditioned CG on ``x`` (n,) in place until the true residual meets ``tol``.

    ``diag``/``wdinv`` as in :func:`krylearn.solvers._relax_kernels.ssor_apply`
    (empty rows carry ``w (2-w)`` and are reset to the identity exactly).
    Absolute residual norms go into ``hist`` (the true one after a
    confirmation).  Returns ``(iterations, code, matvecs, true_norm)`` with
    code an index into :data:`CODES` (-1: converged before any iteration);
    ``true_norm`` is ``||b - A x||`` when known, else -1.
    """
    n = x.shape[0]
    r = np.empty(n)
    Z = np.empty((1, n))
    p = np.zeros(n)
    q = np.empty(n)
    matvecs = 0
    if np.any(x != 0.0):
        _residual(indptr, indices, data, x, b, r)
        matvecs += 1
    else:
        r[:] = b
    bnorm = np.sqrt(_dot(b, b))
    rn = np.sqrt(_dot(r, r))
    hist[0] = rn
    if rn <= tol:
        return 0, -1, matvecs, rn
    fresh, rz_old, best, stall, true_norm, it, code = True, 1.0, np.inf, 0, -1.0, 0, 0
    while it < maxiter:
        rz = _ssor(indptr, indices, data, diag, wdinv, empty_rows, omega, r, Z)
        if not np.isfinite(rz) or rz <= 0.0:
            code = 2 if not np.isfinite(rz) else 3
            break
        _axpby(0.0 if fresh else rz / rz_old, p, Z[0])
        _matvec(indptr, indices, data, p, q)
        matvecs += 1
        pq = _dot(p, q)
        if not np.isfinite(pq) or pq <= 0.0:
            code = 2 if not np.isfinite(pq) else 3
            break
        alpha = rz / pq
        _update(alpha, p, q, x, r)
        rz_old, fresh, true_norm = rz, False, -1.0
        it += 1
        rn = np.sqrt(_dot(r, r))
        if not np.isfinite(rn):
            hist[it] = hist[it - 1]
            code = 2
            break
        if rn <= tol:  # confirm on the true residual, restart from it if it misses
            _residual(indptr, indices, data, x, b, q)
            matvecs += 1
            rn = true_norm = np.sqrt(_dot(q, q))
            if rn <= tol:  # met, unless within its own rounding error of the tolerance (the driver's rule)
                m, ax = abs_product(indptr, indices, data, x)
                if rn + _EPS * (ax + bnorm) <= tol:
                    hist[it] = rn
                    code = 1
                    break
            r[:] = q
            fresh = True
            stall = 0 if rn < STALL_FACTOR * best else stall + 1
            best = min(best, rn)
            if stall >= STALL_CONFIRMATIONS:
                hist[it] = rn
                m, ax = abs_product(indptr, indices, data, x)
                code = 5 if tol < m * _EPS * (ax + bnorm) else 4
                break
        hist[it] = rn
    return it, code, matvecs, true_norm


# ------------------------------------------------------- structure checks
@numba.njit(cache=True)
def asymmetry(indptr, indices, data):
    """``max |A_ij - conj(A_ji)|`` of a CSR matrix with sorted column indices (binary search per entry)."""
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
            v = np.conj(data[lo]) if (lo < indptr[j + 1] and indices[lo] == i) else 0.0 * data[k]
            worst = max(worst, abs(data[k] - v))
    return worst


@numba.njit(cache=True)
def row_sums(indptr, data):
    """``(|sum_j A_ij|, sum_j |A_ij|)`` per row."""
    n = indptr.shape[0] - 1
    s = np.empty(n)
    a = np.empty(n)
    for i in range(n):
        t = 0.0 * data[0] if data.shape[0] else 0.0
        u = 0.0
        for k in range(indptr[i], indptr[i + 1]):
            t += data[k]
            u += abs(data[k])
        s[i] = abs(t)
        a[i] = u
    return s, a
