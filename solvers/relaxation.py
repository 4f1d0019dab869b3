"""Stationary relaxation solvers: SOR, SSOR, Gauss–Seidel and (damped) Jacobi.

Every solver returns a :class:`~krylearn.solvers.result.SolveResult` with the
relative residual ``||b - A x|| / ||b||`` recorded after every iteration (the
initial one first) and stops as soon as ``||b - A x|| <= max(rtol ||b||, atol)``.
``reason`` is ``"converged"``, ``"zero_rhs"``, ``"maxiter"``, ``"nonfinite"``
or ``"diverged"`` (residual above ``1e10`` times the initial one).

SOR is the true successive over-relaxation

    x_i <- (1 - w) x_i + w (b_i - sum_{j != i} A_ij x_j) / A_ii

with the already updated ``x_j`` (not a blend of a Gauss–Seidel sweep with
the old iterate).  Two orderings:

``"lexicographic"`` (default on CPU)
    rows in natural order, one compiled (numba) sweep per iteration that also
    accumulates ``||b - A x||^2`` in the same pass (each row's residual is
    taken as soon as its last neighbour is updated, while it is in cache).
    On CUDA this ordering runs on a CPU copy (a round trip per sweep).
``"multicolor"`` (default on CUDA)
    a greedy graph colouring computed once (red-black for 5/7-point
    stencils); each colour is updated at once with sparse tensor products
    (torch on CUDA, the SparseMatrix kernels on CPU).  The residual is kept
    up to date column block by column block, so a sweep costs one pass over
    the matrix; it is recomputed exactly every 50 sweeps and before declaring
    convergence.

Identically zero rows (the full-grid convention for solid/empty cells) are
left untouched.  A zero diagonal on a nonzero row raises ``ValueError``.
"""

from __future__ import annotations

import numbers
import time

import numpy as np
import scipy.sparse
import torch

from ..operators.sparse import SparseMatrix

from . import _relax_kernels as K
from ._common import make_result, prepare
from .result import SolveResult

#: Default iteration limit of every relaxation solver.
DEFAULT_MAXITER = 10_000
#: A residual above this multiple of the initial one stops with reason "diverged".
DIVERGENCE_FACTOR = 1e10
#: Multicolour sweeps between exact residual recomputations.
REFRESH_EVERY = 50

_ORDERINGS = ("lexicographic", "multicolor")
_SWEEPS = ("forward", "backward", "symmetric")


# ------------------------------------------------------------------ engines
class _Lexicographic:
    """Natural-order SOR with compiled fused sweep + residual kernels (CPU arrays)."""

    incremental = False

    def __init__(self, csr, empty, omega, sweep, device):
        self.csr = csr
        self.indptr, self.indices, self.data = csr.indptr, csr.indices, csr.data
        diag = csr.diagonal()
        self.dinv = np.where(empty, 0, 1 / np.where(empty, 1, diag)).astype(csr.dtype)  # 0: rows left alone
        self.first, self.last = K.first_last_columns(self.indptr, self.indices)
        self.omega = omega
        self.sweep = sweep
        self.device = device
        self.passes = 2 if sweep == "symmetric" else 1

    def start(self, x, b):
        self.cuda = x.device.type != "cpu"
        self.xn = x.detach().cpu().numpy() if self.cuda else x.numpy()
        self.bn = b.detach().cpu().numpy()
        self.x = x
        return self.residual(range(x.shape[0]))

    def residual(self, idx):
        return np.array([np.sqrt(K.residual_norm2(self.indptr, self.indices, self.data, self.xn[i], self.bn[i]))
                         for i in idx], dtype=np.float64)

    def step(self, idx):
        out = np.empty(len(idx), dtype=np.float64)
        a = (self.indptr, self.indices, self.data, self.dinv)
        for m, i in enumerate(idx):
            x, b = self.xn[i], self.bn[i]
            if self.sweep == "forward":
                rr = K.sor_forward(*a, self.last, x, b, self.omega, True)
            elif self.sweep == "backward":
                rr = K.sor_backward(*a, self.first, x, b, self.omega, True)
            else:
                K.sor_forward(*a, self.last, x, b, self.omega, False)
                rr = K.sor_backward(*a, self.first, x, b, self.omega, True)
            out[m] = np.sqrt(rr)
        if self.cuda:
            ii = torch.as_tensor(list(idx), dtype=torch.long)
            self.x[ii.to(self.x.device)] = torch.from_numpy(self.xn[ii.numpy()]).to(self.x.device)
        return out


class _Multicolor:
    """Colour-by-colour SOR with torch/SparseMatrix products and an incrementally updated residual."""

    incremental = True

    def __init__(self, csr, empty, omega, sweep, device, dtype):
        pattern = abs(csr) + abs(csr).T
        pattern = scipy.sparse.csr_matrix(pattern)
        pattern.sort_indices()
        colors = K.greedy_coloring(pattern.indptr.astype(np.int64), pattern.indices.astype(np.int64))
        colors[empty] = -1
        ncolors = int(colors.max()) + 1 if colors.size else 0
        diag = csr.diagonal()
        csc = csr.tocsc()
        self.blocks = []
        for c in range(ncolors):
            idx = np.nonzero(colors == c)[0]
            if idx.size == 0:
                continue
            cols = SparseMatrix(csc[:, idx].tocsr(), dtype=dtype, device=device)
            self.blocks.append(
                (torch.from_numpy(idx).to(device), torch.from_numpy(1.0 / diag[idx]).to(device, dtype), cols)
            )
        self.ncolors = len(self.blocks)
        self.order = {
            "forward": self.blocks,
            "backward": self.blocks[::-1],
            "symmetric": self.blocks + self.blocks[::-1],
        }[sweep]
        self.passes = 2 if sweep == "symmetric" else 1
        self.A = SparseMatrix(csr, dtype=dtype, device=device)
        self.omega = omega

    def start(self, x, b):
        self.x, self.b = x, b
        self.r = b - self.A._apply(x)
        return torch.linalg.vector_norm(self.r, dim=1).cpu().double().numpy()

    def residual(self, idx):
        ii = torch.as_tensor(list(idx), dtype=torch.long, device=self.x.device)
        self.r[ii] = self.b[ii] - self.A._apply(self.x[ii])
        return torch.linalg.vector_norm(self.r[ii], dim=1).cpu().double().numpy()

    def step(self, idx):
        full = len(idx) == self.x.shape[0]
        if full:
            x, r = self.x, self.r
        else:
            ii = torch.as_tensor(list(idx), dtype=torch.long, device=self.x.device)
            x, r = self.x[ii], self.r[ii]
        for rows, dinv, cols in self.order:
            dx = r[:, rows] * (self.omega * dinv)
            x[:, rows] += dx
            r -= cols._apply(dx)
        if not full:
            self.x[ii] = x
            self.r[ii] = r
        return torch.linalg.vector_norm(r, dim=1).cpu().double().numpy()


class _Jacobi:
    """Damped Jacobi ``x <- x + w D^-1 (b - A x)`` with the exact residual every iteration."""

    incremental = False
    passes = 1

    def __init__(self, op, inv_diag, omega):
        self.op = op
        self.scale = omega * inv_diag

    def start(self, x, b):
        self.x, self.b = x, b
        self.r = b - self.op._apply(x)
        return torch.linalg.vector_norm(self.r, dim=1).cpu().double().numpy()

    def residual(self, idx):  # pragma: no cover - exact residual is always current
        ii = torch.as_tensor(list(idx), dtype=torch.long, device=self.x.device)
        return torch.linalg.vector_norm(self.r[ii], dim=1).cpu().double().numpy()

    def step(self, idx):
        if len(idx) == self.x.shape[0]:
            self.x.addcmul_(self.r, self.scale)
            self.r = self.b - self.op._apply(self.x)
            return torch.linalg.vector_norm(self.r, dim=1).cpu().double().numpy()
        ii = torch.as_tensor(list(idx), dtype=torch.long, device=self.x.device)
        x = self.x[ii] + self.r[ii] * self.scale
        r = self.b[ii] - self.op._apply(x)
        self.x[ii] = x
        self.r[ii] = r
        return torch.linalg.vector_norm(r, dim=1).cpu().double().numpy()


# ------------------------------------------------------------------- driver
def _iterate(sys_, engine, *, method, callback, setup_seconds, info) -> SolveResult:
    """The shared loop: one ``engine.step`` per iteration, each system with its own stopping."""
    t0 = time.perf_counter()
    k = sys_.k
    x, b = sys_.x0.contiguous(), sys_.b.contiguous()
    bnorm = sys_.bnorm.detach().cpu().double().numpy()
    tol = sys_.tol.detach().cpu().double().numpy()
    zero = bnorm == 0
    if zero.any():
        x[torch.from_numpy(np.nonzero(zero)[0]).to(x.device)] = 0
    scale = np.where(bnorm > 0, bnorm, 1.0)
    rnorm = engine.start(x, b)
    r0 = rnorm.copy()
    history = [torch.from_numpy(rnorm / scale)]
    iterations = np.zeros(k, dtype=np.int64)
    reasons = ["maxiter"] * k
    active = np.ones(k, dtype=bool)
    for i in range(k):
        if zero[i]:
            reasons[i], active[i] = "zero_rhs", False
        elif rnorm[i] <= tol[i]:
            reasons[i], active[i] = "converged", False
    refreshes = 0
    it = 0
    while active.any() and it < sys_.maxiter:
        it += 1
        idx = np.nonzero(active)[0]
        rn = engine.step(idx)
        if engine.incremental:
            check = (rn <= tol[idx]) | (not it % REFRESH_EVERY)
            if check.any():
                rn[check] = engine.residual(idx[check])
                refreshes += int(check.sum())
        rnorm[idx] = rn
        iterations[idx] += 1
        history.append(torch.from_numpy(rnorm / scale))
        for i, v in zip(idx, rn):
            if not np.isfinite(v):
                reasons[i], active[i] = "nonfinite", False
            elif v <= tol[i]:
                reasons[i], active[i] = "converged", False
            elif v > DIVERGENCE_FACTOR * r0[i]:
                reasons[i], active[i] = "diverged", False
        if callback is not None:
            callback(x.reshape(sys_.shape))
    info = dict(info)
    info["sweeps"] = int(iterations.sum()) * engine.passes
    info["residual_refreshes"] = refreshes
    return make_result(sys_, x, history, iterations, reasons, method=method, setup_seconds=setup_seconds,
                       solve_seconds=time.perf_counter() - t0, info=info)


def _check_omega(omega, lo_open=True, hi=2.0, hi_open=True, name="omega") -> float:
    ok = isinstance(omega, numbers.Real) and np.isfinite(omega) and omega > 0 and (omega < hi if hi_open else omega <= hi)
    if not ok:
        rng = f"(0, {hi:g})" if hi_open else f"(0, {hi:g}]"
        raise ValueError(f"{name} must be a real number in {rng}, got {omega!r}")
    return float(omega)


def _matrix(sys_):
    csr, empty = K.matrix_form(sys_.op)
    if sys_.op.dtype.is_complex:
        csr = csr.astype(np.complex128 if sys_.op.dtype == torch.complex128 else np.complex64)
    else:
        csr = csr.astype(np.float32 if sys_.op.dtype == torch.float32 else np.float64)
    K.check_diagonal(csr.diagonal(), empty)
    return csr, empty


def sor(A, b, x0=None, *, omega=1.0, rtol=1e-6, atol=0.0, maxiter=None, callback=None, ordering=None,
        sweep="forward", _method="sor") -> SolveResult:
    """Solve ``A x = b`` by successive over-relaxation.

    Parameters
    ----------
    A : Operator with ``to_sparse()``, scipy sparse matrix or array, (n, n)
        Nonzero diagonal on every nonzero row; identically zero rows are left
        untouched.  Converges for symmetric positive definite ``A`` and any
        ``0 < omega < 2``.
    b : numpy.ndarray or torch.Tensor, (n,) or (k, n)
        Right-hand side(s); each of the ``k`` systems stops on its own.
    x0 : same type and shape as ``b``, optional
        Initial guess (default zeros).
    omega : float in (0, 2)
        Relaxation factor (1: Gauss–Seidel).
    rtol, atol : float
        Stop when ``||b - A x|| <= max(rtol ||b||, atol)``, checked after every
        iteration.
    maxiter : int, optional
        Iteration limit (default 10 000); an iteration is one sweep, or a
        forward plus a backward sweep for ``sweep="symmetric"``.
    callback : callable, optional
        ``callback(xk)`` after every iteration (a torch tensor shaped like ``b``).
    ordering : {"lexicographic", "multicolor"}, optional
        Default: ``"lexicographic"`` on CPU, ``"multicolor"`` on CUDA.
    sweep : {"forward", "backward", "symmetric"}

    Returns
    -------
    SolveResult
        ``info`` holds ``omega``, ``ordering``, ``sweep``, ``sweeps`` (one-
        directional passes over the matrix, summed over the systems),
        ``colors`` (multicolour) and ``residual_refreshes``.

    Raises
    ------
    ValueError
        ``omega`` outside (0, 2); unknown ``ordering``/``sweep``; a zero
        diagonal on a nonzero row; shape mismatches (see ``prepare``).
    TypeError
        ``A`` has no matrix form.

    Examples
    --------
    >>> import numpy as np, pyamg
    >>> from krylearn.solvers.relaxation import sor
    >>> A = pyamg.gallery.poisson((16, 16), format="csr")
    >>> res = sor(A, np.ones(256), omega=1.7, rtol=1e-8)
    >>> bool(res.converged), res.reason
    (True, 'converged')
    """
    t0 = time.perf_counter()
    omega = _check_omega(omega)
    if sweep not in _SWEEPS:
        raise ValueError(f"sweep must be one of {_SWEEPS}, got {sweep!r}")
    sys_ = prepare(A, b, x0, rtol=rtol, atol=atol, maxiter=maxiter, default_maxiter=lambda n: DEFAULT_MAXITER)
    if ordering is None:
        ordering = "lexicographic" if sys_.op.device.type == "cpu" else "multicolor"
    if ordering not in _ORDERINGS:
        raise ValueError(f"ordering must be one of {_ORDERINGS} or None, got {ordering!r}")
    csr, empty = _matrix(sys_)
    info = {"omega": omega, "ordering": ordering, "sweep": sweep, "empty_rows": int(empty.sum())}
    if ordering == "lexicographic":
        engine = _Lexicographic(csr, empty, omega, sweep, sys_.op.device)
        if sys_.op.device.type != "cpu":
            info["ordering"] = "lexicographic (cpu round trip)"
    else:
        engine = _Multicolor(csr, empty, omega, sweep, sys_.op.device, sys_.op.dtype)
        info["colors"] = engine.ncolors
    return _iterate(sys_, engine, method=_method, callback=callback,
                    setup_seconds=time.perf_counter() - t0, info=info)


def ssor(A, b, x0=None, *, omega=1.0, rtol=1e-6, atol=0.0, maxiter=None, callback=None,
         ordering=None) -> SolveResult:
    """Symmetric SOR: each iteration is a forward then a backward SOR sweep.

    Parameters and result as in :func:`sor` (``info["sweeps"]`` counts two per
    iteration).  One iteration from ``x = 0`` equals applying
    :func:`~krylearn.solvers.preconditioners.ssor_preconditioner` to ``b``.
    """
    return sor(A, b, x0, omega=omega, rtol=rtol, atol=atol, maxiter=maxiter, callback=callback,
               ordering=ordering, sweep="symmetric", _method="ssor")


def gauss_seidel(A, b, x0=None, *, rtol=1e-6, atol=0.0, maxiter=None, callback=None, ordering=None,
                 sweep="forward") -> SolveResult:
    """Gauss–Seidel: :func:`sor` with ``omega = 1``."""
    return sor(A, b, x0, omega=1.0, rtol=rtol, atol=atol, maxiter=maxiter, callback=callback,
               ordering=ordering, sweep=sweep, _method="gauss_seidel")


def jacobi(A, b, x0=None, *, omega=1.0, rtol=1e-6, atol=0.0, maxiter=None, callback=None) -> SolveResult:
    """(Damped) Jacobi iteration ``x <- x + w D^-1 (b - A x)``.

    Parameters
    ----------
    A : Operator, scipy sparse matrix or array, (n, n)
        Nonzero diagonal on every nonzero row (identically zero rows are left
        untouched).  A matrix-free operator without ``to_sparse()`` works too
        (its ``diagonal()`` is used; zero entries count as empty rows).
    b, x0, rtol, atol, maxiter, callback
        As in :func:`sor` (one iteration = one matrix product).
    omega : float in (0, 1]
        Damping.  Restricted to ``(0, 1]``: that is where Jacobi converges for
        every strictly (or irreducibly) diagonally dominant matrix and every
        SPD matrix with ``lambda_max(D^-1 A) < 2`` (e.g. Laplacians);
        over-relaxed Jacobi diverges on them.  ``2/3`` is the classical
        smoothing choice.

    Returns
    -------
    SolveResult
        ``info["sweeps"]`` counts matrix products (one per iteration and system).

    Raises
    ------
    ValueError
        ``omega`` outside ``(0, 1]``; a zero diagonal on a nonzero row.
    """
    t0 = time.perf_counter()
    omega = _check_omega(omega, hi=1.0, hi_open=False)
    sys_ = prepare(A, b, x0, rtol=rtol, atol=atol, maxiter=maxiter, default_maxiter=lambda n: DEFAULT_MAXITER)
    op = sys_.op
    try:
        csr, empty = _matrix(sys_)
        diag = torch.from_numpy(csr.diagonal()).to(op.device, op.dtype)
        empty_t = torch.from_numpy(empty).to(op.device)
    except TypeError:
        diag = op.diagonal().to(op.device, op.dtype).reshape(-1)
        empty_t = diag == 0
    inv = torch.where(empty_t, torch.zeros_like(diag), 1.0 / torch.where(empty_t, torch.ones_like(diag), diag))
    engine = _Jacobi(op, inv, omega)
    info = {"omega": omega, "empty_rows": int(empty_t.sum().item())}
    return _iterate(sys_, engine, method="jacobi", callback=callback,
                    setup_seconds=time.perf_counter() - t0, info=info)


__all__ = ["sor", "ssor", "gauss_seidel", "jacobi", "DEFAULT_MAXITER"]
