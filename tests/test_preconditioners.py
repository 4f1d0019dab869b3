"""Jacobi / IC(0) / SSOR / AMG preconditioners with CG, including full-grid matrices."""

import numpy as np
import pyamg
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from krylearn.operators.base import Operator
from krylearn.operators.stencil import PoissonGrid
from krylearn.solvers import _relax_kernels as K
from krylearn.solvers import cg
from krylearn.solvers.preconditioners import (
    amg_preconditioner,
    ic0_preconditioner,
    jacobi_preconditioner,
    make_preconditioner,
    ssor_preconditioner,
)
from krylearn.solvers import ssor
from _problems import full_grid, poisson, rhs

NAMES = ["jacobi", "ic0", "ssor", "amg"]


MATRICES = {
    "poisson32": lambda: (poisson((32, 32)), None),
    "full_grid": full_grid,
}


@pytest.mark.parametrize("mat", list(MATRICES))
@pytest.mark.parametrize("name", NAMES)
def test_pcg_converges_faster(name, mat):
    A, solid = MATRICES[mat]()
    b = rhs(A.shape[0], zero=solid)
    plain = cg(A, b, rtol=1e-8)
    M = make_preconditioner(name, A)
    res = cg(A, b, rtol=1e-8, M=M)
    assert res.converged and res.reason == "converged"
    assert np.linalg.norm(b - A @ res.x) <= 1e-8 * np.linalg.norm(b) * (1 + 1e-9)
    if name == "jacobi":  # constant diagonal: Jacobi is a scaling
        assert abs(res.iterations - plain.iterations) <= 1
    else:
        assert res.iterations < plain.iterations
    if solid is not None:
        assert np.all(res.x[solid] == 0)
    assert isinstance(M, Operator) and M.shape == A.shape and M.ishape == (A.shape[0],)
    assert M.dtype == torch.float64 and M.device.type == "cpu"
    setup = M.setup_seconds
    assert isinstance(setup, float) and np.isfinite(setup)
    assert isinstance(M.name, str) and M.name


@pytest.mark.parametrize("name", NAMES)
def test_identity_on_empty_rows_and_batched_apply(name):
    A, solid = full_grid()
    M = make_preconditioner(name, A)
    X = torch.from_numpy(np.random.default_rng(3).standard_normal((3, A.shape[0])))
    Y = M.apply(X)
    assert torch.equal(Y[:, solid], X[:, solid])
    for i in range(3):
        torch.testing.assert_close(M.apply(X[i]), Y[i], rtol=1e-13, atol=1e-13)
    # numpy in, numpy out; float32 input comes back as float32 through cg's direct _apply
    assert isinstance(M.apply(X[0].numpy()), np.ndarray)
    assert M._apply(X.float()).dtype == torch.float32
    if name == "ssor":  # empty rows stay the identity for omega != 1 too
        assert torch.equal(ssor_preconditioner(A, 1.5).apply(X)[:, solid], X[:, solid])


@pytest.mark.parametrize("mat", list(MATRICES))
def test_ic0_defining_property(mat):
    A, solid = MATRICES[mat]()
    M = ic0_preconditioner(A)
    L = M.L
    assert sp.tril(L).nnz == L.nnz  # lower triangular
    target = A.copy()
    if solid is not None:
        target = (target + sp.diags(solid.astype(float))).tocsr()  # unit rows on empty rows
    T = sp.tril(target).tocoo()
    LLt = (L @ L.T).tocsr()
    np.testing.assert_allclose(np.asarray(LLt[T.row, T.col]).ravel(), T.data, rtol=0, atol=1e-13)
    assert L.nnz == T.nnz  # zero fill: the pattern of tril(A)
    assert M.guarded_pivots == 0 and M.info["guarded_pivots"] == 0


def test_ic0_triangular_solves_match_scipy():
    A = poisson((12, 12))
    M = ic0_preconditioner(A)
    L = M.L
    B = np.random.default_rng(1).standard_normal((3, A.shape[0]))
    Y = B.copy()
    K.lower_solve(L.indptr, L.indices, L.data, K.inverse_diagonal(L.indptr, L.data), Y)
    np.testing.assert_allclose(Y, spla.spsolve_triangular(L, B.T, lower=True).T, rtol=1e-13, atol=1e-13)
    Z = B.copy()
    U = L.T.tocsr()
    U.sort_indices()
    K.upper_solve(U.indptr, U.indices, U.data, 1.0 / U.diagonal(), Z)
    np.testing.assert_allclose(Z, spla.spsolve_triangular(L.T.tocsr(), B.T, lower=False).T, rtol=1e-13, atol=1e-13)
    # and the operator is the composition (L L^T)^-1
    ref = spla.spsolve_triangular(L.T.tocsr(), spla.spsolve_triangular(L, B.T, lower=True), lower=False).T
    np.testing.assert_allclose(M.apply(B), ref, rtol=1e-12, atol=1e-12)


def test_ic0_guards_zero_pivot_on_singular_neumann():
    n = 50  # 1-D pure-Neumann Laplacian: IC(0) is the exact Cholesky, whose last pivot is 0
    A = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(n, n)).tolil()
    A[0, 0] = A[n - 1, n - 1] = 1.0
    A = A.tocsr()
    M = ic0_preconditioner(A)
    assert M.guarded_pivots == 1 and np.isfinite(M.L.data).all()
    b = rhs(n)
    b -= b.mean()
    res = cg(A, b, rtol=1e-10, M=M)
    assert res.converged and res.info["null_space"] == 1
    # 2-D Neumann (matrix-free operator with to_sparse): no breakdown, faster than CG
    G = PoissonGrid((24, 24))
    b = rhs(G.shape[0])
    b -= b.mean()
    M = ic0_preconditioner(G)
    res = cg(G, b, rtol=1e-8, M=M)
    assert res.converged and res.iterations < cg(G, b, rtol=1e-8).iterations
    assert M.info["guarded_pivots"] >= 0


@pytest.mark.parametrize("omega", [1.0, 1.5, 0.6])
@pytest.mark.parametrize("mat", list(MATRICES))
def test_ssor_symmetric_positive(omega, mat):
    A, solid = MATRICES[mat]()
    M = ssor_preconditioner(A, omega=omega)
    rng = np.random.default_rng(7)
    X = torch.from_numpy(rng.standard_normal((5, A.shape[0])))
    MX = M.apply(X)
    G = X @ MX.T  # G[i, j] = x_i . M x_j
    torch.testing.assert_close(G, G.T, rtol=1e-12, atol=1e-12)
    assert torch.all(torch.diagonal(G) > 0)
    assert torch.linalg.eigvalsh(G).min() > 0


@pytest.mark.parametrize("omega", [1.0, 1.4])
def test_ssor_preconditioner_is_one_symmetric_sweep(omega):
    A, solid = full_grid()
    b = rhs(A.shape[0], zero=solid)
    one = ssor(A, b, omega=omega, maxiter=1, rtol=0.0)
    np.testing.assert_allclose(ssor_preconditioner(A, omega).apply(b), one.x, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("factory", [ic0_preconditioner, lambda A, backend: ssor_preconditioner(A, 1.3, backend=backend)])
def test_torch_backend_matches_numba(factory):
    # the path CUDA takes (torch sparse-CSR triangular solves), exercised on CPU
    A, _ = full_grid()
    X = torch.from_numpy(np.random.default_rng(2).standard_normal((2, A.shape[0])))
    Mn = factory(A, backend="numba")
    Mt = factory(A, backend="torch")
    Yt = Mt.apply(X)
    assert Mt.info["backend"] in ("torch", "numba (cpu round trip)")
    torch.testing.assert_close(Yt, Mn.apply(X), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", [(128, 128), (24, 24, 24)])
def test_amg_matches_pyamg_iterations(shape):
    A = poisson(shape)
    b = rhs(A.shape[0], seed=1)
    residuals = []
    ml = pyamg.smoothed_aggregation_solver(A)
    x = ml.solve(b, accel="cg", tol=1e-8, residuals=residuals)
    # pyamg's tol is relative to ||b|| (x0 = 0): its first residual is ||b||
    assert residuals[0] == pytest.approx(np.linalg.norm(b))
    assert np.linalg.norm(b - A @ x) < 1e-8 * np.linalg.norm(b)
    ours = cg(A, b, rtol=1e-8, M=amg_preconditioner(A))
    assert ours.converged
    assert abs(ours.iterations - (len(residuals) - 1)) <= 2


def test_amg_passes_options_through():
    A = poisson((32, 32))
    M = amg_preconditioner(A, strength=("symmetric", {"theta": 0.1}), max_coarse=20,
                           presmoother=("gauss_seidel", {"sweep": "symmetric"}),
                           postsmoother=("gauss_seidel", {"sweep": "symmetric"}))
    assert M.ml.levels[-1].A.shape[0] <= 20
    assert cg(A, rhs(A.shape[0]), rtol=1e-8, M=M).converged


def test_stencil_operator_input():
    flags = np.zeros((16, 16), dtype=np.uint8)
    flags[4:8, 4:8] = 1  # solid block
    G = PoissonGrid((16, 16), flags=flags, boundary="empty")
    solid = flags.ravel() == 1
    b = rhs(G.shape[0], zero=solid)
    for name in NAMES:
        res = cg(G, b, rtol=1e-8, M=make_preconditioner(name, G))
        assert res.converged, name


def test_errors():
    A = poisson((8, 8))
    with pytest.raises(ValueError, match="name"):
        make_preconditioner("ilu", A)
    assert make_preconditioner("IC", A).name == "ic0"
    with pytest.raises(ValueError, match="omega"):
        ssor_preconditioner(A, omega=2.0)
    with pytest.raises(ValueError, match="omega"):
        make_preconditioner("ssor", A, omega=0.0)
    with pytest.raises(ValueError, match="backend"):
        ic0_preconditioner(A, backend="cuda")
    Z = A.tolil()
    Z[3, 3] = 0.0
    with pytest.raises(ValueError, match="diagonal"):
        ic0_preconditioner(Z.tocsr())
    with pytest.raises(ValueError, match="diagonal"):
        jacobi_preconditioner(Z.tocsr())
    with pytest.raises(ValueError, match="square"):
        ic0_preconditioner(sp.random(4, 5, density=0.5, format="csr"))

    class MatrixFree(Operator):
        def __init__(self):
            super().__init__(4, 4)

        def _apply(self, x):
            return 2 * x

    with pytest.raises(TypeError, match="to_sparse"):
        ic0_preconditioner(MatrixFree())
