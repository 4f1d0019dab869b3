"""SOR / SSOR / Gauss–Seidel / Jacobi stationary solvers."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from krylearn.operators.sparse import SparseMatrix
from krylearn.operators.stencil import PoissonGrid
from krylearn.solvers import _relax_kernels as K
from krylearn.solvers import gauss_seidel, jacobi, sor, ssor
from _problems import full_grid, poisson, rhs


def below_tol(A, b, res, rtol):
    return np.linalg.norm(b - A @ res.x) <= rtol * np.linalg.norm(b) * (1 + 1e-9)


def reference_sor(A, b, x, omega, sweeps, direction="forward"):
    """Plain-Python SOR on a dense matrix: x_i <- (1-w) x_i + w (b_i - sum_{j!=i} A_ij x_j) / A_ii."""
    A = np.asarray(A)
    n = len(b)
    x = x.copy()
    orders = {"forward": [range(n)], "backward": [range(n - 1, -1, -1)],
              "symmetric": [range(n), range(n - 1, -1, -1)]}[direction]
    for _ in range(sweeps):
        for order in orders:
            for i in order:
                sigma = sum(A[i, j] * x[j] for j in range(n) if j != i)
                x[i] = (1 - omega) * x[i] + omega * (b[i] - sigma) / A[i, i]
    return x


@pytest.mark.parametrize("direction", ["forward", "backward", "symmetric"])
def test_sor_equals_python_reference(direction):
    rng = np.random.default_rng(4)
    n = 7
    A = rng.standard_normal((n, n))
    A[rng.random((n, n)) < 0.4] = 0
    A += np.diag(np.abs(A).sum(axis=1) + 1)  # nonsymmetric, diagonally dominant
    b = rng.standard_normal(n)
    x0 = rng.standard_normal(n)
    ref = reference_sor(A, b, x0, 1.3, 3, direction)
    res = sor(sp.csr_matrix(A), b, x0, omega=1.3, maxiter=3, rtol=0.0, sweep=direction)
    assert res.reason == "maxiter" and res.iterations == 3
    np.testing.assert_allclose(res.x, ref, rtol=0, atol=1e-12)
    assert res.info["sweeps"] == 3 * (2 if direction == "symmetric" else 1)
    # the residual history is exact (fused kernel), initial first
    assert res.residuals[0] == pytest.approx(np.linalg.norm(b - A @ x0) / np.linalg.norm(b), rel=1e-12)
    assert res.residuals[-1] == pytest.approx(np.linalg.norm(b - A @ ref) / np.linalg.norm(b), rel=1e-10)


def test_optimal_omega_beats_gauss_seidel():
    N = 32
    A = poisson((N, N))
    b = rhs(A.shape[0])
    w = 2 / (1 + np.sin(np.pi / (N + 1)))
    gs = gauss_seidel(A, b, rtol=1e-6)
    so = sor(A, b, omega=w, rtol=1e-6)
    assert gs.converged and so.converged
    assert below_tol(A, b, gs, 1e-6) and below_tol(A, b, so, 1e-6)
    assert so.iterations * 5 < gs.iterations
    assert gs.method == "gauss-seidel" and so.method == "sor"
    assert len(so.residuals) == so.iterations + 1


def test_multicolor_is_red_black_and_converges():
    A = poisson((24, 24))
    b = rhs(A.shape[0])
    w = 2 / (1 + np.sin(np.pi / 25))
    res = sor(A, b, omega=w, rtol=1e-8, ordering="multicolor")
    assert res.converged and res.info["colors"] == 2 and below_tol(A, b, res, 1e-8)
    lex = sor(A, b, omega=w, rtol=1e-8)
    assert abs(res.iterations - lex.iterations) <= 0.3 * lex.iterations
    A3 = poisson((6, 6, 6))
    c = K.greedy_coloring(A3.indptr.astype(np.int64), A3.indices.astype(np.int64))
    assert c.max() == 1  # 7-point stencil: red-black


def test_multicolor_equals_lexicographic_on_colour_permuted_matrix():
    A = poisson((10, 10))
    b = rhs(A.shape[0])
    c = K.greedy_coloring(A.indptr.astype(np.int64), A.indices.astype(np.int64))
    perm = np.argsort(c, kind="stable")
    P = A[perm][:, perm].tocsr()
    mc = sor(A, b, omega=1.2, maxiter=5, rtol=0.0, ordering="multicolor")
    lex = sor(P, b[perm], omega=1.2, maxiter=5, rtol=0.0, ordering="lexicographic")
    np.testing.assert_allclose(mc.x[perm], lex.x, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(mc.residuals, lex.residuals, rtol=1e-10)


@pytest.mark.parametrize("ordering", ["lexicographic", "multicolor"])
@pytest.mark.parametrize("solver", [sor, ssor, gauss_seidel])
def test_full_grid_rows_untouched(solver, ordering):
    A, solid = full_grid()
    b = rhs(A.shape[0], zero=solid)
    x0 = np.zeros_like(b)
    x0[solid] = 7.0  # entries of empty rows must not be touched
    kw = {} if solver is gauss_seidel else {"omega": 1.5}
    res = solver(A, b, x0, rtol=1e-8, ordering=ordering, **kw)
    assert res.converged and below_tol(A, b, res, 1e-8)
    assert np.all(res.x[solid] == 7.0)
    assert res.info["empty_rows"] == solid.sum()


def test_jacobi_diagonally_dominant_and_damped():
    rng = np.random.default_rng(5)
    n = 200
    A = sp.random(n, n, density=0.03, random_state=6, format="csr")
    A = (A + sp.diags(np.asarray(abs(A).sum(axis=1)).ravel() + 0.5)).tocsr()
    b = rng.standard_normal(n)
    for omega in (1.0, 2 / 3):
        res = jacobi(A, b, omega=omega, rtol=1e-10)
        assert res.converged and below_tol(A, b, res, 1e-10), omega
        assert res.info["sweeps"] == res.iterations
    # full grid + matrix-free stencil operator (uses its diagonal / to_sparse)
    F, solid = full_grid()
    bf = rhs(F.shape[0], zero=solid)
    res = jacobi(F, bf, rtol=1e-3)
    assert res.converged and below_tol(F, bf, res, 1e-3)
    G = PoissonGrid((8, 8), boundary="empty")
    res = jacobi(G, rhs(64), omega=0.8, rtol=1e-6)
    assert res.converged


def test_diverged_and_reasons():
    # SPD but lambda_max(D^-1 A) = 2.8 > 2: Jacobi diverges, SOR converges
    A = np.full((3, 3), 0.9) + 0.1 * np.eye(3)
    b = np.ones(3)
    res = jacobi(A, b, rtol=1e-8)
    assert res.reason == "diverged" and not res.converged
    assert res.residuals[-1] > 1e10 * res.residuals[0]
    assert sor(A, b, omega=1.0, rtol=1e-8).converged
    z = sor(A, np.zeros(3), np.ones(3))
    assert z.reason == "zero_rhs" and z.converged and np.all(z.x == 0)
    m = sor(poisson((8, 8)), rhs(64), maxiter=3, rtol=1e-12)
    assert m.reason == "maxiter" and m.iterations == 3 and not m.converged


@pytest.mark.parametrize("ordering", ["lexicographic", "multicolor"])
def test_batched_each_system_stops_on_its_own(ordering):
    A = poisson((12, 12))
    n = A.shape[0]
    B = np.stack([rhs(n, 1), np.ones(n), np.zeros(n)])
    res = sor(A, B, omega=1.6, rtol=1e-8, ordering=ordering)
    assert list(res.reason) == ["converged", "converged", "zero_rhs"]
    assert res.residuals.shape == (res.iterations.max() + 1, 3)
    for i in range(2):
        single = sor(A, B[i], omega=1.6, rtol=1e-8, ordering=ordering)
        assert single.iterations == res.iterations[i]
        np.testing.assert_allclose(res.x[i], single.x, rtol=1e-11, atol=1e-12)
        assert below_tol(A, B[i], single, 1e-8)


def test_callback_torch_float32_and_atol():
    A = poisson((8, 8))
    b = torch.from_numpy(rhs(64))
    seen = []
    res = ssor(A, b, omega=1.2, rtol=1e-6, callback=lambda x: seen.append(x.clone()))
    assert isinstance(res.x, torch.Tensor) and len(seen) == res.iterations
    assert res.info["sweeps"] == 2 * res.iterations and res.method == "ssor"
    A32 = SparseMatrix(A, dtype=torch.float32)
    for ordering in ("lexicographic", "multicolor"):
        r32 = sor(A32, b.float(), omega=1.5, rtol=1e-4, ordering=ordering)
        assert r32.converged and r32.x.dtype == torch.float32
    ra = sor(A, b, omega=1.5, rtol=0.0, atol=1e-3)
    assert ra.converged and np.linalg.norm(b.numpy() - A @ ra.x.numpy()) <= 1e-3


def test_errors():
    A = poisson((6, 6))
    b = rhs(36)
    for bad in (0.0, 2.0, -1.0, 2.5, float("nan")):
        with pytest.raises(ValueError, match="omega"):
            sor(A, b, omega=bad)
        with pytest.raises(ValueError, match="omega"):
            ssor(A, b, omega=bad)
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="omega"):
            jacobi(A, b, omega=bad)
    with pytest.raises(ValueError, match="ordering"):
        sor(A, b, ordering="random")
    with pytest.raises(ValueError, match="sweep"):
        sor(A, b, sweep="sideways")
    Z = A.tolil()
    Z[4, 4] = 0.0
    for f in (sor, jacobi):
        with pytest.raises(ValueError, match="diagonal"):
            f(Z.tocsr(), b)
    with pytest.raises(ValueError, match="maxiter"):
        sor(A, b, maxiter=0)
