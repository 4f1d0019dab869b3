"""Conversions between krylearn operators and sigpy ``Linop`` objects."""

from __future__ import annotations

import numpy as np
import torch

from .base import Operator, _numpy_dtype


class SigpyOperator(Operator):
    """A sigpy ``Linop`` seen as a krylearn :class:`Operator` (CPU, numpy inside)."""

    def __init__(self, linop, dtype=torch.float64):
        self.linop = linop
        super().__init__(tuple(linop.ishape), tuple(linop.oshape), dtype, "cpu")

    def _apply(self, x):
        xs = x.detach().cpu().numpy()
        ys = np.stack([np.asarray(self.linop(xi)) for xi in xs])
        return torch.from_numpy(ys).to(x.device)

    def _adjoint(self):
        return SigpyOperator(self.linop.H, self.dtype)

    def _to(self, device, dtype):
        if torch.device(device).type != "cpu":
            raise NotImplementedError("a wrapped sigpy Linop runs on CPU only")
        return SigpyOperator(self.linop, dtype)


def from_sigpy(linop, dtype=None) -> Operator:
    """Wrap a sigpy ``Linop``; ``dtype`` defaults to complex128 for complex-valued use, else float64."""
    return SigpyOperator(linop, torch.float64 if dtype is None else dtype)


def to_sigpy(op: Operator):
    """Wrap ``op`` as a sigpy ``Linop`` (numpy arrays of shape ``ishape`` in, ``oshape`` out)."""
    import sigpy

    if isinstance(op, SigpyOperator):
        return op.linop

    class _KrylearnLinop(sigpy.linop.Linop):
        def __init__(self, op):
            self.op = op
            super().__init__(list(op.oshape), list(op.ishape))

        def _apply(self, input):
            x = torch.from_numpy(np.asarray(input, dtype=np.result_type(input, _numpy_dtype(self.op.dtype))))
            return self.op.apply(x).cpu().numpy()

        def _adjoint_linop(self):
            return _KrylearnLinop(self.op.H)

    return _KrylearnLinop(op)
