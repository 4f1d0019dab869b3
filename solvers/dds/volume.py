"""3D DDS: the 2D diffusion prior per slice plus one ADMM step of TV along z per diffusion step."""

from __future__ import annotations

import math
import numbers

import torch

from ...operators.base import Operator
from .dds_sampler import ddim_loop, start_image
from .problem import Problem, check_common
from .sampler import cg_fixed
from .schedule import VPSchedule

__all__ = ["dds_sample_volume"]


def _dz(x):
    """Forward difference along axis 0 with periodic wrap: ``x[k+1] - x[k]`` (authors' ``_Dz``)."""
    return torch.roll(x, -1, dims=0) - x


def _dzt(v):
    """Exact adjoint of :func:`_dz`: ``v[k-1] - v[k]``."""
    return torch.roll(v, 1, dims=0) - v


def _soft(v, tau):
    """Soft thresholding by ``tau`` (of the magnitude for complex ``v``)."""
    if v.is_complex():
        mag = v.abs()
        return v * torch.clamp(mag - tau, min=0) / torch.where(mag > 0, mag, torch.ones_like(mag))
    return torch.sign(v) * torch.clamp(v.abs() - tau, min=0)


def dds_sample_volume(denoiser, A: Operator, y, *, nfe: int = 49, eta: float = 0.85, cg_steps: int = 5,
                      lam: float = 0.04, rho: float = 10.0, complex_data=None, scale: float = 1.0,
                      schedule: VPSchedule | None = None, seed=None, progress: bool = True, callback=None,
                      multiple=None, net_batch=None, start: float = 1.0, init=None):
    """3D DDS: the 2D prior per slice plus one ADMM step for TV along z per diffusion step.

    Solves, one ADMM iteration per diffusion step (``solver_3d.py``)::

        min_x 1/2 ||y - A x||^2 + lam ||D_z x||_1

        x <- CG(cg_steps) on (A^H A + rho D_z^T D_z) x = A^H y + rho D_z^T (z - u), from x0
        z <- soft(D_z x + u, lam / rho)
        u <- u + D_z x - z

    with ``D_z`` the forward difference across slices (periodic wrap, as the
    authors' ``_Dz``) and ``z, u`` kept from one diffusion step to the next
    (zeros at the start).  CG runs on the whole volume (one system).

    Parameters
    ----------
    denoiser, A, nfe, eta, cg_steps, complex_data, scale, schedule, seed, progress, callback, multiple, net_batch
    start, init
        As :func:`dds_sample` (``init``: ``(slices, H, W)``); ``A`` acts on one slice (``ishape = (H, W)``).
    y : array or tensor, (slices, *A.oshape)
        One measurement per slice (e.g. a sinogram volume
        ``(slices, views, det)``).
    lam, rho : float
        TV weight (0.04 sparse-view, 0.4 limited-angle in the paper) and
        ADMM penalty (10).

    Returns
    -------
    numpy.ndarray or torch.Tensor (as ``y``), ``(slices, H, W)``.
    """
    check_common(nfe, eta, cg_steps, None)
    for name, v in (("lam", lam), ("rho", rho)):
        if not isinstance(v, numbers.Real) or not math.isfinite(v) or v < 0 or (name == "rho" and v == 0):
            raise ValueError(f"{name} must be a finite number {'> 0' if name == 'rho' else '>= 0'}, got {v!r}")
    if isinstance(A, Operator) and len(A.ishape) != 2:
        raise ValueError(f"A must act on one slice (ishape (H, W)), got ishape {A.ishape}")
    prob = Problem(A, y, complex_data, None, scale)
    if len(prob.batch) != 1:
        raise ValueError(f"y must have shape (slices, *{A.oshape}), got {tuple(prob.y.shape)}")
    x_init = start_image(prob, start, init)
    state = {"z": None, "u": None}
    rhs0 = prob.AHy.unsqueeze(0)  # (1, S, H, W): the volume is one system

    def apply(v):
        v0 = v[0]
        return (prob.normal(v0) + rho * _dzt(_dz(v0))).unsqueeze(0)

    def dc(img, i, t):
        if state["z"] is None:
            state["z"] = torch.zeros_like(img)
            state["u"] = torch.zeros_like(img)
        z, u = state["z"], state["u"]
        b = rhs0 + rho * _dzt(z - u).unsqueeze(0)
        x = cg_fixed(apply, b, img.unsqueeze(0), cg_steps, f"DDS-3D step {i} (t={t}): CG")[0]
        dx = _dz(x)
        state["z"] = _soft(dx + u, lam / rho)
        state["u"] = u + dx - state["z"]
        return x

    out = ddim_loop(denoiser, prob, dc, nfe=nfe, eta=eta, schedule=schedule, seed=seed, progress=progress,
                     callback=callback, multiple=multiple, net_batch=net_batch, what="DDS-3D",
                    start=start, init=x_init)
    return prob.output(out)
