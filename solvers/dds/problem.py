"""Measurements in solver form (:class:`Problem`) and the DDS data-consistency step.

``A``, ``y`` become batched tensors with the normal operator ``A^H A`` (in
complex arithmetic for complex images, real-restricted for a real image with
a complex operator); :func:`dc_step` is the DDS data step (CG on
``A^H A x = A^H y`` or on ``(I + gamma A^H A) x = x0 + gamma A^H y``), and
:func:`data_consistency` the same step as a public function.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from ...operators.base import Operator
from .sampler import SamplingError, cg_fixed

__all__ = ["Problem", "operator_norm", "dc_step", "check_common", "data_consistency"]


class Problem:
    """``A``, ``y`` in solver form: batched image/data tensors and the normal operator."""

    def __init__(self, A, y, complex_data, shape, scale):
        if not isinstance(A, Operator):
            raise TypeError(f"A must be a krylearn Operator, got {type(A).__name__}")
        if len(A.ishape) < 2:
            raise ValueError(f"A must act on images: A.ishape = {A.ishape} needs (..., H, W)")
        self.A = A
        self.as_numpy = isinstance(y, np.ndarray)
        if self.as_numpy:
            y = torch.from_numpy(np.ascontiguousarray(y))
        elif not isinstance(y, torch.Tensor):
            raise TypeError(f"y must be a numpy array or torch tensor, got {type(y).__name__}")
        no = len(A.oshape)
        if y.ndim < no or tuple(y.shape[y.ndim - no:]) != A.oshape:
            raise ValueError(f"y has shape {tuple(y.shape)}; A expects (*batch, *{A.oshape})")
        if not bool(torch.isfinite(y).all()):
            raise ValueError("y contains NaN or Inf")
        if not isinstance(scale, numbers.Real) or not math.isfinite(scale) or scale <= 0:
            raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
        self.scale = float(scale)
        self.batch = tuple(y.shape[:y.ndim - no])
        self.image_shape = self.batch + A.ishape
        if shape is not None and tuple(shape) != self.image_shape:
            raise ValueError(f"shape {tuple(shape)} does not match y and A: the image is {self.image_shape}")
        if complex_data is None:
            complex_data = A.dtype.is_complex
        if complex_data and not A.dtype.is_complex:
            raise ValueError("complex_data=True needs a complex operator A")
        self.complex_data = bool(complex_data)
        self.dtype = A.dtype if self.complex_data or not A.dtype.is_complex else (
            torch.float64 if A.dtype == torch.complex128 else torch.float32)
        ydtype = torch.promote_types(A.dtype, y.dtype) if y.is_complex() or A.dtype.is_complex else A.dtype
        if y.is_complex() and not A.dtype.is_complex:
            raise TypeError(f"y is complex ({y.dtype}) but A is real ({A.dtype})")
        self.y = (y.to(device=A.device, dtype=ydtype) / self.scale).reshape((-1,) + A.oshape)
        self.K = self.y.shape[0]
        self.N = A.N
        self._AHy = None

    # operators on (K, *ishape) tensors in self.dtype
    def forward(self, x):
        return self.A._apply(x.to(self.A.dtype))

    def adjoint(self, r):
        out = self.A.H._apply(r)
        return out if self.complex_data or not out.is_complex() else out.real.to(self.dtype)

    def normal(self, x):
        if self.complex_data or not self.A.dtype.is_complex:
            return self.N._apply(x)
        return self.N._apply(x.to(self.A.dtype)).real.to(self.dtype)

    @property
    def AHy(self):
        if self._AHy is None:
            self._AHy = self.adjoint(self.y)
        return self._AHy

    def flat(self, img):
        """``(N_img, H, W)`` network-side images -> ``(K, *ishape)`` on A's device."""
        return img.to(device=self.A.device, dtype=self.dtype).reshape((self.K,) + self.A.ishape)

    def images(self, x):
        """``(K, *ishape)`` -> ``(N_img, H, W)``."""
        return x.reshape((-1,) + self.A.ishape[-2:])

    def output(self, x):
        x = x.reshape(self.image_shape) * self.scale
        return x.cpu().numpy() if self.as_numpy else x


def operator_norm(prob: Problem, iters: int = 20) -> float:
    """``||A||`` (largest singular value) of ``prob``'s operator by seeded power iteration on ``A^H A``."""
    gen = torch.Generator().manual_seed(0)
    shape = (1,) + prob.A.ishape
    v = torch.randn(shape + ((2,) if prob.dtype.is_complex else ()), generator=gen, dtype=torch.float64)
    v = (torch.view_as_complex(v) if prob.dtype.is_complex else v).to(device=prob.A.device, dtype=prob.dtype)
    lam = 0.0
    for _ in range(iters):
        v = v / torch.linalg.vector_norm(v).clamp_min(1e-30)
        w = prob.normal(v)
        lam = float(torch.linalg.vector_norm(w))
        if not math.isfinite(lam) or lam == 0.0:
            raise SamplingError(f"the power iteration for ||A|| gave {lam}")
        v = w
    return math.sqrt(lam)


def dc_step(prob: Problem, x0: torch.Tensor, gamma, steps: int, what: str) -> torch.Tensor:
    """The DDS data-consistency step on ``(K, *ishape)`` images."""
    if gamma is None:
        return cg_fixed(prob.normal, prob.AHy, x0, steps, what)
    rhs = x0 + gamma * prob.AHy  # complex + complex: no (1 + i) factor
    return cg_fixed(lambda v: v + gamma * prob.normal(v), rhs, x0, steps, what)


def check_common(nfe, eta, cg_steps, gamma):
    """``ValueError`` naming the first of the samplers' common arguments that is out of range."""
    if not isinstance(nfe, numbers.Integral) or isinstance(nfe, bool) or nfe < 1:
        raise ValueError(f"nfe must be a positive integer, got {nfe!r}")
    if not isinstance(eta, numbers.Real) or not 0 <= eta <= 1:
        raise ValueError(f"eta must lie in [0, 1], got {eta!r}")
    if not isinstance(cg_steps, numbers.Integral) or isinstance(cg_steps, bool) or cg_steps < 0:
        raise ValueError(f"cg_steps must be an integer >= 0, got {cg_steps!r}")
    if gamma is not None and (not isinstance(gamma, numbers.Real) or not math.isfinite(gamma) or gamma <= 0):
        raise ValueError(f"gamma must be None (noiseless form) or a finite number > 0, got {gamma!r}")


def data_consistency(A: Operator, x0, y, *, gamma=None, steps: int = 5, complex_data=None):
    """The DDS data-consistency step on its own: ``steps`` CG iterations started at ``x0``.

    Parameters
    ----------
    A : Operator
        ``ishape = (..., H, W)``.
    x0 : array or tensor, (*batch, *A.ishape)
        The denoised estimate (complex for complex ``A`` unless
        ``complex_data=False``).
    y : array or tensor, (*batch, *A.oshape)
    gamma : float or None
        ``None``: CG on ``A^H A x = A^H y``; else on
        ``(I + gamma A^H A) x = x0 + gamma A^H y``.
    steps : int
        CG iterations (fixed).

    Returns
    -------
    Same type as ``y`` (numpy or torch), the image shape.
    """
    check_common(1, 0.0, steps, gamma)
    prob = Problem(A, y, complex_data, None, 1.0)
    x0 = torch.as_tensor(x0) if isinstance(x0, np.ndarray) else x0
    if not isinstance(x0, torch.Tensor):
        raise TypeError(f"x0 must be a numpy array or torch tensor, got {type(x0).__name__}")
    if tuple(x0.shape) != prob.image_shape:
        raise ValueError(f"x0 must have shape {prob.image_shape}, got {tuple(x0.shape)}")
    if x0.is_complex() and not prob.complex_data:
        raise TypeError("x0 is complex but complex_data=False")
    x0 = x0.to(device=A.device, dtype=prob.dtype).reshape((prob.K,) + A.ishape)
    return prob.output(dc_step(prob, x0, gamma, steps, "data consistency"))
