"""fastMRI-style MRI HDF5 files, the fastMRI submission layout, and a parallel-beam CT layout.

MRI input (the fastMRI multi-coil layout)::

    kspace                (slices, coils, ky, kx) complex (complex64 as fastMRI);
                          zeros where not sampled.  A 3-D (slices, ky, kx)
                          dataset is single-coil data and reads as coils = 1.
    mask                  optional, (kx,) (sampled columns, fastMRI test files)
                          or (ky, kx); bool or non-negative numbers
    sensitivity_maps      optional, (slices, coils, ky, kx) complex
    reconstruction_rss    optional, (slices, ny, nx) real (fastMRI crops it,
                          e.g. to 320 x 320, so ny, nx need not be ky, kx)
    ismrmrd_header        optional, the ISMRMRD XML header (bytes)
    / attrs               acquisition, max, norm, patient_id, acceleration,
                          num_low_frequency, ... (kept as given)

k-space is in the centred convention of :func:`krylearn.operators.mri.fft2c`
(DC at ``(ky // 2, kx // 2)``), as fastMRI's ``fft2c``.

Submission output::

    reconstruction        (slices, ny, nx) float32 magnitude
    / attrs               anything the caller passes (method, nfe, ...)

CT (``format = "krylearn.ct"``, ``format_version = 1``)::

    sinogram              (slices, views, det) float32/float64 line integrals
    angles                (views,) float64, radians
    reference             optional, (slices, ny, nx) real image volume
    / attrs               format, format_version, geometry = "parallel",
                          image_shape = (ny, nx), det_spacing (pixel units),
                          angle_units = "radian", plus the caller's attrs

Writers go through :func:`~krylearn.utils.atomic.atomic_path`; readers
check the schema and raise :class:`~krylearn.utils.errors.FormatError`
naming the file and the bad key.  This is a format module: it imports no
solver.
"""

from __future__ import annotations

import numbers
import os
from dataclasses import dataclass, field

import h5py
import numpy as np

from ..utils.atomic import atomic_path
from .ismrmrd import recon_shape
from ..utils.errors import FormatError
from .fileio import check_stored, open_h5

__all__ = [
    "CT_FORMAT",
    "CT_FORMAT_VERSION",
    "CTData",
    "MRIData",
    "read_ct",
    "read_kspace",
    "read_reconstruction",
    "write_ct",
    "write_kspace",
    "write_reconstruction",
]

CT_FORMAT = "krylearn.ct"
CT_FORMAT_VERSION = 1
_COMPRESSIONS = ("gzip", "lzf", None)


# ------------------------------------------------------------------ helpers
def _attr_value(v):
    if isinstance(v, bytes):
        return v.decode("utf-8", errors="replace")
    if isinstance(v, np.ndarray):
        if v.dtype.kind in "SO":
            return [x.decode("utf-8", errors="replace") if isinstance(x, bytes) else x for x in v.tolist()]
        return v
    if isinstance(v, np.generic):
        return v.item()
    return v


def _read_attrs(obj) -> dict:
    return {k: _attr_value(v) for k, v in obj.attrs.items()}


def _write_attrs(obj, attrs: dict, reserved=()) -> None:
    if attrs is None:
        return
    if not isinstance(attrs, dict):
        raise TypeError(f"attrs must be a dict, got {type(attrs).__name__}")
    for k, v in attrs.items():
        if not isinstance(k, str):
            raise TypeError(f"attrs keys must be strings, got {k!r}")
        if k in reserved:
            raise ValueError(f"attrs[{k!r}] is reserved by the file layout")
        if v is None:
            continue
        if isinstance(v, (str, bool, numbers.Number, np.generic)):
            obj.attrs[k] = v
            continue
        arr = np.asarray(v)
        if arr.dtype.kind not in "biufU":
            raise TypeError(f"attrs[{k!r}] must be a scalar, a string or a numeric array, got {type(v).__name__}")
        obj.attrs[k] = arr


def _array(v, name: str) -> np.ndarray:
    if hasattr(v, "detach"):  # torch tensor, without importing torch here
        v = v.detach().cpu().numpy()
    a = np.asarray(v)
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise TypeError(f"{name} must be a numeric array, got dtype {a.dtype}")
    return a


def _check_finite(a, name):
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or Inf")


def _dataset(f, key, path, required=True):
    """``f[key]`` (None if absent and not ``required``); it must store all the data it declares."""
    if key not in f:
        if required:
            raise FormatError("missing dataset", path=path, key=key)
        return None
    obj = f[key]
    if not isinstance(obj, h5py.Dataset):
        raise FormatError("is a group, expected a dataset", path=path, key=key)
    check_stored(obj, path, key)
    return obj


def _read(ds, path, key, sel=None):
    try:
        return ds[()] if sel is None else ds[sel]
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise FormatError(f"cannot be read ({e})", path=path, key=key) from None


def _compression(compression):
    if compression not in _COMPRESSIONS:
        raise ValueError(f"compression must be one of {_COMPRESSIONS}, got {compression!r}")
    return compression


def _create(f, key, data, compression, chunks=None):
    kw = {}
    if data.size and data.ndim:
        kw["chunks"] = chunks if chunks is not None else True
        if compression is not None:
            kw["compression"] = compression
    f.create_dataset(key, data=data, **kw)


# ------------------------------------------------------------------ MRI
@dataclass
class MRIData:
    """One fastMRI-style file in memory.

    Attributes
    ----------
    kspace : numpy.ndarray, complex64/complex128, (slices, coils, ky, kx)
    mask : numpy.ndarray or None, (kx,) or (ky, kx)
        As stored (bool or float); see :meth:`sampling_mask`.
    sensitivity_maps : numpy.ndarray or None, complex, (slices, coils, ky, kx)
    reconstruction_rss : numpy.ndarray or None, float32, (slices, ny, nx)
    attrs : dict
        Root attributes (strings decoded).
    header : str or None
        The ISMRMRD XML header.
    path : str or None
    """

    kspace: np.ndarray
    mask: np.ndarray | None = None
    sensitivity_maps: np.ndarray | None = None
    reconstruction_rss: np.ndarray | None = None
    attrs: dict = field(default_factory=dict)
    header: str | None = None
    path: str | None = None

    @property
    def num_slices(self) -> int:
        return self.kspace.shape[0]

    @property
    def num_coils(self) -> int:
        return self.kspace.shape[1]

    @property
    def image_shape(self) -> tuple:
        return tuple(self.kspace.shape[-2:])

    @property
    def recon_shape(self) -> tuple | None:
        """``(ny, nx)`` of the header's ``reconSpace``, or None (see :func:`.ismrmrd.recon_shape`)."""
        return recon_shape(self.header, self.image_shape)

    def sampling_mask(self) -> np.ndarray:
        """The stored mask as bool, or the k-space locations that hold data.

        Without a stored mask: a column mask ``(kx,)`` when the nonzero
        pattern (over slices, coils) is the same in every row, else
        ``(ky, kx)``.
        """
        if self.mask is not None:
            return np.asarray(self.mask) != 0
        nz = np.any(self.kspace != 0, axis=(0, 1))  # (ky, kx)
        if np.all(nz == nz[:1]):
            return nz[0].copy()
        return nz


def _check_mask(mask, ky, kx, where, path=None):
    """``mask`` validated against ``(ky, kx)``; errors name ``where`` (argument or key)."""
    def fail(msg):
        if path is None:
            raise ValueError(f"{where} {msg}")
        raise FormatError(msg, path=path, key=where)

    if mask.dtype == object or not (np.issubdtype(mask.dtype, np.number) or mask.dtype == bool) \
            or np.iscomplexobj(mask):
        fail(f"must be bool or real numbers, got dtype {mask.dtype}")
    if mask.ndim == 1:
        if mask.shape[0] != kx:
            fail(f"has length {mask.shape[0]}; it selects k-space columns and must have length kx = {kx}")
    elif mask.ndim == 2:
        if mask.shape != (ky, kx):
            fail(f"has shape {mask.shape}, expected (ky, kx) = {(ky, kx)}")
    else:
        fail(f"must have shape (kx,) or (ky, kx), got {mask.shape}")
    if mask.dtype != bool and (not np.all(np.isfinite(mask)) or np.any(mask < 0)):
        fail("must be finite and non-negative")
    if not np.any(mask):
        fail("samples nothing")
    return mask


def _slice_sel(slices, n):
    if slices is None:
        return slice(None)
    if isinstance(slices, numbers.Integral):
        if not -n <= slices < n:
            raise ValueError(f"slices = {slices} is out of range for {n} slices")
        return slice(int(slices) % n, int(slices) % n + 1)
    if isinstance(slices, slice):
        if not len(range(n)[slices]):  # an empty selection would fail later, deep in a method
            raise ValueError(f"slices = {':'.join('' if v is None else str(v) for v in (slices.start, slices.stop))} "
                             f"selects none of the {n} slices")
        return slices
    idx = np.asarray(slices)
    if idx.ndim != 1 or idx.dtype.kind not in "iu" or idx.size == 0 or idx.min() < -n or idx.max() >= n:
        raise ValueError(f"slices must be an int, a slice or a list of indices in [0, {n}), got {slices!r}")
    idx = np.mod(idx, n)
    if np.any(np.diff(idx) <= 0):
        raise ValueError("a list of slices must be strictly increasing")
    return idx


def read_kspace(path, *, slices=None) -> MRIData:
    """Read a fastMRI-style multi-coil file (see the module notes).

    Parameters
    ----------
    path : str or Path
    slices : int, slice or list of int, optional
        Read only these slices (all by default).

    Returns
    -------
    MRIData

    Raises
    ------
    FileNotFoundError, IsADirectoryError, PermissionError
        No such file, a folder, or not readable by this user.
    FormatError
        Not HDF5 (or empty, corrupt); a dataset declaring more data than the
        file stores; ``kspace`` missing, real, of the wrong rank, empty or
        non-finite; ``mask`` of the wrong length/shape/dtype;
        ``sensitivity_maps`` or ``reconstruction_rss`` not matching
        ``kspace``; unreadable (corrupt) data.  The message names the key.
    """
    path = os.fspath(path)
    with open_h5(path) as f:
        ds = _dataset(f, "kspace", path)
        if ds.dtype.kind != "c":
            raise FormatError(f"must be complex (fastMRI stores complex64), got dtype {ds.dtype}",
                              path=path, key="kspace")
        if ds.ndim not in (3, 4):
            raise FormatError(f"must have shape (slices, coils, ky, kx) (or (slices, ky, kx) single-coil), "
                              f"got {ds.shape}", path=path, key="kspace")
        if min(ds.shape) == 0:
            raise FormatError(f"is empty (shape {ds.shape})", path=path, key="kspace")
        n = ds.shape[0]
        sel = _slice_sel(slices, n)
        k = _read(ds, path, "kspace", sel)
        if k.ndim == 3:
            k = k[:, None]
        if not np.all(np.isfinite(k)):
            raise FormatError("contains NaN or Inf", path=path, key="kspace")
        _, coils, ky, kx = k.shape

        mask = None
        mds = _dataset(f, "mask", path, required=False)
        if mds is not None:
            mask = _check_mask(np.asarray(_read(mds, path, "mask")), ky, kx, "mask", path)

        maps = None
        sds = _dataset(f, "sensitivity_maps", path, required=False)
        if sds is not None:
            if sds.dtype.kind != "c":
                raise FormatError(f"must be complex, got dtype {sds.dtype}", path=path, key="sensitivity_maps")
            if sds.shape != (n, coils, ky, kx):
                raise FormatError(f"has shape {sds.shape}, expected (slices, coils, ky, kx) = "
                                  f"{(n, coils, ky, kx)} to match kspace", path=path,
                                  key="sensitivity_maps")
            maps = _read(sds, path, "sensitivity_maps", sel)
            if not np.all(np.isfinite(maps)):
                raise FormatError("contains NaN or Inf", path=path, key="sensitivity_maps")

        rss = None
        rds = _dataset(f, "reconstruction_rss", path, required=False)
        if rds is not None:
            if rds.dtype.kind not in "fiu":
                raise FormatError(f"must be real, got dtype {rds.dtype}", path=path, key="reconstruction_rss")
            if rds.ndim != 3 or rds.shape[0] != n:
                raise FormatError(f"must have shape (slices={n}, ny, nx), got {rds.shape}", path=path,
                                  key="reconstruction_rss")
            rss = _read(rds, path, "reconstruction_rss", sel).astype(np.float32, copy=False)

        header = None
        hds = _dataset(f, "ismrmrd_header", path, required=False)
        if hds is not None:
            h = _read(hds, path, "ismrmrd_header")
            header = h.decode("utf-8", errors="replace") if isinstance(h, bytes) else str(h)
        attrs = _read_attrs(f)
    return MRIData(kspace=k, mask=mask, sensitivity_maps=maps, reconstruction_rss=rss, attrs=attrs,
                   header=header, path=path)


def write_kspace(path, kspace, *, mask=None, sensitivity_maps=None, reconstruction_rss=None, attrs=None,
                 header: str | None = None, compression="gzip"):
    """Write a fastMRI-style multi-coil file atomically.

    Parameters
    ----------
    path : str or Path
    kspace : array, complex, (slices, coils, ky, kx)
        Stored as complex64 (complex128 input stays complex128).
    mask : array, optional, (kx,) or (ky, kx)
    sensitivity_maps : array, optional, complex, (slices, coils, ky, kx)
    reconstruction_rss : array, optional, real, (slices, ny, nx)
    attrs : dict, optional
        Root attributes (``acquisition``, ``max``, ``norm``, ``patient_id``, ...).
    header : str, optional
        ISMRMRD XML header.
    compression : {"gzip", "lzf", None}

    Returns
    -------
    str, the path.
    """
    path = os.fspath(path)
    compression = _compression(compression)
    k = _array(kspace, "kspace")
    if not np.iscomplexobj(k):
        raise TypeError(f"kspace must be complex, got dtype {k.dtype}")
    if k.ndim != 4 or min(k.shape) == 0:
        raise ValueError(f"kspace must have shape (slices, coils, ky, kx) (non-empty), got {k.shape}")
    _check_finite(k, "kspace")
    if k.dtype not in (np.complex64, np.complex128):
        k = k.astype(np.complex64)
    n, _, ky, kx = k.shape
    if mask is not None:
        mask = _check_mask(_array(mask, "mask"), ky, kx, "mask")
    if sensitivity_maps is not None:
        sensitivity_maps = _array(sensitivity_maps, "sensitivity_maps")
        if not np.iscomplexobj(sensitivity_maps):
            sensitivity_maps = sensitivity_maps.astype(np.complex64)
        if sensitivity_maps.shape != k.shape:
            raise ValueError(f"sensitivity_maps must have the shape of kspace {k.shape}, got "
                             f"{sensitivity_maps.shape}")
        _check_finite(sensitivity_maps, "sensitivity_maps")
    if reconstruction_rss is not None:
        reconstruction_rss = _array(reconstruction_rss, "reconstruction_rss")
        if np.iscomplexobj(reconstruction_rss):
            raise TypeError("reconstruction_rss must be real")
        if reconstruction_rss.ndim != 3 or reconstruction_rss.shape[0] != n:
            raise ValueError(f"reconstruction_rss must have shape (slices={n}, ny, nx), got "
                             f"{reconstruction_rss.shape}")
        _check_finite(reconstruction_rss, "reconstruction_rss")
    if header is not None and not isinstance(header, str):
        raise TypeError(f"header must be a str, got {type(header).__name__}")
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            _create(f, "kspace", k, compression, chunks=(1, 1, ky, kx))
            if mask is not None:
                f.create_dataset("mask", data=mask)
            if sensitivity_maps is not None:
                _create(f, "sensitivity_maps", sensitivity_maps, compression, chunks=(1, 1, ky, kx))
            if reconstruction_rss is not None:
                _create(f, "reconstruction_rss", reconstruction_rss.astype(np.float32), compression,
                        chunks=(1,) + reconstruction_rss.shape[1:])
            if header is not None:
                f.create_dataset("ismrmrd_header", data=np.bytes_(header.encode("utf-8")))
            _write_attrs(f, attrs)
    return path


def write_reconstruction(path, reconstruction, attrs=None, *, compression="gzip"):
    """Write the fastMRI submission layout: ``reconstruction`` (slices, ny, nx) float32.

    Complex input is rejected (pass the magnitude); a 2-D image is one slice.
    """
    path = os.fspath(path)
    compression = _compression(compression)
    r = _array(reconstruction, "reconstruction")
    if np.iscomplexobj(r):
        raise TypeError("reconstruction must be real (the magnitude image), got a complex array")
    if r.ndim == 2:
        r = r[None]
    if r.ndim != 3 or min(r.shape) == 0:
        raise ValueError(f"reconstruction must have shape (slices, ny, nx), got {r.shape}")
    _check_finite(r, "reconstruction")
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            _create(f, "reconstruction", r.astype(np.float32), compression, chunks=(1,) + r.shape[1:])
            _write_attrs(f, attrs)
    return path


def read_reconstruction(path) -> tuple[np.ndarray, dict]:
    """``(reconstruction (slices, ny, nx) float32, attrs)`` from a submission-layout file."""
    path = os.fspath(path)
    with open_h5(path) as f:
        ds = _dataset(f, "reconstruction", path)
        if ds.dtype.kind not in "fiu" or ds.ndim != 3:
            raise FormatError(f"must be a real (slices, ny, nx) array, got dtype {ds.dtype} shape {ds.shape}",
                              path=path, key="reconstruction")
        r = _read(ds, path, "reconstruction").astype(np.float32, copy=False)
        return r, _read_attrs(f)


# ------------------------------------------------------------------ CT
@dataclass
class CTData:
    """A parallel-beam CT file in memory.

    Attributes
    ----------
    sinogram : numpy.ndarray, real, (slices, views, det)
    angles : numpy.ndarray, float64, (views,), radians
    image_shape : tuple (ny, nx)
    det_spacing : float
        Detector bin width in pixel units.
    reference : numpy.ndarray or None, (slices, ny, nx)
    attrs : dict
        All root attributes.
    path : str or None
    """

    sinogram: np.ndarray
    angles: np.ndarray
    image_shape: tuple
    det_spacing: float = 1.0
    reference: np.ndarray | None = None
    attrs: dict = field(default_factory=dict)
    path: str | None = None


_CT_RESERVED = ("format", "format_version", "geometry", "image_shape", "det_spacing", "angle_units")


def write_ct(path, sinogram, angles, *, image_shape, det_spacing: float = 1.0, reference=None, attrs=None,
             compression="gzip"):
    """Write a parallel-beam CT file atomically (layout in the module notes).

    Parameters
    ----------
    sinogram : array, real, (slices, views, det) or (views, det)
    angles : array, (views,), radians
    image_shape : (ny, nx)
    det_spacing : float
    reference : array, optional, (slices, ny, nx)
    attrs : dict, optional
        Extra root attributes (names in the layout are reserved).
    """
    path = os.fspath(path)
    compression = _compression(compression)
    s = _array(sinogram, "sinogram")
    if np.iscomplexobj(s):
        raise TypeError("sinogram must be real")
    if s.ndim == 2:
        s = s[None]
    if s.ndim != 3 or min(s.shape) == 0:
        raise ValueError(f"sinogram must have shape (slices, views, det), got {s.shape}")
    _check_finite(s, "sinogram")
    a = _array(angles, "angles").astype(np.float64)
    if a.ndim != 1 or a.shape[0] != s.shape[1]:
        raise ValueError(f"angles must have shape (views,) = ({s.shape[1]},), got {a.shape}")
    _check_finite(a, "angles")
    try:
        ny, nx = (int(v) for v in image_shape)
    except (TypeError, ValueError):
        raise ValueError(f"image_shape must be (ny, nx), got {image_shape!r}") from None
    if ny < 1 or nx < 1:
        raise ValueError(f"image_shape must be positive, got {image_shape!r}")
    if not isinstance(det_spacing, numbers.Real) or not np.isfinite(det_spacing) or det_spacing <= 0:
        raise ValueError(f"det_spacing must be a finite number > 0, got {det_spacing!r}")
    if reference is not None:
        reference = _array(reference, "reference")
        if reference.ndim == 2:
            reference = reference[None]
        if np.iscomplexobj(reference) or reference.shape != (s.shape[0], ny, nx):
            raise ValueError(f"reference must be real with shape (slices, ny, nx) = {(s.shape[0], ny, nx)}, "
                             f"got {reference.dtype} {reference.shape}")
        _check_finite(reference, "reference")
    if s.dtype not in (np.float32, np.float64):
        s = s.astype(np.float32)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            _create(f, "sinogram", s, compression, chunks=(1,) + s.shape[1:])
            f.create_dataset("angles", data=a)
            if reference is not None:
                _create(f, "reference", reference, compression, chunks=(1,) + reference.shape[1:])
            f.attrs["format"] = CT_FORMAT
            f.attrs["format_version"] = CT_FORMAT_VERSION
            f.attrs["geometry"] = "parallel"
            f.attrs["image_shape"] = np.array([ny, nx], dtype=np.int64)
            f.attrs["det_spacing"] = float(det_spacing)
            f.attrs["angle_units"] = "radian"
            _write_attrs(f, attrs, reserved=_CT_RESERVED)
    return path


def read_ct(path, *, slices=None) -> CTData:
    """Read a file written by :func:`write_ct`.

    Raises
    ------
    FormatError
        Naming the key: a missing/foreign ``format``, an unsupported
        ``format_version`` or ``geometry``, ``sinogram`` not real 3-D,
        ``angles`` not matching the views, a bad ``image_shape`` or
        ``det_spacing``, ``reference`` of the wrong shape, non-finite data.
    """
    path = os.fspath(path)
    with open_h5(path) as f:
        attrs = _read_attrs(f)
        fmt = attrs.get("format")
        if fmt != CT_FORMAT:
            raise FormatError(f"expected {CT_FORMAT!r}, got {fmt!r}", path=path, key="format")
        ver = attrs.get("format_version")
        if not isinstance(ver, numbers.Integral) or ver > CT_FORMAT_VERSION or ver < 1:
            raise FormatError(f"unsupported version {ver!r} (this reader knows {CT_FORMAT_VERSION})",
                              path=path, key="format_version")
        if attrs.get("geometry") != "parallel":
            raise FormatError(f"only 'parallel' is supported, got {attrs.get('geometry')!r}", path=path,
                              key="geometry")
        if attrs.get("angle_units", "radian") != "radian":
            raise FormatError(f"must be 'radian', got {attrs.get('angle_units')!r}", path=path, key="angle_units")
        shp = np.asarray(attrs.get("image_shape", []))
        if shp.shape != (2,) or shp.dtype.kind not in "iu" or np.any(shp < 1):
            raise FormatError(f"must be two positive integers (ny, nx), got {attrs.get('image_shape')!r}",
                              path=path, key="image_shape")
        ds_ = attrs.get("det_spacing")
        if not isinstance(ds_, numbers.Real) or not np.isfinite(ds_) or ds_ <= 0:
            raise FormatError(f"must be a finite number > 0, got {ds_!r}", path=path, key="det_spacing")
        sds = _dataset(f, "sinogram", path)
        if sds.dtype.kind not in "fiu" or sds.ndim != 3 or min(sds.shape) == 0:
            raise FormatError(f"must be a real (slices, views, det) array, got dtype {sds.dtype} shape {sds.shape}",
                              path=path, key="sinogram")
        n = sds.shape[0]
        sel = _slice_sel(slices, n)
        s = _read(sds, path, "sinogram", sel)
        if not np.all(np.isfinite(s)):
            raise FormatError("contains NaN or Inf", path=path, key="sinogram")
        ads = _dataset(f, "angles", path)
        a = np.asarray(_read(ads, path, "angles"))
        if a.dtype.kind not in "fiu" or a.shape != (sds.shape[1],):
            raise FormatError(f"must be real with shape (views,) = ({sds.shape[1]},), got {a.dtype} {a.shape}",
                              path=path, key="angles")
        if not np.all(np.isfinite(a)):
            raise FormatError("contains NaN or Inf", path=path, key="angles")
        ref = None
        rds = _dataset(f, "reference", path, required=False)
        if rds is not None:
            if rds.dtype.kind not in "fiu" or rds.shape != (n, int(shp[0]), int(shp[1])):
                raise FormatError(f"must be real with shape (slices, ny, nx) = {(n, int(shp[0]), int(shp[1]))}, "
                                  f"got {rds.dtype} {rds.shape}", path=path, key="reference")
            ref = _read(rds, path, "reference", sel)
    return CTData(sinogram=s, angles=a.astype(np.float64), image_shape=(int(shp[0]), int(shp[1])),
                  det_spacing=float(ds_), reference=ref, attrs=attrs, path=path)
