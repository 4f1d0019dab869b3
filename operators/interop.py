"""Operators from other libraries: sigpy ``Linop``, scipy ``LinearOperator`` and anything with ``matvec``.

:func:`from_sigpy` / :func:`to_sigpy` convert both ways between krylearn and
sigpy; :class:`ScipyOperator` wraps a :class:`scipy.sparse.linalg.LinearOperator`
(pyamg's ``ml.aspreconditioner()`` is one) or any object with ``shape`` and
``matvec``, so that code written for scipy works unchanged.  Both run on the
CPU with numpy inside.
"""

from __future__ import annotations

import numpy as np
import sigpy
import torch

from .base import Operator, _numpy_dtype

__all__ = ["SigpyOperator", "ScipyOperator", "from_sigpy", "to_sigpy", "torch_dtype"]


def torch_dtype(dtype) -> torch.dtype:
    """The torch dtype of a numpy dtype (or anything ``numpy.dtype`` accepts)."""
    return torch.from_numpy(np.empty(0, dtype=np.dtype(dtype))).dtype


class SigpyOperator(Operator):
    """A sigpy ``Linop`` seen as a krylearn :class:`Operator` (CPU, numpy inside)."""

    def __init__(self, linop, dtype=torch.float64):
        self.linop = linop
        super().__init__(tuple(linop.ishape), tuple(linop.oshape), dtype, "cpu")

    def _apply(self, x):
        xs = x.detach().cpu().numpy()
        ys = np.stack([np.asarray(self.linop(xi)) for xi in xs])
        return torch.from_numpy(ys).to(device=x.device, dtype=torch.promote_types(self.dtype, x.dtype))

    def _adjoint(self):
        return SigpyOperator(self.linop.H, self.dtype)

    def _to(self, device, dtype):
        if torch.device(device).type != "cpu":
            raise NotImplementedError("a wrapped sigpy Linop runs on CPU only")
        return SigpyOperator(self.linop, dtype)


def from_sigpy(linop, dtype=None) -> Operator:
    """Wrap a sigpy ``Linop``.

    ``dtype`` defaults to complex128 when the linop maps a real input to a
    complex output (a Fourier or coil-sensitivity operator), else float64;
    one probe application decides.
    """
    if dtype is None:
        probe = np.asarray(linop(np.ones(tuple(linop.ishape))))
        dtype = torch.complex128 if np.iscomplexobj(probe) else torch.float64
    return SigpyOperator(linop, dtype)


def to_sigpy(op: Operator):
    """Wrap ``op`` as a sigpy ``Linop`` (numpy arrays of shape ``ishape`` in, ``oshape`` out)."""
    if isinstance(op, SigpyOperator):
        return op.linop
    return _KrylearnLinop(op)


class _KrylearnLinop(sigpy.linop.Linop):
    def __init__(self, op):
        self.op = op
        super().__init__(list(op.oshape), list(op.ishape))

    def _apply(self, input):
        x = torch.from_numpy(np.asarray(input, dtype=np.result_type(input, _numpy_dtype(self.op.dtype))))
        return self.op.apply(x).cpu().numpy()

    def _adjoint_linop(self):
        return _KrylearnLinop(self.op.H)


class ScipyOperator(Operator):
    """A scipy ``LinearOperator``, or any object with ``shape`` and ``matvec``, as an :class:`Operator`.

    Parameters
    ----------
    A : scipy.sparse.linalg.LinearOperator or object with ``shape`` (m, n) and ``matvec``
        ``matmat`` is used for blocks when present; ``rmatvec`` (or ``.H``)
        gives the adjoint.
    dtype : torch.dtype, optional
        Default: ``A.dtype`` when it has one, else float64.
    """

    def __init__(self, A, dtype=None):
        shape = tuple(int(s) for s in A.shape)
        if len(shape) != 2:
            raise ValueError(f"A must have a 2-D shape, got {shape}")
        if dtype is None:
            dtype = torch_dtype(A.dtype) if getattr(A, "dtype", None) is not None else torch.float64
        if not (dtype.is_floating_point or dtype.is_complex):
            dtype = torch.float64
        self.linop = A
        super().__init__(shape[1], shape[0], dtype, "cpu")

    def _apply(self, x):
        xs = x.detach().cpu().numpy()
        if xs.shape[0] > 1 and hasattr(self.linop, "matmat"):
            ys = np.asarray(self.linop.matmat(np.ascontiguousarray(xs.T))).T
        else:
            ys = np.stack([np.asarray(self.linop.matvec(xi)).reshape(-1) for xi in xs])
        out = torch.from_numpy(np.ascontiguousarray(ys))
        return out.to(device=x.device, dtype=torch.promote_types(out.dtype, x.dtype))

    def _adjoint(self):
        if hasattr(self.linop, "H"):
            return ScipyOperator(self.linop.H, self.dtype)
        raise NotImplementedError(f"{type(self.linop).__name__} has no adjoint (no .H)")

    def _to(self, device, dtype):
        if torch.device(device).type != "cpu":
            raise NotImplementedError("a wrapped scipy LinearOperator runs on CPU only")
        return ScipyOperator(self.linop, dtype)
