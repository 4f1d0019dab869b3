"""No method may say ``converged`` unless the stopping rule holds on the system the caller gave.

A property test over every method x {float32, float64} x scales of ``b``
from 1e-30 to 1e30 x regular, badly scaled, nearly singular, singular
consistent and singular inconsistent systems:

* ``converged=True`` implies ``||b - A x|| <= max(rtol ||b||, atol)``,
  computed here in float64 on the caller's matrix and ``b`` (exact for
  float32 data) and without under/overflow;
* the answer does not depend on the scale of ``b``: ``converged`` is the same
  for ``b`` and ``s * b``, and so is the iteration count of a converged run
  (up to rounding);
* every input (matrix arrays, ``b``, ``x0``) is bit-identical afterwards.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import krylearn
from krylearn.operators import PoissonGrid
from krylearn.solvers.base import IterativeMethod

N = 10
GRID = (N, N)
SCALES = (1e-30, 1e-12, 1.0, 1e12, 1e30)
METHODS = {
    "cg": {}, "pcg-jacobi": {}, "pcg-ic": {}, "pcg-ssor": {"omega": 1.3}, "pcg-amg": {},
    "sor": {"omega": 1.5, "maxiter": 3000}, "ssor": {"omega": 1.3, "maxiter": 3000},
    "gauss-seidel": {"maxiter": 3000}, "jacobi": {"omega": 0.8, "maxiter": 3000},
    "dcdm": {"grid_shape": GRID}, "dcdm-pure": {"grid_shape": GRID},
}
RTOL = {np.float32: 1e-5, np.float64: 1e-9}


def _problems():
    rng = np.random.default_rng(0)
    L = PoissonGrid(GRID, boundary="empty").to_sparse()
    neumann = PoissonGrid(GRID, boundary="solid").to_sparse()
    D = sp.diags(10.0 ** rng.uniform(-2, 2, N * N))
    b = rng.standard_normal(N * N)
    return {
        "regular": (L, b),
        "badly-scaled": ((D @ L @ D).tocsr(), b),
        "near-singular": ((neumann + 1e-10 * sp.identity(N * N)).tocsr(), b),
        "singular-consistent": (neumann, b - b.mean()),
        "singular-inconsistent": (neumann, b),
    }


PROBLEMS = _problems()


def true_relative(A, b, x) -> float:
    """``||b - A x|| / ||b||`` in float64, with both scaled by ``max |b|`` (no under/overflow)."""
    A64 = A.astype(np.float64)
    s = np.abs(b.astype(np.float64)).max()
    bs = b.astype(np.float64) / s
    return float(np.linalg.norm(bs - A64 @ (x.astype(np.float64) / s)) / np.linalg.norm(bs))


def _snapshot(A, b):
    return [a.copy() for a in (A.indptr, A.indices, A.data, b)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("problem", list(PROBLEMS))
@pytest.mark.parametrize("method", list(METHODS))
def test_converged_means_the_rule_holds_at_every_scale(method, problem, dtype):
    A0, b0 = PROBLEMS[problem]
    A = A0.astype(dtype)
    opts = dict(METHODS[method])
    rtol = RTOL[dtype]
    outcomes = []
    for s in SCALES:
        b = (b0 * s).astype(dtype)
        if not np.all(np.isfinite(b)) or (np.abs(b).max() < np.finfo(dtype).tiny):
            continue
        before = _snapshot(A, b)
        res = krylearn.solve(A, b, method=method, rtol=rtol, **opts)
        after = _snapshot(A, b)
        assert all(np.array_equal(p, q) for p, q in zip(before, after)), "an input was modified"
        # x comes in promote(A, b), or in the higher precision the method iterates in (DCDM: float64)
        assert np.finfo(res.x.dtype).eps <= np.finfo(dtype).eps and np.all(np.isfinite(res.x))
        rel = true_relative(A, b, res.x)
        if res.converged:
            assert rel <= rtol * (1 + 1e-6), (s, res.reason, rel)
        else:
            assert res.reason in ("maxiter", "stagnated", "unreachable", "least_squares", "indefinite",
                                  "diverged", "breakdown"), res.reason
        if res.reason == "least_squares":
            assert res.info["inconsistency"] > rtol
        outcomes.append((s, res.converged, res.iterations))
    assert len({c for _, c, _ in outcomes}) == 1, f"converged depends on the scale of b: {outcomes}"
    its = [i for _, c, i in outcomes if c]  # (where a run stagnates is rounding noise; where it converges is not)
    if its:
        assert max(its) - min(its) <= 2 + 0.05 * max(its), f"iterations depend on the scale of b: {outcomes}"


def test_inconsistent_systems_say_least_squares_with_the_removed_share():
    A, b = PROBLEMS["singular-inconsistent"]
    share = abs(b.mean()) * np.sqrt(b.size) / np.linalg.norm(b)
    for method in ("cg", "pcg-jacobi", "pcg-ic", "pcg-ssor", "pcg-amg", "dcdm"):
        opts = {"grid_shape": GRID} if method == "dcdm" else {}
        res = krylearn.solve(A, b, method=method, rtol=1e-8, **opts)
        assert res.reason == "least_squares" and not res.converged, method
        assert res.info["inconsistency"] == pytest.approx(share, rel=1e-10), method
        assert abs(res.x.mean()) < 1e-10  # minimum norm
        assert res.info["true_residual"] == pytest.approx(true_relative(A, b, res.x), rel=1e-6)


def test_near_singular_matrices_are_not_taken_for_singular():
    """A + 1e-10 I or 1e-11 I has no null space: nothing of b is removed, the rule holds on b itself."""
    for shape, shift in (((20, 20), 1e-10), ((40, 40), 1e-11)):
        A = (PoissonGrid(shape, boundary="solid").to_sparse() + shift * sp.identity(shape[0] * shape[1])).tocsr()
        b = np.random.default_rng(1).standard_normal(A.shape[0])
        res = krylearn.solve(A, b, method="cg", rtol=1e-6, maxiter=20_000)
        assert res.info["null_space"] == 0
        if res.converged:
            assert true_relative(A, b, res.x) <= 1e-6
        else:
            assert res.reason in ("stagnated", "unreachable", "maxiter")


def test_a_true_residual_within_its_rounding_error_of_the_tolerance_does_not_confirm(monkeypatch):
    """The rule must hold however ``b - A x`` is rounded: tn + eps (|| |A||x| || + ||b||) <= tol."""
    A = PoissonGrid((16, 16), boundary="empty").to_sparse()
    b = np.random.default_rng(3).standard_normal(A.shape[0])
    assert krylearn.solve(A, b, method="cg", rtol=1e-8).converged
    seen = []

    def huge(self, x, rhs, double=False):  # as if every evaluation of the residual were this uncertain
        seen.append(1)
        return np.full(rhs.k, 1e3 * float(rhs.bnorm.max()))

    monkeypatch.setattr(IterativeMethod, "error", huge)
    res = krylearn.solve(A, b, method="cg", rtol=1e-8, maxiter=400)
    assert seen and not res.converged and res.reason in ("stagnated", "unreachable", "maxiter")


def test_recurrence_residual_alone_never_declares_convergence():
    """float32 at the default rtol and badly scaled float64 at rtol 1e-15: confirmed, or a reason."""
    L = PoissonGrid((32, 32), boundary="empty").to_sparse()
    b = np.random.default_rng(2).standard_normal(L.shape[0])
    res = krylearn.solve(L.astype(np.float32), b.astype(np.float32), method="cg")
    assert res.converged and true_relative(L.astype(np.float32), b.astype(np.float32), res.x) <= 1e-6
    D = sp.diags(10.0 ** np.linspace(-4, 4, L.shape[0]))
    A = (D @ L @ D).tocsr()
    for method in ("pcg-jacobi", "pcg-ic", "pcg-ssor", "pcg-amg"):
        res = krylearn.solve(A, b, method=method, rtol=1e-15, maxiter=5000)
        if res.converged:
            assert true_relative(A, b, res.x) <= 1e-15
        else:
            assert res.reason in ("stagnated", "unreachable", "maxiter")


def test_unreachable_tolerance_gets_its_reason():
    L = PoissonGrid((24, 24), boundary="empty").to_sparse()
    b = np.random.default_rng(3).standard_normal(L.shape[0])
    res = krylearn.solve(L, b, method="cg", rtol=1e-19)
    assert not res.converged and res.reason == "unreachable"
    assert res.info["true_residual"] < 1e-13  # it still got as far as float64 allows
