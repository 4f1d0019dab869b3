"""Preconditioners for CG: Jacobi, IC(0), SSOR and smoothed-aggregation AMG.

Each constructor returns an :class:`~krylearn.operators.base.Operator`
(square, ``ishape == (n,)``, the dtype and device of ``A``) that applies
``M^-1 ~ A^-1`` to a batch ``(B, n)``; pass it as ``M=`` to
:func:`krylearn.solvers.krylov.cg`.  Every preconditioner is symmetric
positive definite when ``A`` is symmetric positive (semi-)definite, and
exposes ``name``, ``setup_seconds`` and an ``info`` dict.

Matrices in the **full-grid convention** (some rows and columns identically
zero: solid/empty cells) are handled throughout: such rows act as the
identity and the real work is done on the nonzero part.

Backends: IC(0) and SSOR factor on the CPU (numba) and solve with numba
kernels on CPU; on CUDA they use torch's sparse-CSR triangular solves
(``torch.triangular_solve`` on a CSR matrix, cuSPARSE SpSM) and fall back to
a round trip through the CPU kernels if that is unavailable (``info["backend"]``
says which ran).  AMG (pyamg) always runs on the CPU; CUDA inputs make a
round trip.

Examples
--------
>>> import numpy as np, pyamg
>>> from krylearn.solvers import cg
>>> from krylearn.solvers.preconditioners import make_preconditioner
>>> A = pyamg.gallery.poisson((32, 32), format="csr")
>>> M = make_preconditioner("ic0", A)
>>> res = cg(A, np.ones(A.shape[0]), rtol=1e-8, M=M)
>>> bool(res.converged), res.iterations < cg(A, np.ones(A.shape[0]), rtol=1e-8).iterations
(True, True)
"""

from __future__ import annotations

import copy
import numbers
import time
import warnings

import numpy as np
import pyamg
import scipy.sparse
import torch

from ..operators.base import Operator
from ..operators.convert import as_operator
from . import _relax_kernels as K
from .inputs import canonical_csr

#: Names accepted by :func:`make_preconditioner`.
PRECONDITIONERS = ("jacobi", "ic", "ic0", "ssor", "amg")


class Preconditioner(Operator):
    """Base class: an SPD operator ``M^-1`` with ``name``, ``setup_seconds`` and ``info``.

    Subclasses implement ``_solve(x)`` for ``x`` of shape ``(B, n)`` in
    :attr:`dtype` on :attr:`device`; ``_apply`` casts other dtypes in and out.
    """

    name = "preconditioner"

    def __init__(self, n: int, dtype: torch.dtype, device):
        super().__init__((n,), (n,), dtype, device)
        self.setup_seconds = 0.0
        self.info: dict = {}

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_complex() and not self.dtype.is_complex:
            return complex_over_real(self._apply, x)
        in_dtype = x.dtype
        if x.dtype != self.dtype or x.device != self.device:
            x = x.to(device=self.device, dtype=self.dtype)
        return self._solve(x).to(in_dtype)

    def _solve(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _adjoint(self):
        return self  # symmetric by construction (for symmetric A)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} n={self.shape[0]} dtype={self.dtype} device={self.device} setup={self.setup_seconds:.3g}s>"


def complex_over_real(apply, x: torch.Tensor) -> torch.Tensor:
    """A real linear map applied to a complex batch: real and imaginary parts in one call."""
    k = x.shape[0]
    z = apply(torch.cat([x.real, x.imag]))
    return torch.complex(z[:k], z[k:])


def _operator(A, csr=None, *, real: bool = False, matrix: bool = True, what: str = "this preconditioner"):
    """``(op, csr, empty)`` for ``A``: a square operator on vectors, its canonical CSR (given or built)
    and the mask of its identically zero rows.  ``csr`` is None only for a matrix-free ``A`` when
    ``matrix`` is False."""
    op = as_operator(A, name="A")
    if not op.is_square or len(op.ishape) != 1:
        raise ValueError(f"A must be a square operator on vectors (ishape (n,)), got {op.oshape}x{op.ishape}")
    if real and op.dtype.is_complex:
        raise TypeError(f"A must be real for {what}, got dtype {op.dtype}")
    if csr is None:
        csr = canonical_csr(op)
    if csr is None:
        if matrix:
            raise TypeError(
                f"A must have a matrix form for {what}: a scipy sparse matrix, an array, a SparseMatrix or an "
                f"operator implementing to_sparse(); {type(op).__name__} does not")
        return op, None, None
    return op, csr, np.diff(csr.indptr) == 0


_NP = {torch.float32: np.float32, torch.float64: np.float64, torch.complex64: np.complex64,
       torch.complex128: np.complex128}


def _np_dtype(dtype: torch.dtype):
    return _NP[dtype]


def _work_dtype(op: Operator) -> torch.dtype:
    return op.dtype if op.dtype in _NP else torch.float64


def _double(op: Operator) -> torch.dtype:
    """float64, or complex128 for a complex ``op``: the precision of preconditioners whose work is cheap."""
    return torch.complex128 if op.dtype.is_complex else torch.float64


def _torch_csr(M: scipy.sparse.csr_matrix, dtype, device) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(
            torch.from_numpy(M.indptr.astype(np.int64)),
            torch.from_numpy(M.indices.astype(np.int64)),
            torch.from_numpy(np.asarray(M.data)).to(dtype),
            size=M.shape,
            check_invariants=False,
        ).to(device)


def _tri_solve(B: torch.Tensor, T: torch.Tensor, upper: bool) -> torch.Tensor:
    """Solve ``T Y = B`` for dense ``B`` (n, k) and a sparse-CSR triangular ``T``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # triangular_solve is deprecated for dense input only
        return torch.triangular_solve(B, T, upper=upper).solution


def _check_backend(backend: str) -> str:
    if backend not in ("auto", "numba", "torch"):
        raise ValueError(f"backend must be 'auto', 'numba' or 'torch', got {backend!r}")
    return backend


class _TriangularPairPreconditioner(Preconditioner):
    """Shared machinery of IC(0) and SSOR: a CPU numba path and a torch sparse-CSR path.

    The torch path solves ``lower @ Y = X^T``, scales rows by ``mid`` (if any),
    then solves ``upper @ Z = Y``; it is used on CUDA (or when asked), and a
    failure there (no sparse triangular solve for this build/device) falls back
    to the CPU kernels for good.
    """

    def _init_backend(self, backend: str):
        backend = _check_backend(backend)
        if backend == "auto":
            backend = "torch" if self.device.type != "cpu" else "numba"
        self.backend = backend
        self.info["backend"] = backend
        self._lower_t = self._upper_t = self._mid_t = None
        if backend == "torch":
            lower, upper, mid = self._torch_factors()
            self._lower_t = _torch_csr(lower, self.dtype, self.device)
            self._upper_t = _torch_csr(upper, self.dtype, self.device)
            self._mid_t = None if mid is None else torch.from_numpy(mid).to(self.device, self.dtype)

    def _solve(self, x):
        if self.backend == "torch":
            try:
                y = _tri_solve(x.T.contiguous(), self._lower_t, upper=False)
                if self._mid_t is not None:
                    y = y * self._mid_t.unsqueeze(1)
                return _tri_solve(y, self._upper_t, upper=True).T.contiguous()
            except (RuntimeError, NotImplementedError) as err:
                self.backend = "numba"
                self.info["backend"] = "numba (cpu round trip)"
                self.info["torch_error"] = str(err).splitlines()[0] if str(err) else type(err).__name__
        xn = x.detach().to("cpu").numpy().astype(_np_dtype(self.dtype), order="C", copy=True)
        self._numba_solve(xn)
        return torch.from_numpy(xn).to(x.device)


class IC0Preconditioner(_TriangularPairPreconditioner):
    """Incomplete Cholesky with zero fill: ``M = L L^T`` with ``L`` on the pattern of ``tril(A)``.

    See :func:`ic0_preconditioner`.

    Attributes
    ----------
    L : scipy.sparse.csr_matrix, (n, n)
        The lower-triangular factor (unit rows on identically zero rows of ``A``).
    guarded_pivots : int
        Number of pivots ``<= pivot_tol * A_ii`` replaced by ``A_ii``.
    """

    name = "ic0"

    def __init__(self, A, *, pivot_tol: float = 1e-12, backend: str = "auto", csr=None):
        t0 = time.perf_counter()
        op, csr, empty = _operator(A, csr, real=True, what="IC(0)")
        if not isinstance(pivot_tol, numbers.Real) or not 0 <= pivot_tol < 1:
            raise ValueError(f"pivot_tol must be a number in [0, 1), got {pivot_tol!r}")
        dtype = _work_dtype(op)
        super().__init__(op.shape[0], dtype, op.device)
        csr = csr.astype(np.float64)
        diag = csr.diagonal()
        K.check_diagonal(diag, empty, positive=True)
        low = scipy.sparse.tril(csr + scipy.sparse.diags(empty.astype(np.float64)), format="csr")
        low.sort_indices()
        n = low.shape[0]
        low.indptr = low.indptr.astype(np.int64)
        low.indices = low.indices.astype(np.int64)
        Ldata, nguard = K.ic0_factor(low.indptr, low.indices, low.data, float(pivot_tol))
        L = scipy.sparse.csr_matrix((Ldata, low.indices, low.indptr), shape=(n, n))
        if not np.all(np.isfinite(Ldata)):
            raise ValueError("A: IC(0) produced non-finite values; is A symmetric positive (semi-)definite?")
        self.L = L
        data = L.data.astype(_np_dtype(dtype))
        inv_diag = K.inverse_diagonal(L.indptr, data)
        self._Ln = (L.indptr, L.indices, data, inv_diag)
        # L^T stored as CSR too: a gather-based backward solve is ~2.5x faster
        # than scattering through L's rows (1.5 vs 3.8 ms at 512^2)
        U = scipy.sparse.csr_matrix((data, L.indices, L.indptr), shape=(n, n)).T.tocsr()
        U.sort_indices()
        self._Un = (U.indptr, U.indices, U.data, inv_diag)
        self.guarded_pivots = int(nguard)
        self.info.update(guarded_pivots=int(nguard), empty_rows=int(empty.sum()), nnz_L=int(L.nnz))
        self._init_backend(backend)
        self.setup_seconds = time.perf_counter() - t0

    def _torch_factors(self):
        return self.L, self.L.T.tocsr(), None

    def _numba_solve(self, xn):
        K.lower_solve(*self._Ln, xn)
        K.upper_solve(*self._Un, xn)


class SSORPreconditioner(_TriangularPairPreconditioner):
    """``M = (D/w + L) (D/w)^-1 (D/w + U) / (2 - w)``; see :func:`ssor_preconditioner`."""

    name = "ssor"

    def __init__(self, A, omega: float = 1.0, *, backend: str = "auto", csr=None):
        t0 = time.perf_counter()
        op, csr, empty = _operator(A, csr, what="SSOR")
        omega = _check_omega(omega)
        dtype = _work_dtype(op)
        super().__init__(op.shape[0], dtype, op.device)
        csr = csr.astype(_np_dtype(dtype), copy=False)
        diag = csr.diagonal().real.astype(np.float64)
        K.check_diagonal(diag, empty, positive=True)  # an SPD preconditioner needs D > 0
        self._csr = csr
        self._d, self._empty_mask = diag, empty
        self._empty = torch.from_numpy(np.nonzero(empty)[0]).to(self.device) if empty.any() else None
        self._backend_choice = backend
        self._set_omega(omega)
        self.setup_seconds = time.perf_counter() - t0

    def _set_omega(self, omega: float) -> None:
        diag = self._d.copy()
        # rows of an identically zero row act as the identity: x_i = w (2-w) r_i / d_i
        diag[self._empty_mask] = omega * (2.0 - omega)
        self.omega = omega
        self._diag = diag.astype(_np_dtype(self.dtype))
        self._wdinv = (omega / self._diag).astype(self._diag.dtype)
        self.info.update(omega=omega, empty_rows=int(self._empty_mask.sum()))
        self._init_backend(self._backend_choice)

    def with_omega(self, omega: float) -> "SSORPreconditioner":
        """The same preconditioner with another ``omega``: only the diagonal terms are recomputed."""
        t0 = time.perf_counter()
        out = copy.copy(self)
        out.info = dict(self.info)
        out._set_omega(_check_omega(omega))
        out.setup_seconds = time.perf_counter() - t0
        return out

    def _torch_factors(self):
        D = scipy.sparse.diags(self._diag.astype(np.float64) / self.omega)
        lower = (scipy.sparse.tril(self._csr, -1) + D).tocsr()
        upper = (scipy.sparse.triu(self._csr, 1) + D).tocsr()
        lower.sort_indices()
        upper.sort_indices()
        mid = (2.0 - self.omega) * self._diag.astype(np.float64) / self.omega
        return lower, upper, mid

    def _solve(self, x):
        z = super()._solve(x)
        if self._empty is not None:  # exact identity there (the diagonal trick is only up to rounding)
            z[:, self._empty] = x[:, self._empty]
        return z

    def _numba_solve(self, xn):
        K.ssor_apply(self._csr.indptr, self._csr.indices, self._csr.data, self._diag, self.omega, self._wdinv, xn)


class JacobiPreconditioner(Preconditioner):
    """``M^-1 = D^-1`` on nonzero rows, the identity on identically zero rows."""

    name = "jacobi"

    def __init__(self, A, *, csr=None):
        t0 = time.perf_counter()
        op, csr, empty = _operator(A, csr, matrix=False)
        dtype = _double(op)  # a diagonal costs nothing to keep exact; solves in any precision cast to it
        super().__init__(op.shape[0], dtype, op.device)
        if csr is not None:
            diag = csr.diagonal()
            K.check_diagonal(diag, empty)
            inv = np.where(empty, 1.0, 1.0 / np.where(empty, 1.0, diag))
            self.inv_diag = torch.from_numpy(inv).to(self.device, dtype)
        else:
            # matrix-free operator: its diagonal; zero entries are taken as empty rows
            try:
                d = op.diagonal().reshape(-1).to(self.device, dtype)
            except NotImplementedError:
                raise TypeError(f"A ({type(op).__name__}) has neither a stored matrix nor a diagonal(): Jacobi "
                                "needs one of them; use method='cg' with your own M") from None
            empty = d == 0
            self.inv_diag = torch.where(empty, torch.ones_like(d), 1.0 / torch.where(empty, torch.ones_like(d), d))
            empty = empty.cpu().numpy()
        self.info.update(empty_rows=int(np.asarray(empty).sum()))
        self.setup_seconds = time.perf_counter() - t0

    def _solve(self, x):
        return x * self.inv_diag

    def diagonal(self):
        return self.inv_diag

    def to_sparse(self):
        return scipy.sparse.diags(self.inv_diag.cpu().numpy()).tocsr()


class AMGPreconditioner(Preconditioner):
    """One pyamg smoothed-aggregation cycle; see :func:`amg_preconditioner`.

    Attributes
    ----------
    ml : pyamg.multilevel.MultilevelSolver
        The hierarchy, built on the active (nonzero-row) submatrix.
    active : numpy.ndarray of bool, (n,)
        Rows the hierarchy acts on (all rows unless ``A`` has empty rows).
    """

    name = "amg"

    def __init__(self, A, *, cycle: str = "V", csr=None, **pyamg_options):
        t0 = time.perf_counter()
        op, csr, empty = _operator(A, csr, what="AMG")
        dtype = _double(op)  # pyamg computes in double precision
        super().__init__(op.shape[0], dtype, op.device)
        if cycle not in ("V", "W", "F"):
            raise ValueError(f"cycle must be 'V', 'W' or 'F', got {cycle!r}")
        self._np = np.complex128 if csr.dtype.kind == "c" or dtype.is_complex else np.float64
        csr = csr.astype(self._np)
        K.check_diagonal(csr.diagonal(), empty)
        active = ~empty
        self.active = active
        self._all = bool(active.all())
        self._index = torch.from_numpy(np.nonzero(active)[0]).to(self.device)
        sub = csr if self._all else csr[active][:, active].tocsr()
        opts = dict(pyamg_options)
        B = opts.get("B")
        if B is not None and not isinstance(B, str):
            B = np.asarray(B)
            if B.shape[0] == csr.shape[0] and not self._all:
                opts["B"] = B[active]
        self.ml = pyamg.smoothed_aggregation_solver(sub, **opts)
        self._M = self.ml.aspreconditioner(cycle=cycle)
        self.cycle = cycle
        self.info.update(
            cycle=cycle,
            levels=len(self.ml.levels),
            operator_complexity=float(self.ml.operator_complexity()),
            empty_rows=int(empty.sum()),
        )
        self.setup_seconds = time.perf_counter() - t0

    def _solve(self, x):
        xs = x if self._all else x[:, self._index]
        xn = xs.detach().to("cpu", torch.complex128 if self._np == np.complex128 else torch.float64).numpy()
        z = np.empty_like(xn)
        for i in range(xn.shape[0]):
            z[i] = self._M.matvec(np.ascontiguousarray(xn[i]))
        zt = torch.from_numpy(z).to(x.device, x.dtype)
        if self._all:
            return zt
        out = x.clone()
        out[:, self._index] = zt
        return out


# ------------------------------------------------------------------ public
def _check_omega(omega) -> float:
    if not isinstance(omega, numbers.Real) or not 0.0 < float(omega) < 2.0:
        raise ValueError(f"omega must be a real number in (0, 2), got {omega!r}")
    return float(omega)


def jacobi_preconditioner(A, *, csr=None) -> Operator:
    """Diagonal (Jacobi) preconditioner ``M^-1 = D^-1``.

    Parameters
    ----------
    A : Operator, scipy sparse matrix or array, (n, n)
        Real; the diagonal is taken from ``A.to_sparse()`` (or, for a
        matrix-free operator, ``A.diagonal()``, whose zero entries then count
        as empty rows).

    Returns
    -------
    JacobiPreconditioner
        Applies ``x / diag(A)`` row-wise to ``(B, n)`` tensors; the identity on
        identically zero rows.

    Raises
    ------
    ValueError
        A nonzero row has a zero diagonal.
    """
    return JacobiPreconditioner(A, csr=csr)


def ic0_preconditioner(A, *, pivot_tol: float = 1e-12, backend: str = "auto", csr=None) -> Operator:
    """Incomplete Cholesky IC(0) preconditioner ``M = L L^T``.

    ``L`` has the sparsity pattern of ``tril(A)`` and satisfies
    ``(L L^T)_ij = A_ij`` on that pattern (the defining property).  Computed
    with a compiled row-by-row (left-looking) kernel; applied with two
    compiled triangular solves.

    Parameters
    ----------
    A : Operator with ``to_sparse()``, scipy sparse matrix or array, (n, n)
        Real symmetric positive (semi-)definite; only ``tril(A)`` is read.
        Identically zero rows get ``L_ii = 1`` (identity).
    pivot_tol : float
        A pivot ``A_ii - sum_k L_ik^2 <= pivot_tol * A_ii`` (singular or
        nearly singular systems, e.g. pure Neumann) is replaced by ``A_ii``;
        ``info["guarded_pivots"]`` counts them.
    backend : {"auto", "numba", "torch"}
        ``"auto"``: numba kernels on CPU, torch sparse triangular solves on
        CUDA (CPU round trip if unavailable; see ``info["backend"]``).

    Returns
    -------
    IC0Preconditioner

    Raises
    ------
    ValueError
        A nonzero row has a non-positive diagonal; the factorization overflowed.
    TypeError
        ``A`` has no matrix form, or is complex.
    """
    return IC0Preconditioner(A, pivot_tol=pivot_tol, backend=backend, csr=csr)


def ssor_preconditioner(A, omega: float = 1.0, *, backend: str = "auto", csr=None) -> Operator:
    """SSOR preconditioner ``M = (D/w + L) (D/w)^-1 (D/w + U) / (2 - w)``.

    ``L``/``U`` are the strict lower/upper triangles of ``A``.  For symmetric
    ``A`` with positive diagonal and ``0 < w < 2``, ``M`` is SPD, and
    ``M^-1 b`` equals one symmetric SOR sweep (forward, then backward) from
    ``x = 0``.

    Parameters
    ----------
    A : Operator with ``to_sparse()``, scipy sparse matrix or array, (n, n)
    omega : float in (0, 2)
    backend : {"auto", "numba", "torch"}
        As in :func:`ic0_preconditioner`.

    Returns
    -------
    SSORPreconditioner
    """
    return SSORPreconditioner(A, omega, backend=backend, csr=csr)


def amg_preconditioner(A, **pyamg_options) -> Operator:
    """One smoothed-aggregation AMG cycle (pyamg) as a preconditioner.

    The hierarchy is :func:`pyamg.smoothed_aggregation_solver` built on the
    submatrix of nonzero rows; every application runs one cycle from a zero
    initial guess (``ml.aspreconditioner(cycle)``), row by row for a batch;
    identically zero rows act as the identity.  pyamg's default smoothers are
    symmetric Gauss–Seidel, so the cycle is SPD.

    Parameters
    ----------
    A : Operator with ``to_sparse()``, scipy sparse matrix or array, (n, n)
    cycle : {"V", "W", "F"}, keyword
        Cycle type (default ``"V"``).
    **pyamg_options
        Passed to ``pyamg.smoothed_aggregation_solver`` (``strength``,
        ``smooth``, ``presmoother``, ``postsmoother``, ``max_coarse``, ``B``
        (full-length rows are restricted to the active rows), ...).

    Returns
    -------
    AMGPreconditioner
        ``.ml`` is the pyamg hierarchy.
    """
    return AMGPreconditioner(A, **pyamg_options)


def make_preconditioner(name: str, A, *, csr=None, **options) -> Operator:
    """Build a preconditioner by name.

    Parameters
    ----------
    name : {"jacobi", "ic", "ic0", "ssor", "amg"}
        ``"ic"`` is an alias of ``"ic0"``.
    A : the matrix (see the individual constructors)
    csr : scipy.sparse.csr_matrix, optional
        ``A``'s canonical CSR form when the caller already has it (built otherwise).
    **options
        Passed to the constructor (``omega`` for SSOR, pyamg options for AMG, ...).

    Raises
    ------
    ValueError
        Unknown ``name``.
    """
    if not isinstance(name, str) or name.lower() not in PRECONDITIONERS:
        raise ValueError(f"name must be one of {PRECONDITIONERS}, got {name!r}")
    key = name.lower()
    if key == "jacobi":
        if options:
            raise TypeError(f"jacobi_preconditioner takes no options, got {sorted(options)}")
        return jacobi_preconditioner(A, csr=csr)
    if key in ("ic", "ic0"):
        return ic0_preconditioner(A, csr=csr, **options)
    if key == "ssor":
        return ssor_preconditioner(A, csr=csr, **options)
    return AMGPreconditioner(A, csr=csr, **options)


__all__ = [
    "PRECONDITIONERS",
    "Preconditioner",
    "JacobiPreconditioner",
    "IC0Preconditioner",
    "SSORPreconditioner",
    "AMGPreconditioner",
    "jacobi_preconditioner",
    "ic0_preconditioner",
    "ssor_preconditioner",
    "amg_preconditioner",
    "make_preconditioner",
]
