"""The compiled SSOR-PCG loop (pcg-ssor's fast path, used by the bandit drivers) keeps the driver's contract:
it equals ``cg`` with ``ssor_preconditioner`` run under the shared driver."""

import numpy as np
import pytest
import scipy.sparse as sp
from krylearn.problems.sequences import heat2d
from krylearn.datasets.systems import LinearSystem
from krylearn.solvers.bandit import Fixed, grid_costs, tune
from krylearn.solvers.bandit._solve import make_path
from krylearn.solvers import cg
from krylearn.solvers.preconditioners import ssor_preconditioner


def poisson2d(m):
    T = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(m, m))
    return sp.csr_matrix(sp.kron(sp.identity(m), T) + sp.kron(T, sp.identity(m)))


def reference(A, b, x0, omega, rtol=1e-8, atol=0.0, maxiter=10_000):
    return cg(A, b, x0, M=ssor_preconditioner(A, omega), rtol=rtol, atol=atol, maxiter=maxiter)


def fast(A, b, x0, omega, rtol=1e-8, atol=0.0, maxiter=10_000):
    path = make_path(A, b, "pcg-ssor", "omega", rtol, atol, maxiter, {})
    res = path(b, x0, omega)
    assert res.info["fast_path"] and res.method == "pcg-ssor"
    return res


def assert_same(r1, r2, exact_its=False, late_rtol=1e-9):
    """Same reason and iterations (+-1); histories equal to rounding (``late_rtol`` and an absolute
    ``1e-6 ||r_0||`` after 12 steps when ``late_rtol`` is loosened).

    CG amplifies rounding differences (here: BLAS dot products vs sequential
    sums) as it loses orthogonality, strongly so for ill-conditioned
    ``M^-1 A`` (omega near 2), hence the looser tolerance there.
    """
    assert r1.reason == r2.reason
    assert r1.converged == r2.converged
    if exact_its:
        assert r1.iterations == r2.iterations
    assert abs(r1.iterations - r2.iterations) <= 1
    k = min(r1.iterations, r2.iterations) + 1
    assert len(r1.residuals) == r1.iterations + 1
    # relative residuals: rounding-level agreement (absolute 1e-13 covers residuals at rounding noise)
    atol = 1e-13 * max(1.0, r2.residuals[0])
    m = min(k, 13)
    np.testing.assert_allclose(r1.residuals[:m], r2.residuals[:m], rtol=1e-9, atol=atol)
    late_atol = atol if late_rtol <= 1e-9 else 1e-6 * r2.residuals[0]
    np.testing.assert_allclose(r1.residuals[:k], r2.residuals[:k], rtol=late_rtol, atol=late_atol)
    np.testing.assert_allclose(r1.x, np.asarray(r2.x), rtol=0, atol=1e-9 * max(1.0, np.abs(r2.x).max()))


@pytest.fixture(scope="module")
def heat():
    return heat2d(12, 8)


@pytest.mark.parametrize("omega", [1.0, 1.35, 1.8])
def test_heat2d_warm_and_cold(heat, omega):
    for t in range(1, len(heat)):
        A, b = heat[t].A, heat[t].b[0]
        for x0 in (heat[t - 1].x[0], None):
            assert_same(fast(A, b, x0, omega), reference(A, b, x0, omega))


@pytest.mark.parametrize("omega", [0.7, 1.0, 1.5, 1.95])
def test_poisson_cold_and_warm(omega):
    A = poisson2d(20)
    rng = np.random.default_rng(0)
    b = rng.standard_normal(A.shape[0])
    r1, r2 = fast(A, b, None, omega), reference(A, b, None, omega)
    assert r1.iterations > 10 and r1.reason == "converged"
    assert np.linalg.norm(b - A @ r1.x) <= 1e-8 * np.linalg.norm(b)
    late = 1e-9 if omega <= 1.5 else 1e-3
    assert_same(r1, r2, late_rtol=late)
    x0 = rng.standard_normal(A.shape[0])
    r1, r2 = fast(A, b, x0, omega, rtol=1e-10), reference(A, b, x0, omega, rtol=1e-10)
    assert_same(r1, r2, late_rtol=late)
    assert r1.info["matvecs"] == r1.iterations + 2  # + the initial residual of x0, + the confirmation


def test_atol_and_maxiter():
    A = poisson2d(16)
    b = np.random.default_rng(1).standard_normal(A.shape[0])
    r1, r2 = fast(A, b, None, 1.3, maxiter=3), reference(A, b, None, 1.3, maxiter=3)
    assert r1.reason == "maxiter" and r1.iterations == 3 and not r1.converged and r1.residuals.shape == (4,)
    assert_same(r1, r2, exact_its=True)
    r1, r2 = fast(A, b, None, 1.3, rtol=0.0, atol=1e-6), reference(A, b, None, 1.3, rtol=0.0, atol=1e-6)
    assert r1.reason == "converged" and np.linalg.norm(b - A @ r1.x) <= 1e-6
    assert_same(r1, r2)


def test_zero_rhs_and_converged_start():
    A = poisson2d(8)
    b = np.zeros(A.shape[0])
    r1, r2 = fast(A, b, None, 1.2), reference(A, b, None, 1.2)
    assert r1.reason == "zero_rhs" and r1.converged and r1.iterations == 0 and not r1.x.any()
    assert_same(r1, r2, exact_its=True)
    xs = np.random.default_rng(2).standard_normal(A.shape[0])
    b = A @ xs
    r1, r2 = fast(A, b, xs, 1.2), reference(A, b, xs, 1.2)
    assert r1.reason == "converged" and r1.iterations == 0
    assert_same(r1, r2, exact_its=True)


def test_empty_rows_indefinite_and_fallbacks():
    A = poisson2d(6).tolil()
    A[5, :] = 0
    A[:, 5] = 0
    A = sp.csr_matrix(A)
    b = np.random.default_rng(3).standard_normal(A.shape[0])
    b[5] = 0.0
    assert_same(fast(A, b, None, 1.4), reference(A, b, None, 1.4))
    # negative definite: rejected up front (SSOR-PCG needs a positive diagonal), by both paths
    N = -poisson2d(6)
    for run in (fast, reference):
        with pytest.raises(ValueError, match="non-positive diagonal"):
            run(N, b, None, 1.4)
    # symmetric indefinite with a positive diagonal: stops with reason "indefinite", as cg does
    S = sp.csr_matrix(np.array([[1.0, 3.0, 0.0], [3.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))
    bs = np.array([1.0, -1.0, 0.5])
    r1, r2 = fast(S, bs, None, 1.0), reference(S, bs, None, 1.0)
    assert r1.reason == r2.reason == "indefinite"
    assert_same(r1, r2, exact_its=True)
    # pure Neumann (singular) -> cg's null-space handling
    L = poisson2d(6).tolil()
    L.setdiag(0)
    L.setdiag(-np.asarray(L.sum(axis=1)).ravel())
    L = sp.csr_matrix(L)
    bn = b - b.mean()
    path = make_path(L, bn, "pcg-ssor", "omega", 1e-8, 0.0, 1000, {})
    res = path(bn, None, 1.4)
    assert res.info["null_space"] == 1 and "fast_path" not in res.info
    # a callback -> the driver itself
    path = make_path(A, b, "pcg-ssor", "omega", 1e-8, 0.0, 1000, {"callback": lambda x: None})
    assert "fast_path" not in path(b, None, 1.4).info
    with pytest.raises(ValueError, match="not symmetric"):
        make_path(sp.csr_matrix(sp.triu(poisson2d(4))), b[:16], "pcg-ssor", "omega", 1e-8, 0.0, 100, {})(
            b[:16], None, 1.4)
    with pytest.raises(ValueError, match="omega"):
        fast(poisson2d(4), b[:16], None, 2.0)


def test_tune_and_grid_costs_use_it(heat):
    seq = [heat[t] for t in range(len(heat))]
    res = tune(seq, Fixed(1.3), solver="pcg-ssor", warm_start=True, progress=False)
    prev = None
    for t, inst in enumerate(seq):
        ref = reference(inst.A, inst.b[0], prev, 1.3)
        assert abs(int(res.iterations[t]) - ref.iterations) <= 1
        prev = np.asarray(ref.x)
    grid = np.array([1.0, 1.5, 1.9])
    costs = grid_costs(seq, grid, solver="pcg-ssor", warm_start=True, progress=False)
    for t, inst in enumerate(seq):
        x0 = None if t == 0 else seq[t - 1].x[0]
        its = [reference(inst.A, inst.b[0], x0, w).iterations for w in grid]
        assert np.all(np.abs(costs[t] - its) <= 1)
    # a LinearSystem built by hand goes the same way
    A = poisson2d(10)
    b = np.ones(A.shape[0])
    one = LinearSystem(A=A, b=b[None])
    r = tune([one], Fixed(1.5), solver="pcg-ssor", progress=False)
    assert r.converged[0] and r.iterations[0] == reference(A, b, None, 1.5).iterations


def test_non_spd_matrix_for_ssor_pcg_is_a_clear_error():
    """A non-positive diagonal or a nonsymmetric matrix cannot be SPD: tune says so, naming A."""
    from krylearn.solvers.bandit import Fixed, tune

    indefinite = sp.diags([1.0, -2.0, 3.0, 1.0]).tocsr()
    with pytest.raises(ValueError, match="non-positive diagonal"):
        tune([LinearSystem(A=indefinite, b=np.ones(4))], Fixed(1.2), solver="pcg-ssor", progress=False)
    nonsym = sp.csr_matrix(np.array([[2.0, 1.0], [0.0, 2.0]]))
    with pytest.raises(ValueError, match="not symmetric"):
        tune([LinearSystem(A=nonsym, b=np.ones(2))], Fixed(1.2), solver="pcg-ssor", progress=False)
