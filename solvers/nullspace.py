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
import scipy.ndimage
import scipy.sparse.csgraph
import torch

from ._cg_kernels import row_sums


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


def empty_rows(A: scipy.sparse.csr_matrix) -> np.ndarray:
    """Boolean mask of the rows of a canonical CSR matrix that are identically zero (full-grid convention)."""
    return np.diff(A.indptr) == 0


def detect_constant_nullspace(A: scipy.sparse.csr_matrix | None, *, device="cpu",
                              slack: float = 2.0) -> ConstantNullSpace | None:
    """Find the singular components of a symmetric Laplacian-like matrix.

    A connected component (through off-diagonal nonzeros, identically zero
    rows excluded) is singular when ``A z = 0`` for its indicator ``z``, to
    rounding: every row of it sums to zero within
    ``slack * nnz_i * eps * sum_j |A_ij|`` (the rounding error of the sum
    itself).  A matrix that is merely close to singular, such as a Neumann
    Laplacian plus ``1e-10 I``, has no null space and is solved as it is.

    Parameters
    ----------
    A : scipy.sparse.csr_matrix or None
        Canonical CSR (sorted, no explicit zeros); None (a matrix-free
        operator) returns None.
    device : torch device of the returned projector.
    slack : float
        Multiple of the rounding bound allowed.

    Returns
    -------
    ConstantNullSpace or None
    """
    if A is None or A.shape[0] == 0:
        return None
    eps = np.finfo(A.dtype).eps if np.issubdtype(A.dtype, np.inexact) else np.finfo(np.float64).eps
    nnz_row = np.diff(A.indptr)
    active = nnz_row > 0
    rowsum, abssum = row_sums(A.indptr, A.data)
    zero_sum = active & (rowsum <= slack * nnz_row * eps * abssum)
    if not zero_sum.any():
        return None
    pattern = scipy.sparse.csr_matrix((np.ones(A.nnz, dtype=np.int8), A.indices, A.indptr), shape=A.shape)
    return _singular_components(pattern, active, zero_sum, device)


def _singular_components(graph, active: np.ndarray, zero_sum: np.ndarray, device) -> ConstantNullSpace | None:
    """The components of ``graph`` whose every row sums to zero, as a :class:`ConstantNullSpace`."""
    ncomp, comp = scipy.sparse.csgraph.connected_components(graph, directed=False)
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
    return ConstantNullSpace(labels, device=device)


def grid_nullspace(op, *, slack: float = 2.0) -> ConstantNullSpace | None:
    """:func:`detect_constant_nullspace` for a :class:`~krylearn.operators.PoissonGrid`, without its matrix.

    Components are the fluid regions connected through faces of nonzero
    weight; one is singular when ``A 1`` vanishes on it to rounding (no face
    to air and no Dirichlet side).  Costs one product and a labelling of the
    grid.
    """
    d, w = op.weights()
    fluid = d > 0
    if not fluid.any():
        return None
    rowsum = np.abs(op.apply(np.ones(d.size)).reshape(d.shape))
    eps = np.finfo(np.float64).eps
    zero_sum = fluid & (rowsum <= slack * (2 * d.ndim + 1) * eps * 2 * d)
    if not zero_sum.any():
        return None
    if _faces_couple_all_neighbours(d, w):  # components are the face-connected fluid regions
        labels, count = scipy.ndimage.label(fluid)
        comp, active = labels.reshape(-1), fluid.reshape(-1)
        regular = np.zeros(count + 1, dtype=bool)
        regular[comp[active & ~zero_sum.reshape(-1)]] = True
        regular[0] = True  # the background: not unknowns
        if regular.all():
            return None
        relabel = -np.ones(count + 1, dtype=np.int64)
        relabel[~regular] = np.arange(int((~regular).sum()))
        return ConstantNullSpace(relabel[comp], device=op.device)
    n = d.size
    idx = np.arange(n).reshape(d.shape)
    rows, cols = [], []
    for a, wa in enumerate(w):
        if d.shape[a] < 2:
            continue
        inner = wa.take(np.arange(1, d.shape[a]), axis=a) != 0
        lo = idx.take(np.arange(d.shape[a] - 1), axis=a)[inner]
        hi = idx.take(np.arange(1, d.shape[a]), axis=a)[inner]
        rows += [lo, hi]
        cols += [hi, lo]
    rows = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    cols = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
    graph = scipy.sparse.csr_matrix((np.ones(rows.size, dtype=np.int8), (rows, cols)), shape=(n, n))
    return _singular_components(graph, fluid.reshape(-1), zero_sum.reshape(-1), op.device)


def _faces_couple_all_neighbours(d: np.ndarray, w) -> bool:
    """Whether every face between two unknowns has a nonzero weight (then the couplings are the grid's)."""
    fluid = d > 0
    for a, wa in enumerate(w):
        n = d.shape[a]
        if n < 2:
            continue
        both = fluid.take(np.arange(n - 1), axis=a) & fluid.take(np.arange(1, n), axis=a)
        if np.any(both & (wa.take(np.arange(1, n), axis=a) == 0)):
            return False
    return True
