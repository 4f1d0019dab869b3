"""Stationary relaxation methods: SOR, SSOR, Gauss–Seidel and (damped) Jacobi.

The functions are :func:`krylearn.solvers.sor`, :func:`~krylearn.solvers.ssor`,
:func:`~krylearn.solvers.gauss_seidel` and :func:`~krylearn.solvers.jacobi`
(or ``krylearn.solve(A, b, method="sor", omega=...)``).  Every solver returns a :class:`~krylearn.solvers.result.SolveResult` with the
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

import math
import numbers
import time

import numpy as np
import scipy.sparse
import torch

from ..operators.sparse import SparseMatrix
from . import _relax_kernels as K
from .base import IterativeMethod
from .driver import Stepper
from .krylov import check_empty_rows
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

    def replace(self, idx, r_true):
        ii = torch.as_tensor(idx, dtype=torch.long, device=self.x.device)
        self.r[ii] = r_true[ii]

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


# ------------------------------------------------------------------ stepper
class RelaxationStepper(Stepper):
    """A relaxation engine as a driver :class:`~krylearn.solvers.driver.Stepper`.

    The lexicographic and Jacobi engines compute the true residual with every
    sweep; the multicolour engine updates it incrementally, recomputes it
    every :data:`REFRESH_EVERY` sweeps, and the driver confirms it before
    declaring convergence.
    """

    divergence = DIVERGENCE_FACTOR

    def __init__(self, engine):
        self.engine = engine
        self.exact_residual = not engine.incremental
        self.matvecs = 0
        self.refreshes = 0
        self.sweeps = 0

    def start(self, x, r, b):
        self.k = x.shape[0]
        self.engine.start(x, b)
        self.count = 0

    def step(self, active):
        idx = np.nonzero(active.numpy())[0]
        rn = self.engine.step(idx)
        self.count += 1
        self.sweeps += len(idx) * self.engine.passes
        if self.engine.incremental and not self.count % REFRESH_EVERY:
            rn = self.engine.residual(idx)
            self.refreshes += len(idx)
        out = np.full(self.k, np.nan)
        out[idx] = rn
        return torch.from_numpy(out), {}

    def replace(self, rows, r_true):
        self.engine.replace(np.nonzero(rows.numpy())[0], r_true)
        self.refreshes += int(rows.sum())

    def info(self):
        return {"sweeps": self.sweeps, "residual_refreshes": self.refreshes}


# ------------------------------------------------------------------ methods
def _check_omega(omega, hi=2.0, hi_open=True, name="omega") -> float:
    ok = (isinstance(omega, numbers.Real) and not isinstance(omega, bool) and np.isfinite(omega) and omega > 0
          and (omega < hi if hi_open else omega <= hi))
    if not ok:
        rng = f"(0, {hi:g})" if hi_open else f"(0, {hi:g}]"
        raise ValueError(f"{name} must be a real number in {rng}, got {omega!r}")
    return float(omega)


def _typed(csr, dtype: torch.dtype):
    """``csr`` in the numpy equivalent of ``dtype``."""
    np_dtype = {torch.float32: np.float32, torch.complex64: np.complex64,
                torch.complex128: np.complex128}.get(dtype, np.float64)
    return csr.astype(np_dtype, copy=False)


class SORMethod(IterativeMethod):
    """Successive over-relaxation; see :func:`sor`.  Also ``"ssor"`` and ``"gauss-seidel"``.

    Setup checks the diagonal; the engines (lexicographic or multicolour) are
    built per working dtype on first use.  ``update(omega=...)`` changes
    omega without any setup.
    """

    name = "sor"
    options = {"omega": 1.0, "ordering": None, "sweep": "forward"}
    fixed: dict = {}

    def __init__(self, op, csr, **options):
        for key in self.fixed:
            if key in options:
                raise TypeError(f"{self.name} fixes {key}={self.fixed[key]!r}; use method='sor' to choose it")
        super().__init__(op, csr, **options)
        self.opts.update(self.fixed)
        if csr is None:
            raise TypeError(f"A must have a matrix form for {self.name}: a scipy sparse matrix, an array, a "
                            f"SparseMatrix or an operator implementing to_sparse(); {type(op).__name__} does not")
        self.omega = _check_omega(self.opts["omega"])
        if self.opts["sweep"] not in _SWEEPS:
            raise ValueError(f"sweep must be one of {_SWEEPS}, got {self.opts['sweep']!r}")
        ordering = self.opts["ordering"]
        if ordering is None:
            ordering = "lexicographic" if op.device.type == "cpu" else "multicolor"
        if ordering not in _ORDERINGS:
            raise ValueError(f"ordering must be one of {_ORDERINGS} or None, got {ordering!r}")
        self.ordering = ordering
        K.check_diagonal(csr.diagonal(), self.empty)
        self._engines = {}

    def update_options(self, **options) -> bool:
        """Apply option changes that need no new setup (``omega``); False if a full setup is needed."""
        if set(options) - {"omega"}:
            return False
        if "omega" in options:
            self.omega = _check_omega(options["omega"])
            self.opts["omega"] = self.omega
            for e in self._engines.values():
                e.omega = self.omega
        return True

    def default_maxiter(self, n):
        return DEFAULT_MAXITER

    def _engine(self, dtype):
        if dtype not in self._engines:
            csr = _typed(self.csr, dtype)
            sweep = self.opts["sweep"]
            if self.ordering == "lexicographic":
                self._engines[dtype] = _Lexicographic(csr, self.empty, self.omega, sweep, self.op.device)
            else:
                self._engines[dtype] = _Multicolor(csr, self.empty, self.omega, sweep, self.op.device, dtype)
        return self._engines[dtype]

    def stepper(self, op, rhs):
        return RelaxationStepper(self._engine(op.dtype))

    def info(self):
        out = {"omega": self.omega, "ordering": self.ordering, "sweep": self.opts["sweep"],
               "empty_rows": int(self.empty.sum())}
        if self.ordering == "lexicographic" and self.op.device.type != "cpu":
            out["ordering"] = "lexicographic (cpu round trip)"
        colors = [e.ncolors for e in self._engines.values() if hasattr(e, "ncolors")]
        if colors:
            out["colors"] = colors[0]
        return out

    def preconditioner(self):
        """One sweep (forward, or symmetric for ssor) from zero, as a linear map."""
        def apply(r):
            e = self._engine(r.dtype)
            x = torch.zeros_like(r)
            e.start(x, r)
            e.step(np.arange(r.shape[0]))
            return x
        return apply

    def fast_solve(self, b, x0, rtol, atol, maxiter) -> SolveResult | None:
        """One right-hand side on the CPU in one compiled loop (same contract and iterates as the driver)."""
        if not (self.ordering == "lexicographic" and self.opts["sweep"] != "backward"
                and self.op.device.type == "cpu" and isinstance(b, np.ndarray)
                and b.ndim == 1 and b.dtype == np.float64 and self.op.dtype == torch.float64
                and (x0 is None or (isinstance(x0, np.ndarray) and x0.shape == b.shape))):
            return None
        if b.shape != (self.op.shape[0],) or not np.all(np.isfinite(b)):
            return None  # the general path raises the right error
        t0 = time.perf_counter()
        e = self._engine(torch.float64)
        amax = float(np.max(np.abs(b))) if b.size else 0.0
        s = math.ldexp(1.0, -math.frexp(amax)[1]) if amax > 0 else 1.0
        bs = b * s
        x = np.zeros_like(bs) if x0 is None else np.asarray(x0, dtype=np.float64) * s
        if not np.all(np.isfinite(x)):
            return None
        check_empty_rows(self.empty, bs)
        bnorm = float(np.sqrt(bs @ bs))
        tol = max(rtol * bnorm, atol * s)
        info = {**self.info(), "residual_refreshes": 0, "fast_path": True}
        if bnorm == 0:
            return _fast_result(np.zeros_like(b), 0, "zero_rhs", np.zeros(1), info, self.name, t0)
        hist = self.history_buffer(maxiter)
        r0 = math.sqrt(K.residual_norm2(e.indptr, e.indices, e.data, x, bs))
        hist[0] = r0
        if r0 <= tol:
            info["true_residual"] = r0 / bnorm
            return _fast_result(x / s, 0, "converged", hist[:1] / bnorm, info, self.name, t0)
        it, code = K.sor_solve(e.indptr, e.indices, e.data, e.dinv, e.first, e.last, x, bs, self.omega, tol, r0,
                               maxiter, self.opts["sweep"] == "symmetric", DIVERGENCE_FACTOR, hist)
        h = hist[: it + 1] / bnorm
        if not np.isfinite(h[-1]):
            h[-1] = h[-2]
        info["sweeps"] = int(it) * e.passes
        info["true_residual"] = float(hist[it] / bnorm)
        return _fast_result(x / s, int(it), ("maxiter", "converged", "nonfinite", "diverged")[code], h, info,
                            self.name, t0)


def _fast_result(x, it, reason, hist, info, method, t0) -> SolveResult:
    return SolveResult(x, reason in ("converged", "zero_rhs"), it, hist, reason, 0.0, time.perf_counter() - t0,
                       method, info)


class _SSORMethod(SORMethod):
    name = "ssor"
    fixed = {"sweep": "symmetric"}


class _GaussSeidelMethod(SORMethod):
    name = "gauss-seidel"
    fixed = {"omega": 1.0}


class JacobiMethod(IterativeMethod):
    """(Damped) Jacobi; see :func:`jacobi`.  Works on matrix-free operators through their ``diagonal()``."""

    name = "jacobi"
    options = {"omega": 1.0}

    def __init__(self, op, csr, **options):
        super().__init__(op, csr, **options)
        self.omega = _check_omega(self.opts["omega"], hi=1.0, hi_open=False)
        if csr is not None:
            diag = csr.diagonal()
            K.check_diagonal(diag, self.empty)
            self.diag = torch.from_numpy(diag)
            self.empty_t = torch.from_numpy(self.empty)
        else:
            self.diag = op.diagonal().reshape(-1).cpu()
            self.empty_t = self.diag == 0
        self.inv = torch.where(self.empty_t, torch.zeros_like(self.diag),
                               1.0 / torch.where(self.empty_t, torch.ones_like(self.diag), self.diag))

    def update_options(self, **options) -> bool:
        if set(options) - {"omega"}:
            return False
        if "omega" in options:
            self.omega = _check_omega(options["omega"], hi=1.0, hi_open=False)
        return True

    def default_maxiter(self, n):
        return DEFAULT_MAXITER

    def stepper(self, op, rhs):
        return RelaxationStepper(_Jacobi(op, self.inv.to(op.device, op.dtype), self.omega))

    def preconditioner(self):
        return lambda r: r * (self.omega * self.inv.to(r.device, r.dtype))

    def info(self):
        return {"omega": self.omega, "empty_rows": int(self.empty_t.sum())}


#: The relaxation methods by name.
RELAXATION_CLASSES = {"sor": SORMethod, "ssor": _SSORMethod, "gauss-seidel": _GaussSeidelMethod,
                      "jacobi": JacobiMethod}



__all__ = ["SORMethod", "JacobiMethod", "RelaxationStepper", "RELAXATION_CLASSES", "DEFAULT_MAXITER",
           "DIVERGENCE_FACTOR"]
