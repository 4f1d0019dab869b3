"""Checking what the user passes, and giving results back in the user's array type.

Every solve goes through two steps here:

* :func:`prepare_operator` (once per :class:`~krylearn.solvers.solver.Solver`):
  the matrix as a square :class:`~krylearn.operators.base.Operator` on flat
  vectors, and its canonical CSR form when it has one;
* :func:`prepare_rhs` (once per solve): ``b`` and ``x0`` as ``(k, n)`` tensors
  in the working dtype, **scaled by a power of two per system** so that the
  largest entry of ``b`` lies in [0.5, 1).  Solvers are linear in ``b``, and a
  power of two scales exactly, so a solve of ``s * b`` performs the same
  floating-point operations as a solve of ``b`` for any ``s`` whose ``s * b``
  is representable: no underflow of ``||b||^2`` at ``b ~ 1e-22`` in float32,
  no overflow at ``1e160`` in float64.  ``x`` is scaled back on the way out.

Arrays come back as they came in: numpy in, numpy out (also in callbacks);
torch in, torch out; a DLPack array (cupy, JAX, Warp, ...) in, the same kind
out on the same device, without a host copy.
"""

from __future__ import annotations

import importlib
import math
import numbers
import operator
from dataclasses import dataclass

import numpy as np
import scipy.sparse
import torch

from ..operators.base import Operator
from ..operators.convert import as_operator, as_tensor
from ..operators.sparse import SparseMatrix

__all__ = ["Rhs", "ArrayKind", "check_tolerances", "check_maxiter", "prepare_operator", "canonical_csr",
           "prepare_rhs", "Flattened"]


def check_tolerances(rtol, atol) -> tuple[float, float]:
    """``(rtol, atol)`` as floats; ``ValueError`` naming the argument unless each is a number >= 0 (inf allowed)."""
    out = []
    for name, v in (("rtol", rtol), ("atol", atol)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or math.isnan(v) or v < 0:
            raise ValueError(f"{name} must be a number >= 0 (inf allowed), got {v!r}")
        out.append(float(v))
    return out[0], out[1]


def check_maxiter(maxiter) -> int | None:
    """``maxiter`` as an int (None stays None); ``ValueError`` naming it unless it is an integer >= 1."""
    if maxiter is None:
        return None
    if isinstance(maxiter, bool) or not isinstance(maxiter, numbers.Integral) or maxiter < 1:
        raise ValueError(f"maxiter must be an integer >= 1 or None, got {maxiter!r}")
    return int(maxiter)


class Flattened(Operator):
    """An operator on multi-dimensional tensors seen as one on flat vectors of length ``prod(ishape)``."""

    def __init__(self, op: Operator):
        self.op = op
        super().__init__(op.shape[1], op.shape[0], op.dtype, op.device)

    def _apply(self, x):
        return self.op._apply(x.reshape((-1,) + self.op.ishape)).reshape(x.shape[0], -1)

    def _adjoint(self):
        return Flattened(self.op.H)

    def diagonal(self):
        return self.op.diagonal().reshape(-1)

    def to_sparse(self):
        return self.op.to_sparse()

    def _to(self, device, dtype):
        return Flattened(self.op.to(device, dtype))


def prepare_operator(A, name: str = "A") -> tuple[Operator, Operator]:
    """``(flat, original)``: ``A`` as a square operator on flat vectors, and as given.

    Raises ``TypeError``/``ValueError`` naming ``name`` for anything that is
    not a square linear operator.
    """
    op = as_operator(A, name=name)
    if not op.is_square:
        raise ValueError(f"{name} must be square, got shape {op.shape}")
    flat = op if len(op.ishape) == 1 else Flattened(op)
    if flat.oshape != flat.ishape:
        flat = Flattened(op)
    return flat, op


def canonical_csr(op: Operator, name: str = "A") -> scipy.sparse.csr_matrix | None:
    """``op``'s matrix in canonical CSR form, or None for a matrix-free operator.

    Sorted indices, no duplicates, no explicit zeros, finite values, int64
    indices.  The result may share its data with the operator (a
    :class:`~krylearn.operators.sparse.SparseMatrix` on the CPU gives its
    zero-copy view) and is only ever read: a matrix that needs compacting is
    copied first, so the caller's data is never touched.
    """
    if isinstance(op, SparseMatrix) and op.device.type == "cpu":
        M = op._scipy_view()
    else:
        try:
            M = op.to_sparse()
        except NotImplementedError:
            return None
        M = scipy.sparse.csr_matrix(M)
    if M.shape != op.shape:
        raise ValueError(f"{name}.to_sparse() has shape {M.shape}, expected {op.shape}")
    if not M.has_canonical_format or not np.all(M.data != 0):
        M = M.copy()
        M.sum_duplicates()
        M.eliminate_zeros()
        M.sort_indices()
    if not np.all(np.isfinite(M.data)):
        raise ValueError(f"{name} contains NaN or Inf")
    if M.indices.dtype != np.int64 or M.indptr.dtype != np.int64:
        # int64 indices: the compiled kernels ran ~40% slower on int32 ones (SSOR-PCG, n = 4096)
        out = scipy.sparse.csr_matrix(M.shape, dtype=M.dtype)  # a new shell (scipy's constructor would
        out.data, out.indices, out.indptr = M.data, M.indices.astype(np.int64), M.indptr.astype(np.int64)
        out.has_canonical_format = True  # narrow the indices back to int32): M itself stays as it is
        M = out
    return M


@dataclass(frozen=True)
class ArrayKind:
    """How the caller's arrays came in, so results go back the same way."""

    kind: str  # "numpy", "torch" or "dlpack"
    module: object = None  # the module whose from_dlpack rebuilds a DLPack array

    def give_back(self, x: torch.Tensor):
        if self.kind == "numpy":
            return x.detach().cpu().numpy()
        if self.kind == "dlpack":
            return self.module.from_dlpack(x.detach())
        return x

    @staticmethod
    def of(a) -> "ArrayKind":
        if isinstance(a, torch.Tensor):
            return ArrayKind("torch")
        if isinstance(a, (np.ndarray, list, tuple, numbers.Number)):
            return ArrayKind("numpy")
        module = _array_module(a)
        return ArrayKind("dlpack", module) if module is not None else ArrayKind("torch")


def _array_module(a):
    """The module of a DLPack array's type that offers ``from_dlpack`` (cupy, jax.numpy, warp, numpy...)."""
    name = type(a).__module__
    candidates = [name, name.split(".")[0]]
    if name.startswith("jax"):
        candidates.insert(0, "jax.dlpack")
    for cand in candidates:
        try:
            mod = importlib.import_module(cand)
        except ImportError:
            continue
        if callable(getattr(mod, "from_dlpack", None)):
            return mod
    return None


@dataclass
class Rhs:
    """Right-hand sides and initial guesses of one solve, checked and scaled.

    Attributes
    ----------
    b : torch.Tensor, (k, n)
        ``b`` times ``scale`` (per row), working dtype, on the operator's device.
    x0 : torch.Tensor, (k, n)
        Initial guesses times ``scale`` (zeros when none was given); a fresh tensor.
    scale : torch.Tensor, (k, 1), real
        Powers of two; ``x_user = x / scale``.
    bnorm : torch.Tensor, (k,)
        ``||b||`` of the scaled right-hand sides.
    tol : torch.Tensor, (k,)
        ``max(rtol * ||b||, atol)`` in the scaled units.
    nonzero_x0 : bool
    shape : tuple
        The caller's ``b`` shape, restored on ``x``.
    batched : bool
        Whether ``b`` held several systems.
    kind : ArrayKind
    """

    b: torch.Tensor
    x0: torch.Tensor
    scale: torch.Tensor
    bnorm: torch.Tensor
    tol: torch.Tensor
    nonzero_x0: bool
    shape: tuple
    batched: bool
    kind: ArrayKind

    @property
    def k(self) -> int:
        return self.b.shape[0]

    def give_back(self, x: torch.Tensor):
        """``x`` (k, n), scaled, as the caller's array: unscaled, their shape and array type."""
        x = (x / self.scale.to(x.dtype)).reshape(self.shape)
        return self.kind.give_back(x)  # in the precision it was verified in


def _rows(shape: tuple, op: Operator, name: str) -> tuple[int, bool]:
    """Number of systems in an array of ``shape`` for ``op``, and whether it is a batch."""
    n = op.shape[1]
    ishape = op.ishape
    if shape == ishape:
        return 1, False
    if len(shape) == len(ishape) + 1 and shape[1:] == ishape:
        return shape[0], True
    if len(ishape) == 1 and shape == (n, 1):
        return 1, False
    if len(ishape) > 1 and shape == (n,):  # flat vectors work for any operator
        return 1, False
    if len(ishape) > 1 and len(shape) == 2 and shape[1] == n:
        return shape[0], True
    want = f"({n},), ({n}, 1) or (k, {n})" if len(ishape) == 1 else f"{ishape}, (k, *{ishape}), ({n},) or (k, {n})"
    raise ValueError(f"{name} must have shape {want} to match A {op.oshape}x{ishape}, got {shape}")


def working_dtype(op_dtype: torch.dtype, b_dtype: torch.dtype, dtype=None) -> torch.dtype:
    """The dtype a solve runs in: ``dtype``, else promote(A, b), at least float32."""
    if dtype is not None:
        if not isinstance(dtype, torch.dtype) or not (dtype.is_floating_point or dtype.is_complex):
            raise TypeError(f"dtype must be a floating or complex torch.dtype, got {dtype!r}")
        work = dtype
    else:
        work = torch.promote_types(op_dtype, b_dtype)
    if not (work.is_floating_point or work.is_complex):
        work = torch.float64
    if work in (torch.float16, torch.bfloat16):
        work = torch.float32
    if b_dtype.is_complex and not work.is_complex:
        raise TypeError(f"b is complex ({b_dtype}) but the solve runs in {work}: pass a complex dtype or a real b")
    return work


def _power_of_two_scale(b: torch.Tensor) -> torch.Tensor:
    """Per row, the power of two that brings ``max |b|`` into [0.5, 1) (1 for a zero row)."""
    if b.shape[1] == 0:
        return torch.ones(b.shape[0], 1, dtype=torch.float64)
    amax = b.abs().amax(dim=1).to(torch.float64).cpu().numpy()
    exp = np.frexp(np.where(amax > 0, amax, 1.0))[1]
    return torch.from_numpy(np.ldexp(1.0, -exp)).reshape(-1, 1)


def prepare_rhs(op: Operator, b, x0=None, *, rtol: float, atol: float, dtype: torch.dtype,
                original: Operator | None = None) -> Rhs:
    """Check ``b`` and ``x0`` against the flat operator ``op``; scale them (see the module docstring).

    ``original`` is the operator as the user gave it (its ``ishape`` decides
    the accepted shapes of ``b``); ``dtype`` the working dtype.
    """
    shape_op = original if original is not None else op
    kind = ArrayKind.of(b)
    if isinstance(b, (list, tuple)):
        b = np.asarray(b, dtype=np.float64)
    bt = as_tensor(b, "b")
    shape = tuple(bt.shape)
    k, batched = _rows(shape, shape_op, "b")
    n = op.shape[1]
    bt = bt.reshape(k, n).to(device=op.device, dtype=dtype)
    if not bool(torch.isfinite(bt).all()):
        raise ValueError("b contains NaN or Inf")
    scale = _power_of_two_scale(bt).to(op.device)
    bt = bt * scale.to(dtype)
    if x0 is None:
        x0t = torch.zeros_like(bt)
        nonzero = False
    else:
        xt = as_tensor(np.asarray(x0) if isinstance(x0, (list, tuple)) else x0, "x0")
        xshape = tuple(xt.shape)
        if xshape != shape and not (batched and xshape == tuple(shape_op.ishape)):
            raise ValueError(f"x0 must have the shape of b {shape}, got {xshape}")
        if xt.is_complex() and not dtype.is_complex:
            raise TypeError(f"x0 is complex ({xt.dtype}) but the solve runs in {dtype}")
        xt = xt.reshape(-1, n).to(device=op.device, dtype=dtype)
        if not bool(torch.isfinite(xt).all()):
            raise ValueError("x0 contains NaN or Inf")
        x0t = (xt * scale.to(dtype)).expand_as(bt).clone()
        nonzero = bool(x0t.any())
    bnorm = torch.linalg.vector_norm(bt, dim=1)
    tol = torch.clamp(rtol * bnorm, min=0.0)
    tol = torch.maximum(tol, atol * scale.reshape(-1).to(tol.dtype)) if atol > 0 else tol
    return Rhs(bt, x0t, scale, bnorm, tol, nonzero, shape, batched, kind)


def index_of(value, name: str) -> int:
    """``operator.index(value)`` with a ``TypeError`` naming ``name``."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {value!r}") from None
