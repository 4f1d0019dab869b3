"""Compiled (numba) CPU kernels for relaxation sweeps and preconditioners.

Every kernel works on the CSR arrays of a canonical scipy matrix (sorted
column indices, no duplicates, explicit zeros removed) and updates its
vector arguments in place.  Batched kernels take ``(k, n)`` C-contiguous
arrays and loop over the ``k`` rows inside the compiled code.

Identically zero rows (the full-grid convention) have no stored entries;
the kernels skip them (relaxation) or the caller arranges the diagonal so
that they act as the identity (preconditioners).

The canonical CSR form itself comes from
:func:`krylearn.solvers.inputs.canonical_csr`, built once per solver setup.
"""

from __future__ import annotations

import numba
import numpy as np


# --------------------------------------------------------------------- helpers
def check_diagonal(diag: np.ndarray, empty: np.ndarray, name: str = "A", positive: bool = False) -> None:
    """Raise ``ValueError`` if a nonzero row has a zero (or, if ``positive``, non-positive) diagonal."""
    bad = ~empty & ((diag.real <= 0) if positive else (diag == 0))
    if bad.any():
        i = int(np.nonzero(bad)[0][0])
        what = "a non-positive" if positive else "a zero"
        raise ValueError(
            f"{name} has {what} diagonal entry on {int(bad.sum())} nonzero row(s) (first: row {i}, "
            f"A[{i},{i}] = {diag[i]!r}); only identically zero rows may lack a diagonal"
        )


def first_last_columns(indptr: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Smallest and largest column of each row (``n`` and ``-1`` for empty rows)."""
    n = indptr.shape[0] - 1
    counts = np.diff(indptr)
    first = np.full(n, n, dtype=np.int64)
    last = np.full(n, -1, dtype=np.int64)
    nz = counts > 0
    first[nz] = indices[indptr[:-1][nz]]
    last[nz] = indices[indptr[1:][nz] - 1]
    return first, last


# ------------------------------------------------------------------- IC(0)
@numba.njit(cache=True)
def ic0_factor(indptr, indices, data, pivot_tol):
    """Incomplete Cholesky with zero fill of a lower-triangular CSR matrix.

    ``(indptr, indices, data)`` is ``tril(A)`` with sorted indices and the
    diagonal the last entry of every row.  Returns ``(Ldata, nguarded)``:
    the values of ``L`` on the same pattern and the number of pivots
    ``A_ii - sum_k L_ik^2 <= pivot_tol * A_ii`` (or NaN) replaced by ``A_ii``.
    """
    n = indptr.shape[0] - 1
    L = np.empty_like(data)
    work = np.zeros(n, dtype=data.dtype)
    nguard = 0
    for i in range(n):
        start = indptr[i]
        dpos = indptr[i + 1] - 1
        for p in range(start, dpos):
            j = indices[p]
            s = data[p]
            jd = indptr[j + 1] - 1
            for q in range(indptr[j], jd):
                s -= work[indices[q]] * L[q]
            v = s / L[jd]
            L[p] = v
            work[j] = v
        d = data[dpos]
        s = d
        for p in range(start, dpos):
            s -= L[p] * L[p]
        if not (s > pivot_tol * d):
            s = d
            nguard += 1
        L[dpos] = np.sqrt(s)
        for p in range(start, dpos):
            work[indices[p]] = 0.0
    return L, nguard


def inverse_diagonal(indptr: np.ndarray, data: np.ndarray) -> np.ndarray:
    """``1 / L_ii`` for a lower-triangular CSR factor whose diagonal is last in each row."""
    return 1.0 / data[indptr[1:] - 1]


@numba.njit(cache=True)
def lower_solve(indptr, indices, data, inv_diag, X):
    """Solve ``L y = x`` in place for every row of ``X`` (k, n); diagonal last in each row.

    ``inv_diag`` holds ``1 / L_ii``: a multiply instead of a divide shortens
    the row-to-row dependency chain (about 2x faster here).
    """
    k, n = X.shape
    for b in range(k):
        x = X[b]
        for i in range(n):
            s = x[i]
            dpos = indptr[i + 1] - 1
            for p in range(indptr[i], dpos):
                s -= data[p] * x[indices[p]]
            x[i] = s * inv_diag[i]


@numba.njit(cache=True)
def upper_solve(indptr, indices, data, inv_diag, X):
    """Solve ``U y = x`` in place for every row of ``X`` (k, n); diagonal first in each row.

    ``inv_diag`` holds ``1 / U_ii``.  Used with ``U = L^T`` stored as CSR.
    """
    k, n = X.shape
    for b in range(k):
        x = X[b]
        for i in range(n - 1, -1, -1):
            s = x[i]
            for p in range(indptr[i] + 1, indptr[i + 1]):
                s -= data[p] * x[indices[p]]
            x[i] = s * inv_diag[i]


# -------------------------------------------------------------------- SSOR
@numba.njit(cache=True)
def ssor_apply(indptr, indices, data, diag, omega, wdinv, X):
    """Apply ``M^-1 = (2-w) (D/w+U)^-1 (D/w) (D/w+L)^-1`` in place to every row of ``X`` (k, n).

    ``diag`` is ``D`` (rows that must act as the identity carry ``w (2-w)``);
    ``wdinv`` is ``w / D``, precomputed so the sweeps multiply instead of divide.
    """
    k, n = X.shape
    c = (2.0 - omega) / omega
    for b in range(k):
        x = X[b]
        for i in range(n):
            s = x[i]
            for p in range(indptr[i], indptr[i + 1]):
                j = indices[p]
                if j < i:
                    s -= data[p] * x[j]
            x[i] = s * wdinv[i]
        for i in range(n - 1, -1, -1):
            s = x[i] * c * diag[i]
            for p in range(indptr[i], indptr[i + 1]):
                j = indices[p]
                if j > i:
                    s -= data[p] * x[j]
            x[i] = s * wdinv[i]


# ------------------------------------------------------------- SOR sweeps
# Column indices are read through ``_U`` (uint64) so numba emits no
# negative-index wraparound check; with the diagonal's reciprocal precomputed
# the sweep measured 10-20% faster than pyamg 5.4's amg_core SOR kernel at
# 256^2, and sweep + fused residual ~25% faster than pyamg's sweep followed by
# a scipy ``b - A @ x`` (2-core CPU).
_U = numba.uint64


@numba.njit(cache=True)
def sor_forward(indptr, indices, data, dinv, lastcol, x, b, omega, want_residual):
    """One forward SOR sweep on ``x`` (n,) in place; returns ``||b - A x||^2`` if asked (else 0).

    ``x_i <- x_i + w (b_i - sum_j A_ij x_j) / A_ii`` with the already updated
    ``x_j``, i.e. ``(1-w) x_i + w (b_i - sum_{j!=i} A_ij x_j) / A_ii``.
    ``dinv`` is ``1 / A_ii`` (0 on empty rows, which are thus left untouched).
    The residual of row ``p`` is accumulated as soon as every column of row
    ``p`` has been updated (``lastcol[p] <= i``), a few rows behind the
    sweep, so it is read from cache instead of in a second pass over memory.
    """
    n = x.shape[0]
    rr = 0.0
    p = 0
    for i in range(n):
        s = b[i]
        for q in range(indptr[i], indptr[i + 1]):
            s -= data[q] * x[_U(indices[q])]
        x[i] += omega * s * dinv[i]
        if want_residual:
            while p <= i and lastcol[p] <= i:
                r = b[p]
                for q in range(indptr[p], indptr[p + 1]):
                    r -= data[q] * x[_U(indices[q])]
                a = abs(r)
                rr += a * a
                p += 1
    if want_residual:
        while p < n:
            r = b[p]
            for q in range(indptr[p], indptr[p + 1]):
                r -= data[q] * x[_U(indices[q])]
            a = abs(r)
            rr += a * a
            p += 1
    return rr


@numba.njit(cache=True)
def sor_backward(indptr, indices, data, dinv, firstcol, x, b, omega, want_residual):
    """One backward SOR sweep (rows ``n-1 .. 0``); see :func:`sor_forward`."""
    n = x.shape[0]
    rr = 0.0
    p = n - 1
    for i in range(n - 1, -1, -1):
        s = b[i]
        for q in range(indptr[i], indptr[i + 1]):
            s -= data[q] * x[_U(indices[q])]
        x[i] += omega * s * dinv[i]
        if want_residual:
            while p >= i and firstcol[p] >= i:
                r = b[p]
                for q in range(indptr[p], indptr[p + 1]):
                    r -= data[q] * x[_U(indices[q])]
                a = abs(r)
                rr += a * a
                p -= 1
    if want_residual:
        while p >= 0:
            r = b[p]
            for q in range(indptr[p], indptr[p + 1]):
                r -= data[q] * x[_U(indices[q])]
            a = abs(r)
            rr += a * a
            p -= 1
    return rr


@numba.njit(cache=True)
def residual_norm2(indptr, indices, data, x, b):
    """``||b - A x||^2`` for one vector."""
    n = x.shape[0]
    rr = 0.0
    for p in range(n):
        r = b[p]
        for q in range(indptr[p], indptr[p + 1]):
            r -= data[q] * x[_U(indices[q])]
        a = abs(r)
        rr += a * a
    return rr


# ------------------------------------------------------------- colouring
@numba.njit(cache=True)
def greedy_coloring(indptr, indices):
    """Greedy (first-fit, natural order) colouring of a symmetric CSR pattern.

    Returns int64 colours ``0..ncolors-1``; no two adjacent vertices share a
    colour (self loops ignored).  On a 5- or 7-point stencil in lexicographic
    order this is the red-black colouring.
    """
    n = indptr.shape[0] - 1
    colors = np.full(n, -1, dtype=np.int64)
    mark = np.full(n + 1, -1, dtype=np.int64)
    for i in range(n):
        for q in range(indptr[i], indptr[i + 1]):
            j = indices[q]
            if j != i and colors[j] >= 0:
                mark[colors[j]] = i
        c = 0
        while mark[c] == i:
            c += 1
        colors[i] = c
    return colors


# ------------------------------------------------------- whole-solve loop
@numba.njit(cache=True)
def sor_solve(indptr, indices, data, dinv, first, last, x, b, omega, tol, r0, maxiter, symmetric, divergence,
              hist):
    """SOR (or SSOR) sweeps on ``x`` until ``||r|| <= tol``, in one compiled loop; absolute residuals into ``hist``.

    The same sweeps, residuals and tests as the driver running
    :class:`~krylearn.solvers.relaxation.RelaxationStepper` on the
    lexicographic engine, so the iterates are identical.  Returns
    ``(iterations, code)``: code 0 maxiter, 1 converged, 2 nonfinite, 3 diverged.
    """
    it = 0
    code = 0
    while it < maxiter:
        it += 1
        if symmetric:
            sor_forward(indptr, indices, data, dinv, last, x, b, omega, False)
            rr = sor_backward(indptr, indices, data, dinv, first, x, b, omega, True)
        else:
            rr = sor_forward(indptr, indices, data, dinv, last, x, b, omega, True)
        rn = np.sqrt(rr)
        hist[it] = rn
        if not np.isfinite(rn):
            code = 2
            break
        if rn <= tol:
            code = 1
            break
        if rn > divergence * r0:
            code = 3
            break
    return it, code
