"""Random geometric, intensity and phase augmentation of image batches (torch, vectorised): :class:`BrainAugment`.

:class:`BrainAugment` (seeded by a ``torch.Generator``) is the
``augment(x, generator)`` callable that
:func:`krylearn.solvers.dds.train_diffusion` takes: flips, small rotations
and scalings, translations, an elastic deformation (a smooth random
displacement field), intensity scaling and gamma on the magnitude, and for
2-channel (real, imaginary) batches a smooth random phase.
:func:`augment` is the numpy front end.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..utils.checks import check_int, check_real
from .phase import phase_maps, torch_generator

__all__ = ["BrainAugment", "augment"]


def _pair(name, v, lo=None):
    try:
        a, b = (float(t) for t in v)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (low, high) pair, got {v!r}") from None
    if not (math.isfinite(a) and math.isfinite(b) and a <= b) or (lo is not None and a < lo):
        raise ValueError(f"{name} must be finite with low <= high{'' if lo is None else f' and low >= {lo}'}, "
                         f"got {v!r}")
    return a, b


def _prob(name, v):
    v = check_real(name, v)
    if not 0 <= v <= 1:
        raise ValueError(f"{name} must be a probability in [0, 1], got {v}")
    return v


class BrainAugment:
    """Random geometric, intensity and phase augmentation of image batches (torch, vectorised).

    ``x = aug(x, generator)`` on a real batch ``(b, C, H, W)``, ``C = 1``
    (magnitude / attenuation) or ``C = 2`` (real, imaginary of a complex
    image); the output has the input's shape, dtype and device.  All random
    numbers come from ``generator`` (a CPU ``torch.Generator``; default the
    global torch RNG), so the same seed gives the same batch on any device.

    Steps, each drawn independently per image:

    1. one resampling (bilinear, zeros outside) through an affine map --
       left-right flip with probability ``hflip``, up-down flip with
       ``vflip``, rotation ``U(-rotate, rotate)`` degrees, isotropic scale
       ``U(*scale)``, shift ``U(-translate, translate)`` of the half-width per
       axis -- plus an elastic displacement: a random field on an
       ``elastic_grid`` x ``elastic_grid`` lattice (std ``elastic`` in units
       of the half-width), bicubically interpolated, so it is smooth;
    2. the magnitude ``m`` becomes ``s * m ** gamma`` with ``gamma`` log-uniform
       in ``gamma`` and ``s ~ U(*intensity)`` (the phase is kept; ``C = 1``
       keeps the sign);
    3. ``C = 2`` and ``phase``: multiplication by ``exp(i phi)``, ``phi`` a
       :func:`smooth_phase` map.

    With ``intensity[1] <= 1`` an input with ``|x| <= 1`` stays so
    (interpolation is a convex combination).

    Parameters
    ----------
    hflip, vflip : float
        Flip probabilities (default 0.5 and 0: anatomy keeps its orientation).
    rotate : float
        Degrees.
    scale : (float, float)
    translate : float
    elastic : float
        0 switches the elastic part off.
    elastic_grid : int
    gamma, intensity : (float, float)
    phase : bool
    """

    def __init__(self, *, hflip: float = 0.5, vflip: float = 0.0, rotate: float = 10.0, scale=(0.9, 1.1),
                 translate: float = 0.05, elastic: float = 0.03, elastic_grid: int = 5, gamma=(0.8, 1.25),
                 intensity=(0.8, 1.0), phase: bool = True):
        self.hflip, self.vflip = _prob("hflip", hflip), _prob("vflip", vflip)
        self.rotate = check_real("rotate", rotate)
        self.scale = _pair("scale", scale, 1e-3)
        self.translate = check_real("translate", translate)
        self.elastic = check_real("elastic", elastic)
        if self.elastic < 0 or self.translate < 0:
            raise ValueError("elastic and translate must be >= 0")
        self.elastic_grid = check_int("elastic_grid", elastic_grid, 2)
        self.gamma = _pair("gamma", gamma, 1e-3)
        self.intensity = _pair("intensity", intensity, 0.0)
        self.phase = bool(phase)

    def config(self) -> dict:
        """The settings (JSON-serialisable), for weight cards."""
        return {"hflip": self.hflip, "vflip": self.vflip, "rotate_degrees": self.rotate, "scale": list(self.scale),
                "translate": self.translate, "elastic": self.elastic, "elastic_grid": self.elastic_grid,
                "gamma": list(self.gamma), "intensity": list(self.intensity), "phase": self.phase}

    def __repr__(self) -> str:
        return "BrainAugment(" + ", ".join(f"{k}={v!r}" for k, v in self.config().items()) + ")"

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor (b, C, H, W), got {type(x).__name__}")
        if x.ndim != 4 or x.shape[1] not in (1, 2):
            raise ValueError(f"x must have shape (b, C, H, W) with C = 1 or 2 (real, imaginary), got {tuple(x.shape)}")
        if x.is_complex() or not x.is_floating_point():
            raise TypeError(f"x must be a real floating tensor, got {x.dtype}")
        b, c, h, w = x.shape
        if b == 0:
            return x
        g = generator
        dev, dt = x.device, x.dtype
        on_x = lambda t: t.to(device=dev, dtype=dt)
        u = torch.rand(b, 7, generator=g)
        sx = torch.where(u[:, 0] < self.hflip, -1.0, 1.0)
        sy = torch.where(u[:, 1] < self.vflip, -1.0, 1.0)
        ang = torch.deg2rad((2 * u[:, 2] - 1) * self.rotate)
        s = self.scale[0] + (self.scale[1] - self.scale[0]) * u[:, 3]
        tx, ty = (2 * u[:, 4] - 1) * self.translate, (2 * u[:, 5] - 1) * self.translate
        # output pixel p samples the input at theta @ [p, 1]: rotation / scale, then the flips
        cos, sin = torch.cos(ang) / s, torch.sin(ang) / s
        theta = torch.stack([torch.stack([cos * sx, -sin * sx, tx], 1),
                             torch.stack([sin * sy, cos * sy, ty], 1)], 1)  # (b, 2, 3)
        grid = F.affine_grid(on_x(theta), [b, c, h, w], align_corners=False)
        if self.elastic > 0:
            d = torch.randn(b, 2, self.elastic_grid, self.elastic_grid, generator=g) * self.elastic
            d = F.interpolate(d, size=(h, w), mode="bicubic", align_corners=True)
            grid = grid + on_x(d.permute(0, 2, 3, 1))
        y = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

        lg0, lg1 = math.log(self.gamma[0]), math.log(self.gamma[1])
        gam = on_x(torch.exp(lg0 + (lg1 - lg0) * u[:, 6])).reshape(b, 1, 1, 1)
        amp = on_x(self.intensity[0] + (self.intensity[1] - self.intensity[0])
                  * torch.rand(b, generator=g)).reshape(b, 1, 1, 1)
        m = y.abs() if c == 1 else torch.sqrt((y * y).sum(dim=1, keepdim=True))
        factor = amp * torch.where(m > 0, m.clamp_min(1e-12) ** (gam - 1), torch.zeros_like(m))
        y = y * factor
        if c == 2 and self.phase:
            phi = phase_maps(b, h, w, g, dev, dt)[:, None]
            cs, sn = torch.cos(phi), torch.sin(phi)
            re, im = y[:, :1], y[:, 1:]
            y = torch.cat([re * cs - im * sn, re * sn + im * cs], dim=1)
        return y.contiguous()


def augment(images, seed=None, **options) -> np.ndarray:
    """Augment a stack of images with :class:`BrainAugment` (numpy in, numpy out).

    Parameters
    ----------
    images : array, (n, H, W) real or complex, or (H, W)
        Complex images are augmented as (real, imaginary) channels and get a
        smooth random phase.
    seed : int, numpy Generator or torch.Generator, optional
    **options
        :class:`BrainAugment` settings.

    Returns
    -------
    numpy.ndarray of the input's shape; float32 or complex64.
    """
    a = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if a.dtype == object or a.dtype.kind not in "biufc":
        raise TypeError(f"images must be a numeric array, got dtype {a.dtype}")
    if a.ndim not in (2, 3):
        raise ValueError(f"images must have shape (n, H, W) or (H, W), got {a.shape}")
    single = a.ndim == 2
    a = a[None] if single else a
    if np.iscomplexobj(a):
        t = torch.from_numpy(np.stack([a.real, a.imag], axis=1).astype(np.float32))
    else:
        t = torch.from_numpy(a.astype(np.float32)[:, None])
    out = BrainAugment(**options)(t, torch_generator(seed)).numpy()
    res = (out[:, 0] + 1j * out[:, 1]).astype(np.complex64) if np.iscomplexobj(a) else out[:, 0]
    return res[0] if single else res
