"""Matrix Market (``.mtx``) files: sparse matrices and dense right-hand sides.

Two pairs of functions, so that each reader always returns one type:

- :func:`read_mtx` / :func:`write_mtx` for matrices: always a
  ``scipy.sparse.csr_matrix`` (an ``array``-format file is converted);
  written in ``coordinate`` format.
- :func:`read_vector_mtx` / :func:`write_vector_mtx` for dense vectors or
  blocks of vectors (e.g. SuiteSparse ``*_b.mtx`` right-hand sides): always a
  ``numpy.ndarray``; written in ``array`` format.

Reading goes through :func:`scipy.io.mmread` (compressed ``.mtx.gz`` /
``.mtx.bz2`` work too); any parse failure becomes a
:class:`~krylearn.utils.errors.FormatError` naming the file. Writing is
atomic (temporary file beside the target, renamed on success).
"""

from __future__ import annotations

import os

import numpy as np
import scipy.io
import scipy.sparse

from ..utils.atomic import atomic_path
from ..utils.errors import FormatError

__all__ = ["read_mtx", "write_mtx", "read_vector_mtx", "write_vector_mtx"]


def _mmread(path):
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path!r}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"expected a file, got a folder: {path!r}")
    try:
        M = scipy.io.mmread(path)
    except (FileNotFoundError, PermissionError):
        raise
    except (ValueError, OSError, IndexError, TypeError, RuntimeError, OverflowError, UnicodeDecodeError) as e:
        raise FormatError(f"malformed Matrix Market file: {e}", path=path) from None
    values = M.data if scipy.sparse.issparse(M) else np.asarray(M)
    if values.dtype.kind not in "iufcb":
        raise FormatError(f"unsupported value type {values.dtype}", path=path)
    if values.dtype.kind in "fc" and not np.isfinite(values).all():
        raise FormatError("contains NaN or Inf values", path=path)
    return path, M


def read_mtx(path) -> scipy.sparse.csr_matrix:
    """Read a matrix from a Matrix Market file.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.mtx`` file (``coordinate`` or ``array`` format; symmetric,
        skew-symmetric and Hermitian files are expanded to the full matrix).

    Returns
    -------
    scipy.sparse.csr_matrix, shape (m, n)
        With the file's value type (float64 for ``real``, complex128 for
        ``complex``, int64 for ``integer``; ``pattern`` entries are 1).
        An ``array``-format file is converted to CSR (zeros dropped).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    FormatError
        If the file is not valid Matrix Market or holds NaN/Inf.
    """
    _, M = _mmread(path)
    return scipy.sparse.csr_matrix(M)


def read_vector_mtx(path) -> np.ndarray:
    """Read a dense vector (or block of vectors) from a Matrix Market file.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.mtx`` file, usually in ``array`` format; a ``coordinate`` file is
        densified.

    Returns
    -------
    numpy.ndarray
        Shape ``(n,)`` when the file has one column (or one row), else
        ``(n, k)`` exactly as stored (one vector per column). Transpose to
        get the ``(k, n)`` layout of :class:`~krylearn.datasets.systems.LinearSystem`.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    FormatError
        If the file is not valid Matrix Market or holds NaN/Inf.
    """
    _, M = _mmread(path)
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
