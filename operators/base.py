"""The linear-operator abstraction every krylearn solver works on.

An :class:`Operator` maps tensors of shape ``(*batch, *ishape)`` to tensors of
shape ``(*batch, *oshape)`` on one torch device and dtype.  Operators compose
like matrices (``A @ B``, ``A + B``, ``2 * A``, ``A.H``, ``A.N``) and convert
to scipy (:meth:`Operator.to_scipy`), to sigpy (:func:`krylearn.operators.to_sigpy`)
and, where the operator is a matrix, to a scipy CSR matrix
(:meth:`Operator.to_sparse`).

Subclasses implement ``_apply(x)`` for ``x`` of shape ``(B, *ishape)`` (one
flattened batch dimension, already on the right device and dtype) and
optionally ``_adjoint()``, ``diagonal()``, ``to_sparse()`` and ``_to()``.
"""

from __future__ import annotations

import math
import numbers
from typing import Sequence

import numpy as np
import scipy.sparse
import scipy.sparse.linalg
import torch

Shape = tuple


def _as_shape(shape, name: str) -> Shape:
    if isinstance(shape, numbers.Integral):
        shape = (int(shape),)
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError:
        raise TypeError(f"{name} must be an int or a sequence of ints, got {shape!r}") from None
    if any(s < 0 for s in shape):
        raise ValueError(f"{name} must have non-negative sizes, got {shape}")
    return shape


def _promote(*dtypes: torch.dtype) -> torch.dtype:
    out = dtypes[0]
    for d in dtypes[1:]:
        out = torch.promote_types(out, d)
    return out


class Operator:
    """A linear map from ``ishape`` to ``oshape`` tensors.

    Parameters
    ----------
    ishape, oshape : tuple of int
        Shapes of one input and one output (without batch dimensions).
    dtype : torch.dtype
        Dtype the operator computes in; inputs are cast to it.
    device : torch.device or str
        Device the operator's data lives on; inputs are moved to it.

    Examples
    --------
    >>> import torch
    >>> from krylearn.operators import Diagonal, Identity
    >>> D = Diagonal(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    >>> A = 2 * D + Identity(3)
    >>> A @ torch.ones(3, dtype=torch.float64)
    tensor([3., 5., 7.], dtype=torch.float64)
    """

    def __init__(self, ishape, oshape, dtype=torch.float64, device="cpu"):
        self.ishape = _as_shape(ishape, "ishape")
        self.oshape = _as_shape(oshape, "oshape")
        if not isinstance(dtype, torch.dtype):
            raise TypeError(f"dtype must be a torch.dtype, got {dtype!r}")
        self.dtype = dtype
        self.device = canonical_device(device)

    # ------------------------------------------------------------------ shape
    @property
    def shape(self) -> tuple[int, int]:
        """Matrix shape ``(prod(oshape), prod(ishape))``."""
        return (math.prod(self.oshape), math.prod(self.ishape))

    @property
    def is_square(self) -> bool:
        return self.shape[0] == self.shape[1]

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.oshape}x{self.ishape} "
            f"dtype={self.dtype} device={self.device}>"
        )

    # ------------------------------------------------------------------ apply
    def apply(self, x):
        """Apply the operator to ``x`` of shape ``(*batch, *ishape)``.

        ``x`` may be a torch tensor (result on the operator's device, in the
        promoted dtype) or a numpy array (result is a numpy array).
        """
        as_numpy = isinstance(x, np.ndarray)
        if as_numpy:
            x = torch.from_numpy(x)
        elif not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor or numpy.ndarray, got {type(x).__name__}")
        nd = len(self.ishape)
        if tuple(x.shape[x.ndim - nd :]) != self.ishape or x.ndim < nd:
            raise ValueError(
                f"x has shape {tuple(x.shape)}; {type(self).__name__} expects (*batch, *{self.ishape})"
            )
        batch = tuple(x.shape[: x.ndim - nd])
        dtype = _promote(self.dtype, x.dtype)
        x = x.to(device=self.device, dtype=dtype).reshape((-1,) + self.ishape)
        y = self._apply(x).reshape(batch + self.oshape)
        return y.cpu().numpy() if as_numpy else y

    def _apply(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, x):
        return self.apply(x)

    def __matmul__(self, other):
        if isinstance(other, Operator):
            return Compose(self, other)
        if isinstance(other, (torch.Tensor, np.ndarray)):
            return self.apply(other)
        return NotImplemented

    # -------------------------------------------------------------- algebra
    @property
    def H(self) -> "Operator":
        """The adjoint (conjugate transpose)."""
        return self._adjoint()

    def _adjoint(self) -> "Operator":
        raise NotImplementedError(f"{type(self).__name__} has no adjoint")

    @property
    def N(self) -> "Operator":
        """The normal operator ``A.H @ A``."""
        return Compose(self.H, self)

    def __add__(self, other):
        if isinstance(other, Operator):
            return Sum(self, other)
        return NotImplemented

    def __sub__(self, other):
        if isinstance(other, Operator):
            return Sum(self, Scaled(other, -1))
        return NotImplemented

    def __neg__(self):
        return Scaled(self, -1)

    def __mul__(self, alpha):
        if isinstance(alpha, (numbers.Number, np.number)):
            return Scaled(self, alpha)
        return NotImplemented

    __rmul__ = __mul__

    def __truediv__(self, alpha):
        if isinstance(alpha, (numbers.Number, np.number)):
            return Scaled(self, 1.0 / alpha)
        return NotImplemented

    # ------------------------------------------------------------ structure
    def diagonal(self) -> torch.Tensor:
        """The main diagonal, shape ``(n,)``, where it is cheap to get."""
        raise NotImplementedError(f"{type(self).__name__} has no cheap diagonal")

    def to_sparse(self) -> scipy.sparse.csr_matrix:
        """The operator as a scipy CSR matrix of shape :attr:`shape`."""
        raise NotImplementedError(f"{type(self).__name__} is not stored as a matrix")

    def to_dense(self) -> torch.Tensor:
        """The operator as a dense ``(m, n)`` tensor (by applying it to the identity)."""
        n = self.shape[1]
        eye = torch.eye(n, dtype=self.dtype, device=self.device).reshape((n,) + self.ishape)
        return self.apply(eye).reshape(n, -1).T.contiguous()

    def to(self, device=None, dtype=None) -> "Operator":
        """A copy on ``device`` and/or in ``dtype`` (self if nothing changes)."""
        device = self.device if device is None else canonical_device(device)
        dtype = self.dtype if dtype is None else dtype
        if device == self.device and dtype == self.dtype:
            return self
        return self._to(device, dtype)

    def _to(self, device, dtype) -> "Operator":
        raise NotImplementedError(f"{type(self).__name__} cannot move to {device}/{dtype}")

    # -------------------------------------------------------------- interop
    def to_scipy(self) -> scipy.sparse.linalg.LinearOperator:
        """A :class:`scipy.sparse.linalg.LinearOperator` on flat numpy vectors."""
        return aslinearoperator(self)


# ---------------------------------------------------------------- composites
def canonical_device(device) -> torch.device:
    """``torch.device(device)`` with the index of an index-less CUDA device filled in.

    Tensors report ``cuda:0``; an operator asked for ``"cuda"`` must compare
    equal to an operator built from such a tensor.
    """
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None and torch.cuda.is_available():
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def _check_same(a: Operator, b: Operator, what: str) -> None:
    if a.ishape != b.ishape or a.oshape != b.oshape:
        raise ValueError(
            f"cannot {what} operators of shapes {a.oshape}x{a.ishape} and {b.oshape}x{b.ishape}"
        )
    if a.device != b.device:
        raise ValueError(f"cannot {what} operators on devices {a.device} and {b.device}")


class Sum(Operator):
    """``A_1 + A_2 + ...`` of operators with equal shapes."""

    def __init__(self, *ops: Operator):
        if not ops:
            raise ValueError("Sum needs at least one operator")
        for op in ops[1:]:
            _check_same(ops[0], op, "add")
        flat = []
        for op in ops:
            flat.extend(op.ops if isinstance(op, Sum) else [op])
        self.ops = tuple(flat)
        super().__init__(ops[0].ishape, ops[0].oshape, _promote(*(o.dtype for o in ops)), ops[0].device)

    def _apply(self, x):
        y = self.ops[0]._apply(x)
        for op in self.ops[1:]:
            y = y + op._apply(x)
        return y

    def _adjoint(self):
        return Sum(*(op.H for op in self.ops))

    def diagonal(self):
        d = self.ops[0].diagonal()
        for op in self.ops[1:]:
            d = d + op.diagonal()
        return d

    def to_sparse(self):
        out = self.ops[0].to_sparse()
        for op in self.ops[1:]:
            out = out + op.to_sparse()
        return scipy.sparse.csr_matrix(out)

    def _to(self, device, dtype):
        return Sum(*(op.to(device, dtype) for op in self.ops))


class Scaled(Operator):
    """``alpha * A`` for a Python/numpy scalar ``alpha``."""

    def __init__(self, op: Operator, alpha):
        self.op = op
        self.alpha = alpha
        dtype = op.dtype
        if isinstance(alpha, complex) or np.iscomplexobj(alpha):
            dtype = _promote(dtype, torch.complex64)
        super().__init__(op.ishape, op.oshape, dtype, op.device)

    def _apply(self, x):
        return self.alpha * self.op._apply(x)

    def _adjoint(self):
        return Scaled(self.op.H, np.conj(self.alpha))

    def diagonal(self):
        return self.alpha * self.op.diagonal()

    def to_sparse(self):
        return scipy.sparse.csr_matrix(self.alpha * self.op.to_sparse())

    def _to(self, device, dtype):
        return Scaled(self.op.to(device, dtype), self.alpha)


class Compose(Operator):
    """``A @ B``: apply ``B`` then ``A``."""

    def __init__(self, A: Operator, B: Operator):
        if A.ishape != B.oshape:
            raise ValueError(f"cannot compose: A.ishape {A.ishape} != B.oshape {B.oshape}")
        if A.device != B.device:
            raise ValueError(f"cannot compose operators on devices {A.device} and {B.device}")
        self.A, self.B = A, B
        super().__init__(B.ishape, A.oshape, _promote(A.dtype, B.dtype), A.device)

    def _apply(self, x):
        return self.A._apply(self.B._apply(x))

    def _adjoint(self):
        return Compose(self.B.H, self.A.H)

    def to_sparse(self):
        return scipy.sparse.csr_matrix(self.A.to_sparse() @ self.B.to_sparse())

    def _to(self, device, dtype):
        return Compose(self.A.to(device, dtype), self.B.to(device, dtype))


# ----------------------------------------------------------------- primitives
class Identity(Operator):
    """The identity on tensors of shape ``shape``."""

    def __init__(self, shape, dtype=torch.float64, device="cpu"):
        super().__init__(shape, shape, dtype, device)

    def _apply(self, x):
        return x

    def _adjoint(self):
        return self

    def diagonal(self):
        return torch.ones(self.shape[0], dtype=self.dtype, device=self.device)

    def to_sparse(self):
        return scipy.sparse.identity(self.shape[0], dtype=_numpy_dtype(self.dtype), format="csr")

    def _to(self, device, dtype):
        return Identity(self.ishape, dtype, device)


class Diagonal(Operator):
    """Elementwise multiplication by ``d`` (shape ``ishape``, any dtype)."""

    def __init__(self, d, device=None):
        d = _as_tensor(d, "d")
        if device is not None:
            d = d.to(device)
        if not torch.isfinite(d).all():
            raise ValueError("d contains NaN or Inf")
        self.d = d
        super().__init__(tuple(d.shape), tuple(d.shape), d.dtype, d.device)

    def _apply(self, x):
        return x * self.d

    def _adjoint(self):
        return self if not self.d.is_complex() else Diagonal(self.d.conj())

    def diagonal(self):
        return self.d.reshape(-1)

    def to_sparse(self):
        return scipy.sparse.diags(self.d.reshape(-1).cpu().numpy()).tocsr()

    def _to(self, device, dtype):
        return Diagonal(self.d.to(device=device, dtype=dtype))


class Dense(Operator):
    """A dense ``(m, n)`` matrix acting on vectors of length ``n``."""

    def __init__(self, M, device=None):
        M = _as_tensor(M, "M")
        if M.ndim != 2:
            raise ValueError(f"M must be a 2-D matrix, got shape {tuple(M.shape)}")
        if device is not None:
            M = M.to(device)
        if not torch.isfinite(M).all():
            raise ValueError("M contains NaN or Inf")
        self.M = M
        super().__init__(M.shape[1], M.shape[0], M.dtype, M.device)

    def _apply(self, x):
        return x @ self.M.T

    def _adjoint(self):
        return Dense(self.M.conj().T.contiguous())

    def diagonal(self):
        return torch.diagonal(self.M).clone()

    def to_sparse(self):
        return scipy.sparse.csr_matrix(self.M.cpu().numpy())

    def to_dense(self):
        return self.M

    def _to(self, device, dtype):
        return Dense(self.M.to(device=device, dtype=dtype))


class FunctionOperator(Operator):
    """A self-adjoint linear map given as a function on ``(B, *shape)`` tensors (no adjoint of its own).

    For Krylov solves of systems that exist only as code, e.g. ``v -> v + g A^H A v``.

    Parameters
    ----------
    fn : callable
        ``(B, *shape) -> (B, *shape)``, linear.
    shape : tuple of int
    dtype : torch.dtype
    device : torch.device or str
    hermitian : bool
        Whether ``fn`` is self-adjoint (then ``.H`` is itself).
    """

    def __init__(self, fn, shape, dtype=torch.float64, device="cpu", hermitian: bool = True):
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {type(fn).__name__}")
        self.fn = fn
        self.hermitian = hermitian
        super().__init__(shape, shape, dtype, device)

    def _apply(self, x):
        return self.fn(x)

    def _adjoint(self):
        if self.hermitian:
            return self
        raise NotImplementedError("this FunctionOperator was not declared hermitian and has no adjoint")

    def _to(self, device, dtype):
        return FunctionOperator(self.fn, self.ishape, dtype, device, self.hermitian)


# ----------------------------------------------------------------- helpers
def _as_tensor(a, name: str) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a
    if isinstance(a, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(a))
    raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(a).__name__}")


_NP_OF_TORCH = {
    torch.float16: np.float16,
    torch.float32: np.float32,
    torch.float64: np.float64,
    torch.complex64: np.complex64,
    torch.complex128: np.complex128,
    torch.int32: np.int32,
    torch.int64: np.int64,
}


def _numpy_dtype(dtype: torch.dtype):
    try:
        return np.dtype(_NP_OF_TORCH[dtype])
    except KeyError:
        raise TypeError(f"no numpy equivalent for {dtype}") from None


def aslinearoperator(op: Operator) -> scipy.sparse.linalg.LinearOperator:
    """Wrap ``op`` as a scipy ``LinearOperator`` on flat numpy vectors.

    ``matvec`` takes a vector of length ``prod(ishape)`` (or an ``(n, k)``
    block for ``matmat``), ``rmatvec`` applies the adjoint.
    """
    if not isinstance(op, Operator):
        raise TypeError(f"op must be a krylearn Operator, got {type(op).__name__}")

    def matmat(X):
        X = np.asarray(X)
        k = X.shape[1]
        Xt = np.ascontiguousarray(X.T).reshape((k,) + op.ishape)
        return np.asarray(op.apply(Xt)).reshape(k, -1).T

    def rmatmat(Y):
        Y = np.asarray(Y)
        k = Y.shape[1]
        Yt = np.ascontiguousarray(Y.T).reshape((k,) + op.oshape)
        return np.asarray(op.H.apply(Yt)).reshape(k, -1).T

    return scipy.sparse.linalg.LinearOperator(
        shape=op.shape,
        dtype=_numpy_dtype(op.dtype),
        matvec=lambda v: matmat(np.asarray(v).reshape(-1, 1)).reshape(-1),
        rmatvec=lambda v: rmatmat(np.asarray(v).reshape(-1, 1)).reshape(-1),
        matmat=matmat,
        rmatmat=rmatmat,
    )


__all__: Sequence[str] = [
    "Operator",
    "Sum",
    "Scaled",
    "Compose",
    "Identity",
    "Diagonal",
    "Dense",
    "FunctionOperator",
    "aslinearoperator",
]
