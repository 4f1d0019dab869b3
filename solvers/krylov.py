"""Krylov solvers: (preconditioned) conjugate gradients."""

from __future__ import annotations

import time

import torch

from ..operators.base import Operator

from ._common import initial_status, make_result, prepare, relative
from .nullspace import ConstantNullSpace, detect_constant_nullspace
from .result import SolveResult


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise real inner products ``Re <a_i, b_i>`` of ``(k, n)`` tensors -> ``(k,)``."""
    if a.shape[0] == 1 and not a.is_complex():
        return torch.dot(a[0], b[0]).reshape(1)
    if a.is_complex():
        return (a.conj() * b).real.sum(dim=1)
    return (a * b).sum(dim=1)


def _norm(a: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(a, dim=1)


def _as_apply(M):
    if M is None:
        return None
    if isinstance(M, Operator):
        return M._apply
    if callable(M):
        return M
    raise TypeError(f"M must be a krylearn Operator or a callable on (k, n) tensors, got {type(M).__name__}")


def cg(A, b, x0=None, *, rtol=1e-6, atol=0.0, maxiter=None, M=None, callback=None,
       nullspace="auto", dtype=None) -> SolveResult:
    """Solve ``A x = b`` for symmetric positive (semi-)definite ``A`` by (preconditioned) CG.

    Parameters
    ----------
    A : Operator, scipy sparse matrix, numpy array or torch tensor, (n, n)
        Symmetric positive definite (or semidefinite with a constant null
        space, see ``nullspace``).  Identically zero rows (the full-grid
        convention for solid/empty cells) are allowed where ``b`` is zero.
    b : numpy.ndarray or torch.Tensor, (n,) or (k, n)
        Right-hand side(s); ``k`` systems are solved at once.
    x0 : same type and shape as ``b``, optional
        Initial guess (default zeros).
    rtol, atol : float
        Stop when ``||r|| <= max(rtol * ||b||, atol)`` (2-norm, scipy's rule).
    maxiter : int, optional
        Iteration limit (default ``10 * n``).
    M : Operator or callable, optional
        Preconditioner applying ``M^-1 ~ A^-1`` to a ``(k, n)`` tensor; must
        be symmetric positive definite.
    callback : callable, optional
        Called as ``callback(xk)`` after every iteration with the current
        iterate (shape of ``b``; a torch tensor).
    nullspace : {"auto", None} or ConstantNullSpace
        ``"auto"`` detects singular components whose rows sum to zero
        (pure-Neumann regions), projects ``b`` onto the range and keeps the
        iterates orthogonal to the null space; the minimum-norm solution is
        returned and ``info["null_space"]`` counts the components.  A
        :class:`~krylearn.solvers.nullspace.ConstantNullSpace` already
        detected by the caller is used as given.
    dtype : torch.dtype, optional
        Working precision (default: promote ``A`` and ``b``; fp64 for fp64 input).

    Returns
    -------
    SolveResult
        ``reason`` is ``"converged"``, ``"zero_rhs"``, ``"maxiter"``,
        ``"indefinite"`` (``p.Ap <= 0`` or ``r.z <= 0``: ``A`` or ``M`` is not
        SPD; ``x`` is the last iterate before that step), ``"breakdown"`` or
        ``"nonfinite"``.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from krylearn.solvers.krylov import cg
    >>> A = sp.diags([-1, 2, -1], [-1, 0, 1], shape=(50, 50), format="csr")
    >>> res = cg(A, np.ones(50), rtol=1e-10)
    >>> res.converged, res.iterations <= 50
    (True, True)
    """
    t_setup = time.perf_counter()
    sys_ = prepare(A, b, x0, rtol=rtol, atol=atol, maxiter=maxiter, dtype=dtype)
    op, tol = sys_.op, sys_.tol
    apply_A = op._apply
    apply_M = _as_apply(M)
    info = {"null_space": 0}
    if isinstance(nullspace, ConstantNullSpace):
        ns = nullspace
    elif nullspace == "auto":
        ns = detect_constant_nullspace(op)
    elif nullspace is None:
        ns = None
    else:
        raise ValueError(f"nullspace must be 'auto', None or a ConstantNullSpace, got {nullspace!r}")
    b_ = sys_.b
    if ns is not None:
        b_ = ns.project(b_.clone())
        info["null_space"] = ns.count
        # relative size of the part of b that no x can match
        info["inconsistency"] = (_norm(sys_.b - b_) / sys_.bnorm.clamp_min(1e-300)).max().item()
    setup_seconds = time.perf_counter() - t_setup

    t0 = time.perf_counter()
    k = sys_.k
    x = sys_.x0
    if ns is not None:
        ns.project(x)
    nonzero_x0 = bool(x.any())
    r = b_ - apply_A(x) if nonzero_x0 else b_.clone()
    rnorm = _norm(r)
    history = [relative(rnorm, sys_)]
    iterations = torch.zeros(k, dtype=torch.int64)
    reasons, active = initial_status(sys_, x, rnorm)

    def stop(mask: torch.Tensor, why: str):
        for i in torch.nonzero(mask & active).flatten().tolist():
            reasons[i] = why
        active.copy_(active & ~mask)

    if active.any():
        z = apply_M(r) if apply_M is not None else r
        if ns is not None and apply_M is not None:
            ns.project(z)
        rz = _dot(r, z)
        stop((rz <= 0).cpu() & (rnorm > 0).cpu(), "indefinite")
        p = z.clone()
    it = 0
    while active.any() and it < sys_.maxiter:
        it += 1
        q = apply_A(p)
        pq = _dot(p, q)
        pq_c = pq.cpu()
        stop(~torch.isfinite(pq_c), "nonfinite")
        stop(pq_c <= 0, "indefinite")
        act = active.to(x.device)
        alpha = torch.where(act, rz / torch.where(act, pq, torch.ones_like(pq)), torch.zeros_like(pq))
        alpha = alpha.to(x.dtype).unsqueeze(1)
        x.addcmul_(alpha, p)
        r.addcmul_(alpha, q, value=-1)
        if ns is not None:
            ns.project(r)
        rnorm = _norm(r)
        iterations += active.long()
        history.append(torch.where(active.to(rnorm.device), relative(rnorm, sys_), history[-1]))
        stop(~torch.isfinite(rnorm).cpu(), "nonfinite")
        stop((rnorm <= tol).cpu(), "converged")
        if callback is not None:
            callback(x.reshape(sys_.shape))
        if not active.any():
            break
        z = apply_M(r) if apply_M is not None else r
        if ns is not None and apply_M is not None:
            ns.project(z)
        rz_new = _dot(r, z)
        stop((rz_new <= 0).cpu(), "indefinite")
        beta = (rz_new / torch.where(rz == 0, torch.ones_like(rz), rz)).to(x.dtype).unsqueeze(1)
        p.mul_(beta).add_(z)
        rz = rz_new
    if ns is not None:
        ns.project(x)
    solve_seconds = time.perf_counter() - t0
    info["matvecs"] = it + int(nonzero_x0)
    return make_result(sys_, x, history, iterations.numpy(), reasons, method="cg",
                       setup_seconds=setup_seconds, solve_seconds=solve_seconds, info=info)
