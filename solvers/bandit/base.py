"""The tuner interface shared by every parameter-selection strategy.

A *tuner* picks a scalar solver parameter (SOR's relaxation factor ``omega``
by default) for each linear system of a sequence and learns from the
outcome of the solve that used it::

    value = tuner.suggest(context=c, instance=inst)    # before the solve
    result = krylearn.solve(inst.A, inst.b[0], method="sor", omega=value)
    tuner.update(value, result, context=c)             # learn from its SolveResult

Bandits read only ``result.iterations`` (bandit feedback); :class:`Young`
also reads ``result.residuals``; baselines such as :class:`YoungSpectral`
may look at the instance itself and count the matrix-vector products they
spend in :attr:`Tuner.extra_matvecs`.
"""

from __future__ import annotations

import numbers

import numpy as np

#: The paper's practical grid: 20 values of omega on [1, 1.95].
DEFAULT_GRID = np.linspace(1.0, 1.95, 20)


def check_grid(grid, name: str = "grid") -> np.ndarray:
    """Validate a grid of candidate values (arms).

    Parameters
    ----------
    grid : array_like of float, shape (K,), or None
        Candidate parameter values; ``None`` gives :data:`DEFAULT_GRID`.

    Returns
    -------
    numpy.ndarray of float64, shape (K,)
        Sorted ascending (the order of the arms is the sorted order).

    Raises
    ------
    ValueError
        Empty, not 1-D, non-finite or duplicated values.
    """
    if grid is None:
        return DEFAULT_GRID.copy()
    try:
        g = np.asarray(grid, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a 1-D array of real numbers, got {grid!r}") from None
    if g.ndim == 0:
        g = g.reshape(1)
    if g.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {g.shape}")
    if g.size == 0:
        raise ValueError(f"{name} must contain at least one value, got an empty {name}")
    if not np.all(np.isfinite(g)):
        raise ValueError(f"{name} must be finite, got {g.tolist()}")
    g = np.sort(g)
    if np.any(np.diff(g) == 0):
        raise ValueError(f"{name} must not contain duplicate values, got {g.tolist()}")
    return g


def check_omega_grid(grid: np.ndarray, name: str = "grid", hi: float = 2.0, hi_open: bool = True) -> None:
    """Raise ``ValueError`` naming ``name`` unless every value lies in ``(0, hi)`` (or ``(0, hi]``)."""
    bad = (grid <= 0) | ((grid >= hi) if hi_open else (grid > hi))
    if np.any(bad):
        rng = f"(0, {hi:g})" if hi_open else f"(0, {hi:g}]"
        raise ValueError(f"{name} values must lie in {rng} for omega, got {grid[bad].tolist()}")


def check_context(context, name: str = "context"):
    """``None`` or a finite real scalar (returned as float)."""
    if context is None:
        return None
    if isinstance(context, np.ndarray) and context.size == 1:
        context = context.reshape(()).item()
    if not isinstance(context, numbers.Real) or isinstance(context, bool) or not np.isfinite(context):
        raise ValueError(f"{name} must be a finite real number or None, got {context!r}")
    return float(context)


def check_range(context_range, name: str = "context_range") -> tuple[float, float]:
    """A finite interval ``(a, b)`` with ``a < b``."""
    try:
        a, b = (float(v) for v in context_range)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (a, b) of real numbers, got {context_range!r}") from None
    if not (np.isfinite(a) and np.isfinite(b) and a < b):
        raise ValueError(f"{name} must be a finite interval (a, b) with a < b, got {context_range!r}")
    return a, b


def cost_of(result) -> float:
    """The cost a bandit observes: the iterations of a solve (summed over a batch).

    A solve that stopped at its iteration limit costs that limit (as in the
    paper).
    """
    it = getattr(result, "iterations", None)
    if it is None:
        raise TypeError(f"result must be a SolveResult (with .iterations), got {type(result).__name__}")
    c = float(np.sum(it))
    if not np.isfinite(c) or c < 0:
        raise ValueError(f"result.iterations must be a non-negative count, got {it!r}")
    return c


class Tuner:
    """Base class of the parameter tuners.

    Attributes
    ----------
    name : str
        Short label used in tables.
    grid : numpy.ndarray of float64, shape (K,)
        Candidate values (arms); tuners that choose continuous values clip
        them to ``[grid.min(), grid.max()]``.
    extra_matvecs : int
        Matrix-vector products the tuner itself spent (0 for the bandits).
    t : int
        Number of updates received so far.
    """

    name = "tuner"

    def __init__(self, grid=None):
        self.grid = check_grid(grid)
        self.extra_matvecs = 0
        self.t = 0

    @property
    def K(self) -> int:
        """Number of arms."""
        return int(self.grid.size)

    def arm(self, value) -> int:
        """Index of the grid value nearest ``value``."""
        return int(np.argmin(np.abs(self.grid - float(value))))

    def suggest(self, context=None, instance=None) -> float:
        """The parameter value to use for the next instance.

        Parameters
        ----------
        context : float, optional
            The instance's scalar context (``attrs["context"]``).
        instance : LinearSystem, optional
            The instance itself; only baselines that pay extra matvecs read it.
        """
        raise NotImplementedError

    def update(self, value, result, context=None) -> None:
        """Learn from the :class:`~krylearn.solvers.result.SolveResult` of the solve that used ``value``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} K={self.K} t={self.t}>"


__all__ = ["DEFAULT_GRID", "Tuner", "check_context", "check_grid", "check_omega_grid", "check_range", "cost_of"]
