"""Tests of the omega tuners (krylearn.solvers.bandit): bandits, Young, baselines, tune and oracles."""

from types import SimpleNamespace

import numpy as np
import pyamg
import pytest
import scipy.sparse as sp
from krylearn.datasets.systems import LinearSystem
from krylearn.solvers.bandit import (
    DEFAULT_GRID,
    ChebCB,
    Fixed,
    TsallisINF,
    TuneResult,
    Young,
    YoungSpectral,
    best_fixed,
    grid_costs,
    instance_optimal,
    tune,
)
from krylearn.solvers.bandit._solve import make_path
from krylearn.solvers.bandit.tsallis import tsallis_normalizer
from krylearn.solvers.bandit.young import (
    convergence_factor,
    critical_radius,
    jacobi_radius,
    optimal_omega,
    sor_factor,
)

import krylearn

A0 = pyamg.gallery.poisson((10, 10), format="csr")
MU0 = np.cos(np.pi / 11)  # Jacobi radius of the 10x10 Laplacian


def shifted(cs, seed=0, b=None):
    """Instances A0 + c I with Gaussian right-hand sides and the shift as context."""
    rng = np.random.default_rng(seed)
    return [LinearSystem(A=(A0 + c * sp.eye(100)).tocsr(), b=rng.standard_normal(100) if b is None else b,
                         attrs={"context": float(c)}) for c in cs]


def replay(tuner, cost, contexts=None):
    """Run a tuner on a cost table ``cost[t, arm]`` (bandit feedback only); returns the arms played."""
    arms = []
    for t in range(cost.shape[0]):
        c = None if contexts is None else contexts[t]
        v = tuner.suggest(context=c)
        i = tuner.arm(v)
        tuner.update(v, SimpleNamespace(iterations=cost[t, i]), context=c)
        arms.append(i)
    return np.asarray(arms)


# ------------------------------------------------------------- Tsallis-INF
def test_tsallis_regret_shrinks_and_concentrates():
    K, best = 20, 12
    rng = np.random.default_rng(0)
    T = 2000
    cost = 20 + 4.0 * np.abs(np.arange(K) - best)[None, :] + rng.integers(0, 6, size=(T, K))
    mean = cost.mean(axis=0)
    avg200, avg2000, share = [], [], []
    for seed in range(3):
        arms = replay(TsallisINF(seed=seed), cost)
        regret = np.cumsum(mean[arms] - mean[best])
        avg200.append(regret[199] / 200)
        avg2000.append(regret[-1] / T)
        share.append(np.mean(arms[-500:] == best))
    assert np.mean(avg2000) < 0.5 * np.mean(avg200)
    assert np.mean(share) > 0.5


def test_tsallis_plain_estimator_also_learns():
    cost = np.tile(10 + 3.0 * np.abs(np.arange(20) - 5), (1500, 1))
    arms = replay(TsallisINF(seed=1, baseline=0.0), cost)
    assert np.mean(arms[-300:] == 5) > 0.4


def test_newton_normalizer_sums_to_one_after_many_large_losses():
    tuner = TsallisINF(seed=3)
    rng = np.random.default_rng(3)
    worst = 0.0
    for _ in range(5000):
        v = tuner.suggest()
        i = tuner.arm(v)
        cost = 10.0 ** rng.uniform(0, 4) * (1 + i)  # heavy-tailed, up to ~2e5 iterations
        tuner.update(v, SimpleNamespace(iterations=cost))
        worst = max(worst, tuner.normalizer_error)
    p = tuner.probabilities()
    assert worst < 1e-10 and abs(p.sum() - 1) < 1e-12 and np.all(p > 0)
    assert tuner.newton_steps < 30
    # the authors' failure mode: eta * min L far beyond sqrt(8 K); restart at -1 would overshoot the pole
    L = np.array([5e4, 5e4 + 3.0, 6e4, 1e6])
    x, q, _ = tsallis_normalizer(L, 2 / np.sqrt(5000))
    assert x < L.min() and abs(q.sum() - 1) < 1e-10


# ------------------------------------------------------------------ ChebCB
def test_chebcb_beats_best_fixed_arm_when_best_arm_depends_on_context():
    rng = np.random.default_rng(0)
    T, grid = 1500, DEFAULT_GRID
    ctx = rng.uniform(0, 1, T)
    best = 1.05 + 0.85 * ctx  # best omega moves across the grid with the context
    cost = np.round(30 * (1 + 8 * (grid[None, :] - best[:, None]) ** 2) + rng.integers(0, 3, (T, grid.size)))
    tuner = ChebCB(grid, context_range=(0, 1), seed=0)
    arms = replay(tuner, cost, ctx)
    total = cost[np.arange(T), arms].sum()
    assert total < 0.9 * best_fixed(cost)[1]
    assert total < 1.25 * instance_optimal(cost)[1]


def test_chebcb_clips_context_and_requires_one():
    tuner = ChebCB(context_range=(0.0, 1.0))
    assert np.array_equal(tuner.features(5.0), tuner.features(1.0))
    assert np.array_equal(tuner.features(-3.0), tuner.features(0.0))
    v = tuner.suggest(context=7.0)
    tuner.update(v, SimpleNamespace(iterations=10), context=7.0)
    assert abs(tuner.probabilities(2.0).sum() - 1) < 1e-12
    with pytest.raises(ValueError, match="context"):
        tuner.suggest(context=None)
    with pytest.raises(ValueError, match="context"):
        tuner.suggest(context=float("nan"))
    with pytest.raises(ValueError, match="context_range"):
        ChebCB(context_range=(1.0, 1.0))


# ------------------------------------------------------------------- Young
def test_young_relation_round_trip():
    for mu in (0.5, 0.9, MU0, 0.995):
        w_opt = optimal_omega(mu)
        assert np.isclose(sor_factor(w_opt, mu), w_opt - 1)
        assert np.isclose(critical_radius(w_opt), mu)
        for w in (1.0, 0.5 * (1 + w_opt), w_opt - 1e-3):
            assert np.isclose(jacobi_radius(sor_factor(w, mu), w), mu, rtol=1e-9, atol=0)
    # Gauss-Seidel on the Laplacian converges like mu^2, read off the residual history
    r = krylearn.solve(A0, np.ones(100), method="sor", omega=1.0, rtol=1e-10)
    assert abs(convergence_factor(r.residuals) - MU0**2) < 2e-3


def test_young_near_instance_optimal_on_sor_sequence():
    cs = np.random.default_rng(1).uniform(-0.15, 0.45, 40)
    seq = shifted(cs, seed=1)
    tuner = Young()
    res = tune(seq, tuner, progress=False)
    costs = grid_costs(seq, DEFAULT_GRID, progress=False)
    assert not tuner.fallen_back
    assert res.iterations[10:].sum() <= 1.15 * costs[10:].min(axis=1).sum()
    assert res.total < 0.5 * costs[:, 0].sum()  # far below Gauss-Seidel
    mu_true = MU0 * 4 / (4 + cs[-1])
    assert abs(tuner.predicted_mu(cs[-1]) - mu_true) < 5e-3


def test_young_tracks_a_slowly_varying_sequence_without_context():
    cs = 0.3 - 0.01 * np.arange(40)  # mu grows along the sequence; no context given
    seq = [LinearSystem(A=s.A, b=s.b) for s in shifted(cs)]
    tuner = Young()
    res = tune(seq, tuner, progress=False)
    costs = grid_costs(seq, DEFAULT_GRID, progress=False)
    assert not tuner.fallen_back and res.contexts is None
    assert res.iterations[10:].sum() <= 1.15 * costs[10:].min(axis=1).sum()


def test_young_falls_back_when_sor_diverges():
    A = sp.kron(sp.eye(50), sp.csr_matrix([[1.0, 2.0], [2.0, 1.0]])).tocsr()  # symmetric indefinite
    rng = np.random.default_rng(0)
    seq = [LinearSystem(A=A, b=rng.standard_normal(100)) for _ in range(4)]
    tuner = Young(seed=0)
    res = tune(seq, tuner, progress=False, maxiter=200)
    assert tuner.fallen_back and "diverged" in tuner.reason
    assert res.values.shape == (4,)


def test_young_rejects_non_sor_results_and_solvers():
    seq = shifted([0.0, 0.1])
    with pytest.raises(ValueError, match="solver"):
        tune(seq, Young(), solver="pcg-ssor", progress=False)
    r = krylearn.solve(seq[0].A, seq[0].b[0], method="pcg-ssor", omega=1.2, rtol=1e-8)
    with pytest.raises(ValueError, match="method"):
        Young().update(1.2, r)


# --------------------------------------------------------------- baselines
def test_young_spectral_matches_young_formula_and_counts_matvecs():
    seq = shifted([0.0, 0.2])
    tuner = YoungSpectral(iters=30)
    w = tuner.suggest(instance=seq[0])
    assert abs(w - optimal_omega(MU0)) < 2e-3
    assert tuner.extra_matvecs == 30
    res = tune(seq, YoungSpectral(iters=20), progress=False)
    assert res.extra_matvecs == 40
    assert res.values[1] < res.values[0]  # larger shift -> smaller mu -> smaller omega
    with pytest.raises(ValueError, match="instance"):
        YoungSpectral().suggest()


def test_fixed():
    res = tune(shifted([0.0, 0.1, 0.2]), Fixed(1.0), progress=False)
    assert np.all(res.values == 1.0) and res.tuner == "fixed(1)"
    with pytest.raises(ValueError, match="value"):
        Fixed(float("inf"))


# ---------------------------------------------------------- tune / oracles
def test_fast_path_matches_krylearn_solve():
    rng = np.random.default_rng(2)
    for method in ("sor", "ssor", "pcg-ssor"):
        for trial in range(4):
            A = (A0 + rng.uniform(-0.1, 0.4) * sp.eye(100)).tocsr()
            b = rng.standard_normal(100)
            x0 = rng.standard_normal(100) if trial % 2 else None
            w = float(rng.uniform(0.8, 1.9))
            fast = make_path(A, b, method, "omega", 1e-8, 0.0, 10_000, {})(b, x0, w)
            ref = krylearn.solve(A, b, method=method, x0=x0, omega=w, rtol=1e-8, maxiter=10_000)
            assert fast.iterations == ref.iterations and fast.reason == ref.reason and fast.method == method
            np.testing.assert_allclose(fast.x, ref.x, rtol=0, atol=1e-12)
            np.testing.assert_allclose(fast.residuals, ref.residuals, rtol=1e-10)


def test_tune_shapes_and_oracles():
    seq = shifted(np.linspace(-0.1, 0.3, 12), seed=4)
    res = tune(seq, TsallisINF(seed=0), progress=False)
    assert isinstance(res, TuneResult) and len(res) == 12
    for a in (res.values, res.iterations, res.seconds, res.contexts, res.converged):
        assert a.shape == (12,)
    assert res.iterations.dtype == np.int64 and res.converged.all() and res.extra_matvecs == 0
    np.testing.assert_allclose(res.contexts, np.linspace(-0.1, 0.3, 12))
    assert res.total == res.cumulative()[-1] and res.tuner == "tsallis-inf" and res.solver == "sor"
    costs = grid_costs(seq, DEFAULT_GRID, progress=False)
    assert costs.shape == (12, 20) and costs.dtype == np.int64
    i, total = best_fixed(costs)
    _, opt = instance_optimal(costs)
    assert total == costs[:, i].sum() and opt == costs.min(axis=1).sum() and opt <= total
    # each grid cost is the iteration count of the same solve done directly
    direct = krylearn.solve(seq[3].A, seq[3].b[0], method="sor", omega=float(DEFAULT_GRID[7]), rtol=1e-8)
    assert costs[3, 7] == direct.iterations
    # no context anywhere -> contexts is None; other solvers and callables work through the same path
    plain = [LinearSystem(A=s.A, b=s.b) for s in seq[:3]]
    assert tune(plain, Fixed(1.3), progress=False).contexts is None
    r2 = tune(seq[:3], ChebCB(context_range=(-0.1, 0.3)), solver="pcg-ssor", progress=False)
    assert r2.converged.all() and r2.solver == "pcg-ssor"

    def my_sor(A, b, x0, omega, rtol, atol, maxiter):
        return krylearn.solve(A, b, method="sor", x0=x0, omega=omega, rtol=rtol, atol=atol, maxiter=maxiter)

    r3 = tune(seq[:3], Fixed(1.3), solver=my_sor, progress=False)
    assert np.array_equal(r3.iterations, tune(seq[:3], Fixed(1.3), progress=False).iterations)


def test_warm_start_reduces_iterations_on_slowly_varying_sequence():
    b = np.random.default_rng(5).standard_normal(100)
    seq = shifted(0.1 + 2e-4 * np.arange(15), b=b)
    cold = tune(seq, Fixed(1.5), progress=False)
    warm = tune(seq, Fixed(1.5), warm_start=True, progress=False)
    assert warm.iterations[0] == cold.iterations[0]
    assert warm.iterations[1:].sum() < 0.8 * cold.iterations[1:].sum()
    assert warm.converged.all()
    # grid_costs warm-starts from the stored reference solutions
    with_x = [LinearSystem(A=s.A, b=s.b, x=sp.linalg.spsolve(s.A.tocsc(), s.b[0]), attrs=s.attrs) for s in seq[:4]]
    c_warm = grid_costs(with_x, [1.5], warm_start=True, progress=False)
    c_cold = grid_costs(with_x, [1.5], progress=False)
    assert c_warm[0, 0] == c_cold[0, 0] and np.all(c_warm[1:, 0] < c_cold[1:, 0])


def test_bad_input_names_the_argument():
    seq = shifted([0.0])
    with pytest.raises(ValueError, match="grid"):
        TsallisINF(grid=[])
    with pytest.raises(ValueError, match="grid"):
        ChebCB(grid=[], context_range=(0, 1))
    with pytest.raises(ValueError, match="grid"):
        tune(seq, TsallisINF(grid=[1.0, 2.5]), progress=False)
    with pytest.raises(ValueError, match="grid"):
        grid_costs(seq, [0.0, 1.0], progress=False)
    with pytest.raises(ValueError, match="grid"):
        Young(grid=[1.0, 2.0])
    with pytest.raises(ValueError, match="solver"):
        tune(seq, Fixed(1.2), solver="no-such-method", progress=False)
    with pytest.raises(ValueError, match="solver"):
        grid_costs(seq, [1.2], solver="cg", progress=False)
    with pytest.raises(ValueError, match="parameter"):
        tune(seq, Fixed(1.2), parameter="alpha", progress=False)
    with pytest.raises(ValueError, match="rtol"):
        tune(seq, Fixed(1.2), rtol=-1.0, progress=False)
    with pytest.raises(ValueError, match="lr"):
        TsallisINF(lr=0)
    with pytest.raises(ValueError, match="costs"):
        best_fixed(np.zeros((0, 3)))
    with pytest.raises(TypeError, match="tuner"):
        tune(seq, "tsallis", progress=False)
    with pytest.raises(TypeError, match="LinearSystem"):
        tune([(A0, np.ones(100))], Fixed(1.2), progress=False)
