"""Opening data files with errors that say what is wrong, and size checks before reading.

Every reader in :mod:`krylearn.datasets` opens its file through
:func:`check_readable` (and HDF5 files through :func:`open_h5`), so a bad
path is reported as what it is:

=============================  ==========================================
the path                       error
=============================  ==========================================
does not exist                 ``FileNotFoundError: no such file: 'x.h5'``
is a folder                    ``IsADirectoryError``
cannot be read (permissions)   ``PermissionError: permission denied ...``
is empty / not HDF5 / corrupt  :class:`~krylearn.utils.errors.FormatError`
=============================  ==========================================

Declared sizes are checked against the file before anything is allocated
(:func:`check_stored`): a small file cannot make a reader allocate
gigabytes because a header says so.
"""

from __future__ import annotations

import os
import stat

import h5py

from ..utils.errors import FormatError

__all__ = ["MAX_COMPRESSION_RATIO", "check_readable", "check_stored", "format_bytes", "open_h5"]

#: Deflate (gzip) cannot shrink data by more than about 1032:1 and LZF by far
#: less, so a dataset stored with these filters holds at most this many bytes
#: per stored byte.
MAX_COMPRESSION_RATIO = 1100

# HDF5 filter ids: deflate, shuffle, fletcher32, lzf
_DEFLATE, _SHUFFLE, _FLETCHER32, _LZF = 1, 2, 3, 32000
#: below this many declared bytes a dataset is read without the storage check
_SMALL = 1 << 16


def format_bytes(n: float) -> str:
    """``n`` bytes in a readable unit (``"819.2 GB"``)."""
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000.0
    return f"{n:.1f} TB"  # pragma: no cover


def check_readable(path) -> tuple[str, os.stat_result]:
    """Check that ``path`` names a file this process can read.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    (str, os.stat_result)
        The path as a string and its status (``st_size`` in bytes).

    Raises
    ------
    FileNotFoundError
        No such file (or a part of the path is a file, not a folder).
    IsADirectoryError
        ``path`` is a folder.
    PermissionError
        The file, or a folder on the way, cannot be read by this user.
    """
    path = os.fspath(path)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise FileNotFoundError(f"no such file: {path!r}") from None
    except PermissionError:
        raise PermissionError(f"permission denied: cannot reach {path!r} (a folder on the way is not "
                              "accessible to this user)") from None
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(f"expected a file, got a folder: {path!r}")
    if not stat.S_ISREG(st.st_mode):
        return path, st  # a pipe or device: reading a probe byte would consume it
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except PermissionError:
        raise PermissionError(f"permission denied: cannot read {path!r} (check its permissions)") from None
    except OSError as e:
        raise OSError(f"cannot read {path!r}: {e.strerror or e}") from None
    return path, st


def open_h5(path) -> h5py.File:
    """Open an HDF5 file read-only, with an error that names what is wrong.

    Raises
    ------
    FileNotFoundError, IsADirectoryError, PermissionError
        See :func:`check_readable`.
    FormatError
        The file is empty, has no HDF5 signature, or is corrupt/truncated.
    """
    path, st = check_readable(path)
    if st.st_size == 0:
        raise FormatError("empty file (0 bytes), expected HDF5", path=path)
    try:
        is_hdf5 = h5py.is_hdf5(path)
    except OSError:
        is_hdf5 = True  # let h5py.File say what it is
    if not is_hdf5:
        raise FormatError("not an HDF5 file (no HDF5 signature)", path=path)
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise FormatError(f"not a readable HDF5 file (corrupt or truncated?): {e}", path=path) from None


def _compression_bound(dset: h5py.Dataset) -> int | None:
    """Largest ratio declared/stored bytes the dataset's filters allow (None: unknown filter)."""
    plist = dset.id.get_create_plist()
    ratio = 1
    for i in range(plist.get_nfilters()):
        code = plist.get_filter(i)[0]
        if code in (_DEFLATE, _LZF):
            ratio = MAX_COMPRESSION_RATIO
        elif code not in (_SHUFFLE, _FLETCHER32):
            return None
    return ratio


def check_stored(dset: h5py.Dataset, path, key: str) -> None:
    """Refuse a dataset that declares more data than the file can hold.

    A dataset of ``D`` declared bytes must store at least ``D`` bytes in the
    file when it is not compressed, and ``D / MAX_COMPRESSION_RATIO`` with
    gzip/LZF. A dataset whose chunks were never written (a 100 kB file
    declaring a ``(1e8, 1024)`` array) fails this before any read allocates
    its size. Datasets under 64 kB and datasets with other filters (whose
    ratio is not bounded) are not checked.

    Parameters
    ----------
    dset : h5py.Dataset
    path : str
        The file, for the message.
    key : str
        The dataset's name in the file, for the message.

    Raises
    ------
    FormatError
        Naming the file, the key, the declared shape and size and what is stored.
    """
    declared = int(dset.size) * dset.dtype.itemsize
    if declared <= _SMALL:
        return
    try:
        ratio = _compression_bound(dset)
        stored = int(dset.id.get_storage_size())
    except (OSError, RuntimeError, ValueError) as e:
        raise FormatError(f"unreadable storage information ({e})", path=path, key=key) from None
    if ratio is not None and stored * ratio < declared:
        raise FormatError(
            f"declares shape {tuple(dset.shape)} {dset.dtype} ({format_bytes(declared)}) but the file stores "
            f"only {format_bytes(stored)} of it: truncated, or not a complete file; refusing to read it",
            path=path, key=key)
