"""Input checking and result assembly shared by every iterative solver.

Solvers work on a batch: ``b`` of shape ``(k, n)`` (a 1-D ``b`` is a batch of
one) and return through :func:`make_result`, which restores the caller's
shape and array type.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
import torch

from ..operators.base import Operator, as_operator

from .result import SolveResult


@dataclass
class System:
    """A checked linear system ``A x = b`` in solver-ready form.

    Attributes
    ----------
    op : Operator
        Square operator, ``op.shape == (n, n)``.
    b : torch.Tensor, (k, n)
        Right-hand sides on ``op.device`` in the working dtype.
    x0 : torch.Tensor, (k, n)
        Initial guesses (zeros when none was given).
    bnorm : torch.Tensor, (k,)
        ``||b||`` per system (real dtype).
    tol : torch.Tensor, (k,)
        Absolute stopping threshold ``max(rtol * ||b||, atol)``.
    maxiter : int
    batched : bool
        Whether the caller passed a 2-D ``b``.
    as_numpy : bool
        Whether the caller passed numpy (results go back as numpy).
    shape : tuple
        The caller's ``b`` shape, restored on ``x``.
    """

    op: Operator
    b: torch.Tensor
    x0: torch.Tensor
    bnorm: torch.Tensor
    tol: torch.Tensor
    maxiter: int
    rtol: float
    atol: float
    batched: bool
    as_numpy: bool
    shape: tuple

    @property
    def n(self) -> int:
        return self.b.shape[1]

    @property
    def k(self) -> int:
        return self.b.shape[0]


def _to_tensor(a, name: str) -> tuple[torch.Tensor, bool]:
    if isinstance(a, torch.Tensor):
        return a, False
    if isinstance(a, np.ndarray):
        if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
            raise TypeError(f"{name} must be numeric, got dtype {a.dtype}")
        return torch.from_numpy(np.ascontiguousarray(a)), True
    if isinstance(a, (list, tuple)):
        return torch.from_numpy(np.asarray(a, dtype=np.float64)), True
    raise TypeError(f"{name} must be a numpy array or torch tensor, got {type(a).__name__}")


def check_tolerances(rtol, atol, maxiter) -> None:
    """Raise ``ValueError`` naming ``rtol``, ``atol`` or ``maxiter`` when out of range."""
    for name, v in (("rtol", rtol), ("atol", atol)):
        if not isinstance(v, numbers.Real) or not math.isfinite(v) or v < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
    if maxiter is not None and (not isinstance(maxiter, numbers.Integral) or maxiter < 1):
        raise ValueError(f"maxiter must be an integer >= 1, got {maxiter!r}")


def prepare(A, b, x0=None, *, rtol=1e-6, atol=0.0, maxiter=None, default_maxiter=None,
            dtype=None, require_square=True) -> System:
    """Validate ``A``, ``b``, ``x0`` and the tolerances; return a :class:`System`.

    Parameters
    ----------
    A : Operator, scipy sparse matrix, numpy array or torch tensor, (n, n)
    b : numpy array or torch tensor, (n,) or (k, n)
    x0 : same type as ``b``, optional
    rtol, atol : float
        Stopping rule ``||r|| <= max(rtol * ||b||, atol)`` (scipy's).
    maxiter : int, optional
        Defaults to ``default_maxiter(n)`` (or ``10 * n``).
    dtype : torch.dtype, optional
        Working dtype; default: promote(A.dtype, b.dtype), at least float32.

    Raises
    ------
    TypeError, ValueError
        Naming the argument: non-square or mismatched shapes, NaN/Inf in
        ``b`` or ``x0``, negative tolerances, ``maxiter < 1``.
    """
    check_tolerances(rtol, atol, maxiter)
    op = as_operator(A, name="A")
    if require_square and not op.is_square:
        raise ValueError(f"A must be square, got shape {op.shape}")
    if len(op.ishape) != 1:
        op = _Flattened(op)
    n = op.shape[1]

    bt, as_numpy = _to_tensor(b, "b")
    shape = tuple(bt.shape)
    if bt.ndim not in (1, 2) or bt.shape[-1] != n:
        raise ValueError(f"b must have shape ({n},) or (k, {n}) to match A {op.shape}, got {shape}")
    work = torch.promote_types(op.dtype, bt.dtype)
    if not (work.is_floating_point or work.is_complex):
        work = torch.float64
    if dtype is not None:
        work = dtype
    if work in (torch.float16, torch.bfloat16):
        work = torch.float32
    if op.dtype != work:
        op = op.to(dtype=work)
    bt = bt.to(device=op.device, dtype=work).reshape(-1, n)
    if not torch.isfinite(bt).all():
        raise ValueError("b contains NaN or Inf")

    if x0 is None:
        x0t = torch.zeros_like(bt)
    else:
        x0t, _ = _to_tensor(x0, "x0")
        if tuple(x0t.shape) != shape and not (x0t.ndim == 1 and x0t.shape[0] == n):
            raise ValueError(f"x0 must have the shape of b {shape}, got {tuple(x0t.shape)}")
        x0t = x0t.to(device=op.device, dtype=work).reshape(-1, n).expand_as(bt).clone()
        if not torch.isfinite(x0t).all():
            raise ValueError("x0 contains NaN or Inf")

    bnorm = torch.linalg.vector_norm(bt, dim=1)
    tol = torch.clamp(rtol * bnorm, min=atol)
    if maxiter is None:
        maxiter = default_maxiter(n) if default_maxiter is not None else 10 * n
    return System(op, bt, x0t, bnorm, tol, int(maxiter), float(rtol), float(atol),
                  len(shape) == 2, as_numpy, shape)


def relative(rnorm: torch.Tensor, system: System) -> torch.Tensor:
    """``||r|| / ||b||`` per system (``||r||`` itself where ``b == 0``)."""
    return rnorm / torch.where(system.bnorm > 0, system.bnorm, torch.ones_like(system.bnorm))


def initial_status(system: System, x: torch.Tensor, rnorm: torch.Tensor):
    """Reasons and the active mask before the first iteration.

    Systems already within tolerance are ``"converged"`` (``"zero_rhs"`` when
    ``b == 0``, with ``x`` zeroed); the rest start as ``"maxiter"``.  Returns
    ``(reasons: list[str], active: bool tensor (k,) on CPU)``.
    """
    reasons = ["maxiter"] * system.k
    active = (rnorm > system.tol).cpu()
    for i in range(system.k):
        if not active[i]:
            reasons[i] = "zero_rhs" if system.bnorm[i] == 0 else "converged"
            if system.bnorm[i] == 0:
                x[i].zero_()
    return reasons, active


def make_result(system: System, x: torch.Tensor, history, iterations, reasons, *, method: str,
                setup_seconds: float = 0.0, solve_seconds: float = 0.0, info=None) -> SolveResult:
    """Assemble a :class:`SolveResult` in the caller's shape and array type.

    ``history`` is a list of ``(k,)`` tensors of relative residuals (initial
    first); ``iterations`` a ``(k,)`` integer array; ``reasons`` a list of k
    strings.
    """
    hist = torch.stack([h.detach().to("cpu", torch.float64) for h in history]).numpy()
    iterations = np.asarray(iterations, dtype=np.int64).reshape(-1)
    converged = np.array([r in ("converged", "zero_rhs") for r in reasons])
    x = x.reshape(system.shape)
    if system.as_numpy:
        x = x.detach().cpu().numpy()
    if system.batched:
        return SolveResult(x, converged, iterations, hist, list(reasons), setup_seconds,
                           solve_seconds, method, dict(info or {}))
    it = int(iterations[0])
    return SolveResult(x, bool(converged[0]), it, hist[: it + 1, 0], reasons[0], setup_seconds,
                       solve_seconds, method, dict(info or {}))


class _Flattened(Operator):
    """View an operator on multi-dimensional tensors as one on flat vectors."""

    def __init__(self, op: Operator):
        self.op = op
        super().__init__(op.shape[1], op.shape[0], op.dtype, op.device)

    def _apply(self, x):
        return self.op._apply(x.reshape((-1,) + self.op.ishape)).reshape(x.shape[0], -1)

    def _adjoint(self):
        return _Flattened(self.op.H)

    def diagonal(self):
        return self.op.diagonal().reshape(-1)

    def to_sparse(self):
        return self.op.to_sparse()

    def _to(self, device, dtype):
        return _Flattened(self.op.to(device, dtype))
