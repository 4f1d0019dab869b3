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

The :class:`Sequence` type lives in :mod:`krylearn.problems.sequence` and
the files (:func:`write_sequence` / :func:`read_sequence`, the
``krylearn.linear_systems`` HDF5 container) in
:mod:`krylearn.problems.sequence_files`; both are importable from here.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import scipy.sparse

from ..datasets.systems import LinearSystem, affine_matrix
from ..solvers.api import solve
from .sequence import Sequence, context_span
from .sequence_files import GENERATOR, read_sequence, write_sequence

__all__ = [
    "GENERATOR",
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
    n = _check_int("n", n, 2)
    steps = _check_int("steps", steps, 1)
    seed = _check_int("seed", seed, 0)
    if not (isinstance(dt, numbers.Real) and math.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be a positive number, got {dt!r}")
    if not (isinstance(rtol, numbers.Real) and 0 < rtol < 1):
        raise ValueError(f"rtol must be in (0, 1), got {rtol!r}")
    heat = _Heat(n, steps, float(dt))
    worst, iters = _reference_solves(heat, method, rtol, progress)
    meta = _heat_meta(heat, seed, method, rtol, worst, iters)
    return Sequence(f"heat2d-n{n}-T{steps}", steps, heat.system, contexts=heat.kappa.copy(),
                    context_range=context_span(heat.kappa), meta=meta, affine=(heat.M, heat.scales, heat.shifts))


def _heat_meta(heat: _Heat, seed: int, method: str, rtol: float, worst: float, iters: int) -> dict:
    return {
        "kind": "heat2d",
        "n": heat.n,
        "unknowns": heat.n * heat.n,
        "steps": heat.steps,
        "T": heat.steps,
        "dt": float(heat.dt),
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


def _reference_solves(heat: _Heat, method: str, rtol: float, progress: bool) -> tuple[float, int]:
    """Fill ``heat.U[1:]`` step by step (warm-started solves); returns (worst relative residual, iterations)."""
    # A_k is symmetric by construction: skip the CG family's per-solve symmetry check
    opts = {"check_symmetry": False} if method == "cg" or method.startswith("pcg-") else {}
    worst = 0.0
    iters = 0
    it = range(heat.steps)
    if progress:
        from tqdm.auto import tqdm  # optional dependency: only with progress=True

        it = tqdm(it, desc=f"heat2d n={heat.n}x{heat.n} reference solves", unit="step")
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
    return worst, iters


