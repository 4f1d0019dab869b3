"""Small test systems shared by the solver tests."""

import numpy as np
import pyamg


def poisson(shape):
    """Dirichlet 5/7-point Poisson matrix (pyamg's gallery), float64 CSR."""
    return pyamg.gallery.poisson(shape, format="csr").astype(np.float64)


def full_grid():
    """16x16 Dirichlet Poisson with the rows and columns of a 5x4 'solid' block zeroed.

    Returns the CSR matrix and the boolean solid mask (flattened).
    """
    A = poisson((16, 16)).tolil()
    solid = np.zeros((16, 16), dtype=bool)
    solid[5:10, 6:10] = True
    idx = np.nonzero(solid.ravel())[0]
    A[idx, :] = 0
    A[:, idx] = 0
    A = A.tocsr()
    A.eliminate_zeros()
    return A, solid.ravel()


def rhs(n, seed=0, zero=None):
    """Standard normal right-hand side, zero at the indices/mask ``zero``."""
    b = np.random.default_rng(seed).standard_normal(n)
    if zero is not None:
        b[zero] = 0
    return b
