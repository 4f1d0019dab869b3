"""Readers and writers of 2-D Navier–Stokes vorticity time series (the FNO / LSM benchmark).

:func:`read_navier_stokes` detects the layout from the file's content:

``"krylearn"`` / ``"pdebench"`` — HDF5 in a PDEBench-style layout, the
time-series form of the package's Darcy layout (``tensor`` is
``(N, frames, s1, s2)`` there too, with one frame)::

    tensor        (N, T+1, s1, s2)  float32  vorticity w; frame 0 is the initial field w0
    t-coordinate  (T+1,)            float    time of each frame (0, 1, ..., T)
    x-coordinate  (s1,)             float    points along axis 2 of ``tensor`` (optional)
    y-coordinate  (s2,)             float    points along axis 3 (optional)
    forcing       (s1, s2)          float32  the forcing f at the same points (optional)
    attrs         provenance: generator, version, seed, nu (viscosity), dt, res, ...

Files written by :func:`krylearn.problems.navier_stokes.generate_navier_stokes`
have ``attrs["generator"]`` starting with ``"krylearn"``.  Chunks hold whole
samples, so reading a few samples reads only those.  ``t-coordinate`` has
exactly one entry per frame (PDEBench's 1-D files store one more, the cell
edges; such a file is read with its first ``T+1`` entries).

``"fno-mat-v5"`` / ``"fno-mat-v7.3"`` — FNO's ``NavierStokes_V1e-5_N1200_T20.mat``:
``a`` ``(N, s, s)`` the initial vorticity, ``u`` ``(N, s, s, T)`` the frames at
``t = 1..T``, optionally ``t`` ``(1, T)``.  MATLAB v5 files are read with
:func:`scipy.io.loadmat` (whole, then sliced); v7.3 files are HDF5 with the
axes reversed (``u`` appears as ``(T, s, s, N)``) and only the requested
samples are read.  The reader returns them in the layout above: ``w[:, 0] = a``,
``w[:, 1:] = u`` moved to ``(N, T, s, s)``, ``t = [0, t_1, ..., t_T]``.

Missing coordinates default to the torus points ``k / s``; missing times to
``0, 1, ..., T``.  Malformed files raise
:class:`~krylearn.utils.errors.FormatError` naming the file and the key.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import h5py
import numpy as np
import scipy.io

from ..utils.atomic import atomic_path
from ..utils.checks import check_int
from ..utils.errors import FormatError
from .fileio import MAX_COMPRESSION_RATIO, check_readable, check_stored, format_bytes, open_h5
from .pde_formats import _MAT_ITEMSIZE, _attr_value, _check_finite, _numeric_dataset, _read, _read_by_format, _window

__all__ = ["NS_SOURCES", "NSData", "count_ns_samples", "create_ns_layout", "detect_ns_format",
           "read_navier_stokes", "write_navier_stokes"]

#: values of :attr:`NSData.source`
NS_SOURCES = ("krylearn", "pdebench", "fno-mat-v5", "fno-mat-v7.3")

_MAT5_MAGIC = b"MATLAB 5.0 MAT-file"
_MAT73_MAGIC = b"MATLAB 7.3 MAT-file"


@dataclass
class NSData:
    """Vorticity time series and their grid.

    Attributes
    ----------
    w : numpy.ndarray, (N, T+1, s1, s2), float32
        Vorticity; ``w[:, 0]`` is the initial field.
    t : numpy.ndarray, (T+1,), float64
        Time of each frame.
    x, y : numpy.ndarray, (s1,) and (s2,), float64
        Point coordinates along axes 2 and 3 of ``w``.
    forcing : numpy.ndarray or None, (s1, s2), float32
    attrs : dict
        File-level attributes (provenance).
    source : str
        One of :data:`NS_SOURCES`.
    path : str or None
    start : int
        Index in the file of the first sample held.
    """

    w: np.ndarray
    t: np.ndarray
    x: np.ndarray
    y: np.ndarray
    forcing: np.ndarray | None = None
    attrs: dict = field(default_factory=dict)
    source: str = "krylearn"
    path: str | None = None
    start: int = 0

    def __len__(self) -> int:
        return int(self.w.shape[0])

    @property
    def frames(self) -> int:
        """Frames per sample (``T + 1``)."""
        return int(self.w.shape[1])

    @property
    def resolution(self) -> tuple[int, int]:
        """``(s1, s2)``."""
        return tuple(int(v) for v in self.w.shape[2:])


def _torus(s: int) -> np.ndarray:
    return np.arange(s, dtype=np.float64) / s


def _vector(path, f, key, n, sl=slice(None), *, default=None) -> np.ndarray | None:
    """A 1-D numeric dataset's entries ``sl`` as float64, checked to have ``n`` of them (None if absent)."""
    if key not in f:
        return default
    d = f[key]
    if not isinstance(d, h5py.Dataset) or d.dtype.kind not in "iuf" or d.ndim != 1:
        raise FormatError(f"expected a 1-D numeric dataset, got {d!r}", path=path, key=key)
    check_stored(d, path, key)
    v = _read(path, d, key, sl).astype(np.float64)
    if v.shape[0] != n:
        raise FormatError(f"{v.shape[0]} entries, expected {n}", path=path, key=key)
    if not np.isfinite(v).all():
        raise FormatError("non-finite values", path=path, key=key)
    return v


def detect_ns_format(path) -> str:
    """The layout of ``path``: one of :data:`NS_SOURCES` (content, not name, decides).

    Raises
    ------
    FileNotFoundError, IsADirectoryError, PermissionError
    FormatError
        Not an NS file (a Darcy file is named as such), not HDF5 or MATLAB.
    """
    path, st = check_readable(path)
    if st.st_size == 0:
        raise FormatError("empty file (0 bytes)", path=path)
    with open(path, "rb") as fh:
        head = fh.read(128)
    if h5py.is_hdf5(path):
        try:
            with open_h5(path) as f:
                keys, generator = set(f.keys()), str(_attr_value(f.attrs.get("generator", "")))
        except (OSError, RuntimeError) as e:
            raise FormatError(f"unreadable HDF5 file ({e})", path=path) from None
        if "tensor" in keys and "nu" not in keys:
            return "krylearn" if generator.startswith("krylearn") else "pdebench"
        if "u" in keys or "a" in keys or head.startswith(_MAT73_MAGIC):
            return "fno-mat-v7.3"
        if "nu" in keys:
            raise FormatError("a Darcy file (coefficient 'nu', one frame), not a Navier-Stokes time series; "
                              "read it with krylearn.datasets.pde_formats.read_darcy", path=path, key="nu")
        raise FormatError(f"no Navier-Stokes data: expected 'tensor' (PDEBench-style layout) or 'a' and 'u' "
                          f"(FNO MATLAB v7.3); found {sorted(keys)}", path=path, key="tensor")
    if head.startswith(_MAT5_MAGIC):
        return "fno-mat-v5"
    raise FormatError("neither an HDF5 file nor a MATLAB MAT file", path=path)


def _read_pdebench(path, start, count, sub, source) -> NSData:
    with open_h5(path) as f:
        tensor = _numeric_dataset(path, f, "tensor", 4)
        n, frames = tensor.shape[:2]
        if frames < 2:
            raise FormatError(f"expected (N, T+1, s1, s2) with at least 2 frames, got {tensor.shape}",
                              path=path, key="tensor")
        lo, hi = _window(path, n, start, count)
        w = _read(path, tensor, "tensor", np.s_[lo:hi, :, ::sub, ::sub]).astype(np.float32, copy=False)
        s1, s2 = w.shape[2:]
        t = _vector(path, f, "t-coordinate", frames, slice(0, frames), default=np.arange(frames, dtype=np.float64))
        x = _vector(path, f, "x-coordinate", s1, slice(None, None, sub), default=_torus(s1))
        y = _vector(path, f, "y-coordinate", s2, slice(None, None, sub), default=_torus(s2))
        forcing = None
        if "forcing" in f:
            fd = _numeric_dataset(path, f, "forcing", 2)
            if fd.shape != tensor.shape[2:]:
                raise FormatError(f"shape {fd.shape} does not match the grid {tensor.shape[2:]} of 'tensor'",
                                  path=path, key="forcing")
            forcing = _read(path, fd, "forcing", np.s_[::sub, ::sub]).astype(np.float32)
        try:
            attrs = {k: _attr_value(v) for k, v in f.attrs.items()}
        except (OSError, RuntimeError, TypeError) as e:
            raise FormatError(f"unreadable attributes ({e})", path=path) from None
    _check_finite(path, "tensor", w, lo)
    return NSData(w=w, t=t, x=x, y=y, forcing=forcing, attrs=attrs, source=source, path=path, start=lo)


def _fno_times(path, t, frames_u) -> np.ndarray:
    if t is None:
        return np.arange(frames_u + 1, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64).ravel()
    if t.shape[0] != frames_u or not np.isfinite(t).all():
        raise FormatError(f"expected {frames_u} finite times (one per frame of 'u'), got shape {t.shape}",
                          path=path, key="t")
    return np.concatenate([[0.0], t])


def _assemble(path, a, u, t, lo, source, attrs) -> NSData:
    """``a`` (n, s1, s2), ``u`` (n, T, s1, s2) -> NSData with frame 0 = a."""
    _check_finite(path, "a", a, lo)
    _check_finite(path, "u", u, lo)
    w = np.concatenate([a[:, None], u], axis=1).astype(np.float32, copy=False)
    s1, s2 = w.shape[2:]
    return NSData(w=np.ascontiguousarray(w), t=t, x=_torus(s1), y=_torus(s2), attrs=attrs, source=source,
                  path=path, start=lo)


def _read_mat73(path, start, count, sub) -> NSData:
    with open_h5(path) as f:
        where = " (FNO MATLAB v7.3 file)"
        a = _numeric_dataset(path, f, "a", 3, where=where)   # MATLAB (N, s1, s2) -> h5py (s2, s1, N)
        u = _numeric_dataset(path, f, "u", 4, where=where)   # MATLAB (N, s1, s2, T) -> h5py (T, s2, s1, N)
        if u.shape[1:] != a.shape:
            raise FormatError(f"MATLAB shape {u.shape[::-1]} does not match 'a' {a.shape[::-1]} "
                              "(expected u (N, s1, s2, T) and a (N, s1, s2))", path=path, key="u")
        lo, hi = _window(path, a.shape[2], start, count)
        a_np = _read(path, a, "a", np.s_[::sub, ::sub, lo:hi]).transpose(2, 1, 0)
        u_np = _read(path, u, "u", np.s_[:, ::sub, ::sub, lo:hi]).transpose(3, 0, 2, 1)
        t = None
        if "t" in f:
            td = _numeric_dataset(path, f, "t", 2, where=where)
            t = _read(path, td, "t", ())
        times = _fno_times(path, t, u.shape[0])
    return _assemble(path, a_np, u_np, times, lo, "fno-mat-v7.3", {"matlab_version": "7.3"})


def _check_mat5_header(path) -> dict:
    try:
        info = {name: (tuple(shape), cls) for name, shape, cls in scipy.io.whosmat(path)}
    except Exception as e:  # scipy raises a zoo of errors on corrupt MAT files
        raise FormatError(f"unreadable MATLAB file ({type(e).__name__}: {e})", path=path) from None
    for key, ndim in (("a", 3), ("u", 4)):
        if key not in info:
            raise FormatError(f"missing variable (FNO Navier-Stokes MATLAB file); found {sorted(info)}",
                              path=path, key=key)
        shape, cls = info[key]
        if len(shape) != ndim:
            raise FormatError(f"expected {ndim} dimensions, got shape {shape}", path=path, key=key)
        if cls not in _MAT_ITEMSIZE:
            raise FormatError(f"expected a numeric array, got MATLAB class {cls!r}", path=path, key=key)
        declared = math.prod(shape) * _MAT_ITEMSIZE[cls]
        if declared > os.path.getsize(path) * MAX_COMPRESSION_RATIO:
            raise FormatError(f"declares shape {shape} ({format_bytes(declared)}), more than the "
                              f"{format_bytes(os.path.getsize(path))} file can hold even compressed", path=path,
                              key=key)
    if info["u"][0][:3] != info["a"][0]:
        raise FormatError(f"shape {info['u'][0]} does not match 'a' {info['a'][0]} (expected (N, s1, s2, T))",
                          path=path, key="u")
    return info


def _read_mat5(path, start, count, sub) -> NSData:
    info = _check_mat5_header(path)
    lo, hi = _window(path, info["a"][0][0], start, count)
    names = ["a", "u"] + (["t"] if "t" in info else [])
    try:
        m = scipy.io.loadmat(path, variable_names=names)
    except Exception as e:
        raise FormatError(f"unreadable MATLAB file ({type(e).__name__}: {e})", path=path) from None
    a = m.pop("a")[lo:hi, ::sub, ::sub]
    u = m.pop("u")[lo:hi, ::sub, ::sub].transpose(0, 3, 1, 2)
    times = _fno_times(path, m.get("t"), info["u"][0][3])
    return _assemble(path, a, u, times, lo, "fno-mat-v5", {"matlab_version": "5"})


def count_ns_samples(path) -> int:
    """Number of samples in an NS file, from its header (no sample is read); errors as :func:`read_navier_stokes`."""
    path = os.fspath(path)
    fmt = detect_ns_format(path)
    if fmt == "fno-mat-v5":
        return int(_check_mat5_header(path)["a"][0][0])
    try:
        with open_h5(path) as f:
            if fmt == "fno-mat-v7.3":
                return int(_numeric_dataset(path, f, "a", 3, where=" (FNO MATLAB v7.3 file)").shape[2])
            return int(_numeric_dataset(path, f, "tensor", 4).shape[0])
    except OSError as e:
        raise FormatError(f"unreadable file ({e})", path=path) from None


def read_navier_stokes(path, *, start: int = 0, count: int | None = None, sub: int = 1) -> NSData:
    """Read vorticity time series from a krylearn/PDEBench-style HDF5 or an FNO ``.mat`` file.

    Parameters
    ----------
    path : str or os.PathLike
        The file; its layout is detected from its content (module docstring).
    start : int
        First sample.
    count : int, optional
        Samples to read (default: all from ``start``).
    sub : int
        Spatial subsampling ``[::sub, ::sub]`` while reading.

    Returns
    -------
    NSData
        ``w`` float32 ``(count, T+1, s1, s2)`` with the initial field first.

    Raises
    ------
    FileNotFoundError, IsADirectoryError, PermissionError
    FormatError
        Corrupt or truncated file; missing or malformed ``tensor`` / ``a`` /
        ``u`` / ``t`` / coordinates (wrong rank, mismatched shapes), non-finite
        values in the samples read, a Darcy file, an unknown format.
    ValueError, TypeError
        Bad ``start`` / ``count`` / ``sub``.
    """
    return _read_by_format(path, start, count, sub, detect_ns_format, _read_pdebench, _read_mat73, _read_mat5)


# ---------------------------------------------------------------------------
# writer
# ---------------------------------------------------------------------------
def create_ns_layout(h5: h5py.File, n: int, t, shape, *, x=None, y=None, forcing=None,
                     compression: str | None = None) -> h5py.Dataset:
    """Create the layout in an open file and return the empty ``tensor`` ``(n, len(t), s1, s2)`` float32.

    ``t``, ``x``, ``y`` are written float64 (``x``, ``y`` default to ``k / s``);
    ``forcing`` ``(s1, s2)`` float32 when given.  Chunks hold one sample.
    """
    s1, s2 = (check_int("shape", int(v), 1) for v in shape)
    n = check_int("n", n, 0)
    if compression not in (None, "gzip", "lzf"):
        raise ValueError(f"compression must be None, 'gzip' or 'lzf', got {compression!r}")
    t = np.asarray(t, dtype=np.float64)
    if t.ndim != 1 or t.shape[0] < 2 or not np.isfinite(t).all():
        raise ValueError(f"t must be a finite 1-D array of at least 2 times, got shape {t.shape}")
    tensor = h5.create_dataset("tensor", shape=(n, t.shape[0], s1, s2), dtype=np.float32,
                               chunks=(1, t.shape[0], s1, s2) if n else None, compression=compression)
    h5.create_dataset("t-coordinate", data=t)
    for key, coord, s in (("x-coordinate", x, s1), ("y-coordinate", y, s2)):
        coord = _torus(s) if coord is None else np.asarray(coord, dtype=np.float64)
        if coord.shape != (s,):
            raise ValueError(f"{key[0]} must have shape ({s},), got {coord.shape}")
        h5.create_dataset(key, data=coord)
    if forcing is not None:
        forcing = np.asarray(forcing, dtype=np.float32)
        if forcing.shape != (s1, s2):
            raise ValueError(f"forcing must have shape ({s1}, {s2}), got {forcing.shape}")
        h5.create_dataset("forcing", data=forcing)
    return tensor


def write_navier_stokes(path, w, t=None, *, x=None, y=None, forcing=None, attrs: dict | None = None,
                        compression: str | None = None) -> None:
    """Write vorticity time series in the PDEBench-style layout, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Destination (its folder must exist); replaced only once complete.
    w : array_like, (N, T+1, s1, s2)
        Vorticity, initial field first (stored float32).
    t : array_like, (T+1,), optional
        Frame times (default ``0, 1, ..., T``).
    x, y, forcing : optional
        Coordinates ``(s1,)``, ``(s2,)`` and the forcing ``(s1, s2)``.
    attrs : dict, optional
        File attributes; ``generator`` defaults to ``"krylearn.write_navier_stokes"``.
    compression : {None, "gzip", "lzf"}
    """
    w = np.asarray(w)
    if w.ndim != 4 or w.shape[1] < 2:
        raise ValueError(f"w must have shape (N, T+1, s1, s2) with at least 2 frames, got {w.shape}")
    if w.dtype.kind not in "iuf":
        raise TypeError(f"w must be real numeric, got dtype {w.dtype}")
    if not np.isfinite(w).all():
        raise ValueError("w contains NaN or Inf")
    t = np.arange(w.shape[1], dtype=np.float64) if t is None else np.asarray(t, dtype=np.float64)
    if t.shape != (w.shape[1],):
        raise ValueError(f"t must have shape ({w.shape[1]},) (one time per frame of w), got {t.shape}")
    attrs = {"generator": "krylearn.write_navier_stokes", **(attrs or {})}
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as h5:
            tensor = create_ns_layout(h5, w.shape[0], t, w.shape[2:], x=x, y=y, forcing=forcing,
                                      compression=compression)
            tensor[...] = w.astype(np.float32)
            for k, v in attrs.items():
                h5.attrs[k] = v
