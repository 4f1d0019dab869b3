"""HDF5 containers of linear systems ``A x = b``.

One file holds a sequence of systems, for instance one pressure system per
frame of a smoke simulation. Each system has a sparse matrix, ``k`` right-hand
sides, optionally ``k`` reference solutions, the grid the unknowns live on and
its cell flags. Identical matrices are stored once.

File layout (``format = "krylearn.linear_systems"``, ``format_version = 1``)::

    /                      attrs: format, format_version, generator,
                                  parameters (JSON string), seed (int, or an
                                  empty int64 attribute for "no seed"),
                                  krylearn_version, created (ISO 8601, UTC)
    /matrices/{j:06d}/     datasets indptr (n+1,), indices (nnz,), data (nnz,)
                           attr shape = (n, n)
    /systems/{i:06d}/      attr matrix = j; dataset b (k, n) chunked by row;
                           optional datasets x (k, n), flags (grid_shape, uint8);
                           optional attr grid_shape; optional float attrs
                           matrix_scale (default 1) and matrix_shift (default 0);
                           the system's own attrs

A system's matrix is ``A_i = matrix_scale * M_j + matrix_shift * I`` where
``M_j`` is the stored matrix (``A_i = M_j`` without the two attributes, as in
files written before they existed). A sequence of shifted or scaled copies of
one matrix (``A_t = L + c_t I``, Crank–Nicolson steps ``I + s_t L``) is so
stored with a single matrix; see :meth:`SystemsWriter.append` (``base=``).

Writers go through :func:`~krylearn.utils.atomic.atomic_path`, so a crash
never leaves a half-written file under the final name. Readers check the
schema and raise :class:`~krylearn.utils.errors.FormatError` naming the file
and the missing or malformed key.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import numbers
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import scipy.sparse
import torch

from ..utils.atomic import atomic_path
from ..utils.errors import FormatError
from ..utils.version import __version__

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "LinearSystem",
    "SystemsWriter",
    "SystemsFile",
    "SystemsDataset",
    "write_systems",
    "read_systems",
    "affine_matrix",
]

FORMAT_NAME = "krylearn.linear_systems"
FORMAT_VERSION = 1

#: attribute names of a system group that belong to the layout, not to ``attrs``
_RESERVED_ATTRS = frozenset({"matrix", "grid_shape", "matrix_scale", "matrix_shift"})
#: largest chunk along a right-hand side (elements); one row per chunk below it
_MAX_ROW_CHUNK = 1 << 19
_COMPRESSIONS = ("gzip", "lzf", None)


# ---------------------------------------------------------------------------
# the in-memory system
# ---------------------------------------------------------------------------
def _is_numeric(dtype: np.dtype) -> bool:
    return dtype.kind in "iufc"


def _as_csr(A) -> scipy.sparse.csr_matrix:
    if hasattr(A, "to_sparse") and not scipy.sparse.issparse(A) and not isinstance(A, torch.Tensor):
        A = A.to_sparse()  # a krylearn SparseMatrix / matrix-backed Operator
    if isinstance(A, torch.Tensor):
        A = A.to_dense() if A.layout != torch.strided else A
        A = A.detach().cpu().numpy()
    if type(A) is scipy.sparse.csr_matrix:
        pass  # keep the object (systems read from one stored matrix share it)
    elif scipy.sparse.issparse(A):
        A = scipy.sparse.csr_matrix(A)
    else:
        A = np.asarray(A)
        if A.ndim != 2:
            raise ValueError(f"A must be a 2-D matrix, got an array of shape {A.shape}")
        A = scipy.sparse.csr_matrix(A)
    if not _is_numeric(A.dtype):
        raise TypeError(f"A must have a numeric dtype, got {A.dtype}")
    if A.shape[0] != A.shape[1]:
        raise ValueError(f"A must be square, got shape {A.shape}")
    if not A.has_canonical_format:
        A = A.copy()
        A.sum_duplicates()  # sorts indices too; leaves the caller's matrix alone
    if not np.isfinite(A.data).all():
        raise ValueError("A contains NaN or Inf")
    return A


def _as_rows(name: str, v, n: int) -> np.ndarray:
    if isinstance(v, torch.Tensor):
        v = v.detach().cpu().numpy()
    v = np.asarray(v)
    if not _is_numeric(v.dtype):
        raise TypeError(f"{name} must have a numeric dtype, got {v.dtype}")
    if v.ndim == 1:
        v = v[None, :]
    if v.ndim != 2 or v.shape[1] != n:
        raise ValueError(f"{name} must have shape (n,) or (k, n) with n = {n}, got {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return np.ascontiguousarray(v)


def _check_attr_value(key: str, value):
    if isinstance(value, (str, bool, numbers.Number, np.generic)):
        if isinstance(value, np.generic) and not (_is_numeric(value.dtype) or value.dtype.kind in "bU"):
            raise TypeError(f"attrs[{key!r}] has unsupported dtype {value.dtype}")
        return value
    if isinstance(value, (list, tuple, np.ndarray)):
        arr = np.asarray(value)
        if not (_is_numeric(arr.dtype) or arr.dtype.kind == "b"):
            raise TypeError(f"attrs[{key!r}] must be a scalar, a string or a numeric array, got dtype {arr.dtype}")
        return arr
    raise TypeError(
        f"attrs[{key!r}] must be a scalar, a string or a numeric array, got {type(value).__name__}"
    )


def _check_real(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


def affine_matrix(M, scale: float = 1.0, shift: float = 0.0) -> scipy.sparse.csr_matrix:
    """``scale * M + shift * I`` as a new CSR matrix (``M`` is left alone).

    The same arithmetic (``scale * M.data``, then ``+ shift`` on the stored
    diagonal) is used by the writer's check, by :class:`SystemsFile` and by the
    sequence generators, so a matrix built on demand and the one read back from
    a file are bitwise equal.

    Parameters
    ----------
    M : scipy.sparse matrix, shape (n, n)
        Square; converted to canonical CSR. Rows without a stored diagonal get
        one when ``shift != 0``.
    scale, shift : float
        Finite reals.

    Returns
    -------
    scipy.sparse.csr_matrix, shape (n, n), dtype of ``M`` (float64 for integer ``M``)
        Shares ``indptr``/``indices`` with ``M`` when ``M`` stores every diagonal
        entry (the common case: no copy of the pattern).
    """
    scale = _check_real("scale", scale)
    shift = _check_real("shift", shift)
    M = _as_csr(M)
    if M.dtype.kind in "iub":
        M = M.astype(np.float64)
    if scale == 1.0 and shift == 0.0:
        return M
    n = M.shape[0]
    rows = np.repeat(np.arange(n), np.diff(M.indptr))
    diag_pos = np.nonzero(rows == M.indices)[0]
    data = M.data * M.dtype.type(scale)
    if shift != 0.0 and diag_pos.size != n:
        out = scipy.sparse.csr_matrix((data, M.indices, M.indptr), shape=M.shape)
        out = out + shift * scipy.sparse.identity(n, dtype=M.dtype, format="csr")
        out = scipy.sparse.csr_matrix(out)
        out.sort_indices()
        return out
    if shift != 0.0:
        data[diag_pos] += M.dtype.type(shift)
    out = scipy.sparse.csr_matrix((data, M.indices, M.indptr), shape=M.shape)
    out.has_canonical_format = True  # same (canonical) pattern as M
    return out


@dataclass
class LinearSystem:
    """One sparse system ``A x = b`` with ``k`` right-hand sides.

    Inputs are validated and normalized on construction (``ValueError`` /
    ``TypeError`` naming the field).

    Parameters
    ----------
    A : scipy.sparse.csr_matrix, shape (n, n)
        The matrix. Any scipy sparse matrix/array, dense 2-D array, torch
        tensor or object with ``to_sparse()`` (e.g. ``SparseMatrix``) is
        converted to CSR with sorted, unique column indices. Must be finite.
    b : numpy.ndarray, shape (k, n)
        Right-hand sides; a 1-D ``b`` becomes ``(1, n)``. Must be finite.
    x : numpy.ndarray, shape (k, n), optional
        Reference solutions, one per right-hand side (1-D accepted as for b).
    grid_shape : tuple of int, optional
        Shape of the grid the unknowns live on, e.g. ``(ny, nx)`` or
        ``(nz, ny, nx)``; ``prod(grid_shape) == n``. Taken from ``flags`` when
        only flags are given.
    flags : numpy.ndarray of uint8, shape grid_shape, optional
        Cell flags (0 fluid, 1 solid, 2 empty); integer or bool input in
        ``[0, 255]`` is cast to uint8.
    attrs : dict
        Per-system scalars, strings or small numeric arrays (e.g.
        ``frame=3``). The names ``"matrix"``, ``"grid_shape"``,
        ``"matrix_scale"`` and ``"matrix_shift"`` are reserved by the file layout.
    """

    A: scipy.sparse.csr_matrix
    b: np.ndarray
    x: np.ndarray | None = None
    grid_shape: tuple | None = None
    flags: np.ndarray | None = None
    attrs: dict = field(default_factory=dict)

    def __post_init__(self):
        self.A = _as_csr(self.A)
        n = self.A.shape[0]
        self.b = _as_rows("b", self.b, n)
        if self.x is not None:
            self.x = _as_rows("x", self.x, n)
            if self.x.shape != self.b.shape:
                raise ValueError(f"x must have the shape of b {self.b.shape}, got {self.x.shape}")
        if self.flags is not None:
            flags = np.asarray(self.flags)
            if flags.dtype.kind not in "biu":
                raise TypeError(f"flags must have an integer or bool dtype, got {flags.dtype}")
            if flags.size and (flags.min() < 0 or flags.max() > 255):
                raise ValueError("flags values must lie in [0, 255] (uint8)")
            self.flags = np.ascontiguousarray(flags, dtype=np.uint8)
            if self.grid_shape is None:
                self.grid_shape = self.flags.shape
        if self.grid_shape is not None:
            try:
                gs = tuple(int(s) for s in self.grid_shape)
            except (TypeError, ValueError):
                raise TypeError(f"grid_shape must be a tuple of ints, got {self.grid_shape!r}") from None
            if any(s <= 0 for s in gs) or any(s != t for s, t in zip(gs, self.grid_shape)):
                raise ValueError(f"grid_shape must hold positive integers, got {self.grid_shape!r}")
            if math.prod(gs) != n:
                raise ValueError(f"prod(grid_shape) must equal n = {n}, got grid_shape {gs}")
            self.grid_shape = gs
            if self.flags is not None and self.flags.shape != gs:
                raise ValueError(f"flags must have shape grid_shape {gs}, got {self.flags.shape}")
        if not isinstance(self.attrs, dict):
            raise TypeError(f"attrs must be a dict, got {type(self.attrs).__name__}")
        for key, value in self.attrs.items():
            if not isinstance(key, str) or not key or "/" in key:
                raise ValueError(f"attrs keys must be non-empty strings without '/', got {key!r}")
            if key in _RESERVED_ATTRS:
                raise ValueError(f"attrs[{key!r}] is reserved by the file layout; rename it")
            _check_attr_value(key, value)

    @property
    def n(self) -> int:
        """Number of unknowns."""
        return self.A.shape[0]

    @property
    def num_rhs(self) -> int:
        """Number of right-hand sides ``k``."""
        return self.b.shape[0]


# ---------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------
def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (Path, os.PathLike)):
        return os.fspath(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def _encode_parameters(parameters) -> str:
    if not isinstance(parameters, dict):
        raise TypeError(f"parameters must be a dict, got {type(parameters).__name__}")
    try:
        return json.dumps(parameters, sort_keys=True, default=_json_default, allow_nan=True)
    except (TypeError, ValueError) as e:
        raise TypeError(f"parameters must be JSON-serializable: {e}") from None




def _matrix_key(A: scipy.sparse.csr_matrix) -> str:
    h = hashlib.sha256()
    h.update(repr((A.shape, A.dtype.str)).encode())
    for arr in (A.indptr.astype(np.int64), A.indices.astype(np.int64), A.data):
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


class SystemsWriter:
    """Stream linear systems into an HDF5 file, atomically.

    The file is written under a temporary name beside ``path`` and renamed
    onto ``path`` by :meth:`close` (or a clean exit of the ``with`` block). An
    exception inside the block, or :meth:`abort`, deletes the temporary file
    and leaves ``path`` as it was. Identical matrices (same shape, dtype and
    CSR arrays) are stored once.

    Parameters
    ----------
    path : str or os.PathLike
        Destination file (conventionally ``.h5``). Its folder must exist.
    generator : str
        Name of what produced the systems (e.g. ``"smoke"``), for provenance.
    parameters : dict
        JSON-serializable generator parameters (numpy scalars/arrays and
        paths are converted), stored as a JSON string.
    seed : int or None
        Random seed used by the generator, or None.
    compression : {"gzip", "lzf", None}
        Filter for the chunked datasets (gzip level 4 with shuffle).

    Examples
    --------
    >>> with SystemsWriter("systems.h5", generator="smoke", parameters={"n": 64}, seed=0) as w:
    ...     for frame in range(10):
    ...         w.append(LinearSystem(A, b[frame], attrs={"frame": frame}))
    """

    def __init__(self, path, *, generator: str, parameters: dict, seed: int | None, compression="gzip"):
        if not isinstance(generator, str) or not generator:
            raise TypeError(f"generator must be a non-empty str, got {generator!r}")
        params_json = _encode_parameters(parameters)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
            raise TypeError(f"seed must be an int or None, got {seed!r}")
        if compression not in _COMPRESSIONS:
            raise ValueError(f"compression must be one of {_COMPRESSIONS}, got {compression!r}")
        self.path = path
        self._compression = compression
        self._matrix_index: dict[str, int] = {}
        self._last_base = None
        self._num_systems = 0
        self._atomic = atomic_path(path)
        tmp = self._atomic.__enter__()
        try:
            self._h5 = h5py.File(tmp, "w")
            root = self._h5.attrs
            root["format"] = FORMAT_NAME
            root["format_version"] = np.int64(FORMAT_VERSION)
            root["generator"] = generator
            root["parameters"] = params_json
            root["seed"] = h5py.Empty("i8") if seed is None else np.int64(seed)
            root["krylearn_version"] = __version__
            root["created"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
            self._matrices = self._h5.create_group("matrices")
            self._systems = self._h5.create_group("systems")
        except BaseException as e:
            self._finish(type(e), e, e.__traceback__)
            raise
        self._open = True

    # -------------------------------------------------------------- helpers
    def _dataset(self, group, name, data, chunks):
        kwargs = {}
        if data.size > 0:
            kwargs["chunks"] = chunks
            if self._compression == "gzip":
                kwargs.update(compression="gzip", compression_opts=4, shuffle=True)
            elif self._compression == "lzf":
                kwargs.update(compression="lzf", shuffle=True)
        return group.create_dataset(name, data=data, **kwargs)

    def _store_matrix(self, A: scipy.sparse.csr_matrix) -> int:
        key = _matrix_key(A)
        j = self._matrix_index.get(key)
        if j is not None:
            return j
        j = len(self._matrix_index)
        g = self._matrices.create_group(f"{j:06d}")
        index_dtype = np.int32 if max(A.shape[0], A.nnz) < 2**31 - 1 else np.int64
        self._dataset(g, "indptr", A.indptr.astype(index_dtype, copy=False), True)
        self._dataset(g, "indices", A.indices.astype(index_dtype, copy=False), True)
        self._dataset(g, "data", A.data, True)
        g.attrs["shape"] = np.asarray(A.shape, dtype=np.int64)
        self._matrix_index[key] = j
        return j

    def _finish(self, exc_type, exc, tb) -> bool:
        self._open = False
        h5 = getattr(self, "_h5", None)
        if h5 is not None:
            try:
                h5.close()
            except Exception:
                if exc_type is None:
                    raise
        atomic, self._atomic = self._atomic, None
        if atomic is None:
            return False
        if exc_type is None:
            atomic.__exit__(None, None, None)
            return False
        return bool(atomic.__exit__(exc_type, exc, tb))

    # --------------------------------------------------------------- public
    @property
    def num_systems(self) -> int:
        """Number of systems appended so far."""
        return self._num_systems

    @property
    def num_matrices(self) -> int:
        """Number of distinct matrices stored so far."""
        return len(self._matrix_index)

    def append(self, system: LinearSystem, *, base=None, scale: float = 1.0, shift: float = 0.0) -> int:
        """Write one system; returns its index ``i`` (group ``systems/{i:06d}``).

        Parameters
        ----------
        system : LinearSystem
        base : scipy sparse matrix, shape (n, n), optional
            Store ``system.A`` as ``scale * base + shift * I``: ``base`` is stored
            (once for all systems that share it) and the system gets the
            attributes ``matrix_scale`` and ``matrix_shift``. ``system.A`` must
            equal :func:`affine_matrix` ``(base, scale, shift)`` (checked to
            ``1e-12`` relative; ``ValueError`` otherwise). Without ``base``,
            ``system.A`` itself is stored and ``scale``/``shift`` must be left at
            their defaults. Passing the same ``base`` object again skips its
            re-hashing (do not modify it in place between appends).
        scale, shift : float
            Finite reals (see ``base``).
        """
        if not self._open:
            raise ValueError("append() on a closed SystemsWriter")
        if not isinstance(system, LinearSystem):
            raise TypeError(f"system must be a LinearSystem, got {type(system).__name__}")
        scale = _check_real("scale", scale)
        shift = _check_real("shift", shift)
        if base is None:
            if scale != 1.0 or shift != 0.0:
                raise ValueError("scale and shift need base= (the stored matrix M of A = scale * M + shift * I)")
            j = self._store_matrix(system.A)
        else:
            cached = self._last_base
            if cached is not None and cached[0] is base:
                base_csr, j_base = cached[1], cached[2]
            else:
                base_csr, j_base = _as_csr(base), None
            if base_csr.shape != system.A.shape:
                raise ValueError(f"base must have the shape of system.A {system.A.shape}, got {base_csr.shape}")
            expect = affine_matrix(base_csr, scale, shift)
            diff = abs(expect - system.A)
            err = diff.max() if diff.nnz else 0.0
            ref = abs(expect).max() if expect.nnz else 0.0
            if err > 1e-12 * max(ref, 1e-300):
                raise ValueError(
                    f"system.A differs from scale * base + shift * I (scale={scale!r}, shift={shift!r}): "
                    f"max abs difference {err:.3g}"
                )
            j = self._store_matrix(base_csr) if j_base is None else j_base
            self._last_base = (base, base_csr, j)  # the same base object again: no re-hash
        i = self._num_systems
        g = self._systems.create_group(f"{i:06d}")
        g.attrs["matrix"] = np.int64(j)
        if base is not None:
            g.attrs["matrix_scale"] = np.float64(scale)
            g.attrs["matrix_shift"] = np.float64(shift)
        row_chunk = (1, max(1, min(system.n, _MAX_ROW_CHUNK)))
        self._dataset(g, "b", system.b, row_chunk)
        if system.x is not None:
            self._dataset(g, "x", system.x, row_chunk)
        if system.grid_shape is not None:
            g.attrs["grid_shape"] = np.asarray(system.grid_shape, dtype=np.int64)
        if system.flags is not None:
            self._dataset(g, "flags", system.flags, True)
        for key, value in system.attrs.items():
            g.attrs[key] = _check_attr_value(key, value)
        self._num_systems += 1
        return i

    def close(self) -> None:
        """Finish the file and move it onto ``path``. Idempotent."""
        if self._atomic is not None:
            self._finish(None, None, None)

    def abort(self) -> None:
        """Discard everything written; ``path`` is left as it was. Idempotent."""
        if self._atomic is not None:
            err = RuntimeError("SystemsWriter aborted")
            self._finish(RuntimeError, err, None)

    def __enter__(self) -> "SystemsWriter":
        return self

    def __exit__(self, exc_type, exc, tb):
        if self._atomic is None:
            return False
        if exc_type is None:
            self.close()
            return False
        self._finish(exc_type, exc, tb)
        return False

    def __del__(self):
        if getattr(self, "_atomic", None) is not None:
            warnings.warn(
                f"SystemsWriter for {self.path!r} was neither closed nor used as a context manager; "
                "discarding the unfinished file",
                ResourceWarning,
                stacklevel=2,
            )
            try:
                self.abort()
            except Exception:
                pass


def write_systems(path, systems, *, generator: str, parameters: dict, seed: int | None = None, compression="gzip") -> None:
    """Write an iterable of :class:`LinearSystem` to ``path`` (atomically).

    See :class:`SystemsWriter` for the arguments.
    """
    with SystemsWriter(path, generator=generator, parameters=parameters, seed=seed, compression=compression) as w:
        for s in systems:
            w.append(s)


# ---------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------
def _attr_to_python(value):
    if isinstance(value, h5py.Empty):
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    return value


def _check_openable(path: str) -> None:
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path!r}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"expected a file, got a folder: {path!r}")


def _open_h5(path: str) -> h5py.File:
    _check_openable(path)
    try:
        return h5py.File(path, "r")
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except OSError as e:
        raise FormatError(f"not a readable HDF5 file (corrupt or truncated?): {e}", path=path) from None


class SystemsFile:
    """Read a linear-systems HDF5 file written by :class:`SystemsWriter`.

    Opening checks the whole schema from metadata only (attributes, keys,
    shapes, dtypes); array contents (CSR consistency, NaN/Inf) are checked
    when a matrix or right-hand side is first read, or all at once by
    :meth:`verify` / ``verify=True``. Every failure raises
    :class:`FormatError` naming the file and the key.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    verify : bool
        Also check every array's contents on open (reads the whole file).

    Attributes
    ----------
    path : str
    attrs : dict
        ``format``, ``format_version``, ``generator``, ``parameters`` (decoded
        JSON), ``seed`` (int or None), ``version`` (krylearn version that
        wrote the file, or None), ``created`` (ISO string or None).

    Notes
    -----
    ``f[i]`` returns a :class:`LinearSystem`; systems that share a stored
    matrix and are read one after another share the same ``A`` object.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    FormatError
        If the file is not HDF5, is truncated, or breaks the schema.
    """

    def __init__(self, path, *, verify: bool = False):
        self.path = os.fspath(path)
        self._h5 = _open_h5(self.path)
        self._checked_matrices: set[int] = set()
        self._cached: tuple[int, scipy.sparse.csr_matrix] | None = None
        try:
            self._read_root()
            self._read_layout()
            if verify:
                self.verify()
        except (FileNotFoundError, PermissionError, FormatError):
            self.close()
            raise
        except (OSError, RuntimeError, KeyError, ValueError, TypeError) as e:
            # h5py raises these from the depths of a damaged file
            self.close()
            raise FormatError(f"unreadable HDF5 structure (corrupt or truncated?): {e}", path=self.path) from None
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------- errors
    def _error(self, key, message) -> FormatError:
        return FormatError(message, path=self.path, key=key)

    def _get(self, group, name, kind, key):
        try:
            obj = group.get(name)
        except (OSError, RuntimeError, KeyError, ValueError) as e:
            raise self._error(key, f"unreadable ({e})") from None
        if obj is None:
            raise self._error(key, f"missing {'group' if kind is h5py.Group else 'dataset'}")
        if not isinstance(obj, kind):
            raise self._error(key, f"expected an HDF5 {'group' if kind is h5py.Group else 'dataset'}")
        return obj

    def _attr(self, obj, name, key, required=True):
        try:
            if name not in obj.attrs:
                if required:
                    raise self._error(key, "missing attribute")
                return None
            return obj.attrs[name]
        except FormatError:
            raise
        except (OSError, RuntimeError, KeyError, ValueError, TypeError) as e:
            raise self._error(key, f"unreadable attribute ({e})") from None

    def _read(self, dset, key, sel=()):
        try:
            return dset[sel]
        except (OSError, RuntimeError, KeyError, ValueError) as e:
            raise self._error(key, f"unreadable data (corrupt or truncated?): {e}") from None

    # ------------------------------------------------------------- schema
    def _read_root(self):
        h5 = self._h5
        fmt = _attr_to_python(self._attr(h5, "format", "format"))
        if fmt != FORMAT_NAME:
            raise self._error("format", f"expected {FORMAT_NAME!r}, got {fmt!r}")
        version = _attr_to_python(self._attr(h5, "format_version", "format_version"))
        if isinstance(version, bool) or not isinstance(version, int):
            raise self._error("format_version", f"expected an integer, got {version!r}")
        if version > FORMAT_VERSION:
            raise self._error(
                "format_version",
                f"file has format version {version}, this krylearn reads up to {FORMAT_VERSION}; upgrade krylearn",
            )
        if version != FORMAT_VERSION:
            raise self._error("format_version", f"unsupported format version {version}")
        generator = _attr_to_python(self._attr(h5, "generator", "generator"))
        if not isinstance(generator, str):
            raise self._error("generator", f"expected a string, got {generator!r}")
        params = _attr_to_python(self._attr(h5, "parameters", "parameters"))
        try:
            params = json.loads(params)
        except (TypeError, ValueError) as e:
            raise self._error("parameters", f"not a JSON string ({e})") from None
        seed = _attr_to_python(self._attr(h5, "seed", "seed", required=False))
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise self._error("seed", f"expected an integer or an empty attribute, got {seed!r}")
        self.attrs = {
            "format": fmt,
            "format_version": version,
            "generator": generator,
            "parameters": params,
            "seed": seed,
            "version": _attr_to_python(self._attr(h5, "krylearn_version", "krylearn_version", required=False)),
            "created": _attr_to_python(self._attr(h5, "created", "created", required=False)),
        }

    def _read_layout(self):
        matrices = self._get(self._h5, "matrices", h5py.Group, "matrices")
        systems = self._get(self._h5, "systems", h5py.Group, "systems")
        # matrices: name -> n
        self._matrix_n: dict[int, int] = {}
        for name in matrices:
            key = f"matrices/{name}"
            if not (len(name) == 6 and name.isdigit()):
                raise self._error(key, "unexpected entry (matrix groups are named by 6-digit indices)")
            g = self._get(matrices, name, h5py.Group, key)
            shape = self._attr(g, "shape", f"{key}/shape")
            shape = np.asarray(shape)
            if shape.shape != (2,) or shape.dtype.kind not in "iu" or (shape < 0).any():
                raise self._error(f"{key}/shape", f"expected two non-negative integers, got {shape!r}")
            m, n = int(shape[0]), int(shape[1])
            if m != n:
                raise self._error(f"{key}/shape", f"matrix must be square, got ({m}, {n})")
            arrays = {}
            for part in ("indptr", "indices", "data"):
                d = self._get(g, part, h5py.Dataset, f"{key}/{part}")
                if d.ndim != 1:
                    raise self._error(f"{key}/{part}", f"expected a 1-D array, got shape {d.shape}")
                arrays[part] = d
            for part in ("indptr", "indices"):
                if arrays[part].dtype.kind not in "iu":
                    raise self._error(f"{key}/{part}", f"expected an integer dtype, got {arrays[part].dtype}")
            if not _is_numeric(arrays["data"].dtype):
                raise self._error(f"{key}/data", f"expected a numeric dtype, got {arrays['data'].dtype}")
            if arrays["indptr"].shape[0] != n + 1:
                raise self._error(
                    f"{key}/indptr", f"length {arrays['indptr'].shape[0]} != n + 1 = {n + 1} (shape {shape.tolist()})"
                )
            if arrays["indices"].shape != arrays["data"].shape:
                raise self._error(
                    f"{key}/indices",
                    f"length {arrays['indices'].shape[0]} differs from data length {arrays['data'].shape[0]}",
                )
            self._matrix_n[int(name)] = n

        names = list(systems)
        expected = [f"{i:06d}" for i in range(len(names))]
        if sorted(names) != expected:
            extra = sorted(set(names) - set(expected))
            missing = sorted(set(expected) - set(names))
            bad = f"systems/{(missing or extra)[0]}"
            raise self._error(bad, "missing" if missing else "unexpected entry (systems must be numbered 000000, 000001, ...)")
        self._sys: list[dict] = []
        for name in expected:
            key = f"systems/{name}"
            g = self._get(systems, name, h5py.Group, key)
            j = _attr_to_python(self._attr(g, "matrix", f"{key}/matrix"))
            if isinstance(j, bool) or not isinstance(j, int):
                raise self._error(f"{key}/matrix", f"expected an integer, got {j!r}")
            if j not in self._matrix_n:
                raise self._error(f"{key}/matrix", f"refers to matrices/{j:06d}, which does not exist")
            n = self._matrix_n[j]
            b = self._get(g, "b", h5py.Dataset, f"{key}/b")
            if b.ndim != 2 or b.shape[1] != n:
                raise self._error(f"{key}/b", f"expected shape (k, {n}), got {b.shape}")
            if not _is_numeric(b.dtype):
                raise self._error(f"{key}/b", f"expected a numeric dtype, got {b.dtype}")
            has_x = "x" in g
            if has_x:
                x = self._get(g, "x", h5py.Dataset, f"{key}/x")
                if x.shape != b.shape:
                    raise self._error(f"{key}/x", f"shape {x.shape} differs from b's {b.shape}")
                if not _is_numeric(x.dtype):
                    raise self._error(f"{key}/x", f"expected a numeric dtype, got {x.dtype}")
            grid_shape = self._attr(g, "grid_shape", f"{key}/grid_shape", required=False)
            if grid_shape is not None:
                gs = np.asarray(grid_shape)
                if gs.ndim != 1 or gs.size == 0 or gs.dtype.kind not in "iu" or (gs <= 0).any():
                    raise self._error(f"{key}/grid_shape", f"expected positive integers, got {grid_shape!r}")
                grid_shape = tuple(int(s) for s in gs)
                if math.prod(grid_shape) != n:
                    raise self._error(f"{key}/grid_shape", f"prod{grid_shape} != n = {n}")
            has_flags = "flags" in g
            if has_flags:
                flags = self._get(g, "flags", h5py.Dataset, f"{key}/flags")
                if grid_shape is None:
                    raise self._error(f"{key}/grid_shape", "missing attribute (required with flags)")
                if flags.shape != grid_shape:
                    raise self._error(f"{key}/flags", f"shape {flags.shape} differs from grid_shape {grid_shape}")
                if flags.dtype != np.uint8:
                    raise self._error(f"{key}/flags", f"expected dtype uint8, got {flags.dtype}")
            transform = []
            for name_, default in (("matrix_scale", 1.0), ("matrix_shift", 0.0)):
                v = _attr_to_python(self._attr(g, name_, f"{key}/{name_}", required=False))
                if v is None:
                    v = default
                elif isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise self._error(f"{key}/{name_}", f"expected a real number, got {v!r}")
                elif not math.isfinite(v):
                    raise self._error(f"{key}/{name_}", f"expected a finite number, got {v!r}")
                transform.append(float(v))
            self._sys.append(
                {"matrix": j, "n": n, "k": int(b.shape[0]), "has_x": has_x, "has_flags": has_flags,
                 "grid_shape": grid_shape, "scale": transform[0], "shift": transform[1]}
            )

    # ------------------------------------------------------------ content
    def _load_matrix(self, j: int) -> scipy.sparse.csr_matrix:
        if self._cached is not None and self._cached[0] == j:
            return self._cached[1]
        key = f"matrices/{j:06d}"
        g = self._h5["matrices"][f"{j:06d}"]
        n = self._matrix_n[j]
        indptr = self._read(g["indptr"], f"{key}/indptr")
        indices = self._read(g["indices"], f"{key}/indices")
        data = self._read(g["data"], f"{key}/data")
        if j not in self._checked_matrices:
            nnz = data.shape[0]
            if indptr[0] != 0:
                raise self._error(f"{key}/indptr", f"must start at 0, starts at {indptr[0]}")
            if indptr[-1] != nnz:
                raise self._error(f"{key}/indptr", f"last entry {indptr[-1]} != nnz = {nnz}")
            if (np.diff(indptr) < 0).any():
                raise self._error(f"{key}/indptr", "not monotonically non-decreasing")
            if nnz and (indices.min() < 0 or indices.max() >= n):
                raise self._error(f"{key}/indices", f"column indices outside [0, {n})")
            if not np.isfinite(data).all():
                raise self._error(f"{key}/data", "contains NaN or Inf")
            self._checked_matrices.add(j)
        A = scipy.sparse.csr_matrix((data, indices, indptr), shape=(n, n))
        self._cached = (j, A)
        return A

    def _check_index(self, i) -> int:
        if isinstance(i, bool) or not isinstance(i, numbers.Integral):
            raise TypeError(f"system index must be an int, got {type(i).__name__}")
        i = int(i)
        if i < 0:
            i += len(self._sys)
        if not 0 <= i < len(self._sys):
            raise IndexError(f"system index {i} out of range for {len(self._sys)} systems in {self.path!r}")
        return i

    def _rows(self, i: int, name: str, rows) -> np.ndarray:
        key = f"systems/{i:06d}/{name}"
        v = self._read(self._h5["systems"][f"{i:06d}"][name], key, rows)
        if not np.isfinite(v).all():
            raise self._error(key, "contains NaN or Inf")
        return v

    # ------------------------------------------------------------- public
    def __len__(self) -> int:
        return len(self._sys)

    def rhs_counts(self) -> np.ndarray:
        """Number of right-hand sides of every system, shape (len(self),), int64."""
        return np.array([s["k"] for s in self._sys], dtype=np.int64)

    def has_solutions(self, i: int) -> bool:
        """Whether system ``i`` stores reference solutions ``x``."""
        return self._sys[self._check_index(i)]["has_x"]

    def matrix_index(self, i: int) -> int:
        """Index ``j`` of the stored matrix (``matrices/{j:06d}``) of system ``i``."""
        return self._sys[self._check_index(i)]["matrix"]

    def num_matrices(self) -> int:
        """Number of distinct stored matrices."""
        return len(self._matrix_n)

    def matrix_transform(self, i: int) -> tuple[float, float]:
        """``(scale, shift)`` of system ``i``: ``A_i = scale * M_j + shift * I`` (``(1.0, 0.0)`` if not stored)."""
        meta = self._sys[self._check_index(i)]
        return meta["scale"], meta["shift"]

    def stored_matrix(self, j: int) -> scipy.sparse.csr_matrix:
        """The stored matrix ``M_j`` (``matrices/{j:06d}``), checked on first read."""
        if isinstance(j, bool) or not isinstance(j, numbers.Integral) or int(j) not in self._matrix_n:
            raise IndexError(f"no stored matrix {j!r} in {self.path!r} (it holds {len(self._matrix_n)})")
        return self._load_matrix(int(j))

    def matrix(self, i: int) -> scipy.sparse.csr_matrix:
        """The matrix ``A_i = scale * M_j + shift * I`` of system ``i`` (checked on first read)."""
        meta = self._sys[self._check_index(i)]
        M = self._load_matrix(meta["matrix"])
        return affine_matrix(M, meta["scale"], meta["shift"])

    def system_attrs(self, i: int) -> dict:
        """The system's own attributes (what ``self[i].attrs`` holds), without reading any array."""
        i = self._check_index(i)
        key = f"systems/{i:06d}"
        try:
            g = self._h5["systems"][f"{i:06d}"]
            return {k: _attr_to_python(v) for k, v in g.attrs.items() if k not in _RESERVED_ATTRS}
        except (OSError, RuntimeError, KeyError, ValueError, TypeError) as e:
            raise self._error(key, f"unreadable attributes ({e})") from None

    def rhs(self, i: int, rows=slice(None)) -> np.ndarray:
        """Right-hand sides ``b[rows]`` of system ``i`` (``(k, n)`` for the default)."""
        return self._rows(self._check_index(i), "b", rows)

    def solution(self, i: int, rows=slice(None)) -> np.ndarray | None:
        """Reference solutions ``x[rows]`` of system ``i``, or None if not stored."""
        i = self._check_index(i)
        return self._rows(i, "x", rows) if self._sys[i]["has_x"] else None

    def __getitem__(self, i) -> LinearSystem:
        i = self._check_index(i)
        meta = self._sys[i]
        g = self._h5["systems"][f"{i:06d}"]
        key = f"systems/{i:06d}"
        A = affine_matrix(self._load_matrix(meta["matrix"]), meta["scale"], meta["shift"])
        b = self._rows(i, "b", ())
        x = self._rows(i, "x", ()) if meta["has_x"] else None
        flags = self._read(g["flags"], f"{key}/flags") if meta["has_flags"] else None
        try:
            attrs = {k: _attr_to_python(v) for k, v in g.attrs.items() if k not in _RESERVED_ATTRS}
        except (OSError, RuntimeError, KeyError, ValueError, TypeError) as e:
            raise self._error(key, f"unreadable attributes ({e})") from None
        try:
            return LinearSystem(A=A, b=b, x=x, grid_shape=meta["grid_shape"], flags=flags, attrs=attrs)
        except (TypeError, ValueError) as e:
            raise self._error(key, str(e)) from None

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def verify(self) -> None:
        """Read and check every array in the file; raises :class:`FormatError`."""
        for j in sorted(self._matrix_n):
            self._load_matrix(j)
        for i in range(len(self)):
            for name in ("b", "x") if self._sys[i]["has_x"] else ("b",):
                self._rows(i, name, ())

    def close(self) -> None:
        """Close the file. Idempotent."""
        h5 = getattr(self, "_h5", None)
        if h5 is not None:
            try:
                h5.close()
            finally:
                self._h5 = None
                self._cached = None

    def __enter__(self) -> "SystemsFile":
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    def __repr__(self) -> str:
        return f"<SystemsFile {self.path!r}: {len(self._sys)} systems, {len(self._matrix_n)} matrices>"


def read_systems(path) -> list[LinearSystem]:
    """Read every system of a file written by :class:`SystemsWriter`.

    Checks the schema and every array (see :class:`SystemsFile`).
    """
    with SystemsFile(path) as f:
        return list(f)


# ---------------------------------------------------------------------------
# torch dataset
# ---------------------------------------------------------------------------
class SystemsDataset(torch.utils.data.Dataset):
    """One item per right-hand side over all systems of a file.

    The ``(system, row)`` index is built at construction from dataset shapes
    only; the HDF5 file is opened lazily in each process (the process id is
    tracked), so the dataset works with ``DataLoader(num_workers > 0)`` under
    fork and spawn and never pickles an open handle.

    Parameters
    ----------
    path : str or os.PathLike
        A file written by :class:`SystemsWriter`.
    dtype : torch.dtype
        dtype of the returned tensors (default float32).
    normalize : bool
        If True, divide ``b`` (and ``x``, so that ``A x = b`` still holds) by
        ``||b||_2`` and add ``scale = ||b||_2`` (float) to the item; a zero
        ``b`` is left as is with scale 1.

    Items
    -----
    ``dict(b=Tensor (n,), system=int, index=int[, x=Tensor (n,)][, scale=float])``
    where ``system`` is the system's index in the file and ``index`` the row
    of its ``b``. ``x`` is present when the system stores solutions.
    """

    def __init__(self, path, dtype: torch.dtype = torch.float32, normalize: bool = False):
        if not isinstance(dtype, torch.dtype):
            raise TypeError(f"dtype must be a torch.dtype, got {dtype!r}")
        self.path = os.fspath(path)
        self.dtype = dtype
        self.normalize = bool(normalize)
        with SystemsFile(self.path) as f:
            counts = f.rhs_counts()
            self.attrs = f.attrs
            self._has_x = np.array([f.has_solutions(i) for i in range(len(f))], dtype=bool)
        self._offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._file: SystemsFile | None = None
        self._pid: int | None = None

    @property
    def num_systems(self) -> int:
        """Number of systems in the file."""
        return len(self._offsets) - 1

    def locate(self, j: int) -> tuple[int, int]:
        """``(system, row)`` of item ``j``."""
        n = len(self)
        if isinstance(j, bool) or not isinstance(j, numbers.Integral):
            raise TypeError(f"item index must be an int, got {type(j).__name__}")
        j = int(j) + (n if j < 0 else 0)
        if not 0 <= j < n:
            raise IndexError(f"item index {j} out of range for {n} right-hand sides in {self.path!r}")
        i = int(np.searchsorted(self._offsets, j, side="right")) - 1
        return i, j - int(self._offsets[i])

    def _handle(self) -> SystemsFile:
        pid = os.getpid()
        if self._file is None or self._pid != pid:
            # A handle inherited through fork belongs to the parent: drop it, open our own.
            self._file = SystemsFile(self.path)
            self._pid = pid
        return self._file

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def __getitem__(self, j) -> dict:
        i, row = self.locate(j)
        f = self._handle()
        b = f.rhs(i, row)
        x = f.solution(i, row) if self._has_x[i] else None
        item = {"system": i, "index": row}
        if self.normalize:
            scale = float(np.linalg.norm(b))
            if scale == 0.0:
                scale = 1.0
            b = b / scale
            if x is not None:
                x = x / scale
            item["scale"] = scale
        item["b"] = torch.from_numpy(np.ascontiguousarray(b)).to(self.dtype)
        if x is not None:
            item["x"] = torch.from_numpy(np.ascontiguousarray(x)).to(self.dtype)
        return item

    def system(self, i: int) -> LinearSystem:
        """The whole system ``i`` (matrix, all right-hand sides, flags, attrs)."""
        return self._handle()[i]

    def close(self) -> None:
        """Close this process's handle (reopened on the next access)."""
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None
        self._pid = None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_file"] = None
        state["_pid"] = None
        return state
