"""Reading ``krylearn.linear_systems`` HDF5 files: :class:`SystemsFile`, :func:`read_systems`, :func:`read_system`.

System indices are checked against the file (:func:`check_index`): an
index outside the file raises ``IndexError`` naming the valid range, and a
file with no systems says so instead of failing on arithmetic.
"""

from __future__ import annotations

import hashlib
import numbers
import os

import numpy as np
import scipy.sparse

from ...utils.errors import FileChangedError, FormatError
from ..fileio import open_h5
from .layout import H5_ERRORS, LayoutChecker, SystemMeta
from .schema import _RESERVED_ATTRS, LinearSystem, _attr_to_python, affine_matrix

__all__ = ["SystemsFile", "check_index", "read_system", "read_systems"]


def check_index(i, count: int, *, what: str = "system", plural: str | None = None, path: str | None = None,
                allow_negative: bool = True) -> int:
    """``i`` as an index into ``count`` items, or an error naming the valid range.

    Parameters
    ----------
    i : int
        The requested index.
    count : int
        Number of items.
    what, plural : str
        Noun for messages (``"system"``) and its plural (default ``what + "s"``).
    path : str, optional
        The file, for messages.
    allow_negative : bool
        Accept ``-count <= i < 0`` as counting from the end (Python's rule).
        False: only ``0 <= i < count``.

    Returns
    -------
    int
        In ``[0, count)``.

    Raises
    ------
    TypeError
        ``i`` is not an int.
    IndexError
        ``i`` is out of range (the message names the valid range), or there
        are no items at all.
    """
    if isinstance(i, bool) or not isinstance(i, numbers.Integral):
        raise TypeError(f"{what} index must be an int, got {type(i).__name__}")
    i = int(i)
    where = f"{path!r}" if path is not None else "this collection"
    plural = plural or f"{what}s"
    if count == 0:
        raise IndexError(f"{what} index {i} requested, but {where} holds no {plural}")
    j = i + count if (i < 0 and allow_negative) else i
    if not 0 <= j < count:
        valid = f"0 to {count - 1}" + (f", or -{count} to -1 counting from the end" if allow_negative else "")
        raise IndexError(f"{what} index {i} is out of range: {where} holds {count} "
                         f"{what if count == 1 else plural} (valid indices: {valid})")
    return j


class SystemsFile:
    """Read a linear-systems HDF5 file written by :class:`SystemsWriter`.

    Opening checks the whole schema from metadata only (attributes, keys,
    shapes, dtypes, and that every dataset stores the data it declares);
    array contents (CSR consistency, NaN/Inf) are checked when a matrix or
    right-hand side is first read, or all at once by :meth:`verify` /
    ``verify=True``. Every failure raises :class:`FormatError` naming the
    file and the key.

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
        wrote the file, or None), ``created`` (ISO string or None),
        ``file_id`` (random hex string unique to this file, or None for files
        written before krylearn recorded it).

    Notes
    -----
    ``f[i]`` returns a :class:`LinearSystem`; negative ``i`` counts from the
    end as for a list. Systems that share a stored matrix and are read one
    after another share the same ``A`` object. :meth:`system` reads one
    system with a stricter index check.

    Raises
    ------
    FileNotFoundError, IsADirectoryError, PermissionError
        If ``path`` does not exist, is a folder or cannot be read.
    FormatError
        If the file is not HDF5, is truncated, or breaks the schema.
    """

    def __init__(self, path, *, verify: bool = False):
        self.path = os.fspath(path)
        self._h5 = open_h5(self.path)
        self._layout = LayoutChecker(self._h5, self.path)
        self._checked_matrices: set[int] = set()
        self._cached: tuple[int, scipy.sparse.csr_matrix] | None = None
        try:
            self.attrs = self._layout.root_attrs()
            self._matrix_n = self._layout.matrices()
            self._sys: list[SystemMeta] = self._layout.systems(self._matrix_n)
            if verify:
                self.verify()
        except (FileNotFoundError, PermissionError, FormatError):
            self.close()
            raise
        except H5_ERRORS as e:
            self.close()
            raise FormatError(f"unreadable HDF5 structure (corrupt or truncated?): {e}", path=self.path) from None
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------ content
    def _load_matrix(self, j: int) -> scipy.sparse.csr_matrix:
        if self._cached is not None and self._cached[0] == j:
            return self._cached[1]
        key = f"matrices/{j:06d}"
        g = self._h5["matrices"][f"{j:06d}"]
        n = self._matrix_n[j]
        indptr = self._layout.read(g["indptr"], f"{key}/indptr")
        indices = self._layout.read(g["indices"], f"{key}/indices")
        data = self._layout.read(g["data"], f"{key}/data")
        if j not in self._checked_matrices:
            self._check_csr(key, n, indptr, indices, data)
            self._checked_matrices.add(j)
        A = scipy.sparse.csr_matrix((data, indices, indptr), shape=(n, n))
        self._cached = (j, A)
        return A

    def _check_csr(self, key, n, indptr, indices, data) -> None:
        error = self._layout.error
        nnz = data.shape[0]
        if indptr[0] != 0:
            raise error(f"{key}/indptr", f"must start at 0, starts at {indptr[0]}")
        if indptr[-1] != nnz:
            raise error(f"{key}/indptr", f"last entry {indptr[-1]} != nnz = {nnz}")
        if (np.diff(indptr) < 0).any():
            raise error(f"{key}/indptr", "not monotonically non-decreasing")
        if nnz and (indices.min() < 0 or indices.max() >= n):
            raise error(f"{key}/indices", f"column indices outside [0, {n})")
        if not np.isfinite(data).all():
            raise error(f"{key}/data", "contains NaN or Inf")

    def _rows(self, i: int, name: str, rows) -> np.ndarray:
        key = f"systems/{i:06d}/{name}"
        v = self._layout.read(self._h5["systems"][f"{i:06d}"][name], key, rows)
        if not np.isfinite(v).all():
            raise self._layout.error(key, "contains NaN or Inf")
        return v

    def _own_attrs(self, i: int) -> dict:
        key = f"systems/{i:06d}"
        try:
            g = self._h5["systems"][f"{i:06d}"]
            return {k: _attr_to_python(v) for k, v in g.attrs.items() if k not in _RESERVED_ATTRS}
        except H5_ERRORS as e:
            raise self._layout.error(key, f"unreadable attributes ({e})") from None

    # ------------------------------------------------------------- public
    def __len__(self) -> int:
        return len(self._sys)

    def check_index(self, i, *, allow_negative: bool = True) -> int:
        """System index ``i`` as an int in ``[0, len(self))`` (see the module function :func:`check_index`)."""
        return check_index(i, len(self._sys), what="system", path=self.path, allow_negative=allow_negative)

    def rhs_counts(self) -> np.ndarray:
        """Number of right-hand sides of every system, shape (len(self),), int64."""
        return np.array([s.k for s in self._sys], dtype=np.int64)

    def has_solutions(self, i: int) -> bool:
        """Whether system ``i`` stores reference solutions ``x``."""
        return self._sys[self.check_index(i)].has_x

    def matrix_index(self, i: int) -> int:
        """Index ``j`` of the stored matrix (``matrices/{j:06d}``) of system ``i``."""
        return self._sys[self.check_index(i)].matrix

    def num_matrices(self) -> int:
        """Number of distinct stored matrices."""
        return len(self._matrix_n)

    def matrix_transform(self, i: int) -> tuple[float, float]:
        """``(scale, shift)`` of system ``i``: ``A_i = scale * M_j + shift * I`` (``(1.0, 0.0)`` if not stored)."""
        meta = self._sys[self.check_index(i)]
        return meta.scale, meta.shift

    def grid_shape(self, i: int) -> tuple | None:
        """The grid of system ``i`` (its ``grid_shape`` attribute), or None, without reading any array."""
        return self._sys[self.check_index(i)].grid_shape

    def stored_matrix(self, j: int) -> scipy.sparse.csr_matrix:
        """The stored matrix ``M_j`` (``matrices/{j:06d}``), checked on first read."""
        if isinstance(j, bool) or not isinstance(j, numbers.Integral) or int(j) not in self._matrix_n:
            raise IndexError(f"no stored matrix {j!r} in {self.path!r} (it holds {len(self._matrix_n)})")
        return self._load_matrix(int(j))

    def matrix(self, i: int) -> scipy.sparse.csr_matrix:
        """The matrix ``A_i = scale * M_j + shift * I`` of system ``i`` (checked on first read)."""
        meta = self._sys[self.check_index(i)]
        return affine_matrix(self._load_matrix(meta.matrix), meta.scale, meta.shift)

    def system_attrs(self, i: int) -> dict:
        """The system's own attributes (what ``self[i].attrs`` holds), without reading any array."""
        return self._own_attrs(self.check_index(i))

    def rhs(self, i: int, rows=slice(None)) -> np.ndarray:
        """Right-hand sides ``b[rows]`` of system ``i`` (``(k, n)`` for the default)."""
        return self._rows(self.check_index(i), "b", rows)

    def solution(self, i: int, rows=slice(None)) -> np.ndarray | None:
        """Reference solutions ``x[rows]`` of system ``i``, or None if not stored."""
        i = self.check_index(i)
        return self._rows(i, "x", rows) if self._sys[i].has_x else None

    def system(self, i, *, allow_negative: bool = False) -> LinearSystem:
        """System ``i``; unlike ``f[i]``, a negative ``i`` is refused unless ``allow_negative``.

        Raises
        ------
        IndexError
            ``i`` outside the file (the message names the valid range), or
            the file holds no systems.
        """
        return self[self.check_index(i, allow_negative=allow_negative)]

    def __getitem__(self, i) -> LinearSystem:
        i = self.check_index(i)
        meta = self._sys[i]
        key = f"systems/{i:06d}"
        A = affine_matrix(self._load_matrix(meta.matrix), meta.scale, meta.shift)
        b = self._rows(i, "b", ())
        x = self._rows(i, "x", ()) if meta.has_x else None
        flags = self._layout.read(self._h5["systems"][f"{i:06d}"]["flags"], f"{key}/flags") \
            if meta.has_flags else None
        attrs = self._own_attrs(i)
        try:
            return LinearSystem(A=A, b=b, x=x, grid_shape=meta.grid_shape, flags=flags, attrs=attrs)
        except (TypeError, ValueError) as e:
            raise self._layout.error(key, str(e)) from None

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def verify(self) -> None:
        """Read and check every array in the file; raises :class:`FormatError`."""
        for j in sorted(self._matrix_n):
            self._load_matrix(j)
        for i in range(len(self)):
            for name in ("b", "x") if self._sys[i].has_x else ("b",):
                self._rows(i, name, ())

    def fingerprint(self) -> dict:
        """What identifies the content this handle reads (see :meth:`check_unchanged`).

        Returns
        -------
        dict
            ``file_id`` (or None for older files), ``size`` and ``mtime_ns`` of
            the open file, ``systems`` and ``rhs`` counts and a hash of the
            per-system counts.
        """
        try:
            st = os.fstat(self._h5.id.get_vfd_handle())
        except (OSError, TypeError, ValueError, RuntimeError):
            st = os.stat(self.path)
        counts = self.rhs_counts()
        return {"file_id": self.attrs.get("file_id"), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                "systems": len(counts), "rhs": int(counts.sum()),
                "counts": hashlib.sha1(counts.tobytes()).hexdigest()[:16]}

    def check_unchanged(self, expected: dict, *, reader: str = "reader") -> None:
        """Raise :class:`FileChangedError` if this handle reads other content than ``expected`` described.

        Files with a ``file_id`` are compared by it (so a copy of the file
        elsewhere still matches); older files by size and modification
        time. The counts of systems and right-hand sides must match in
        both cases.

        Parameters
        ----------
        expected : dict
            A :meth:`fingerprint` taken when the index was built.
        reader : str
            What holds the stale index, for the message (e.g. ``"SystemsDataset"``).
        """
        now = self.fingerprint()
        if expected.get("file_id") is not None or now["file_id"] is not None:
            keys = ("file_id", "counts")
        else:
            keys = ("size", "mtime_ns", "counts")
        changed = [k for k in keys if now[k] != expected.get(k)]
        if changed:
            raise FileChangedError(
                f"{self.path!r} changed on disk after this {reader} indexed it ({', '.join(changed)} differ; "
                f"indexed {expected.get('systems')} systems / {expected.get('rhs')} right-hand sides, "
                f"the file now holds {now['systems']} / {now['rhs']}): create the {reader} again to read "
                "the new content")

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


def read_system(path, index: int, *, allow_negative: bool = False) -> LinearSystem:
    """Read system ``index`` of a file, with the index checked against the file.

    Parameters
    ----------
    path : str or os.PathLike
    index : int
        ``0 <= index < len(file)``; with ``allow_negative``, ``-len(file) <= index < 0``
        counts from the end.
    allow_negative : bool

    Raises
    ------
    IndexError
        ``index`` is out of range (the message names the valid range), or
        the file holds no systems.
    TypeError
        ``index`` is not an int.
    FormatError, FileNotFoundError, PermissionError
        As :class:`SystemsFile`.
    """
    with SystemsFile(path) as f:
        return f.system(index, allow_negative=allow_negative)
