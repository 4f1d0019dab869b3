"""Sequences of related linear systems ``A_t x = b_t``, t = 0..T-1 (generators).

A :class:`Sequence` builds its instances on demand (cheaply: no list of ``T``
sparse matrices is ever materialised) and carries what an online tuner needs:
a scalar context per instance (``attrs["context"]`` and ``.contexts``), the
range of the context, a name, and the generation parameters (``.meta``).

Generators, the two settings of Khodak et al., "Learning to Relax" (ICLR
2024), see ``/work/shared/papers/relax.md``:

:func:`shifted_laplacian`
    ``A_t = L + c_t I`` with ``L`` the 5-point Laplacian of a ``grid x grid``
    interior (MATLAB ``delsq(numgrid('S', grid + 2))``, diagonal 4, no ``1/h^2``)
    and ``c_t = -0.15 + 0.6 Beta(2, 6)`` (low variance) or
    ``-0.15 + 0.6 Beta(1/2, 3/2)`` (high variance), as in the authors'
    ``learning.m`` / ``contextual.m``; ``b_t`` standard normal, truncated to
    ``||b_t|| <= sqrt(n)`` by rejection (the authors' ``truncated_normal.m``;
    the paper's text says ``<= n``). Context ``c_t``.
:func:`heat2d`
    Crank–Nicolson steps of ``u_t = kappa(t) Lap u + f`` on ``[0, 1]^2``
    (the authors' ``Heat2D.m`` / ``h2d.m``).

Files: :func:`write_sequence` / :func:`read_sequence` use the
``krylearn.linear_systems`` HDF5 container
(:mod:`krylearn.datasets.systems`); a shifted/scaled sequence stores its
matrix once with per-system ``matrix_scale``/``matrix_shift`` attributes. Any
systems file (e.g. the smoke frames of ``krylearn data poisson``) reads as a
sequence.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.sparse

from ..solvers.bandit.base import check_range

from ..datasets.systems import LinearSystem, SystemsFile, SystemsWriter, affine_matrix

__all__ = [
    "Sequence",
    "laplacian_2d",
    "shifted_laplacian",
    "heat2d",
    "heat_kappa",
    "write_sequence",
    "read_sequence",
    "SHIFT_DISTRIBUTIONS",
]

#: (a, b) of the Beta distribution of the shifts ``c = -0.15 + 0.6 Beta(a, b)``
SHIFT_DISTRIBUTIONS = {"low": (2.0, 6.0), "high": (0.5, 1.5)}
_SHIFT_LO, _SHIFT_WIDTH = -0.15, 0.6


# ---------------------------------------------------------------------------
# the sequence object
# ---------------------------------------------------------------------------
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
                context_range = _span(contexts)
        return cls(name, len(systems), systems.__getitem__, contexts=contexts, context_range=context_range,
                   meta=meta)


def _span(values: np.ndarray) -> tuple[float, float]:
    lo, hi = float(np.min(values)), float(np.max(values))
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    return lo, hi


def _check_int(name: str, value, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)) or value < lo:
        raise ValueError(f"{name} must be an int >= {lo}, got {value!r}")
    return int(value)


# ---------------------------------------------------------------------------
# matrices
# ---------------------------------------------------------------------------
def laplacian_2d(grid: int, h: float = 1.0) -> scipy.sparse.csr_matrix:
    """Negative 5-point Laplacian of a ``grid x grid`` interior, Dirichlet 0, divided by ``h^2``.

    Parameters
    ----------
    grid : int
        Interior points per side (>= 1); unknown ``k = i * grid + j`` sits at
        ``(x, y) = ((i + 1) h, (j + 1) h)``.
    h : float
        Grid spacing (``1`` gives MATLAB's ``delsq(numgrid('S', grid + 2))``:
        4 on the diagonal, -1 to each neighbour).

    Returns
    -------
    scipy.sparse.csr_matrix, shape (grid**2, grid**2), float64
        Symmetric positive definite, canonical CSR (sorted indices, full diagonal).
    """
    grid = _check_int("grid", grid, 1)
    if not (isinstance(h, numbers.Real) and math.isfinite(h) and h > 0):
        raise ValueError(f"h must be a positive number, got {h!r}")
    T = scipy.sparse.diags([-np.ones(grid - 1), 2 * np.ones(grid), -np.ones(grid - 1)], [-1, 0, 1],
                           shape=(grid, grid), dtype=np.float64)
    I = scipy.sparse.identity(grid, dtype=np.float64)
    L = scipy.sparse.csr_matrix(scipy.sparse.kron(I, T) + scipy.sparse.kron(T, I))
    L.sum_duplicates()
    L.sort_indices()
    if h != 1.0:
        L.data /= h * h
    return L


# ---------------------------------------------------------------------------
# synthetic shifted Laplacians
# ---------------------------------------------------------------------------
def _truncated_normal(rng: np.random.Generator, n: int) -> np.ndarray:
    radius = math.sqrt(n)
    while True:
        b = rng.standard_normal(n)
        if np.linalg.norm(b) <= radius:
            return b


def shifted_laplacian(T: int = 5000, *, variance: str = "low", grid: int = 10, seed: int = 0) -> Sequence:
    """The paper's synthetic sequence ``A_t = L + c_t I``, ``b_t`` truncated Gaussian.

    Parameters
    ----------
    T : int
        Number of instances (the paper: 5000).
    variance : {"low", "high"}
        ``c_t = -0.15 + 0.6 Beta(2, 6)`` ("low") or ``-0.15 + 0.6 Beta(1/2, 3/2)``
        ("high"); both have mean 0 and lie in ``[-0.15, 0.45]``.
    grid : int
        Interior points per side of the Laplacian (10 gives ``n = 100``, the
        paper's ``delsq(numgrid('S', 12))``).
    seed : int
        Seeds a ``numpy.random.default_rng``: all shifts are drawn first, then
        the right-hand sides in order (each by rejection: standard normal
        until ``||b|| <= sqrt(n)``).

    Returns
    -------
    Sequence
        Instance ``t``: ``A`` (n, n) CSR, ``b`` (1, n) float64, no reference
        ``x``, ``attrs = {"context": c_t, "step": t}``. ``context_range`` is
        ``(-0.15, 0.45)``. Every ``A_t`` is SPD: its smallest eigenvalue is
        ``lambda_min(L) + c_t >= 4 - 4 cos(pi / (grid + 1)) - 0.15`` (``0.012``
        for ``grid = 10``; at ``grid >= 12`` the smallest shifts make ``A_t``
        indefinite, ``ValueError``).
    """
    T = _check_int("T", T, 1)
    grid = _check_int("grid", grid, 1)
    seed = _check_int("seed", seed, 0)
    if variance not in SHIFT_DISTRIBUTIONS:
        raise ValueError(f"variance must be one of {sorted(SHIFT_DISTRIBUTIONS)}, got {variance!r}")
    lam_min = 4.0 - 4.0 * math.cos(math.pi / (grid + 1))
    if lam_min + _SHIFT_LO <= 0:
        raise ValueError(f"grid={grid}: the smallest eigenvalue of L is {lam_min:.4g} < 0.15, so shifts down to "
                         "-0.15 make A_t indefinite; use grid <= 11")
    a, b_ = SHIFT_DISTRIBUTIONS[variance]
    rng = np.random.default_rng(seed)
    c = _SHIFT_LO + _SHIFT_WIDTH * rng.beta(a, b_, size=T)
    n = grid * grid
    B = np.stack([_truncated_normal(rng, n) for _ in range(T)])
    L = laplacian_2d(grid)
    scales = np.ones(T)
    shifts = c.copy()

    def build(t: int) -> LinearSystem:
        return LinearSystem(affine_matrix(L, 1.0, float(shifts[t])), B[t], grid_shape=(grid, grid),
                            attrs={"context": float(c[t]), "step": int(t)})

    meta = {
        "kind": f"shifted-{variance}",
        "T": T,
        "variance": variance,
        "grid": grid,
        "n": n,
        "seed": seed,
        "shift": f"c = -0.15 + 0.6 * Beta({a:g}, {b_:g})",
        "matrix": "A_t = L + c_t I, L = 5-point Laplacian (diagonal 4) of the grid x grid interior",
        "rhs": "standard normal truncated to ||b|| <= sqrt(n) by rejection",
        "context": "c_t",
    }
    return Sequence(f"shifted-{variance}-n{n}-T{T}-s{seed}", T, build, contexts=c,
                    context_range=(-0.15, 0.45), meta=meta, affine=(L, scales, shifts))


# ---------------------------------------------------------------------------
# 2D heat equation, Crank–Nicolson
# ---------------------------------------------------------------------------
def heat_kappa(t):
    """Diffusion coefficient ``kappa(t) = max(0.1 sin 2 pi t, -10 sin 2 pi t)`` (values in [0, 10]).

    The authors' code (``h2d.m``); the paper's text says ``0.01`` instead of ``0.1``.
    """
    s = np.sin(2.0 * np.pi * np.asarray(t, dtype=np.float64))
    return np.maximum(0.1 * s, -10.0 * s)


def _bump(X: np.ndarray, Y: np.ndarray, cx: float, cy: float, radius: float) -> np.ndarray:
    """``exp(1 - 1 / (1 - |p - c|^2 / r^2))`` inside the disc, 0 outside (the authors' ``bump.m``)."""
    q = ((X - cx) ** 2 + (Y - cy) ** 2) / radius**2
    out = np.zeros_like(q)
    inside = q < 1.0
    out[inside] = np.exp(1.0 - 1.0 / (1.0 - q[inside]))
    return out


class _Heat:
    """State of the heat sequence: the Laplacian once, per-step scales, the reference states."""

    def __init__(self, n: int, steps: int, dt: float):
        self.n, self.steps, self.dt = n, steps, dt
        self.h = 1.0 / (n + 1)
        self.M = laplacian_2d(n, self.h)  # -Lap_h, SPD
        coords = np.arange(1, n + 1) * self.h
        X, Y = np.meshgrid(coords, coords, indexing="ij")  # unknown i * n + j at (x_i, y_j)
        self.X, self.Y = X.reshape(-1), Y.reshape(-1)
        self.t_start = np.arange(steps) * dt
        self.t_half = self.t_start + 0.5 * dt
        self.kappa = heat_kappa(self.t_half)
        self.scales = 0.5 * self.kappa * dt  # A_t = I + scale_t * (-Lap_h)
        self.shifts = np.ones(steps)
        self.U = np.empty((steps + 1, n * n))
        self.U[0] = _bump(self.X, self.Y, 0.5, 0.5, 0.25)

    def forcing(self, tau: float) -> np.ndarray:
        cx = 0.5 + math.cos(16.0 * math.pi * tau) / 4.0
        cy = 0.5 + math.sin(16.0 * math.pi * tau) / 4.0
        return 32.0 * _bump(self.X, self.Y, cx, cy, 0.125)

    def system(self, t: int, with_x: bool = True) -> LinearSystem:
        s = float(self.scales[t])
        A = affine_matrix(self.M, s, 1.0)
        u = self.U[t]
        b = u - s * (self.M @ u) + self.dt * self.forcing(float(self.t_half[t]))
        attrs = {"context": float(self.kappa[t]), "step": int(t), "time": float(self.t_start[t]),
                 "kappa": float(self.kappa[t])}
        return LinearSystem(A, b, x=self.U[t + 1] if with_x else None, grid_shape=(self.n, self.n), attrs=attrs)


def heat2d(n: int = 50, steps: int = 5000, *, dt: float = 1e-3, seed: int = 0, rtol: float = 1e-12,
           method: str = "cg", progress: bool = False) -> Sequence:
    """The paper's 2D heat-equation sequence (Crank–Nicolson, time-varying diffusion).

    ``u_t = kappa(t) Lap u + f(t, x)`` on ``[0, 1]^2``, ``u = 0`` on the boundary,
    5-point finite differences on the ``n x n`` interior (``h = 1/(n+1)``;
    the paper's ``n_x`` points per side with ``(n_x - 1)^2`` unknowns is our
    ``n = n_x - 1``), time step ``dt``, ``steps`` steps from ``t = 0``:

    - ``kappa(t) = max(0.1 sin 2 pi t, -10 sin 2 pi t)`` (:func:`heat_kappa`, the
      authors' code), evaluated at the half step ``t_k + dt/2`` as in their
      ``Heat2D.m``;
    - ``f(t, x) = 32 bump(x; centre (0.5 + cos(16 pi t)/4, 0.5 + sin(16 pi t)/4), radius 1/8)``,
      ``u_0 = bump(x; (0.5, 0.5), 1/4)``, ``bump = exp(1 - 1/(1 - r^2/R^2))`` inside the disc;
    - ``A_k = I - (kappa_k dt / 2) Lap_h``,
      ``b_k = (I + (kappa_k dt / 2) Lap_h) u_k + dt f(t_k + dt/2)``.

    The states ``u_{k+1}`` are computed here once, accurately (``method``,
    default CG, warm-started from ``u_k``, to ``||r|| <= rtol ||b||``), and
    stored as each instance's reference ``x``; ``b_k`` is built from the
    reference ``u_k``. So every method benchmarked on the sequence solves
    exactly the same systems (the paper instead advances the simulation with
    each method's own solution; at a 1e-8 tolerance the difference is far
    below the discretization error).

    Parameters
    ----------
    n : int
        Interior points per side (``n^2`` unknowns), >= 2.
    steps : int
        Number of time steps = instances (the paper: 5000 with ``dt = 1e-3``).
    dt : float
        Time step.
    seed : int
        Recorded in ``meta`` only: the sequence is deterministic.
    rtol : float
        Tolerance of the reference solves.
    method : str
        ``krylearn.solve`` method of the reference solves ("cg", "pcg-ic", "pcg-amg", ...).
    progress : bool
        tqdm bar over the steps.

    Returns
    -------
    Sequence
        Instance ``k``: ``A`` (n^2, n^2) CSR built on demand from the stored
        Laplacian (``scale_k = kappa_k dt / 2``, shift 1), ``b`` (1, n^2), ``x``
        (1, n^2) = ``u_{k+1}``, ``attrs = {"context": kappa_k, "kappa": kappa_k,
        "step": k, "time": t_k}`` with ``kappa_k = kappa(t_k + dt/2)``.
        ``context_range`` is ``(min, max)`` of ``kappa_k`` over the steps.
        ``meta["reference_max_rel_residual"]`` is the worst ``||b - A x|| / ||b||``.
    """
    from ..solvers.api import solve

    n = _check_int("n", n, 2)
    steps = _check_int("steps", steps, 1)
    seed = _check_int("seed", seed, 0)
    if not (isinstance(dt, numbers.Real) and math.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be a positive number, got {dt!r}")
    if not (isinstance(rtol, numbers.Real) and 0 < rtol < 1):
        raise ValueError(f"rtol must be in (0, 1), got {rtol!r}")
    heat = _Heat(n, steps, float(dt))
    # A_k is symmetric by construction: skip the CG family's per-solve symmetry check
    opts = {"check_symmetry": False} if method == "cg" or method.startswith("pcg-") else {}
    worst = 0.0
    iters = 0
    it = range(steps)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc=f"heat2d n={n}x{n} reference solves", unit="step")
    for t in it:
        s = heat.system(t, with_x=False)
        b = s.b[0]
        res = solve(s.A, b, method=method, x0=heat.U[t], rtol=rtol, maxiter=100_000, **opts)
        x = np.asarray(res.x, dtype=np.float64).reshape(-1)
        rel = float(np.linalg.norm(b - s.A @ x) / max(np.linalg.norm(b), 1e-300))
        if not res.converged or not np.isfinite(rel):
            raise RuntimeError(f"heat2d: reference solve of step {t} did not converge ({res.reason}, "
                               f"relative residual {rel:.3g}); try method='pcg-amg'")
        worst = max(worst, rel)
        iters += int(res.iterations)
        heat.U[t + 1] = x
    meta = {
        "kind": "heat2d",
        "n": n,
        "unknowns": n * n,
        "steps": steps,
        "T": steps,
        "dt": float(dt),
        "h": heat.h,
        "seed": seed,
        "kappa": "max(0.1 sin 2 pi t, -10 sin 2 pi t) at the half step t_k + dt/2",
        "forcing": "32 bump(centre 0.5 + (cos 16 pi t, sin 16 pi t)/4, radius 1/8) at t_k + dt/2",
        "initial": "bump(centre (0.5, 0.5), radius 1/4)",
        "matrix": "A_k = I - (kappa_k dt/2) Lap_h, Crank-Nicolson, Dirichlet 0",
        "context": "kappa_k = kappa(t_k + dt/2)",
        "reference": {"method": method, "rtol": float(rtol), "warm_start": True},
        "reference_max_rel_residual": worst,
        "reference_iterations": iters,
    }
    return Sequence(f"heat2d-n{n}-T{steps}", steps, heat.system, contexts=heat.kappa.copy(),
                    context_range=_span(heat.kappa), meta=meta, affine=(heat.M, heat.scales, heat.shifts))


# ---------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------
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
        from tqdm.auto import tqdm

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
    """Lazily opened :class:`SystemsFile` (reopened in a forked process)."""

    def __init__(self, path: str):
        self.path = path
        self._file = None
        self._pid = None
        self.context_key = None  # an attribute other than "context" that serves as the context

    def handle(self) -> SystemsFile:
        if self._file is None or self._pid != os.getpid():
            self._file = SystemsFile(self.path)
            self._pid = os.getpid()
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
            context_range = _span(contexts)
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
