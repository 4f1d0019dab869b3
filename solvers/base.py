"""What a solver method supplies to :class:`~krylearn.solvers.solver.Solver`: setup once, a stepper per solve.

A method is a subclass of :class:`IterativeMethod`.  Its constructor does the
setup that depends on the matrix and the options (checks, null space,
preconditioner, network load); :meth:`IterativeMethod.stepper` returns the
:class:`~krylearn.solvers.driver.Stepper` that runs one solve's iterations.
The driver (:mod:`.driver`) owns the stopping rule and everything around it,
so a method never decides on its own that it has converged.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse
import torch

from ..operators.base import Operator
from . import _cg_kernels as K2
from .driver import Stepper
from .inputs import Rhs

__all__ = ["IterativeMethod", "rounding_floor", "rounding_error", "check_empty_rows"]


class IterativeMethod:
    """Setup-once half of a solver method.

    Parameters
    ----------
    op : Operator
        The square matrix on flat vectors, in its own dtype.
    csr : scipy.sparse.csr_matrix or None
        Its canonical CSR copy (None for a matrix-free operator).
    **options
        Method options; an unknown one raises ``TypeError`` naming it.

    Class attributes
    ----------------
    name : str
    dtype : torch.dtype or None
        Working dtype the method insists on (e.g. float64 for DCDM's outer
        loop); None: promote ``A`` and ``b``.
    options : dict
        The options it accepts, with defaults.
    """

    name = "method"
    dtype: torch.dtype | None = None
    options: dict = {}

    def __init__(self, op: Operator, csr: scipy.sparse.csr_matrix | None, **options):
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise TypeError(f"{self.name} got unknown option(s) {unknown}; it accepts {sorted(self.options)}")
        self.op = op
        self.csr = csr
        self.opts = {**self.options, **options}
        self.nullspace = None
        self.empty = np.diff(csr.indptr) == 0 if csr is not None else None

    def default_maxiter(self, n: int) -> int:
        return 10 * max(n, 1)

    def check_rhs(self, rhs: Rhs) -> None:
        """Reject right-hand sides the method cannot solve (default: nonzero on an identically zero row)."""
        check_empty_rows(self.empty, rhs)

    def stepper(self, op: Operator, rhs: Rhs) -> Stepper:
        """The stepper of one solve; ``op`` is ``self.op`` in the working dtype."""
        raise NotImplementedError

    def floor(self, x: torch.Tensor, rhs: Rhs) -> np.ndarray:
        """Rounding floor of ``||b - A x||`` per system (scaled units), or zeros when unknown."""
        return rounding_floor(self.csr, x, rhs)

    def error(self, x: torch.Tensor, rhs: Rhs, double: bool = False) -> np.ndarray:
        """Typical rounding error of a computed ``||b - A x||`` per system (``double``: checked in float64)."""
        return rounding_error(self.csr, x, rhs, double)

    def preconditioner(self):
        """The linear operator ``M^-1`` of this method (``(k, n)`` tensors in and out), or None."""
        return None

    def info(self) -> dict:
        return {}

    def history_buffer(self, maxiter: int) -> np.ndarray:
        """A residual buffer of ``maxiter + 1`` entries for the compiled fast paths, reused across solves."""
        buf = getattr(self, "_hist_buf", None)
        if buf is None or buf.shape[0] < maxiter + 1:
            buf = self._hist_buf = np.empty(maxiter + 1)
        return buf


def rounding_floor(csr, x: torch.Tensor, rhs: Rhs) -> np.ndarray:
    """``m * eps * (|| |A| |x| || + ||b||)``: below it ``b - A x`` is rounding noise (``m`` = max nonzeros per row)."""
    m = int(np.diff(csr.indptr).max()) if csr is not None and csr.shape[0] else 1
    return m * rounding_error(csr, x, rhs)


def rounding_error(csr, x: torch.Tensor, rhs: Rhs, double: bool = False) -> np.ndarray:
    """``eps * (|| |A| |x| || + ||b||)``: the typical rounding error of a computed ``||b - A x||``.

    ``eps`` is that of ``x``'s precision, or float64's when ``double`` (the
    residual of a single-precision solve checked in double precision).
    Without a stored matrix only ``eps ||b||`` is known.
    """
    eps = torch.finfo(torch.float64 if double else x.real.dtype if x.is_complex() else x.dtype).eps
    bn = rhs.bnorm.detach().to("cpu", torch.float64).numpy()
    if csr is None:
        return eps * bn
    xs = x.detach().cpu().numpy()
    if csr.dtype == np.float64 and xs.dtype == np.float64:  # one compiled pass, no copy of |A|
        ax = np.array([K2.abs_product(csr.indptr, csr.indices, csr.data, np.ascontiguousarray(v))[1] for v in xs])
    else:
        ax = np.linalg.norm(abs(csr) @ np.abs(xs).T, axis=0)
    return eps * (ax + bn)


def check_empty_rows(empty: np.ndarray | None, rhs: Rhs) -> None:
    """``ValueError`` when ``b`` is nonzero on a row where ``A`` is identically zero (no solution)."""
    if empty is None or not empty.any():
        return
    nz = rhs.b[:, torch.from_numpy(np.nonzero(empty)[0]).to(rhs.b.device)].abs().amax(dim=0)
    bad = nz.cpu().numpy() > 0
    if bad.any():
        idx = int(np.nonzero(empty)[0][np.argmax(bad)])
        raise ValueError(
            f"b is nonzero at row {idx}, where A is identically zero (a solid/empty cell in the "
            "full-grid convention): the system has no solution; zero b there"
        )
