"""Readers and writers of 2-D Darcy-flow data sets in the layouts users already have.

:func:`read_darcy` detects the layout from the file's content (not its name):

``"krylearn"`` / ``"pdebench"`` — HDF5 in the PDEBench 2D Darcy layout::

    nu            (N, s1, s2)     coefficient a
    tensor        (N, 1, s1, s2)  solution u (one "time" frame)
    x-coordinate  (s1,)           coordinates along axis 1 of ``nu`` (optional)
    y-coordinate  (s2,)           coordinates along axis 2 of ``nu`` (optional)
    attrs         provenance (PDEBench: ``beta``; krylearn: generator, seed, ...)

Files written by :func:`krylearn.problems.darcy.generate_darcy` (and
:func:`write_darcy`) have this layout with ``attrs["generator"]`` starting with
``"krylearn"``.

``"fno-mat-v5"`` — the FNO benchmark's MATLAB v5/v7 files
(``piececonst_r421_N1024_smooth1.mat``): variables ``coeff`` (N, s, s) and
``sol`` (N, s, s), read with :func:`scipy.io.loadmat`. scipy cannot read part
of a variable, so both are read whole and then sliced (a 1024 x 421^2 file
needs about 3 GB while reading).

``"fno-mat-v7.3"`` — the same variables in a MATLAB v7.3 file (HDF5 with a
512-byte MATLAB header). MATLAB writes column-major arrays, so h5py sees
``coeff`` with its axes reversed, ``(s2, s1, N)``; the reader transposes back.
Only the requested samples are read.

Coordinates. The reader returns the coordinates it read (``x``, ``y``,
sub-sampled with the fields) and :attr:`DarcyData.layout` names their layout
on the unit square (:mod:`krylearn.datasets.grids`): ``"node"`` (end points
on the edges, ``linspace(0, 1, s)``), ``"cell"`` (cell centres
``(i + 1/2) / s``: PDEBench's Darcy files) or ``"general"`` (other strictly
monotone coordinates, e.g. cell centres sub-sampled by ``sub > 1``).
Coordinates that are not one-dimensional, not of the grid's length, not
finite or not strictly monotone raise :class:`FormatError` naming the key.
Coordinates missing from a file (always, for the FNO ``.mat`` files) default
to the nodes ``linspace(0, 1, s)``, the grid LSM and FNO feed their networks.

neuraloperator's ``darcy_*.pt`` files are pickled torch objects and are
refused (loading them executes code from the file); convert them once, in a
process you trust, with::

    import torch
    from krylearn.datasets.pde_formats import write_darcy
    d = torch.load("darcy_train_16.pt", weights_only=True)   # dict: x (coefficient), y (solution)
    a, u = d["x"].float().numpy(), d["y"].float().numpy()
    write_darcy("darcy_train_16.h5", a.reshape(len(a), *a.shape[-2:]), u.reshape(len(u), *u.shape[-2:]))

(their ``x`` is the boolean indicator of the high-coefficient region, not ``a``
itself: map it with ``lo + (hi - lo) * x`` if the values matter).

Malformed files raise :class:`~krylearn.utils.errors.FormatError` naming
the file and the offending key.
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
from .grids import check_coordinates, classify_coordinates, grid_coordinates

__all__ = [
    "DARCY_SOURCES",
    "DarcyData",
    "create_darcy_layout",
    "detect_darcy_format",
    "read_darcy",
    "refuse_time_series",
    "write_darcy",
]

#: values of :attr:`DarcyData.source`
DARCY_SOURCES = ("krylearn", "pdebench", "fno-mat-v5", "fno-mat-v7.3")

_MAT5_MAGIC = b"MATLAB 5.0 MAT-file"
_MAT73_MAGIC = b"MATLAB 7.3 MAT-file"


@dataclass
class DarcyData:
    """Darcy samples: coefficients, solutions and their grid.

    Attributes
    ----------
    a : numpy.ndarray, (N, s1, s2), float32
        Coefficient fields.
    u : numpy.ndarray, (N, s1, s2), float32
        Solution fields.
    x : numpy.ndarray, (s1,), float64
        Coordinates along axis 1 of ``a``/``u``, as read (default: the nodes
        ``linspace(0, 1, s1)``).
    y : numpy.ndarray, (s2,), float64
        Coordinates along axis 2.
    attrs : dict
        File-level attributes (provenance), as Python scalars/strings/arrays.
    source : str
        One of :data:`DARCY_SOURCES`.
    path : str or None
        The file read.
    start : int
        Index in the file of the first sample held.
    """

    a: np.ndarray
    u: np.ndarray
    x: np.ndarray
    y: np.ndarray
    attrs: dict = field(default_factory=dict)
    source: str = "krylearn"
    path: str | None = None
    start: int = 0

    def __len__(self) -> int:
        return int(self.a.shape[0])

    @property
    def resolution(self) -> tuple[int, int]:
        """``(s1, s2)``."""
        return tuple(int(v) for v in self.a.shape[1:])

    @property
    def layout(self) -> str:
        """``"node"``, ``"cell"`` or ``"general"``: the layout of ``x`` and ``y`` on the unit square.

        ``"general"`` also when the two axes differ in layout.
        """
        lx, ly = classify_coordinates(self.x), classify_coordinates(self.y)
        return lx if lx == ly else "general"

    @property
    def coords(self) -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)``, as :func:`krylearn.solvers.lsm.predict`'s ``coords`` argument takes them."""
        return self.x, self.y


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------
def _attr_value(v):
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.ndarray):
        if v.dtype.kind == "S":
            return [x.decode("utf-8", "replace") for x in v.ravel()]
        return v.item() if v.size == 1 and v.ndim == 0 else v
    if isinstance(v, np.generic):
        return v.item()
    return v


def _window(path: str, n: int, start: int, count: int | None) -> tuple[int, int]:
    if start > n:
        raise ValueError(f"start = {start} is beyond the {n} samples of {path!r}")
    stop = n if count is None else start + count
    if stop > n:
        raise ValueError(f"start + count = {stop} exceeds the {n} samples of {path!r}")
    return start, stop


def _check_finite(path: str, key: str, v: np.ndarray, start: int) -> None:
    bad = ~np.isfinite(v)
    if bad.any():
        first = start + int(np.nonzero(bad.reshape(bad.shape[0], -1).any(axis=1))[0][0])
        raise FormatError(f"non-finite values (NaN or Inf), first in sample {first}", path=path, key=key)


def _numeric_dataset(path: str, f: h5py.File, key: str, ndim: int, *, where: str = "") -> h5py.Dataset:
    if key not in f:
        raise FormatError(f"missing dataset{where}", path=path, key=key)
    d = f[key]
    if not isinstance(d, h5py.Dataset):
        raise FormatError(f"expected a dataset, found a {type(d).__name__}", path=path, key=key)
    if d.dtype.kind not in "iuf":
        raise FormatError(f"expected a real numeric dataset, got dtype {d.dtype}", path=path, key=key)
    if d.ndim != ndim:
        raise FormatError(f"expected {ndim} dimensions, got shape {d.shape}", path=path, key=key)
    check_stored(d, path, key)
    return d


def _read(path: str, d: h5py.Dataset, key: str, sel) -> np.ndarray:
    try:
        return d[sel]
    except (OSError, RuntimeError, ValueError) as e:
        raise FormatError(f"unreadable data ({e})", path=path, key=key) from None


def _coordinate(path: str, f, key: str, n: int, sub: int) -> np.ndarray:
    """Coordinates ``(len(range(0, n, sub)),)`` float64 of a grid axis of ``n`` points, read ``[::sub]``.

    Missing: the nodes ``linspace(0, 1, n)[::sub]``.  Not 1-D numeric, of
    another length than ``n``, non-finite or not strictly monotone:
    :class:`FormatError` naming ``key``.
    """
    if key not in f:
        return grid_coordinates(n, "node")[::sub]
    d = f[key]
    if not isinstance(d, h5py.Dataset) or d.dtype.kind not in "iuf" or d.ndim != 1:
        raise FormatError(f"expected a 1-D numeric dataset, got {d!r}", path=path, key=key)
    check_stored(d, path, key)
    if d.shape[0] != n:
        raise FormatError(f"{d.shape[0]} coordinates, but the grid has {n} points along this axis",
                          path=path, key=key)
    try:
        c = check_coordinates("coordinates", _read(path, d, key, slice(None)), n)
    except ValueError as e:
        raise FormatError(str(e), path=path, key=key) from None
    return c[::sub]


def detect_darcy_format(path) -> str:
    """The layout of ``path``: one of :data:`DARCY_SOURCES` (content, not name, decides).

    Raises
    ------
    FileNotFoundError, IsADirectoryError, PermissionError
        If ``path`` does not exist, is a folder or cannot be read.
    FormatError
        For pickled torch files and anything that is neither a Darcy HDF5 nor a MAT file.
    """
    path, _ = check_readable(path)
    with open(path, "rb") as fh:
        head = fh.read(128)
    pickled = FormatError(
        "looks like a pickled torch file (neuraloperator's darcy_*.pt); krylearn does not unpickle "
        "data files. Convert it once in a process you trust: see krylearn.datasets.pde_formats' "
        "module docstring (torch.load(..., weights_only=True) then write_darcy)", path=path)
    if path.lower().endswith((".pt", ".pth")):
        raise pickled
    if h5py.is_hdf5(path):
        try:
            with open_h5(path) as f:
                keys = set(f.keys())
                generator = _attr_value(f.attrs.get("generator", ""))
        except (OSError, RuntimeError) as e:
            raise FormatError(f"unreadable HDF5 file ({e})", path=path) from None
        if "nu" in keys or "tensor" in keys:
            return "krylearn" if str(generator).startswith("krylearn") else "pdebench"
        if "coeff" in keys or "sol" in keys or head.startswith(_MAT73_MAGIC):
            return "fno-mat-v7.3"
        raise FormatError(
            f"no Darcy data: expected datasets 'nu' and 'tensor' (PDEBench layout) or 'coeff' and 'sol' "
            f"(FNO MATLAB v7.3); found {sorted(keys)}", path=path, key="nu")
    if head.startswith(_MAT5_MAGIC):
        return "fno-mat-v5"
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        raise pickled
    raise FormatError("neither an HDF5 file nor a MATLAB MAT file", path=path)


# ---------------------------------------------------------------------------
# per-format readers
# ---------------------------------------------------------------------------
def refuse_time_series(f: h5py.File, path: str) -> None:
    """``FormatError`` when a file read for Darcy data is a Navier-Stokes time series (no ``nu``, T > 1 frames)."""
    t = f.get("tensor")
    if "nu" not in f and isinstance(t, h5py.Dataset) and t.ndim == 4 and t.shape[1] > 1:
        raise FormatError(f"no Darcy data: 'tensor' {t.shape} is a time series and there is no 'nu', so this is "
                          "a Navier-Stokes file; use a model trained on it (train lsm --task ns)", path=path, key="nu")


def _read_pdebench(path, start, count, sub, source) -> DarcyData:
    with open_h5(path) as f:
        refuse_time_series(f, path)
        nu = _numeric_dataset(path, f, "nu", 3)
        tensor = _numeric_dataset(path, f, "tensor", 4)
        if tensor.shape[1] != 1:
            raise FormatError(f"expected shape (N, 1, s1, s2) (one frame), got {tensor.shape}", path=path, key="tensor")
        if tensor.shape[0] != nu.shape[0]:
            raise FormatError(f"{tensor.shape[0]} samples, but 'nu' has {nu.shape[0]}", path=path, key="tensor")
        if tensor.shape[2:] != nu.shape[1:]:
            raise FormatError(f"grid {tensor.shape[2:]} does not match the grid {nu.shape[1:]} of 'nu'",
                              path=path, key="tensor")
        lo, hi = _window(path, nu.shape[0], start, count)
        a = _read(path, nu, "nu", np.s_[lo:hi, ::sub, ::sub]).astype(np.float32, copy=False)
        u = _read(path, tensor, "tensor", np.s_[lo:hi, 0, ::sub, ::sub]).astype(np.float32, copy=False)
        x = _coordinate(path, f, "x-coordinate", nu.shape[1], sub)
        y = _coordinate(path, f, "y-coordinate", nu.shape[2], sub)
        try:
            attrs = {k: _attr_value(v) for k, v in f.attrs.items()}
        except (OSError, RuntimeError, TypeError) as e:
            raise FormatError(f"unreadable attributes ({e})", path=path) from None
    _check_finite(path, "nu", a, lo)
    _check_finite(path, "tensor", u, lo)
    return DarcyData(a=a, u=u, x=x, y=y, attrs=attrs, source=source, path=path, start=lo)


def _read_mat73(path, start, count, sub) -> DarcyData:
    with open_h5(path) as f:
        coeff = _numeric_dataset(path, f, "coeff", 3, where=" (FNO MATLAB v7.3 file)")
        sol = _numeric_dataset(path, f, "sol", 3, where=" (FNO MATLAB v7.3 file)")
        # column-major MATLAB (N, s1, s2) appears to h5py as (s2, s1, N)
        if sol.shape != coeff.shape:
            raise FormatError(f"MATLAB shape {sol.shape[::-1]} does not match 'coeff' {coeff.shape[::-1]}",
                              path=path, key="sol")
        lo, hi = _window(path, coeff.shape[2], start, count)
        full = coeff.shape[1::-1]
        sel = np.s_[::sub, ::sub, lo:hi]
        a = _read(path, coeff, "coeff", sel).transpose(2, 1, 0).astype(np.float32)
        u = _read(path, sol, "sol", sel).transpose(2, 1, 0).astype(np.float32)
        attrs = {"matlab_version": "7.3"}
    _check_finite(path, "coeff", a, lo)
    _check_finite(path, "sol", u, lo)
    return DarcyData(a=np.ascontiguousarray(a), u=np.ascontiguousarray(u), x=grid_coordinates(full[0])[::sub],
                     y=grid_coordinates(full[1])[::sub], attrs=attrs, source="fno-mat-v7.3", path=path, start=lo)


_MAT_ITEMSIZE = {"double": 8, "single": 4, "int8": 1, "uint8": 1, "int16": 2, "uint16": 2, "int32": 4,
                 "uint32": 4, "int64": 8, "uint64": 8, "logical": 1}


def _read_mat5(path, start, count, sub) -> DarcyData:
    try:
        info = {name: (shape, cls) for name, shape, cls in scipy.io.whosmat(path)}
    except Exception as e:  # scipy raises a zoo of errors on corrupt MAT files
        raise FormatError(f"unreadable MATLAB file ({type(e).__name__}: {e})", path=path) from None
    for key in ("coeff", "sol"):
        if key not in info:
            raise FormatError(f"missing variable (FNO MATLAB file); found {sorted(info)}", path=path, key=key)
        shape, cls = info[key]
        if len(shape) != 3:
            raise FormatError(f"expected a 3-D (N, s, s) array, got shape {tuple(shape)}", path=path, key=key)
        if cls not in _MAT_ITEMSIZE:
            raise FormatError(f"expected a numeric array, got MATLAB class {cls!r}", path=path, key=key)
        declared = math.prod(shape) * _MAT_ITEMSIZE[cls]
        if declared > os.path.getsize(path) * MAX_COMPRESSION_RATIO:
            raise FormatError(f"declares shape {tuple(shape)} ({format_bytes(declared)}), more than the "
                              f"{format_bytes(os.path.getsize(path))} file can hold even compressed; refusing "
                              "to read it", path=path, key=key)
    if tuple(info["sol"][0]) != tuple(info["coeff"][0]):
        raise FormatError(f"shape {tuple(info['sol'][0])} does not match 'coeff' {tuple(info['coeff'][0])}",
                          path=path, key="sol")
    lo, hi = _window(path, info["coeff"][0][0], start, count)
    try:
        m = scipy.io.loadmat(path, variable_names=["coeff", "sol"])
    except Exception as e:
        raise FormatError(f"unreadable MATLAB file ({type(e).__name__}: {e})", path=path) from None
    a = np.ascontiguousarray(m.pop("coeff")[lo:hi, ::sub, ::sub], dtype=np.float32)
    u = np.ascontiguousarray(m.pop("sol")[lo:hi, ::sub, ::sub], dtype=np.float32)
    _check_finite(path, "coeff", a, lo)
    _check_finite(path, "sol", u, lo)
    _, s1, s2 = info["coeff"][0]
    return DarcyData(a=a, u=u, x=grid_coordinates(s1)[::sub], y=grid_coordinates(s2)[::sub],
                     attrs={"matlab_version": "5"}, source="fno-mat-v5", path=path, start=lo)


def read_darcy(path, *, start: int = 0, count: int | None = None, sub: int = 1) -> DarcyData:
    """Read Darcy samples from a krylearn/PDEBench HDF5 or an FNO ``.mat`` file.

    Parameters
    ----------
    path : str or os.PathLike
        The file; its layout is detected from its content (see the module docstring).
    start : int
        Index of the first sample to read.
    count : int, optional
        Number of samples (default: all from ``start``). Only these samples
        are read from HDF5 files (MATLAB v5 files are read whole, then sliced).
    sub : int
        Spatial subsampling ``[::sub, ::sub]`` applied while reading (FNO's
        ``r``: 421 nodes with ``sub=5`` give 85).

    Returns
    -------
    DarcyData
        ``a``, ``u`` float32 ``(count, s1, s2)``; ``x``, ``y`` float64 the
        coordinates read (``[::sub]``), ``layout`` their layout.

    Raises
    ------
    FileNotFoundError, IsADirectoryError, PermissionError
        If ``path`` does not exist, is a folder or cannot be read.
    FormatError
        A dataset declaring more data than the file stores;
        missing or malformed ``nu``/``tensor``/``coeff``/``sol`` (wrong rank,
        mismatched sample counts or grids), non-finite values in the samples
        read, ``x-coordinate``/``y-coordinate`` of the wrong length,
        non-finite or not strictly monotone, a pickled ``.pt`` file, or an
        unknown format.
    ValueError, TypeError
        Bad ``start``/``count``/``sub``.
    """
    return _read_by_format(path, start, count, sub, detect_darcy_format, _read_pdebench, _read_mat73, _read_mat5)


def _read_by_format(path, start, count, sub, detect, read_hdf5, read_mat73, read_mat5):
    """Check the window arguments, detect the format and call its reader; I/O errors become ``FormatError``."""
    start = check_int("start", start, 0)
    if count is not None:
        count = check_int("count", count, 0)
    sub = check_int("sub", sub, 1)
    path = os.fspath(path)
    fmt = detect(path)
    try:
        if fmt in ("krylearn", "pdebench"):
            return read_hdf5(path, start, count, sub, fmt)
        if fmt == "fno-mat-v7.3":
            return read_mat73(path, start, count, sub)
        return read_mat5(path, start, count, sub)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except OSError as e:
        raise FormatError(f"unreadable file ({e})", path=path) from None


# ---------------------------------------------------------------------------
# writer
# ---------------------------------------------------------------------------
def _layout_coordinates(x, y, layout: str, s1: int, s2: int) -> tuple[np.ndarray, np.ndarray]:
    """Checked ``(x, y)``: the given arrays, or ``layout``'s grid on the unit square where ``None``."""
    if layout not in ("node", "cell"):
        raise ValueError(f"layout must be 'node' or 'cell', got {layout!r}")
    return tuple(grid_coordinates(s, layout) if c is None else check_coordinates(name, c, s)
                 for name, c, s in (("x", x, s1), ("y", y, s2)))


def create_darcy_layout(h5: h5py.File, n: int, shape, *, x=None, y=None, layout: str = "node", chunk: int = 1,
                        compression: str | None = None) -> tuple[h5py.Dataset, h5py.Dataset]:
    """Create the empty PDEBench-layout datasets in an open file; returns ``(nu, tensor)``.

    ``nu`` is ``(n, s1, s2)`` and ``tensor`` ``(n, 1, s1, s2)``, float32,
    chunked by ``chunk`` samples.  ``x-coordinate`` ``(s1,)`` and
    ``y-coordinate`` ``(s2,)`` are ``x`` and ``y`` (strictly monotone,
    finite), or where ``None`` the ``layout`` grid on the unit square:
    ``"node"`` (default, ``linspace(0, 1, s)``) or ``"cell"`` (``(i + 1/2) / s``).
    """
    s1, s2 = (int(v) for v in shape)
    x, y = _layout_coordinates(x, y, layout, s1, s2)
    n = check_int("n", n, 0)
    chunk = check_int("chunk", chunk, 1)
    if compression not in (None, "gzip", "lzf"):
        raise ValueError(f"compression must be None, 'gzip' or 'lzf', got {compression!r}")
    c = max(1, min(chunk, n))
    nu = h5.create_dataset("nu", shape=(n, s1, s2), dtype=np.float32, chunks=(c, s1, s2),
                           compression=compression)
    tensor = h5.create_dataset("tensor", shape=(n, 1, s1, s2), dtype=np.float32, chunks=(c, 1, s1, s2),
                               compression=compression)
    for key, coord in (("x-coordinate", x), ("y-coordinate", y)):
        h5.create_dataset(key, data=coord.astype(np.float32))
    return nu, tensor


def write_darcy(path, a, u, *, x=None, y=None, layout: str = "node", attrs: dict | None = None, chunk: int = 1,
                compression: str | None = None) -> None:
    """Write ``(a, u)`` samples as a PDEBench-layout HDF5 file, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Destination (its folder must exist); replaced only once complete.
    a, u : array_like, (N, s1, s2)
        Coefficients and solutions (stored float32, ``u`` as ``tensor`` (N, 1, s1, s2)).
    x, y : array_like, (s1,) and (s2,), optional
        Coordinates, strictly monotone (default: ``layout``'s grid).
    layout : {"node", "cell"}
        The grid on the unit square where ``x`` or ``y`` is not given:
        nodes ``linspace(0, 1, s)`` (default) or cell centres ``(i + 1/2) / s``
        (PDEBench's layout).
    attrs : dict, optional
        File attributes (scalars or strings); ``generator`` defaults to
        ``"krylearn.write_darcy"``.
    chunk : int
        Samples per HDF5 chunk.
    compression : {None, "gzip", "lzf"}
    """
    a = np.asarray(a)
    u = np.asarray(u)
    if a.ndim != 3:
        raise ValueError(f"a must have shape (N, s1, s2), got {a.shape}")
    if u.shape != a.shape:
        raise ValueError(f"u must have the shape of a {a.shape}, got {u.shape}")
    for name, v in (("a", a), ("u", u)):
        if v.dtype.kind not in "iufb":
            raise TypeError(f"{name} must be numeric, got dtype {v.dtype}")
        if not np.isfinite(v).all():
            raise ValueError(f"{name} contains NaN or Inf")
    x, y = _layout_coordinates(x, y, layout, *a.shape[1:])
    attrs = {"generator": "krylearn.write_darcy", **(attrs or {})}
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as h5:
            nu, tensor = create_darcy_layout(h5, a.shape[0], a.shape[1:], x=x, y=y, layout=layout, chunk=chunk,
                                             compression=compression)
            nu[...] = a.astype(np.float32)
            tensor[...] = u.astype(np.float32)[:, None]
            for k, v in attrs.items():
                h5.attrs[k] = v
