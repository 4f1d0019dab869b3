"""The DCDM network: a small fully convolutional residual U-Net.

Kaneda et al. (ICML 2023) use 16-channel 3x3(x3) convolutions in residual
blocks, one 2x average-pool level with a skip, and a final 1x1 projection.
:class:`DCDMNet` keeps that design and makes the depth configurable:
``levels`` resolution levels (the paper's model is ``levels=2``), each with
``blocks`` residual blocks on the way down and up.  Deeper hierarchies widen
the receptive field at little cost, which matters because DCDM has to
approximate ``A^{-1} r``, a global operator.

The network is fully convolutional, so one set of weights runs on any grid;
inputs whose sides are not divisible by ``2**(levels-1)`` are zero-padded and
the output cropped.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DCDMNet", "ResidualBlock"]


def _conv(dim: int):
    return nn.Conv2d if dim == 2 else nn.Conv3d


class ResidualBlock(nn.Module):
    """``x + conv(relu(conv(relu(x))))`` with 3x3 (2D) or 3x3x3 (3D) kernels."""

    def __init__(self, dim: int, width: int):
        super().__init__()
        conv = _conv(dim)
        self.c1 = conv(width, width, 3, padding=1)
        self.c2 = conv(width, width, 3, padding=1)

    def forward(self, x):
        return x + self.c2(F.relu(self.c1(F.relu(x))))


class DCDMNet(nn.Module):
    """CNN mapping a normalised residual to a search direction.

    Parameters
    ----------
    dim : int
        2 or 3.
    width : int
        Channels of every convolution (paper: 16).
    levels : int
        Resolution levels; level ``l`` works at ``1/2**l`` of the grid
        (paper: 2).
    blocks : int
        Residual blocks per level on the way down and on the way up (the
        coarsest level has ``2 * blocks``).
    geometry : bool
        Add the fluid-cell indicator as a second input channel.

    Shapes
    ------
    ``forward(r, fluid)``: ``r`` is ``(B, *grid)`` float32, ``fluid`` is
    ``(*grid)`` or ``(B, *grid)`` with 1 on fluid cells and 0 elsewhere;
    returns ``(B, *grid)``, zero outside the fluid cells.  Each ``r`` is
    scaled to unit RMS over its fluid cells first, so the input scale is the
    same on every grid size (a ReLU network with biases is not
    scale-equivariant); the output's scale is arbitrary (the line search
    fixes it).
    """

    def __init__(self, dim: int = 2, width: int = 16, levels: int = 3, blocks: int = 1,
                 geometry: bool = True):
        super().__init__()
        if dim not in (2, 3):
            raise ValueError(f"dim must be 2 or 3, got {dim!r}")
        for name, v, lo in (("width", width, 1), ("levels", levels, 1), ("blocks", blocks, 1)):
            if not isinstance(v, int) or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
        self.config = {"dim": dim, "width": width, "levels": levels, "blocks": blocks,
                       "geometry": bool(geometry)}
        self.dim, self.levels, self.geometry = dim, levels, bool(geometry)
        conv = _conv(dim)
        self.lift = conv(2 if geometry else 1, width, 3, padding=1)
        self.down = nn.ModuleList(
            nn.Sequential(*[ResidualBlock(dim, width) for _ in range(blocks)]) for _ in range(levels - 1))
        self.bottom = nn.Sequential(*[ResidualBlock(dim, width) for _ in range(2 * blocks)])
        self.up = nn.ModuleList(
            nn.Sequential(*[ResidualBlock(dim, width) for _ in range(blocks)]) for _ in range(levels - 1))
        self.project = conv(width, 1, 1)
        self.pool = nn.AvgPool2d(2) if dim == 2 else nn.AvgPool3d(2)
        for m in self.modules():  # zero biases (as Keras): the signal, not the biases, drives the output
            if isinstance(m, (nn.Conv2d, nn.Conv3d)):
                nn.init.zeros_(m.bias)

    @property
    def multiple(self) -> int:
        """Grid sides are padded to a multiple of this."""
        return 2 ** (self.levels - 1)

    def forward(self, r: torch.Tensor, fluid: torch.Tensor) -> torch.Tensor:
        grid = r.shape[1:]
        if len(grid) != self.dim:
            raise ValueError(f"r must have shape (B, *grid) with a {self.dim}-D grid, got {tuple(r.shape)}")
        fluid = fluid.to(r.dtype)
        if fluid.dim() == self.dim:
            fluid = fluid.expand(r.shape)
        # unit RMS over the fluid cells: the same input scale on every grid size
        dims = tuple(range(1, r.dim()))
        count = fluid.sum(dim=dims, keepdim=True).clamp_min(1)
        rms = torch.sqrt((r * r).sum(dim=dims, keepdim=True) / count)
        r = r / torch.where(rms > 0, rms, torch.ones_like(rms))
        x = r.unsqueeze(1)
        if self.geometry:
            x = torch.cat([x, fluid.unsqueeze(1)], dim=1)
        m = self.multiple
        pad = [(-s) % m for s in grid]
        if any(pad):
            flat = []
            for p in reversed(pad):
                flat += [0, p]
            x = F.pad(x, flat)
        h = self.lift(x)
        skips = []
        for block in self.down:
            h = block(h)
            skips.append(h)
            h = self.pool(h)
        h = self.bottom(h)
        for block, skip in zip(self.up, reversed(skips)):
            h = F.interpolate(h, scale_factor=2, mode="nearest") + skip
            h = block(h)
        out = self.project(F.relu(h))[:, 0]
        if any(pad):
            out = out[(slice(None),) + tuple(slice(0, s) for s in grid)]
        return out * fluid
