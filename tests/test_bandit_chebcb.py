"""Tests of ChebCB's optimism bonus (krylearn.solvers.bandit.chebcb)."""

from types import SimpleNamespace

import numpy as np
import pytest
from krylearn.problems.sequences import shifted_laplacian
from krylearn.solvers.bandit import DEFAULT_GRID, ChebCB, grid_costs, instance_optimal


def play(tuner, cost, ctx):
    """Replay ``tuner`` on a cost table ``cost[t, arm]`` with contexts ``ctx``; return the arms played."""
    arms = []
    for t in range(cost.shape[0]):
        v = tuner.suggest(context=ctx[t])
        i = tuner.arm(v)
        tuner.update(v, SimpleNamespace(iterations=cost[t, i]), context=ctx[t])
        arms.append(i)
    return np.asarray(arms)


def test_widths_shrink_where_an_arm_is_played_and_match_the_inverse():
    tuner = ChebCB(context_range=(0.0, 1.0), degree=3, bonus=0.3)
    w0 = tuner.widths(0.1)
    assert w0.shape == (20,) and np.all(w0 > 0)
    for _ in range(30):
        tuner.update(float(DEFAULT_GRID[4]), SimpleNamespace(iterations=50), context=0.1)
    w1 = tuner.widths(0.1)
    assert w1[4] < 0.2 * w0[4]  # played arm, same context
    assert w1[5] < w0[5] and w1[15] > 0.9 * w0[15]  # a neighbour gains through smoothing, a far arm hardly
    assert tuner.widths(0.9)[4] > 2 * w1[4]  # far context stays uncertain
    phi = tuner.features(0.1)
    G = np.linalg.inv(tuner._G)[4 * 4:5 * 4, 4 * 4:5 * 4]
    assert np.isclose(w1[4], np.sqrt(phi @ G @ phi), rtol=1e-8)


def test_bonus_zero_is_plain_squarecb_and_probabilities_sum_to_one():
    rng = np.random.default_rng(0)
    a, b = ChebCB(context_range=(0, 1), bonus=0.0, seed=1), ChebCB(context_range=(0, 1), bonus=0.3, seed=1)
    for t in range(50):
        c = float(rng.uniform())
        for tu in (a, b):
            tu.update(float(DEFAULT_GRID[t % 7]), SimpleNamespace(iterations=20 + t % 7), context=c)
    pa, pb = a.probabilities(0.5), b.probabilities(0.5)
    yhat = a.predict(0.5)
    assert abs(pa.sum() - 1) < 1e-12 and abs(pb.sum() - 1) < 1e-12 and np.all(pb >= 0)
    assert np.argmax(pa) == np.argmin(yhat)
    # the bonus moves probability onto the never-played arms 7..19
    assert pb[7:].sum() > pa[7:].sum()


def test_bonus_beats_plain_squarecb_on_high_variance_sor_sequence():
    # the paper's high-variance shifted Laplacian: a sharp optimum (omega = 1.85) at the smallest shifts
    seq = shifted_laplacian(T=400, variance="high", seed=0)
    cost = grid_costs(seq, DEFAULT_GRID, progress=False)
    ctx = np.asarray(seq.contexts)
    opt = instance_optimal(cost)[1]

    def ratio(**kw):
        runs = [play(ChebCB(context_range=seq.context_range, seed=s, **kw), cost, ctx) for s in range(4)]
        return np.mean([cost[np.arange(len(seq)), arms].sum() / opt for arms in runs])

    new, old = ratio(), ratio(gamma=30.0, bonus=0.0)  # measured 1.30 and 1.41
    assert new < 1.33 and new < old - 0.05


def test_bad_bonus_names_the_argument():
    for bad in (-0.1, float("nan"), float("inf"), True, "0.3"):
        with pytest.raises(ValueError, match="bonus"):
            ChebCB(context_range=(0, 1), bonus=bad)
