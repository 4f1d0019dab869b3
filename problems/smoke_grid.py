"""MAC-grid helpers of the smoke simulation: multilinear sampling of staggered fields, sample coordinates.

Fields are torch tensors indexed in array-axis order; positions are in
cell-index units (cell ``c``'s centre is ``c``), see :mod:`krylearn.problems.smoke`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["face_shape", "fixed_faces", "grid_coords", "sample_field", "source_indices"]


def sample_field(fld: torch.Tensor, offset, coords: torch.Tensor) -> torch.Tensor:
    """Multilinear interpolation of a grid field.

    Parameters
    ----------
    fld : tensor, shape S (2 or 3 dims)
        ``fld[idx]`` lives at cell-index coordinate ``idx + offset``.
    offset : sequence of float, length dim
    coords : tensor, shape (*P, dim), P with dim dims
        Query points in cell-index coordinates (cell ``c``'s centre is ``c``),
        array-axis order. Points outside the field's samples are clamped.

    Returns
    -------
    tensor, shape P
    """
    dim = fld.ndim
    g = torch.empty_like(coords)
    for a in range(dim):
        k = dim - 1 - a  # grid_sample wants (x, y[, z]): reversed axis order
        size = fld.shape[a]
        scale = 2.0 / (size - 1) if size > 1 else 0.0
        torch.sub(coords[..., a], offset[a], out=g[..., k])
        g[..., k].mul_(scale).sub_(1.0)
    out = F.grid_sample(fld[None, None], g[None], mode="bilinear", padding_mode="border", align_corners=True)
    return out[0, 0]


def grid_coords(shape, offset, dtype, device) -> torch.Tensor:
    """Cell-index coordinates ``idx + offset`` of every sample of a field of ``shape``: (*shape, dim)."""
    axes = [torch.arange(s, dtype=dtype, device=device).add_(o) for s, o in zip(shape, offset)]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)


def face_shape(shape, a):
    """``shape`` with axis ``a`` extended by one: the faces normal to ``a``."""
    return tuple(s + 1 if i == a else s for i, s in enumerate(shape))


def fixed_faces(solid: torch.Tensor, sides) -> list[torch.Tensor]:
    """Per axis, a bool tensor over the faces normal to it: True where the velocity is held at zero.

    A face is fixed when it touches a solid cell, or lies on a ``"solid"``
    side of the domain (``sides[2a]`` / ``sides[2a + 1]``: the low / high
    side along axis ``a``); faces on an ``"empty"`` side are free unless
    their cell is solid.
    """
    shape = tuple(solid.shape)
    out = []
    for a in range(solid.ndim):
        n = shape[a]
        fx = torch.empty(face_shape(shape, a), dtype=torch.bool, device=solid.device)
        torch.logical_or(solid.narrow(a, 0, n - 1), solid.narrow(a, 1, n - 1), out=fx.narrow(a, 1, n - 1))
        for side, face, cell in ((0, 0, 0), (1, n, n - 1)):
            if sides[2 * a + side] == "solid":
                fx.narrow(a, face, 1).fill_(True)
            else:
                fx.narrow(a, face, 1).copy_(solid.narrow(a, cell, 1))
        out.append(fx)
    return out


def source_indices(src_fluid: torch.Tensor, fixed_up: torch.Tensor, up: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat indices of the source's fluid cells and of the free up-faces bordering them."""
    shape = tuple(src_fluid.shape)
    nu = shape[up]
    cells = torch.nonzero(src_fluid.reshape(-1)).flatten()
    faces = torch.zeros(face_shape(shape, up), dtype=torch.bool, device=src_fluid.device)
    faces.narrow(up, 0, nu).logical_or_(src_fluid)
    faces.narrow(up, 1, nu).logical_or_(src_fluid)
    faces.logical_and_(~fixed_up)
    return cells, torch.nonzero(faces.reshape(-1)).flatten()
