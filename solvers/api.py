"""``krylearn.solve``: one entry point for every solver."""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from ._common import check_tolerances, prepare
from .krylov import cg
from .nullspace import detect_constant_nullspace, empty_rows, matrix_form
from . import registry
from .result import SolveResult

#: Preconditioned-CG methods and the preconditioner each builds.
PCG_METHODS = {
    "pcg-jacobi": "jacobi",
    "pcg-ic": "ic0",
    "pcg-ssor": "ssor",
    "pcg-amg": "amg",
}

#: Stationary methods and their solver functions in :mod:`krylearn.solvers.relaxation`.
RELAXATION_METHODS = {
    "sor": "sor",
    "ssor": "ssor",
    "gauss-seidel": "gauss_seidel",
    "jacobi": "jacobi",
}

# Methods registered at run time by user code: name -> a callable with the signature
# ``fn(A, b, x0=None, *, rtol, atol, maxiter, **options) -> SolveResult``.  Learned methods
# declare theirs in their own folder (``solvers/<name>/method.py``, see :mod:`.registry`).
_REGISTRY: dict[str, object] = {}


def register_method(name: str, fn) -> None:
    """Make ``krylearn.solve(A, b, method=name)`` call ``fn(A, b, x0, *, rtol, atol, maxiter, **options)``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    _REGISTRY[name] = fn


def available_methods() -> list[str]:
    """Names accepted by :func:`solve`."""
    return ["cg", *PCG_METHODS, *RELAXATION_METHODS, *registry.solver_names(), *_REGISTRY]


def _resolve(name: str) -> Callable | None:
    if name in _REGISTRY:
        return _REGISTRY[name]
    return registry.solver_entry(name)


def solve(A, b, method: str = "cg", x0=None, *, rtol: float = 1e-6, atol: float = 0.0,
          maxiter: int | None = None, **options) -> SolveResult:
    """Solve ``A x = b`` with a named method.

    Parameters
    ----------
    A : Operator, scipy sparse matrix, numpy array or torch tensor, (n, n)
        Rows and columns that are identically zero (solid/empty cells of a
        fluid grid in the full-grid convention) are allowed; ``b`` must be
        zero there and ``x`` is returned zero there.
    b : numpy.ndarray or torch.Tensor, (n,) or (k, n)
        Right-hand side(s).  numpy in, numpy out; torch in, torch out.
    method : str
        ``"cg"``, ``"pcg-jacobi"``, ``"pcg-ic"``, ``"pcg-ssor"``,
        ``"pcg-amg"``, ``"sor"``, ``"ssor"``, ``"gauss-seidel"``,
        ``"jacobi"``, or a method registered with :func:`register_method`
        (see :func:`available_methods`).
    x0 : like ``b``, optional
        Initial guess.
    rtol, atol : float
        Stopping rule ``||b - A x|| <= max(rtol * ||b||, atol)``.
    maxiter : int, optional
        Iteration limit (method default when None).
    **options
        Passed to the method: ``omega`` for ``sor``/``ssor``/``pcg-ssor``/
        ``jacobi``; pyamg options for ``pcg-amg``; ``callback``, ``nullspace``
        and ``dtype`` for the CG family; ``check_symmetry=False`` skips the
        symmetry check CG-family methods make on stored matrices.

    Returns
    -------
    SolveResult
        ``setup_seconds`` includes the preconditioner build.

    Examples
    --------
    >>> import numpy as np, krylearn
    >>> from krylearn.operators.stencil import PoissonGrid
    >>> A = PoissonGrid((32, 32), boundary="empty")
    >>> res = krylearn.solve(A, np.ones(32 * 32), method="pcg-amg", rtol=1e-8)
    >>> res.converged
    True
    """
    if not isinstance(method, str):
        raise TypeError(f"method must be a string, got {type(method).__name__}")
    check_tolerances(rtol, atol, maxiter)
    t_checks = time.perf_counter()
    system = prepare(A, b, x0, rtol=rtol, atol=atol, maxiter=maxiter)
    A = system.op
    csr = matrix_form(A)  # built once for every structural check below
    _check_empty_rows(system, csr)
    common = dict(rtol=rtol, atol=atol, maxiter=maxiter)
    if method == "cg" or method in PCG_METHODS:
        if options.pop("check_symmetry", True):
            _check_symmetric(A, csr)
        if options.get("nullspace", "auto") == "auto":
            options["nullspace"] = detect_constant_nullspace(A, A=csr)
    checks_seconds = time.perf_counter() - t_checks
    res = _dispatch(A, b, x0, method, common, options)
    res.setup_seconds += checks_seconds  # input checks and null-space detection are setup too
    return res


def _dispatch(A, b, x0, method: str, common: dict, options: dict) -> SolveResult:
    """Run ``method`` on the checked operator ``A``."""
    if method == "cg":
        return cg(A, b, x0, **common, **options)
    if method in PCG_METHODS:
        from .preconditioners import make_preconditioner

        cg_opts = {k: options.pop(k) for k in ("callback", "nullspace", "dtype") if k in options}
        t0 = time.perf_counter()
        M = make_preconditioner(PCG_METHODS[method], A, **options)
        setup = time.perf_counter() - t0
        res = cg(A, b, x0, M=M, **common, **cg_opts)
        res.setup_seconds += setup
        res.method = method
        return res
    if method in RELAXATION_METHODS:
        from . import relaxation

        res = getattr(relaxation, RELAXATION_METHODS[method])(A, b, x0, **common, **options)
        res.method = method
        return res
    fn = _resolve(method)
    if fn is not None:
        res = fn(A, b, x0, **common, **options)
        res.method = res.method or method
        return res
    raise ValueError(f"method must be one of {available_methods()}, got {method!r}")


def _check_symmetric(op, csr) -> None:
    """Reject a stored matrix that is not Hermitian (CG would silently go wrong)."""
    from ..operators import Dense, SparseMatrix

    if csr is None or not isinstance(op, (SparseMatrix, Dense)):
        return  # matrix-free operators are trusted (and checked through p.Ap > 0)
    scale = abs(csr).max() if csr.nnz else 0.0
    asym = abs(csr - csr.conj().T).max() if csr.nnz else 0.0
    if asym > 1e-12 * scale:
        raise ValueError(
            f"A is not symmetric (max |A - A^H| = {asym:.3g}, max |A| = {scale:.3g}): CG and the PCG "
            "methods need a symmetric positive definite matrix; pass check_symmetry=False to override"
        )


def _check_empty_rows(system, csr) -> None:
    """Reject a right-hand side that is nonzero on an identically zero row of ``A``."""
    empty = empty_rows(system.op, csr) if csr is not None else None
    if empty is None or not empty.any():
        return
    b_abs = system.b.abs().cpu().numpy()
    bad = b_abs[:, empty].max(axis=1) > 0
    if np.any(bad):
        idx = int(np.nonzero(empty & (b_abs[int(np.argmax(bad))] > 0))[0][0])
        raise ValueError(
            f"b is nonzero at row {idx}, where A is identically zero (a solid/empty cell in the "
            "full-grid convention): the system has no solution; zero b there"
        )
