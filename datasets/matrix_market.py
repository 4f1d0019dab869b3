"""Matrix Market (``.mtx``) files: sparse matrices and dense right-hand sides.

Two pairs of functions, so that each reader always returns one type:

- :func:`read_mtx` / :func:`write_mtx` for matrices: always a
  ``scipy.sparse.csr_matrix`` (an ``array``-format file is converted);
  written in ``coordinate`` format.
- :func:`read_vector_mtx` / :func:`write_vector_mtx` for dense vectors or
  blocks of vectors (e.g. SuiteSparse ``*_b.mtx`` right-hand sides): always a
  ``numpy.ndarray``; written in ``array`` format.

Reading first parses the header itself (banner, comments, size line) and
checks the declared size against the file: a file cannot declare more
entries than its bytes can hold, and nothing larger than ``max_entries``
values is allocated unless the caller raises that limit. The entries are
then read with :func:`scipy.io.mmread` (compressed ``.mtx.gz`` /
``.mtx.bz2`` work too). Errors say what is wrong: ``FileNotFoundError``,
``IsADirectoryError``, ``PermissionError`` for the path, and
:class:`~krylearn.utils.errors.FormatError` naming the file and the line for
a malformed file. Writing is atomic (temporary file beside the target,
renamed on success).
"""

from __future__ import annotations

import bz2
import gzip
import io
import stat
from dataclasses import dataclass

import numpy as np
import scipy.io
import scipy.sparse

from ..utils.atomic import atomic_path
from ..utils.errors import FormatError
from .fileio import check_readable, format_bytes

__all__ = ["MAX_ENTRIES", "MtxHeader", "read_mtx", "read_mtx_header", "read_vector_mtx", "write_mtx",
           "write_vector_mtx"]

#: Default limit on the values a reader allocates (about 16 GB of float64 and indices).
MAX_ENTRIES = 1 << 30

_FORMATS = ("coordinate", "array")
_FIELDS = ("real", "double", "complex", "integer", "unsigned-integer", "pattern")
_SYMMETRIES = ("general", "symmetric", "skew-symmetric", "hermitian")
_LINE_LIMIT = 4096  # characters of a header line looked at


@dataclass(frozen=True)
class MtxHeader:
    """What a Matrix Market header declares.

    Attributes
    ----------
    format : {"coordinate", "array"}
    field : {"real", "double", "complex", "integer", "unsigned-integer", "pattern"}
    symmetry : {"general", "symmetric", "skew-symmetric", "hermitian"}
    rows, cols : int
    entries : int
        Data lines the file must hold (``nnz`` of a coordinate file; the
        stored part of the ``rows x cols`` array of an array file).
    header_bytes : int
        Bytes up to and including the size line.
    size_line : int
        1-based line number of the size line.
    """

    format: str
    field: str
    symmetry: str
    rows: int
    cols: int
    entries: int
    header_bytes: int
    size_line: int

    def min_data_bytes(self) -> int:
        """Fewest bytes the declared entries can take in an uncompressed file.

        An entry is at least ``"1 1\\n"`` (coordinate pattern), ``"1 1 0\\n"``
        (coordinate, one value), ``"0\\n"`` (array) with one more ``"0 "``
        for complex values; the last line may lack its newline.
        """
        values = 2 if self.field == "complex" else (0 if self.field == "pattern" else 1)
        per = (4 if self.format == "coordinate" else 0) + 2 * values
        return max(self.entries * per - 1, 0)


def _open_text(path: str):
    lower = path.lower()
    if lower.endswith(".gz"):
        return gzip.open(path, "rb")
    if lower.endswith(".bz2"):
        return bz2.open(path, "rb")
    return open(path, "rb")


def _line(fh) -> tuple[bytes, int]:
    """The next line and the bytes it took; at most ``_LINE_LIMIT`` bytes of a longer line are kept.

    A longer line is consumed in pieces (never held whole) and what is kept
    of it ends with a newline, so the lines kept can be replayed.
    """
    line = fh.readline(_LINE_LIMIT)
    consumed = len(line)
    if line and not line.endswith(b"\n"):
        rest = fh.readline(_LINE_LIMIT)
        while rest:
            consumed += len(rest)
            if rest.endswith(b"\n"):
                line += b"\n"
                break
            rest = fh.readline(_LINE_LIMIT)
    return line, consumed


def _banner(path: str, line: bytes) -> tuple[str, str, str]:
    text = line.decode("ascii", "replace").strip()
    tokens = text.lower().split()
    expected = "'%%MatrixMarket matrix coordinate|array <field> <symmetry>'"
    if not line:
        raise FormatError(f"empty file: expected the banner {expected} on line 1", path=path, key="line 1")
    if len(tokens) != 5 or tokens[0] != "%%matrixmarket" or tokens[1] != "matrix":
        raise FormatError(f"missing banner: expected {expected}, got {text[:80]!r}", path=path, key="line 1")
    fmt, field, symmetry = tokens[2:]
    for name, value, allowed in (("format", fmt, _FORMATS), ("field", field, _FIELDS),
                                 ("symmetry", symmetry, _SYMMETRIES)):
        if value not in allowed:
            raise FormatError(f"unknown {name} {value!r} in the banner (expected one of {', '.join(allowed)})",
                              path=path, key="line 1")
    if fmt == "array" and field == "pattern":
        raise FormatError("an array file cannot have the field 'pattern'", path=path, key="line 1")
    return fmt, field, symmetry


def _size_line(path: str, text: str, fmt: str, lineno: int) -> tuple[int, int, int | None]:
    want = 3 if fmt == "coordinate" else 2
    what = "'rows cols entries'" if want == 3 else "'rows cols'"
    parts = text.split()
    try:
        values = [int(v) for v in parts]
    except ValueError:
        values = []
    if len(values) != want or min(values) < 0:
        raise FormatError(f"expected the size line {what} ({want} non-negative integers), got {text[:80]!r}",
                          path=path, key=f"line {lineno}")
    return values[0], values[1], (values[2] if want == 3 else None)


def _array_entries(path, fmt, symmetry, rows, cols, lineno) -> int:
    if symmetry == "general":
        return rows * cols
    if rows != cols:
        raise FormatError(f"a {symmetry} matrix must be square, the size line says {rows} x {cols}",
                          path=path, key=f"line {lineno}")
    return rows * (rows - 1) // 2 if symmetry == "skew-symmetric" else rows * (rows + 1) // 2


def _parse_header(path: str, fh) -> tuple[MtxHeader, bytes]:
    """The header read from the open binary stream ``fh``, and its lines as read (to replay them)."""
    try:
        first, consumed = _line(fh)
        fmt, field, symmetry = _banner(path, first)
        kept, lineno = [first], 1
        while True:
            line, n = _line(fh)
            lineno += 1
            consumed += n
            kept.append(line)
            if not line:
                raise FormatError("ends before the size line", path=path, key=f"line {lineno}")
            text = line.decode("ascii", "replace").strip()
            if text and not text.startswith("%"):
                break
    except (OSError, EOFError) as e:  # a damaged .gz / .bz2 stream
        raise FormatError(f"unreadable compressed stream ({e})", path=path) from None
    rows, cols, nnz = _size_line(path, text, fmt, lineno)
    entries = nnz if fmt == "coordinate" else _array_entries(path, fmt, symmetry, rows, cols, lineno)
    return MtxHeader(fmt, field, symmetry, rows, cols, entries, consumed, lineno), b"".join(kept)


def read_mtx_header(path) -> MtxHeader:
    """Parse a Matrix Market header (banner, comment lines, size line) without reading the entries.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.mtx`` file (``.mtx.gz`` / ``.mtx.bz2`` are decompressed).

    Returns
    -------
    MtxHeader

    Raises
    ------
    FileNotFoundError, IsADirectoryError, PermissionError
        The path cannot be read (the message says which).
    FormatError
        A missing or malformed banner or size line (naming the line).
    """
    path, _ = check_readable(path)
    with _open_text(path) as fh:
        return _parse_header(path, fh)[0]


class _Replay(io.RawIOBase):
    """The bytes already read from a stream (``head``), then the rest of the stream."""

    def __init__(self, head: bytes, stream):
        self._head, self._stream = head, stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n], self._head = self._head[:n], self._head[n:]
            return n
        data = self._stream.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


def _check_size(path: str, header: MtxHeader, size: int | None, dense: bool, max_entries) -> None:
    """Refuse a header the file's ``size`` bytes cannot hold (None: unknown) or that needs over ``max_entries`` values."""
    if size is not None and header.min_data_bytes() > size - header.header_bytes:
        raise FormatError(
            f"declares {header.entries} entries ({header.rows} x {header.cols} {header.format}), which need at "
            f"least {header.min_data_bytes()} bytes, but only {size - header.header_bytes} bytes follow its "
            "header: the file is truncated or its size line is wrong",
            path=path, key=f"line {header.size_line}")
    if dense or header.format == "array":
        values = header.rows * header.cols
    else:
        values = header.entries * (1 if header.symmetry == "general" else 2) + header.rows + 1
    if max_entries is not None and values > max_entries:
        nbytes = values * (16 if header.field == "complex" else 8) * (2 if header.format == "coordinate" else 1)
        raise FormatError(
            f"declares a {header.rows} x {header.cols} matrix with {header.entries} entries: reading it needs "
            f"about {values} values ({format_bytes(nbytes)}), more than max_entries={max_entries}; pass a "
            "larger max_entries (or None) to read it anyway", path=path, key=f"line {header.size_line}")


def _check_limit(max_entries):
    if max_entries is not None and (isinstance(max_entries, bool) or not isinstance(max_entries, int)
                                    or max_entries < 0):
        raise TypeError(f"max_entries must be a non-negative int or None, got {max_entries!r}")


def _mmread(path, max_entries, *, dense: bool = False):
    _check_limit(max_entries)
    path, st = check_readable(path)
    regular = stat.S_ISREG(st.st_mode)
    size = st.st_size if regular and not path.lower().endswith((".gz", ".bz2")) else None
    with _open_text(path) as fh:
        header, head = _parse_header(path, fh)
        _check_size(path, header, size, dense, max_entries)
        # a pipe cannot be reopened: hand scipy the header read so far, then the rest of the stream
        source = path if regular else io.BufferedReader(_Replay(head, fh))
        try:
            M = scipy.io.mmread(source)
        except (FileNotFoundError, PermissionError, IsADirectoryError):
            raise
        except (ValueError, OSError, IndexError, TypeError, RuntimeError, OverflowError, UnicodeDecodeError) as e:
            raise FormatError(f"malformed Matrix Market data: {e}", path=path) from None
    values = M.data if scipy.sparse.issparse(M) else np.asarray(M)
    if values.dtype.kind not in "iufcb":
        raise FormatError(f"unsupported value type {values.dtype}", path=path)
    if values.dtype.kind in "fc" and not np.isfinite(values).all():
        raise FormatError("contains NaN or Inf values", path=path)
    return path, M


def read_mtx(path, *, max_entries: int | None = MAX_ENTRIES) -> scipy.sparse.csr_matrix:
    """Read a matrix from a Matrix Market file.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.mtx`` file (``coordinate`` or ``array`` format; symmetric,
        skew-symmetric and Hermitian files are expanded to the full matrix).
    max_entries : int or None
        Refuse (``FormatError``) a file whose declared size needs more values
        than this in memory (stored entries, mirrored entries and row
        pointers of a coordinate file; ``rows * cols`` of an array file).
        ``None``: no limit. Whatever the limit, an uncompressed file that
        declares more entries than its bytes can hold is refused.

    Returns
    -------
    scipy.sparse.csr_matrix, shape (m, n)
        With the file's value type (float64 for ``real``, complex128 for
        ``complex``, int64 for ``integer``; ``pattern`` entries are 1).
        An ``array``-format file is converted to CSR (zeros dropped).

    Raises
    ------
    FileNotFoundError, IsADirectoryError, PermissionError
        If ``path`` does not exist, is a folder or cannot be read.
    FormatError
        If the file is not valid Matrix Market (naming the line where known),
        holds NaN/Inf, or declares more than the file or ``max_entries`` allows.
    """
    _, M = _mmread(path, max_entries)
    return scipy.sparse.csr_matrix(M)


def read_vector_mtx(path, *, max_entries: int | None = MAX_ENTRIES) -> np.ndarray:
    """Read a dense vector (or block of vectors) from a Matrix Market file.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.mtx`` file, usually in ``array`` format; a ``coordinate`` file is
        densified.
    max_entries : int or None
        Refuse a file whose dense ``rows * cols`` exceeds this (see :func:`read_mtx`).

    Returns
    -------
    numpy.ndarray
        Shape ``(n,)`` when the file has one column (or one row), else
        ``(n, k)`` exactly as stored (one vector per column). Transpose to
        get the ``(k, n)`` layout of :class:`~krylearn.datasets.systems.LinearSystem`.

    Raises
    ------
    FileNotFoundError, IsADirectoryError, PermissionError
        If ``path`` does not exist, is a folder or cannot be read.
    FormatError
        As :func:`read_mtx`.
    """
    _, M = _mmread(path, max_entries, dense=True)
    arr = M.toarray() if scipy.sparse.issparse(M) else np.asarray(M)
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.reshape(-1)
    return np.ascontiguousarray(arr)


def _as_sparse(A):
    if hasattr(A, "to_sparse") and not scipy.sparse.issparse(A):
        A = A.to_sparse()  # krylearn SparseMatrix
    if scipy.sparse.issparse(A):
        return A
    arr = np.asarray(A)
    if arr.ndim != 2:
        raise ValueError(f"A must be a 2-D matrix, got an array of shape {arr.shape}")
    return scipy.sparse.csr_matrix(arr)


def write_mtx(path, A, *, comment: str = "") -> None:
    """Write a matrix to a Matrix Market file in ``coordinate`` format, atomically.

    Symmetry is detected (a symmetric matrix stores its lower triangle only);
    values are written with enough digits to read back exactly.

    Parameters
    ----------
    path : str or os.PathLike
        Destination (conventionally ``.mtx``; the name is used as given).
    A : scipy sparse matrix/array, dense 2-D array, or object with ``to_sparse()``
        The matrix, shape (m, n), numeric and finite.
    comment : str
        Comment lines for the header (each line is prefixed with ``%``).
    """
    A = _as_sparse(A)
    if A.dtype.kind not in "iufc":
        raise TypeError(f"A must have a numeric dtype, got {A.dtype}")
    if A.dtype.kind in "fc" and not np.isfinite(A.data).all():
        raise ValueError("A contains NaN or Inf")
    if not isinstance(comment, str):
        raise TypeError(f"comment must be a str, got {type(comment).__name__}")
    A = scipy.sparse.coo_matrix(A)
    with atomic_path(path) as tmp:
        # A file object, because mmwrite appends ".mtx" to names lacking it.
        with open(tmp, "wb") as f:
            scipy.io.mmwrite(f, A, comment=comment or None)


def write_vector_mtx(path, b, *, comment: str = "") -> None:
    """Write a dense vector or block of vectors in ``array`` format, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Destination file.
    b : array_like, shape (n,) or (n, k)
        A 1-D vector is written as one column ``(n, 1)``; a 2-D array as
        stored (one vector per column).
    comment : str
        Comment lines for the header.
    """
    arr = np.asarray(b)
    if arr.dtype.kind not in "iufc":
        raise TypeError(f"b must have a numeric dtype, got {arr.dtype}")
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"b must have shape (n,) or (n, k), got {arr.shape}")
    if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
        raise ValueError("b contains NaN or Inf")
    if not isinstance(comment, str):
        raise TypeError(f"comment must be a str, got {type(comment).__name__}")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            scipy.io.mmwrite(f, arr, comment=comment or None, symmetry="general")
