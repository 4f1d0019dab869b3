"""2D parallel-beam CT: a projector with an exact adjoint, and filtered back-projection.

Geometry
--------
* Pixels are unit squares.  Pixel ``(i, j)`` (row ``i``, column ``j``) of an
  ``(ny, nx)`` image is centred at ``x = j - (nx - 1) / 2``,
  ``y = (ny - 1) / 2 - i``: the origin is the image centre, ``x`` grows to
  the right, ``y`` grows *up* (row 0 is the top row, as ``imshow`` shows it).
* A view at angle ``theta`` (radians) integrates along the direction
  ``(-sin theta, cos theta)``; its detector coordinate is
  ``s = x cos theta + y sin theta``.  ``theta = 0`` sums the columns
  (detector bin order = column order); ``theta = pi/2`` sums the rows,
  bottom row first.
* ``n_det`` bins of width ``det_spacing`` are centred on the rotation axis:
  bin ``k`` covers ``s`` in ``(k - (n_det - 1) / 2 -+ 1/2) * det_spacing``.

Model
-----
Each sinogram entry is the bin-averaged line integral of the pixel-wise
constant image: ``A[(view, k), pixel] = (1 / det_spacing) * int_bin k
footprint(s) ds``, where the footprint (the projection of a unit square, a
trapezoid of area 1) is integrated exactly.  So a uniform image projects
without the ripple of pixel-driven interpolation, and the back-projection
``det_spacing * A^T`` spreads each view over a pixel with weights summing to
1 (a footprint-weighted form of the classical interpolating back-projector).

The matrix is built once (two parallel numba passes over pixels) and stored
as a :class:`~krylearn.operators.sparse.SparseMatrix`; the adjoint is its
transpose, so the dot test ``<A x, y> = <x, A^T y>`` holds to rounding.
"""

from __future__ import annotations

import math
import numbers

import numba
import numpy as np
import scipy.sparse
import torch

from .base import Operator, _as_tensor
from .sparse import SparseMatrix


def default_n_det(shape, det_spacing: float = 1.0) -> int:
    """Bins needed to see the whole image at every angle: ``ceil(hypot(ny, nx) / det_spacing)``.

    With ``det_spacing == 1`` one bin is added when needed so that ``n_det``
    and ``nx`` have the same parity (bin centres then fall on pixel centres at
    ``theta = 0``).
    """
    ny, nx = _check_shape(shape)
    n = math.ceil(math.hypot(ny, nx) / det_spacing - 1e-9)
    if det_spacing == 1.0 and (n - nx) % 2:
        n += 1
    return n


def _check_shape(shape):
    try:
        ny, nx = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be (ny, nx), got {shape!r}") from None
    if ny < 1 or nx < 1:
        raise ValueError(f"shape must have positive sizes, got {shape!r}")
    return ny, nx


def _check_angles(angles) -> np.ndarray:
    a = angles.detach().cpu().numpy() if isinstance(angles, torch.Tensor) else np.asarray(angles)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"angles must be a non-empty 1-D array of radians, got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
        raise ValueError(f"angles must be real numbers (radians), got dtype {a.dtype}")
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError("angles contain NaN or Inf")
    return a


@numba.njit(cache=True, inline="always")
def _trapezoid_cdf(t, a, b):
    """CDF of the pixel footprint ``U(-a/2, a/2) + U(-b/2, b/2)`` (``a >= b >= 0``) at ``t``."""
    h = 0.5 * (a + b)
    g = 0.5 * (a - b)
    if t <= -h:
        return 0.0
    if t >= h:
        return 1.0
    if t < -g:  # never reached when b == 0 (then g == h)
        return (t + h) * (t + h) / (2.0 * a * b)
    if t > g:
        return 1.0 - (h - t) * (h - t) / (2.0 * a * b)
    return (t + g) / a + 0.5 * b / a


@numba.njit(cache=True, inline="always")
def _bin_range(sp, h, centre, ds, n_det):
    """Bins ``[k0, k1)`` (clipped to the detector) overlapping the footprint ``(sp - h, sp + h)``."""
    k0 = int(np.floor((sp - h) / ds + centre + 0.5))
    k1 = int(np.ceil((sp + h) / ds + centre + 0.5))
    return max(k0, 0), min(k1, n_det)


@numba.njit(parallel=True, cache=True)
def _count_entries(px, py, cs, sn, ab, n_det, ds, counts):
    centre = (n_det - 1) / 2.0
    for p in numba.prange(px.size):
        n = 0
        for v in range(cs.size):
            sp = px[p] * cs[v] + py[p] * sn[v]
            k0, k1 = _bin_range(sp, 0.5 * (ab[v, 0] + ab[v, 1]), centre, ds, n_det)
            n += max(k1 - k0, 0)
        counts[p] = n


@numba.njit(parallel=True, cache=True)
def _fill_entries(px, py, cs, sn, ab, n_det, ds, indptr, indices, data):
    centre = (n_det - 1) / 2.0
    for p in numba.prange(px.size):
        e = indptr[p]
        for v in range(cs.size):
            a, b = ab[v, 0], ab[v, 1]
            sp = px[p] * cs[v] + py[p] * sn[v]
            k0, k1 = _bin_range(sp, 0.5 * (a + b), centre, ds, n_det)
            for k in range(k0, k1):
                lo = (k - 0.5 - centre) * ds - sp
                indices[e] = v * n_det + k
                data[e] = (_trapezoid_cdf(lo + ds, a, b) - _trapezoid_cdf(lo, a, b)) / ds
                e += 1


def system_matrix(shape, angles, n_det=None, det_spacing: float = 1.0):
    """The parallel-beam system matrix (see the module notes for the geometry).

    Parameters
    ----------
    shape : (ny, nx)
    angles : array of float, (n_angles,)
        View angles in radians.
    n_det : int, optional
        Detector bins (default :func:`default_n_det`).
    det_spacing : float
        Bin width in pixel units.

    Returns
    -------
    scipy.sparse.csr_matrix, float64, (n_angles * n_det, ny * nx)
        Row ``v * n_det + k`` is bin ``k`` of view ``v``; column
        ``i * nx + j`` is pixel ``(i, j)``.  About
        ``(1 + (|cos| + |sin|) / det_spacing) * ny * nx`` nonzeros per view
        (2.27 on average over ``[0, pi)`` for unit bins).  Built by two
        parallel numba passes over pixels (count, fill) into the transpose,
        then one linear-time CSC-to-CSR conversion.
    """
    ny, nx = _check_shape(shape)
    angles = _check_angles(angles)
    if not isinstance(det_spacing, numbers.Real) or not math.isfinite(det_spacing) or det_spacing <= 0:
        raise ValueError(f"det_spacing must be a finite number > 0, got {det_spacing!r}")
    det_spacing = float(det_spacing)
    if n_det is None:
        n_det = default_n_det((ny, nx), det_spacing)
    if not isinstance(n_det, numbers.Integral) or n_det < 1:
        raise ValueError(f"n_det must be a positive integer, got {n_det!r}")
    n_det = int(n_det)
    n_ang = angles.size
    npix = ny * nx
    px = np.tile(np.arange(nx) - (nx - 1) / 2.0, ny)
    py = np.repeat((ny - 1) / 2.0 - np.arange(ny), nx)
    cs, sn = np.cos(angles), np.sin(angles)
    ab = np.stack([np.maximum(np.abs(cs), np.abs(sn)), np.minimum(np.abs(cs), np.abs(sn))], axis=1)
    ab[ab[:, 1] < 1e-12, 1] = 0.0  # an axis-aligned view: a box footprint
    counts = np.empty(npix, dtype=np.int64)
    _count_entries(px, py, cs, sn, ab, n_det, det_spacing, counts)
    indptr = np.zeros(npix + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    nnz = int(indptr[-1])
    index_dtype = np.int32 if max(nnz, n_ang * n_det) < 2**31 - 1 else np.int64
    indices = np.empty(nnz, dtype=index_dtype)
    data = np.empty(nnz, dtype=np.float64)
    _fill_entries(px, py, cs, sn, ab, n_det, det_spacing, indptr, indices, data)
    AT = scipy.sparse.csr_matrix((data, indices, indptr.astype(index_dtype)), shape=(npix, n_ang * n_det))
    del data, indices
    A = AT.T.tocsr()  # linear-time; each row's column indices come out sorted
    return A


class ParallelBeamProjector(Operator):
    """2D parallel-beam projector (Radon transform) with an exact adjoint.

    Parameters
    ----------
    shape : (ny, nx)
        Image shape (pixel size 1).
    angles : array of float, (n_angles,)
        View angles in radians (any values; e.g. ``np.linspace(0, np.pi,
        180, endpoint=False)``).
    n_det : int, optional
        Detector bins (default :func:`default_n_det`: the whole image is seen
        at every angle).
    det_spacing : float
        Bin width in pixel units.
    dtype : torch.dtype
        float32 or float64 storage of the matrix.
    device : torch.device or str
        Where the matrix lives (products on CUDA use cuSPARSE).

    Shapes
    ------
    ``ishape = (ny, nx)``, ``oshape = (n_angles, n_det)``.  Slices are a
    batch: ``P @ x`` with ``x`` of shape ``(B, ny, nx)`` projects all ``B``
    slices in one sparse product (``(B, n_angles, n_det)``).

    Notes
    -----
    ``P.H`` is the transpose of the same stored matrix (exact adjoint);
    ``P.N`` applies ``P^T P`` matrix-free (``P.to_sparse()`` gives the CSR
    matrix itself, but ``P^T P`` is nearly dense: do not form it).  Memory:
    the matrix and its transpose are both stored, about ``2.3 * ny * nx *
    n_angles`` nonzeros each (12 bytes per nonzero in float64).

    Examples
    --------
    >>> import numpy as np
    >>> from krylearn.operators.ct import ParallelBeamProjector
    >>> P = ParallelBeamProjector((32, 32), np.linspace(0, np.pi, 30, endpoint=False))
    >>> P.oshape
    (30, 46)
    """

    def __init__(self, shape, angles, n_det=None, det_spacing: float = 1.0, dtype=torch.float64,
                 device="cpu"):
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        self.image_shape = _check_shape(shape)
        self.angles = _check_angles(angles)
        csr = system_matrix(self.image_shape, self.angles, n_det, det_spacing)
        self.n_det = csr.shape[0] // self.angles.size
        self.det_spacing = float(det_spacing)
        self.matrix = SparseMatrix(csr, dtype=dtype, device=device)
        super().__init__(self.image_shape, (self.angles.size, self.n_det), dtype, self.matrix.device)

    @classmethod
    def _from_matrix(cls, proto: ParallelBeamProjector, matrix: SparseMatrix):
        out = cls.__new__(cls)
        out.image_shape, out.angles, out.n_det, out.det_spacing = (
            proto.image_shape, proto.angles, proto.n_det, proto.det_spacing)
        out.matrix = matrix
        Operator.__init__(out, proto.ishape, proto.oshape, matrix.dtype, matrix.device)
        return out

    @property
    def nnz(self) -> int:
        """Stored nonzeros of the forward matrix (the transpose holds as many)."""
        return self.matrix.nnz

    def _apply(self, x):
        y = self.matrix._apply(x.reshape(x.shape[0], -1))
        return y.reshape((x.shape[0],) + self.oshape)

    def _adjoint_apply(self, y):
        x = self.matrix.H._apply(y.reshape(y.shape[0], -1))
        return x.reshape((y.shape[0],) + self.ishape)

    def _adjoint(self):
        return _ProjectorAdjoint(self)

    @property
    def N(self) -> Operator:
        """``P^T P``, applied as two sparse products (never formed)."""
        return _ProjectorNormal(self)

    def to_sparse(self) -> scipy.sparse.csr_matrix:
        return self.matrix.to_sparse()

    def _to(self, device, dtype):
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        return ParallelBeamProjector._from_matrix(self, self.matrix.to(device, dtype))


class _ProjectorAdjoint(Operator):
    def __init__(self, P: ParallelBeamProjector):
        self.P = P
        super().__init__(P.oshape, P.ishape, P.dtype, P.device)

    def _apply(self, y):
        return self.P._adjoint_apply(y)

    def _adjoint(self):
        return self.P

    def to_sparse(self):
        return self.P.matrix.H.to_sparse()

    def _to(self, device, dtype):
        return self.P.to(device, dtype).H


class _ProjectorNormal(Operator):
    def __init__(self, P: ParallelBeamProjector):
        self.P = P
        super().__init__(P.ishape, P.ishape, P.dtype, P.device)

    def _apply(self, x):
        return self.P._adjoint_apply(self.P._apply(x))

    def _adjoint(self):
        return self

    def diagonal(self):
        """``diag(P^T P)``: the column sums of squares of the stored matrix."""
        A = self.P.to_sparse()
        d = np.asarray(A.multiply(A).sum(axis=0)).ravel()
        return torch.as_tensor(d, dtype=self.dtype, device=self.device)

    def _to(self, device, dtype):
        return self.P.to(device, dtype).N


# ---------------------------------------------------------------------- FBP
FILTERS = ("ram-lak", "shepp-logan", "cosine", "hann")


def ramp_filter(n_det: int, filter: str = "ram-lak", dtype=torch.float64, device="cpu"):
    """Frequency response of the discrete ramp filter on a zero-padded detector.

    The ram-lak kernel is the band-limited spatial one (Kak & Slaney, eq.
    3.61: ``h[0] = 1/4``, ``h[n odd] = -1/(pi n)^2``, in units of
    ``1/det_spacing^2``), so the DC gain is right; the other filters multiply
    it by a window.  Padding to ``P >= 2 n_det`` (a power of two) makes the
    circular convolution a linear one on the ``n_det`` bins.

    Returns
    -------
    torch.Tensor, real, (P // 2 + 1,)
        Multiply an ``rfft`` of length ``P`` by it.
    """
    if filter not in FILTERS:
        raise ValueError(f"filter must be one of {FILTERS}, got {filter!r}")
    P = max(64, 1 << math.ceil(math.log2(2 * n_det)))
    n = np.concatenate([np.arange(0, P // 2 + 1), np.arange(P // 2 - 1, 0, -1)])
    h = np.zeros(P)
    h[0] = 0.25
    odd = n % 2 == 1
    h[odd] = -1.0 / (np.pi * n[odd]) ** 2
    H = np.real(np.fft.rfft(h))  # ~ |f| (f in cycles per bin), exactly 0.5 at Nyquist
    f = np.fft.rfftfreq(P)  # cycles per bin, 0 .. 0.5
    if filter == "shepp-logan":
        H = H * np.sinc(f)
    elif filter == "cosine":
        H = H * np.cos(np.pi * f)
    elif filter == "hann":
        H = H * 0.5 * (1 + np.cos(2 * np.pi * f))
    return torch.as_tensor(H, dtype=dtype, device=device)


def angle_weights(angles) -> np.ndarray:
    """Quadrature weights ``d theta`` for the back-projection integral over ``[0, pi)``.

    Angles are taken modulo ``pi``; each gets half of the gaps to its
    neighbours (cyclically).  A gap wider than twice the median gap is a
    missing wedge (limited-angle scans): it contributes only half a median
    gap to each neighbour.  Equispaced views on ``[0, pi)`` get ``pi / n``.
    """
    a = _check_angles(angles)
    n = a.size
    if n == 1:
        return np.array([np.pi])
    m = np.mod(a, np.pi)
    order = np.argsort(m)
    srt = m[order]
    gaps = np.diff(np.concatenate([srt, [srt[0] + np.pi]]))  # gap after each sorted angle
    med = np.median(gaps)
    gaps = np.where(gaps > 2 * med, med, gaps)
    w_sorted = 0.5 * (gaps + np.roll(gaps, 1))
    w = np.empty(n)
    w[order] = w_sorted
    return w


def filter_sinogram(sinogram: torch.Tensor, filter: str = "ram-lak") -> torch.Tensor:
    """Convolve each view (last axis) with the ramp filter (zero padding, no wrap-around)."""
    n_det = sinogram.shape[-1]
    real = sinogram.real.dtype if sinogram.is_complex() else sinogram.dtype
    H = ramp_filter(n_det, filter, dtype=real, device=sinogram.device)
    P = 2 * (H.shape[0] - 1)
    if sinogram.is_complex():
        H = torch.cat([H, H[1:-1].flip(0)])  # the full (symmetric) response
        return torch.fft.ifft(torch.fft.fft(sinogram, n=P, dim=-1) * H, dim=-1)[..., :n_det]
    return torch.fft.irfft(torch.fft.rfft(sinogram, n=P, dim=-1) * H, n=P, dim=-1)[..., :n_det]


def fbp(sinogram, angles=None, shape=None, filter: str = "ram-lak", det_spacing: float = 1.0,
        projector: ParallelBeamProjector | None = None):
    """Filtered back-projection for parallel-beam data.

    ``f = A^T (w * (p conv h))``: the ramp-filtered views ``p conv h``,
    weighted by :func:`angle_weights`, back-projected with the projector's
    exact adjoint (``det_spacing`` cancels: the filter is in ``1/det_spacing^2``
    units and the back-projector is ``det_spacing * A^T``).

    Parameters
    ----------
    sinogram : numpy.ndarray or torch.Tensor, (..., n_angles, n_det)
        Any leading batch dimensions (slices).
    angles : array of float, (n_angles,)
        Radians (taken from ``projector`` when given).
    shape : (ny, nx)
        Image shape (taken from ``projector`` when given).
    filter : {"ram-lak", "shepp-logan", "cosine", "hann"}
    det_spacing : float
    projector : ParallelBeamProjector, optional
        Reuse an already built projector (its geometry wins).

    Returns
    -------
    Same type as ``sinogram``, (..., ny, nx).
    """
    as_numpy = isinstance(sinogram, np.ndarray)
    s = _as_tensor(sinogram, "sinogram")
    if s.ndim < 2:
        raise ValueError(f"sinogram must have shape (..., n_angles, n_det), got {tuple(s.shape)}")
    if projector is None:
        if angles is None or shape is None:
            raise ValueError("fbp needs angles and shape, or a projector")
        angles = _check_angles(angles)
        real = s.real.dtype if s.is_complex() else s.dtype
        projector = ParallelBeamProjector(shape, angles, n_det=s.shape[-1], det_spacing=det_spacing,
                                          dtype=torch.float32 if real == torch.float32 else torch.float64,
                                          device=s.device)
    elif not isinstance(projector, ParallelBeamProjector):
        raise TypeError(f"projector must be a ParallelBeamProjector, got {type(projector).__name__}")
    if tuple(s.shape[-2:]) != projector.oshape:
        raise ValueError(
            f"sinogram has shape {tuple(s.shape)}; the geometry needs (..., {projector.oshape[0]}, "
            f"{projector.oshape[1]}) (n_angles, n_det)"
        )
    if not (s.is_floating_point() or s.is_complex()):
        s = s.to(projector.dtype)
    s = s.to(projector.device)
    q = filter_sinogram(s, filter)
    w = torch.as_tensor(angle_weights(projector.angles), dtype=q.real.dtype, device=q.device)
    img = projector.H.apply(q * w[:, None])
    return img.cpu().numpy() if as_numpy else img


__all__ = [
    "FILTERS",
    "ParallelBeamProjector",
    "angle_weights",
    "default_n_det",
    "fbp",
    "filter_sinogram",
    "ramp_filter",
    "system_matrix",
]
