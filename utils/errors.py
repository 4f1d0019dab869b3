"""Errors raised by the file readers."""

from __future__ import annotations

import os

__all__ = ["FileChangedError", "FormatError"]


class FormatError(ValueError):
    """A file is corrupt, truncated, not of the expected format, or breaks its schema.

    The message names the file and, where one is known, the missing or
    malformed key, e.g. ``"data.h5: systems/000003/b: missing dataset"``.

    Parameters
    ----------
    message : str
        What is wrong.
    path : str or os.PathLike, optional
        The offending file; prefixed to the message.
    key : str, optional
        The missing or malformed key (HDF5 path, attribute, JSON field, ...);
        prefixed to the message after the file.

    Attributes
    ----------
    path : str or None
    key : str or None
    """

    def __init__(self, message: str, *, path=None, key: str | None = None):
        self.path = None if path is None else os.fspath(path)
        self.key = key
        parts = [p for p in (self.path, key) if p]
        full = ": ".join(parts + [str(message)])
        # args holds the full message only, so the error pickles (DataLoader
        # workers re-raise it in the main process) with its text intact.
        super().__init__(full)


class FileChangedError(OSError):
    """A file changed on disk after a reader indexed it (e.g. it was rewritten atomically).

    Raised instead of serving items of the new content under the old index.
    The message names the file, what changed and the remedy (build the
    reader again).
    """
