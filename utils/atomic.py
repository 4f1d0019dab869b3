"""Atomic file writes: write to a temporary file beside the target, rename on success.

A crash or an exception never leaves a half-written file under the final
name, and an existing file there stays untouched until the new one is
complete.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_text"]


def _temp_name(path: str) -> str:
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f".{name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: str) -> None:
    # Makes the rename itself durable; not possible everywhere (Windows).
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; move it onto ``path`` on success.

    The caller writes the complete file to the yielded path (and closes it)
    inside the ``with`` block. On a clean exit the temporary file is fsynced
    and renamed onto ``path`` with :func:`os.replace` (atomic on POSIX and
    Windows). If the block raises, the temporary file is deleted and the
    exception propagates; ``path`` is left as it was.

    Parameters
    ----------
    path : str or os.PathLike
        Final destination. Its folder must exist.

    Yields
    ------
    str or pathlib.Path
        The temporary path ``{folder}/.{name}.tmp-{pid}-{random}``, of the
        same kind as ``path`` (a ``Path`` for a ``Path``, else ``str``).

    Raises
    ------
    FileNotFoundError
        If the folder of ``path`` does not exist, or the block exits cleanly
        without having created the temporary file.
    """
    target = os.fspath(path)
    if isinstance(target, bytes):
        raise TypeError("path must be a str or os.PathLike of str, not bytes")
    folder = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"path: folder {folder!r} does not exist")
    tmp = _temp_name(target)
    try:
        yield Path(tmp) if isinstance(path, Path) else tmp
        if not os.path.exists(tmp):
            raise FileNotFoundError(f"nothing was written to the temporary file {tmp!r} for {target!r}")
        _fsync_file(tmp)
        os.replace(tmp, target)
    except BaseException:
        _remove_quietly(tmp)
        raise
    _fsync_dir(folder)


def atomic_write_text(path, text: str, *, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_path`).

    Parameters
    ----------
    path : str or os.PathLike
        Destination file.
    text : str
        Full contents.
    encoding : str
        Text encoding (default UTF-8).
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding=encoding, newline="") as f:
            f.write(text)
