"""Atomic file writes: write to a temporary file beside the target, rename on success.

A crash or an exception never leaves a half-written file under the final
name, and an existing file there stays untouched until the new one is
complete.

Temporary files are named ``.{name}.tmp-{pid}-{host}-{random}`` (``host``: 6
hex digits of a hash of the host name). A process that is killed mid-write
leaves its temporary file behind; the next atomic write of the same target
removes it (see :func:`remove_stale_temps` for the rule).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import socket
import stat
import time
from pathlib import Path

__all__ = ["STALE_AFTER_SECONDS", "DEAD_WRITER_GRACE_SECONDS", "atomic_path", "atomic_write_text",
           "remove_stale_temps", "save_figure"]

#: A temporary file of a target untouched for this long is stale whoever wrote it (1 day).
STALE_AFTER_SECONDS = 24 * 3600.0
#: A temporary file whose writer (on this host) no longer runs is stale once untouched this long.
DEAD_WRITER_GRACE_SECONDS = 60.0

_HOST_TAG = hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:6]
#: ``-{pid}-{host}-{random}`` (current) or ``-{pid}-{random}`` (files of older krylearn versions)
_TEMP_SUFFIX = re.compile(r"(?P<pid>\d+)-(?:(?P<host>[0-9a-f]{6})-)?[0-9a-f]{8}")


def _temp_name(path: str) -> str:
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f".{name}.tmp-{os.getpid()}-{_HOST_TAG}-{secrets.token_hex(4)}")


def _process_exists(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (True when that cannot be told)."""
    if os.name != "posix":  # os.kill(pid, 0) would terminate the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # exists, owned by another user (or a pid this platform cannot name)
    return True


def remove_stale_temps(path, *, stale_after: float = STALE_AFTER_SECONDS,
                       dead_grace: float = DEAD_WRITER_GRACE_SECONDS) -> list[str]:
    """Delete the temporary files that interrupted atomic writes of ``path`` left behind.

    A temporary file ``.{name}.tmp-...`` of this target (not of any other
    file) is removed when it is a regular file and either

    * its writer ran on this host, no longer exists, and the file has not
      been modified for ``dead_grace`` seconds, or
    * it has not been modified for ``stale_after`` seconds (writers on other
      hosts, or a process id reused since).

    A write in progress keeps touching its file, and its process exists, so
    it is left alone. Called by :func:`atomic_path` before every write.

    Parameters
    ----------
    path : str or os.PathLike
        The target file (it need not exist).
    stale_after, dead_grace : float
        Ages in seconds (non-negative).

    Returns
    -------
    list of str
        The removed paths.
    """
    if stale_after < 0 or dead_grace < 0:
        raise ValueError(f"stale_after and dead_grace must be >= 0, got {stale_after!r} and {dead_grace!r}")
    folder, name = os.path.split(os.path.abspath(os.fspath(path)))
    prefix = f".{name}.tmp-"
    try:
        entries = [e for e in os.listdir(folder) if e.startswith(prefix)]
    except OSError:
        return []
    removed, now = [], time.time()
    for entry in entries:
        m = _TEMP_SUFFIX.fullmatch(entry[len(prefix):])
        if m is None:
            continue  # a temporary file of another target whose name starts like ours
        full = os.path.join(folder, entry)
        try:
            st = os.lstat(full)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        age = now - st.st_mtime
        dead = m["host"] == _HOST_TAG and int(m["pid"]) != os.getpid() and not _process_exists(int(m["pid"]))
        if age >= stale_after or (dead and age >= dead_grace):
            try:
                os.remove(full)
            except OSError:
                continue
            removed.append(full)
    return removed


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

    Stale temporary files that interrupted writes of the same target left
    behind are removed first (:func:`remove_stale_temps`).

    Yields
    ------
    str or pathlib.Path
        The temporary path ``{folder}/.{name}.tmp-{pid}-{host}-{random}``, of
        the same kind as ``path`` (a ``Path`` for a ``Path``, else ``str``).

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
    remove_stale_temps(target)
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


def save_figure(fig, path) -> None:
    """Write a matplotlib figure as PNG to ``path`` atomically, then close it."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
