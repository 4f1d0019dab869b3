"""The network as the coarse solver of a geometric V-cycle, so that it always runs on grids it was trained on.

A convolutional network sees a fixed number of cells: trained on Darcy
operators with 41^2 to 83^2 unknowns, the LSM preconditioner gives 34
FCG iterations at 83^2 but does not converge in 400 at 168^2
(``benchmarks/README.md``).  :class:`NetworkCycle` keeps it at home: it is
``mgpcg``'s V-cycle (:class:`~krylearn.solvers.multigrid.MultigridPreconditioner`:
damped-Jacobi smoothing, re-discretised coarse stencils, cell-centred
transfers) down to the first level with at most ``net_size^2`` cells, and
there, in place of the exact coarse solve, one application of the
:class:`~.model.LSMPreconditioner` on that level's stencil.  On a grid of
at most ``net_size^2`` cells there is one level and the cycle is the
network alone.  The network is nonlinear, so the cycle is too: flexible CG
runs around it.
"""

from __future__ import annotations

import numpy as np
import torch

from ..multigrid import MultigridPreconditioner
from .model import LSMPreconditioner, stencil_tensors

__all__ = ["NetworkCycle"]


class NetworkCycle(MultigridPreconditioner):
    """A V-cycle whose coarsest level is one application of ``net``.

    Parameters
    ----------
    A, csr, grid_shape, flags, stencil
        As :class:`~krylearn.solvers.multigrid.MultigridPreconditioner` (2D only).
    net : LSMPreconditioner
    net_size : int
        The network runs on the first level with at most ``net_size^2`` unknowns.
    net_dtype : torch.dtype
        The network's precision.
    sweeps : int
        Jacobi sweeps before and after each coarse correction on the levels above.
    """

    def __init__(self, A, *, net: LSMPreconditioner, net_size: int = 96, net_dtype=torch.float32, csr=None,
                 grid_shape=None, flags=None, stencil=None, sweeps: int = 8):
        self._net, self._net_dtype = net, net_dtype
        super().__init__(A, csr=csr, grid_shape=grid_shape, flags=flags, stencil=stencil, sweeps=sweeps,
                         coarse_size=net_size * net_size, method="fcg-lsm")
        self.info.update(net_level=self.levels - 1, net_grid=tuple(self._levels[-1].shape))

    def _setup_coarse(self) -> None:
        lv = self._levels[-1]
        if lv.d.ndim != 2:
            raise ValueError(f"the network runs on 2D grids; the grid is {lv.d.ndim}D")
        self._net_stencil = stencil_tensors(lv.d, lv.w, dtype=self._net_dtype, device=self.device)
        self._cidx = torch.zeros(0, dtype=torch.int64, device=self.device)  # no exact coarse solve
        self._cinv = torch.zeros((0, 0), dtype=self.dtype, device=self.device)

    def _network(self, b: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self._net(self._net_stencil, b.to(self._net_dtype)).to(b.dtype)

    def _cycle(self, level: int, b: torch.Tensor) -> torch.Tensor:
        if level == len(self._levels) - 1:
            return self._network(b)
        return super()._cycle(level, b)

    def _cycle_np(self, level: int, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        if level == len(self._levels) - 1:
            lv = self._levels[level]
            B = b.shape[0]
            x = self._buffers(level, B, b.dtype)[0]
            z = self._network(torch.from_numpy(b.reshape((B,) + lv.shape)))
            x.reshape((B,) + lv.shape)[...] = z.numpy()
            return x
        return super()._cycle_np(level, b, out)
