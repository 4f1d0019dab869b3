"""Grid coordinates of PDE fields: layouts, checks and 1-D interpolation weights.

A field of ``s`` points along an axis of the domain ``[lo, hi]`` (default
``[0, 1]``) has one of three layouts:

``"node"``
    end points on the domain's edges: ``lo + (hi - lo) * i / (s - 1)``
    (``linspace(lo, hi, s)``; FNO and LSM grids, the Darcy system's nodes).
``"cell"``
    cell centres, the first point half a cell in: ``lo + (hi - lo) * (i + 1/2) / s``
    (PDEBench files, finite-volume codes).
``"general"``
    any other strictly monotone coordinates (e.g. a sub-sampled cell-centred
    grid, whose first point is ``h / (2 r)`` in).

:func:`interpolation_matrix` gives the weights that carry values from one
set of coordinates to another, so fields move between layouts by their
points' actual positions rather than by their indices.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "LAYOUTS",
    "check_coordinates",
    "classify_coordinates",
    "grid_coordinates",
    "interpolation_matrix",
    "same_points",
]

#: a point this close (as a fraction of the spacing) to the middle of two is a tie for "nearest"
_TIE = 1e-3

#: the layouts :func:`classify_coordinates` tells apart
LAYOUTS = ("node", "cell", "general")

#: tolerance of :func:`classify_coordinates`, as a fraction of the grid spacing
#: (float32 storage of a 1000-point grid is exact to about 1e-4 of a cell)
LAYOUT_TOL = 1e-3


def _domain(domain) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in domain)
    except (TypeError, ValueError):
        raise TypeError(f"domain must be a pair (lo, hi) of numbers, got {domain!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
        raise ValueError(f"domain must be finite with lo < hi, got {domain!r}")
    return lo, hi


def grid_coordinates(s: int, layout: str = "node", domain=(0.0, 1.0)) -> np.ndarray:
    """The ``s`` coordinates of a ``"node"`` or ``"cell"`` grid on ``domain``.

    Returns
    -------
    numpy.ndarray, (s,), float64
    """
    if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1:
        raise ValueError(f"s must be a positive integer, got {s!r}")
    lo, hi = _domain(domain)
    if layout == "node":
        return np.linspace(lo, hi, int(s)) if s > 1 else np.array([(lo + hi) / 2])
    if layout == "cell":
        return lo + (hi - lo) * (np.arange(int(s)) + 0.5) / s
    raise ValueError(f"layout must be 'node' or 'cell', got {layout!r}")


def check_coordinates(name: str, c, s: int | None = None) -> np.ndarray:
    """``c`` as float64 ``(s,)`` coordinates, or ``ValueError`` naming ``name`` and what is wrong.

    Coordinates must be one-dimensional, finite and strictly monotone
    (increasing or decreasing); ``s``, when given, is the required length.
    """
    try:
        c = np.asarray(c, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an array of numbers, got {type(c).__name__}") from None
    if c.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {c.shape}")
    if s is not None and c.shape[0] != s:
        raise ValueError(f"{name} must have {s} points (the grid's size along its axis), got {c.shape[0]}")
    if not np.isfinite(c).all():
        raise ValueError(f"{name} contains NaN or Inf")
    d = np.diff(c)
    if len(c) > 1 and not ((d > 0).all() or (d < 0).all()):
        i = int(np.nonzero(d * np.sign(d[0]) <= 0)[0][0]) if d[0] != 0 else 0
        raise ValueError(f"{name} must be strictly monotone, but {name}[{i}] = {c[i]:g} and "
                         f"{name}[{i + 1}] = {c[i + 1]:g}")
    return c


def classify_coordinates(c, domain=(0.0, 1.0), tol: float = LAYOUT_TOL) -> str:
    """The layout of increasing coordinates ``c`` on ``domain``: ``"node"``, ``"cell"`` or ``"general"``.

    ``c`` matches a layout when every point lies within ``tol`` grid
    spacings of that layout's points.  Decreasing, single-point or
    non-uniform coordinates are ``"general"``.
    """
    c = check_coordinates("c", c)
    lo, hi = _domain(domain)
    s = len(c)
    if s < 2 or c[1] < c[0]:
        return "general"
    for layout, spacing in (("node", (hi - lo) / (s - 1)), ("cell", (hi - lo) / s)):
        if np.abs(c - grid_coordinates(s, layout, (lo, hi))).max() <= tol * spacing:
            return layout
    return "general"


def same_points(c1, c2, tol: float = 0.25) -> bool:
    """Whether two coordinate arrays name the same points, up to ``tol`` of the smaller grid spacing.

    The default quarter of a cell treats, e.g., the 85 points
    ``(5 i + 1/2) / 421`` (FNO's 421 cell centres sub-sampled by 5) as the
    85 nodes ``i / 84``; a node grid and a cell-centred grid of the same size
    differ by half a cell and are different points.
    """
    c1, c2 = np.asarray(c1, dtype=np.float64), np.asarray(c2, dtype=np.float64)
    if c1.shape != c2.shape:
        return False
    if len(c1) < 2:
        return bool(np.array_equal(c1, c2))
    h = min(np.abs(np.diff(c1)).min(), np.abs(np.diff(c2)).min())
    return bool(np.abs(c1 - c2).max() <= tol * h)


def _increasing(src: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(sorted coordinates, their indices in src)`` for strictly monotone ``src``."""
    order = np.arange(len(src)) if len(src) < 2 or src[1] > src[0] else np.arange(len(src))[::-1]
    return src[order], order


def interpolation_matrix(src, dst, mode: str = "linear") -> np.ndarray:
    """Weights ``W`` with ``W @ f(src) ~= f(dst)``, for 1-D strictly monotone coordinates.

    Parameters
    ----------
    src : array_like, (n,)
        Coordinates of the known values (increasing or decreasing).
    dst : array_like, (m,)
        Coordinates to evaluate at (any order).
    mode : {"linear", "nearest"}
        ``"linear"``: piecewise-linear interpolation between the two
        neighbouring source points, and *linear extrapolation* from the two
        outermost ones beyond the source range (e.g. the half-cell border
        between a cell-centred grid and the domain's edge).  ``"nearest"``:
        the value of the nearest source point (a point midway between two,
        to ``1e-3`` of their spacing, which float32 coordinates need, takes
        the one of even index, as ``torch.round`` of the index would);
        beyond the range, the outermost value.

    Returns
    -------
    numpy.ndarray, (m, n), float64
        Rows sum to one.  Equal ``src`` and ``dst`` give the identity.
    """
    src = check_coordinates("src", src)
    dst = np.asarray(dst, dtype=np.float64).ravel()
    if not np.isfinite(dst).all():
        raise ValueError("dst contains NaN or Inf")
    if mode not in ("linear", "nearest"):
        raise ValueError(f"mode must be 'linear' or 'nearest', got {mode!r}")
    xs, order = _increasing(src)
    W = np.zeros((len(dst), len(src)))
    rows = np.arange(len(dst))
    if len(src) == 1:
        W[:, 0] = 1.0
        return W
    j = np.clip(np.searchsorted(xs, dst, side="right") - 1, 0, len(xs) - 2)
    t = (dst - xs[j]) / (xs[j + 1] - xs[j])
    if mode == "nearest":
        t = np.clip(t, 0.0, 1.0)
        tie = np.abs(t - 0.5) <= _TIE
        k = np.where(tie, j + j % 2, np.where(t > 0.5, j + 1, j))
        W[rows, order[k]] = 1.0
        return W
    W[rows, order[j]] = 1.0 - t
    W[rows, order[j + 1]] += t
    return W
