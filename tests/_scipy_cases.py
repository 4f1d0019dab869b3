"""The linear systems of scipy's iterative-solver tests, rebuilt for krylearn's suite.

scipy tests its Krylov solvers (``scipy/sparse/linalg/_isolve/tests/
test_iterative.py``) on a fixed family of small systems: 1-D and 2-D
Dirichlet Poisson matrices, random symmetric positive definite and Hermitian
positive definite matrices, and matrices on which CG must not succeed
(negative definite, indefinite, nonsymmetric, non-Hermitian).  Each comes in
double and single precision.  This module builds the same family (same
structure, sizes, seeds and right-hand sides) for ``tests/test_scipy_suite.py``,
plus the checks that suite makes: the stopping rule on the true residual of the
user's system, and scipy's own iteration counts as the reference.

Every case's right-hand side is ``b = [0, 1, ..., n-1]`` in float64 unless the
case says otherwise, as in scipy (so the single-precision cases compute in
float64 after promotion; ``b.astype(A.dtype)`` gives the all-single variant).
"""

from __future__ import annotations

from dataclasses import dataclass

import re

import numpy as np
import pyamg
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import LinearOperator
from scipy.sparse.linalg import cg as scipy_cg

SLACK = 1.0 + 1e-12  # rounding of the residual comparison itself, nothing more


@dataclass(frozen=True)
class Case:
    """One test system ``A x = b``.

    Attributes
    ----------
    name : str
        scipy's case name (``"-F"`` suffix: single precision).
    A : scipy.sparse.csr_array or numpy.ndarray, (n, n)
    b : numpy.ndarray, (n,)
    spd : bool
        Whether ``A`` is symmetric (Hermitian) positive definite, i.e. whether
        scipy expects CG to converge on it.
    why_not : str
        For a case that is not SPD, what it is instead ("" for SPD cases).
    """

    name: str
    A: object
    b: np.ndarray
    spd: bool
    why_not: str = ""

    @property
    def n(self) -> int:
        return self.A.shape[0]

    @property
    def single(self) -> bool:
        """Whether ``A`` is stored in single precision (float32 or complex64)."""
        return np.dtype(self.A.dtype) in (np.float32, np.complex64)

    @property
    def rtol(self) -> float:
        """The tolerance scipy's convergence test uses for this precision."""
        return 1e-2 if self.single else 1e-8

    def dense(self) -> np.ndarray:
        """``A`` as a dense array of its own dtype."""
        return self.A.toarray() if sp.issparse(self.A) else np.asarray(self.A)


def poisson1d(n: int = 40) -> sp.csr_array:
    """Tridiagonal ``[-1, 2, -1]`` Dirichlet Poisson matrix, float64 CSR, (n, n)."""
    return sp.diags_array([-np.ones(n - 1), 2 * np.ones(n), -np.ones(n - 1)], offsets=[-1, 0, 1],
                          format="csr")


def poisson2d(n: int = 40) -> sp.csr_array:
    """5-point Poisson matrix on an ``n x n`` grid (Kronecker sum of two 1-D ones), (n^2, n^2)."""
    return sp.csr_array(sp.kronsum(poisson1d(n), poisson1d(n)))


def random_spd(n: int = 9, seed: int = 1234, complex_: bool = False) -> np.ndarray:
    """``G G^H`` for a uniform random ``G`` (real, or with a uniform imaginary part)."""
    rng = np.random.RandomState(seed)
    g = rng.rand(n, n)
    if complex_:
        g = g + 1j * rng.rand(n, n)
    return g @ g.conj().T


def _random_square(seed: int, complex_: bool) -> np.ndarray:
    rng = np.random.RandomState(seed)
    g = rng.rand(4, 4)
    return g + 1j * rng.rand(4, 4) if complex_ else g


def _saddle_point() -> tuple[np.ndarray, np.ndarray]:
    """scipy's symmetric, singular-looking saddle-point matrix (11 x 11) and its ``b = e_5``.

    Blocks of sizes (5, 1, 5): ``[[0, c, -I], [c^T, 0, 0], [-I, 0, -I]]`` with
    ``c = [1, 2, 2, 2, 1]``.
    """
    c = np.array([[1.0, 2.0, 2.0, 2.0, 1.0]]).T
    eye = np.eye(5)
    A = np.block([[np.zeros((5, 5)), c, -eye],
                  [c.T, np.zeros((1, 1)), np.zeros((1, 5))],
                  [-eye, np.zeros((5, 1)), -eye]])
    b = np.zeros(11)
    b[5] = 1.0
    return A, b


def _pair(name, A, spd, why_not="", b=None):
    """The double-precision case and its single-precision ``-F`` twin."""
    single = np.complex64 if np.iscomplexobj(A) else np.float32
    arange = np.arange(A.shape[0], dtype=np.float64)
    b = arange if b is None else b
    return [Case(name, A, b, spd, why_not), Case(name + "-F", A.astype(single), b, spd, why_not)]


def scipy_cases() -> list[Case]:
    """Every system of scipy's ``IterativeParams``, in scipy's order."""
    p1 = poisson1d()
    diag = sp.diags_array(np.array([6, -5, 2, 7, -1, 10, 4, -3, -8, 9], dtype=np.float64),
                          format="csr")
    rand = _random_square(1234, complex_=False)
    crand = _random_square(1234, complex_=True)
    nonsym = sp.diags_array([-np.ones(9), 2 * np.ones(10)], offsets=[-1, 0], format="csr")
    saddle, saddle_b = _saddle_point()
    cases = [
        *_pair("poisson1d", p1, True),
        *_pair("neg-poisson1d", -p1, False, "negative definite"),
        *_pair("poisson2d", poisson2d(), True),
        *_pair("rand-diag", diag, False, "symmetric indefinite"),
        *_pair("rand", rand, False, "nonsymmetric"),
        *_pair("rand-sym", rand + rand.T, False, "symmetric indefinite"),
        *_pair("rand-sym-pd", random_spd(), True),
        *_pair("rand-cmplx", crand, False, "complex non-Hermitian"),
        *_pair("rand-cmplx-herm", crand + crand.conj().T, False, "Hermitian indefinite"),
        *_pair("rand-cmplx-sym-pd", random_spd(complex_=True), True),
        Case("nonsymposdef", nonsym, np.arange(10, dtype=np.float64), False, "nonsymmetric"),
        # scipy's single-precision twin of this one is complex64
        Case("nonsymposdef-F", nonsym.astype(np.complex64), np.arange(10, dtype=np.float64), False,
             "nonsymmetric"),
        Case("sym-nonpd", saddle, saddle_b, False, "symmetric indefinite"),
    ]
    return cases


def spd_cases() -> list[Case]:
    """The cases on which scipy expects CG to converge."""
    return [c for c in scipy_cases() if c.spd]


def non_spd_cases() -> list[Case]:
    """The cases scipy skips for CG: CG has no convergence guarantee on them."""
    return [c for c in scipy_cases() if not c.spd]


def scaled_poisson():
    """``D P D`` with ``D`` spanning two decades: Jacobi preconditioning matters here."""
    P = poisson2d(8)
    D = sp.diags_array(np.logspace(0, 2, P.shape[0]))
    return sp.csr_array(D @ P @ D)


def atol_problem():
    """scipy's ``test_atol`` system: ``A = U U^T + 10 I`` (10 x 10), ``b ~ 1e3``, and an SPD ``M0``."""
    rng = np.random.default_rng(168441431005389)
    A = rng.uniform(size=(10, 10))
    A = A @ A.T + 10 * np.eye(10)
    b = 1e3 * rng.uniform(size=10)
    M0 = rng.standard_normal(size=(10, 10))
    return A, b, M0 @ M0.T


def zero_rhs_problem():
    """scipy's ``test_zero_rhs`` system: ``A = U U^T + 10 I`` (10 x 10) and ``b = 0``."""
    rng = np.random.default_rng(1684414984100503)
    A = rng.random(size=(10, 10))
    return A @ A.T + 10 * np.eye(10), np.zeros(10)


# --- The stopping rule, checked on the user's system ---


def _wide(A):
    """``A`` in float64/complex128 (sparse stays sparse)."""
    dtype = np.result_type(A.dtype, np.float64)
    return sp.csr_array(A).astype(dtype) if sp.issparse(A) else np.asarray(A, dtype=dtype)


def true_residual(A, b, x) -> float:
    """``||b - A x||`` computed in float64/complex128 on the user's values."""
    b = as_numpy(b).reshape(-1)
    x = as_numpy(x).reshape(-1)
    b = b.astype(np.result_type(b.dtype, np.float64))
    x = x.astype(np.result_type(x.dtype, np.float64))
    return float(np.linalg.norm(b - _wide(A) @ x))


def assert_meets_rule(A, b, x, rtol, atol=0.0):
    """``||b - A x|| <= max(rtol ||b||, atol)``, the promise behind ``converged=True``."""
    b_np = as_numpy(b)
    bnorm = float(np.linalg.norm(b_np.astype(np.result_type(b_np.dtype, np.float64))))
    limit = max(rtol * bnorm if bnorm > 0 else 0.0, atol)
    res = true_residual(A, b, x)
    assert res <= limit * SLACK, f"true residual {res:.3e} > max(rtol*||b||, atol) = {limit:.3e}"


def as_numpy(x) -> np.ndarray:
    """``x`` as a numpy array (a torch tensor is copied off its device)."""
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def assert_converged(res):
    """``converged`` is a single true flag (one right-hand side)."""
    assert np.ndim(res.converged) == 0 and bool(res.converged), (res.reason, res.iterations)


def names_argument(err: Exception, *names: str) -> bool:
    """Whether the error message names one of the arguments (as a whole word)."""
    return any(re.search(rf"\b{n}\b", str(err)) for n in names)


def assert_untouched(before, after):
    """``after`` is bit-identical to the copy ``before`` (numpy array or scipy sparse matrix)."""
    if sp.issparse(before):
        for attr in ("data", "indices", "indptr"):
            assert np.array_equal(getattr(before.tocsr(), attr), getattr(after.tocsr(), attr))
        assert after.format == before.format
    else:
        assert np.array_equal(before, after)


def reference_preconditioner(A, method):
    """The preconditioner ``method`` builds, as scipy's ``cg`` takes it (None for plain CG)."""
    A64 = _wide(A)
    if method == "cg":
        return None
    if method == "pcg-jacobi":
        d = (A64.diagonal() if sp.issparse(A64) else np.diag(A64)).copy()
        return LinearOperator(A64.shape, matvec=lambda v: v / d, dtype=A64.dtype)
    return pyamg.smoothed_aggregation_solver(sp.csr_matrix(A64)).aspreconditioner()


def scipy_iterations(A, b, rtol, M=None, atol=0.0) -> int:
    """Iterations scipy's ``cg`` takes (it must converge)."""
    count = [0]
    _, info = scipy_cg(A, b, rtol=rtol, atol=atol, M=M, callback=lambda xk: count.__setitem__(0, count[0] + 1))
    assert info == 0
    return count[0]
