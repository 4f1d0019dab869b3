"""``krylearn.solve`` and ``cg``: one call, one :class:`~krylearn.solvers.solver.Solver`."""

from __future__ import annotations

from .result import SolveResult
from .solver import Solver, available_methods, register_method

__all__ = ["solve", "cg", "sor", "ssor", "gauss_seidel", "jacobi", "available_methods", "register_method",
           "PCG_METHODS", "RELAXATION_METHODS"]

#: Preconditioned-CG methods and the preconditioner each builds.
PCG_METHODS = {"pcg-jacobi": "jacobi", "pcg-ic": "ic0", "pcg-ssor": "ssor", "pcg-amg": "amg"}

#: Stationary methods.
RELAXATION_METHODS = {"sor": "sor", "ssor": "ssor", "gauss-seidel": "gauss_seidel", "jacobi": "jacobi"}


def solve(A, b, method: str = "cg", x0=None, *, rtol: float = 1e-6, atol: float = 0.0, maxiter=None,
          callback=None, **options) -> SolveResult:
    """Solve ``A x = b`` with a named method.

    Parameters
    ----------
    A : Operator, scipy sparse matrix or LinearOperator, numpy/torch/DLPack array, (n, n)
        Also anything with ``shape`` and ``matvec``.  Identically zero rows
        and columns (solid/empty cells of a fluid grid in the full-grid
        convention) are allowed; ``b`` must be zero there and ``x`` is
        returned zero there.  Never modified.
    b : array, (n,), (n, 1) or (k, n); or shaped like the operator's input
        Right-hand side(s).  numpy in, numpy out; torch in, torch out; a
        DLPack array (cupy, JAX, Warp) in, the same kind out, on its device.
    method : str
        ``"cg"``, ``"pcg-jacobi"``, ``"pcg-ic"``, ``"pcg-ssor"``,
        ``"pcg-amg"``, ``"mgpcg"`` (geometric multigrid on a
        :class:`~krylearn.operators.PoissonGrid`, or on a stored grid
        Laplacian with ``grid_shape``), ``"sor"``, ``"ssor"``,
        ``"gauss-seidel"``, ``"jacobi"``, a learned method such as
        ``"dcdm"``, or one added with
        :func:`register_method` (see :func:`available_methods`).
    x0 : like ``b``, or ``"Mb"``, optional
        Initial guess.
    rtol, atol : float
        Stopping rule ``||b - A x|| <= max(rtol * ||b||, atol)`` (``inf``
        allowed).  ``converged=True`` means it holds on the true residual of
        the system you gave, whatever the scale of ``b``.
    maxiter : int, optional
        Iteration limit (method default when None).
    callback : callable, optional
        ``callback(xk)`` after every iteration, ``xk`` in your array type.
    **options
        Method options: ``M`` (a preconditioner for ``cg``: an Operator,
        a scipy ``LinearOperator`` such as pyamg's ``ml.aspreconditioner()``,
        a matrix or a callable), ``omega`` for ``sor``/``ssor``/``pcg-ssor``/
        ``jacobi``, pyamg options for ``pcg-amg``, ``grid_shape``, ``flags``,
        ``smoother``, ``sweeps``, ``coarse_size``, ``precision`` for ``mgpcg``, ``nullspace``, ``dtype``,
        ``check_symmetry=False`` (skip the symmetry check of the CG family).

    Returns
    -------
    SolveResult

    See Also
    --------
    Solver : set up once, solve many right-hand sides (simulation loops).

    Examples
    --------
    >>> import numpy as np, krylearn
    >>> from krylearn.operators.stencil import PoissonGrid
    >>> A = PoissonGrid((32, 32), boundary="empty")
    >>> res = krylearn.solve(A, np.ones(32 * 32), method="pcg-amg", rtol=1e-8)
    >>> res.converged
    True
    """
    return Solver(A, method, rtol=rtol, atol=atol, maxiter=maxiter, **options).solve(b, x0, callback=callback)


def cg(A, b, x0=None, *, rtol=1e-6, atol=0.0, maxiter=None, M=None, callback=None, nullspace="auto",
       dtype=None, check_symmetry=True) -> SolveResult:
    """Solve ``A x = b`` for Hermitian positive (semi-)definite ``A`` by (preconditioned) CG.

    ``krylearn.solve(A, b, method="cg", M=M, ...)`` under another name, with
    scipy's argument order.

    Parameters
    ----------
    A, b, x0, rtol, atol, maxiter, callback
        As in :func:`solve`.
    M : preconditioner, optional
        ``M^-1 ~ A^-1``, Hermitian positive definite: an Operator, a scipy
        ``LinearOperator`` (pyamg's ``ml.aspreconditioner()``), a matrix, or a
        callable on ``(k, n)`` tensors.
    nullspace : {"auto", None} or ConstantNullSpace
        ``"auto"`` finds exactly singular components (pure-Neumann regions) of
        a stored matrix; iterations run on the consistent part of ``b`` and the
        minimum-norm solution is returned.
    dtype : torch.dtype, optional
        Working precision (default: promote ``A`` and ``b``).
    check_symmetry : bool
        Reject a stored matrix that is not Hermitian (default True).

    Returns
    -------
    SolveResult
        ``reason``: ``"converged"``, ``"zero_rhs"``, ``"maxiter"``,
        ``"indefinite"`` (``p.Ap <= 0`` or ``r.z <= 0``: ``A`` or ``M`` is not
        positive definite), ``"nonfinite"``, ``"stagnated"``,
        ``"unreachable"`` or ``"least_squares"`` (singular and inconsistent).

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from krylearn.solvers import cg
    >>> A = sp.diags([-1, 2, -1], [-1, 0, 1], shape=(50, 50), format="csr")
    >>> res = cg(A, np.ones(50), rtol=1e-10)
    >>> res.converged, res.iterations <= 50
    (True, True)
    """
    return solve(A, b, "cg", x0, rtol=rtol, atol=atol, maxiter=maxiter, callback=callback, M=M,
                 nullspace=nullspace, dtype=dtype, check_symmetry=check_symmetry)


def sor(A, b, x0=None, *, omega=1.0, rtol=1e-6, atol=0.0, maxiter=None, callback=None, ordering=None,
        sweep="forward") -> SolveResult:
    """Solve ``A x = b`` by successive over-relaxation.

    ``x_i <- (1 - w) x_i + w (b_i - sum_{j != i} A_ij x_j) / A_ii`` with the
    already updated ``x_j``.

    Parameters
    ----------
    A : matrix with a stored form, (n, n)
        Nonzero diagonal on every nonzero row; identically zero rows are left
        untouched.  Converges for symmetric positive definite ``A`` and any
        ``0 < omega < 2``.
    b : array, (n,) or (k, n)
        Right-hand side(s); each of the ``k`` systems stops on its own.
    x0 : like ``b``, optional
        Initial guess (default zeros).
    omega : float in (0, 2)
        Relaxation factor (1: Gauss–Seidel).
    rtol, atol : float
        Stop when ``||b - A x|| <= max(rtol ||b||, atol)``, checked after every
        iteration on the true residual.
    maxiter : int, optional
        Iteration limit (default 10 000); an iteration is one sweep, or a
        forward plus a backward sweep for ``sweep="symmetric"``.
    callback : callable, optional
        ``callback(xk)`` after every iteration (the caller's array type).
    ordering : {"lexicographic", "multicolor"}, optional
        Default: ``"lexicographic"`` on CPU (compiled sweeps, the residual
        fused into the sweep), ``"multicolor"`` on CUDA.
    sweep : {"forward", "backward", "symmetric"}

    Returns
    -------
    SolveResult
        ``reason`` adds ``"diverged"`` (residual above 1e10 times the initial
        one); ``info`` holds ``omega``, ``ordering``, ``sweep``, ``sweeps``
        (one-directional passes, summed over systems), ``colors`` (multicolour)
        and ``residual_refreshes``.

    Examples
    --------
    >>> import numpy as np, pyamg
    >>> from krylearn.solvers import sor
    >>> A = pyamg.gallery.poisson((16, 16), format="csr")
    >>> res = sor(A, np.ones(256), omega=1.7, rtol=1e-8)
    >>> bool(res.converged), res.reason
    (True, 'converged')
    """
    return solve(A, b, "sor", x0, rtol=rtol, atol=atol, maxiter=maxiter, callback=callback, omega=omega,
                 ordering=ordering, sweep=sweep)


def ssor(A, b, x0=None, *, omega=1.0, rtol=1e-6, atol=0.0, maxiter=None, callback=None,
         ordering=None) -> SolveResult:
    """Symmetric SOR: each iteration is a forward then a backward SOR sweep.

    Parameters and result as in :func:`sor` (``info["sweeps"]`` counts two per
    iteration).  One iteration from ``x = 0`` equals applying
    :func:`~krylearn.solvers.preconditioners.ssor_preconditioner` to ``b``.
    """
    return solve(A, b, "ssor", x0, rtol=rtol, atol=atol, maxiter=maxiter, callback=callback, omega=omega,
                 ordering=ordering)


def gauss_seidel(A, b, x0=None, *, rtol=1e-6, atol=0.0, maxiter=None, callback=None, ordering=None,
                 sweep="forward") -> SolveResult:
    """Gauss–Seidel: :func:`sor` with ``omega = 1``."""
    return solve(A, b, "gauss-seidel", x0, rtol=rtol, atol=atol, maxiter=maxiter, callback=callback,
                 ordering=ordering, sweep=sweep)


def jacobi(A, b, x0=None, *, omega=1.0, rtol=1e-6, atol=0.0, maxiter=None, callback=None) -> SolveResult:
    """(Damped) Jacobi iteration ``x <- x + w D^-1 (b - A x)``.

    Parameters
    ----------
    A : matrix, or a matrix-free operator with ``diagonal()`` (its zero
        entries count as empty rows), (n, n)
    b, x0, rtol, atol, maxiter, callback
        As in :func:`sor` (one iteration = one matrix product).
    omega : float in (0, 1]
        Damping.  Restricted to ``(0, 1]``: that is where Jacobi converges for
        every strictly (or irreducibly) diagonally dominant matrix and every
        SPD matrix with ``lambda_max(D^-1 A) < 2`` (e.g. Laplacians);
        over-relaxed Jacobi diverges on them.  ``2/3`` is the classical
        smoothing choice.

    Returns
    -------
    SolveResult
        ``info["sweeps"]`` counts matrix products (one per iteration and system).
    """
    return solve(A, b, "jacobi", x0, rtol=rtol, atol=atol, maxiter=maxiter, callback=callback, omega=omega)
