"""Tests for krylearn.operators.stencil (MAC-grid pressure Laplacian)."""

import itertools
import math

import numpy as np
import pyamg
import pytest
import scipy.sparse
import torch

from krylearn.operators import SparseMatrix
from krylearn.operators.stencil import (
    EMPTY,
    FLUID,
    SOLID,
    Laplacian,
    PoissonGrid,
    _apply_torch,
    flags_from_matrix,
)

SHAPES = [(6, 7), (1, 5), (4, 1), (3, 4, 5), (1, 3, 2), (4, 1, 3)]


def face_shape(shape, a):
    return tuple(s + 1 if i == a else s for i, s in enumerate(shape))


def random_problem(shape, seed):
    rng = np.random.default_rng(seed)
    flags = rng.choice([FLUID, SOLID, EMPTY], size=shape, p=[0.6, 0.2, 0.2]).astype(np.uint8)
    coeffs = tuple(rng.uniform(0.1, 2.0, face_shape(shape, a)) for a in range(len(shape)))
    coeffs[0].flat[0] = 0.0  # a zero-coefficient face
    boundary = tuple(rng.choice(["solid", "empty"]) for _ in range(2 * len(shape)))
    return flags, coeffs, boundary


def reference_matrix(shape, flags, coeffs, boundary, h):
    """The matrix from the definition, cell by cell (slow; small grids only)."""
    dim = len(shape)
    n = math.prod(shape)
    A = np.zeros((n, n))
    for cell in itertools.product(*(range(s) for s in shape)):
        if flags[cell] != FLUID:
            continue
        i = np.ravel_multi_index(cell, shape)
        for a in range(dim):
            for side, step in ((0, -1), (1, 1)):
                face = list(cell)
                face[a] += side  # face index k sits between cells k-1 and k
                c = (1.0 if coeffs is None else coeffs[a][tuple(face)]) / h**2
                nb = list(cell)
                nb[a] += step
                if 0 <= nb[a] < shape[a]:
                    kind = flags[tuple(nb)]
                else:
                    kind = SOLID if boundary[2 * a + side] == "solid" else EMPTY
                if kind != SOLID:
                    A[i, i] += c
                if kind == FLUID:
                    A[i, np.ravel_multi_index(tuple(nb), shape)] -= c
    return A


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_definition_and_apply(shape, seed):
    flags, coeffs, boundary = random_problem(shape, seed)
    op = PoissonGrid(shape, flags, coeffs, boundary=boundary, spacing=0.7)
    A = op.to_sparse()
    assert isinstance(A, scipy.sparse.csr_matrix) and A.shape == op.shape
    ref = reference_matrix(shape, flags, coeffs, boundary, 0.7)
    scale = np.abs(ref).max()
    np.testing.assert_allclose(A.toarray(), ref, rtol=0, atol=1e-13 * scale)
    # applying to the identity columns (numba path) gives the same matrix
    n = op.shape[0]
    eye = torch.eye(n, dtype=torch.float64)
    np.testing.assert_allclose((op @ eye).numpy().T, A.toarray(), rtol=0, atol=1e-13 * scale)
    # random vectors: numba path, torch path and CSR agree
    x = torch.from_numpy(np.random.default_rng(seed).standard_normal((3, n)))
    y_csr = (A @ x.numpy().T).T
    y_nb = (op @ x).numpy()
    op._use_numba = False
    y_t = (op @ x).numpy()
    tol = 1e-13 * scale * np.abs(x.numpy()).max()
    np.testing.assert_allclose(y_nb, y_csr, rtol=0, atol=tol)
    np.testing.assert_allclose(y_t, y_csr, rtol=0, atol=tol)
    np.testing.assert_allclose(y_t, y_nb, rtol=0, atol=tol)


@pytest.mark.parametrize("shape", [(9, 8), (5, 6, 7)])
def test_symmetric_and_zero_rows_at_non_fluid(shape):
    flags, coeffs, boundary = random_problem(shape, 3)
    op = PoissonGrid(shape, flags, coeffs, boundary=boundary)
    A = op.to_sparse()
    assert abs(A - A.T).max() == 0
    nonfluid = (flags != FLUID).reshape(-1)
    Ad = A.toarray()
    assert np.all(Ad[nonfluid] == 0) and np.all(Ad[:, nonfluid] == 0)
    assert np.all(op.diagonal().numpy()[nonfluid] == 0)
    np.testing.assert_array_equal(op.diagonal().numpy(), A.diagonal())
    # output is exactly zero at non-fluid cells, and ignores x there
    x = torch.randn(2, op.shape[0], dtype=torch.float64)
    y = op @ x
    assert torch.all(y[:, torch.from_numpy(nonfluid)] == 0)
    x2 = x.clone()
    x2[:, torch.from_numpy(nonfluid)] = 123.0
    torch.testing.assert_close(op @ x2, y, rtol=0, atol=0)
    assert op.H is op
    assert torch.equal(op.fluid_mask, torch.from_numpy(flags == FLUID))
    assert op.flags.dtype == torch.uint8


def test_isolated_fluid_cell_has_zero_row():
    flags = np.full((3, 3), SOLID, dtype=np.uint8)
    flags[1, 1] = FLUID
    op = PoissonGrid((3, 3), flags, boundary="empty")
    assert op.to_sparse().nnz == 0
    assert flags_from_matrix(op, (3, 3))[1, 1] == SOLID


def test_neumann_null_space_and_dirichlet_definite():
    op = PoissonGrid((5, 6), boundary="solid")
    ones = torch.ones(30, dtype=torch.float64)
    assert torch.all(op @ ones == 0)
    ev = np.linalg.eigvalsh(op.to_sparse().toarray())
    assert abs(ev[0]) < 1e-12 and ev[1] > 1e-3
    op = PoissonGrid((5, 6), boundary="empty")
    assert np.linalg.eigvalsh(op.to_sparse().toarray())[0] > 1e-3
    # a single "empty" side is enough for definiteness
    op = PoissonGrid((5, 6), boundary=["solid", "solid", "empty", "solid"])
    assert np.linalg.eigvalsh(op.to_sparse().toarray())[0] > 1e-6


@pytest.mark.parametrize("shape", [(7, 5), (3, 4, 5)])
def test_equals_pyamg_poisson(shape):
    op = PoissonGrid(shape, boundary="empty")
    P = pyamg.gallery.poisson(shape, format="csr")
    assert abs(op.to_sparse() - P).max() == 0
    h = 0.25
    op = Laplacian(shape, boundary="empty", spacing=h)
    np.testing.assert_allclose(op.to_sparse().toarray(), P.toarray() / h**2, rtol=1e-15)


def test_batched_apply_equals_row_by_row():
    flags, coeffs, boundary = random_problem((4, 5, 6), 7)
    op = PoissonGrid((4, 5, 6), flags, coeffs, boundary=boundary)
    X = torch.randn(2, 3, op.shape[0], dtype=torch.float64)
    Y = op @ X
    assert Y.shape == X.shape
    for i, j in itertools.product(range(2), range(3)):
        torch.testing.assert_close(Y[i, j], op @ X[i, j], rtol=0, atol=0)
    # numpy in, numpy out
    np.testing.assert_array_equal(op @ X.numpy(), Y.numpy())


@pytest.mark.parametrize("shape", [(8, 9), (4, 5, 6)])
def test_float32(shape):
    flags, coeffs, boundary = random_problem(shape, 11)
    op64 = PoissonGrid(shape, flags, coeffs, boundary=boundary)
    op32 = PoissonGrid(shape, flags, coeffs, boundary=boundary, dtype=torch.float32)
    assert op32.to_sparse().dtype == np.float32
    x = torch.randn(2, op32.shape[0], dtype=torch.float32)
    y = op32 @ x
    assert y.dtype == torch.float32
    torch.testing.assert_close(y.double(), op64 @ x.double(), rtol=1e-5, atol=1e-5)
    op32._use_numba = False
    torch.testing.assert_close(op32 @ x, y, rtol=1e-6, atol=1e-6)
    # .to() converts and keeps the same matrix
    op = op64.to(dtype=torch.float32)
    assert op.dtype == torch.float32
    np.testing.assert_array_equal(op.to_sparse().toarray(), op32.to_sparse().toarray())


def test_torch_path_autograd_and_direct_call():
    flags, coeffs, boundary = random_problem((6, 5), 5)
    op = PoissonGrid((6, 5), flags, coeffs, boundary=boundary)
    x = torch.randn(1, 30, dtype=torch.float64, requires_grad=True)
    y = op @ x
    g = torch.randn(1, 30, dtype=torch.float64)
    (y * g).sum().backward()
    # A symmetric: d<Ax, g>/dx = A g
    torch.testing.assert_close(x.grad, op @ g, rtol=1e-13, atol=1e-13)
    d, w = op._diag, op._w
    yt = _apply_torch(x.detach().reshape(1, 6, 5), d, w).reshape(1, 30)
    torch.testing.assert_close(yt, y.detach(), rtol=1e-13, atol=1e-13)


def test_matches_sparse_matrix_operator():
    flags, coeffs, boundary = random_problem((10, 12), 2)
    op = PoissonGrid((10, 12), flags, coeffs, boundary=boundary)
    S = SparseMatrix(op.to_sparse())
    x = torch.randn(120, dtype=torch.float64)
    torch.testing.assert_close(op @ x, S @ x, rtol=1e-13, atol=1e-13)


def test_flags_from_matrix():
    flags, coeffs, boundary = random_problem((6, 7), 4)
    op = PoissonGrid((6, 7), flags, boundary=boundary)
    rec = flags_from_matrix(op.to_sparse(), (6, 7))
    assert rec.dtype == np.uint8 and rec.shape == (6, 7)
    nonzero_row = np.diff(op.to_sparse().indptr).reshape(6, 7) > 0
    np.testing.assert_array_equal(rec == FLUID, nonzero_row)
    assert set(np.unique(rec)) <= {FLUID, SOLID}
    assert np.all(rec[flags != FLUID] == SOLID)
    with pytest.raises(ValueError, match="A"):
        flags_from_matrix(op.to_sparse(), (6, 6))


def test_default_flags_and_tensor_inputs():
    op = PoissonGrid((3, 4))
    assert op.ishape == op.oshape == (12,) and op.grid_shape == (3, 4)
    assert bool(op.fluid_mask.all())
    flags = torch.zeros(3, 4, dtype=torch.int64)
    coeffs = (torch.ones(4, 4), torch.ones(3, 5))
    op2 = PoissonGrid((3, 4), flags, coeffs)
    assert abs(op.to_sparse() - op2.to_sparse()).max() == 0


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(shape=(4,)), "shape"),
        (dict(shape=(2, 2, 2, 2)), "shape"),
        (dict(shape=(3, 0)), "shape"),
        (dict(shape=(3, -1)), "shape"),
        (dict(shape=5), "shape"),
        (dict(shape=(3, 4), flags=np.zeros((4, 3))), "flags"),
        (dict(shape=(3, 4), flags=np.full((3, 4), 3)), "flags"),
        (dict(shape=(3, 4), flags=np.full((3, 4), 0.5)), "flags"),
        (dict(shape=(3, 4), coeffs=(np.ones((4, 4)),)), "coeffs"),
        (dict(shape=(3, 4), coeffs=(np.ones((3, 4)), np.ones((3, 5)))), "coeffs"),
        (dict(shape=(3, 4), coeffs=np.ones((4, 4))), "coeffs"),
        (dict(shape=(3, 4), coeffs=(-np.ones((4, 4)), np.ones((3, 5)))), "coeffs"),
        (dict(shape=(3, 4), coeffs=(np.full((4, 4), np.nan), np.ones((3, 5)))), "coeffs"),
        (dict(shape=(3, 4), coeffs=(np.full((4, 4), np.inf), np.ones((3, 5)))), "coeffs"),
        (dict(shape=(3, 4), boundary="wall"), "boundary"),
        (dict(shape=(3, 4), boundary=["solid"] * 3), "boundary"),
        (dict(shape=(3, 4), boundary=["solid", "empty", "solid", "open"]), "boundary"),
        (dict(shape=(3, 4), boundary=None), "boundary"),
        (dict(shape=(3, 4), spacing=0.0), "spacing"),
        (dict(shape=(3, 4), spacing=float("nan")), "spacing"),
    ],
)
def test_bad_inputs(kwargs, name):
    with pytest.raises(ValueError, match=name):
        PoissonGrid(**kwargs)


def test_bad_dtype_and_x_shape():
    with pytest.raises(TypeError, match="dtype"):
        PoissonGrid((3, 4), dtype=torch.int64)
    with pytest.raises(ValueError):
        PoissonGrid((3, 4)) @ torch.ones(11, dtype=torch.float64)
