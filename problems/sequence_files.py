"""Sequences in ``krylearn.linear_systems`` HDF5 files: :func:`write_sequence`, :func:`read_sequence`.

A shifted/scaled sequence stores its matrix once with per-system
``matrix_scale``/``matrix_shift`` attributes. Any systems file (e.g. the
smoke frames of ``krylearn data poisson``) reads as a sequence.
"""

from __future__ import annotations

import numbers
import os
from pathlib import Path

import numpy as np

from ..datasets.systems import LinearSystem, SystemsFile, SystemsWriter
from .sequence import Sequence, context_span

__all__ = ["GENERATOR", "read_sequence", "write_sequence"]

GENERATOR = "krylearn.problems.sequences"


def write_sequence(path, seq, *, compression="gzip", progress: bool = False):
    """Write a sequence to a ``krylearn.linear_systems`` HDF5 file (atomically).

    Parameters
    ----------
    path : str or os.PathLike
        Destination ``.h5``.
    seq : Sequence or iterable of LinearSystem
        A generator's sequence stores its matrix once with per-system
        ``matrix_scale``/``matrix_shift`` (``A_t = scale_t M + shift_t I``);
        other sequences store each distinct matrix once.
    compression : {"gzip", "lzf", None}
    progress : bool
        tqdm bar over the instances.

    Returns
    -------
    path

    Notes
    -----
    The root ``parameters`` attribute holds ``seq.meta`` plus ``name`` and
    ``context_range``; the seed is ``meta["seed"]``. Each system keeps its
    ``attrs`` (``context``, ``step``, ...).
    """
    if not isinstance(seq, Sequence):
        seq = Sequence.from_systems(seq, name=Path(os.fspath(path)).stem)
    params = dict(seq.meta)
    params["name"] = seq.name
    params["context_range"] = None if seq.context_range is None else list(seq.context_range)
    params["length"] = len(seq)
    seed = seq.meta.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        seed = None
    it = range(len(seq))
    if progress:
        from tqdm.auto import tqdm  # optional dependency: only with progress=True

        it = tqdm(it, desc=f"writing {seq.name}", unit="system")
    with SystemsWriter(path, generator=GENERATOR, parameters=params, seed=seed, compression=compression) as w:
        for t in it:
            s = seq[t]
            if seq._affine is not None:
                M, scales, shifts = seq._affine
                w.append(s, base=M, scale=float(scales[t]), shift=float(shifts[t]))
            else:
                w.append(s)
    return path


class _FileSource:
    """Lazily opened :class:`SystemsFile` (reopened in a forked process).

    The first handle records the file's fingerprint; a handle opened later
    (after :meth:`close`, or in another process) must read the same content,
    else :class:`~krylearn.utils.errors.FileChangedError`.
    """

    def __init__(self, path: str):
        self.path = path
        self._file = None
        self._pid = None
        self._fingerprint = None
        self.context_key = None  # an attribute other than "context" that serves as the context

    def handle(self) -> SystemsFile:
        if self._file is None or self._pid != os.getpid():
            f = SystemsFile(self.path)
            try:
                if self._fingerprint is None:
                    self._fingerprint = f.fingerprint()
                else:
                    f.check_unchanged(self._fingerprint, reader="sequence (read_sequence)")
            except BaseException:
                f.close()
                raise
            self._file, self._pid = f, os.getpid()
        return self._file

    def __call__(self, t: int) -> LinearSystem:
        s = self.handle()[t]
        if self.context_key is not None:
            s.attrs["context"] = float(s.attrs[self.context_key])
        return s

    def close(self) -> None:
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file, self._pid = None, None


def read_sequence(path) -> Sequence:
    """Open any ``krylearn.linear_systems`` HDF5 file as a :class:`Sequence`.

    Instances are read on demand from a handle kept open until
    :meth:`Sequence.close` (or the ``with`` block ends).

    Contexts: every system's ``attrs["context"]`` when all have one (files of
    :func:`write_sequence`), else the ``"frame"`` attribute (e.g. the smoke
    frames of ``krylearn data poisson``; copied into each instance's
    ``attrs["context"]``), else None. ``context_range`` comes
    from the file's parameters when stored, else the contexts' ``(min, max)``.
    ``name`` is the stored one or the file's stem; ``meta`` holds the file's
    ``parameters`` plus ``file``, ``generator``, ``seed`` and ``created``.

    Raises
    ------
    FileNotFoundError
    krylearn.datasets.FormatError
        Not a systems file, or a schema violation (naming the key).

    Reading an instance raises :class:`~krylearn.utils.errors.FileChangedError`
    when the file was rewritten after this call and the handle had to be
    reopened (after :meth:`Sequence.close`, or in a forked worker).
    """
    path = os.fspath(path)
    source = _FileSource(path)
    f = source.handle()
    try:
        params = f.attrs.get("parameters") or {}
        if not isinstance(params, dict):
            params = {"parameters": params}
        T = len(f)
        contexts = None
        if T:
            attrs = [f.system_attrs(i) for i in range(T)]
            for key in ("context", "frame"):
                vals = [a.get(key) for a in attrs]
                if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
                    contexts = np.asarray(vals, dtype=np.float64)
                    source.context_key = None if key == "context" else key
                    break
        context_range = params.get("context_range")
        if contexts is None:
            context_range = None
        elif context_range is None:
            context_range = context_span(contexts)
        affine = None
        if T and f.num_matrices() == 1:
            M = f.stored_matrix(0)
            tr = np.array([f.matrix_transform(i) for i in range(T)], dtype=np.float64)
            affine = (M, tr[:, 0].copy(), tr[:, 1].copy())
        meta = dict(params)
        meta.pop("name", None)
        meta.pop("context_range", None)
        meta.pop("length", None)
        meta.update(file=path, generator=f.attrs["generator"], created=f.attrs.get("created"))
        meta.setdefault("seed", f.attrs.get("seed"))
        name = params.get("name") if isinstance(params.get("name"), str) and params.get("name") else Path(path).stem
    except BaseException:
        source.close()
        raise
    return Sequence(name, T, source, contexts=contexts, context_range=context_range, meta=meta, affine=affine,
                    close=source.close)
