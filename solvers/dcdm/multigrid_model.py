"""A learned multigrid V-cycle for DCDM: smoother weights and coarse-correction scales read off the stencil.

DCDM's network maps a residual to a search direction.  :class:`DCDMMultigrid`
does the same with the cost of one V-cycle: it is the V-cycle of
:class:`~krylearn.solvers.multigrid.MultigridPreconditioner` (the grid's own
stencil, coarsened without a matrix) with two sets of learned functions of
the local stencil in place of its constants:

* the smoother: sweep ``s`` is ``x += W_s (b - A x)`` with
  ``W_s = omega_s(rho, delta) / a_ii`` per cell (damped Jacobi has one
  ``omega``), pre-sweeps ``W_0 .. W_{S-1}``, post-sweeps the reverse;
* the coarse correction: ``P S M_c S R`` with ``S = diag(sqrt(alpha(rho_c,
  delta_c)))`` on the coarse cells, i.e. a learned rescaling of the
  coarse operator where aggregation without a Galerkin product gets it wrong
  (next to air and solid cells).

The features are ``rho = sum_j |a_ij| / a_ii`` (1 in the interior and next to
solids, below 1 next to air: how Dirichlet a cell is) and ``delta = a_ii /
max a_ii`` on the level (how many faces are open).  Each function is a
bilinear table on ``[0, 1]^2`` (``knots`` points per axis), one per level
group (the finest level, the next, and all coarser ones share the last) and,
for the smoother, per sweep.  ``omega = sigmoid(.)`` lies in ``(0, 1)`` and
``alpha = 2 sigmoid(.)`` in ``(0, 2)``: every sweep is then non-expansive in
the energy norm of a diagonally dominant ``A``, whatever the weights, so an
untrained or random model still gives a symmetric preconditioner that CG
converges with.  The cycle costs what ``mgpcg``'s does (one weight array
read per sweep more); training runs the same cycle in torch and back-
propagates through a few PCG iterations (:mod:`.train_multigrid`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .. import _mg_kernels as K
from .model import DCDMModel

__all__ = ["DCDMMultigrid", "stencil_features"]


def stencil_features(d: np.ndarray, w: list) -> tuple[np.ndarray, np.ndarray]:
    """``(rho, delta)`` per cell of a level: off-diagonal row sum over the diagonal, diagonal over its maximum.

    Parameters
    ----------
    d : numpy.ndarray, (ny, nx) or (nz, ny, nx)
        Diagonal (0 at cells that are not unknowns).
    w : list of numpy.ndarray
        Face weights, ``w[a]`` one longer than ``d`` along axis ``a``.

    Returns
    -------
    rho, delta : numpy.ndarray, like ``d``, float64 in [0, 1]
        Zero at cells that are not unknowns.
    """
    off = np.zeros(d.shape)
    for a, wa in enumerate(w):
        n = d.shape[a]
        off += wa.take(np.arange(n), axis=a) + wa.take(np.arange(1, n + 1), axis=a)
    safe = np.where(d > 0, d, 1.0)
    rho = np.where(d > 0, off / safe, 0.0)
    dmax = float(d.max()) if d.size else 0.0
    delta = d / dmax if dmax > 0 else np.zeros(d.shape)
    return np.clip(rho, 0.0, 1.0), np.clip(delta, 0.0, 1.0)


def _table_values(d: np.ndarray, w: list, tables: np.ndarray, divide: bool) -> np.ndarray:
    """``tables`` (T, K1, K2) at each cell's features: over the diagonal (``divide``) or square-rooted."""
    out = np.empty((tables.shape[0],) + d.shape, dtype=np.float32)
    dmax = float(d.max()) if d.size else 0.0
    if dmax <= 0:
        out.fill(0.0)
        return out
    name = "learned_weights3d" if d.ndim == 3 else "learned_weights2d"
    kernel = K.KERNELS[name][d.size < K.SERIAL_BELOW]
    kernel(d, *w, dmax, np.ascontiguousarray(tables, dtype=np.float64),
           np.full(tables.shape[0], divide), out)
    return out


def _bilinear(table: torch.Tensor, rho: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """``table`` (K1, K2) on the knots of ``[0, 1]^2``, interpolated at ``(rho, delta)``."""
    k1, k2 = table.shape
    u, v = rho * (k1 - 1), delta * (k2 - 1)
    i = u.floor().clamp(0, k1 - 2).long()
    j = v.floor().clamp(0, k2 - 2).long()
    a, c = u - i, v - j
    return ((1 - a) * (1 - c) * table[i, j] + a * (1 - c) * table[i + 1, j]
            + (1 - a) * c * table[i, j + 1] + a * c * table[i + 1, j + 1])


class DCDMMultigrid(DCDMModel):
    """Learned V-cycle parameters (see the module docstring).

    Parameters
    ----------
    dim : {2, 3}
    sweeps : int
        Smoothing sweeps before and after each coarse correction (default 2).
    groups : int
        Level groups with their own tables (default 3: finest, next, rest).
    knots : (int, int)
        Table points along ``rho`` and ``delta`` (default (5, 4)).
    """

    kind = "multigrid"

    def __init__(self, dim: int = 2, sweeps: int = 2, groups: int = 3, knots=(5, 4)):
        super().__init__()
        if dim not in (2, 3):
            raise ValueError(f"dim must be 2 or 3, got {dim!r}")
        for name, v in (("sweeps", sweeps), ("groups", groups)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        knots = tuple(knots)
        if len(knots) != 2 or not all(isinstance(k, int) and k >= 2 for k in knots):
            raise ValueError(f"knots must be two integers >= 2, got {knots!r}")
        self.config = {"dim": dim, "sweeps": sweeps, "groups": groups, "knots": list(knots)}
        self.dim, self.sweeps, self.groups = dim, sweeps, groups
        omega = 2.0 / 3.0 if dim == 2 else 6.0 / 7.0  # damped Jacobi's classical weights: the untrained start
        logit = float(np.log(omega / (1.0 - omega)))
        self.omega_logit = nn.Parameter(torch.full((groups, sweeps) + knots, logit))
        self.alpha_logit = nn.Parameter(torch.zeros((groups,) + knots))

    def _group(self, level: int) -> int:
        return min(level, self.groups - 1)

    def omega(self, level: int, rho: torch.Tensor, delta: torch.Tensor) -> list:
        """Smoother weights ``omega_s`` (one tensor like ``rho`` per sweep) on level ``level``."""
        g = self._group(level)
        return [_bilinear(torch.sigmoid(self.omega_logit[g, s]), rho, delta) for s in range(self.sweeps)]

    def alpha(self, level: int, rho: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """Coarse-correction scales on the coarse cells below level ``level``."""
        return 2.0 * _bilinear(torch.sigmoid(self.alpha_logit[self._group(level)]), rho, delta)

    def tensors(self, level: int, fine_d, fine_w, coarse_d, coarse_w, dtype=torch.float64):
        """``(W_s list, sqrt(alpha))`` of level ``level`` as differentiable tensors (for training)."""
        rho, delta = (torch.from_numpy(a).to(dtype) for a in stencil_features(fine_d, fine_w))
        inv = torch.from_numpy(np.where(fine_d > 0, 1.0 / np.where(fine_d > 0, fine_d, 1.0), 0.0)).to(dtype)
        W = [om * inv for om in self.omega(level, rho, delta)]
        rc, dc = (torch.from_numpy(a).to(dtype) for a in stencil_features(coarse_d, coarse_w))
        mask = torch.from_numpy(coarse_d > 0).to(dtype)
        return W, self.alpha(level, rc, dc).sqrt() * mask

    def level_arrays(self, level: int, fine, coarse) -> tuple[list, np.ndarray]:
        """What :class:`~krylearn.solvers.multigrid.MultigridPreconditioner` asks for: float32 numpy arrays.

        One compiled pass per level (features and table look-up fused);
        equal to :meth:`tensors` up to float32 rounding.
        """
        g = self._group(level)
        with torch.no_grad():
            omega = torch.sigmoid(self.omega_logit[g]).double().cpu().numpy()
            alpha = 2.0 * torch.sigmoid(self.alpha_logit[g]).double().cpu().numpy()
        W = _table_values(fine.d, fine.w, omega, divide=True)
        return list(W), _table_values(coarse.d, coarse.w, alpha[None], divide=False)[0]

    def card_fields(self) -> dict:
        return {"parameters": int(sum(p.numel() for p in self.parameters()))}


DCDMModel.kinds["multigrid"] = DCDMMultigrid
