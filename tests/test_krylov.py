"""CG and krylearn.solve: convergence, batching, null spaces, dtypes, bad input."""

import numpy as np
import pyamg
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as sla
import torch

import krylearn
from krylearn.operators import EMPTY, SOLID, PoissonGrid, SparseMatrix
from krylearn.solvers import cg


def poisson2d(n):
    return pyamg.gallery.poisson((n, n), format="csr")


def rel_res(A, x, b):
    return np.linalg.norm(b - A @ x) / np.linalg.norm(b)


def test_cg_matches_scipy_iterations_and_residual():
    A = poisson2d(40)
    b = np.random.default_rng(0).standard_normal(A.shape[0])
    res = cg(A, b, rtol=1e-8)
    count = [0]
    sla.cg(A, b, rtol=1e-8, atol=0.0, callback=lambda _: count.__setitem__(0, count[0] + 1))
    assert res.converged and res.reason == "converged"
    assert abs(res.iterations - count[0]) <= 1
    assert rel_res(A, res.x, b) <= 1e-8 * 1.01
    assert len(res.residuals) == res.iterations + 1
    assert res.residuals[0] == pytest.approx(1.0)
    assert res.residuals[-1] <= 1e-8


def test_stopping_rule_atol():
    A = poisson2d(20)
    b = np.ones(A.shape[0])
    res = cg(A, b, rtol=0.0, atol=1e-3)
    assert np.linalg.norm(b - A @ res.x) <= 1e-3
    assert res.residuals[-2] * np.linalg.norm(b) > 1e-3


def test_batched_equals_individual():
    A = poisson2d(16)
    B = np.random.default_rng(1).standard_normal((3, A.shape[0]))
    B[1] *= 1e-3
    res = cg(A, B, rtol=1e-9)
    assert res.x.shape == B.shape and res.converged.all()
    for i in range(3):
        single = cg(A, B[i], rtol=1e-9)
        assert res.iterations[i] == single.iterations
        assert np.allclose(res.x[i], single.x, rtol=1e-8, atol=1e-12)
        assert rel_res(A, res.x[i], B[i]) <= 1e-9 * 1.01


def test_torch_in_torch_out_and_fp32():
    A = poisson2d(16)
    b = torch.ones(A.shape[0], dtype=torch.float32)
    res = krylearn.solve(SparseMatrix(A, dtype=torch.float32), b, rtol=1e-5)
    assert isinstance(res.x, torch.Tensor) and res.x.dtype == torch.float32
    assert res.converged
    assert rel_res(A, res.x.double().numpy(), b.double().numpy()) < 2e-5


def test_x0_warm_start_and_callback():
    A = poisson2d(20)
    b = np.random.default_rng(2).standard_normal(A.shape[0])
    exact = sla.spsolve(A.tocsc(), b)
    seen = []
    res = cg(A, b, x0=exact + 1e-6, rtol=1e-6, callback=lambda x: seen.append(x.clone()))
    assert res.converged and res.iterations <= 3
    assert len(seen) == res.iterations


def test_zero_rhs():
    A = poisson2d(8)
    res = krylearn.solve(A, np.zeros(A.shape[0]))
    assert res.converged and res.iterations == 0 and res.reason == "zero_rhs"
    assert not res.x.any()


def test_indefinite_reported_not_wrong_answer():
    A = sp.diags([1.0, 2.0, -3.0, 4.0]).tocsr()
    res = cg(A, np.ones(4))
    assert res.reason == "indefinite" and not res.converged
    assert np.isfinite(res.x).all()


def test_maxiter_reason():
    A = poisson2d(30)
    res = cg(A, np.ones(A.shape[0]), maxiter=5)
    assert res.reason == "maxiter" and not res.converged and res.iterations == 5


def test_singular_closed_box_projects_nullspace():
    """Consistent b: converged, minimum-norm; inconsistent b: the least-squares x, said to be one."""
    G = PoissonGrid((24, 24), boundary="solid")
    b = np.random.default_rng(3).standard_normal(G.shape[0])
    A = G.to_sparse()
    bp = b - b.mean()
    ok = krylearn.solve(G, bp, method="cg", rtol=1e-10)
    assert ok.converged and ok.reason == "converged" and ok.info["null_space"] == 1
    assert np.linalg.norm(bp - A @ ok.x) <= 1e-10 * np.linalg.norm(bp)
    assert abs(ok.x.mean()) < 1e-12  # minimum-norm solution
    res = krylearn.solve(G, b, method="cg", rtol=1e-10)
    assert not res.converged and res.reason == "least_squares" and res.info["null_space"] == 1
    assert res.info["inconsistency"] == pytest.approx(abs(b.mean()) * np.sqrt(b.size) / np.linalg.norm(b))
    assert np.linalg.norm(bp - A @ res.x) <= 1e-9 * np.linalg.norm(b)  # solves the consistent part
    assert abs(res.x.mean()) < 1e-12


def test_enclosed_fluid_two_components():
    flags = np.zeros((20, 20), dtype=np.uint8)
    flags[10, :] = SOLID  # a wall splits the box in two closed regions
    flags[0, :] = EMPTY  # ...and the top one touches air: only the bottom one is singular
    G = PoissonGrid((20, 20), flags=flags, boundary="solid")
    b = np.random.default_rng(4).standard_normal(400) * (flags.ravel() == 0)
    bottom = (np.arange(400) >= 220)
    b[bottom] -= b[bottom].mean()  # consistent on the singular component
    res = krylearn.solve(G, b, method="cg", rtol=1e-10)
    assert res.converged and res.info["null_space"] == 1
    assert abs(res.x[bottom].sum()) < 1e-9


def test_full_grid_convention_zero_rows():
    flags = np.zeros((16, 16), dtype=np.uint8)
    flags[5:9, 5:9] = SOLID
    G = PoissonGrid((16, 16), flags=flags, boundary="empty")
    A = G.to_sparse()
    b = np.random.default_rng(5).standard_normal(256) * (flags.ravel() == 0)
    for method in ("cg", "pcg-jacobi", "pcg-ic", "pcg-amg", "pcg-ssor"):
        res = krylearn.solve(A, b, method=method, rtol=1e-8)
        assert res.converged, method
        assert not res.x[flags.ravel() == SOLID].any(), method
        assert rel_res(A, res.x, b) <= 1e-8 * 1.01, method
    bad = b.copy()
    bad[flags.ravel() == SOLID] = 1.0
    with pytest.raises(ValueError, match="identically zero"):
        krylearn.solve(A, bad)


@pytest.mark.parametrize("method", ["pcg-jacobi", "pcg-ic", "pcg-ssor", "pcg-amg"])
def test_pcg_beats_cg(method):
    A = poisson2d(48)
    b = np.random.default_rng(6).standard_normal(A.shape[0])
    plain = krylearn.solve(A, b, method="cg", rtol=1e-8)
    res = krylearn.solve(A, b, method=method, rtol=1e-8)
    assert res.converged and res.method == method
    assert rel_res(A, res.x, b) <= 1e-8 * 1.01
    if method != "pcg-jacobi":  # constant diagonal: Jacobi only rescales
        assert res.iterations < plain.iterations
    setup = res.setup_seconds  # includes the preconditioner build (a float, never None)
    assert isinstance(setup, float) and np.isfinite(setup)


def test_options_pass_through():
    A = poisson2d(24)
    b = np.ones(A.shape[0])
    r1 = krylearn.solve(A, b, method="pcg-ssor", omega=1.0, rtol=1e-8)
    r2 = krylearn.solve(A, b, method="pcg-ssor", omega=1.7, rtol=1e-8)
    assert r1.converged and r2.converged and r1.iterations != r2.iterations
    s = krylearn.solve(A, b, method="sor", omega=1.8, rtol=1e-6)
    g = krylearn.solve(A, b, method="gauss-seidel", rtol=1e-6)
    assert s.converged and g.converged and s.iterations < g.iterations / 3


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(rtol=-1.0), "rtol"),
        (dict(atol=float("nan")), "atol"),
        (dict(maxiter=0), "maxiter"),
        (dict(method="nope"), "method must be one of"),
    ],
)
def test_bad_arguments(kwargs, match):
    A = poisson2d(4)
    with pytest.raises(ValueError, match=match):
        krylearn.solve(A, np.ones(16), **kwargs)


def test_bad_arrays():
    A = poisson2d(4)
    with pytest.raises(ValueError, match="square"):
        krylearn.solve(sp.random(4, 5, density=0.5, format="csr"), np.ones(4))
    with pytest.raises(ValueError, match="b must have shape"):
        krylearn.solve(A, np.ones(15))
    b = np.ones(16)
    b[3] = np.nan
    with pytest.raises(ValueError, match="b contains NaN"):
        krylearn.solve(A, b)
    x0 = np.ones(16)
    x0[0] = np.inf
    with pytest.raises(ValueError, match="x0 contains NaN"):
        krylearn.solve(A, np.ones(16), x0=x0)
    with pytest.raises(ValueError, match="x0 must have"):
        krylearn.solve(A, np.ones(16), x0=np.ones(3))
    Abad = A.copy().astype(float)
    Abad.data[0] = np.inf
    with pytest.raises(ValueError, match="A contains NaN"):
        krylearn.solve(Abad, np.ones(16))
    with pytest.raises(TypeError, match="b must be"):
        krylearn.solve(A, "ones")


def test_dense_matrix_and_tensor_inputs():
    A = poisson2d(6).toarray()
    b = np.ones(36)
    r1 = krylearn.solve(A, b, rtol=1e-10)
    r2 = krylearn.solve(torch.from_numpy(A), torch.from_numpy(b), rtol=1e-10)
    assert np.allclose(r1.x, r2.x.numpy())
    assert np.allclose(A @ r1.x, b, atol=1e-8)
