"""A torch ``Dataset`` over the right-hand sides of a ``krylearn.linear_systems`` file."""

from __future__ import annotations

import os

import numpy as np
import torch

from .reader import SystemsFile, check_index
from .schema import LinearSystem

__all__ = ["SystemsDataset"]


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

    Raises
    ------
    FileChangedError
        When a process opens the file and finds other content than the index
        was built from (the file was rewritten, e.g. atomically replaced, after
        the dataset was created): create the dataset again.
    IndexError
        For an item index outside ``[-len, len)``, naming the valid range.
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
            self._fingerprint = f.fingerprint()
        self._offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._file: SystemsFile | None = None
        self._pid: int | None = None

    @property
    def num_systems(self) -> int:
        """Number of systems in the file."""
        return len(self._offsets) - 1

    def locate(self, j: int) -> tuple[int, int]:
        """``(system, row)`` of item ``j``."""
        j = check_index(j, len(self), what="item", plural="items (right-hand sides)", path=self.path)
        i = int(np.searchsorted(self._offsets, j, side="right")) - 1
        return i, j - int(self._offsets[i])

    def _handle(self) -> SystemsFile:
        pid = os.getpid()
        if self._file is None or self._pid != pid:
            # A handle inherited through fork belongs to the parent: drop it, open our own.
            f = SystemsFile(self.path)
            expected = getattr(self, "_fingerprint", None)  # None: unpickled from a version without it
            try:
                if expected is not None:
                    f.check_unchanged(expected, reader="SystemsDataset")
            except BaseException:
                f.close()
                raise
            self._file, self._pid = f, pid
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
        """The whole system ``i`` (matrix, all right-hand sides, flags, attrs); negative ``i`` counts from the end."""
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
