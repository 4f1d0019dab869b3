"""Tsallis-INF: 1/2-Tsallis follow-the-regularized-leader over a grid of values.

The paper's non-contextual learner (Khodak et al., ICLR 2024, Algorithm 2,
practical settings of the authors' ``learners/TsallisINF.m``):

* arms: a grid (default 20 values of omega on [1, 1.95]);
* loss of a round: ``(iterations - 1) / scale`` with ``scale`` the running
  mean of the observed costs minus 1 (the authors' adaptive normalisation;
  1 while that is not positive), so the average loss is 1.  Cumulative
  estimates are kept in iteration units and divided by the *current* scale,
  as the authors do;
* learning rate ``eta_t = lr / sqrt(t)``;
* probabilities ``p_i = 4 / (eta (L_i - x))^2`` with the normaliser ``x``
  such that ``sum p = 1``.

Normaliser (a fix of the authors' code): their Newton solve restarts at
``x = -1`` every round, which after ~150-200 rounds jumps past the pole
``x = min L`` and samples near-arbitrary arms.  Here ``x`` is found by
Newton's method on ``g(x) = S(x)^(-1/2) - 2/eta``, ``S(x) = sum_i (L_i - x)^-2``,
started at ``min L - 2/eta``.  ``S^(-1/2)`` is a power mean of order -2 of
``L - x``, hence concave in ``x``; ``g`` is decreasing and ``g <= 0`` at the
start, so the iterates move monotonically left to the root and never cross
the pole (2-4 steps; one when all losses tie).

Estimator (a deviation from the paper, measured): by default the
reduced-variance importance-weighted estimator of Zimmert & Seldin (2021),
also used by PCGBandit: the played arm's loss is shifted by a baseline
``B`` before dividing by its probability, ``L_i += (loss - B) / p_i``
(adding ``B`` to every arm leaves ``p`` unchanged, so the estimator stays
unbiased).  ``B`` is ``baseline`` times the running mean loss, i.e.
``baseline`` in normalised units, the analogue of their ``B = 1/2`` for
losses in [0, 1]; with it the learning rate defaults to their ``4/sqrt(t)``.
``baseline=0`` is the paper's plain estimator with the paper's
``eta_t = 2/sqrt(t)``.  Replayed on the paper's synthetic SOR sequences
(T = 5000, 10 seeds; ratio of total iterations to the best fixed omega):

==========================  ========  ============  ============
estimator                   T = 200   T = 1000      T = 5000
==========================  ========  ============  ============
plain, lr 2 (low var)       1.82      1.37          1.13
reduced 0.5, lr 4 (low)     1.47      1.20          1.08
plain, lr 2 (high var)      1.99      1.51          1.18
reduced 0.5, lr 4 (high)    1.71      1.33          1.12
==========================  ========  ============  ============

A baseline of the full mean (``baseline=1``) was better on the low-variance
sequence but unstable on the high-variance one (some seeds locked onto a bad
arm: negative estimates divided by small probabilities).
"""

from __future__ import annotations

import numbers

import numpy as np

from .base import Tuner, cost_of


def tsallis_normalizer(L: np.ndarray, eta: float, *, tol: float = 1e-13, maxiter: int = 100):
    """Solve ``sum_i 4 / (eta (L_i - x))^2 = 1`` for ``x < min(L)``.

    Parameters
    ----------
    L : numpy.ndarray of float64, shape (K,)
        Cumulative (normalised) loss estimates.
    eta : float > 0
        Learning rate.
    tol : float
        Stop when ``|S^(-1/2) - 2/eta| <= tol * 2/eta``.

    Returns
    -------
    x : float
        The normaliser.
    p : numpy.ndarray of float64, shape (K,)
        ``4 / (eta (L - x))^2`` (not renormalised: ``p.sum()`` is 1 to ~1e-12).
    steps : int
        Newton steps taken.
    """
    target = 2.0 / eta
    x = float(L.min()) - target
    steps = 0
    for steps in range(1, maxiter + 1):
        u = L - x
        inv2 = u ** -2
        S = inv2.sum()
        g = S ** -0.5 - target
        if abs(g) <= tol * target:
            break
        S3 = (inv2 / u).sum()
        # Newton on the concave decreasing g: x - g/g' with g' = -S^(-3/2) S3 (moves left, never overshoots)
        x += g * S ** 1.5 / S3
    p = 4.0 / (eta * (L - x)) ** 2
    return x, p, steps


class TsallisINF(Tuner):
    """1/2-Tsallis-INF bandit over a grid of parameter values.

    Parameters
    ----------
    grid : array_like of float, shape (K,), optional
        Arms (default ``np.linspace(1, 1.95, 20)``).
    lr : float, optional
        Learning-rate constant, ``eta_t = lr / sqrt(t)``; default 4 with the
        reduced-variance estimator, 2 (the paper's) with ``baseline=0``.
    seed : int or numpy.random.Generator
        Sampling randomness.
    baseline : float >= 0
        Loss baseline of the reduced-variance estimator, in units of the
        running mean loss (default 0.5; 0: the paper's plain estimator).

    Attributes
    ----------
    L_raw : numpy.ndarray, shape (K,)
        Cumulative importance-weighted loss estimates in iteration units.
    normalizer_error : float
        ``|sum(p) - 1|`` of the last Newton solve, before renormalisation.
    newton_steps : int
        Newton steps of the last solve.
    """

    name = "tsallis-inf"

    def __init__(self, grid=None, *, lr=None, seed=0, baseline: float = 0.5):
        super().__init__(grid)
        if not isinstance(baseline, numbers.Real) or not np.isfinite(baseline) or baseline < 0:
            raise ValueError(f"baseline must be a finite number >= 0, got {baseline!r}")
        if lr is None:
            lr = 4.0 if baseline > 0 else 2.0
        if not isinstance(lr, numbers.Real) or not np.isfinite(lr) or lr <= 0:
            raise ValueError(f"lr must be a positive finite number, got {lr!r}")
        self.lr = float(lr)
        self.baseline = float(baseline)
        self.rng = np.random.default_rng(seed)
        self.L_raw = np.zeros(self.K)
        self.cost_sum = 0.0
        self.normalizer_error = 0.0
        self.newton_steps = 0
        self.x = None
        self._p = None
        self._p_round = -1

    @property
    def scale(self) -> float:
        """Running mean of the observed costs minus 1 (1 while not positive)."""
        if self.t == 0:
            return 1.0
        s = self.cost_sum / self.t - 1.0
        return s if s > 0 else 1.0

    @property
    def eta(self) -> float:
        """Learning rate of the coming round, ``lr / sqrt(t + 1)``."""
        return self.lr / np.sqrt(self.t + 1)

    def probabilities(self) -> np.ndarray:
        """Sampling distribution of the coming round, shape (K,), sums to 1."""
        if self._p_round != self.t:
            x, p, steps = tsallis_normalizer(self.L_raw / self.scale, self.eta)
            total = p.sum()
            self.normalizer_error = abs(total - 1.0)
            self.newton_steps = steps
            self.x = x
            self._p = p / total
            self._p_round = self.t
        return self._p

    def suggest(self, context=None, instance=None) -> float:
        p = self.probabilities()
        i = min(int(np.searchsorted(np.cumsum(p), self.rng.random(), side="right")), self.K - 1)
        return float(self.grid[i])

    def update(self, value, result, context=None) -> None:
        """Importance-weighted update of the arm nearest ``value`` with the solve's iteration count."""
        cost = cost_of(result)
        i = self.arm(value)
        p = self.probabilities()[i]
        shift = 0.0
        if self.t > 0:  # baseline from the previous rounds only (keeps the estimator unbiased)
            shift = self.baseline * max(self.cost_sum / self.t - 1.0, 0.0)
        self.L_raw[i] += (cost - 1.0 - shift) / p
        self.cost_sum += cost
        self.t += 1


__all__ = ["TsallisINF", "tsallis_normalizer"]
