"""Cartesian MRI sampling masks: uniform and Gaussian 1D column masks, Poisson-disc 2D masks, acceleration.

A 1D mask has shape ``(nx,)`` and selects k-space columns (the last axis,
fastMRI's phase-encode direction); a 2D mask has shape ``(ny, nx)``.
Acceleration is always the real ratio ``mask.size / count_nonzero(mask)``.
Re-exported by :mod:`krylearn.operators.mri`.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch

__all__ = ["acceleration", "gaussian1d_mask", "poisson2d_mask", "uniform1d_mask"]


def acceleration(mask) -> float:
    """The real acceleration ``mask.size / count_nonzero(mask)`` of a mask.

    A column mask ``(nx,)`` gives the same ratio as its ``(ny, nx)``
    broadcast.  Raises ``ValueError`` for an empty mask.
    """
    m = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    count = int(np.count_nonzero(m))
    if count == 0:
        raise ValueError("mask samples nothing (acceleration is infinite)")
    return m.size / count


def _mask_args(shape, accel, acs):
    if isinstance(shape, numbers.Integral):
        shape = (int(shape),)
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError:
        raise TypeError(f"shape must be an int or a tuple of ints, got {shape!r}") from None
    if len(shape) not in (1, 2) or min(shape) < 1:
        raise ValueError(f"shape must be nx or (ny, nx) with positive sizes, got {shape}")
    if not isinstance(accel, numbers.Real) or not math.isfinite(accel) or accel < 1:
        raise ValueError(f"accel must be a finite number >= 1, got {accel!r}")
    if not isinstance(acs, numbers.Real) or not 0 <= acs <= 1:
        raise ValueError(f"acs must be a fraction in [0, 1], got {acs!r}")
    nx = shape[-1]
    n_total = max(1, round(nx / accel))
    n_acs = round(acs * nx)
    if n_acs > n_total:
        raise ValueError(
            f"accel = {accel} keeps {n_total} of {nx} columns, fewer than the {n_acs} "
            f"fully sampled centre columns (acs = {acs}); lower accel or acs"
        )
    acs_idx = np.arange(nx // 2 - n_acs // 2, nx // 2 - n_acs // 2 + n_acs)  # centred on DC (nx // 2)
    outside = np.setdiff1d(np.arange(nx), acs_idx)
    return nx, n_total, acs_idx, outside


def uniform1d_mask(shape, accel: float, acs: float = 0.08, seed=None) -> np.ndarray:
    """Equispaced column mask with a fully sampled centre.

    Parameters
    ----------
    shape : int or (ny, nx)
        Only ``nx`` (the last entry) matters: the mask selects columns.
    accel : float
        Requested acceleration; the mask keeps ``round(nx / accel)`` columns
        in total (so :func:`acceleration` is within rounding of ``accel``).
    acs : float
        Fraction of columns in the fully sampled centre (auto-calibration
        region), centred on DC at ``nx // 2``; default 8%.
    seed : int or numpy.random.Generator, optional
        Draws the random offset of the equispaced grid.

    Returns
    -------
    numpy.ndarray of bool, (nx,)
        The remaining columns are spread evenly (one random offset) over the
        columns outside the centre.
    """
    nx, n_total, acs_idx, outside = _mask_args(shape, accel, acs)
    mask = np.zeros(nx, dtype=bool)
    mask[acs_idx] = True
    n_out = n_total - acs_idx.size
    if n_out > 0:
        offset = np.random.default_rng(seed).random()
        pick = np.floor((np.arange(n_out) + offset) * outside.size / n_out).astype(np.int64)
        mask[outside[pick]] = True
    return mask


def gaussian1d_mask(shape, accel: float, acs: float = 0.08, seed=None, std=None) -> np.ndarray:
    """Column mask drawn without replacement from a Gaussian density, centre fully sampled.

    Parameters
    ----------
    shape, accel, acs, seed
        As in :func:`uniform1d_mask`; exactly ``round(nx / accel)`` columns
        are kept.
    std : float, optional
        Standard deviation of the density in columns (default
        ``nx * 15 / 128``, as in the DDS code).

    Returns
    -------
    numpy.ndarray of bool, (nx,)
    """
    nx, n_total, acs_idx, outside = _mask_args(shape, accel, acs)
    std = nx * 15 / 128 if std is None else float(std)
    if not std > 0:
        raise ValueError(f"std must be > 0, got {std!r}")
    mask = np.zeros(nx, dtype=bool)
    mask[acs_idx] = True
    n_out = n_total - acs_idx.size
    if n_out > 0:
        p = np.exp(-0.5 * ((outside - nx // 2) / std) ** 2)
        p = np.maximum(p, 1e-300)
        pick = np.random.default_rng(seed).choice(outside, size=n_out, replace=False, p=p / p.sum())
        mask[pick] = True
    return mask


def poisson2d_mask(shape, accel: float, seed: int = 0, calib=None, tol: float = 0.1,
                   max_bisections: int = 60) -> np.ndarray:
    """Variable-density Poisson-disc 2D mask (sigpy's Bridson sampler, density ``1 / (1 + s r)``).

    Parameters
    ----------
    shape : (ny, nx)
    accel : float
        Target acceleration (> 1).  The density slope ``s`` is bisected
        until the real acceleration is within ``tol`` of it; on small grids,
        where the realised acceleration moves in jumps, the closest mask of
        ``max_bisections`` tries is returned if it is within 10% (the real
        acceleration is always what :func:`acceleration` reports).
    seed : int
    calib : (int, int), optional
        Fully sampled centre (default 8% of each side, at least 2).
    tol : float
        Allowed ``|acceleration(mask) - accel|``.
    max_bisections : int
        Bound on the search (``sigpy.mri.poisson`` itself can loop forever
        on small grids, e.g. 32 x 32 at 8x).

    Returns
    -------
    numpy.ndarray of bool, (ny, nx)

    Raises
    ------
    ValueError
        ``accel <= 1`` or no mask within 10% of ``accel``.
    """
    from sigpy.mri.samp import _poisson

    try:
        ny, nx = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be (ny, nx), got {shape!r}") from None
    if ny < 4 or nx < 4:
        raise ValueError(f"shape must be at least 4 x 4, got {shape!r}")
    if not isinstance(accel, numbers.Real) or not accel > 1:
        raise ValueError(f"accel must be > 1 for a Poisson-disc mask, got {accel!r}")
    if calib is None:
        calib = (max(2, round(0.08 * ny)), max(2, round(0.08 * nx)))
    calib = tuple(int(c) for c in calib)
    y, x = np.mgrid[:ny, :nx].astype(np.float64)
    x = np.maximum(np.abs(x - nx / 2) - calib[1] / 2, 0)
    y = np.maximum(np.abs(y - ny / 2) - calib[0] / 2, 0)
    r = np.sqrt((x / max(x.max(), 1e-12)) ** 2 + (y / max(y.max(), 1e-12)) ** 2)
    state = np.random.get_state()  # sigpy's sampler seeds numpy's global generator
    try:
        lo, hi, best = 0.0, float(max(nx, ny)), None
        for _ in range(int(max_bisections)):
            slope = (lo + hi) / 2
            radius_x = np.clip((1 + r * slope) * nx / max(nx, ny), 1, None)
            radius_y = np.clip((1 + r * slope) * ny / max(nx, ny), 1, None)
            mask = _poisson(nx, ny, 30, radius_x, radius_y, calib, int(seed)).reshape(ny, nx)
            mask = (mask != 0) & (r < 1)
            real = ny * nx / max(int(mask.sum()), 1)
            if best is None or abs(real - accel) < abs(best[0] - accel):
                best = (real, mask)
            if abs(real - accel) < tol:
                break
            lo, hi = (slope, hi) if real < accel else (lo, slope)
    finally:
        np.random.set_state(state)
    real, mask = best
    if abs(real - accel) > 0.1 * accel:
        raise ValueError(f"accel={accel}: the closest Poisson-disc mask on a {ny} x {nx} grid has "
                         f"acceleration {real:.2f}")
    return mask


# -------------------------------------------------------------- coil maps
