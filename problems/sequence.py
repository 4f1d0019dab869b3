"""A sequence of related linear systems built on demand: :class:`Sequence`.

Generators (:mod:`krylearn.problems.sequences`) and files
(:mod:`krylearn.problems.sequence_files`) both produce one.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable

import numpy as np

from ..datasets.systems import LinearSystem
from ..solvers.bandit.base import check_range

__all__ = ["Sequence", "context_span"]


class Sequence:
    """A length-``T`` sequence of :class:`LinearSystem` instances built on demand.

    Parameters
    ----------
    name : str
        Short name, used in file names and tables (e.g. ``"shifted-low-n100-T5000-s0"``).
    length : int
        Number of instances ``T``.
    build : callable
        ``build(t) -> LinearSystem`` for ``0 <= t < length``; must be cheap and
        deterministic.
    contexts : array_like of float, shape (T,), optional
        Scalar context of each instance (also ``system.attrs["context"]``).
    context_range : (float, float), optional
        Interval the contexts lie in (``lo < hi``); required when ``contexts`` is given
        (the tuners map it onto [-1, 1]).
    meta : dict, optional
        Every generation parameter and the seed (JSON-serializable).
    affine : (M, scales, shifts), optional
        Set by generators whose matrices are ``A_t = scales[t] * M + shifts[t] * I``
        (``M`` CSR (n, n), ``scales``/``shifts`` float64 (T,)): lets
        :func:`write_sequence` store ``M`` once.
    close : callable, optional
        Releases resources (an open file) on :meth:`close`.

    Notes
    -----
    ``seq[t]`` returns ``build(t)`` (a fresh :class:`LinearSystem` for the
    generators and files); ``seq[a:b:c]`` returns
    a sub-sequence (same generator, remapped indices, ``meta["indices"]`` =
    ``[first, stop, step]`` added, name suffixed ``-{first}to{stop}``).
    """

    def __init__(self, name: str, length: int, build: Callable[[int], LinearSystem], *, contexts=None,
                 context_range=None, meta: dict | None = None, affine=None, close: Callable | None = None):
        if not isinstance(name, str) or not name:
            raise TypeError(f"name must be a non-empty str, got {name!r}")
        if isinstance(length, bool) or not isinstance(length, numbers.Integral) or length < 0:
            raise ValueError(f"length must be an int >= 0, got {length!r}")
        if not callable(build):
            raise TypeError(f"build must be callable, got {type(build).__name__}")
        self.name = name
        self._length = int(length)
        self._build = build
        if contexts is not None:
            contexts = np.asarray(contexts, dtype=np.float64).reshape(-1)
            if contexts.shape != (self._length,):
                raise ValueError(f"contexts must have shape ({self._length},), got {contexts.shape}")
            if not np.isfinite(contexts).all():
                raise ValueError("contexts contain NaN or Inf")
            if context_range is None:
                raise ValueError("context_range is required when contexts are given")
        if context_range is not None:
            context_range = check_range(context_range)
        self.contexts = contexts
        self.context_range = context_range
        self.meta = dict(meta or {})
        self._affine = affine
        self._close = close

    # ------------------------------------------------------------ protocol
    def __len__(self) -> int:
        return self._length

    def _index(self, t) -> int:
        if isinstance(t, bool) or not isinstance(t, numbers.Integral):
            raise TypeError(f"instance index must be an int or a slice, got {type(t).__name__}")
        t = int(t)
        if t < 0:
            t += self._length
        if not 0 <= t < self._length:
            raise IndexError(f"instance index {t} out of range for a sequence of {self._length}")
        return t

    def __getitem__(self, t):
        if isinstance(t, slice):
            idx = np.arange(self._length)[t]
            build = self._build
            affine = None
            if self._affine is not None:
                M, scales, shifts = self._affine
                affine = (M, scales[idx], shifts[idx])
            meta = dict(self.meta, indices=[int(idx[0]), int(idx[-1]) + 1, int(t.step or 1)] if idx.size else [])
            if idx.size == self._length and (t.step or 1) == 1:
                name = self.name
            elif idx.size:
                name = f"{self.name}-{idx[0]}to{idx[-1] + 1}" + (f"by{t.step}" if (t.step or 1) != 1 else "")
            else:
                name = f"{self.name}-empty"
            return Sequence(name, len(idx),
                            lambda k: build(int(idx[k])),
                            contexts=None if self.contexts is None else self.contexts[idx],
                            context_range=self.context_range, meta=meta, affine=affine, close=None)
        return self._build(self._index(t))

    def __iter__(self):
        for t in range(self._length):
            yield self._build(t)

    @property
    def n(self) -> int | None:
        """Unknowns of the first instance (None for an empty sequence)."""
        return self[0].n if self._length else None

    def close(self) -> None:
        """Release an open file (file-backed sequences); idempotent."""
        if self._close is not None:
            self._close()

    def __enter__(self) -> "Sequence":
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    def __repr__(self) -> str:
        ctx = "no contexts" if self.contexts is None else f"contexts in {self.context_range}"
        return f"<Sequence {self.name!r}: {self._length} instances, {ctx}>"

    # ------------------------------------------------------------ builders
    @classmethod
    def from_systems(cls, systems, *, name: str = "systems", context_range=None,
                     meta: dict | None = None) -> "Sequence":
        """Wrap a list of :class:`LinearSystem` (contexts from ``attrs["context"]`` when every system has one).

        ``context_range`` defaults to the contexts' ``(min, max)`` (widened by
        ``0.5`` on each side when they are all equal).
        """
        systems = list(systems)
        for i, s in enumerate(systems):
            if not isinstance(s, LinearSystem):
                raise TypeError(f"systems[{i}] must be a LinearSystem, got {type(s).__name__}")
        contexts = None
        if systems and all("context" in s.attrs for s in systems):
            contexts = np.array([float(s.attrs["context"]) for s in systems])
            if context_range is None:
                context_range = context_span(contexts)
        return cls(name, len(systems), systems.__getitem__, contexts=contexts, context_range=context_range,
                   meta=meta)


def context_span(values: np.ndarray) -> tuple[float, float]:
    """``(min, max)`` of ``values``, widened by 0.5 on each side when they are all equal."""
    lo, hi = float(np.min(values)), float(np.max(values))
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    return lo, hi
