"""scipy's iterative-solver test suite, adapted to ``krylearn.solve``.

scipy holds its Krylov solvers to ``scipy/sparse/linalg/_isolve/tests/
test_iterative.py``; this module holds ``cg``, ``pcg-jacobi`` and ``pcg-amg``
to the CG-relevant part of it, on the same systems (``tests/_scipy_cases.py``)
and with the inputs people paste from scipy code: scipy sparse matrices and
arrays, ``LinearOperator``, dense/sparse/``LinearOperator``/pyamg
preconditioners, ``b`` of shape ``(n, 1)``, infinite tolerances,
``x0="Mb"`` and scipy-style callbacks.

One rule runs through every test: whenever krylearn says ``converged``, the
true residual of the system the user gave meets scipy's stopping rule,
``||b - A x|| <= max(rtol ||b||, atol)`` (computed here in float64/complex128
on the user's matrix).  On matrices where scipy expects CG to fail
(indefinite, nonsymmetric, non-Hermitian) krylearn must raise a ``ValueError``
or return ``converged=False`` with a reason; a correct answer is also fine.
"""

from __future__ import annotations

import itertools

import numpy as np
import pyamg
import pytest
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import LinearOperator, aslinearoperator

import krylearn
from krylearn.operators import Dense

from _scipy_cases import (
    as_numpy,
    assert_converged,
    assert_meets_rule,
    assert_untouched,
    atol_problem,
    names_argument,
    non_spd_cases,
    poisson1d,
    poisson2d,
    reference_preconditioner,
    scaled_poisson,
    scipy_iterations,
    spd_cases,
    zero_rhs_problem,
)

METHODS = ("cg", "pcg-jacobi", "pcg-amg")
PRECONDITIONED = ("pcg-jacobi", "pcg-amg")
STOP_REASONS = {"indefinite", "maxiter", "breakdown", "nonfinite", "stagnated", "diverged"}

def params(items, argnames=1):
    """``pytest.param`` per ``(id, values)``."""
    return [pytest.param(*(values if argnames > 1 else (values,)), id=pid) for pid, values in items]


def case_method_params(cases, methods=METHODS):
    """(case, method) params, ids ``"<case>-<method>"``."""
    return params([(f"{c.name}-{m}", (c, m)) for c, m in itertools.product(cases, methods)], argnames=2)


# --- scipy's test_convergence: SPD cases converge, the others must not claim success ---


@pytest.mark.parametrize("case, method", case_method_params(spd_cases()))
def test_converges_on_spd(case, method):
    A0, b0 = case.A.copy(), case.b.copy()
    x0 = 0 * case.b
    calls = []
    res = krylearn.solve(case.A, case.b, method=method, x0=x0, rtol=case.rtol,
                         callback=lambda xk: calls.append(1))
    assert_converged(res)
    assert res.reason == "converged"
    assert_meets_rule(case.A, case.b, res.x, case.rtol)
    assert isinstance(res.x, np.ndarray) and res.x.shape == case.b.shape
    assert res.x.dtype == np.result_type(case.A.dtype, case.b.dtype)
    assert len(calls) == res.iterations
    assert np.array_equal(x0, 0 * case.b)  # scipy: x0 is not overwritten
    assert_untouched(A0, case.A)
    assert np.array_equal(b0, case.b)


@pytest.mark.parametrize("case, method", case_method_params([c for c in spd_cases() if c.single]))
def test_converges_in_single_precision(case, method):
    """The ``-F`` cases with ``b`` in the matrix's precision too (scipy promotes b to float64)."""
    b = case.b.astype(case.A.dtype)
    res = krylearn.solve(case.A, b, method=method, rtol=case.rtol)
    assert_converged(res)
    assert res.x.dtype == case.A.dtype
    assert_meets_rule(case.A, b, res.x, case.rtol)


@pytest.mark.parametrize("case, method", case_method_params(non_spd_cases()))
def test_no_false_success_off_spd(case, method):
    """scipy skips CG here; krylearn must refuse, stop with a reason, or be right."""
    try:
        res = krylearn.solve(case.A, case.b, method=method, rtol=case.rtol)
    except ValueError as err:
        assert names_argument(err, "A")
        return
    if res.converged:
        assert_meets_rule(case.A, case.b, res.x, case.rtol)
    else:
        assert res.reason in STOP_REASONS
        assert np.all(np.isfinite(res.x))


@pytest.mark.parametrize("case, method", case_method_params(spd_cases()))
def test_iterations_match_scipy(case, method):
    """Same iterations as scipy's cg with the same preconditioner (one either way for rounding)."""
    M = reference_preconditioner(case.A, method)
    expected = scipy_iterations(case.A, case.b, case.rtol, M=M)
    res = krylearn.solve(case.A, case.b, method=method, rtol=case.rtol)
    assert abs(res.iterations - expected) <= 1, (res.iterations, expected)


# --- scipy's test_maxiter and callbacks ---


@pytest.mark.parametrize("case, method", case_method_params(spd_cases()))
def test_maxiter_one(case, method):
    calls = []
    res = krylearn.solve(case.A, case.b, method=method, x0=0 * case.b, rtol=1e-12, maxiter=1,
                         callback=lambda xk: calls.append(1))
    assert len(calls) == 1 and res.iterations == 1 and len(res.residuals) == 2
    if res.converged:  # an exact preconditioner (single-level AMG) may finish in one step
        assert_meets_rule(case.A, case.b, res.x, 1e-12)
    else:
        assert res.reason == "maxiter"


@pytest.mark.parametrize("method", params([(m, m) for m in METHODS]))
def test_callback_gets_numpy_for_numpy_input(method):
    A = poisson1d().toarray()
    b = np.arange(A.shape[0], dtype=np.float64)
    seen = []
    res = krylearn.solve(A, b, method=method, rtol=1e-8, callback=lambda xk: seen.append(xk))
    assert len(seen) == res.iterations
    assert all(type(xk) is np.ndarray and xk.shape == b.shape for xk in seen), {type(x) for x in seen}
    assert np.linalg.norm(b - A @ seen[-1]) <= 1e-8 * np.linalg.norm(b) * (1 + 1e-12)  # scipy-style use


@pytest.mark.parametrize("method", METHODS)
def test_callback_gets_torch_for_torch_input(method):
    A = torch.from_numpy(poisson1d().toarray())
    b = torch.arange(A.shape[0], dtype=torch.float64)
    seen = []
    res = krylearn.solve(A, b, method=method, rtol=1e-8, callback=lambda xk: seen.append(type(xk)))
    assert isinstance(res.x, torch.Tensor)
    assert len(seen) == res.iterations and set(seen) == {torch.Tensor}


@pytest.mark.parametrize("case, method", case_method_params(
    [c for c in spd_cases() if c.name in ("poisson1d", "poisson2d", "rand-sym-pd")]))
def test_error_decreases_in_A_norm(case, method):
    """CG's own monotone quantity (scipy checks GMRES's residual through an x-callback)."""
    A = case.dense().astype(np.float64)
    x_star = np.linalg.solve(A, case.b)
    errors = []

    def record(xk):
        e = as_numpy(xk).astype(np.float64).reshape(-1) - x_star
        errors.append(float(np.sqrt(max(e @ (A @ e), 0.0))))

    krylearn.solve(case.A, case.b, method=method, rtol=1e-10, callback=record)
    start = float(np.sqrt(x_star @ (A @ x_star)))
    bound = [start, *errors]
    assert all(b <= a * (1 + 1e-8) + 1e-12 * start for a, b in zip(bound, bound[1:]))


# --- scipy's test_precond_dummy / test_precond_inverse and preconditioner forms ---


def _identity_operator(case):
    return LinearOperator(case.A.shape, matvec=lambda v: v, rmatvec=lambda v: v,
                          dtype=np.result_type(case.A.dtype, np.float64))


@pytest.mark.parametrize("case", params([(c.name, c) for c in spd_cases()]))
def test_identity_preconditioner(case):
    res = krylearn.solve(case.A, case.b, method="cg", M=_identity_operator(case), x0=0 * case.b, rtol=1e-8)
    assert_converged(res)
    assert_meets_rule(case.A, case.b, res.x, 1e-8)


@pytest.mark.parametrize("case", params([(c.name, c) for c in spd_cases()]))
def test_linear_operator_A(case):
    res = krylearn.solve(aslinearoperator(case.A), case.b, method="cg", x0=0 * case.b, rtol=1e-8)
    assert_converged(res)
    assert isinstance(res.x, np.ndarray)
    assert_meets_rule(case.A, case.b, res.x, 1e-8)


def _counting_operator(A, count):
    def matvec(v):
        count[0] += 1
        return A @ v

    return LinearOperator(A.shape, matvec=matvec, rmatvec=matvec, dtype=A.dtype)


@pytest.mark.parametrize("name, wrap_A", params(
    [(f"{n}-{w}", (n, w)) for n in ("poisson1d", "poisson2d") for w in ("LinearOperator", "sparse")],
    argnames=2))
def test_exact_inverse_preconditioner(name, wrap_A):
    """M = A^-1: CG is done in one step (scipy allows 3 matrix-vector products in all)."""
    A = poisson1d() if name == "poisson1d" else poisson2d()
    b = np.arange(A.shape[0], dtype=np.float64)
    lu = sp.linalg.splu(A.tocsc())
    M = LinearOperator(A.shape, matvec=lu.solve, rmatvec=lu.solve, dtype=A.dtype)
    count = [0]
    A_in = _counting_operator(A, count) if wrap_A == "LinearOperator" else A
    res = krylearn.solve(A_in, b, method="cg", M=M, x0=0 * b, rtol=1e-8)
    assert_converged(res)
    assert res.iterations <= 2
    assert_meets_rule(A, b, res.x, 1e-8)
    if wrap_A == "LinearOperator":
        assert count[0] <= 3


def _preconditioner(form, A):
    d = A.diagonal()
    if form == "pyamg":
        return pyamg.smoothed_aggregation_solver(sp.csr_matrix(A)).aspreconditioner()
    return {
        "LinearOperator": lambda: LinearOperator(A.shape, matvec=lambda v: v / d, dtype=A.dtype),
        "aslinearoperator": lambda: aslinearoperator(np.diag(1 / d)),
        "dense": lambda: np.diag(1 / d),
        "sparse-array": lambda: sp.diags_array(1 / d, format="csr"),
        "sparse-matrix": lambda: sp.csr_matrix(sp.diags_array(1 / d)),
        "krylearn-Operator": lambda: Dense(np.diag(1 / d)),
    }[form]()


@pytest.mark.parametrize("form", params(
    [(f, f) for f in ("LinearOperator", "aslinearoperator", "dense", "sparse-array", "sparse-matrix",
                      "pyamg", "krylearn-Operator")]))
def test_preconditioner_forms(form):
    """M in every form scipy's cg takes is applied: same iterations as scipy with that M."""
    A = scaled_poisson()
    b = np.arange(A.shape[0], dtype=np.float64)
    plain = scipy_iterations(A, b, 1e-8)
    ref_M = _preconditioner(form, A) if form != "krylearn-Operator" else _preconditioner("dense", A)
    expected = scipy_iterations(A, b, 1e-8, M=ref_M)
    assert expected < plain  # the problem is one where M matters
    res = krylearn.solve(A, b, method="cg", M=_preconditioner(form, A), rtol=1e-8)
    assert_converged(res)
    assert_meets_rule(A, b, res.x, 1e-8)
    assert abs(res.iterations - expected) <= 1, (res.iterations, expected)


# --- scipy's test_atol: every (rtol, atol) pair, badly scaled preconditioners ---


def _tolerance_pairs(with_inf: bool):
    tols = [0.0, *np.logspace(-9, 2, 7)]
    pairs = [(r, a) for r, a in itertools.product(tols, tols) if r or a]
    if with_inf:
        return [(r, a) for r, a in itertools.product([*tols, np.inf], [*tols, np.inf])
                if np.inf in (r, a)]
    return pairs


def _atol_params():
    items = []
    for method, scale in [("cg", None), ("cg", 1e-6), ("cg", 1e6), ("pcg-jacobi", None), ("pcg-amg", None)]:
        for tols in ("finite", "inf"):
            pid = f"{method}-M{'none' if scale is None else f'{scale:g}'}-{tols}"
            items.append((pid, (method, scale, tols == "inf")))
    return params(items, argnames=3)


@pytest.mark.parametrize("method, M_scale, with_inf", _atol_params())
def test_atol(method, M_scale, with_inf):
    A, b, M0 = atol_problem()
    M = None if M_scale is None else M_scale * M0
    for rtol, atol in _tolerance_pairs(with_inf):
        kw = {} if M is None else {"M": M}
        res = krylearn.solve(A, b, method=method, rtol=rtol, atol=atol, **kw)
        assert_converged(res)
        assert_meets_rule(A, b, res.x, rtol, atol)


# --- scipy's test_zero_rhs ---


@pytest.mark.parametrize("method", METHODS)
def test_zero_rhs(method):
    A, b = zero_rhs_problem()
    for tol in np.logspace(-10, 2, 7):
        for atol in (0.0, tol):
            res = krylearn.solve(A, b, method=method, rtol=tol, atol=atol)
            assert_converged(res)
            assert np.array_equal(res.x, np.zeros(10))


@pytest.mark.parametrize("method", params([(m, m) for m in METHODS]))
def test_zero_rhs_with_nonzero_x0(method):
    """With ``b = 0`` and ``atol = 0`` only ``x = 0`` meets the rule; scipy returns it, converged."""
    A, b = zero_rhs_problem()
    for tol in np.logspace(-10, 2, 7):
        res = krylearn.solve(A, b, method=method, rtol=tol, x0=np.ones(10))
        assert_converged(res)
        assert np.array_equal(res.x, np.zeros(10)), np.abs(res.x).max()


@pytest.mark.parametrize("method", params([(m, m) for m in METHODS]))
def test_zero_rhs_infinite_rtol(method):
    A, b = zero_rhs_problem()
    res = krylearn.solve(A, b, method=method, rtol=np.inf)
    assert_converged(res)
    assert np.array_equal(res.x, np.zeros(10))


# --- scipy's x0 tests ---


@pytest.mark.parametrize("method", METHODS)
def test_x0_working(method):
    rng = np.random.default_rng(1685363802304750)
    A = rng.random(size=(10, 10))
    A = A @ A.T
    b, x0 = rng.random(10), rng.random(10)
    for guess in (None, x0):
        res = krylearn.solve(A, b, method=method, x0=guess, rtol=1e-6, atol=0.0)
        assert_converged(res)
        assert_meets_rule(A, b, res.x, 1e-6)


@pytest.mark.parametrize("case, method", case_method_params(
    spd_cases()))
def test_x0_equals_Mb(case, method):
    x0 = "Mb"
    res = krylearn.solve(case.A, case.b, method=method, x0=x0, rtol=1e-8)
    assert_converged(res)
    assert_meets_rule(case.A, case.b, res.x, 1e-8)


@pytest.mark.parametrize("method", METHODS)
def test_x0_solves_problem_exactly(method):
    b = np.array([-1.0, -1.0])
    res = krylearn.solve(np.eye(2), b, method=method, x0=b.copy())
    assert_converged(res)
    assert res.iterations == 0
    assert np.array_equal(res.x, b)


# --- argument checking (scipy's test_positional_error / test_invalid_atol) ---


def test_tolerances_are_keyword_only():
    A, b = zero_rhs_problem()
    with pytest.raises(TypeError):
        krylearn.solve(A, b + 1, "cg", None, 1e-5)


@pytest.mark.parametrize("name, value", [
    ("atol", "legacy"), ("atol", None), ("atol", -1), ("atol", np.nan),
    ("rtol", None), ("rtol", -1), ("rtol", np.nan),
    ("maxiter", 0), ("maxiter", -1), ("maxiter", 2.5),
])
def test_invalid_tolerance_rejected(name, value):
    A, b = zero_rhs_problem()
    with pytest.raises(ValueError, match=name):
        krylearn.solve(A, b + 1, method="cg", **{name: value})


@pytest.mark.parametrize("method", METHODS)
def test_rtol_is_relative_for_tiny_b(method):
    """scipy's GMRES ``test_atol_legacy``, for CG: rtol scales with ||b|| however small."""
    A = np.eye(2)
    res = krylearn.solve(A, np.ones(2), method=method, rtol=1e-5)
    assert_converged(res)
    np.testing.assert_allclose(res.x, np.ones(2), rtol=1e-8, atol=0)
    b = 1e-10 * np.ones(2)
    res = krylearn.solve(A, b, method=method, rtol=1e-8, atol=0.0)
    assert_converged(res)
    assert_meets_rule(A, b, res.x, 1e-8)


# --- breakdowns (scipy's GMRES defective-preconditioner/matrix tests, for CG) ---


@pytest.mark.parametrize("form", params([("krylearn-Operator", "krylearn-Operator"), ("dense", "dense")]))
def test_singular_preconditioner_no_nan_no_false_success(form):
    A = np.diag([2.0, 3.0, 4.0])
    b = np.array([0.0, 1.0, 1.0])
    M = np.eye(3)
    M[2, 2] = 0.0
    res = krylearn.solve(A, b, method="cg", x0=np.array([1.0, 0.0, 0.0]),
                         M=Dense(M) if form == "krylearn-Operator" else M, rtol=1e-15, atol=0.0)
    assert np.all(np.isfinite(res.x))
    if res.converged:
        assert_meets_rule(A, b, res.x, 1e-15)
    np.testing.assert_allclose(M @ (A @ res.x), M @ b, atol=1e-12)  # right outside M's null space


@pytest.mark.parametrize("method", METHODS)
def test_inconsistent_singular_matrix_no_false_success(method):
    A = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    b = np.array([1.0, 0.0, 1.0])  # nonzero on A's zero row: no solution
    try:
        res = krylearn.solve(A, b, method=method, rtol=1e-8, atol=0.0)
    except ValueError as err:
        assert names_argument(err, "A", "b")
        return
    assert np.all(np.isfinite(res.x))
    assert not res.converged


# --- complex Hermitian positive definite systems (scipy's test_abi and complex cases) ---


def _complex_systems():
    P = poisson1d()
    b = np.arange(P.shape[0], dtype=np.float64)
    H = [c for c in spd_cases() if c.name == "rand-cmplx-sym-pd"][0].A
    bh = np.arange(9.0) + 1j * np.arange(9.0)[::-1]
    return {"poisson1d-as-complex": (P.astype(np.complex128), b + 0j, P, b), "hpd-complex-b": (H, bh, None, None)}


@pytest.mark.parametrize("method, system", params(
    [(f"{m}-{s}", (m, s)) for m in METHODS for s in ("poisson1d-as-complex", "hpd-complex-b")], argnames=2))
def test_complex_hermitian(method, system):
    A, b, A_real, b_real = _complex_systems()[system]
    res = krylearn.solve(A, b, method=method, rtol=1e-12)
    assert_converged(res)
    assert np.iscomplexobj(res.x)
    assert_meets_rule(A, b, res.x, 1e-12)
    if A_real is not None:  # the same system in real arithmetic: both within cond(A) * 1e-12 of x
        real = krylearn.solve(A_real, b_real, method=method, rtol=1e-12)
        np.testing.assert_allclose(res.x, real.x, rtol=0, atol=1e-8 * np.abs(real.x).max())


# --- inputs pasted from scipy code ---


FORMATS = {
    "csr_matrix": sp.csr_matrix, "csc_array": sp.csc_array, "coo_array": sp.coo_array,
    "dia_array": sp.dia_array, "bsr_array": sp.bsr_array, "dense": lambda A: A.toarray(),
}


@pytest.mark.parametrize("fmt, method", [(f, m) for f in FORMATS for m in METHODS])
def test_matrix_formats(fmt, method):
    A = scaled_poisson()
    A_in = FORMATS[fmt](A)
    b = np.arange(A.shape[0], dtype=np.float64)
    res = krylearn.solve(A_in, b, method=method, rtol=1e-8)
    assert_converged(res)
    assert isinstance(res.x, np.ndarray) and res.x.shape == b.shape
    assert_meets_rule(A, b, res.x, 1e-8)


class _DuckOperator:
    """Anything with ``shape``, ``dtype`` and ``matvec`` (what scipy's aslinearoperator accepts)."""

    def __init__(self, A):
        self.A, self.shape, self.dtype = A, A.shape, A.dtype

    def matvec(self, v):
        return self.A @ v


@pytest.mark.parametrize("kind", params(
    [("LinearOperator", "LinearOperator"), ("duck", "duck")]))
def test_matrix_free_A_with_cg(kind):
    A = scaled_poisson()
    b = np.arange(A.shape[0], dtype=np.float64)
    A_in = LinearOperator(A.shape, matvec=lambda v: A @ v, dtype=A.dtype) if kind == "LinearOperator" \
        else _DuckOperator(A)
    res = krylearn.solve(A_in, b, method="cg", rtol=1e-8)
    assert_converged(res)
    assert isinstance(res.x, np.ndarray)
    assert_meets_rule(A, b, res.x, 1e-8)


@pytest.mark.parametrize("method", PRECONDITIONED)
def test_linear_operator_A_with_a_built_preconditioner(method):
    """Jacobi/AMG need matrix entries: solve right, or say clearly that ``A`` must be a matrix."""
    A = scaled_poisson()
    b = np.arange(A.shape[0], dtype=np.float64)
    try:
        res = krylearn.solve(aslinearoperator(A), b, method=method, rtol=1e-8)
    except (TypeError, ValueError) as err:
        assert names_argument(err, "A")
        return
    assert_converged(res)
    assert_meets_rule(A, b, res.x, 1e-8)


@pytest.mark.parametrize("method", params([(m, m) for m in METHODS]))
def test_column_rhs(method):
    """``b`` of shape ``(n, 1)``, as scipy accepts; ``x`` comes back in ``b``'s shape."""
    A = scaled_poisson()
    b = np.arange(A.shape[0], dtype=np.float64)[:, None]
    res = krylearn.solve(A, b, method=method, rtol=1e-8)
    assert_converged(res)
    assert res.x.shape == b.shape
    assert_meets_rule(A, b, res.x, 1e-8)
