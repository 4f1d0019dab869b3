"""The VP (DDPM) noise schedule, the DDS/DDIM time grids and Tweedie's formula.

Forward process (variance preserving, Ho et al. 2020)::

    x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps,   eps ~ N(0, I),
    abar_t = prod_{s <= t} (1 - beta_s),   t = 0, ..., T - 1,

with the linear schedule ``beta_t = linspace(1e-4, 0.02, T)``, ``T = 1000``
(the schedule of the DDS checkpoints).  The index ``t = -1`` means "no
noise": ``abar_{-1} = 1`` (the authors' ``compute_alpha`` convention).

Time grids
----------
:func:`time_grid` with ``kind="dds"`` is the grid of the authors'
``solver_2d.py`` for ``T_sampling = nfe + 1``: ``skip = T // (nfe + 1)`` and
the network is called at ``t = nfe * skip, (nfe - 1) * skip, ..., skip``
(descending), each step going to the next entry, the last one to ``t = -1``
(the estimate ``x0'`` is returned as is).  For ``nfe = 49``: ``skip = 20``,
``t = 980, 960, ..., 20``, i.e. the authors' 50-step loop without its
redundant 50th call at ``t = 0`` (which denoises at ``abar_0 = 0.9999`` and
re-runs the data step; see the paper notes: the paper reports that run as
49 NFE).  ``nfe = 19`` and ``99`` give ``skip = 50`` and ``10``.

``start < 1`` (``kind="dds"`` only) runs the last ``start`` share of the
chain: the ``nfe`` steps are spread evenly over ``(0, round(start * T)]``
(``t = t_0, ..., t_0 / nfe``, rounded and deduplicated, so ``nfe`` is an
upper bound).  The sampler then starts from an initial image noised to
``t_0`` instead of pure noise (Chung, Sim, Ye, CVPR 2022, "Come-closer-
diffuse-faster").

``kind="uniform"`` spreads ``nfe`` integer steps evenly over ``[0, T - 1]``
including both ends (``nfe = T`` is the full DDPM chain ``999, ..., 0``); it
is the grid of :func:`~krylearn.solvers.dds.dps_sample`.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = ["VPSchedule", "linear_betas", "q_sample", "time_grid", "tweedie"]


def linear_betas(beta_start: float = 1e-4, beta_end: float = 0.02, num_timesteps: int = 1000) -> np.ndarray:
    """``linspace(beta_start, beta_end, num_timesteps)`` in float64."""
    if not isinstance(num_timesteps, numbers.Integral) or num_timesteps < 2:
        raise ValueError(f"num_timesteps must be an integer >= 2, got {num_timesteps!r}")
    if not (0 < beta_start <= beta_end < 1):
        raise ValueError(f"need 0 < beta_start <= beta_end < 1, got {beta_start!r}, {beta_end!r}")
    return np.linspace(beta_start, beta_end, int(num_timesteps), dtype=np.float64)


@dataclass(frozen=True)
class VPSchedule:
    """Linear-beta VP schedule.

    Parameters
    ----------
    beta_start, beta_end : float
        First and last ``beta`` (defaults 1e-4 and 0.02, as DDPM/DDS).
    num_timesteps : int
        ``T`` (default 1000).

    Attributes
    ----------
    betas, alphas_cumprod : numpy.ndarray, float64, (T,)
        ``beta_t`` and ``abar_t``.

    Examples
    --------
    >>> s = VPSchedule()
    >>> round(float(s.alpha_bar(-1)), 6), round(float(s.alpha_bar(999)), 8)
    (1.0, 4.036e-05)
    """

    beta_start: float = 1e-4
    beta_end: float = 0.02
    num_timesteps: int = 1000
    betas: np.ndarray = field(init=False, repr=False, compare=False)
    alphas_cumprod: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        b = linear_betas(self.beta_start, self.beta_end, self.num_timesteps)
        object.__setattr__(self, "betas", b)
        object.__setattr__(self, "alphas_cumprod", np.cumprod(1.0 - b))

    def alpha_bar(self, t) -> np.ndarray:
        """``abar_t`` for integer ``t`` in ``[-1, T - 1]`` (``abar_{-1} = 1``); numpy float64."""
        t = np.asarray(t)
        if not np.issubdtype(t.dtype, np.integer):
            if not np.all(t == np.round(t)):
                raise ValueError("t must hold integer time steps")
            t = t.astype(np.int64)
        if np.any(t < -1) or np.any(t >= self.num_timesteps):
            raise ValueError(f"t must lie in [-1, {self.num_timesteps - 1}], got {t}")
        padded = np.concatenate([[1.0], self.alphas_cumprod])
        return padded[t + 1]

    def alpha_bar_tensor(self, t: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
        """``abar_t`` for a tensor of integer steps ``t`` (any shape, ``-1`` allowed), on ``t``'s device."""
        padded = torch.as_tensor(np.concatenate([[1.0], self.alphas_cumprod]), dtype=torch.float64,
                                 device=t.device)
        return padded[t.long() + 1].to(dtype)

    def config(self) -> dict:
        return {"beta_start": self.beta_start, "beta_end": self.beta_end, "num_timesteps": self.num_timesteps}


def time_grid(nfe: int, num_timesteps: int = 1000, kind: str = "dds",
              start: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """The sampling grid: ``(times, times_next)``, int64 arrays of length ``nfe``.

    Step ``i`` calls the network at ``times[i]`` and moves to
    ``times_next[i]`` (``times_next[-1] == -1``: the clean estimate).

    Parameters
    ----------
    nfe : int
        Network calls.  ``kind="dds"`` needs ``1 <= nfe < num_timesteps``;
        ``kind="uniform"`` needs ``1 <= nfe <= num_timesteps``.
    num_timesteps : int
        ``T`` of the schedule.
    kind : {"dds", "uniform"}
        See the module notes.
    start : float
        Share of the chain to run, in ``(0, 1]`` (``kind="dds"``; see the
        module notes).

    Examples
    --------
    >>> t, n = time_grid(49)
    >>> t[:3].tolist(), t[-1].item(), n[-2:].tolist()
    ([980, 960, 940], 20, [20, -1])
    >>> time_grid(1000, kind="uniform")[0][[0, -1]].tolist()
    [999, 0]
    >>> time_grid(5, start=0.1)[0].tolist()
    [100, 80, 60, 40, 20]
    """
    if not isinstance(nfe, numbers.Integral) or isinstance(nfe, bool) or nfe < 1:
        raise ValueError(f"nfe must be a positive integer, got {nfe!r}")
    T = int(num_timesteps)
    nfe = int(nfe)
    if not isinstance(start, numbers.Real) or isinstance(start, bool) or not 0 < start <= 1:
        raise ValueError(f"start must lie in (0, 1], got {start!r}")
    if start < 1:
        if kind != "dds":
            raise ValueError(f"start < 1 needs kind='dds', got kind={kind!r}")
        t0 = max(1, min(T - 1, int(round(start * T))))
        times = np.unique(np.round(t0 * np.arange(1, nfe + 1) / nfe).astype(np.int64))[::-1].copy()
    elif kind == "dds":
        if nfe >= T:
            raise ValueError(f"nfe must be < num_timesteps={T} for the DDS grid, got {nfe}")
        skip = T // (nfe + 1)
        times = skip * np.arange(nfe, 0, -1, dtype=np.int64)
    elif kind == "uniform":
        if nfe > T:
            raise ValueError(f"nfe must be <= num_timesteps={T}, got {nfe}")
        times = np.round(np.linspace(T - 1, 0, nfe)).astype(np.int64) if nfe > 1 else np.array([T - 1])
    else:
        raise ValueError(f"kind must be 'dds' or 'uniform', got {kind!r}")
    times_next = np.concatenate([times[1:], [-1]]).astype(np.int64)
    return times, times_next


def tweedie(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar) -> torch.Tensor:
    """Tweedie's estimate ``x0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar)`` (no clipping).

    ``alpha_bar`` is a float or a tensor broadcastable to ``x_t``.
    """
    ab = torch.as_tensor(alpha_bar, dtype=x_t.dtype, device=x_t.device)
    return (x_t - torch.sqrt(1 - ab) * eps) / torch.sqrt(ab)


def q_sample(x0: torch.Tensor, alpha_bar, noise: torch.Tensor) -> torch.Tensor:
    """The forward process ``x_t = sqrt(abar) x0 + sqrt(1 - abar) noise``."""
    ab = torch.as_tensor(alpha_bar, dtype=x0.dtype, device=x0.device)
    return torch.sqrt(ab) * x0 + torch.sqrt(1 - ab) * noise
