"""``as_operator``: whatever a user passes as a matrix, as an :class:`~krylearn.operators.base.Operator`."""

from __future__ import annotations

import numpy as np
import scipy.sparse
import sigpy
import torch

from .base import Dense, Operator
from .interop import ScipyOperator, from_sigpy
from .sparse import SparseMatrix

__all__ = ["as_operator", "as_tensor"]


def as_tensor(a, name: str) -> torch.Tensor:
    """``a`` as a torch tensor without copying: a tensor, a numpy array, or any ``__dlpack__`` array.

    cupy, JAX and NVIDIA Warp arrays go through DLPack and stay on their
    device.  Raises ``TypeError`` naming ``name`` for anything else, or for a
    non-numeric numpy array.
    """
    if isinstance(a, torch.Tensor):
        return a
    if isinstance(a, np.ndarray):
        if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
            raise TypeError(f"{name} must be numeric, got dtype {a.dtype}")
        return torch.from_numpy(a) if a.flags.aligned and a.dtype.isnative else torch.from_numpy(a.copy())
    if hasattr(a, "__dlpack__"):
        try:
            return torch.from_dlpack(a)
        except (RuntimeError, TypeError, BufferError) as e:
            raise TypeError(f"{name}: cannot read this {type(a).__name__} through DLPack: {e}") from None
    raise TypeError(f"{name} must be a numpy array, a torch tensor or a DLPack array, got {type(a).__name__}")


def as_operator(A, *, name: str = "A", device=None, dtype=None) -> Operator:
    """Turn ``A`` into an :class:`Operator`.

    Accepts an Operator; a scipy sparse matrix or array, or CSR arrays
    ``(indptr, indices, data, shape)``; a dense numpy array,
    torch tensor or DLPack array (2-D); a torch sparse tensor (COO/CSR); a
    sigpy Linop; a :class:`scipy.sparse.linalg.LinearOperator` or any object
    with ``shape`` and ``matvec`` (pyamg's ``ml.aspreconditioner()``).
    """
    if isinstance(A, Operator):
        op = A
    elif scipy.sparse.issparse(A) or (isinstance(A, tuple) and len(A) == 4):
        op = SparseMatrix(A)  # a 4-tuple is (indptr, indices, data, shape)
    elif isinstance(A, torch.Tensor) and A.layout in (torch.sparse_coo, torch.sparse_csr):
        op = SparseMatrix(A)
    elif isinstance(A, sigpy.linop.Linop):
        op = from_sigpy(A)
    elif isinstance(A, (np.ndarray, torch.Tensor)) or (hasattr(A, "__dlpack__") and not hasattr(A, "matvec")):
        M = as_tensor(A, name)
        if M.ndim != 2:
            raise ValueError(f"{name} must be 2-D, got shape {tuple(M.shape)}")
        op = Dense(M)
    elif hasattr(A, "shape") and callable(getattr(A, "matvec", None)):
        op = ScipyOperator(A)
    else:
        raise TypeError(
            f"{name} must be a krylearn Operator, a scipy sparse matrix or LinearOperator, a numpy/torch/DLPack "
            f"array, a torch sparse tensor, a sigpy Linop or an object with shape and matvec, got {type(A).__name__}"
        )
    if device is not None or dtype is not None:
        op = op.to(device=device, dtype=dtype)
    return op
