"""Checking the metadata of an open ``krylearn.linear_systems`` file against the layout.

:class:`LayoutChecker` reads attributes, keys, shapes and dtypes only (no
array contents) and raises :class:`~krylearn.utils.errors.FormatError`
naming the file and the missing or malformed key. It also refuses datasets
that declare more data than the file stores
(:func:`~krylearn.datasets.fileio.check_stored`), so a reader never
allocates a size a forged header claims.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import h5py
import numpy as np

from ...utils.errors import FormatError
from ..fileio import check_stored
from .schema import FORMAT_NAME, FORMAT_VERSION, _attr_to_python, _is_numeric

__all__ = ["LayoutChecker", "SystemMeta"]

#: errors h5py raises from the depths of a damaged file
H5_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError)


@dataclass(frozen=True)
class SystemMeta:
    """What the layout says about system ``i`` (read once, on open).

    Attributes
    ----------
    matrix : int
        Index ``j`` of the stored matrix ``M_j``.
    n, k : int
        Unknowns and right-hand sides.
    has_x, has_flags : bool
    grid_shape : tuple of int or None
    scale, shift : float
        ``A_i = scale * M_j + shift * I``.
    """

    matrix: int
    n: int
    k: int
    has_x: bool
    has_flags: bool
    grid_shape: tuple | None
    scale: float
    shift: float


class LayoutChecker:
    """Schema checks of one open file; every error names ``path`` and the key.

    Parameters
    ----------
    h5 : h5py.File
        Open for reading.
    path : str
        The file, for messages.
    """

    def __init__(self, h5: h5py.File, path: str):
        self.h5 = h5
        self.path = path

    # ------------------------------------------------------------- access
    def error(self, key, message) -> FormatError:
        return FormatError(message, path=self.path, key=key)

    def get(self, group, name, kind, key):
        """``group[name]``, which must exist and be a ``kind`` (h5py.Group or h5py.Dataset)."""
        what = "group" if kind is h5py.Group else "dataset"
        try:
            obj = group.get(name)
        except (OSError, RuntimeError, KeyError, ValueError) as e:
            raise self.error(key, f"unreadable ({e})") from None
        if obj is None:
            raise self.error(key, f"missing {what}")
        if not isinstance(obj, kind):
            raise self.error(key, f"expected an HDF5 {what}")
        return obj

    def attr(self, obj, name, key, required=True):
        """Attribute ``name`` of ``obj`` (None when absent and not ``required``)."""
        try:
            if name not in obj.attrs:
                if required:
                    raise self.error(key, "missing attribute")
                return None
            return obj.attrs[name]
        except FormatError:
            raise
        except H5_ERRORS as e:
            raise self.error(key, f"unreadable attribute ({e})") from None

    def read(self, dset, key, sel=()):
        """``dset[sel]``; a damaged dataset becomes a FormatError naming ``key``."""
        try:
            return dset[sel]
        except (OSError, RuntimeError, KeyError, ValueError) as e:
            raise self.error(key, f"unreadable data (corrupt or truncated?): {e}") from None

    def dataset(self, group, name, key) -> h5py.Dataset:
        """A dataset that must exist and store all the data it declares."""
        d = self.get(group, name, h5py.Dataset, key)
        check_stored(d, self.path, key)
        return d

    # --------------------------------------------------------------- root
    def root_attrs(self) -> dict:
        """The root attributes, checked (see :class:`~krylearn.datasets.systems.SystemsFile`)."""
        h5 = self.h5
        fmt = _attr_to_python(self.attr(h5, "format", "format"))
        if fmt != FORMAT_NAME:
            raise self.error("format", f"expected {FORMAT_NAME!r}, got {fmt!r}")
        version = _attr_to_python(self.attr(h5, "format_version", "format_version"))
        if isinstance(version, bool) or not isinstance(version, int):
            raise self.error("format_version", f"expected an integer, got {version!r}")
        if version > FORMAT_VERSION:
            raise self.error(
                "format_version",
                f"file has format version {version}, this krylearn reads up to {FORMAT_VERSION}; upgrade krylearn",
            )
        if version != FORMAT_VERSION:
            raise self.error("format_version", f"unsupported format version {version}")
        generator = _attr_to_python(self.attr(h5, "generator", "generator"))
        if not isinstance(generator, str):
            raise self.error("generator", f"expected a string, got {generator!r}")
        params = _attr_to_python(self.attr(h5, "parameters", "parameters"))
        try:
            params = json.loads(params)
        except (TypeError, ValueError) as e:
            raise self.error("parameters", f"not a JSON string ({e})") from None
        seed = _attr_to_python(self.attr(h5, "seed", "seed", required=False))
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise self.error("seed", f"expected an integer or an empty attribute, got {seed!r}")
        optional = {key: _attr_to_python(self.attr(h5, name, name, required=False))
                    for key, name in (("version", "krylearn_version"), ("created", "created"),
                                      ("file_id", "file_id"))}
        return {"format": fmt, "format_version": version, "generator": generator, "parameters": params,
                "seed": seed, **optional}

    # ----------------------------------------------------------- matrices
    def matrices(self) -> dict[int, int]:
        """``{j: n}`` for every stored matrix ``matrices/{j:06d}``."""
        group = self.get(self.h5, "matrices", h5py.Group, "matrices")
        out = {}
        for name in group:
            key = f"matrices/{name}"
            if not (len(name) == 6 and name.isdigit()):
                raise self.error(key, "unexpected entry (matrix groups are named by 6-digit indices)")
            out[int(name)] = self._matrix(self.get(group, name, h5py.Group, key), key)
        return out

    def _matrix(self, g, key) -> int:
        shape = np.asarray(self.attr(g, "shape", f"{key}/shape"))
        if shape.shape != (2,) or shape.dtype.kind not in "iu" or (shape < 0).any():
            raise self.error(f"{key}/shape", f"expected two non-negative integers, got {shape!r}")
        m, n = int(shape[0]), int(shape[1])
        if m != n:
            raise self.error(f"{key}/shape", f"matrix must be square, got ({m}, {n})")
        arrays = {}
        for part in ("indptr", "indices", "data"):
            d = self.dataset(g, part, f"{key}/{part}")
            if d.ndim != 1:
                raise self.error(f"{key}/{part}", f"expected a 1-D array, got shape {d.shape}")
            arrays[part] = d
        for part in ("indptr", "indices"):
            if arrays[part].dtype.kind not in "iu":
                raise self.error(f"{key}/{part}", f"expected an integer dtype, got {arrays[part].dtype}")
        if not _is_numeric(arrays["data"].dtype):
            raise self.error(f"{key}/data", f"expected a numeric dtype, got {arrays['data'].dtype}")
        if arrays["indptr"].shape[0] != n + 1:
            raise self.error(
                f"{key}/indptr", f"length {arrays['indptr'].shape[0]} != n + 1 = {n + 1} (shape {shape.tolist()})"
            )
        if arrays["indices"].shape != arrays["data"].shape:
            raise self.error(
                f"{key}/indices",
                f"length {arrays['indices'].shape[0]} differs from data length {arrays['data'].shape[0]}",
            )
        return n

    # ------------------------------------------------------------ systems
    def systems(self, matrix_n: dict[int, int]) -> list[SystemMeta]:
        """The :class:`SystemMeta` of every system, in order (``systems/000000``, ...)."""
        group = self.get(self.h5, "systems", h5py.Group, "systems")
        names = list(group)
        expected = [f"{i:06d}" for i in range(len(names))]
        if sorted(names) != expected:
            extra = sorted(set(names) - set(expected))
            missing = sorted(set(expected) - set(names))
            bad = f"systems/{(missing or extra)[0]}"
            raise self.error(bad, "missing" if missing else
                             "unexpected entry (systems must be numbered 000000, 000001, ...)")
        return [self._system(self.get(group, name, h5py.Group, f"systems/{name}"), f"systems/{name}", matrix_n)
                for name in expected]

    def _system(self, g, key, matrix_n) -> SystemMeta:
        j = _attr_to_python(self.attr(g, "matrix", f"{key}/matrix"))
        if isinstance(j, bool) or not isinstance(j, int):
            raise self.error(f"{key}/matrix", f"expected an integer, got {j!r}")
        if j not in matrix_n:
            raise self.error(f"{key}/matrix", f"refers to matrices/{j:06d}, which does not exist")
        n = matrix_n[j]
        b = self.dataset(g, "b", f"{key}/b")
        if b.ndim != 2 or b.shape[1] != n:
            raise self.error(f"{key}/b", f"expected shape (k, {n}), got {b.shape}")
        if not _is_numeric(b.dtype):
            raise self.error(f"{key}/b", f"expected a numeric dtype, got {b.dtype}")
        has_x = "x" in g
        if has_x:
            x = self.dataset(g, "x", f"{key}/x")
            if x.shape != b.shape:
                raise self.error(f"{key}/x", f"shape {x.shape} differs from b's {b.shape}")
            if not _is_numeric(x.dtype):
                raise self.error(f"{key}/x", f"expected a numeric dtype, got {x.dtype}")
        grid_shape = self._grid_shape(g, key, n)
        has_flags = "flags" in g
        if has_flags:
            self._check_flags(g, key, grid_shape)
        scale, shift = self._transform(g, key)
        return SystemMeta(matrix=j, n=n, k=int(b.shape[0]), has_x=has_x, has_flags=has_flags,
                          grid_shape=grid_shape, scale=scale, shift=shift)

    def _grid_shape(self, g, key, n) -> tuple | None:
        grid_shape = self.attr(g, "grid_shape", f"{key}/grid_shape", required=False)
        if grid_shape is None:
            return None
        gs = np.asarray(grid_shape)
        if gs.ndim != 1 or gs.size == 0 or gs.dtype.kind not in "iu" or (gs <= 0).any():
            raise self.error(f"{key}/grid_shape", f"expected positive integers, got {grid_shape!r}")
        grid_shape = tuple(int(s) for s in gs)
        if math.prod(grid_shape) != n:
            raise self.error(f"{key}/grid_shape", f"prod{grid_shape} != n = {n}")
        return grid_shape

    def _check_flags(self, g, key, grid_shape) -> None:
        flags = self.dataset(g, "flags", f"{key}/flags")
        if grid_shape is None:
            raise self.error(f"{key}/grid_shape", "missing attribute (required with flags)")
        if flags.shape != grid_shape:
            raise self.error(f"{key}/flags", f"shape {flags.shape} differs from grid_shape {grid_shape}")
        if flags.dtype != np.uint8:
            raise self.error(f"{key}/flags", f"expected dtype uint8, got {flags.dtype}")

    def _transform(self, g, key) -> tuple[float, float]:
        out = []
        for name, default in (("matrix_scale", 1.0), ("matrix_shift", 0.0)):
            v = _attr_to_python(self.attr(g, name, f"{key}/{name}", required=False))
            if v is None:
                v = default
            elif isinstance(v, bool) or not isinstance(v, (int, float)):
                raise self.error(f"{key}/{name}", f"expected a real number, got {v!r}")
            elif not math.isfinite(v):
                raise self.error(f"{key}/{name}", f"expected a finite number, got {v!r}")
            out.append(float(v))
        return out[0], out[1]
