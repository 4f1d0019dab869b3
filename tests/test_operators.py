"""Operator algebra, SparseMatrix kernels and interop (scipy, sigpy)."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from krylearn.operators import (
    Dense,
    Diagonal,
    Identity,
    PoissonGrid,
    SparseMatrix,
    as_operator,
    aslinearoperator,
    from_sigpy,
    to_sigpy,
)

rng = np.random.default_rng(0)


def rand_sparse(m, n, density=0.2, seed=0, complex_=False):
    A = sp.random(m, n, density=density, format="csr", random_state=seed)
    if complex_:
        A = A + 1j * sp.random(m, n, density=density, format="csr", random_state=seed + 1)
    return A.tocsr()


@pytest.mark.parametrize("complex_", [False, True])
def test_sparse_matches_scipy_single_and_batched(complex_):
    A = rand_sparse(40, 30, complex_=complex_)
    S = SparseMatrix(A)
    x = rng.standard_normal((5, 30))
    assert np.allclose(S @ x[0], A @ x[0], rtol=1e-13, atol=1e-13)
    assert np.allclose(S @ x, (A @ x.T).T, rtol=1e-13, atol=1e-13)
    y = rng.standard_normal(40)
    assert np.allclose(S.H @ y, A.conj().T @ y, rtol=1e-13, atol=1e-13)
    assert (S.to_sparse() != A).nnz == 0


def test_sparse_constructors_agree():
    A = rand_sparse(20, 20, seed=3)
    ref = SparseMatrix(A).to_sparse()
    from_tuple = SparseMatrix((A.indptr, A.indices, A.data, A.shape)).to_sparse()
    t = torch.sparse_csr_tensor(torch.from_numpy(A.indptr), torch.from_numpy(A.indices), torch.from_numpy(A.data),
                                size=A.shape, check_invariants=True)
    from_torch = SparseMatrix(t).to_sparse()
    from_coo = SparseMatrix(t.to_sparse_coo()).to_sparse()
    for B in (from_tuple, from_torch, from_coo):
        assert (B != ref).nnz == 0


def test_sparse_bad_input():
    A = rand_sparse(5, 5)
    with pytest.raises(ValueError, match="indptr"):
        SparseMatrix((A.indptr[:-1], A.indices, A.data, A.shape))
    with pytest.raises(ValueError, match="indices"):
        SparseMatrix((A.indptr, A.indices + 100, A.data, A.shape))
    bad = A.copy()
    bad.data[0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        SparseMatrix(bad)
    with pytest.raises(TypeError, match="A must be"):
        SparseMatrix("matrix")
    with pytest.raises(ValueError, match="expects"):
        SparseMatrix(A) @ np.ones(6)


def test_algebra_matches_dense():
    A = rand_sparse(12, 12, seed=1).toarray()
    B = rand_sparse(12, 12, seed=2).toarray()
    d = rng.standard_normal(12)
    opA, opB, D = SparseMatrix(sp.csr_matrix(A)), Dense(B), Diagonal(d)
    x = rng.standard_normal((3, 12))
    cases = {
        "sum": (opA + opB, A + B),
        "sub": (opA - opB, A - B),
        "scale": (2.5 * opA, 2.5 * A),
        "neg": (-opB, -B),
        "div": (opA / 4, A / 4),
        "compose": (opA @ opB, A @ B),
        "diag": (D @ opA + Identity(12), np.diag(d) @ A + np.eye(12)),
        "adjoint": ((opA @ opB).H, (A @ B).T),
        "normal": (opA.N, A.T @ A),
    }
    for name, (op, M) in cases.items():
        assert np.allclose(op @ x, x @ M.T, atol=1e-12), name
        assert np.allclose(op.to_dense().numpy(), M, atol=1e-12), name
    assert np.allclose((opA + D).diagonal().numpy(), np.diag(A) + d)
    assert np.allclose((opA + 2 * D).to_sparse().toarray(), A + 2 * np.diag(d))


def test_adjoint_dot_test_complex():
    A = rand_sparse(15, 10, seed=4, complex_=True)
    S = SparseMatrix(A) @ Diagonal(rng.standard_normal(10) + 1j * rng.standard_normal(10))
    x = rng.standard_normal(10) + 1j * rng.standard_normal(10)
    y = rng.standard_normal(15) + 1j * rng.standard_normal(15)
    lhs = np.vdot(y, S @ x)
    rhs = np.vdot(S.H @ y, x)
    assert abs(lhs - rhs) <= 1e-12 * abs(lhs)


def test_shape_mismatch_errors():
    with pytest.raises(ValueError, match="compose"):
        Dense(np.ones((3, 4))) @ Dense(np.ones((3, 4)))
    with pytest.raises(ValueError, match="add"):
        Dense(np.ones((3, 4))) + Dense(np.ones((4, 3)))
    with pytest.raises(ValueError, match="2-D"):
        Dense(np.ones(3))
    with pytest.raises(TypeError, match="A must be"):
        as_operator({"not": "a matrix"})


def test_batched_multidim_input():
    G = PoissonGrid((6, 7), boundary="empty")
    x = torch.randn(2, 3, 42, dtype=torch.float64)
    y = G @ x
    assert y.shape == (2, 3, 42)
    assert torch.allclose(y[1, 2], G @ x[1, 2])


def test_to_device_dtype():
    A = SparseMatrix(rand_sparse(8, 8))
    A32 = A.to(dtype=torch.float32)
    assert A32.dtype == torch.float32
    x = torch.randn(8)
    assert torch.allclose(A32 @ x, (A @ x.double()).float(), atol=1e-5)
    assert A.to("cpu") is A


def test_scipy_linearoperator():
    A = rand_sparse(9, 7, seed=5)
    L = aslinearoperator(SparseMatrix(A))
    x, y = rng.standard_normal(7), rng.standard_normal(9)
    assert np.allclose(L @ x, A @ x)
    assert np.allclose(L.rmatvec(y), A.T @ y)
    X = rng.standard_normal((7, 3))
    assert np.allclose(L @ X, A @ X)


def test_sigpy_roundtrip():
    import sigpy

    A = rand_sparse(9, 7, seed=6)
    op = SparseMatrix(A)
    lin = to_sigpy(op)
    x = rng.standard_normal(7)
    assert isinstance(lin, sigpy.linop.Linop)
    assert np.allclose(lin(x), A @ x)
    assert np.allclose(lin.H(np.ones(9)), A.T @ np.ones(9))
    back = from_sigpy(sigpy.linop.Multiply([7], np.arange(7.0)))
    assert np.allclose(back @ np.ones(7), np.arange(7.0))
    assert np.allclose(as_operator(sigpy.linop.Identity([4])) @ np.ones(4), np.ones(4))


def test_poissongrid_as_operator_matches_sparse():
    flags = (rng.random((10, 12)) < 0.2).astype(np.uint8)
    G = PoissonGrid((10, 12), flags=flags, boundary=("solid", "empty", "solid", "solid"))
    S = SparseMatrix(G.to_sparse())
    x = torch.randn(4, 120, dtype=torch.float64)
    assert torch.allclose(G @ x, S @ x, atol=1e-12)
