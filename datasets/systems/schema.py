"""The in-memory linear system and the rules of the ``krylearn.linear_systems`` layout.

:class:`LinearSystem` validates and normalises one system; :func:`affine_matrix`
builds ``scale * M + shift * I`` with the same arithmetic everywhere (writer
check, reader, sequence generators). The layout itself is described in
:mod:`krylearn.datasets.systems`.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

import h5py
import numpy as np
import scipy.sparse
import torch

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "LinearSystem", "affine_matrix"]

FORMAT_NAME = "krylearn.linear_systems"
FORMAT_VERSION = 1

#: attribute names of a system group that belong to the layout, not to ``attrs``
_RESERVED_ATTRS = frozenset({"matrix", "grid_shape", "matrix_scale", "matrix_shift"})
#: largest chunk along a right-hand side (elements); one row per chunk below it
_MAX_ROW_CHUNK = 1 << 19
_COMPRESSIONS = ("gzip", "lzf", None)


def _is_numeric(dtype: np.dtype) -> bool:
    return dtype.kind in "iufc"


def _as_csr(A) -> scipy.sparse.csr_matrix:
    if hasattr(A, "to_sparse") and not scipy.sparse.issparse(A) and not isinstance(A, torch.Tensor):
        A = A.to_sparse()  # a krylearn SparseMatrix / matrix-backed Operator
    if isinstance(A, torch.Tensor):
        A = A.to_dense() if A.layout != torch.strided else A
        A = A.detach().cpu().numpy()
    if type(A) is scipy.sparse.csr_matrix:
        pass  # keep the object (systems read from one stored matrix share it)
    elif scipy.sparse.issparse(A):
        A = scipy.sparse.csr_matrix(A)
    else:
        A = np.asarray(A)
        if A.ndim != 2:
            raise ValueError(f"A must be a 2-D matrix, got an array of shape {A.shape}")
        A = scipy.sparse.csr_matrix(A)
    if not _is_numeric(A.dtype):
        raise TypeError(f"A must have a numeric dtype, got {A.dtype}")
    if A.shape[0] != A.shape[1]:
        raise ValueError(f"A must be square, got shape {A.shape}")
    if not A.has_canonical_format:
        A = A.copy()
        A.sum_duplicates()  # sorts indices too; leaves the caller's matrix alone
    if not np.isfinite(A.data).all():
        raise ValueError("A contains NaN or Inf")
    return A


def _as_rows(name: str, v, n: int) -> np.ndarray:
    if isinstance(v, torch.Tensor):
        v = v.detach().cpu().numpy()
    v = np.asarray(v)
    if not _is_numeric(v.dtype):
        raise TypeError(f"{name} must have a numeric dtype, got {v.dtype}")
    if v.ndim == 1:
        v = v[None, :]
    if v.ndim != 2 or v.shape[1] != n:
        raise ValueError(f"{name} must have shape (n,) or (k, n) with n = {n}, got {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return np.ascontiguousarray(v)


def _check_attr_value(key: str, value):
    if isinstance(value, (str, bool, numbers.Number, np.generic)):
        if isinstance(value, np.generic) and not (_is_numeric(value.dtype) or value.dtype.kind in "bU"):
            raise TypeError(f"attrs[{key!r}] has unsupported dtype {value.dtype}")
        return value
    if isinstance(value, (list, tuple, np.ndarray)):
        arr = np.asarray(value)
        if not (_is_numeric(arr.dtype) or arr.dtype.kind == "b"):
            raise TypeError(f"attrs[{key!r}] must be a scalar, a string or a numeric array, got dtype {arr.dtype}")
        return arr
    raise TypeError(
        f"attrs[{key!r}] must be a scalar, a string or a numeric array, got {type(value).__name__}"
    )


def _check_real(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


def affine_matrix(M, scale: float = 1.0, shift: float = 0.0) -> scipy.sparse.csr_matrix:
    """``scale * M + shift * I`` as a new CSR matrix (``M`` is left alone).

    The same arithmetic (``scale * M.data``, then ``+ shift`` on the stored
    diagonal) is used by the writer's check, by :class:`SystemsFile` and by the
    sequence generators, so a matrix built on demand and the one read back from
    a file are bitwise equal.

    Parameters
    ----------
    M : scipy.sparse matrix, shape (n, n)
        Square; converted to canonical CSR. Rows without a stored diagonal get
        one when ``shift != 0``.
    scale, shift : float
        Finite reals.

    Returns
    -------
    scipy.sparse.csr_matrix, shape (n, n), dtype of ``M`` (float64 for integer ``M``)
        Shares ``indptr``/``indices`` with ``M`` when ``M`` stores every diagonal
        entry (the common case: no copy of the pattern).
    """
    scale = _check_real("scale", scale)
    shift = _check_real("shift", shift)
    M = _as_csr(M)
    if M.dtype.kind in "iub":
        M = M.astype(np.float64)
    if scale == 1.0 and shift == 0.0:
        return M
    n = M.shape[0]
    rows = np.repeat(np.arange(n), np.diff(M.indptr))
    diag_pos = np.nonzero(rows == M.indices)[0]
    data = M.data * M.dtype.type(scale)
    if shift != 0.0 and diag_pos.size != n:
        out = scipy.sparse.csr_matrix((data, M.indices, M.indptr), shape=M.shape)
        out = out + shift * scipy.sparse.identity(n, dtype=M.dtype, format="csr")
        out = scipy.sparse.csr_matrix(out)
        out.sort_indices()
        return out
    if shift != 0.0:
        data[diag_pos] += M.dtype.type(shift)
    out = scipy.sparse.csr_matrix((data, M.indices, M.indptr), shape=M.shape)
    out.has_canonical_format = True  # same (canonical) pattern as M
    return out


@dataclass
class LinearSystem:
    """One sparse system ``A x = b`` with ``k`` right-hand sides.

    Inputs are validated and normalized on construction (``ValueError`` /
    ``TypeError`` naming the field).

    Parameters
    ----------
    A : scipy.sparse.csr_matrix, shape (n, n)
        The matrix. Any scipy sparse matrix/array, dense 2-D array, torch
        tensor or object with ``to_sparse()`` (e.g. ``SparseMatrix``) is
        converted to CSR with sorted, unique column indices. Must be finite.
    b : numpy.ndarray, shape (k, n)
        Right-hand sides; a 1-D ``b`` becomes ``(1, n)``. Must be finite.
    x : numpy.ndarray, shape (k, n), optional
        Reference solutions, one per right-hand side (1-D accepted as for b).
    grid_shape : tuple of int, optional
        Shape of the grid the unknowns live on, e.g. ``(ny, nx)`` or
        ``(nz, ny, nx)``; ``prod(grid_shape) == n``. Taken from ``flags`` when
        only flags are given.
    flags : numpy.ndarray of uint8, shape grid_shape, optional
        Cell flags (0 fluid, 1 solid, 2 empty); integer or bool input in
        ``[0, 255]`` is cast to uint8.
    attrs : dict
        Per-system scalars, strings or small numeric arrays (e.g.
        ``frame=3``). The names ``"matrix"``, ``"grid_shape"``,
        ``"matrix_scale"`` and ``"matrix_shift"`` are reserved by the file layout.
    """

    A: scipy.sparse.csr_matrix
    b: np.ndarray
    x: np.ndarray | None = None
    grid_shape: tuple | None = None
    flags: np.ndarray | None = None
    attrs: dict = field(default_factory=dict)

    def __post_init__(self):
        self.A = _as_csr(self.A)
        n = self.A.shape[0]
        self.b = _as_rows("b", self.b, n)
        if self.x is not None:
            self.x = _as_rows("x", self.x, n)
            if self.x.shape != self.b.shape:
                raise ValueError(f"x must have the shape of b {self.b.shape}, got {self.x.shape}")
        if self.flags is not None:
            flags = np.asarray(self.flags)
            if flags.dtype.kind not in "biu":
                raise TypeError(f"flags must have an integer or bool dtype, got {flags.dtype}")
            if flags.size and (flags.min() < 0 or flags.max() > 255):
                raise ValueError("flags values must lie in [0, 255] (uint8)")
            self.flags = np.ascontiguousarray(flags, dtype=np.uint8)
            if self.grid_shape is None:
                self.grid_shape = self.flags.shape
        if self.grid_shape is not None:
            try:
                gs = tuple(int(s) for s in self.grid_shape)
            except (TypeError, ValueError):
                raise TypeError(f"grid_shape must be a tuple of ints, got {self.grid_shape!r}") from None
            if any(s <= 0 for s in gs) or any(s != t for s, t in zip(gs, self.grid_shape)):
                raise ValueError(f"grid_shape must hold positive integers, got {self.grid_shape!r}")
            if math.prod(gs) != n:
                raise ValueError(f"prod(grid_shape) must equal n = {n}, got grid_shape {gs}")
            self.grid_shape = gs
            if self.flags is not None and self.flags.shape != gs:
                raise ValueError(f"flags must have shape grid_shape {gs}, got {self.flags.shape}")
        if not isinstance(self.attrs, dict):
            raise TypeError(f"attrs must be a dict, got {type(self.attrs).__name__}")
        for key, value in self.attrs.items():
            if not isinstance(key, str) or not key or "/" in key:
                raise ValueError(f"attrs keys must be non-empty strings without '/', got {key!r}")
            if key in _RESERVED_ATTRS:
                raise ValueError(f"attrs[{key!r}] is reserved by the file layout; rename it")
            _check_attr_value(key, value)

    @property
    def n(self) -> int:
        """Number of unknowns."""
        return self.A.shape[0]

    @property
    def num_rhs(self) -> int:
        """Number of right-hand sides ``k``."""
        return self.b.shape[0]


def _attr_to_python(value):
    """An HDF5 attribute value as a Python object (bytes decoded, numpy scalars unwrapped)."""
    if isinstance(value, h5py.Empty):
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    return value
