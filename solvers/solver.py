"""``Solver``: set up once, solve many times — the shape simulation code needs.

One object per matrix (and method): the checks, the null-space detection,
the preconditioner or network are set up in the constructor; every
:meth:`Solver.solve` only iterates.  :meth:`Solver.update` refreshes what
depends on new matrix values or options, and :meth:`Solver.aspreconditioner`
hands the method's preconditioner to scipy or pyamg.  :func:`krylearn.solve`
is ``Solver(...).solve(...)``.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse.linalg
import torch

from ..operators.base import _numpy_dtype
from ..operators.stencil import PoissonGrid
from . import registry
from .base import IterativeMethod
from .driver import iterate
from .inputs import (
    canonical_csr,
    check_maxiter,
    check_tolerances,
    prepare_operator,
    prepare_rhs,
    working_dtype,
)
from .krylov import PCG_CLASSES, CGMethod
from .relaxation import RELAXATION_CLASSES
from .result import SolveResult

__all__ = ["Solver", "METHODS", "register_method", "available_methods", "method_class"]

#: The classical methods, by name.
METHODS: dict[str, type] = {"cg": CGMethod, **PCG_CLASSES, **RELAXATION_CLASSES}

# Methods registered at run time by user code: name -> IterativeMethod subclass or a function
# ``fn(A, b, x0=None, *, rtol, atol, maxiter, **options) -> SolveResult``.  Learned methods declare
# theirs in their own folder (``solvers/<name>/method.py``, see :mod:`.registry`).
_USER: dict[str, object] = {}


def register_method(name: str, fn) -> None:
    """Make ``krylearn.solve(A, b, method=name)`` and ``Solver(A, name)`` use ``fn``.

    ``fn`` is an :class:`~krylearn.solvers.base.IterativeMethod` subclass (set
    up once, driven by the shared driver) or a function
    ``fn(A, b, x0, *, rtol, atol, maxiter, **options) -> SolveResult`` (called
    on every solve).
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    if not callable(fn):
        raise TypeError(f"fn must be an IterativeMethod subclass or a function, got {type(fn).__name__}")
    _USER[name] = fn


def available_methods() -> list[str]:
    """Names accepted by :func:`krylearn.solve` and :class:`Solver`."""
    return [*METHODS, *registry.solver_names(), *_USER]


def method_class(method: str):
    """The :class:`IterativeMethod` subclass (or plain function) behind ``method``."""
    if not isinstance(method, str):
        raise TypeError(f"method must be a string, got {type(method).__name__}")
    found = METHODS.get(method) or _USER.get(method) or registry.solver_entry(method)
    if found is None:
        raise ValueError(f"method must be one of {available_methods()}, got {method!r}")
    return found


def takes_grid(method: str) -> bool:
    """Whether ``method`` works on the grid behind a stored matrix (``grid_shape``, ``flags`` options)."""
    try:
        cls = method_class(method)
    except ValueError:
        return False  # an unknown method: the solve itself reports it
    return "grid_shape" in (getattr(cls, "options", None) or {})


def matrix_free(method: str) -> bool:
    """Whether ``method`` runs on a :class:`~krylearn.operators.PoissonGrid` without building its matrix."""
    try:
        cls = method_class(method)
    except ValueError:
        return False
    return getattr(cls, "uses_matrix", True) is False


class Solver:
    """A linear solver set up once for ``A`` and reused for many right-hand sides.

    Parameters
    ----------
    A : Operator, scipy sparse matrix or LinearOperator, numpy/torch/DLPack array, (n, n)
        See :func:`krylearn.solve`.  Never modified.
    method : str
        ``"cg"``, ``"pcg-jacobi"``, ``"pcg-ic"``, ``"pcg-ssor"``, ``"pcg-amg"``,
        ``"mgpcg"``, ``"sor"``, ``"ssor"``, ``"gauss-seidel"``, ``"jacobi"``,
        a learned method (``"dcdm"``, ...) or one added with
        :func:`register_method`.  ``"mgpcg"`` on a
        :class:`~krylearn.operators.PoissonGrid` builds no matrix: its setup
        is a restriction of the grid's weights, cheap enough to pay every
        frame.
    rtol, atol : float
        Stopping rule ``||b - A x|| <= max(rtol * ||b||, atol)`` (defaults for
        every :meth:`solve`; ``inf`` allowed).
    maxiter : int, optional
        Iteration limit (method default when None).
    **options
        Method options (``M``, ``omega``, pyamg options, ``model``,
        ``grid_shape``, ...); unknown ones raise ``TypeError``.

    Attributes
    ----------
    setup_seconds : float
        Time of the last setup (constructor or :meth:`update`).

    Examples
    --------
    >>> import numpy as np, krylearn
    >>> from krylearn.operators import PoissonGrid
    >>> A = PoissonGrid((32, 32), boundary="empty").to_sparse()
    >>> S = krylearn.Solver(A, method="pcg-amg", rtol=1e-8)
    >>> r1 = S.solve(np.ones(32 * 32))
    >>> r2 = S.solve(np.arange(32 * 32.0), x0=r1.x)      # no setup: setup_seconds == 0
    >>> bool(r1.converged and r2.converged), r2.setup_seconds
    (True, 0.0)
    >>> S.update(A * 2.0).solve(np.ones(32 * 32)).converged
    True
    """

    def __init__(self, A, method: str = "cg", *, rtol: float = 1e-6, atol: float = 0.0, maxiter=None, **options):
        self.rtol, self.atol = check_tolerances(rtol, atol)
        self.maxiter = check_maxiter(maxiter)
        self.method = method
        self._cls = method_class(method)
        self.options = dict(options)
        self._pending_setup = 0.0
        self._setup(A)

    # ------------------------------------------------------------- setup
    def _setup(self, A) -> None:
        t0 = time.perf_counter()
        self.A = A
        self.op, self._original = prepare_operator(A)
        self._ops = {}
        if isinstance(self._cls, type) and issubclass(self._cls, IterativeMethod):
            on_grid = getattr(self._cls, "uses_matrix", True) is False and isinstance(self._original, PoissonGrid)
            self.csr = None if on_grid else canonical_csr(self.op)
            self.impl = self._cls(self.op, self.csr, **self.options)
        else:
            self.csr = None
            self.impl = None  # a plain function: all its setup happens per solve
        self.setup_seconds = time.perf_counter() - t0
        self._pending_setup = self.setup_seconds

    def update(self, A=None, **options) -> "Solver":
        """New matrix values and/or options; refresh what depends on them.

        Parameters
        ----------
        A : matrix, optional
            The new matrix (same or new sparsity pattern); default: keep.
        **options
            Options to change (e.g. ``omega=1.7``).

        Returns
        -------
        Solver
            ``self``, so that ``S.update(A_new).solve(b)`` reads well.
        """
        self.options.update(options)
        if A is None and self.impl is not None and hasattr(self.impl, "update_options"):
            t0 = time.perf_counter()
            if self.impl.update_options(**options):
                self.setup_seconds = time.perf_counter() - t0
                self._pending_setup += self.setup_seconds
                return self
        self._setup(self.A if A is None else A)
        return self

    def _op_in(self, dtype: torch.dtype):
        if dtype not in self._ops:
            self._ops[dtype] = self.op.to(dtype=dtype)
        return self._ops[dtype]

    # ------------------------------------------------------------- solve
    def solve(self, b, x0=None, *, callback=None, rtol=None, atol=None, maxiter=None) -> SolveResult:
        """Solve ``A x = b``.

        Parameters
        ----------
        b : array, (n,), (n, 1) or (k, n); or shaped like the operator's input (or a batch of those)
            numpy, torch or any DLPack array; ``x`` comes back the same way.
        x0 : like ``b``, or ``"Mb"``, optional
            Initial guess (default zeros; ``"Mb"``: the method's preconditioner
            applied to ``b``).  Never modified.
        callback : callable, optional
            ``callback(xk)`` after every iteration (the caller's array type).
        rtol, atol, maxiter : optional
            Override the solver's defaults for this solve.

        Returns
        -------
        SolveResult
            ``setup_seconds`` is the setup not yet reported by an earlier solve
            (0 from the second solve on, until the next :meth:`update`).
        """
        rtol, atol = check_tolerances(self.rtol if rtol is None else rtol, self.atol if atol is None else atol)
        maxiter = self.maxiter if maxiter is None else check_maxiter(maxiter)
        if self.impl is None:
            return self._call_function(b, x0, rtol, atol, maxiter, callback)
        fast = getattr(self.impl, "fast_solve", None)
        if fast is not None and callback is None and not isinstance(x0, str):
            res = fast(b, x0, rtol, atol, self.impl.default_maxiter(self.op.shape[0]) if maxiter is None else maxiter)
            if res is not None:
                res.setup_seconds, self._pending_setup = self._pending_setup, 0.0
                return res
        b_t = b if not isinstance(b, (list, tuple)) else np.asarray(b, dtype=np.float64)
        dtype = working_dtype(self.op.dtype, _dtype_of(b_t), self.impl.dtype)
        op = self._op_in(dtype)
        if isinstance(x0, str):
            x0 = self._mb(x0, b_t, op, dtype)
        rhs = prepare_rhs(op, b_t, x0, rtol=rtol, atol=atol, dtype=dtype, original=self._original)
        self.impl.check_rhs(rhs)
        if maxiter is None:
            maxiter = self.impl.default_maxiter(op.shape[0])
        setup, self._pending_setup = self._pending_setup, 0.0
        check_op = self._check_op(dtype)
        return iterate(op, rhs, self.impl.stepper(op, rhs), maxiter=maxiter, method=self.method,
                       callback=callback, nullspace=self.impl.nullspace,
                       floor=lambda x: self.impl.floor(x, rhs), setup_seconds=setup, info=self.impl.info(),
                       check_op=check_op, error=lambda x: self.impl.error(x, rhs, double=check_op is not None))

    def _check_op(self, dtype: torch.dtype):
        """``A`` in double precision for a single-precision solve (None otherwise): see :func:`.driver.iterate`."""
        double = {torch.float32: torch.float64, torch.complex64: torch.complex128}.get(dtype)
        if double is None:
            return None
        try:
            return self._op_in(double)
        except NotImplementedError:
            return None  # an operator that cannot change precision is checked in its own

    def _mb(self, x0: str, b, op, dtype):
        if x0 != "Mb":
            raise ValueError(f"x0 must be an array, None or 'Mb', got {x0!r}")
        M = self.impl.preconditioner()
        rhs = prepare_rhs(op, b, None, rtol=0.0, atol=0.0, dtype=dtype, original=self._original)
        z = M(rhs.b) if M is not None else rhs.b.clone()
        return rhs.give_back(z)

    def _call_function(self, b, x0, rtol, atol, maxiter, callback) -> SolveResult:
        kw = dict(self.options)
        if callback is not None:
            kw["callback"] = callback
        res = self._cls(self.A, b, x0, rtol=rtol, atol=atol, maxiter=maxiter, **kw)
        res.method = res.method or self.method
        return res

    # ---------------------------------------------------------- interop
    def aspreconditioner(self) -> scipy.sparse.linalg.LinearOperator:
        """The method's preconditioner ``M^-1`` as a scipy ``LinearOperator`` (numpy vectors in and out).

        PCG methods give their preconditioner, ``cg`` the user's ``M`` (or
        the identity), relaxation methods one sweep from zero (symmetric for
        ``ssor``/``jacobi``).  Usable as ``M=`` in scipy, pyamg and krylearn.
        """
        if self.impl is None:
            raise TypeError(f"method {self.method!r} is a plain function and has no preconditioner")
        M = self.impl.preconditioner()
        op = self.op
        n = op.shape[0]
        dtype = _numpy_dtype(op.dtype) if op.dtype in (torch.float32, torch.float64, torch.complex64,
                                                        torch.complex128) else np.float64

        def matmat(X):
            X = np.asarray(X)
            t = torch.from_numpy(np.ascontiguousarray(X.T)).to(device=op.device, dtype=op.dtype)
            z = M(t) if M is not None else t
            return z.detach().cpu().numpy().T

        return scipy.sparse.linalg.LinearOperator(
            (n, n), matvec=lambda v: matmat(np.asarray(v).reshape(-1, 1)).reshape(np.shape(v)),
            matmat=matmat, dtype=dtype)

    def __repr__(self) -> str:
        return (f"Solver(method={self.method!r}, n={self.op.shape[0]}, rtol={self.rtol:g}, atol={self.atol:g}, "
                f"setup_seconds={self.setup_seconds:.3g})")


def _dtype_of(b) -> torch.dtype:
    if isinstance(b, torch.Tensor):
        return b.dtype
    if isinstance(b, np.ndarray):
        return torch.from_numpy(np.empty(0, dtype=b.dtype)).dtype if b.dtype.kind in "fciub" else torch.float64
    if hasattr(b, "__dlpack__"):
        return torch.from_dlpack(b).dtype
    raise TypeError(f"b must be a numpy array, a torch tensor or a DLPack array, got {type(b).__name__}")
