"""DDS (Chung, Lee, Ye, ICLR 2024) and DPS (Chung et al., ICLR 2023) samplers.

DDS, one step ``t -> t_next`` of the grid :func:`~.schedule.time_grid`::

    eps  = denoiser(x_t, t)                                   # one network call
    x0   = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)         # Tweedie
    x0'  = M CG steps from x0 on                               # data consistency
           A^H A x = A^H y                   (gamma=None, "noiseless")
           (I + gamma A^H A) x = x0 + gamma A^H y   (gamma > 0, the prox of
                                              gamma/2 ||y - A x||^2 at x0)
    x_next = sqrt(abar_next) x0' + sqrt(1 - abar_next) (eta z + sqrt(1 - eta^2) eps)

and ``abar_{-1} = 1`` makes the last step return ``x0'``.

Complex images
--------------
The network sees a complex image as 2 real channels (real, imaginary); the
data-consistency step runs on the *complex* image with the operator's exact
adjoint and CG with conjugated inner products (``Re <p, A^H A p>``).  The
right-hand side ``x0 + gamma A^H y`` is formed in complex arithmetic, which
fixes the authors' code (it adds the complex ``gamma A^H y`` to the 2-channel
real tensor, i.e. uses ``x0 + (1 + i) gamma A^H y``).  A real image with a
complex operator (``complex_data=False`` with SENSE) uses the real-restricted
normal operator ``Re(A^H A x)`` and right-hand side ``Re(A^H y)``.

Sizes
-----
The UNet needs ``H, W`` multiples of its ``size_multiple``; the samplers run
the diffusion on a canvas padded symmetrically to that multiple
(:func:`pad_to_multiple`) and set the estimate ``x0'`` to zero outside the
field of view (a support constraint) before re-noising; the result is the
cropped field of view.

Batches
-------
``y`` has shape ``(*batch, *A.oshape)`` and the image ``(*batch, *A.ishape)``;
every batch entry is an independent problem with its own CG scalars (a
4-D-maps SENSE operator with ``ishape = (slices, ny, nx)`` makes one
problem of a whole volume).  All network inputs of one step go through the
denoiser together (or in chunks of ``net_batch``).

Scaling
-------
The prior was trained on images of a given range (see the prior's card);
pass ``scale`` so that ``x / scale`` lies in it: the sampler solves for
``x / scale`` with data ``y / scale`` and returns ``x``.

Failures
--------
Non-finite values from the denoiser or the CG step raise
:class:`SamplingError` naming the step; nothing is swallowed.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch
from ...operators.base import Operator

from .schedule import VPSchedule, time_grid

__all__ = [
    "SamplingError",
    "cg_fixed",
    "crop",
    "data_consistency",
    "dds_sample",
    "dds_sample_volume",
    "dps_sample",
    "from_channels",
    "pad_to_multiple",
    "to_channels",
]


class SamplingError(RuntimeError):
    """A sampler produced non-finite values (the message names the step and the stage)."""


# ------------------------------------------------------------------ helpers
def pad_to_multiple(x: torch.Tensor, multiple: int, value: float = 0.0):
    """Pad the last two axes of ``x`` symmetrically up to multiples of ``multiple``.

    Parameters
    ----------
    x : torch.Tensor, (..., H, W)
    multiple : int
    value : float
        Fill value.

    Returns
    -------
    (torch.Tensor (..., H', W'), tuple pads)
        ``pads = (top, bottom, left, right)``; :func:`crop` undoes it.  An odd
        excess puts the extra row/column at the bottom/right.
    """
    if not isinstance(multiple, numbers.Integral) or multiple < 1:
        raise ValueError(f"multiple must be a positive integer, got {multiple!r}")
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    pads = (ph // 2, ph - ph // 2, pw // 2, pw - pw // 2)
    if ph == 0 and pw == 0:
        return x, pads
    out = x.new_full(tuple(x.shape[:-2]) + (h + ph, w + pw), value)
    out[..., pads[0]:pads[0] + h, pads[2]:pads[2] + w] = x
    return out, pads


def crop(x: torch.Tensor, pads) -> torch.Tensor:
    """Undo :func:`pad_to_multiple` (``pads = (top, bottom, left, right)``)."""
    t, b, l, r = pads
    return x[..., t:x.shape[-2] - b, l:x.shape[-1] - r]


def to_channels(img: torch.Tensor, complex_data: bool, dtype=torch.float32) -> torch.Tensor:
    """``(N, H, W)`` image -> ``(N, C, H, W)`` real network input (C = 2: real, imaginary; C = 1)."""
    if complex_data:
        if not img.is_complex():
            img = img.to(torch.complex128 if img.dtype == torch.float64 else torch.complex64)
        return torch.stack([img.real, img.imag], dim=1).to(dtype)
    if img.is_complex():
        raise TypeError("a complex image needs complex_data=True")
    return img.unsqueeze(1).to(dtype)


def from_channels(x: torch.Tensor, complex_data: bool, dtype: torch.dtype) -> torch.Tensor:
    """Inverse of :func:`to_channels`: ``(N, C, H, W)`` -> ``(N, H, W)`` in ``dtype`` (complex or real)."""
    if complex_data:
        real = torch.float64 if dtype == torch.complex128 else torch.float32
        return torch.complex(x[:, 0].to(real), x[:, 1].to(real))
    return x[:, 0].to(dtype)


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-row ``Re <a_k, b_k> = Re sum conj(a) b`` over all but the first axis -> (K,)."""
    if a.is_complex():
        return (a.conj() * b).real.reshape(a.shape[0], -1).sum(dim=1)
    return (a * b).reshape(a.shape[0], -1).sum(dim=1)


def cg_fixed(apply, b: torch.Tensor, x0: torch.Tensor, iters: int, what: str = "CG") -> torch.Tensor:
    """Exactly ``iters`` conjugate-gradient steps on ``K`` independent Hermitian PSD systems.

    Parameters
    ----------
    apply : callable
        ``v -> M v`` on tensors shaped like ``b``, Hermitian positive
        (semi)definite per row.
    b, x0 : torch.Tensor, (K, ...)
        Right-hand sides and starting points; row ``k`` is system ``k``.
    iters : int
        Steps (no early stop: only a row whose residual has fallen to
        rounding level, ``||r|| <= 10 eps max(||r_0||, ||b||)``, stays put).
    what : str
        Names the step in error messages.

    Returns
    -------
    torch.Tensor, like ``b``

    Raises
    ------
    SamplingError
        When a curvature ``Re <p, M p>`` or the iterate becomes non-finite.

    Notes
    -----
    Inner products are conjugated (``Re <r, r>``, ``Re <p, M p>``): the
    Hermitian CG, not the complex-symmetric COCG of the authors' code.
    """
    x = x0.clone()
    if iters == 0:
        return x
    bshape = (-1,) + (1,) * (b.ndim - 1)
    r = b - apply(x)
    p = r.clone()
    rs = _dot(r, r)
    # rows whose residual reached rounding level stop moving (past that point CG on a
    # singular A^H A only amplifies rounding errors); this is not an early stop
    eps = torch.finfo(rs.dtype).eps
    floor = (10 * eps) ** 2 * torch.maximum(rs, _dot(b, b))
    active = rs > floor
    for _ in range(iters):
        q = apply(p)
        pq = _dot(p, q)
        if not bool(torch.isfinite(pq).all()):
            raise SamplingError(f"{what}: non-finite curvature p^H M p")
        ok = (pq > 0) & active
        alpha = torch.where(ok, rs / torch.where(ok, pq, torch.ones_like(pq)), torch.zeros_like(pq))
        alpha = alpha.to(x.dtype).reshape(bshape)
        x = x + alpha * p
        r = r - alpha * q
        rs_new = _dot(r, r)
        active = active & (rs_new > floor)
        pos = rs > 0
        beta = torch.where(pos, rs_new / torch.where(pos, rs, torch.ones_like(rs)), torch.zeros_like(rs))
        p = r + beta.to(x.dtype).reshape(bshape) * p
        rs = rs_new
    if not bool(torch.isfinite(x).all()):
        raise SamplingError(f"{what}: non-finite iterate")
    return x


class _Problem:
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


def operator_norm(prob: _Problem, iters: int = 20) -> float:
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


def _dc_step(prob: _Problem, x0: torch.Tensor, gamma, steps: int, what: str) -> torch.Tensor:
    """The DDS data-consistency step on ``(K, *ishape)`` images."""
    if gamma is None:
        return cg_fixed(prob.normal, prob.AHy, x0, steps, what)
    rhs = x0 + gamma * prob.AHy  # complex + complex: no (1 + i) factor
    return cg_fixed(lambda v: v + gamma * prob.normal(v), rhs, x0, steps, what)


def _check_common(nfe, eta, cg_steps, gamma):
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
    _check_common(1, 0.0, steps, gamma)
    prob = _Problem(A, y, complex_data, None, 1.0)
    x0 = torch.as_tensor(x0) if isinstance(x0, np.ndarray) else x0
    if not isinstance(x0, torch.Tensor):
        raise TypeError(f"x0 must be a numpy array or torch tensor, got {type(x0).__name__}")
    if tuple(x0.shape) != prob.image_shape:
        raise ValueError(f"x0 must have shape {prob.image_shape}, got {tuple(x0.shape)}")
    if x0.is_complex() and not prob.complex_data:
        raise TypeError("x0 is complex but complex_data=False")
    x0 = x0.to(device=A.device, dtype=prob.dtype).reshape((prob.K,) + A.ishape)
    return prob.output(_dc_step(prob, x0, gamma, steps, "data consistency"))


# ------------------------------------------------------------------ network side
def _net_info(denoiser, device):
    if isinstance(denoiser, torch.nn.Module):
        p = next(iter(denoiser.parameters()), None)
        if p is not None:
            return p.device, p.dtype if p.dtype.is_floating_point else torch.float32
    return torch.device(device), torch.float32


def _multiple(denoiser, multiple):
    if multiple is None:
        multiple = getattr(denoiser, "size_multiple", 1)
    if not isinstance(multiple, numbers.Integral) or multiple < 1:
        raise ValueError(f"multiple must be a positive integer, got {multiple!r}")
    return int(multiple)


def _call(denoiser, x, t: int, net_batch, step, what):
    tt = torch.full((x.shape[0],), int(t), dtype=torch.long, device=x.device)
    if net_batch is None or net_batch >= x.shape[0]:
        eps = denoiser(x, tt)
    else:
        eps = torch.cat([denoiser(x[i:i + net_batch], tt[i:i + net_batch])
                         for i in range(0, x.shape[0], net_batch)])
    if not isinstance(eps, torch.Tensor) or eps.shape != x.shape:
        raise ValueError(f"the denoiser must return a tensor of shape {tuple(x.shape)}, got "
                         f"{getattr(eps, 'shape', type(eps).__name__)}")
    if not bool(torch.isfinite(eps).all()):
        raise SamplingError(f"{what} step {step} (t={t}): the denoiser returned non-finite values")
    return eps


def _generator(seed, device):
    if seed is None:
        return None
    if not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
    return torch.Generator(device=device).manual_seed(int(seed))


def _ddim_loop(denoiser, prob: _Problem, dc, *, nfe, eta, schedule, seed, progress, callback, multiple,
               net_batch, what):
    """The DDS loop shared by :func:`dds_sample` and :func:`dds_sample_volume`; returns ``(K, *ishape)``."""
    from tqdm.auto import tqdm

    schedule = schedule or VPSchedule()
    times, times_next = time_grid(nfe, schedule.num_timesteps, "dds")
    net_dev, net_dtype = _net_info(denoiser, prob.A.device)
    gen = _generator(seed, net_dev)
    m = _multiple(denoiser, multiple)
    h, w = prob.A.ishape[-2:]
    n_img = prob.K * math.prod(prob.A.ishape[:-2])
    c = 2 if prob.complex_data else 1
    _, pads = pad_to_multiple(torch.empty(0, h, w), m)
    canvas = (n_img, c, h + pads[0] + pads[1], w + pads[2] + pads[3])
    x = torch.randn(canvas, generator=gen, device=net_dev, dtype=net_dtype)
    sq = lambda a: float(np.sqrt(a))
    out = None
    with torch.no_grad():
        for i in tqdm(range(nfe), disable=not progress, desc=what, unit="step", dynamic_ncols=True):
            t, tn = int(times[i]), int(times_next[i])
            ab, abn = float(schedule.alpha_bar(t)), float(schedule.alpha_bar(tn))
            eps = _call(denoiser, x, t, net_batch, i, what)
            x0 = (x - sq(1 - ab) * eps) / sq(ab)
            img = prob.flat(from_channels(crop(x0, pads), prob.complex_data, prob.dtype))
            out = dc(img, i, t)
            if callback is not None:
                callback(i, t, prob.output(out.clone()))
            if tn < 0:
                break
            x0p, _ = pad_to_multiple(to_channels(prob.images(out), prob.complex_data, net_dtype).to(net_dev), m)
            z = torch.randn(canvas, generator=gen, device=net_dev, dtype=net_dtype)
            x = sq(abn) * x0p + sq(1 - abn) * (eta * z + math.sqrt(1 - eta * eta) * eps)
    return out


def dds_sample(denoiser, A: Operator, y, *, shape=None, nfe: int = 49, eta: float = 0.85, cg_steps: int = 5,
               gamma=None, complex_data=None, scale: float = 1.0, schedule: VPSchedule | None = None,
               seed=None, progress: bool = True, callback=None, multiple=None, net_batch=None):
    """Decomposed Diffusion Sampler: reconstruct ``x`` from ``y = A x (+ noise)``.

    Parameters
    ----------
    denoiser : callable
        ``eps = denoiser(x_t, t)`` on real ``(N, C, H', W')`` tensors and
        ``(N,)`` integer steps (a :class:`~.unet.UNet` in eval mode, a
        :class:`~.prior.GaussianDenoiser`, ...).  Its ``size_multiple``
        attribute (if any) sets the padding.
    A : Operator
        Forward model with ``ishape = (..., H, W)`` (e.g.
        :class:`~krylearn.operators.mri.SenseOperator`,
        :class:`~krylearn.operators.ct.ParallelBeamProjector`); needs an
        exact adjoint.
    y : numpy.ndarray or torch.Tensor, (*batch, *A.oshape)
        Measurements; a batch of slices is sampled at once.
    shape : tuple, optional
        The expected image shape ``(*batch, *A.ishape)`` (checked).
    nfe : int
        Network calls (19, 49 or 99 as in the paper; grid of
        :func:`~.schedule.time_grid` ``kind="dds"``).
    eta : float
        Fresh-noise fraction in the re-noising (0: deterministic DDIM).
    cg_steps : int
        CG iterations per step (0 disables the data step: prior sampling).
    gamma : float or None
        ``None``: noiseless form ``A^H A x = A^H y`` started at ``x0``;
        a float: ``(I + gamma A^H A) x = x0 + gamma A^H y``.
    complex_data : bool, optional
        Default: ``A`` is complex.
    scale : float
        The prior's images are ``x / scale`` (see the module notes).
    schedule : VPSchedule, optional
    seed : int, optional
        Seeds ``x_T`` and the re-noising (a generator on the denoiser's
        device); the same seed gives the same result on the same device.
    progress : bool
        tqdm bar over the steps.
    callback : callable, optional
        ``callback(step, t, x0_dc)`` after every data step, with the current
        estimate in the output's type and shape.
    multiple : int, optional
        Override the padding multiple.
    net_batch : int, optional
        At most this many images per denoiser call.

    Returns
    -------
    numpy.ndarray or torch.Tensor (as ``y``), ``(*batch, *A.ishape)``,
    complex (``A.dtype``) or real.

    Raises
    ------
    SamplingError
        Non-finite values (the step is named).
    """
    _check_common(nfe, eta, cg_steps, gamma)
    prob = _Problem(A, y, complex_data, shape, scale)

    def dc(img, i, t):
        return _dc_step(prob, img, gamma, cg_steps, f"DDS step {i} (t={t}): CG")

    out = _ddim_loop(denoiser, prob, dc, nfe=nfe, eta=eta, schedule=schedule, seed=seed, progress=progress,
                     callback=callback, multiple=multiple, net_batch=net_batch, what="DDS")
    return prob.output(out)


# ------------------------------------------------------------------ 3D (TV along z)
def _dz(x):
    """Forward difference along axis 0 with periodic wrap: ``x[k+1] - x[k]`` (authors' ``_Dz``)."""
    return torch.roll(x, -1, dims=0) - x


def _dzt(v):
    """Exact adjoint of :func:`_dz`: ``v[k-1] - v[k]``."""
    return torch.roll(v, 1, dims=0) - v


def _soft(v, tau):
    if v.is_complex():
        mag = v.abs()
        return v * torch.clamp(mag - tau, min=0) / torch.where(mag > 0, mag, torch.ones_like(mag))
    return torch.sign(v) * torch.clamp(v.abs() - tau, min=0)


def dds_sample_volume(denoiser, A: Operator, y, *, nfe: int = 49, eta: float = 0.85, cg_steps: int = 5,
                      lam: float = 0.04, rho: float = 10.0, complex_data=None, scale: float = 1.0,
                      schedule: VPSchedule | None = None, seed=None, progress: bool = True, callback=None,
                      multiple=None, net_batch=None):
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
        As :func:`dds_sample`; ``A`` acts on one slice (``ishape = (H, W)``).
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
    _check_common(nfe, eta, cg_steps, None)
    for name, v in (("lam", lam), ("rho", rho)):
        if not isinstance(v, numbers.Real) or not math.isfinite(v) or v < 0 or (name == "rho" and v == 0):
            raise ValueError(f"{name} must be a finite number {'> 0' if name == 'rho' else '>= 0'}, got {v!r}")
    if isinstance(A, Operator) and len(A.ishape) != 2:
        raise ValueError(f"A must act on one slice (ishape (H, W)), got ishape {A.ishape}")
    prob = _Problem(A, y, complex_data, None, scale)
    if len(prob.batch) != 1:
        raise ValueError(f"y must have shape (slices, *{A.oshape}), got {tuple(prob.y.shape)}")
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

    out = _ddim_loop(denoiser, prob, dc, nfe=nfe, eta=eta, schedule=schedule, seed=seed, progress=progress,
                     callback=callback, multiple=multiple, net_batch=net_batch, what="DDS-3D")
    return prob.output(out)


# ------------------------------------------------------------------ DPS
def dps_sample(denoiser, A: Operator, y, *, shape=None, nfe: int = 1000, zeta: float = 1.0, eta: float = 1.0,
               normalize: bool = True, complex_data=None, scale: float = 1.0, schedule: VPSchedule | None = None,
               seed=None, progress: bool = True, callback=None, multiple=None, net_batch=None):
    """Diffusion posterior sampling (Chung et al., ICLR 2023), the DDS paper's baseline.

    Step ``t -> t_next`` (grid :func:`~.schedule.time_grid` ``kind="uniform"``;
    ``nfe = 1000`` is the full DDPM chain)::

        eps = denoiser(x_t, t);  x0 = Tweedie(x_t, eps)
        x'  = sqrt(abar_next) x0 + sqrt(1 - abar_next - s^2) eps + s z        # DDIM, s = eta * sigma_DDPM
        x_next = x' - zeta / ||y - A x0|| * grad_{x_t} ||y - A x0||^2

    with ``sigma_DDPM^2 = (1 - abar_next)/(1 - abar_t) (1 - abar_t/abar_next)``
    (``eta = 1`` and consecutive steps: DDPM ancestral sampling, as DPS).
    The step size is the paper's ``zeta_i = zeta / ||y - A x0(x_t)||`` per
    batch entry (the official code's ``scale`` on ``grad ||r||`` is ``2 zeta``),
    divided by ``||A||`` when ``normalize`` (the default).  The gradient's
    size grows with ``||A||``, so without it a ``zeta`` tuned for one operator
    diverges on another: the paper tunes ``zeta`` per task.  With it the
    default ``zeta = 1`` carries over; for SENSE with coil maps normalised to
    ``sum_c |S_c|^2 = 1`` (``||A|| = 1``) both steps are the same, while for
    8-view parallel-beam CT at 128^2 (``||A|| ~ 30``) the paper's step gave a
    7 dB reconstruction in the benchmark.
    The gradient is ``J^T (-2 A^H (y - A x0))``: the operator's exact adjoint,
    then one vector-Jacobian product through the denoiser (autograd), so
    operators need not be differentiable.

    Parameters
    ----------
    denoiser : callable
        Differentiable in ``x_t`` (a torch module or torch-only callable).
    A, y, shape, complex_data, scale, schedule, seed, progress, multiple, net_batch
        As :func:`dds_sample`.
    nfe : int
        Network calls (default 1000).
    zeta : float
        Guidance strength (>= 0; 0 gives unconditional sampling).
    eta : float
        DDIM noise level in [0, 1].
    normalize : bool
        Divide the step by ``||A||`` (20 seeded power iterations on ``A^H A``
        before sampling).
    callback : callable, optional
        ``callback(step, t, x0)`` with the (unguided) Tweedie estimate.

    Returns
    -------
    numpy.ndarray or torch.Tensor (as ``y``), ``(*batch, *A.ishape)``.
    """
    from tqdm.auto import tqdm

    if not isinstance(nfe, numbers.Integral) or isinstance(nfe, bool) or nfe < 1:
        raise ValueError(f"nfe must be a positive integer, got {nfe!r}")
    if not isinstance(eta, numbers.Real) or not 0 <= eta <= 1:
        raise ValueError(f"eta must lie in [0, 1], got {eta!r}")
    if not isinstance(zeta, numbers.Real) or not math.isfinite(zeta) or zeta < 0:
        raise ValueError(f"zeta must be a finite number >= 0, got {zeta!r}")
    prob = _Problem(A, y, complex_data, shape, scale)
    zeta = zeta / operator_norm(prob) if normalize else zeta
    schedule = schedule or VPSchedule()
    times, times_next = time_grid(nfe, schedule.num_timesteps, "uniform")
    net_dev, net_dtype = _net_info(denoiser, A.device)
    gen = _generator(seed, net_dev)
    m = _multiple(denoiser, multiple)
    h, w = A.ishape[-2:]
    per = math.prod(A.ishape[:-2])  # network images per batch entry
    c = 2 if prob.complex_data else 1
    _, pads = pad_to_multiple(torch.empty(0, h, w), m)
    canvas = (prob.K * per, c, h + pads[0] + pads[1], w + pads[2] + pads[3])
    mask, _ = pad_to_multiple(torch.ones(h, w, dtype=net_dtype, device=net_dev), m)  # field of view
    x = torch.randn(canvas, generator=gen, device=net_dev, dtype=net_dtype)
    for i in tqdm(range(nfe), disable=not progress, desc="DPS", unit="step", dynamic_ncols=True):
        t, tn = int(times[i]), int(times_next[i])
        ab, abn = float(schedule.alpha_bar(t)), float(schedule.alpha_bar(tn))
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            eps = _call(denoiser, x, t, net_batch, i, "DPS")
            x0 = (x - math.sqrt(1 - ab) * eps) / math.sqrt(ab)
        img = prob.flat(from_channels(crop(x0.detach(), pads), prob.complex_data, prob.dtype))
        r = prob.y - prob.forward(img)
        rnorm = torch.linalg.vector_norm(r.reshape(prob.K, -1), dim=1)  # (K,)
        g_img = -2 * prob.adjoint(r)  # gradient of ||y - A x0||^2 w.r.t. x0 (real representation)
        g0, _ = pad_to_multiple(to_channels(prob.images(g_img), prob.complex_data, net_dtype).to(net_dev), m)
        (grad,) = torch.autograd.grad(x0, x, grad_outputs=g0)
        if not bool(torch.isfinite(grad).all()):
            raise SamplingError(f"DPS step {i} (t={t}): non-finite guidance gradient")
        step = (zeta / rnorm.clamp_min(1e-30)).to(device=net_dev, dtype=net_dtype)
        step = step.repeat_interleave(per).reshape(-1, 1, 1, 1)
        if callback is not None:
            callback(i, t, prob.output(img.clone()))
        with torch.no_grad():
            x0d, epsd = x0.detach() * mask, eps.detach()
            if tn < 0:
                xn = x0d
            else:
                s2 = eta ** 2 * (1 - abn) / (1 - ab) * (1 - ab / abn)
                z = torch.randn(canvas, generator=gen, device=net_dev, dtype=net_dtype)
                xn = math.sqrt(abn) * x0d + math.sqrt(max(1 - abn - s2, 0.0)) * epsd + math.sqrt(s2) * z
            x = xn - step * grad
    with torch.no_grad():
        img = prob.flat(from_channels(crop(x.detach(), pads), prob.complex_data, prob.dtype))
    return prob.output(img)
