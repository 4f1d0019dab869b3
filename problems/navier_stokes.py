"""2-D Navier–Stokes vorticity on the unit torus, as in the FNO / LSM benchmark (``NavierStokes_V1e-5_N1200_T20.mat``).

The equation, for the vorticity ``w(x, y, t)`` on ``[0, 1)^2`` with periodic
boundaries::

    dw/dt + u . grad w = nu Lap w + f,     div u = 0,     w = curl u,
    u = (psi_y, -psi_x),   -Lap psi = w,
    f(x, y) = 0.1 (sin 2 pi (x + y) + cos 2 pi (x + y)),

with the benchmark's settings ``nu = 1e-5``, records at ``t = 1, 2, ..., 20``.

Initial vorticity (:func:`gaussian_rf_torus`): the FNO generator's
``GaussianRF(2, s, alpha=2.5, tau=7)``,
``w0 = Re ifft2(sqrt_eig * xi)`` with ``xi`` complex standard normal (real
and imaginary parts each of variance 1/2) and
``sqrt_eig = s^2 sqrt(2) sigma (4 pi^2 |k|^2 + tau^2)^(-alpha/2)``, ``sigma =
tau^((2 alpha - 2) / 2) = 7^(3/2)``, the mean mode set to zero.  Its
covariance is ``sigma^2 (-Lap + tau^2)^(-alpha) = 7^3 (-Lap + 49)^(-2.5)``;
the FNO paper writes ``N(0, 7^(3/2) (-Lap + 49 I)^(-2.5))``, which is the
factor on the square root (the code made the published files; we follow it).

Solver (:func:`navier_stokes_2d`): FNO's ``navier_stokes_2d``, step for
step.  Pseudo-spectral; the advection term ``u . grad w`` is computed in
physical space from spectral derivatives, transformed back and truncated by
the 2/3 rule (``|kx|, |ky| <= 2/3 k_max`` kept) and treated explicitly
(forward Euler); viscosity by Crank–Nicolson::

    w_h <- ((1 - dt nu |k|^2 / 2) w_h + dt (f_h - mask * F_h)) / (1 + dt nu |k|^2 / 2)

(``|k|^2`` here is ``4 pi^2 (kx^2 + ky^2)``), ``dt = 1e-4``.  FNO uses
complex ``fft2`` and keeps ``.real`` of each inverse transform, which
discards the first derivative of the Nyquist modes; this module uses
real-to-complex transforms with the derivative's Nyquist wavenumber set to
zero, which is the same arithmetic at half the cost (a test compares the two).

Resolution.  FNO solved at 256^2 and kept every 4th point (64^2).  Here the
solve grid ``res`` and the stored grid ``size`` are separate (``res`` a
multiple of ``size``; stored values are the solve grid's values at every
``res // size``-th point, as FNO's ``[::4, ::4]``); the default solves at
``res = size = 64``, 16x fewer grid points and FFT work per step than FNO.
At ``nu = 1e-5`` neither grid resolves the dissipation scale, and the
trajectories are chaotic: on one sample, a 64^2 and a 256^2 solve of the same
initial field differ by about 1% (relative L2 on the 64^2 points) up to
t = 10 and by 10% at t = 20, where float32 against float64 on the same
grid already differ by 1.5% (``benchmarks/scripts/ns_resolution.py``;
``docs/lsm.md``).  The 64^2 data are therefore samples of the benchmark's
problem, not FNO's samples, and differ from a 256^2 solve at the smallest
scales; the gap is below the benchmark's best errors (about 0.15).
Pass ``res=256`` for FNO's recipe when there is time (a GPU).

Seeds.  Sample ``i`` of ``generate_navier_stokes(..., seed=seed)`` draws its
initial field from ``numpy.random.default_rng(SeedSequence(seed, spawn_key=(i,)))``
(:func:`krylearn.problems.darcy.sample_rng`), so its content does not depend
on ``n``, the batch size or the device up to floating-point rounding.
"""

from __future__ import annotations

import math
import os
import time

import h5py
import numpy as np
import torch

from ..datasets.ns_formats import create_ns_layout
from ..solvers.learned import pick_device
from ..utils.atomic import atomic_path
from ..utils.checks import check_int, check_real
from ..utils.version import __version__
from .darcy import sample_rng

__all__ = [
    "DTYPES",
    "gaussian_rf_torus",
    "generate_navier_stokes",
    "navier_stokes_2d",
    "ns_forcing",
    "ns_initial",
    "ns_samples",
    "torus_points",
]

GENERATOR = "krylearn.problems.navier_stokes.generate_navier_stokes"
DTYPES = {"float32": torch.float32, "float64": torch.float64}


# ---------------------------------------------------------------------------
# grid, forcing, initial field
# ---------------------------------------------------------------------------
def torus_points(s: int) -> np.ndarray:
    """The ``s`` grid points ``k / s``, ``k = 0..s-1``, of ``[0, 1)`` (float64), FNO's ``linspace(0, 1, s+1)[:-1]``."""
    s = check_int("s", s, 2)
    return np.arange(s, dtype=np.float64) / s


def ns_forcing(s: int, amplitude: float = 0.1) -> np.ndarray:
    """The benchmark's forcing ``amplitude (sin 2 pi (x + y) + cos 2 pi (x + y))`` at the points ``(x_i, y_j)``.

    Returns ``(s, s)`` float64; axis 0 is x, axis 1 is y (FNO's ``meshgrid(..., indexing='ij')``).
    """
    x = torus_points(s)
    amplitude = check_real("amplitude", amplitude)
    phase = 2.0 * math.pi * (x[:, None] + x[None, :])
    return amplitude * (np.sin(phase) + np.cos(phase))


def _fft_wavenumbers(s: int) -> np.ndarray:
    """FNO's integer wavenumbers ``0..s/2-1, -s/2..-1`` (float64)."""
    k = np.fft.fftfreq(s, 1.0 / s)
    k[s // 2] = -(s // 2)
    return k


def gaussian_rf_torus(xi: np.ndarray, alpha: float = 2.5, tau: float = 7.0) -> np.ndarray:
    """FNO's ``GaussianRF(2, s, alpha, tau).sample`` for given complex normals ``xi``.

    Parameters
    ----------
    xi : numpy.ndarray, (..., s, s), complex
        Standard complex normals (real and imaginary parts each N(0, 1/2)).
    alpha, tau : float
        Smoothness and inverse length scale (benchmark: 2.5 and 7).

    Returns
    -------
    numpy.ndarray, (..., s, s), float64
        ``Re ifft2(sqrt_eig * xi)``: zero-mean fields with covariance
        ``tau^(2 alpha - 2) (-Lap + tau^2)^(-alpha)`` on the unit torus.
    """
    xi = np.asarray(xi)
    if xi.ndim < 2 or xi.shape[-1] != xi.shape[-2] or xi.shape[-1] < 2:
        raise ValueError(f"xi must have shape (..., s, s) with s >= 2, got {xi.shape}")
    alpha = check_real("alpha", alpha, positive=True)
    tau = check_real("tau", tau, positive=True)
    s = xi.shape[-1]
    k = _fft_wavenumbers(s)
    sigma = tau ** (0.5 * (2.0 * alpha - 2.0))
    sqrt_eig = s * s * math.sqrt(2.0) * sigma * (4 * math.pi ** 2 * (k[:, None] ** 2 + k[None, :] ** 2)
                                                 + tau ** 2) ** (-alpha / 2.0)
    sqrt_eig[0, 0] = 0.0
    return np.fft.ifft2(sqrt_eig * xi).real


def ns_initial(seed: int, indices, s: int, alpha: float = 2.5, tau: float = 7.0) -> np.ndarray:
    """Initial vorticity of samples ``indices`` of a ``seed``: ``(len(indices), s, s)`` float64.

    Sample ``i`` draws ``xi`` (``s x s`` complex) from :func:`~krylearn.problems.darcy.sample_rng` ``(seed, i)``.
    """
    s = check_int("s", s, 2)
    xis = []
    for i in indices:
        rng = sample_rng(seed, i)
        z = rng.standard_normal((2, s, s))
        xis.append((z[0] + 1j * z[1]) / math.sqrt(2.0))
    return gaussian_rf_torus(np.stack(xis), alpha, tau)


# ---------------------------------------------------------------------------
# solver
# ---------------------------------------------------------------------------
class _Spectral:
    """Per-grid constants of the rfft2 scheme (tensors on one device and dtype)."""

    def __init__(self, s: int, nu: float, dt: float, f, device, dtype):
        k = torch.as_tensor(_fft_wavenumbers(s), dtype=dtype, device=device)
        kx, ky = k[:, None], k[: s // 2 + 1].abs()[None, :]  # rfft keeps ky = 0..s/2 (the Nyquist column: s/2)
        lap = 4 * math.pi ** 2 * (kx ** 2 + ky ** 2)          # minus the Laplacian, (s, s//2+1)
        lap_safe = lap.clone()
        lap_safe[0, 0] = 1.0
        kxd, kyd = kx.clone(), ky.clone()                     # derivative wavenumbers: Nyquist -> 0 (FNO's .real)
        kxd[s // 2] = 0.0
        kyd[:, s // 2] = 0.0
        two_pi_i = 2j * math.pi
        ops = torch.stack(torch.broadcast_tensors(two_pi_i * kyd / lap_safe, -two_pi_i * kxd / lap_safe,
                                                  two_pi_i * kxd, two_pi_i * kyd))
        self.ops = ops  # (4, s, s//2+1) complex: w_h -> u = psi_y, v = -psi_x, w_x, w_y
        kmax = s // 2
        mask = ((kx.abs() <= 2.0 / 3.0 * kmax) & (ky <= 2.0 / 3.0 * kmax)).to(dtype)
        half = 0.5 * dt * nu * lap
        self.decay = (1.0 - half) / (1.0 + half)
        self.push = -dt * mask / (1.0 + half)
        f_h = torch.fft.rfft2(torch.as_tensor(f, dtype=dtype, device=device))
        self.force = dt * f_h / (1.0 + half)
        self.s = s

    def step(self, w_h: torch.Tensor) -> torch.Tensor:
        fields = torch.fft.irfft2(w_h[:, None] * self.ops, s=(self.s, self.s))   # (B, 4, s, s)
        adv = fields[:, 0] * fields[:, 2] + fields[:, 1] * fields[:, 3]
        return self.decay * w_h + self.push * torch.fft.rfft2(adv) + self.force


def _check_solver_args(w0, f, nu, T, dt, record_every):
    if not isinstance(w0, torch.Tensor):
        raise TypeError(f"w0 must be a torch.Tensor, got {type(w0).__name__}")
    if w0.ndim != 3 or w0.shape[-1] != w0.shape[-2] or w0.shape[-1] < 4 or w0.shape[-1] % 2:
        raise ValueError(f"w0 must have shape (B, s, s) with s even and >= 4, got {tuple(w0.shape)}")
    if w0.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"w0 must be float32 or float64, got {w0.dtype}")
    if not torch.isfinite(w0).all():
        raise ValueError("w0 contains NaN or Inf")
    f = np.zeros(w0.shape[-2:]) if f is None else np.asarray(f.detach().cpu() if hasattr(f, "detach") else f,
                                                              dtype=np.float64)
    if f.shape != tuple(w0.shape[-2:]):
        raise ValueError(f"f must have shape {tuple(w0.shape[-2:])} (the grid of w0), got {f.shape}")
    nu = check_real("nu", nu)
    if nu < 0:
        raise ValueError(f"nu must be >= 0, got {nu}")
    T, dt, record_every = (check_real(n, v, positive=True) for n, v in
                           (("T", T), ("dt", dt), ("record_every", record_every)))
    per_record = round(record_every / dt)
    if per_record < 1 or abs(per_record * dt - record_every) > 1e-9 * record_every:
        raise ValueError(f"record_every = {record_every} must be a whole number of steps dt = {dt}")
    records = round(T / record_every)
    if records < 1 or abs(records * record_every - T) > 1e-9 * T:
        raise ValueError(f"T = {T} must be a whole number of record_every = {record_every}")
    return f, nu, dt, per_record, records


@torch.no_grad()
def navier_stokes_2d(w0: torch.Tensor, f=None, nu: float = 1e-5, T: float = 20.0, dt: float = 1e-4,
                     record_every: float = 1.0, *, progress: bool = False, bar=None) -> tuple[torch.Tensor, np.ndarray]:
    """Solve the forced vorticity equation on the unit torus (see the module docstring).

    Parameters
    ----------
    w0 : torch.Tensor, (B, s, s), float32 or float64
        Initial vorticity at the points ``(i/s, j/s)`` (axis 1: x, axis 2: y),
        on any device; ``s`` even.  Its dtype is the computation's.
    f : array_like, (s, s), optional
        Forcing at the same points (default none); :func:`ns_forcing` is the benchmark's.
    nu : float
        Viscosity (>= 0; benchmark 1e-5).
    T : float
        Final time, a whole number of ``record_every``.
    dt : float
        Time step (FNO: 1e-4); ``record_every / dt`` must be whole.
    record_every : float
        Time between recorded frames.
    progress : bool
        A tqdm bar over the time steps.
    bar : tqdm, optional
        An existing bar to advance by one per time step instead.

    Returns
    -------
    w : torch.Tensor, (B, R, s, s), dtype and device of ``w0``
        Vorticity at ``t = record_every * (1..R)``, ``R = T / record_every``.
    t : numpy.ndarray, (R,), float64
        The record times.
    """
    f, nu, dt, per_record, records = _check_solver_args(w0, f, nu, T, dt, record_every)
    s = w0.shape[-1]
    sp = _Spectral(s, nu, dt, f, w0.device, w0.dtype)
    w_h = torch.fft.rfft2(w0)
    out = torch.empty(w0.shape[0], records, s, s, dtype=w0.dtype, device=w0.device)
    own = None
    if bar is None and progress:
        from tqdm.auto import tqdm

        bar = own = tqdm(total=per_record * records, desc=f"navier-stokes {s}^2", unit="step", dynamic_ncols=True)
    try:
        for r in range(records):
            for j in range(per_record):
                w_h = sp.step(w_h)
                if bar is not None and (j + 1) % 100 == 0:
                    bar.update(100)
            if bar is not None:
                bar.update(per_record % 100)
            out[:, r] = torch.fft.irfft2(w_h, s=(s, s))
    finally:
        if own is not None:
            own.close()
    if not torch.isfinite(out).all():
        raise ValueError(f"dt = {dt} is too large: the solution became non-finite (nu = {nu}); lower dt")
    return out, record_every * np.arange(1, records + 1, dtype=np.float64)


# ---------------------------------------------------------------------------
# data sets
# ---------------------------------------------------------------------------
def _generate_options(n, size, res, seed, steps, record_every, nu, dt, batch, dtype, alpha, tau):
    """Checked arguments of :func:`generate_navier_stokes` (errors name the argument)."""
    n, size, seed, steps, batch = (check_int(k, v, m) for k, v, m in
                                   (("n", n, 1), ("size", size, 4), ("seed", seed, 0), ("steps", steps, 1),
                                    ("batch", batch, 1)))
    if res is None and size % 2:
        raise ValueError(f"size must be even when res is not given (res defaults to size and must be an even "
                         f"multiple of it), got {size}")
    res = size if res is None else check_int("res", res, 4)
    if res % size or res % 2:
        raise ValueError(f"res must be an even multiple of size = {size}, got {res}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    nu = check_real("nu", nu)
    if nu < 0:
        raise ValueError(f"nu must be >= 0, got {nu}")
    reals = {k: check_real(k, v, positive=True) for k, v in
             (("record_every", record_every), ("dt", dt), ("alpha", alpha), ("tau", tau))}
    return dict(n=n, size=size, res=res, seed=seed, steps=steps, batch=batch, dtype=dtype, nu=nu, **reals)


def ns_samples(seed: int, indices, *, size: int = 64, res: int | None = None, steps: int = 20,
               record_every: float = 1.0, nu: float = 1e-5, dt: float = 1e-4, dtype: str = "float32",
               device=None, alpha: float = 2.5, tau: float = 7.0, bar=None) -> np.ndarray:
    """Samples ``indices`` of a :func:`generate_navier_stokes` file, computed together as one batch.

    Returns
    -------
    numpy.ndarray, (len(indices), steps + 1, size, size), float32
        Vorticity at ``t = 0, record_every, ..., steps * record_every``
        (frame 0 the initial field) at every ``res // size``-th solve point.
    """
    o = _generate_options(1, size, res, seed, steps, record_every, nu, dt, 1, dtype, alpha, tau)
    stride = o["res"] // o["size"]
    w0 = torch.as_tensor(ns_initial(o["seed"], indices, o["res"], o["alpha"], o["tau"]), dtype=DTYPES[dtype],
                         device=device)
    w, _ = navier_stokes_2d(w0, ns_forcing(o["res"]), o["nu"], o["steps"] * o["record_every"], o["dt"],
                            o["record_every"], bar=bar)
    frames = torch.cat([w0[:, None], w], dim=1)[..., ::stride, ::stride]
    return frames.to(device="cpu", dtype=torch.float32).numpy()


def generate_navier_stokes(path, n: int, *, size: int = 64, res: int | None = None, seed: int = 0,
                           steps: int = 20, record_every: float = 1.0, nu: float = 1e-5, dt: float = 1e-4,
                           batch: int = 50, dtype: str = "float32", device=None, progress: bool = True,
                           compression: str | None = None, alpha: float = 2.5, tau: float = 7.0) -> str:
    """Generate ``n`` vorticity trajectories into a PDEBench-style HDF5 file, atomically.

    The layout (:mod:`krylearn.datasets.ns_formats`, read back by
    :func:`~krylearn.datasets.ns_formats.read_navier_stokes`)::

        tensor        (n, steps+1, size, size)  float32  w at t-coordinate, frame 0 = w0
        t-coordinate  (steps+1,)                float64  0, record_every, ..., steps * record_every
        x-coordinate  (size,)                   float64  k / size (axis 2)
        y-coordinate  (size,)                   float64  k / size (axis 3)
        forcing       (size, size)              float32  f at the stored points
        attrs         generator, version, seed, seed_scheme, n, size, res, steps,
                      record_every, T, nu, dt, alpha, tau, dtype, device,
                      equation, seconds

    Parameters
    ----------
    path : str or os.PathLike
        Output file (its folder must exist).
    n : int
        Samples.
    size : int
        Stored points per side (benchmark: 64).
    res : int, optional
        Solve points per side, an even multiple of ``size`` (default
        ``size``; FNO: 256, see the module docstring).
    seed : int
        Root seed (per-sample seeds: module docstring).
    steps : int
        Recorded frames after the initial one (benchmark: 20).
    record_every : float
        Time between frames (benchmark: 1), a whole number of ``dt``.
    nu, dt : float
        Viscosity (1e-5) and time step (1e-4).
    batch : int
        Samples solved together (one batched FFT per step); memory
        ``~ 20 * batch * res^2`` numbers.
    dtype : {"float32", "float64"}
        Arithmetic of the solve (FNO: float32); the file stores float32.
    device : optional
        Torch device of the solve (default CPU); ``"cuda"`` is much faster.
    progress : bool
        A tqdm bar over time steps x samples.
    compression : {None, "gzip", "lzf"}

    Returns
    -------
    str
        ``path``.
    """
    o = _generate_options(n, size, res, seed, steps, record_every, nu, dt, batch, dtype, alpha, tau)
    kw = {k: o[k] for k in ("size", "res", "steps", "record_every", "nu", "dt", "dtype", "alpha", "tau")}
    device = pick_device("cpu" if device is None else device)  # the CPU unless asked: data should not vary
    per_sample = round(o["record_every"] / o["dt"]) * o["steps"]
    t_frames = o["record_every"] * np.arange(o["steps"] + 1, dtype=np.float64)
    t0 = time.perf_counter()
    from tqdm.auto import tqdm

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5, \
            tqdm(total=per_sample * o["n"], desc=f"navier-stokes {o['res']}^2", unit="step", unit_scale=True,
                 disable=not progress, dynamic_ncols=True) as bar:
        stride = o["res"] // o["size"]
        tensor = create_ns_layout(h5, o["n"], t_frames, (o["size"], o["size"]),
                                  forcing=ns_forcing(o["res"])[::stride, ::stride], compression=compression)
        for lo in range(0, o["n"], o["batch"]):
            idx = range(lo, min(lo + o["batch"], o["n"]))
            tensor[lo:idx.stop] = ns_samples(o["seed"], idx, device=device, bar=_Scaled(bar, len(idx)), **kw)
        for k, v in _file_attrs(o, kw, device, time.perf_counter() - t0).items():
            h5.attrs[k] = v
    return os.fspath(path)


def _file_attrs(o: dict, kw: dict, device, seconds: float) -> dict:
    """The provenance attributes of a generated file."""
    return dict(generator=GENERATOR, version=__version__, seed=o["seed"],
                seed_scheme="numpy default_rng(SeedSequence(seed, spawn_key=(i,))) -> xi of sample i",
                n=o["n"], **kw, T=o["steps"] * o["record_every"], device=str(device),
                forcing="0.1 (sin 2 pi (x + y) + cos 2 pi (x + y))",
                initial="GaussianRF(2, res, alpha, tau): covariance tau^(2 alpha - 2) (-Lap + tau^2)^(-alpha)",
                equation="dw/dt + u.grad w = nu Lap w + f on the unit torus; pseudo-spectral, 2/3 dealiasing, "
                         "Crank-Nicolson viscosity, explicit advection",
                seconds=seconds)


class _Scaled:
    """A view of a tqdm bar that advances it ``factor`` times per update (one time step of a batch)."""

    def __init__(self, bar, factor: int):
        self.bar, self.factor = bar, factor

    def update(self, k: int) -> None:
        self.bar.update(k * self.factor)
