"""CSR sparse matrices as :class:`~krylearn.operators.base.Operator`."""

from __future__ import annotations

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
        if not torch.isfinite(data).all():
            raise ValueError("A contains NaN or Inf")
        index_dtype = torch.int32 if max(shape[1], data.numel()) < 2**31 - 1 else torch.int64
        self.indptr = indptr.to(device=device, dtype=index_dtype).contiguous()
        self.indices = indices.to(device=device, dtype=index_dtype).contiguous()
        self.data = data.to(device=device).contiguous()
        self._torch_csr = None
        self._transpose = None
        self._scipy = None
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
        if self._scipy is None:
            self._scipy = self.to_sparse()
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
        d = self.to_sparse().diagonal()
        return torch.from_numpy(d).to(self.device)

    def to_sparse(self) -> scipy.sparse.csr_matrix:
        return scipy.sparse.csr_matrix(
            (self.data.cpu().numpy(), self.indices.cpu().numpy(), self.indptr.cpu().numpy()),
            shape=self.shape,
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
    """``(indptr, indices, data, shape)`` of ``A`` in canonical CSR form."""
    if scipy.sparse.issparse(A):
        A = scipy.sparse.csr_matrix(A)
        A.sum_duplicates()
        A.sort_indices()
        return A.indptr, A.indices, A.data, A.shape
    if isinstance(A, torch.Tensor):
        if A.layout == torch.sparse_coo:
            A = A.coalesce().to_sparse_csr()
        if A.layout != torch.sparse_csr:
            raise TypeError(f"A: expected a sparse torch tensor, got layout {A.layout}")
        return A.crow_indices(), A.col_indices(), A.values(), tuple(A.shape)
    if isinstance(A, tuple) and len(A) == 4:
        indptr, indices, data, shape = A
        indptr, indices, data = (np.asarray(a) if not isinstance(a, torch.Tensor) else a.cpu().numpy() for a in (indptr, indices, data))
        shape = tuple(int(s) for s in shape)
        if len(shape) != 2:
            raise ValueError(f"shape must be (m, n), got {shape}")
        if indptr.ndim != 1 or indptr.shape[0] != shape[0] + 1:
            raise ValueError(f"indptr must have length m+1 = {shape[0] + 1}, got shape {indptr.shape}")
        if indices.shape != data.shape or indices.ndim != 1:
            raise ValueError(f"indices and data must be 1-D of equal length, got {indices.shape} and {data.shape}")
        if indptr[0] != 0 or indptr[-1] != len(data) or np.any(np.diff(indptr) < 0):
            raise ValueError("indptr must start at 0, be non-decreasing and end at len(data)")
        if len(indices) and (indices.min() < 0 or indices.max() >= shape[1]):
            raise ValueError(f"indices must lie in [0, {shape[1]})")
        return _csr_parts(scipy.sparse.csr_matrix((data, indices, indptr), shape=shape))
    raise TypeError(
        "A must be a scipy sparse matrix, a torch sparse tensor or (indptr, indices, data, shape), "
        f"got {type(A).__name__}"
    )


__all__ = ["SparseMatrix"]
