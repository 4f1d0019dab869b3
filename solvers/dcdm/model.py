"""The DCDM network: a small fully convolutional residual U-Net.

Kaneda et al. (ICML 2023) use 16-channel 3x3(x3) convolutions in residual
blocks, one 2x average-pool level with a skip, and a final 1x1 projection.
:class:`DCDMNet` keeps that design and makes the depth configurable:
``levels`` resolution levels (the paper's model is ``levels=2``), each with
``blocks`` residual blocks on the way down and up.  Deeper hierarchies widen
the receptive field at little cost, which matters because DCDM has to
approximate ``A^{-1} r``, a global operator.

The network is fully convolutional, so one set of weights runs on any grid.
With ``levels=0, shared=True`` it is a V-cycle whose depth follows the grid
(halving down to a few cells) with one set of down/up blocks for all levels,
so the receptive field spans the domain at every grid size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DCDMModel", "DCDMNet", "ResidualBlock"]


def _conv(dim: int):
    return nn.Conv2d if dim == 2 else nn.Conv3d


class DCDMModel(nn.Module):
    """What DCDM's shipped weights load into: a model class per card ``kind`` (absent: ``"cnn"``).

    :class:`DCDMNet` is ``"cnn"``; the learned V-cycle
    (:class:`~.multigrid_model.DCDMMultigrid`) is ``"multigrid"``.
    """

    kinds: dict = {}  # filled in by the model modules

    @classmethod
    def from_card(cls, card: dict, state: dict) -> nn.Module:
        kind = card.get("kind", "cnn")
        if kind not in DCDMModel.kinds:
            raise ValueError(f"unknown DCDM model kind {kind!r} (expected one of {sorted(DCDMModel.kinds)})")
        return DCDMModel.kinds[kind](**card["config"])


class ResidualBlock(nn.Module):
    """``x + conv(relu(conv(relu(x))))`` with 3x3 (2D) or 3x3x3 (3D) kernels."""

    def __init__(self, dim: int, width: int):
        super().__init__()
        conv = _conv(dim)
        self.c1 = conv(width, width, 3, padding=1)
        self.c2 = conv(width, width, 3, padding=1)

    def forward(self, x):
        return x + self.c2(F.relu(self.c1(F.relu(x))))


class DCDMNet(DCDMModel):
    """CNN mapping a residual to a search direction.

    Parameters
    ----------
    dim : int
        2 or 3.
    width : int
        Channels of every convolution (paper: 16).
    levels : int
        Resolution levels; level ``l`` works at ``1/2**l`` of the grid
        (paper: 2).  ``0`` means as many as the grid allows: halve until the
        shortest side is below ``2 * coarsest`` (a V-cycle whose depth grows
        with the grid, so the receptive field always spans the domain).
    blocks : int
        Residual blocks per level on the way down and on the way up (the
        coarsest level has ``2 * blocks``).
    geometry : bool
        Add the fluid-cell indicator as a second input channel.  Off by
        default: in our ablation (README, DCDM) it made held-out iteration
        counts worse, not better.
    shared : bool
        Use one set of down/up blocks for every level (needed for
        ``levels=0``; like multigrid's one smoother for all levels).
    coarsest : int
        Smallest side of the coarsest level when ``levels=0``.
    upsample : {"linear", "nearest"}
        (Bi/tri)linear or nearest-neighbour (paper) upsampling.

    Shapes
    ------
    ``forward(r, fluid)``: ``r`` is ``(B, *grid)`` float32, ``fluid`` is
    ``(*grid)`` or ``(B, *grid)`` with 1 on fluid cells and 0 elsewhere;
    returns ``(B, *grid)``, zero outside the fluid cells.  Each ``r`` is
    scaled to unit RMS over its fluid cells first, so the input scale is the
    same on every grid size (a ReLU network with biases is not
    scale-equivariant); the output's scale is arbitrary (the line search
    fixes it).  Any grid size works: pooling rounds odd sides up and
    upsampling returns to the skip's exact size.
    """

    def __init__(self, dim: int = 2, width: int = 16, levels: int = 3, blocks: int = 1,
                 geometry: bool = False, shared: bool = False, coarsest: int = 4, upsample: str = "linear"):
        super().__init__()
        if dim not in (2, 3):
            raise ValueError(f"dim must be 2 or 3, got {dim!r}")
        for name, v, lo in (("width", width, 1), ("levels", levels, 0), ("blocks", blocks, 1),
                            ("coarsest", coarsest, 1)):
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
        if upsample not in ("linear", "nearest"):
            raise ValueError(f"upsample must be 'linear' or 'nearest', got {upsample!r}")
        if levels == 0 and not shared:
            raise ValueError("levels=0 (automatic depth) needs shared=True")
        self.config = {"dim": dim, "width": width, "levels": levels, "blocks": blocks,
                       "geometry": bool(geometry), "shared": bool(shared), "coarsest": coarsest,
                       "upsample": upsample}
        self.dim, self.levels, self.geometry = dim, levels, bool(geometry)
        self.shared, self.coarsest, self.upsample = bool(shared), coarsest, upsample
        conv = _conv(dim)
        self.lift = conv(2 if geometry else 1, width, 3, padding=1)
        n_blocks = 1 if shared else max(levels - 1, 0)

        def stage(count):
            return nn.Sequential(*[ResidualBlock(dim, width) for _ in range(count)])

        self.down = nn.ModuleList(stage(blocks) for _ in range(n_blocks))
        self.bottom = stage(2 * blocks)
        self.up = nn.ModuleList(stage(blocks) for _ in range(n_blocks))
        self.project = conv(width, 1, 1)
        self.pool = (nn.AvgPool2d if dim == 2 else nn.AvgPool3d)(2, ceil_mode=True, count_include_pad=False)
        for m in self.modules():  # zero biases (as Keras): the signal, not the biases, drives the output
            if isinstance(m, (nn.Conv2d, nn.Conv3d)):
                nn.init.zeros_(m.bias)

    def depth(self, grid) -> int:
        """Number of levels used on ``grid``."""
        if self.levels:
            return self.levels
        depth, side = 1, min(grid)
        while side >= 2 * self.coarsest:
            side = (side + 1) // 2
            depth += 1
        return depth

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
        h = self.lift(x)
        skips = []
        mode = "nearest" if self.upsample == "nearest" else ("bilinear" if self.dim == 2 else "trilinear")
        for level in range(self.depth(grid) - 1):
            h = self.down[0 if self.shared else level](h)
            skips.append(h)
            h = self.pool(h)
        h = self.bottom(h)
        for level in reversed(range(len(skips))):
            skip = skips[level]
            h = F.interpolate(h, size=skip.shape[2:], mode=mode,
                              align_corners=None if mode == "nearest" else False) + skip
            h = self.up[0 if self.shared else len(skips) - 1 - level](h)  # up[0] is the coarsest
        return self.project(F.relu(h))[:, 0] * fluid


DCDMModel.kinds["cnn"] = DCDMNet
