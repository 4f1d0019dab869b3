"""The learned preconditioner of ``method="fcg-lsm"``: Jacobi smoothing around a Latent Spectral Model.

One application maps a residual ``r`` on a 2D cell grid to a correction
``z`` (an approximation of the error ``A^-1 r``)::

    z = 0;  pre times:  z += omega D^-1 (r - A z)          (damped Jacobi)
    r1 = r - A z;  s = rms(r1)
    z += LSM([r1 / s, log(diag / mean diag)]) * s * N / mean(diag)
    post times: z += omega D^-1 (r - A z)

The network (an :class:`~krylearn.solvers.lsm.LSM2d` with per-sample
GroupNorm in place of BatchNorm, so that the map does not depend on what
else is in the batch; without normalisation it trained to a loss several
times higher in the same number of steps) sees the
residual normalised to unit RMS and the operator's diagonal as a
coefficient feature; its output is scaled back by ``s N / mean(diag)``
(``N`` the number of cells), the size of ``A^-1`` on smooth fields for a
5-point Laplacian whose diagonal grows like ``N``, so the same weights apply
at any resolution.  Jacobi removes what the network leaves at the
grid scale.  The map is nonlinear, hence flexible CG
(:mod:`krylearn.solvers.flexible`) around it.

``A`` is a 5-point grid Laplacian given by its stencil ``(diag, [w_y, w_x])``
(:func:`~krylearn.solvers.multigrid.grid_stencil`); :func:`grid_apply` is its
product in torch, batched over stencils, differentiable.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..lsm.model import LSM2d

__all__ = ["LSMPreconditioner", "Stencil", "grid_apply", "stencil_tensors"]


class Stencil:
    """A batch of 2D 5-point stencils as torch tensors.

    Attributes
    ----------
    d : torch.Tensor, (B, ny, nx)
        Diagonal (0 where a cell is not an unknown).
    wy : torch.Tensor, (B, ny + 1, nx)
        Face weights between rows ``i - 1`` and ``i`` at index ``i`` (the first
        and last rows are boundary faces, already in ``d``).
    wx : torch.Tensor, (B, ny, nx + 1)
        The same across columns.
    """

    def __init__(self, d: torch.Tensor, wy: torch.Tensor, wx: torch.Tensor):
        if d.ndim != 3 or wy.shape != (d.shape[0], d.shape[1] + 1, d.shape[2]) or \
                wx.shape != (d.shape[0], d.shape[1], d.shape[2] + 1):
            raise ValueError(f"stencil shapes do not fit: d {tuple(d.shape)}, wy {tuple(wy.shape)}, "
                             f"wx {tuple(wx.shape)}")
        self.d, self.wy, self.wx = d, wy, wx
        pos = d > 0
        self.dinv = torch.where(pos, 1.0 / torch.where(pos, d, torch.ones_like(d)), torch.zeros_like(d))
        self.mean_d = (d.sum(dim=(1, 2)) / pos.sum(dim=(1, 2)).clamp_min(1)).view(-1, 1, 1)
        logd = torch.log(torch.where(pos, d, self.mean_d) / self.mean_d)
        self.feature = torch.where(pos, logd, torch.zeros_like(logd))

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.d.shape[1:])

    @classmethod
    def stack(cls, stencils) -> "Stencil":
        """One batch from single-system stencils of the same grid."""
        return cls(*(torch.cat([getattr(s, k) for s in stencils]) for k in ("d", "wy", "wx")))


def stencil_tensors(d, w, dtype=torch.float32, device=None) -> Stencil:
    """A one-system :class:`Stencil` from numpy ``(diag, [w_y, w_x])``."""
    return Stencil(*(torch.as_tensor(a, dtype=dtype, device=device)[None] for a in (d, *w)))


def grid_apply(st: Stencil, x: torch.Tensor) -> torch.Tensor:
    """``A x`` for ``x`` of shape ``(B, ny, nx)`` (``B`` = the stencil batch, or any with a batch of one)."""
    wy, wx = st.wy[:, 1:-1], st.wx[:, :, 1:-1]
    y = st.d * x
    y[:, 1:] -= wy * x[:, :-1]
    y[:, :-1] -= wy * x[:, 1:]
    y[:, :, 1:] -= wx * x[:, :, :-1]
    y[:, :, :-1] -= wx * x[:, :, 1:]
    return y


class LSMPreconditioner(nn.Module):
    """Residual -> correction on a 2D grid (see the module docstring).

    Parameters
    ----------
    width, num_basis, num_token, levels : int
        The :class:`~krylearn.solvers.lsm.LSM2d`; ``width`` a multiple of 8.
    norm : {"group", "none"}
        Its normalisation (see :class:`~krylearn.solvers.lsm.layers.DoubleConv`); not
        ``"batch"``, which would make ``M(r)`` depend on the rest of the batch.
    pre, post : int
        Damped-Jacobi sweeps before and after the network.
    omega : float
        Jacobi damping, in (0, 1].

    ``forward(st, r)``: ``st`` a :class:`Stencil` (batch ``B`` or 1), ``r``
    ``(B, ny, nx)`` -> ``z`` of the same shape and dtype as the network.
    """

    kind = "lsm-preconditioner"
    dim = 2

    def __init__(self, width: int = 8, num_basis: int = 12, num_token: int = 4, levels: int = 5,
                 pre: int = 2, post: int = 2, omega: float = 0.8, norm: str = "group"):
        super().__init__()
        for name, v in (("pre", pre), ("post", post)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {v!r}")
        if not (isinstance(omega, (int, float)) and 0 < omega <= 1):
            raise ValueError(f"omega must be in (0, 1], got {omega!r}")
        if norm not in ("group", "none"):
            raise ValueError(f"norm must be 'group' or 'none', got {norm!r}")
        self.net = LSM2d(2, 1, width=width, num_basis=num_basis, num_token=num_token, levels=levels, norm=norm)
        self.pre, self.post, self.omega = pre, post, float(omega)
        self.config = dict(width=width, num_basis=num_basis, num_token=num_token, levels=levels,
                           pre=pre, post=post, omega=float(omega), norm=norm)

    def _jacobi(self, st: Stencil, r, z, sweeps: int):
        for _ in range(sweeps):
            z = z + self.omega * st.dinv * (r - grid_apply(st, z))
        return z

    def forward(self, st: Stencil, r: torch.Tensor) -> torch.Tensor:
        z = self._jacobi(st, r, torch.zeros_like(r), self.pre)
        r1 = r - grid_apply(st, z) if self.pre else r
        s = r1.pow(2).mean(dim=(1, 2), keepdim=True).sqrt()
        s = torch.where(s > 0, s, torch.ones_like(s))
        feat = st.feature.expand_as(r1)
        e = self.net(torch.stack([r1 / s, feat], dim=1))[:, 0]
        z = z + e * (s * (r.shape[1] * r.shape[2]) / st.mean_d) * (st.d > 0)
        return self._jacobi(st, r, z, self.post)
