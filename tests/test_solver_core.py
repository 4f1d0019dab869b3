"""The solver core: ``Solver`` (setup once, solve many, update, aspreconditioner), interop, and bad input.

Each defect found by adversarial use has a regression test here; the
property test over methods, dtypes and scales is ``test_honest_convergence.py``.
"""

from __future__ import annotations

import numpy as np
import pyamg
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as sla
import torch

import krylearn
from krylearn.operators import Identity, PoissonGrid, from_sigpy
from krylearn.solvers import Solver


def poisson(n=16, boundary="empty"):
    return PoissonGrid((n, n), boundary=boundary).to_sparse()


def rhs(n, seed=0):
    return np.random.default_rng(seed).standard_normal(n)


def rel_true(A, b, x):
    """``||b - A x|| / ||b||`` computed without under/overflow (both scaled by max |b|)."""
    s = np.abs(b).max()
    return np.linalg.norm(b / s - A @ (x / s)) / np.linalg.norm(b / s)


# ------------------------------------------------------------------ Solver
def setup_of(r):
    """The setup a result (or a Solver) reports: a bookkeeping property, not a timing."""
    return r.setup_seconds


def test_setup_once_then_only_solves():
    A = poisson(24)
    S = Solver(A, "pcg-amg", rtol=1e-8)
    r1 = S.solve(rhs(576, 1))
    r2 = S.solve(rhs(576, 2), x0=r1.x)
    # the setup is reported once, by the first solve after it; later solves report none
    assert setup_of(r1) == setup_of(S) != 0 and setup_of(r2) == 0.0
    for r, seed in ((r1, 1), (r2, 2)):
        assert r.converged and rel_true(A, rhs(576, seed), r.x) <= 1e-8
    ref = krylearn.solve(A, rhs(576, 1), method="pcg-amg", rtol=1e-8)
    # pyamg's setup estimates a spectral radius from a random vector: equal up to that
    assert ref.iterations == r1.iterations and np.allclose(ref.x, r1.x, rtol=0, atol=1e-7)


def test_update_values_and_pattern():
    A = poisson(16)
    S = Solver(A, "pcg-ic", rtol=1e-10)
    b = rhs(256)
    x1 = S.solve(b).x
    S.update(2.0 * A)
    r = S.solve(b)
    assert setup_of(r) == setup_of(S) != 0  # the update's setup is reported by the next solve
    assert r.converged and np.allclose(r.x, x1 / 2, atol=1e-9)
    B = poisson(12, boundary="solid") + 0.5 * sp.identity(144)  # another size and pattern
    r = S.update(B).solve(rhs(144))
    assert r.converged and rel_true(B, rhs(144), r.x) <= 1e-10


def test_update_omega_needs_no_setup_and_matches_a_fresh_solver():
    A, b = poisson(12), rhs(144)
    for method in ("sor", "ssor", "pcg-ssor", "jacobi"):
        w0, w1 = (0.6, 0.9) if method == "jacobi" else (1.2, 1.7)
        S = Solver(A, method, omega=w0, rtol=1e-8)
        S.solve(b)
        r = S.update(omega=w1).solve(b)
        fresh = krylearn.solve(A, b, method=method, omega=w1, rtol=1e-8)
        assert r.iterations == fresh.iterations and np.allclose(r.x, fresh.x, rtol=0, atol=1e-12)
        assert r.info["omega"] == w1 if "omega" in r.info else r.info["preconditioner"]["omega"] == w1


@pytest.mark.parametrize("method", ["pcg-amg", "pcg-ic", "pcg-jacobi", "pcg-ssor", "ssor", "jacobi"])
def test_aspreconditioner_works_in_scipy_and_pyamg(method):
    D = sp.diags(np.random.default_rng(7).uniform(1, 10, 400))
    A, b = (D @ poisson(20) @ D).tocsr(), rhs(400)  # a varying diagonal, so Jacobi helps too
    opts = {"omega": 1.3} if method in ("pcg-ssor", "ssor") else {}
    M = Solver(A, method, **opts).aspreconditioner()
    assert isinstance(M, sla.LinearOperator) and M.shape == A.shape
    counts = {}
    for name, M_ in (("none", None), ("M", M)):
        k = [0]
        x, info = sla.cg(A, b, rtol=1e-8, M=M_, callback=lambda xk: k.__setitem__(0, k[0] + 1))
        assert info == 0 and rel_true(A, b, x) <= 1e-8
        counts[name] = k[0]
    assert counts["M"] < counts["none"]
    x = pyamg.krylov.cg(A, b, tol=1e-8, M=M)[0]
    assert rel_true(A, b, x) <= 1e-7
    r = krylearn.solve(A, b, method="cg", M=M, rtol=1e-8)  # and back into krylearn
    assert r.converged and r.iterations == counts["M"] or abs(r.iterations - counts["M"]) <= 1


def test_solve_is_a_thin_call_of_solver():
    A, b = poisson(10), rhs(100)
    for method in ("cg", "sor", "pcg-ssor"):
        opts = {"omega": 1.5} if method != "cg" else {}
        r1 = krylearn.solve(A, b, method=method, rtol=1e-9, **opts)
        r2 = Solver(A, method, rtol=1e-9, **opts).solve(b)
        assert r1.iterations == r2.iterations and np.array_equal(r1.x, r2.x)


def test_unknown_option_is_named():
    with pytest.raises(TypeError, match="omegga"):
        Solver(poisson(4), "sor", omegga=1.5)
    with pytest.raises(TypeError, match="unknown option"):
        krylearn.solve(poisson(4), rhs(16), method="cg", omega=1.2)


# ------------------------------------------------------------------ interop
def test_callback_gets_the_callers_array_type():
    A, b = poisson(8), rhs(64)
    seen = []
    krylearn.solve(A, b, method="cg", callback=lambda xk: seen.append(type(xk)))
    krylearn.solve(A, torch.from_numpy(b), method="cg", callback=lambda xk: seen.append(type(xk)))
    assert seen[0] is np.ndarray and seen[-1] is torch.Tensor


def test_column_rhs_infinite_tolerances_and_Mb():
    A, b = poisson(8), rhs(64)
    r = krylearn.solve(A, b.reshape(-1, 1), method="pcg-jacobi", rtol=1e-10)
    assert r.x.shape == (64, 1) and r.converged and rel_true(A, b, r.x.ravel()) <= 1e-10
    r = krylearn.solve(A, b, method="cg", rtol=np.inf)
    assert r.converged and r.iterations == 0
    r = krylearn.solve(A, b, method="cg", rtol=0.0, atol=np.inf)
    assert r.converged and r.iterations == 0
    M = Solver(A, "pcg-jacobi")
    r = M.solve(b, x0="Mb")
    assert r.converged and r.info["matvecs"] >= 1
    with pytest.raises(ValueError, match="x0"):
        M.solve(b, x0="nope")


def test_image_shaped_rhs_for_cg_sense():
    from krylearn.operators.mri import SenseOperator, birdcage_maps

    maps = birdcage_maps(4, (16, 16))
    mask = torch.zeros(16, 16, dtype=torch.bool)
    mask[::2] = True
    mask[6:10] = True
    S = SenseOperator(maps, mask)
    x_true = torch.randn(16, 16, dtype=torch.complex128, generator=torch.Generator().manual_seed(0))
    y = S @ x_true
    res = krylearn.solve(S.N, S.H @ y, method="cg", rtol=1e-10)
    assert res.converged and res.x.shape == (16, 16)
    assert torch.linalg.vector_norm(S.H @ (S @ res.x) - S.H @ y) <= 1e-9 * torch.linalg.vector_norm(S.H @ y)


@pytest.mark.parametrize("method", ["pcg-jacobi", "pcg-ssor", "pcg-amg"])
def test_complex_hermitian_with_preconditioners(method):
    n = 12
    L = poisson(n)
    rng = np.random.default_rng(0)
    P = sp.diags(np.exp(1j * rng.uniform(0, 2 * np.pi, n * n)))
    A = (P.conj().T @ L @ P).tocsr()  # Hermitian positive definite, complex off-diagonals
    b = rng.standard_normal(n * n) + 1j * rng.standard_normal(n * n)
    opts = {"omega": 1.2} if method == "pcg-ssor" else {}
    r = krylearn.solve(A, b, method=method, rtol=1e-10, **opts)
    assert r.converged and np.iscomplexobj(r.x) and rel_true(A, b, r.x) <= 1e-10
    plain = krylearn.solve(A, b, method="cg", rtol=1e-10)
    assert r.iterations <= plain.iterations


def test_sigpy_complex_linop_defaults_to_complex128():
    import sigpy

    F = sigpy.linop.FFT((8, 8), center=True)
    op = from_sigpy(F.H * F)
    assert op.dtype == torch.complex128
    b = np.random.default_rng(0).standard_normal((8, 8)) + 0j
    r = krylearn.solve(op, b, method="cg", rtol=1e-12)
    assert r.converged and np.allclose(r.x, b)
    assert from_sigpy(sigpy.linop.Identity((3,))).dtype == torch.float64


class _DLPackOnly:
    """An array that speaks only DLPack, from a module with ``from_dlpack`` (like cupy or JAX)."""

    def __init__(self, a):
        self.a = np.ascontiguousarray(a)

    def __dlpack__(self, *args, **kwargs):
        return self.a.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self):
        return self.a.__dlpack_device__()


def from_dlpack(x):  # this test module plays the array library
    return _DLPackOnly(np.from_dlpack(x))


def test_dlpack_arrays_go_in_zero_copy_and_come_back_as_themselves():
    A, b = poisson(8), rhs(64)
    bd = _DLPackOnly(b)
    assert torch.from_dlpack(bd).data_ptr() == bd.a.ctypes.data  # zero copy in
    r = krylearn.solve(A, bd, method="cg", rtol=1e-10)
    assert isinstance(r.x, _DLPackOnly) and r.converged
    assert rel_true(A, b, r.x.a) <= 1e-10
    assert np.array_equal(bd.a, b)
    xs = np.from_dlpack(r.x)
    assert np.allclose(xs, krylearn.solve(A, b, method="cg", rtol=1e-10).x)


# ------------------------------------------------------- defects, bad input
def _non_canonical(A: sp.csr_matrix):
    """``A`` with row 0 holding a split duplicate of its diagonal and an explicit zero (int64 indices)."""
    A = A.tocsr()
    lo, hi = A.indptr[0], A.indptr[1]
    cols = np.r_[A.indices[lo:hi], 0, 5]
    vals = np.r_[A.data[lo:hi], 0.0, 0.0]
    vals[list(A.indices[lo:hi]).index(0)] -= 1.5
    vals[-2] = 1.5  # duplicate of (0, 0): the sum is A[0, 0]
    indices = np.r_[cols, A.indices[hi:]].astype(np.int64)
    data = np.r_[vals, A.data[hi:]]
    indptr = np.r_[0, A.indptr[1:] + 2].astype(np.int64)
    M = sp.csr_matrix((data, indices, indptr), shape=A.shape)
    M.has_canonical_format = False
    return M


def test_caller_matrices_are_never_modified():
    """Explicit zeros and duplicates in a torch CSR or an int64 scipy CSR are not compacted in place."""
    A = poisson(6)
    S = _non_canonical(A)
    T = torch.sparse_csr_tensor(torch.from_numpy(S.indptr.copy()), torch.from_numpy(S.indices.copy()),
                                torch.from_numpy(S.data.copy()), size=S.shape)
    snapshot = [a.copy() for a in (S.indptr, S.indices, S.data)]
    tsnap = [t.clone() for t in (T.crow_indices(), T.col_indices(), T.values())]
    b = rhs(36)
    for M in (S, T):
        for method in ("cg", "pcg-ic", "sor"):
            first = krylearn.solve(M, b, method=method, rtol=1e-10)
            second = krylearn.solve(M, b, method=method, rtol=1e-10)
            assert first.converged and np.array_equal(first.x, second.x)
            assert rel_true(A, b, first.x) <= 1e-10
    for a, s0 in zip((S.indptr, S.indices, S.data), snapshot):
        assert np.array_equal(a, s0)
    for t, t0 in zip((T.crow_indices(), T.col_indices(), T.values()), tsnap):
        assert torch.equal(t, t0)


def test_out_of_range_indices_are_refused_not_a_segfault():
    T = torch.sparse_csr_tensor(torch.tensor([0, 1, 2]), torch.tensor([0, 5]),
                                torch.tensor([1.0, 1.0], dtype=torch.float64), size=(2, 2))
    with pytest.raises(ValueError, match="column indices"):
        krylearn.solve(T, np.ones(2))
    with pytest.raises(ValueError, match="column indices"):
        krylearn.solve((np.array([0, 1, 2]), np.array([0, 2**31]), np.ones(2), (2, 2)), np.ones(2))
    with pytest.raises(TypeError, match="shape"):
        krylearn.solve((np.array([0, 1, 2]), np.array([0, 1]), np.ones(2), (2.5, 2)), np.ones(2))


def test_empty_system_gives_the_trivial_answer():
    for A in (Identity(0), sp.csr_matrix((0, 0))):
        r = krylearn.solve(A, np.zeros(0))
        assert r.converged and r.x.shape == (0,) and r.iterations == 0


@pytest.mark.parametrize("kwargs, err, match", [
    (dict(maxiter=True), ValueError, "maxiter"),
    (dict(maxiter=2.5), ValueError, "maxiter"),
    (dict(rtol=float("nan")), ValueError, "rtol"),
    (dict(atol=-1.0), ValueError, "atol"),
    (dict(method="dcdm", grid_shape=(16.5, 16)), ValueError, "grid_shape"),
    (dict(method="dcdm", grid_shape=(16, 16), flags=7), ValueError, "flags"),
    (dict(method="dcdm", grid_shape="16x16"), TypeError, "grid_shape"),
])
def test_bad_arguments_are_named(kwargs, err, match):
    kwargs = {"method": "cg", **kwargs}
    with pytest.raises(err, match=match):
        krylearn.solve(poisson(16), rhs(256), **kwargs)


def test_nan_preconditioner_stops_with_the_last_finite_iterate():
    A, b = poisson(8), rhs(64)
    calls = [0]

    def M(r):
        calls[0] += 1
        return r * float("nan") if calls[0] > 3 else r

    res = krylearn.solve(A, b, method="cg", M=M, rtol=1e-12)
    assert res.reason == "nonfinite" and not res.converged and np.all(np.isfinite(res.x))
    assert res.iterations == 3 and res.residuals.shape == (4,)


def test_dcdm_on_a_negative_definite_matrix_is_indefinite():
    A = poisson(12)
    r = krylearn.solve(-A, rhs(144), method="dcdm", grid_shape=(12, 12))
    assert r.reason == "indefinite" and not r.converged
    assert krylearn.solve(-A, rhs(144), method="cg").reason == "indefinite"


def test_fast_sor_loop_keeps_the_drivers_contract():
    """The compiled whole-solve SOR loop gives the driver's iterates, reasons and history."""
    A, b = poisson(10), rhs(100)
    for method, omega in (("sor", 1.6), ("ssor", 1.3), ("gauss-seidel", None)):
        opts = {} if omega is None else {"omega": omega}
        S = Solver(A, method, rtol=1e-9, **opts)
        fast = S.solve(b)
        slow = S.solve(b, callback=lambda x: None)  # a callback takes the driver's loop
        assert fast.info.get("fast_path") and "fast_path" not in slow.info
        assert fast.reason == slow.reason == "converged" and fast.iterations == slow.iterations
        assert np.array_equal(fast.x, slow.x)
        np.testing.assert_allclose(fast.residuals, slow.residuals, rtol=1e-12)
        assert fast.info["sweeps"] == slow.info["sweeps"]
        small = S.solve(b, maxiter=3)
        assert small.reason == "maxiter" and small.iterations == 3


def test_imaging_cg_gives_the_same_image_at_any_scale_of_the_data():
    from krylearn.operators.mri import SenseOperator, birdcage_maps
    from krylearn.solvers.imaging import cg_sense

    maps = birdcage_maps(4, (16, 16))
    mask = torch.zeros(16, 16, dtype=torch.bool)
    mask[::2] = True
    S = SenseOperator(torch.as_tensor(maps).to(torch.complex64), mask)
    y = S @ torch.randn(16, 16, dtype=torch.complex64, generator=torch.Generator().manual_seed(1))
    ref = cg_sense(S, y, iters=30)
    for s in (1e-20, 1e20):
        x = cg_sense(S, y * s, iters=30)
        assert torch.all(torch.isfinite(x)) and torch.linalg.vector_norm(x) > 0
        assert torch.allclose(x / s, ref, rtol=1e-3, atol=1e-4 * float(ref.abs().max()))


@pytest.mark.parametrize("method", ["pcg-jacobi", "pcg-ic", "pcg-ssor", "pcg-amg"])
def test_real_matrix_with_complex_rhs(method):
    """A real SPD matrix and a complex b: the real preconditioner acts on both parts."""
    A = poisson(12, boundary="solid") + 0.1 * sp.identity(144)
    rng = np.random.default_rng(4)
    b = rng.standard_normal(144) + 1j * rng.standard_normal(144)
    opts = {"omega": 1.3} if method == "pcg-ssor" else {}
    r = krylearn.solve(A.tocsr(), b, method=method, rtol=1e-10, **opts)
    assert r.converged and np.iscomplexobj(r.x) and rel_true(A, b, r.x) <= 1e-10
    re = krylearn.solve(A.tocsr(), b.real, method=method, rtol=1e-12, **opts).x
    assert np.allclose(r.x.real, re, atol=1e-8)
