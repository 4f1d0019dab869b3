"""``method="fcg-lsm"``: flexible CG preconditioned by a Latent Spectral Model.

The neural-operator preconditioner idea (FCG-NO: Rudikov et al., 2024):
a network trained to map residuals to errors of a family of PDE
operators is used as the preconditioner of flexible CG, which tolerates a
nonlinear, non-symmetric preconditioner.  Here the network is the
package's LSM inside Jacobi smoothing (:class:`~.model.LSMPreconditioner`),
run on the grid it was trained at: on larger grids it is the coarse solver
of a geometric V-cycle (:class:`~.cycle.NetworkCycle`);
:class:`~krylearn.solvers.flexible.FCGStepper` supplies the safeguards
(Jacobi replaces a useless network output; a system whose residual stops
halving finishes with Jacobi), so any SPD 5-point grid Laplacian converges,
whatever the weights.
"""

from __future__ import annotations

import numbers

import torch

from ...operators.stencil import PoissonGrid
from ..base import IterativeMethod
from ..flexible import FCGStepper
from ..learned import Pretrained, load_pretrained
from ..multigrid import grid_stencil
from ..nullspace import grid_nullspace
from ..solver import Solver
from .cycle import NetworkCycle
from .model import LSMPreconditioner

__all__ = ["FCGLSM", "fcg_lsm", "load_model", "DEFAULT_MODEL"]

DEFAULT_MODEL = "fcg-lsm-darcy"


def load_model(model, device="cpu") -> Pretrained:
    """An :class:`LSMPreconditioner` and its card from a shipped name, a weights path, or a module."""
    if isinstance(model, LSMPreconditioner):
        return Pretrained(model.to(device), {})
    if isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be an LSMPreconditioner, a shipped name or a path, got {type(model).__name__}")
    return load_pretrained(model, method="fcg_lsm", device=device)


def _stencil(op, csr, grid_shape):
    """``grid_stencil``'s ``(diagonal, weights)`` of a 2D grid (its errors name fcg-lsm)."""
    if grid_shape is not None and len(tuple(grid_shape)) != 2:
        raise ValueError(f"fcg-lsm works on 2D grids; grid_shape is {tuple(grid_shape)}")
    d, w = grid_stencil(op, csr, grid_shape, "fcg-lsm")
    if d.ndim != 2:
        raise ValueError(f"fcg-lsm works on 2D grids; the grid is {d.shape}")
    return d, w


class FCGLSM(IterativeMethod):
    """Setup of ``fcg-lsm``: the grid stencil, the network, the Jacobi fallback, the null space.

    Options as in :func:`fcg_lsm`.
    """

    name = "fcg-lsm"
    dtype = torch.float64
    uses_matrix = False
    options = {"model": None, "grid_shape": None, "flags": None, "history": 8, "cos_tol": 1e-3, "patience": 50,
               "net_size": 96, "sweeps": 8, "net_dtype": torch.float32}

    def __init__(self, op, csr, **options):
        super().__init__(op, csr, **options)
        o = self.opts
        for name in ("history", "patience", "net_size", "sweeps"):
            v = o[name]
            if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if not (isinstance(o["cos_tol"], numbers.Real) and 0 <= o["cos_tol"] < 1):
            raise ValueError(f"cos_tol must be in [0, 1), got {o['cos_tol']!r}")
        if op.dtype.is_complex:
            raise TypeError("fcg-lsm solves real SPD systems; got a complex matrix")
        inner = getattr(op, "op", op)
        if csr is None and not isinstance(inner, PoissonGrid):
            raise TypeError("fcg-lsm needs a PoissonGrid or a stored matrix with grid_shape=(ny, nx)")
        d, w = _stencil(op, csr, o["grid_shape"])
        dev = op.device
        name = o["model"] if o["model"] is not None else DEFAULT_MODEL
        self.net, card = load_model(name, device=dev)
        self.model_name = card.get("name", name if isinstance(name, str) else type(name).__name__)
        self.grid = d.shape
        self.cycle = NetworkCycle(op, net=self.net, net_size=o["net_size"], net_dtype=o["net_dtype"],
                                  flags=o["flags"], stencil=(d, w), sweeps=o["sweeps"])
        diag = torch.as_tensor(d, dtype=torch.float64, device=dev).reshape(-1)
        self.dinv = torch.where(diag > 0, 1.0 / torch.where(diag > 0, diag, torch.ones_like(diag)),
                                torch.zeros_like(diag))
        self.nullspace = grid_nullspace(PoissonGrid.from_weights(d, w, device=dev))
        if self.empty is None:
            self.empty = (d == 0).reshape(-1)

    def default_maxiter(self, n):
        return max(1000, n // 10)

    def check_rhs(self, rhs):
        if rhs.b.is_complex():
            raise TypeError("fcg-lsm solves real SPD systems; got complex data")
        super().check_rhs(rhs)

    def apply_network(self, r: torch.Tensor) -> torch.Tensor:
        """The learned preconditioner (the network inside its V-cycle) on ``(k, n)`` float64 residuals."""
        return self.cycle._solve(r)

    def apply_jacobi(self, r: torch.Tensor) -> torch.Tensor:
        return r * self.dinv

    def stepper(self, op, rhs):
        o = self.opts
        return FCGStepper(op._apply, self.apply_network, self.apply_jacobi, history=o["history"],
                          cos_tol=o["cos_tol"], patience=o["patience"], nullspace=self.nullspace)

    def info(self):
        return {"model": self.model_name, "grid_shape": self.grid, "history": self.opts["history"],
                "levels": self.cycle.levels, "net_grid": self.cycle.info["net_grid"],
                "null_space": self.nullspace.count if self.nullspace is not None else 0}


def fcg_lsm(A, b, x0=None, *, model=None, grid_shape=None, flags=None, rtol: float = 1e-6, atol: float = 0.0,
            maxiter: int | None = None, history: int = 8, cos_tol: float = 1e-3, patience: int = 50,
            net_size: int = 96, sweeps: int = 8, net_dtype: torch.dtype = torch.float32, callback=None):
    """Solve ``A x = b`` (SPD 5-point grid Laplacian) by flexible CG with a learned LSM preconditioner.

    Parameters
    ----------
    A : PoissonGrid, scipy sparse matrix or Operator, (n, n)
        A symmetric 5-point stencil on a 2D grid with non-positive
        off-diagonals and ``A_ii >= sum_j |A_ij|`` (Dirichlet faces add to
        the diagonal): Darcy flow ``-div(a grad u) = f``, Poisson, pressure.
    b : numpy.ndarray or torch.Tensor, (n,) or (k, n)
    x0 : like ``b``, optional
    model : str, Path or LSMPreconditioner, optional
        Default ``"fcg-lsm-darcy"`` (trained on Darcy coefficient fields).
    grid_shape : (int, int), optional
        Required for a stored matrix (rows are the cells in C order).
    flags : array, optional
        Cell flags (FLUID = 0), checked against the rows of ``A`` as ``mgpcg`` does.
    rtol, atol : float
        Stop when ``||b - A x|| <= max(rtol ||b||, atol)`` (true residual).
    maxiter : int, optional
        Default ``max(1000, n // 10)``.
    history : int
        Directions each new one is ``A``-orthogonalised against.
    cos_tol, patience : float, int
        Safeguards (see :mod:`krylearn.solvers.flexible`).
    net_size : int
        The network runs on the first level of the geometric hierarchy with
        at most ``net_size^2`` cells (:class:`~.cycle.NetworkCycle`); finer
        levels are Jacobi-smoothed V-cycle levels.  On a grid of at most
        ``net_size^2`` cells the preconditioner is the network alone.
    sweeps : int
        Jacobi sweeps before and after each coarse correction above the network's level.
    net_dtype : torch.dtype
        Network precision; the outer iteration is float64.
    callback : callable, optional

    Returns
    -------
    SolveResult
        ``info`` holds ``fallback_steps``, ``switched_to_fallback_at``, ``model``.

    Examples
    --------
    >>> import numpy as np, krylearn
    >>> from krylearn.operators.darcy import darcy_system
    >>> A, b = darcy_system(np.ones((33, 33)))
    >>> res = krylearn.solve(A, b, method="fcg-lsm", grid_shape=(31, 31), rtol=1e-8)
    >>> res.converged
    True
    """
    return Solver(A, "fcg-lsm", rtol=rtol, atol=atol, maxiter=maxiter, model=model, grid_shape=grid_shape,
                  flags=flags, history=history, cos_tol=cos_tol, patience=patience, net_size=net_size,
                  sweeps=sweeps, net_dtype=net_dtype).solve(b, x0, callback=callback)
