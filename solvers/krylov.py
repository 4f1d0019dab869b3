"""Conjugate gradients: the CG stepper, the CG / PCG methods and :func:`cg`.

:class:`CGStepper` is one (preconditioned) CG iteration on ``(k, n)``
iterates; :class:`CGMethod` is its setup (symmetry check, null space,
preconditioner), run by :class:`~krylearn.solvers.solver.Solver` under the
shared driver (:mod:`.driver`), which owns the stopping rule and confirms
convergence on the true residual.  The function is :func:`krylearn.solvers.cg`.  Inner products are Hermitian
(``Re <a, b>``), so complex Hermitian positive definite systems work too.
"""

from __future__ import annotations

import math
import time

import numpy as np
import scipy.sparse
import torch

from ..operators.base import Dense, FunctionOperator, Operator
from ..operators.convert import as_operator
from ..operators.sparse import SparseMatrix
from ..operators.stencil import PoissonGrid
from . import _cg_kernels as K2
from .base import IterativeMethod
from .driver import Stepper, iterate
from .inputs import Flattened, prepare_rhs
from .multigrid import MultigridPreconditioner, grid_stencil
from .nullspace import ConstantNullSpace, detect_constant_nullspace, grid_nullspace
from .preconditioners import complex_over_real, make_preconditioner
from .result import SolveResult

__all__ = ["CGStepper", "CGMethod", "PCG_CLASSES", "as_preconditioner", "check_hermitian", "cg_batch"]


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise real inner products ``Re <a_i, b_i>`` of ``(k, n)`` tensors -> ``(k,)``."""
    if a.is_complex():
        return (a.conj() * b).real.sum(dim=1)
    if a.shape[0] == 1:
        return torch.dot(a[0], b[0]).reshape(1)
    return (a * b).sum(dim=1)


def _fusable(x: torch.Tensor, y: torch.Tensor) -> bool:
    """Whether one system's vectors can go through the compiled one-pass updates (real, CPU, contiguous, no grad)."""
    return (x.device.type == "cpu" and y.device.type == "cpu" and x.dtype == y.dtype
            and x.dtype in (torch.float32, torch.float64) and x.is_contiguous() and y.is_contiguous()
            and not x.requires_grad and not y.requires_grad and x.shape == y.shape)


class CGStepper(Stepper):
    """One (preconditioned) conjugate-gradient iteration per call.

    Parameters
    ----------
    apply_A : callable
        ``(k, n) -> (k, n)``, Hermitian positive (semi-)definite.
    apply_M : callable, optional
        The preconditioner ``M^-1`` on ``(k, n)`` tensors, Hermitian positive definite.
    nullspace : ConstantNullSpace, optional
        Kept out of the preconditioned residual and the residual.

    Each step computes ``z = M^-1 r``, the direction ``p = z + beta p`` (``beta
    = 0`` after a (re)start), ``q = A p`` and the update; ``p.q <= 0`` or
    ``r.z <= 0`` stop the row with ``"indefinite"``, non-finite values with
    ``"nonfinite"``, before ``x`` changes.
    """

    def __init__(self, apply_A, apply_M=None, nullspace: ConstantNullSpace | None = None):
        self.apply_A = apply_A
        self.apply_M = apply_M
        self.ns = nullspace
        self.matvecs = 0

    def start(self, x, r, b):
        self.x, self.r = x, r
        k = x.shape[0]
        self.p = torch.zeros_like(x)
        real = x.real.dtype if x.is_complex() else x.dtype
        self.rz = torch.ones(k, dtype=real, device=x.device)
        self.fresh = torch.ones(k, dtype=torch.bool, device=x.device)

    def _precondition(self, r):
        if self.apply_M is None:
            return r
        z = self.apply_M(r)
        if self.ns is not None:
            self.ns.project(z)
        return z

    def step(self, active):
        if self.x.shape[0] == 1 and bool(active[0]):
            return self._step_one()
        x, r, p = self.x, self.r, self.p
        act = active.to(x.device)
        z = self._precondition(r)
        rz = _dot(r, z)
        bad_z = ~torch.isfinite(rz)
        neg = torch.isfinite(rz) & (rz <= 0)
        ok = act & ~bad_z & ~neg
        beta = torch.where(self.fresh | ~ok, torch.zeros_like(rz), rz / torch.where(ok, self.rz, torch.ones_like(rz)))
        p.copy_(torch.where(ok.unsqueeze(1), z + beta.to(p.dtype).unsqueeze(1) * p, p))
        q = self.apply_A(p)
        self.matvecs += 1
        pq = _dot(p, q)
        bad_q = ok & ~torch.isfinite(pq)
        neg_q = ok & torch.isfinite(pq) & (pq <= 0)
        go = ok & ~bad_q & ~neg_q
        alpha = torch.where(go, rz / torch.where(go, pq, torch.ones_like(pq)), torch.zeros_like(pq))
        g = go.unsqueeze(1)
        x.add_(torch.where(g, alpha.to(x.dtype).unsqueeze(1) * p, torch.zeros_like(p)))
        r.sub_(torch.where(g, alpha.to(r.dtype).unsqueeze(1) * q, torch.zeros_like(q)))
        if self.ns is not None:
            self.ns.project(r)
        self.rz = torch.where(go, rz, self.rz)
        self.fresh = self.fresh & ~go
        flags = torch.stack([act & bad_z | bad_q, act & neg | neg_q]).cpu()
        return torch.linalg.vector_norm(r, dim=1), {"nonfinite": flags[0], "indefinite": flags[1]}

    def _step_one(self):
        """The single-system path: Python scalars, no masks."""
        x, r, p = self.x, self.r, self.p
        z = self._precondition(r)
        rz = float(_dot(r, z))
        no = torch.zeros(1, dtype=torch.bool)
        yes = torch.ones(1, dtype=torch.bool)
        if not np.isfinite(rz):
            return torch.linalg.vector_norm(r, dim=1), {"nonfinite": yes}
        if rz <= 0:
            return torch.linalg.vector_norm(r, dim=1), {"indefinite": yes}
        fused = _fusable(x, z)
        if bool(self.fresh[0]):
            p.copy_(z)
        elif fused:
            K2.new_direction(p[0].numpy(), z[0].numpy(), rz / float(self.rz[0]))
        else:
            p.mul_(rz / float(self.rz[0])).add_(z)
        q = self.apply_A(p)
        self.matvecs += 1
        pq = float(_dot(p, q))
        if not np.isfinite(pq):
            return torch.linalg.vector_norm(r, dim=1), {"nonfinite": yes}
        if pq <= 0:
            return torch.linalg.vector_norm(r, dim=1), {"indefinite": yes}
        alpha = rz / pq
        self.rz[0] = rz
        self.fresh[0] = False
        if fused and self.ns is None and _fusable(x, q):  # one compiled pass instead of three torch ones
            rr = K2.update_xr(x[0].numpy(), r[0].numpy(), p[0].numpy(), q[0].numpy(), alpha)
            return torch.tensor([math.sqrt(rr)], dtype=r.dtype), {"nonfinite": no}
        x.add_(p, alpha=alpha)
        r.sub_(q, alpha=alpha)
        if self.ns is not None:
            self.ns.project(r)
        return torch.linalg.vector_norm(r, dim=1), {"nonfinite": no}

    def replace(self, rows, r_true):
        m = rows.to(self.r.device)
        self.r.copy_(torch.where(m.unsqueeze(1), r_true, self.r))
        self.fresh = self.fresh | m


def as_preconditioner(M, n: int, name: str = "M"):
    """A user's preconditioner as a function on ``(k, n)`` tensors.

    Accepts a krylearn Operator, a scipy ``LinearOperator`` (pyamg's
    ``ml.aspreconditioner()``), anything with ``shape`` and ``matvec``, a
    dense array or a scipy sparse matrix (all applied as ``M @ r``), or a
    callable on ``(k, n)`` tensors.
    """
    if M is None:
        return None
    if not isinstance(M, Operator) and callable(M) and not hasattr(M, "matvec") and not hasattr(M, "shape"):
        return M
    op = as_operator(M, name=name)
    if op.shape != (n, n):
        raise ValueError(f"{name} must be ({n}, {n}) to match A, got {op.shape}")
    flat = op._apply if len(op.ishape) == 1 else (lambda v: op._apply(v.reshape((-1,) + op.ishape)).reshape(v.shape))

    def apply(v):
        out = flat(v.to(device=op.device) if v.device != op.device else v)
        return out.to(device=v.device, dtype=v.dtype) if (out.device != v.device or out.dtype != v.dtype) else out

    return apply


def _projected(M, nullspace):
    """``M``'s application, with the null space removed in ``M``'s own precision before any down-cast.

    On a singular matrix an AMG cycle can return ``z`` with a null-space
    component many orders above the rest (its coarse solve of a nearly
    singular matrix); removing it after a cast to float32 would leave only
    rounding noise.
    """
    if nullspace is None:
        return M._apply

    def apply(v):
        if v.is_complex() and not M.dtype.is_complex:
            return complex_over_real(apply, v)
        z = M._solve(v.to(device=M.device, dtype=M.dtype))
        return nullspace.project(z).to(device=v.device, dtype=v.dtype)

    return apply


def _is_matrix(op: Operator) -> bool:
    return isinstance(op, (SparseMatrix, Dense))


class CGMethod(IterativeMethod):
    """CG, optionally preconditioned: ``"cg"`` (``M`` given by the user or none) and ``"pcg-*"``.

    Options
    -------
    M : preconditioner for ``"cg"`` (see :func:`as_preconditioner`).
    nullspace : {"auto", None} or ConstantNullSpace
        ``"auto"`` detects exactly singular components of a stored matrix (pure
        Neumann regions, see :func:`~krylearn.solvers.nullspace.detect_constant_nullspace`).
    check_symmetry : bool
        Reject a stored matrix that is not Hermitian (default True).
    dtype : torch.dtype
        Working precision (default: promote ``A`` and ``b``).
    preconditioner options (``omega``, ``pivot_tol``, ``backend``, pyamg options) for ``"pcg-*"``.
    """

    name = "cg"
    options = {"M": None, "nullspace": "auto", "check_symmetry": True, "dtype": None}
    preconditioner_name: str | None = None

    def __init__(self, op, csr, **options):
        known = {k: options.pop(k) for k in list(options) if k in self.options}
        self.pc_options = options if self.preconditioner_name else {}
        if options and not self.preconditioner_name:
            raise TypeError(f"cg got unknown option(s) {sorted(options)}; it accepts {sorted(self.options)}")
        super().__init__(op, csr, **known)
        self.dtype = self.opts["dtype"]
        if self.opts["check_symmetry"] and csr is not None and _is_matrix(op):
            check_hermitian(csr)
        self.nullspace = self._nullspace(self.opts["nullspace"], csr, op)
        if self.preconditioner_name:
            if self.opts["M"] is not None:
                raise TypeError(f"{self.name} builds its own preconditioner; pass M only with method='cg'")
            self.M = self._make_preconditioner(op, csr)
            self._apply_M = _projected(self.M, self.nullspace)
        else:
            self.M = self.opts["M"]
            self._apply_M = as_preconditioner(self.M, op.shape[0])

    def _make_preconditioner(self, op, csr):
        return make_preconditioner(self.preconditioner_name, op, csr=csr, **self.pc_options)

    @staticmethod
    def _nullspace(choice, csr, op):
        if isinstance(choice, ConstantNullSpace):
            return choice
        if choice == "auto":
            inner = getattr(op, "op", op)
            if csr is None and isinstance(inner, PoissonGrid):
                return grid_nullspace(inner)
            return detect_constant_nullspace(csr, device=op.device)
        if choice is None:
            return None
        raise ValueError(f"nullspace must be 'auto', None or a ConstantNullSpace, got {choice!r}")

    def stepper(self, op, rhs):
        return CGStepper(op._apply, self._apply_M, self.nullspace)

    def preconditioner(self):
        return self._apply_M

    def info(self):
        out = {"null_space": self.nullspace.count if self.nullspace is not None else 0}
        if self.preconditioner_name:
            out["preconditioner"] = dict(self.M.info)
        return out


def check_hermitian(csr: scipy.sparse.csr_matrix, name: str = "A") -> None:
    """Reject a stored matrix that is not Hermitian: CG would silently go wrong."""
    if not csr.nnz:
        return
    scale = float(np.abs(csr.data).max())
    asym = K2.asymmetry(csr.indptr, csr.indices, csr.data)
    if asym > 1e-12 * scale:
        raise ValueError(
            f"{name} is not symmetric (max |A - A^H| = {asym:.3g}, max |A| = {scale:.3g}): CG and the PCG "
            "methods need a symmetric (Hermitian) positive definite matrix; pass check_symmetry=False to "
            "override"
        )


def _pcg_class(pc: str, base=CGMethod):
    return type(f"PCG_{pc}", (base,), {"name": f"pcg-{pc}", "preconditioner_name": pc})


class _PCGSSOR(CGMethod):
    """SSOR-PCG, with a compiled whole-solve loop for one real fp64 right-hand side on the CPU."""

    def __init__(self, op, csr, **options):
        super().__init__(op, csr, **options)
        self.empty_rows = np.nonzero(self.empty)[0].astype(np.int64) if self.empty is not None else None

    def update_options(self, **options) -> bool:
        """``omega`` changes rebuild only the preconditioner (no symmetry check, no null-space search)."""
        if set(options) - {"omega"}:
            return False
        self.pc_options.update(options)
        self.M = self.M.with_omega(self.pc_options["omega"])
        self._apply_M = _projected(self.M, self.nullspace)
        return True

    def fast_solve(self, b, x0, rtol, atol, maxiter):
        M = self.M
        if not (isinstance(b, np.ndarray) and b.ndim == 1 and b.dtype == np.float64 and self.nullspace is None
                and self.op.dtype == torch.float64 and self.op.device.type == "cpu" and M.backend == "numba"
                and b.shape == (self.op.shape[0],) and (x0 is None or (isinstance(x0, np.ndarray)
                                                                       and x0.shape == b.shape))):
            return None
        if not np.all(np.isfinite(b)) or (x0 is not None and not np.all(np.isfinite(x0))):
            return None  # the general path raises the right error
        return _fast_pcg_ssor(self, M, b, x0, rtol, atol, maxiter)


def _fast_pcg_ssor(method, M, b, x0, rtol, atol, maxiter):
    t0 = time.perf_counter()
    check_empty_rows(method.empty, b)
    amax = float(np.max(np.abs(b))) if b.size else 0.0
    s = math.ldexp(1.0, -math.frexp(amax)[1]) if amax > 0 else 1.0
    bs = b * s
    x = np.zeros_like(bs) if x0 is None else np.asarray(x0, dtype=np.float64) * s
    bnorm = math.sqrt(bs @ bs)
    info = {**method.info(), "fast_path": True}
    if bnorm == 0:
        return SolveResult(np.zeros_like(b), True, 0, np.zeros(1), "zero_rhs", 0.0, time.perf_counter() - t0,
                           method.name, {**info, "true_residual": 0.0, "matvecs": 0})
    tol = max(rtol * bnorm, atol * s)
    c = M._csr
    hist = method.history_buffer(maxiter)
    empty_rows = method.empty_rows
    it, code, matvecs, true_norm = K2.pcg_ssor_solve(c.indptr, c.indices, c.data, M._diag, M._wdinv, empty_rows,
                                                     M.omega, x, bs, tol, maxiter, hist)
    reason = "converged" if code == -1 else K2.CODES[code]
    if true_norm < 0:
        true_norm = float(np.linalg.norm(bs - c @ x))
        matvecs += 1
    info.update(true_residual=true_norm / bnorm, matvecs=int(matvecs))
    return SolveResult(x / s, reason == "converged", int(it), hist[: it + 1] / bnorm, reason, 0.0,
                       time.perf_counter() - t0, method.name, info)


def check_empty_rows(empty: np.ndarray | None, b: np.ndarray) -> None:
    """``ValueError`` when ``b`` (numpy, (n,)) is nonzero where ``A`` has an identically zero row."""
    if empty is not None and empty.any() and np.any(b[empty] != 0):
        idx = int(np.nonzero(empty & (b != 0))[0][0])
        raise ValueError(f"b is nonzero at row {idx}, where A is identically zero (a solid/empty cell in the "
                         "full-grid convention): the system has no solution; zero b there")


class MGPCG(CGMethod):
    """CG preconditioned by one geometric-multigrid V-cycle on the grid (``method="mgpcg"``).

    Matrix-free on a :class:`~krylearn.operators.PoissonGrid` (no CSR is
    built; the null space comes from the grid); a stored 5-/7-point grid
    Laplacian works with ``grid_shape``.  Options: ``grid_shape``, ``smoother``,
    ``omega``, ``sweeps``, ``coarse_size`` (see
    :class:`~krylearn.solvers.multigrid.MultigridPreconditioner`), and CG's.
    """

    name = "mgpcg"
    preconditioner_name = "mg"
    options = {**CGMethod.options, "grid_shape": None, "flags": None}
    uses_matrix = False  # on a PoissonGrid: the Solver builds no CSR

    def __init__(self, op, csr, **options):
        super().__init__(op, csr, **options)
        inner = getattr(op, "op", op)
        if self.empty is None and isinstance(inner, PoissonGrid):
            self.empty = (inner.weights()[0] == 0).reshape(-1)

    def _nullspace(self, choice, csr, op):
        """On a stored matrix: the grid's null space, from the stencil the V-cycle needs anyway."""
        self._stencil = self._grid = None
        if csr is not None:
            self._stencil = grid_stencil(op, csr, self.opts["grid_shape"])
            if op.dtype in (torch.float32, torch.float64):
                self._grid = PoissonGrid.from_weights(*self._stencil, dtype=op.dtype, device=op.device)
        if choice == "auto" and self._grid is not None:
            return grid_nullspace(self._grid)
        return super()._nullspace(choice, csr, op)

    def stepper(self, op, rhs):
        """CG's products with ``A`` on a stored matrix go through the grid stencil read out of it.

        It is the same matrix (checked symmetric, every entry a face of the
        grid) at a fraction of the cost of a sparse product; the driver's
        true residual still uses the caller's ``A``.
        """
        grid = self._grid
        if grid is None or grid.dtype != op.dtype or grid.device != op.device or op.shape != grid.shape:
            return super().stepper(op, rhs)
        return CGStepper(grid._apply, self._apply_M, self.nullspace)

    def _make_preconditioner(self, op, csr):
        return MultigridPreconditioner(op, csr=csr, grid_shape=self.opts["grid_shape"], flags=self.opts["flags"],
                                       stencil=self._stencil, **self.pc_options)


#: The PCG methods by name.
PCG_CLASSES = {"pcg-jacobi": _pcg_class("jacobi"), "pcg-ic": _pcg_class("ic0"),
               "pcg-ssor": _pcg_class("ssor", _PCGSSOR), "pcg-amg": _pcg_class("amg"), "mgpcg": MGPCG}


def cg_batch(apply, b: torch.Tensor, x0: torch.Tensor | None = None, *, maxiter: int, rtol: float = 0.0,
             atol: float = 0.0, method: str = "cg"):
    """CG on ``k`` independent Hermitian positive (semi-)definite systems given as a function, no setup.

    The shared driver runs it (stopping rule, true-residual confirmation,
    scaling, reasons), so every CG in the package, including the fixed-step
    data-consistency CG of the DDS samplers, obeys one contract.

    Parameters
    ----------
    apply : callable
        ``v -> A v`` on tensors shaped like ``b``, linear, Hermitian PSD per row.
    b : torch.Tensor, (k, *shape)
        Row ``i`` is system ``i``'s right-hand side (real or complex).
    x0 : torch.Tensor, like ``b``, optional
    maxiter : int
    rtol, atol : float
        Stopping rule ``||b_i - A x_i|| <= max(rtol ||b_i||, atol)`` per row
        (``rtol = atol = 0``: run ``maxiter`` steps, stopping only rows whose
        residual vanishes or stagnates at rounding level).

    Returns
    -------
    SolveResult
        ``x`` shaped like ``b``; per-row ``converged``/``reason``/``iterations``.
    """
    op = FunctionOperator(apply, tuple(b.shape[1:]), b.dtype, b.device)
    flat = Flattened(op)
    rhs = prepare_rhs(flat, b, x0, rtol=rtol, atol=atol, dtype=b.dtype, original=op)
    return iterate(flat, rhs, CGStepper(flat._apply), maxiter=maxiter, method=method)
