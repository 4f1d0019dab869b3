"""Constant null spaces of singular Laplacian-like systems.

A pressure Poisson system is singular where a connected fluid region touches
no Dirichlet (empty/air) cell: a closed box, or fluid enclosed by solids.
Each such region adds the region's indicator vector to the null space.  CG
still converges on the consistent part of ``b`` when ``b`` and every search
direction are kept orthogonal to those vectors, which is what
:class:`ConstantNullSpace` does.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse
import scipy.sparse.csgraph
import torch

from ..operators.base import Operator


class ConstantNullSpace:
    """Piecewise-constant null space: one constant vector per singular component.

    Parameters
    ----------
    labels : numpy.ndarray of int, (n,)
        Component index (0..count-1) of each unknown in a singular component,
        -1 elsewhere.
    """

    def __init__(self, labels: np.ndarray, device="cpu"):
        labels = np.asarray(labels, dtype=np.int64)
        self.count = int(labels.max()) + 1 if labels.size and labels.max() >= 0 else 0
        member = labels >= 0
        self.whole = bool(member.all()) and self.count == 1
        self.index = torch.from_numpy(np.nonzero(member)[0]).to(device)
        self.labels = torch.from_numpy(labels[member]).to(device)
        self.sizes = torch.from_numpy(np.bincount(labels[member], minlength=self.count)).to(device)

    def project(self, v: torch.Tensor) -> torch.Tensor:
        """Remove each component's mean from ``v`` (shape ``(k, n)``), in place."""
        if self.whole:
            v.sub_(v.mean(dim=1, keepdim=True))
            return v
        vi = v[:, self.index]
        sums = torch.zeros(v.shape[0], self.count, dtype=v.dtype, device=v.device)
        sums.index_add_(1, self.labels, vi)
        means = sums / self.sizes.to(v.dtype)
        v[:, self.index] = vi - means[:, self.labels]
        return v


def matrix_form(op: Operator) -> scipy.sparse.csr_matrix | None:
    """``op`` as a CSR matrix with explicit zeros removed, or None for a matrix-free operator."""
    try:
        A = scipy.sparse.csr_matrix(op.to_sparse())
    except NotImplementedError:
        return None
    A.eliminate_zeros()
    return A


def empty_rows(op: Operator, A: scipy.sparse.csr_matrix | None = None) -> np.ndarray | None:
    """Boolean mask of rows that are identically zero (full-grid convention), or None if unknown.

    ``A`` is ``op``'s :func:`matrix_form` when the caller already has it.
    """
    A = matrix_form(op) if A is None else A
    return None if A is None else np.diff(A.indptr) == 0


def detect_constant_nullspace(op: Operator, *, tol: float = 1e-10,
                              A: scipy.sparse.csr_matrix | None = None) -> ConstantNullSpace | None:
    """Find the singular components of a symmetric Laplacian-like matrix.

    A connected component (through off-diagonal nonzeros, identically zero
    rows excluded) is singular when every one of its rows sums to zero
    (``|sum_j A_ij| <= tol * |A_ii|``).  Returns None when there is none or
    the operator has no matrix form.  ``A`` is ``op``'s :func:`matrix_form`
    when the caller already has it.
    """
    A = matrix_form(op) if A is None else A
    if A is None:
        return None
    active = np.diff(A.indptr) > 0
    rowsum = np.abs(np.asarray(A.sum(axis=1)).ravel())
    zero_sum = active & (rowsum <= tol * np.abs(A.diagonal()))
    if not zero_sum.any():
        return None
    ncomp, comp = scipy.sparse.csgraph.connected_components(A, directed=False)
    # a component is regular if any of its rows has a nonzero row sum (Dirichlet contact)
    regular = np.zeros(ncomp, dtype=bool)
    regular[comp[active & ~zero_sum]] = True
    regular[comp[~active]] = True  # isolated empty rows are not unknowns
    singular = ~regular
    if not singular.any():
        return None
    relabel = -np.ones(ncomp, dtype=np.int64)
    relabel[singular] = np.arange(int(singular.sum()))
    labels = relabel[comp]
    labels[~active] = -1
    return ConstantNullSpace(labels, device=op.device)
