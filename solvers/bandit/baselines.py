"""Baseline tuners: a fixed value, and Young's formula from an estimated Jacobi spectral radius."""

from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse

from .base import Tuner, check_omega_grid
from .young import optimal_omega


class Fixed(Tuner):
    """Always the same value (``Fixed(1.0)``: Gauss-Seidel; ``Fixed(1.5)``: a textbook omega).

    Parameters
    ----------
    value : float
        The parameter value; it is also the one-arm grid.
    """

    def __init__(self, value):
        if not isinstance(value, numbers.Real) or isinstance(value, bool) or not np.isfinite(value):
            raise ValueError(f"value must be a finite real number, got {value!r}")
        super().__init__([float(value)])
        self.value = float(value)
        self.name = f"fixed({self.value:g})"

    def suggest(self, context=None, instance=None) -> float:
        return self.value

    def update(self, value, result, context=None) -> None:
        self.t += 1


def lanczos_extremes(A: scipy.sparse.csr_matrix, iters: int, rng: np.random.Generator):
    """Extreme Ritz values of ``D^-1/2 A D^-1/2`` after ``iters`` Lanczos steps (full reorthogonalisation).

    Parameters
    ----------
    A : scipy.sparse.csr_matrix, (n, n)
        Symmetric with a positive diagonal.
    iters : int
        Lanczos steps, one matrix-vector product each (fewer if the Krylov
        space is exhausted).

    Returns
    -------
    (theta_min, theta_max, matvecs)
    """
    d = A.diagonal()
    if np.any(d <= 0):
        raise ValueError("A must have a positive diagonal for YoungSpectral (Jacobi splitting)")
    s = 1.0 / np.sqrt(d)
    B = scipy.sparse.diags(s) @ A @ scipy.sparse.diags(s)
    n = A.shape[0]
    m = min(int(iters), n)
    Q = np.zeros((m + 1, n))
    q = rng.standard_normal(n)
    Q[0] = q / np.linalg.norm(q)
    alpha, beta = [], []
    k = 0
    for k in range(m):
        w = B @ Q[k]
        a = float(Q[k] @ w)
        w -= Q[: k + 1].T @ (Q[: k + 1] @ w)  # full reorthogonalisation (twice is enough)
        w -= Q[: k + 1].T @ (Q[: k + 1] @ w)
        alpha.append(a)
        bnorm = float(np.linalg.norm(w))
        if bnorm <= 1e-12 * max(abs(a), 1.0) or k == m - 1:
            k += 1
            break
        beta.append(bnorm)
        Q[k + 1] = w / bnorm
    T = np.diag(alpha) + np.diag(beta[: len(alpha) - 1], 1) + np.diag(beta[: len(alpha) - 1], -1)
    ev = np.linalg.eigvalsh(T)
    return float(ev[0]), float(ev[-1]), k


class YoungSpectral(Tuner):
    """Young's ``omega* = 2 / (1 + sqrt(1 - mu^2))`` from a per-instance estimate of the Jacobi radius.

    ``mu = rho(I - D^-1 A) = max(|1 - theta_min|, |1 - theta_max|)`` with
    ``theta`` the extreme eigenvalues of ``D^-1/2 A D^-1/2``, estimated by
    ``iters`` Lanczos steps (each one matrix-vector product, added to
    :attr:`extra_matvecs`).  Lanczos Ritz values lie inside the spectrum, so
    ``mu`` is slightly underestimated (omega slightly low) when ``iters`` is
    small.  Assumes a symmetric ``A`` with positive diagonal; omega is clipped
    to ``[grid.min(), grid.max()]`` (to ``grid.max()`` when ``mu >= 1``).

    Parameters
    ----------
    grid : array_like of float, optional
        Only its range matters (default [1, 1.95]); values in (0, 2).
    iters : int
        Lanczos steps per instance.
    seed : int
        Start vectors.
    """

    name = "young-spectral"

    def __init__(self, grid=None, *, iters: int = 20, seed=0):
        super().__init__(grid)
        check_omega_grid(self.grid, name="grid")
        if not isinstance(iters, numbers.Integral) or isinstance(iters, bool) or iters < 1:
            raise ValueError(f"iters must be a positive integer, got {iters!r}")
        self.iters = int(iters)
        self.rng = np.random.default_rng(seed)
        self.last_mu = None

    def suggest(self, context=None, instance=None) -> float:
        A = getattr(instance, "A", None)
        if A is None:
            raise ValueError("instance is required by YoungSpectral (it estimates the spectrum of instance.A)")
        A = scipy.sparse.csr_matrix(A, dtype=np.float64)
        lo, hi, k = lanczos_extremes(A, self.iters, self.rng)
        self.extra_matvecs += k
        mu = max(abs(1.0 - lo), abs(1.0 - hi))
        self.last_mu = mu
        omega = float(self.grid[-1]) if mu >= 1.0 else float(optimal_omega(mu))
        return float(np.clip(omega, self.grid[0], self.grid[-1]))

    def update(self, value, result, context=None) -> None:
        self.t += 1


__all__ = ["Fixed", "YoungSpectral", "lanczos_extremes"]
