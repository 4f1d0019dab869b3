"""Smooth random phase maps, the slowly varying phase of MR images (B0, coil combination, receiver offset)."""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch
import torch.nn.functional as F

from ..utils.checks import check_int

__all__ = ["phase_maps", "smooth_phase", "torch_generator"]


def _coords(h, w, device, dtype):
    y = torch.linspace(-1.0, 1.0, h, device=device, dtype=dtype)
    x = torch.linspace(-1.0, 1.0, w, device=device, dtype=dtype)
    return y[:, None], x[None, :]


def _smooth_field(b, h, w, generator, grid: int, device, dtype):
    """Smooth random fields ``(b, h, w)``, unit-variance coarse control points upsampled bicubically."""
    c = torch.randn(b, 1, grid, grid, generator=generator)
    return F.interpolate(c, size=(h, w), mode="bicubic", align_corners=True)[:, 0].to(device=device, dtype=dtype)


def phase_maps(b, h, w, generator, device, dtype, linear: float = math.pi / 2, quadratic: float = math.pi / 4,
                 field: float = math.pi / 4, grid: int = 4) -> torch.Tensor:
    """Smooth random phase maps, a ``(b, h, w)`` tensor of radians on ``device`` (see :func:`smooth_phase`).

    All random numbers come from ``generator`` (a CPU ``torch.Generator``), so
    the maps do not depend on the device.
    """
    u = torch.rand(b, 6, generator=generator).to(device=device, dtype=dtype) * 2 - 1  # U(-1, 1)
    yy, xx = _coords(h, w, device, dtype)
    c = u[:, :, None, None]
    phi = (math.pi * c[:, 0] + linear * (c[:, 1] * xx + c[:, 2] * yy)
           + quadratic * (c[:, 3] * xx * xx + c[:, 4] * xx * yy + c[:, 5] * yy * yy))
    if field:
        phi = phi + field * _smooth_field(b, h, w, generator, grid, device, dtype)
    return phi


def torch_generator(seed) -> torch.Generator:
    """A CPU ``torch.Generator`` from an int, a numpy Generator (one draw), a torch Generator (itself) or None."""
    if isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, np.random.Generator):
        return torch.Generator().manual_seed(int(seed.integers(0, 2**62)))
    if seed is None:
        return torch.Generator().manual_seed(int(np.random.SeedSequence().generate_state(1, np.uint64)[0] >> 2))
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise TypeError(f"seed must be a non-negative int, a numpy Generator or a torch.Generator, got {seed!r}")
    return torch.Generator().manual_seed(int(seed))


def smooth_phase(count: int, shape, seed=None, *, linear: float = math.pi / 2, quadratic: float = math.pi / 4,
                 field: float = math.pi / 4, grid: int = 4) -> np.ndarray:
    """Smooth random phase maps, float32 ``(count, ny, nx)`` radians.

    ``phi = pi c0 + linear (c1 x + c2 y) + quadratic (c3 x^2 + c4 x y + c5 y^2) + field g(x, y)``
    with ``x, y`` in ``[-1, 1]`` across the image, ``c_k ~ U(-1, 1)`` and ``g`` a
    unit-variance random field on a ``grid x grid`` control lattice,
    bicubically interpolated (band-limited: a few cycles per field of view at
    most).  This mimics the slowly varying phase of MR images (B0, coil
    combination, receiver offset).

    Parameters
    ----------
    count : int
    shape : (ny, nx)
    seed : int, numpy Generator or torch.Generator, optional
    linear, quadratic, field : float
        Peak amplitudes (radians) of the terms.
    grid : int
        Control points per side of the random field (>= 2).
    """
    count = check_int("count", count, 0)
    try:
        ny, nx = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be (ny, nx), got {shape!r}") from None
    grid = check_int("grid", grid, 2)
    g = torch_generator(seed)
    return phase_maps(count, ny, nx, g, torch.device("cpu"), torch.float32, linear, quadratic, field,
                        grid).numpy()
