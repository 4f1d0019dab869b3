"""Writing ``krylearn.linear_systems`` HDF5 files: :class:`SystemsWriter`, :func:`write_systems`."""

from __future__ import annotations

import datetime
import hashlib
import json
import numbers
import os
import secrets
import warnings
from pathlib import Path

import h5py
import numpy as np
import scipy.sparse

from ...utils.atomic import atomic_path
from ...utils.version import __version__
from .schema import (
    _COMPRESSIONS,
    _MAX_ROW_CHUNK,
    FORMAT_NAME,
    FORMAT_VERSION,
    LinearSystem,
    _as_csr,
    _check_attr_value,
    _check_real,
    affine_matrix,
)

__all__ = ["SystemsWriter", "write_systems"]


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
            root["file_id"] = secrets.token_hex(16)  # tells this file from any later rewrite of the path
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

