"""Ellipse phantoms (Shepp–Logan, random ellipses, 3-D ellipsoids) and exact parallel-beam sinograms.

An ellipse table has one row ``(value, a, b, x0, y0, phi)`` per ellipse, in
normalised coordinates: the image spans ``[-1, 1]`` across its smaller side,
``a``/``b`` are the semi-axes along x/y before rotating by ``phi`` degrees
(counter-clockwise), and ``value`` is *added* inside the ellipse.  Pixel
coordinates follow :mod:`krylearn.operators.ct` (origin at the image centre,
``y`` up, row 0 at the top, pixel size 1), so
:func:`ellipse_sinogram` is the exact Radon transform of the continuous
phantom in the projector's geometry: a reference free of the inverse crime.
"""

from __future__ import annotations

import numbers

import numpy as np

from ..operators.ct import _check_angles, default_n_det
from ..utils.checks import check_int

__all__ = [
    "SHEPP_LOGAN",
    "SHEPP_LOGAN_MODIFIED",
    "ellipse_image",
    "ellipse_sinogram",
    "random_ellipses",
    "random_ellipsoids",
    "random_phantom",
    "shepp_logan",
]

#: Modified Shepp–Logan (Toft), higher contrast than the original.
SHEPP_LOGAN_MODIFIED = np.array([
    [1.0, 0.69, 0.92, 0.0, 0.0, 0.0],
    [-0.8, 0.6624, 0.874, 0.0, -0.0184, 0.0],
    [-0.2, 0.11, 0.31, 0.22, 0.0, -18.0],
    [-0.2, 0.16, 0.41, -0.22, 0.0, 18.0],
    [0.1, 0.21, 0.25, 0.0, 0.35, 0.0],
    [0.1, 0.046, 0.046, 0.0, 0.1, 0.0],
    [0.1, 0.046, 0.046, 0.0, -0.1, 0.0],
    [0.1, 0.046, 0.023, -0.08, -0.605, 0.0],
    [0.1, 0.023, 0.023, 0.0, -0.606, 0.0],
    [0.1, 0.023, 0.046, 0.06, -0.605, 0.0],
])

#: Original Shepp–Logan intensities (Shepp & Logan, 1974).
SHEPP_LOGAN = SHEPP_LOGAN_MODIFIED.copy()
SHEPP_LOGAN[:, 0] = [2.0, -0.98, -0.02, -0.02, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01]


def _shape(shape):
    if isinstance(shape, numbers.Integral):
        shape = (int(shape), int(shape))
    try:
        ny, nx = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be n or (ny, nx), got {shape!r}") from None
    if ny < 1 or nx < 1:
        raise ValueError(f"shape must have positive sizes, got {shape!r}")
    return ny, nx


def _table(ellipses) -> np.ndarray:
    e = np.asarray(ellipses, dtype=np.float64)
    if e.ndim != 2 or e.shape[1] != 6:
        raise ValueError(f"ellipses must have shape (count, 6): value, a, b, x0, y0, phi; got {e.shape}")
    if not np.all(np.isfinite(e)) or np.any(e[:, 1:3] <= 0):
        raise ValueError("ellipses must be finite with positive semi-axes a, b")
    return e


def ellipse_image(ellipses, shape, oversample: int = 1) -> np.ndarray:
    """Rasterise an ellipse table.

    Parameters
    ----------
    ellipses : array, (count, 6)
    shape : int or (ny, nx)
    oversample : int
        Average ``oversample**2`` point samples per pixel (area-weighted
        edges); 1 samples pixel centres.

    Returns
    -------
    numpy.ndarray, float64, (ny, nx)
    """
    e = _table(ellipses)
    ny, nx = _shape(shape)
    if not isinstance(oversample, numbers.Integral) or oversample < 1:
        raise ValueError(f"oversample must be a positive integer, got {oversample!r}")
    k = int(oversample)
    sub = (np.arange(k) + 0.5) / k - 0.5
    xs = (np.arange(nx)[:, None] - (nx - 1) / 2 + sub[None, :]).reshape(-1)
    ys = ((ny - 1) / 2 - np.arange(ny)[:, None] - sub[None, :]).reshape(-1)
    half = min(ny, nx) / 2.0
    X, Y = np.meshgrid(xs / half, ys / half)
    img = np.zeros_like(X)
    for value, a, b, x0, y0, phi in e:  # a loop over the (few) ellipses, vectorised over pixels
        t = np.deg2rad(phi)
        u = (X - x0) * np.cos(t) + (Y - y0) * np.sin(t)
        v = -(X - x0) * np.sin(t) + (Y - y0) * np.cos(t)
        img += value * ((u / a) ** 2 + (v / b) ** 2 <= 1.0)
    return img.reshape(ny, k, nx, k).mean(axis=(1, 3))


def ellipse_sinogram(ellipses, shape, angles, n_det=None, det_spacing: float = 1.0) -> np.ndarray:
    """Exact parallel-beam projections of an ellipse phantom, sampled at bin centres.

    Parameters
    ----------
    ellipses : array, (count, 6)
    shape : int or (ny, nx)
        The image the table is scaled to (pixel units, as :func:`ellipse_image`).
    angles : array, (n_angles,)
        Radians, :mod:`krylearn.operators.ct` convention.
    n_det : int, optional
        Default :func:`krylearn.operators.ct.default_n_det`.
    det_spacing : float

    Returns
    -------
    numpy.ndarray, float64, (n_angles, n_det)
        Line integrals in pixel units (value times chord length).
    """
    e = _table(ellipses)
    ny, nx = _shape(shape)
    th = _check_angles(angles)[:, None]
    if n_det is None:
        n_det = default_n_det((ny, nx), det_spacing)
    half = min(ny, nx) / 2.0
    s = (np.arange(n_det) - (n_det - 1) / 2.0) * det_spacing
    out = np.zeros((th.shape[0], n_det))
    for value, a, b, x0, y0, phi in e:
        A, B = a * half, b * half
        sc = s - (x0 * np.cos(th) + y0 * np.sin(th)) * half
        rel = th - np.deg2rad(phi)
        r2 = (A * np.cos(rel)) ** 2 + (B * np.sin(rel)) ** 2
        out += value * 2 * A * B * np.sqrt(np.maximum(r2 - sc**2, 0.0)) / r2
    return out


def shepp_logan(shape, modified: bool = True, oversample: int = 1) -> np.ndarray:
    """The (modified) Shepp–Logan head phantom, float64 ``(ny, nx)``, values in [0, 1] when modified."""
    return ellipse_image(SHEPP_LOGAN_MODIFIED if modified else SHEPP_LOGAN, shape, oversample)


def random_ellipses(count: int = 10, seed=None) -> np.ndarray:
    """A random ellipse table: a body ellipse plus ``count`` inner ones.

    The body has value 0.5..1 and semi-axes 0.6..0.9; inner ellipses have
    centres within radius 0.5, semi-axes 0.03..0.35, any orientation and
    values in [-0.3, 0.3].  Seeded by ``seed`` (int or Generator).

    Returns
    -------
    numpy.ndarray, (count + 1, 6)
        Use with :func:`ellipse_image` and :func:`ellipse_sinogram`.
    """
    if not isinstance(count, numbers.Integral) or count < 0:
        raise ValueError(f"count must be a non-negative integer, got {count!r}")
    rng = np.random.default_rng(seed)
    body = [rng.uniform(0.5, 1.0), rng.uniform(0.6, 0.9), rng.uniform(0.6, 0.9), 0.0, 0.0, rng.uniform(0, 180)]
    r = 0.5 * np.sqrt(rng.uniform(0, 1, count))
    ang = rng.uniform(0, 2 * np.pi, count)
    inner = np.stack([
        rng.uniform(-0.3, 0.3, count),
        rng.uniform(0.03, 0.35, count),
        rng.uniform(0.03, 0.35, count),
        r * np.cos(ang),
        r * np.sin(ang),
        rng.uniform(0, 180, count),
    ], axis=1)
    return np.vstack([np.asarray(body)[None, :], inner])


def random_phantom(shape, count: int = 10, seed=None, oversample: int = 1) -> np.ndarray:
    """A rasterised :func:`random_ellipses` phantom, float64 ``(ny, nx)``."""
    return ellipse_image(random_ellipses(count, seed), shape, oversample)


def random_ellipsoids(shape, count: int = 12, seed=None) -> np.ndarray:
    """A random 3-D ellipsoid phantom, float32 ``(nz, ny, nx)`` in ``[0, 1]``.

    A body ellipsoid (value 0.5..0.8, semi-axes 0.7..0.9 in-plane and
    0.8..1.2 along z of the half-widths) plus ``count`` inner ellipsoids
    (random orientation about z, semi-axes 0.05..0.3, values in
    [-0.25, 0.25]), summed and clipped to [0, 1].  Axial slices are 2-D
    ellipse phantoms that change smoothly along z: a cheap stand-in for a
    CT volume when the MNI template is not wanted.

    Parameters
    ----------
    shape : (nz, ny, nx)
    count : int
    seed : int or numpy Generator, optional
    """
    try:
        nz, ny, nx = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be (nz, ny, nx), got {shape!r}") from None
    if min(nz, ny, nx) < 1:
        raise ValueError(f"shape must be positive, got {shape!r}")
    count = check_int("count", count, 0)
    rng = np.random.default_rng(seed)
    z = np.linspace(-1, 1, nz, dtype=np.float32)[:, None, None]
    y = np.linspace(1, -1, ny, dtype=np.float32)[None, :, None]
    x = np.linspace(-1, 1, nx, dtype=np.float32)[None, None, :]
    vol = np.zeros((nz, ny, nx), dtype=np.float32)
    rows = [(rng.uniform(0.5, 0.8), rng.uniform(0.7, 0.9), rng.uniform(0.7, 0.9), rng.uniform(0.8, 1.2),
             0.0, 0.0, 0.0, rng.uniform(0, np.pi))]
    for _ in range(count):
        r = 0.5 * rng.uniform(0, 1) ** (1 / 3)
        d = rng.normal(size=3)
        d /= np.linalg.norm(d) + 1e-12
        rows.append((rng.uniform(-0.25, 0.25), *rng.uniform(0.05, 0.3, 3), *(r * d), rng.uniform(0, np.pi)))
    for v, a, b, cz, x0, y0, z0, phi in rows:  # a loop over the few ellipsoids, vectorised over voxels
        cs, sn = np.cos(phi), np.sin(phi)
        u = (x - x0) * cs + (y - y0) * sn
        w = -(x - x0) * sn + (y - y0) * cs
        vol += np.float32(v) * (((u / a) ** 2 + (w / b) ** 2 + ((z - z0) / cz) ** 2) <= 1.0)
    return np.clip(vol, 0.0, 1.0)
