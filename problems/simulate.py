"""Simulated MRI and CT measurements, written in the layouts users bring (fastMRI HDF5, krylearn CT HDF5).

MRI
---
``y = M * fft2c(S x) + n``: coil maps ``S`` (birdcage by default, normalised
to ``sum_c |S_c|^2 = 1``), the centred orthonormal FFT of
:mod:`krylearn.operators.mri`, a sampling mask ``M`` and complex Gaussian
noise ``n`` on the sampled entries only (unsampled entries are exactly 0).

**SNR** (decibels): ``snr_db = 20 log10(rms(k) / sigma)``, where ``rms(k)`` is
the root mean square of the *fully sampled, noiseless* multi-coil k-space
over all slices, coils and k-space locations, and ``sigma`` is the standard
deviation of each complex noise sample (``E|n|^2 = sigma^2``; real and
imaginary parts each ``sigma / sqrt 2``).  The FFT is orthonormal, so this is
also the RMS of the coil images over the image-domain noise level.  One
``sigma`` holds for the whole file (a property of the receiver, not of the slice).

**Inverse crime.**  With ``downsample=1`` the data come from the very
discretisation a reconstruction uses (the image grid, the stored maps), so
``SenseOperator(maps, mask)(image) == noiseless data`` exactly: results on
such data are optimistic.  With ``downsample=2`` (the default of
:func:`write_mri_testset`) the images and maps are given on a grid twice as
fine, k-space is computed there and only its central ``ny x nx`` part is
kept (scaled by ``1/2`` so intensities are unchanged): the object is not
band-limited to the reconstruction grid and ``S x`` is formed before the
low-pass, so no reconstruction on the coarse grid reproduces the data
exactly.  The stored maps are the same analytic birdcage maps sampled at the
coarse pixel centres.  Files record ``inverse_crime`` (true / false) in
their attributes.

CT
--
``p = P x + n`` with the parallel-beam projector of
:mod:`krylearn.operators.ct` (exact adjoint), views evenly spread over
``[0, pi)``.  ``noise`` is relative: ``sigma = noise * rms(p)``, Gaussian, on
every sinogram entry.  With ``downsample=2`` the volume is projected on a
grid twice as fine (same detector bins: spacing 2 fine pixels) and the
reference is its 2 x 2 block mean, which is exactly the pixel-constant image
the coarse projector models -- so again no inverse crime.

This module sits above the operators and the fastMRI format module; it
imports no solver.
"""

from __future__ import annotations

import math
import numbers
import os
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..datasets.fastmri import write_ct, write_kspace
from ..operators.ct import ParallelBeamProjector, default_n_det
from ..operators.mri import (
    acceleration,
    birdcage_maps,
    fft2c,
    gaussian1d_mask,
    ifft2c,
    poisson2d_mask,
    rss,
    uniform1d_mask,
)
from ..utils.checks import check_int, check_real
from ..utils.version import __version__
from .brain import brain_slices, brain_volume, complex_brain_slices
from .phantoms import random_ellipsoids

__all__ = ["CTSimulation", "MRISimulation", "make_mask", "simulate_ct", "simulate_mri", "write_ct_testset",
           "write_mri_testset"]

_MASKS = ("uniform1d", "gaussian1d", "poisson2d")


# ------------------------------------------------------------------ MRI
@dataclass
class MRISimulation:
    """Simulated multi-coil data (numpy arrays).

    Attributes
    ----------
    kspace : complex64, (slices, coils, ky, kx)
        Measured data, zeros where not sampled.
    mask : bool, (kx,) or (ky, kx)
    maps : complex64, (slices, coils, ny, nx)
        Coil maps on the output grid (``sum_c |S_c|^2 = 1``).
    image : complex64, (slices, ny, nx)
        Ground truth on the output grid: the input images themselves
        (``downsample=1``) or their k-space-cropped low-pass version.
    noiseless : complex64, (slices, coils, ky, kx)
        Fully sampled k-space without noise.
    reference_rss : float32, (slices, ny, nx)
        Root-sum-of-squares of the fully sampled noiseless coil images (the
        fastMRI ``reconstruction_rss``; ``= |image|`` when ``downsample=1``).
    sigma : float
        Per-entry complex noise standard deviation (0: noiseless).
    snr_db : float or None
    acceleration : float
        Real ratio ``mask.size / count_nonzero(mask)``.
    inverse_crime : bool
    attrs : dict
        Simulation parameters (written as file attributes).
    """

    kspace: np.ndarray
    mask: np.ndarray
    maps: np.ndarray
    image: np.ndarray
    noiseless: np.ndarray
    reference_rss: np.ndarray
    sigma: float
    snr_db: float | None
    acceleration: float
    inverse_crime: bool
    attrs: dict = field(default_factory=dict)


def make_mask(kind, shape, accel: float, *, acs: float = 0.08, seed=0) -> np.ndarray:
    """A sampling mask by name: ``uniform1d`` / ``gaussian1d`` -> (nx,), ``poisson2d`` -> (ny, nx) bool."""
    ny, nx = shape
    if kind == "uniform1d":
        return uniform1d_mask(nx, accel, acs=acs, seed=seed)
    if kind == "gaussian1d":
        return gaussian1d_mask(nx, accel, acs=acs, seed=seed)
    if kind == "poisson2d":
        s = int(seed.integers(0, 2**31)) if isinstance(seed, np.random.Generator) else int(seed or 0)
        return poisson2d_mask((ny, nx), accel, seed=s)
    raise ValueError(f"mask must be one of {_MASKS} or an array, got {kind!r}")


def _images(images, name="images") -> np.ndarray:
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    a = np.asarray(images)
    if a.dtype == object or a.dtype.kind not in "biufc":
        raise TypeError(f"{name} must be a numeric array, got dtype {a.dtype}")
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or min(a.shape) < 1:
        raise ValueError(f"{name} must have shape (slices, H, W) or (H, W), got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or Inf")
    return a


def _downsample(downsample, shape, name="images"):
    d = check_int("downsample", downsample, 1)
    if shape[-1] % d or shape[-2] % d:
        raise ValueError(f"{name} are {shape[-2]}x{shape[-1]}; downsample={d} needs multiples of {d}")
    return d


def _crop_kspace(k: np.ndarray, ny: int, nx: int) -> np.ndarray:
    """Central ``(ny, nx)`` block of centred k-space (DC stays at ``(ny // 2, nx // 2)``)."""
    Ny, Nx = k.shape[-2:]
    y0, x0 = Ny // 2 - ny // 2, Nx // 2 - nx // 2
    return k[..., y0:y0 + ny, x0:x0 + nx]


def simulate_mri(images, coils: int = 8, *, mask="uniform1d", accel: float = 4.0, acs: float = 0.08,
                 snr_db: float | None = 30.0, seed=0, maps="birdcage", downsample: int = 1) -> MRISimulation:
    """Simulate multi-coil Cartesian k-space from images (see the module notes).

    Parameters
    ----------
    images : array, (slices, H, W) or (H, W), complex or real
        The object on the simulation grid (``downsample`` times the output grid).
    coils : int
        Number of birdcage coils (ignored when ``maps`` is an array).
    mask : {"uniform1d", "gaussian1d", "poisson2d"} or array (nx,) / (ny, nx)
        One mask for every slice (fastMRI files store one).
    accel : float
        Requested acceleration for a named mask (the real one is reported).
    acs : float
        Fully sampled centre fraction of the 1-D masks (default 8 %).
    snr_db : float or None
        SNR as defined in the module notes; ``None`` or ``inf``: no noise.
    seed : int or numpy Generator
        Draws the mask (named masks) and the noise.
    maps : "birdcage" or array, complex, (coils, ny, nx) or (slices, coils, ny, nx)
        Arrays are on the output grid and need ``downsample=1``.
    downsample : int
        1: simulate on the images' grid (inverse crime); 2 (or more): on the
        fine grid, then crop k-space (no inverse crime).

    Returns
    -------
    MRISimulation
    """
    x = _images(images).astype(np.complex128)
    d = _downsample(downsample, x.shape)
    n, Hf, Wf = x.shape
    ny, nx = Hf // d, Wf // d
    rng_mask, rng_noise = _mask_and_noise_rngs(seed)
    maps_fine, maps_out, maps_name = _coil_maps(maps, coils, n, (Hf, Wf), d)
    coils = maps_out.shape[1]
    mask, mask_name = _sampling_mask(mask, (ny, nx), accel, acs, rng_mask)
    m2 = np.broadcast_to(mask, (ny, nx))

    kfull = fft2c(maps_fine * x[:, None])  # (n, C, Hf, Wf)
    if d > 1:
        kfull = _crop_kspace(kfull, ny, nx) / d
        image = ifft2c(_crop_kspace(fft2c(x), ny, nx) / d)
    else:
        image = x
    rms = float(np.sqrt(np.mean(np.abs(kfull) ** 2)))
    snr, sigma = _noise_level(snr_db, rms)
    noise = (rng_noise.standard_normal(kfull.shape) + 1j * rng_noise.standard_normal(kfull.shape)) \
        * (sigma / math.sqrt(2.0))
    k = np.where(m2, kfull + noise, 0).astype(np.complex64)
    maps_out = np.broadcast_to(maps_out, (n, coils, ny, nx)).astype(np.complex64)
    ref = rss(ifft2c(kfull)).astype(np.float32)
    acc = acceleration(mask)
    attrs = {
        "acquisition": "simulated",
        "generator": "krylearn.problems.simulate.simulate_mri",
        "version": __version__,
        "seed": int(seed) if not isinstance(seed, np.random.Generator) else -1,
        "coils": int(coils),
        "maps": maps_name,
        "mask_type": mask_name,
        "accel_requested": float(accel) if mask_name != "given" else acc,
        "acceleration": float(acc),
        "acs_fraction": float(acs) if mask_name in ("uniform1d", "gaussian1d") else None,
        "snr_db": snr,
        "noise_sigma": float(sigma),
        "snr_definition": "20 log10(rms(fully sampled noiseless k-space, all slices/coils/entries) / sigma), "
                          "sigma = std of each complex noise sample (E|n|^2 = sigma^2), noise on sampled entries",
        "kspace_rms": rms,
        "inverse_crime": bool(d == 1),
        "simulation_grid": np.array([Hf, Wf], dtype=np.int64),
        "downsample": int(d),
        "fft": "centred orthonormal 2D DFT (krylearn.operators.mri.fft2c), DC at (ky//2, kx//2)",
        "reference": "reconstruction_rss = rss of the fully sampled noiseless coil images",
        "max": float(ref.max()),
    }
    return MRISimulation(kspace=k, mask=mask, maps=maps_out, image=image.astype(np.complex64),
                         noiseless=kfull.astype(np.complex64), reference_rss=ref, sigma=float(sigma),
                         snr_db=snr, acceleration=float(acc), inverse_crime=d == 1, attrs=attrs)


def _mask_and_noise_rngs(seed):
    """Two generators (one for the mask, one for the noise); a given numpy Generator serves both."""
    if isinstance(seed, np.random.Generator):
        return seed, seed
    s = check_int("seed", seed, 0)
    return tuple(np.random.default_rng(c) for c in np.random.SeedSequence(s).spawn(2))


def _noise_level(snr_db, rms: float) -> tuple[float | None, float]:
    """``(snr_db or None, sigma)``: the per-entry complex noise std for ``snr_db`` (0 for None / +inf)."""
    if snr_db is None or (isinstance(snr_db, numbers.Real) and math.isinf(snr_db) and snr_db > 0):
        return None, 0.0
    snr = check_real("snr_db", snr_db)
    return snr, rms * 10.0 ** (-snr / 20.0)


def _coil_maps(maps, coils, n: int, fine_shape, d: int):
    """``(maps on the simulation grid, maps on the output grid, description)``, complex128 ``(1 or n, C, ., .)``."""
    Hf, Wf = fine_shape
    ny, nx = Hf // d, Wf // d
    if isinstance(maps, str):
        if maps != "birdcage":
            raise ValueError(f"maps must be 'birdcage' or an array, got {maps!r}")
        coils = check_int("coils", coils, 1)
        maps_fine = birdcage_maps(coils, (Hf, Wf), dtype=np.complex128)[None]  # (1, C, Hf, Wf)
        maps_out = birdcage_maps(coils, (ny, nx), dtype=np.complex128)[None]   # = maps_fine[..., ::d, ::d]
        return maps_fine, maps_out, "birdcage (sigpy, r=1.5), normalised to sum_c |S_c|^2 = 1"
    if d != 1:
        raise ValueError("maps given as an array need downsample=1 (the fine-grid maps are unknown)")
    m = np.asarray(maps.detach().cpu().numpy() if isinstance(maps, torch.Tensor) else maps)
    if m.ndim == 3:
        m = m[None]
    if m.ndim != 4 or m.shape[-2:] != (ny, nx) or m.shape[0] not in (1, n):
        raise ValueError(f"maps must have shape (coils, {ny}, {nx}) or ({n}, coils, {ny}, {nx}), got {m.shape}")
    if not np.all(np.isfinite(m)):
        raise ValueError("maps contain NaN or Inf")
    m = m.astype(np.complex128)
    return m, m, "given"


def _sampling_mask(mask, shape, accel, acs, rng) -> tuple[np.ndarray, str]:
    """``(bool mask (nx,) or (ny, nx), its name)`` from a mask name or an array."""
    ny, nx = shape
    if isinstance(mask, str):
        name = mask
        mask = make_mask(mask, (ny, nx), accel, acs=acs, seed=rng)
    else:
        name = "given"
        mask = np.asarray(mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else mask)
        if mask.shape not in ((nx,), (ny, nx)):
            raise ValueError(f"mask must have shape ({nx},) or ({ny}, {nx}), got {mask.shape}")
        mask = mask != 0
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        raise ValueError("mask samples nothing")
    return mask, name


def _pick(n_total: int, n_slices):
    if n_slices is None:
        return np.arange(n_total)
    n_slices = check_int("n_slices", n_slices, 1)
    if n_slices > n_total:
        raise ValueError(f"n_slices={n_slices} exceeds the {n_total} slices of the split")
    return np.unique(np.round(np.linspace(0, n_total - 1, n_slices)).astype(np.int64))


def write_mri_testset(path, split: str = "test", size: int = 64, accel: float = 4.0, mask="uniform1d", *,
                      snr_db: float | None = 30.0, n_slices: int | None = None, seed: int = 0, coils: int = 8,
                      acs: float = 0.08, inverse_crime: bool = False, volume=None, compression="gzip") -> str:
    """Write simulated multi-coil k-space of brain slices as a fastMRI-style file.

    The complex images are :func:`~krylearn.problems.brain.complex_brain_slices`
    of ``split`` (default the held-out ``test`` band) with a smooth phase
    drawn from ``seed``; without ``inverse_crime`` they are made on a
    ``2 * size`` grid and k-space is cropped (see the module notes).

    Parameters
    ----------
    path : str or Path
        Output ``.h5`` (written atomically).
    split : {"train", "val", "test"}
    size : int
        Output image and k-space side (multiple of 2 not required).
    accel, mask, acs, snr_db, coils
        As :func:`simulate_mri`.
    n_slices : int, optional
        Evenly spaced subset of the split's slices (default all).
    seed : int
        Phase, mask and noise.
    inverse_crime : bool
        Simulate on the output grid itself (flagged in the file).
    volume : path or array, optional
        Instead of the MNI152 template.

    Returns
    -------
    str, the path.  The file holds ``kspace`` (slices, coils, size, size)
    complex64, ``mask``, ``sensitivity_maps``, ``reconstruction_rss`` and
    attributes with every simulation parameter (``inverse_crime``,
    ``snr_db``, ``noise_sigma``, ``acceleration``, ``split``,
    ``slice_z`` (MNI z indices), ...).
    """
    size = check_int("size", size, 8)
    seed = check_int("seed", seed, 0)
    d = 1 if inverse_crime else 2
    x, z = complex_brain_slices(split, d * size, seed=seed, volume=volume, return_index=True)
    # the foreground rule is applied on the output grid, as for the training slices
    _, z_out = brain_slices(split, size, volume=volume, return_index=True)
    keep = np.isin(z, z_out)
    x, z = x[keep], z[keep]
    sel = _pick(len(z), n_slices)
    x, z = x[sel], z[sel]
    sim = simulate_mri(x, coils, mask=mask, accel=accel, acs=acs, snr_db=snr_db, seed=seed, downsample=d)
    attrs = {**sim.attrs, "split": split, "slice_z": z.astype(np.int64), "image_source":
             "MNI152 2009a sym T1 template (nilearn), axial slices" if volume is None else "user volume",
             "phase": "smooth random phase (krylearn.problems.brain.smooth_phase)", "patient_id": f"mni152-{split}",
             "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    os.makedirs(os.path.dirname(os.path.abspath(os.fspath(path))), exist_ok=True)
    return write_kspace(path, sim.kspace, mask=sim.mask, sensitivity_maps=sim.maps,
                        reconstruction_rss=sim.reference_rss, attrs=attrs, compression=compression)


# ------------------------------------------------------------------ CT
@dataclass
class CTSimulation:
    """Simulated parallel-beam data.

    Attributes
    ----------
    sinogram : float32, (slices, views, det)
        Line integrals in output-pixel units, noise added.
    angles : float64, (views,), radians
    reference : float32, (slices, ny, nx)
        The image the coarse projector models (block mean of the fine grid).
    noiseless : float32, (slices, views, det)
    sigma : float
    n_det : int
    inverse_crime : bool
    attrs : dict
    """

    sinogram: np.ndarray
    angles: np.ndarray
    reference: np.ndarray
    noiseless: np.ndarray
    sigma: float
    n_det: int
    inverse_crime: bool
    attrs: dict = field(default_factory=dict)


def simulate_ct(volume, views: int = 8, *, noise: float = 0.0, seed=0, downsample: int = 1, n_det=None,
                angles=None) -> CTSimulation:
    """Project a volume slice by slice (parallel beam, exact model), optionally with noise.

    Parameters
    ----------
    volume : array, (slices, H, W) or (H, W), real
        On the simulation grid (``downsample`` times the output grid).
    views : int
        Angles ``linspace(0, pi, views, endpoint=False)`` (ignored when
        ``angles`` is given).
    noise : float
        Relative Gaussian noise: ``sigma = noise * rms(noiseless sinogram)``.
    seed : int or numpy Generator
    downsample : int
        1: project on the output grid (inverse crime); 2: on a twice finer grid.
    n_det : int, optional
        Detector bins (default :func:`krylearn.operators.ct.default_n_det` of the output grid).
    angles : array, (views,), optional
        Radians.

    Returns
    -------
    CTSimulation
    """
    v = _images(volume, "volume")
    if np.iscomplexobj(v):
        raise TypeError("volume must be real")
    v = v.astype(np.float64)
    d = _downsample(downsample, v.shape, "volume")
    n, Hf, Wf = v.shape
    ny, nx = Hf // d, Wf // d
    if angles is None:
        views = check_int("views", views, 1)
        angles = np.linspace(0.0, np.pi, views, endpoint=False)
    angles = np.asarray(angles, dtype=np.float64)
    if angles.ndim != 1 or angles.size < 1 or not np.all(np.isfinite(angles)):
        raise ValueError(f"angles must be a finite 1-D array, got shape {angles.shape}")
    n_det = default_n_det((ny, nx)) if n_det is None else check_int("n_det", n_det, 1)
    noise = check_real("noise", noise)
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(check_int("seed", seed, 0))
    P = ParallelBeamProjector((Hf, Wf), angles, n_det=n_det, det_spacing=float(d))
    p = P.apply(torch.from_numpy(v)).numpy() / d  # fine-pixel units -> output-pixel units
    ref = v.reshape(n, ny, d, nx, d).mean(axis=(2, 4))
    rms = float(np.sqrt(np.mean(p ** 2)))
    sigma = noise * rms
    y = p + sigma * rng.standard_normal(p.shape) if sigma > 0 else p.copy()
    crime = d == 1
    attrs = {
        "generator": "krylearn.problems.simulate.simulate_ct",
        "version": __version__,
        "seed": int(seed) if not isinstance(seed, np.random.Generator) else -1,
        "views": int(angles.size),
        "angles": "linspace(0, pi, views, endpoint=False)",
        "noise_relative": float(noise),
        "noise_sigma": float(sigma),
        "noise_definition": "Gaussian, sigma = noise_relative * rms(noiseless sinogram), on every entry",
        "sinogram_units": "line integrals in output pixels (value x length in pixels)",
        "inverse_crime": bool(crime),
        "simulation_grid": np.array([Hf, Wf], dtype=np.int64),
        "downsample": int(d),
        "reference_definition": "the output-grid image the projector models"
                                + ("" if crime else " (2x2 block mean of the simulation grid)"),
    }
    return CTSimulation(sinogram=y.astype(np.float32), angles=angles, reference=ref.astype(np.float32),
                        noiseless=p.astype(np.float32), sigma=float(sigma), n_det=int(n_det),
                        inverse_crime=crime, attrs=attrs)


def write_ct_testset(path, views: int = 8, *, size: int = 128, split: str = "test", noise: float = 0.0,
                     seed: int = 0, n_slices: int | None = None, inverse_crime: bool = False,
                     source: str = "brain", volume=None, compression="gzip") -> str:
    """Write a sparse-view CT test volume (sinogram, angles, geometry, reference) via :func:`write_ct`.

    Parameters
    ----------
    path : str or Path
    views : int
        Evenly spread over [0, pi).
    size : int
        Output slice side (reference ``(slices, size, size)``).
    split : {"val", "test"}
        A contiguous band of the brain (default the held-out ``test`` band:
        16 axial slices of the MNI152, MR anatomy used as an attenuation map).
    noise, seed
        As :func:`simulate_ct`.
    n_slices : int, optional
        The first ``n_slices`` of the band (kept contiguous).
    inverse_crime : bool
        Project on the output grid itself (flagged in the file).
    source : {"brain", "ellipsoids"}
        ``"ellipsoids"``: a :func:`~krylearn.problems.brain.random_ellipsoids`
        volume of ``n_slices`` (default 16) slices drawn from ``seed``.
    volume : path or array, optional
        Instead of the MNI152 template (``source="brain"``).

    Returns
    -------
    str, the path.
    """
    size = check_int("size", size, 8)
    seed = check_int("seed", seed, 0)
    d = 1 if inverse_crime else 2
    if source == "brain":
        vol, z = brain_volume(split, d * size, volume=volume, return_index=True)
        if n_slices is not None:
            n_slices = check_int("n_slices", n_slices, 1)
            if n_slices > len(z):
                raise ValueError(f"n_slices={n_slices} exceeds the {len(z)} slices of the {split!r} band")
            vol, z = vol[:n_slices], z[:n_slices]
        desc = ("MNI152 2009a sym T1 template (nilearn), axial slices; MR T1 intensity used as an "
                "attenuation-like map in [0, 1] (not CT numbers)") if volume is None else "user volume"
    elif source == "ellipsoids":
        k = 16 if n_slices is None else check_int("n_slices", n_slices, 1)
        vol = random_ellipsoids((k, d * size, d * size), seed=seed)
        z = np.arange(k)
        desc = "random 3-D ellipsoid phantom (krylearn.problems.brain.random_ellipsoids)"
    else:
        raise ValueError(f"source must be 'brain' or 'ellipsoids', got {source!r}")
    sim = simulate_ct(vol, views, noise=noise, seed=seed, downsample=d)
    attrs = {**sim.attrs, "split": split if source == "brain" else None, "source": desc,
             "slice_z": np.asarray(z, dtype=np.int64), "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    os.makedirs(os.path.dirname(os.path.abspath(os.fspath(path))), exist_ok=True)
    return write_ct(path, sim.sinogram, sim.angles, image_shape=(size, size), det_spacing=1.0,
                    reference=sim.reference, attrs=attrs, compression=compression)
