"""Young: omega from the convergence factor read off each SOR residual history (beyond the paper).

Bandits observe only the iteration count of a solve.  The residual history
of an SOR solve says more: its tail decays like ``lambda^k`` with
``lambda`` the spectral radius of the SOR iteration matrix.  For a
consistently ordered matrix (5-point/7-point stencils in natural or
red-black order, any shift ``A + c I``) Young's relation links it to the
spectral radius ``mu`` of the Jacobi iteration matrix ``I - D^-1 A``:

    (lambda + omega - 1)^2 = lambda omega^2 mu^2
    =>  mu = (lambda + omega - 1) / (omega sqrt(lambda)),

and the optimal factor is ``omega* = 2 / (1 + sqrt(1 - mu^2))``, with
``rho = omega* - 1``.  So every solve yields an estimate of ``mu`` for free
(no extra matrix work), and the next instance can use ``omega*``.

What :class:`Young` does:

* **estimate** ``lambda`` as the geometric mean of the residual ratios over
  the tail of the history (the last half, never the first ``skip``
  iterations); a solve shorter than ``max(min_iterations, 2 sqrt(n))``
  iterations carries no estimate (its tail is still transient, see below);
* **over-relaxed solves**: for ``omega >= omega*`` every SOR eigenvalue has
  modulus ``omega - 1`` whatever ``mu`` is, so an observed
  ``lambda <= (1 + bound_tol)(omega - 1)`` only says
  ``mu <= 2 sqrt(omega - 1) / omega`` (the value for which ``omega`` would
  be optimal).  Such a solve is kept as an upper bound on ``mu``
  (censored data: the fit is pulled down to it where it exceeds it);
* **track** ``mu``: with a context (``attrs["context"]``), a least-squares
  Chebyshev fit of ``mu`` against the context (degree up to ``degree``, at
  most the number of distinct informative contexts minus one; contexts
  mapped to [-1, 1] by ``context_range`` or by the range seen so far).  For
  the shifted Laplacian ``mu(c) = mu_0 d / (d + c)`` is smooth, so a
  degree-3 fit is essentially exact.  Without a context, the instance index
  plays the context: a line fitted to the last ``local`` solves follows a
  slowly varying sequence one step ahead;
  after ``probe_after`` over-relaxed solves in a row it probes a slightly
  smaller omega, since over-relaxed solves cannot reveal that ``mu``
  dropped.  Before the first informative solve it starts at the middle of
  the grid's range and, while solves are over-relaxed, moves down;
* **detect** when the relation does not hold and hand over to ``fallback``
  (default :class:`TsallisINF` on the same grid) for good: a solve that
  diverged, hit ``maxiter`` without an estimate, ``lambda >= 1`` or
  ``mu >= 1`` (Young's formula then has no optimum), ``2 window`` solves
  in a row too short to give an estimate, or more than half of
  the last ``window`` checked solves failing the one robust prediction the
  relation makes: at (or above) the predicted optimum every SOR eigenvalue
  has modulus ``omega - 1``, so ``lambda / (omega - 1)`` must lie within
  ``[1/tolerance, tolerance]`` (``tolerance = 1.25``; on the paper's
  synthetic sequences it stays within [0.89, 1.19]).  ``reason`` says why.
  Steep-side predictions (omega below the optimum) are not checked: near
  ``mu = 1`` a tiny error in ``mu`` changes ``lambda`` a lot.

Limitation (measured): the residual norm of lexicographic SOR reaches its
asymptotic rate only after O(grid width) sweeps (information travels one
grid line per sweep; the iteration matrix is far from normal).  On the
10x10 synthetic sequences solves take 20-400 sweeps and the estimates are
accurate to ~1e-3 in ``mu``; on a 24x24 Crank-Nicolson heat sequence with
10-60 sweeps per solve the tail rate overestimated ``lambda`` by 10-35 %
and steered omega far too high.  Hence the ``2 sqrt(n)`` minimum length:
there no solve qualified and the fallback took over after 20 solves.

Only plain (forward) SOR satisfies Young's relation: ``update`` raises
``ValueError`` for a result whose ``method`` is not ``"sor"`` or
``"gauss_seidel"`` (for SSOR, and for SSOR-preconditioned CG, whose
residual history is CG's, use :class:`TsallisINF` or :class:`ChebCB`).
Suggestions are continuous values clipped to ``[grid.min(), grid.max()]``,
not grid points.
"""

from __future__ import annotations

import collections
import numbers

import numpy as np

from .base import Tuner, check_context, check_omega_grid, check_range, cost_of
from .tsallis import TsallisINF

_SOR_METHODS = ("sor", "gauss_seidel", "gauss-seidel")


# ------------------------------------------------------------- the formulas
def convergence_factor(residuals, *, skip: int = 3, tail: float = 0.5, min_ratios: int = 4) -> float:
    """Asymptotic convergence factor from a residual history; NaN if it is too short.

    Parameters
    ----------
    residuals : array_like of float, shape (k+1,)
        Residual norms (relative or absolute), the initial one first.
    skip : int
        Leading iterations never used.
    tail : float in (0, 1]
        Fraction of the history (its end) used.
    min_ratios : int
        Fewest consecutive ratios accepted.

    Returns
    -------
    float
        ``(r_k / r_j) ** (1 / (k - j))`` with ``j = max(skip, k - floor(tail k))``.
    """
    r = np.asarray(residuals, dtype=np.float64).reshape(-1)
    k = r.size - 1
    j = max(int(skip), k - int(np.floor(tail * k)))
    if k - j < min_ratios or not (r[j] > 0 and r[k] > 0) or not np.all(np.isfinite(r[j:])):
        return float("nan")
    return float((r[k] / r[j]) ** (1.0 / (k - j)))


def jacobi_radius(lam, omega):
    """Invert Young's relation: ``mu = (lam + omega - 1) / (omega sqrt(lam))``."""
    lam = np.asarray(lam, dtype=np.float64)
    return (lam + omega - 1.0) / (omega * np.sqrt(lam))


def critical_radius(omega):
    """The ``mu`` for which ``omega`` is optimal, ``2 sqrt(omega - 1) / omega`` (0 for omega <= 1)."""
    omega = np.asarray(omega, dtype=np.float64)
    return 2.0 * np.sqrt(np.maximum(omega - 1.0, 0.0)) / omega


def optimal_omega(mu):
    """Young's ``omega* = 2 / (1 + sqrt(1 - mu^2))`` for ``0 <= mu < 1``."""
    mu = np.clip(np.asarray(mu, dtype=np.float64), 0.0, 1.0)
    return 2.0 / (1.0 + np.sqrt(1.0 - mu * mu))


def sor_factor(omega, mu):
    """Spectral radius of SOR(omega) for a consistently ordered matrix with Jacobi radius ``mu``."""
    omega = np.asarray(omega, dtype=np.float64)
    mu = np.asarray(mu, dtype=np.float64)
    disc = omega * omega * mu * mu - 4.0 * (omega - 1.0)
    root = (omega * mu + np.sqrt(np.maximum(disc, 0.0))) / 2.0
    return np.where(disc > 0, root * root, np.abs(omega - 1.0))


# ------------------------------------------------------------------ the tuner
class Young(Tuner):
    """Young's optimal omega from convergence factors observed along the sequence.

    Parameters
    ----------
    grid : array_like of float, optional
        Only its range matters (default [1, 1.95]); values must lie in (0, 2).
        Also the fallback bandit's arms.
    fallback : Tuner, optional
        Takes over when the relation fails (default ``TsallisINF(grid, seed=seed)``).
    seed : int
        Seed of the default fallback.
    context_range : (float, float), optional
        Interval mapped to [-1, 1] for the fit against the context (default:
        the range of the contexts seen so far).
    degree : int
        Largest Chebyshev degree of the ``mu``-versus-context fit (default 3).
    start : float, optional
        First omega (default: the middle of the grid's range).
    local : int
        Context-free mode: solves in the local linear fit of ``mu`` against the instance index.
    probe_after : int
        Context-free mode: over-relaxed solves in a row before probing lower.
    bound_tol : float
        ``lambda <= (1 + bound_tol)(omega - 1)`` counts as over-relaxed.
    tolerance, window, min_points
        Fallback test (see the module docstring); checks start once
        ``min_points`` informative solves are in.
    skip, tail
        Passed to :func:`convergence_factor`.
    history : int
        Solves kept for the fit.
    min_iterations : int
        Solves shorter than ``max(min_iterations, 2 sqrt(n))`` carry no
        estimate (``sqrt(n)``: the grid width of a 2-D problem, the length
        of SOR's transient).

    Attributes
    ----------
    fallen_back : bool
    reason : str or None
        Why it fell back.
    observations : list of dict
        Per update: ``context``, ``omega``, ``lam``, ``mu`` (NaN when none),
        ``kind`` ("informative", "bound", "none").
    """

    name = "young"

    def __init__(self, grid=None, *, fallback=None, seed=0, context_range=None, degree: int = 3, start=None,
                 local: int = 6, probe_after: int = 3, bound_tol: float = 0.1, tolerance: float = 1.25,
                 window: int = 10, min_points: int = 3, skip: int = 3, tail: float = 0.5, history: int = 500,
                 min_iterations: int = 15):
        super().__init__(grid)
        check_omega_grid(self.grid, name="grid")
        if fallback is None:
            fallback = TsallisINF(self.grid, seed=seed)
        if not isinstance(fallback, Tuner):
            raise TypeError(f"fallback must be a Tuner, got {type(fallback).__name__}")
        self.fallback = fallback
        self.context_range = None if context_range is None else check_range(context_range)
        if not isinstance(degree, numbers.Integral) or not 0 <= degree <= 8:
            raise ValueError(f"degree must be an integer in [0, 8], got {degree!r}")
        lo, hi = float(self.grid[0]), float(self.grid[-1])
        if start is None:
            start = 0.5 * (lo + hi) if hi > lo else lo
        if not isinstance(start, numbers.Real) or not 0 < start < 2:
            raise ValueError(f"start must be a number in (0, 2), got {start!r}")
        if not isinstance(local, numbers.Integral) or local < 2:
            raise ValueError(f"local must be an integer >= 2, got {local!r}")
        for nm, v in (("tolerance", tolerance), ("bound_tol", bound_tol), ("tail", tail)):
            if not isinstance(v, numbers.Real) or not np.isfinite(v) or v <= 0:
                raise ValueError(f"{nm} must be a positive number, got {v!r}")
        if tolerance <= 1:
            raise ValueError(f"tolerance must be > 1, got {tolerance!r}")
        self.degree = int(degree)
        self.start = float(start)
        self.local = int(local)
        self.probe_after = int(probe_after)
        self.bound_tol = float(bound_tol)
        self.tolerance = float(tolerance)
        self.window = int(window)
        self.min_points = int(min_points)
        self.skip, self.tail = int(skip), float(tail)
        self.min_iterations = int(min_iterations)
        self.fallen_back = False
        self.reason = None
        self.observations: list[dict] = []
        self._recent = collections.deque(maxlen=int(history))  # (context, mu, is_bound)
        self._checks = collections.deque(maxlen=self.window)
        self._bound_run = 0
        self._blind = 0  # solves in a row without an estimate
        self._uncovered = {-1: 0, 1: 0}  # over-relaxed solves outside the informative contexts, per side
        self._contextual = None

    # ---------------------------------------------------------------- model
    def _z(self, c, cs):
        if self.context_range is not None:
            a, b = self.context_range
        else:
            a, b = float(np.min(cs)), float(np.max(cs))
            if not b > a:
                return np.zeros_like(np.asarray(c, dtype=np.float64))
        return np.clip(2.0 * (np.asarray(c, dtype=np.float64) - a) / (b - a) - 1.0, -1.0, 1.0)

    def _data(self):
        if not self._recent:
            return None
        ctx = np.array([o[0] for o in self._recent], dtype=np.float64)
        mu = np.array([o[1] for o in self._recent], dtype=np.float64)
        bound = np.array([o[2] for o in self._recent], dtype=bool)
        age = np.arange(len(self._recent) - 1, -1, -1, dtype=np.float64)
        return ctx, mu, bound, age

    def _fit_predict(self, context):
        """Fitted ``mu`` at ``context`` (None if nothing informative yet)."""
        d = self._data()
        if d is None:
            return None
        ctx, mu, bound, _ = d
        info = ~bound
        if not info.any():
            return None
        if context is None or not self._contextual:
            # no context: the instance index is the context, fitted by a line over the last `local` solves
            keep = slice(max(0, ctx.size - self.local), None)
            ctx, mu, bound = ctx[keep], mu[keep], bound[keep]
            info = ~bound
            if not info.any():
                return float(np.min(mu))
            context, degree = float(self.t), min(self.degree, 1)
        else:
            degree = self.degree
        # extrapolate a little (15 % of the contexts' span) beyond the informative solves, no further
        ci = ctx[info]
        margin = 0.15 * float(np.ptp(np.append(ctx, context)))
        c0 = min(max(context, ci.min() - margin), ci.max() + margin)
        span = np.append(ctx, c0)
        z = self._z(ctx, span)
        z0 = float(self._z(c0, span))
        deg = min(degree, np.unique(np.round(z[info], 6)).size - 1)
        vals = mu.copy()
        use = info.copy()
        coef = None
        for _ in range(3):  # censored least squares: bound points enter where the fit exceeds them
            V = np.polynomial.chebyshev.chebvander(z[use], deg)
            coef = np.linalg.lstsq(V, vals[use], rcond=None)[0]
            if not bound.any():
                break
            pred_b = np.polynomial.chebyshev.chebval(z[bound], coef)
            new_use = info.copy()
            new_use[np.nonzero(bound)[0][pred_b > mu[bound]]] = True
            if np.array_equal(new_use, use):
                break
            use = new_use
        if c0 == context:
            return float(np.polynomial.chebyshev.chebval(z0, coef))
        # outside the informative contexts: first-order Taylor expansion at the nearest edge
        ze = float(self._z(ci.min() if context < ci.min() else ci.max(), span))
        slope = float(np.polynomial.chebyshev.chebval(ze, np.polynomial.chebyshev.chebder(coef))) if deg else 0.0
        return float(np.polynomial.chebyshev.chebval(ze, coef) + slope * (z0 - ze))

    def predicted_mu(self, context=None):
        """Current estimate of the Jacobi spectral radius at ``context`` (None before any information)."""
        c = check_context(context)
        m = self._fit_predict(c)
        return None if m is None else float(np.clip(m, 0.0, 1.0 - 1e-12))

    # ------------------------------------------------------------ interface
    def _side(self, c) -> int:
        """0 if context ``c`` lies within the informative solves' contexts (5 % margin), else -1 / +1."""
        d = self._data()
        if d is None or c is None:
            return 0
        ctx, _, bound, _ = d
        if not (~bound).any():
            return 0
        span = float(np.ptp(np.append(ctx, c)))
        ci = ctx[~bound]
        if c < ci.min() - 0.05 * span:
            return -1
        if c > ci.max() + 0.05 * span:
            return 1
        return 0

    def suggest(self, context=None, instance=None) -> float:
        if self.fallen_back:
            return float(self.fallback.suggest(context=context, instance=instance))
        c = check_context(context)
        lo, hi = float(self.grid[0]), float(self.grid[-1])
        mu = self.predicted_mu(c)
        if mu is None:
            if not self.observations:
                omega = self.start
            else:  # only over-relaxed (or uninformative) solves so far: move down
                last = self.observations[-1]
                omega = 1.0 + 0.7 * (last["omega"] - 1.0) if last["kind"] == "bound" else last["omega"]
        else:
            omega = float(optimal_omega(mu))
            if c is not None and self._contextual:
                side = self._side(c)
                if side and self._uncovered[side]:
                    # extrapolating to where the last solves were over-relaxed: descend until one is informative
                    omega = 1.0 + 0.85 ** self._uncovered[side] * (omega - 1.0)
            elif self._bound_run >= self.probe_after:
                omega = 1.0 + 0.95 * (omega - 1.0)  # over-relaxed solves hide a falling mu: probe below
        return float(np.clip(omega, lo, hi))

    def update(self, value, result, context=None) -> None:
        """Read the convergence factor of an SOR solve with ``omega = value``."""
        if self.fallen_back:
            self.fallback.update(value, result, context=context)
            self.t += 1
            return
        method = getattr(result, "method", None)
        if method not in _SOR_METHODS:
            raise ValueError(
                f"result.method must be 'sor' or 'gauss_seidel' for the Young tuner, got {method!r}: Young's "
                "relation holds for plain SOR only (SSOR-preconditioned CG's residuals are CG's); use "
                "TsallisINF or ChebCB there"
            )
        if getattr(result, "info", {}).get("sweep", "forward") != "forward":
            raise ValueError(f"the Young tuner needs forward SOR sweeps, got sweep={result.info['sweep']!r}")
        cost_of(result)
        c = check_context(context)
        if self._contextual is None:
            self._contextual = c is not None
        omega = float(value)
        pred_mu = self.predicted_mu(c)  # what suggest() assumed for this solve
        self.t += 1
        res = np.asarray(result.residuals, dtype=np.float64)
        if res.ndim != 1:
            raise ValueError(f"result.residuals must be 1-D (one right-hand side), got shape {res.shape}")
        if result.reason in ("diverged", "nonfinite"):
            return self._fall(f"SOR {result.reason} with omega={omega:g}: A is not SPD")
        lam = convergence_factor(res, skip=self.skip, tail=self.tail)
        n = int(np.size(getattr(result, "x", np.zeros(0))))
        if res.size - 1 < max(self.min_iterations, 2.0 * np.sqrt(n)):  # too short: the tail is still transient
            lam = float("nan")
        obs = {"context": c, "omega": omega, "lam": lam, "mu": float("nan"), "kind": "none",
               "iterations": int(np.sum(result.iterations))}
        self.observations.append(obs)
        if not np.isfinite(lam):
            if result.reason == "maxiter" and res.size - 1 >= max(self.min_iterations, 2.0 * np.sqrt(n)):
                return self._fall(f"SOR hit maxiter with omega={omega:g}")
            self._blind += 1
            if self._blind >= 2 * self.window:
                return self._fall(f"{self._blind} solves in a row too short to read a convergence factor")
            return
        self._blind = 0
        if lam >= 1.0:
            return self._fall(f"convergence factor {lam:.4g} >= 1 with omega={omega:g}")
        bound = omega > 1.0 and lam <= (1.0 + self.bound_tol) * (omega - 1.0)
        if bound:
            mu = float(critical_radius(omega))
            obs["kind"] = "bound"
            self._bound_run += 1
            side = self._side(c)
            if side:
                self._uncovered[side] += 1
        else:
            mu = float(jacobi_radius(lam, omega))
            obs["kind"] = "informative"
            self._bound_run = 0
            side = self._side(c)
            if side:
                self._uncovered[side] = 0
            if mu >= 1.0:
                return self._fall(f"Jacobi radius estimate {mu:.4g} >= 1 (lambda={lam:.4g}, omega={omega:g})")
        obs["mu"] = mu
        n_info = sum(1 for o in self._recent if not o[2])
        if pred_mu is not None and n_info >= self.min_points and omega > 1.0 \
                and omega >= float(optimal_omega(pred_mu)) - 0.01:
            # at or above the predicted optimum every SOR eigenvalue has modulus omega - 1: a robust prediction
            ratio = lam / (omega - 1.0)
            obs["ratio"] = float(ratio)
            self._checks.append(not (1.0 / self.tolerance <= ratio <= self.tolerance))
            if sum(self._checks) > self.window // 2:
                self._recent.append((c if c is not None else float(self.t - 1), mu, bound))
                return self._fall(f"{sum(self._checks)} of the last {len(self._checks)} checked solves converged "
                                  f"at a rate off omega - 1 by more than {self.tolerance:g}x at the predicted optimum")
        self._recent.append((c if c is not None else float(self.t - 1), mu, bound))

    def _fall(self, why: str) -> None:
        self.fallen_back = True
        self.reason = why


__all__ = ["Young", "convergence_factor", "critical_radius", "jacobi_radius", "optimal_omega", "sor_factor"]
