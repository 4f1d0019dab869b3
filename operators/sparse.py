"""CSR sparse matrices as :class:`~krylearn.operators.base.Operator`."""

from __future__ import annotations

import operator
import warnings

import numpy as np
import scipy.sparse
import torch

from .base import Operator, canonical_device


class SparseMatrix(Operator):
    """A CSR matrix ``A`` of shape ``(m, n)`` acting on vectors of length ``n``.

    Products use the fastest kernel measured on each path (``krylearn bench
    baselines``): one vector goes through torch's sparse-CSR ``mv`` (on a
    2-core CPU about 2x faster than scipy's ``csr_matvec`` at 512^2 and
    64^3); a block of ``k > 1`` vectors on CPU through scipy's
    ``csr_matvecs`` on zero-copy numpy views of the stored arrays (torch's CPU
    CSR matmul is 2-4x slower there); on CUDA torch sparse CSR (cuSPARSE)
    throughout.

    Parameters
    ----------
    A : scipy sparse matrix/array, torch sparse tensor (COO or CSR), or a tuple
        ``(indptr, indices, data, shape)`` of CSR arrays.
    dtype : torch.dtype, optional
        Storage dtype (default: that of ``A``'s values; integer values become
        float64).
    device : torch.device or str, optional
        Where to store the matrix (default: CPU, or the device of a torch ``A``).

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from krylearn.operators import SparseMatrix
    >>> A = SparseMatrix(sp.diags([-1, 2, -1], [-1, 0, 1], shape=(4, 4)))
    >>> A @ np.ones(4)
    array([1., 0., 0., 1.])
    """

    def __init__(self, A, dtype=None, device=None):
        indptr, indices, data, shape = _csr_parts(A)
        checked = isinstance(data, np.ndarray)  # numpy's check is much cheaper than torch's on small matrices
        if checked and data.dtype.kind in "fc" and not np.all(np.isfinite(data)):
            raise ValueError("A contains NaN or Inf")
        if device is None:
            device = data.device if isinstance(data, torch.Tensor) else "cpu"
        device = canonical_device(device)
        indptr = torch.as_tensor(indptr)
        indices = torch.as_tensor(indices)
        data = torch.as_tensor(data)
        if not (data.is_floating_point() or data.is_complex()):
            data = data.to(torch.float64)
        if dtype is not None:
            data = data.to(dtype)
        if (not checked or dtype is not None) and not torch.isfinite(data).all():
            raise ValueError("A contains NaN or Inf")
        index_dtype = torch.int32 if max(shape[1], data.numel()) < 2**31 - 1 else torch.int64
        self.indptr = indptr.to(device=device, dtype=index_dtype).contiguous()
        self.indices = indices.to(device=device, dtype=index_dtype).contiguous()
        self.data = data.to(device=device).contiguous()
        self._torch_csr = None
        self._transpose = None
        self._scipy = _shared_view(A, self) if device.type == "cpu" else None
        super().__init__((shape[1],), (shape[0],), self.data.dtype, device)

    # -------------------------------------------------------------- queries
    @property
    def nnz(self) -> int:
        return int(self.data.numel())

    def __repr__(self) -> str:
        return f"<SparseMatrix {self.shape[0]}x{self.shape[1]} nnz={self.nnz} dtype={self.dtype} device={self.device}>"

    # ---------------------------------------------------------------- apply
    def _apply(self, x):
        if self.device.type == "cpu" and x.shape[0] > 1 and not x.requires_grad:
            # torch's CPU CSR product is fastest for one vector but 2-4x slower
            # than scipy's csr_matvecs for a block (measured: krylearn bench baselines)
            out = self._scipy_view() @ x.detach().numpy().T
            return torch.from_numpy(out.T)
        T = self._torch(x.dtype)
        if x.shape[0] == 1:
            return torch.mv(T, x[0]).unsqueeze(0)
        return (T @ x.T).T

    def _scipy_view(self) -> scipy.sparse.csr_matrix:
        """A zero-copy scipy view of the stored CPU arrays (never modified)."""
        if self._scipy is None:
            self._scipy = scipy.sparse.csr_matrix(
                (self.data.numpy(), self.indices.numpy(), self.indptr.numpy()), shape=self.shape, copy=False)
        return self._scipy

    def _torch(self, dtype) -> torch.Tensor:
        if self._torch_csr is None or self._torch_csr.dtype != dtype:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
                self._torch_csr = torch.sparse_csr_tensor(
                    self.indptr, self.indices, self.data.to(dtype), size=self.shape, check_invariants=False
                )
        return self._torch_csr

    def _adjoint(self):
        if self._transpose is None:
            At = self.to_sparse().conj().T.tocsr()
            self._transpose = SparseMatrix(At, device=self.device)
            self._transpose._transpose = self
        return self._transpose

    def diagonal(self):
        d = self._scipy_view().diagonal() if self.device.type == "cpu" else self.to_sparse().diagonal()
        return torch.from_numpy(d).to(self.device)

    def to_sparse(self) -> scipy.sparse.csr_matrix:
        """A scipy CSR copy (callers may modify it freely)."""
        return scipy.sparse.csr_matrix(
            (self.data.cpu().numpy(), self.indices.cpu().numpy(), self.indptr.cpu().numpy()),
            shape=self.shape, copy=True,
        )

    def to_torch(self) -> torch.Tensor:
        """The matrix as a torch sparse-CSR tensor on :attr:`device`."""
        return self._torch(self.dtype)

    def _to(self, device, dtype):
        out = SparseMatrix.__new__(SparseMatrix)
        out.indptr = self.indptr.to(device)
        out.indices = self.indices.to(device)
        out.data = self.data.to(device=device, dtype=dtype)
        out._torch_csr = None
        out._transpose = None
        out._scipy = None
        Operator.__init__(out, self.ishape, self.oshape, dtype, device)
        return out


def _csr_parts(A):
    """``(indptr, indices, data, shape)`` of ``A`` in canonical CSR form, validated; ``A`` is never modified."""
    if scipy.sparse.issparse(A):
        if A.format != "csr":
            A = scipy.sparse.csr_matrix(A)
        if len(A.indptr) and A.indptr[-1] != len(A.data):
            raise ValueError(f"A: indptr ends at {A.indptr[-1]} but there are {len(A.data)} stored values")
        _check_indices(A.indices, A.shape[1])
        if not A.has_canonical_format:
            A = A.copy()  # sum_duplicates/sort_indices work in place: never on the caller's arrays
            A.sum_duplicates()
            A.sort_indices()
        return A.indptr, A.indices, A.data, A.shape
    if isinstance(A, torch.Tensor):
        if A.layout == torch.sparse_coo:
            idx = A._indices()
            if A.ndim != 2:
                raise ValueError(f"A must be a 2-D sparse tensor, got shape {tuple(A.shape)}")
            if idx.numel() and (bool((idx < 0).any()) or bool((idx[0] >= A.shape[0]).any())
                                or bool((idx[1] >= A.shape[1]).any())):
                raise ValueError(f"A: COO indices must lie within the shape {tuple(A.shape)}")
            A = A.coalesce().to_sparse_csr()
        if A.layout != torch.sparse_csr:
            raise TypeError(f"A: expected a sparse torch tensor, got layout {A.layout}")
        parts = (A.crow_indices().cpu().numpy(), A.col_indices().cpu().numpy(), A.values(), tuple(A.shape))
        _check_csr(parts[0], parts[1], parts[2].numel(), parts[3])
        canonical = _is_canonical(parts[0], parts[1])
        if canonical:
            return A.crow_indices(), A.col_indices(), A.values(), parts[3]
        return _csr_parts(scipy.sparse.csr_matrix((A.values().detach().cpu().numpy(), parts[1], parts[0]),
                                                  shape=parts[3]))
    if isinstance(A, tuple) and len(A) == 4:
        indptr, indices, data, shape = A
        indptr, indices, data = (a.cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
                                 for a in (indptr, indices, data))
        try:
            shape = tuple(operator.index(s) for s in shape)
        except TypeError:
            raise TypeError(f"shape must be a pair of integers, got {shape!r}") from None
        if len(shape) != 2 or min(shape) < 0:
            raise ValueError(f"shape must be (m, n) with m, n >= 0, got {shape}")
        for name, a in (("indptr", indptr), ("indices", indices)):
            if a.dtype.kind not in "iu":
                raise TypeError(f"{name} must hold integers, got dtype {a.dtype}")
        if indices.shape != data.shape or indices.ndim != 1:
            raise ValueError(f"indices and data must be 1-D of equal length, got {indices.shape} and {data.shape}")
        _check_csr(indptr, indices, len(data), shape)
        return _csr_parts(scipy.sparse.csr_matrix((data, indices, indptr), shape=shape, copy=True))
    raise TypeError(
        "A must be a scipy sparse matrix, a torch sparse tensor or (indptr, indices, data, shape), "
        f"got {type(A).__name__}"
    )


def _shared_view(A, M: "SparseMatrix"):
    """``A`` itself as ``M``'s scipy view when ``M``'s arrays are ``A``'s (a canonical scipy CSR input), else None."""
    if not scipy.sparse.issparse(A) or A.format != "csr":
        return None
    same = (M.data.data_ptr() == A.data.ctypes.data and M.indices.data_ptr() == A.indices.ctypes.data
            and M.indptr.data_ptr() == A.indptr.ctypes.data and M.data.dtype == torch.from_numpy(A.data[:0]).dtype)
    return A if same else None


def _check_indices(indices: np.ndarray, n: int) -> None:
    if len(indices) and (int(indices.min()) < 0 or int(indices.max()) >= n):
        raise ValueError(f"A: column indices must lie in [0, {n}), got values in "
                         f"[{int(indices.min())}, {int(indices.max())}]")


def _check_csr(indptr: np.ndarray, indices: np.ndarray, nnz: int, shape) -> None:
    """Raise ``ValueError`` unless the CSR arrays describe a valid ``shape`` matrix (nothing out of bounds)."""
    if indptr.ndim != 1 or indptr.shape[0] != shape[0] + 1:
        raise ValueError(f"A: indptr must have length m+1 = {shape[0] + 1}, got shape {indptr.shape}")
    if len(indices) != nnz:
        raise ValueError(f"A: {len(indices)} column indices for {nnz} stored values")
    if indptr[0] != 0 or int(indptr[-1]) != nnz or np.any(np.diff(indptr) < 0):
        raise ValueError(f"A: indptr must start at 0, be non-decreasing and end at the number of stored values ({nnz})")
    _check_indices(indices, shape[1])


def _is_canonical(indptr: np.ndarray, indices: np.ndarray) -> bool:
    """Sorted, duplicate-free column indices in every row."""
    if len(indices) < 2:
        return True
    step = np.diff(indices.astype(np.int64))
    row_start = np.zeros(len(indices), dtype=bool)
    row_start[indptr[1:-1][indptr[1:-1] < len(indices)]] = True
    return bool(np.all((step > 0) | row_start[1:]))


__all__ = ["SparseMatrix"]
