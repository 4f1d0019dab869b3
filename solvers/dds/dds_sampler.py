"""The DDS sampler (Chung, Lee, Ye, ICLR 2024); DPS is in :mod:`.dps`, 3D DDS in :mod:`.volume`.

DDS, one step ``t -> t_next`` of the grid :func:`~.schedule.time_grid`::

    eps  = denoiser(x_t, t)                                   # one network call
    x0   = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)         # Tweedie
    x0'  = M CG steps from x0 on                               # data consistency
           A^H A x = A^H y                   (gamma=None, "noiseless")
           (I + gamma A^H A) x = x0 + gamma A^H y   (gamma > 0, the prox of
                                              gamma/2 ||y - A x||^2 at x0)
    x_next = sqrt(abar_next) x0' + sqrt(1 - abar_next) (eta z + sqrt(1 - eta^2) eps)

and ``abar_{-1} = 1`` makes the last step return ``x0'``.

Starting from an image
----------------------
``start < 1`` runs only the last ``start`` share of the chain (the grid of
:func:`~.schedule.time_grid`) and starts from ``init`` noised to the first
step's level, ``x_t0 = sqrt(abar_t0) init + sqrt(1 - abar_t0) z``, instead
of pure noise (Chung, Sim, Ye, CVPR 2022, "Come-closer-diffuse-faster").
``init`` is typically a classical reconstruction (TV, CG-SENSE).  The
smaller ``start``, the less the prior can move the result away from
``init``: ``start`` is the prior's weight, and a cheap one (fewer network
calls).

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
from tqdm.auto import tqdm

from ...operators.base import Operator
from .images import crop, from_channels, pad_to_multiple, to_channels
from .network import call_denoiser, net_info, seeded_generator, size_multiple
from .problem import Problem, check_common, dc_step
from .schedule import VPSchedule, time_grid

__all__ = ["ddim_loop", "dds_sample", "start_image"]


def start_image(prob: Problem, start, init):
    """``init`` checked and as ``(K, *ishape)`` on A's device in ``prob.dtype`` (None when ``start == 1``)."""
    if not isinstance(start, numbers.Real) or isinstance(start, bool) or not 0 < start <= 1:
        raise ValueError(f"start must lie in (0, 1], got {start!r}")
    if start == 1:
        return None
    if init is None:
        raise ValueError(f"start={start} < 1 needs init, the image to start from")
    t = torch.from_numpy(np.ascontiguousarray(init)) if isinstance(init, np.ndarray) else init
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"init must be a numpy array or torch tensor, got {type(init).__name__}")
    if tuple(t.shape) != prob.image_shape:
        raise ValueError(f"init must have shape {prob.image_shape}, got {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError("init contains NaN or Inf")
    if t.is_complex() and not prob.complex_data:
        t = t.real
    return t.to(device=prob.A.device, dtype=prob.dtype).reshape((prob.K,) + prob.A.ishape)


def ddim_loop(denoiser, prob: Problem, dc, *, nfe, eta, schedule, seed, progress, callback, multiple,
               net_batch, what, start=1.0, init=None):
    """The DDS loop shared by :func:`dds_sample` and :func:`~.volume.dds_sample_volume`; returns ``(K, *ishape)``.

    ``init`` (``(K, *ishape)`` in ``prob.dtype``, unscaled) is the start image when ``start < 1``.
    """
    schedule = schedule or VPSchedule()
    times, times_next = time_grid(nfe, schedule.num_timesteps, "dds", start=start)
    net_dev, net_dtype = net_info(denoiser, prob.A.device)
    gen = seeded_generator(seed, net_dev)
    m = size_multiple(denoiser, multiple)
    h, w = prob.A.ishape[-2:]
    n_img = prob.K * math.prod(prob.A.ishape[:-2])
    c = 2 if prob.complex_data else 1
    _, pads = pad_to_multiple(torch.empty(0, h, w), m)
    canvas = (n_img, c, h + pads[0] + pads[1], w + pads[2] + pads[3])
    x = torch.randn(canvas, generator=gen, device=net_dev, dtype=net_dtype)
    sq = lambda a: float(np.sqrt(a))
    if start < 1:
        ab0 = float(schedule.alpha_bar(int(times[0])))
        x0i = to_channels(prob.images(init / prob.scale), prob.complex_data, net_dtype).to(net_dev)
        x0i, _ = pad_to_multiple(x0i, m)
        x = sq(ab0) * x0i + sq(1 - ab0) * x
    out = None
    with torch.no_grad():
        for i in tqdm(range(len(times)), disable=not progress, desc=what, unit="step", dynamic_ncols=True):
            t, tn = int(times[i]), int(times_next[i])
            ab, abn = float(schedule.alpha_bar(t)), float(schedule.alpha_bar(tn))
            eps = call_denoiser(denoiser, x, t, net_batch, i, what)
            x0 = (x - sq(1 - ab) * eps) / sq(ab)
            img = prob.flat(from_channels(crop(x0, pads), prob.complex_data, prob.dtype))
            out = dc(img, i, t)
            if callback is not None:
                callback(i, t, prob.output(out.clone()))
            if tn >= 0:  # re-noise towards t_next; the last step (t_next = -1) returns x0' as it is
                x0p, _ = pad_to_multiple(to_channels(prob.images(out), prob.complex_data, net_dtype).to(net_dev), m)
                z = torch.randn(canvas, generator=gen, device=net_dev, dtype=net_dtype)
                x = sq(abn) * x0p + sq(1 - abn) * (eta * z + math.sqrt(1 - eta * eta) * eps)
    return out


def dds_sample(denoiser, A: Operator, y, *, shape=None, nfe: int = 49, eta: float = 0.85, cg_steps: int = 5,
               gamma=None, complex_data=None, scale: float = 1.0, schedule: VPSchedule | None = None,
               seed=None, progress: bool = True, callback=None, multiple=None, net_batch=None,
               start: float = 1.0, init=None):
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
    start : float
        Share of the chain to run, in ``(0, 1]`` (1: from pure noise, the
        paper; see the module notes).
    init : array or tensor, (*batch, *A.ishape), optional
        The image to start from; required when ``start < 1``.

    Returns
    -------
    numpy.ndarray or torch.Tensor (as ``y``), ``(*batch, *A.ishape)``,
    complex (``A.dtype``) or real.

    Raises
    ------
    SamplingError
        Non-finite values (the step is named).
    """
    check_common(nfe, eta, cg_steps, gamma)
    prob = Problem(A, y, complex_data, shape, scale)
    x_init = start_image(prob, start, init)

    def dc(img, i, t):
        return dc_step(prob, img, gamma, cg_steps, f"DDS step {i} (t={t}): CG")

    out = ddim_loop(denoiser, prob, dc, nfe=nfe, eta=eta, schedule=schedule, seed=seed, progress=progress,
                     callback=callback, multiple=multiple, net_batch=net_batch, what="DDS", start=start,
                     init=x_init)
    return prob.output(out)
