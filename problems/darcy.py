"""Darcy-flow data as in the FNO benchmark (``piececonst_r421_N1024_smooth*.mat``).

Each sample solves ``-div(a grad u) = 1`` on the unit square with ``u = 0`` on
the boundary, where

* ``field ~ N(0, tau^(2 alpha - 2) (-Laplacian + tau^2 I)^(-alpha))`` with
  Neumann boundary conditions, sampled by :func:`grf_neumann` exactly as the
  benchmark's ``GRF.m`` does it (alpha = 2, tau = 3);
* ``a = 12`` where ``field >= 0`` and ``3`` elsewhere (:func:`darcy_coefficient`);
* ``u`` is the 5-point finite-difference solution of
  :func:`krylearn.operators.darcy.darcy_system` (arithmetic-mean face
  coefficients, scaled by ``(s-1)^2``) at ``res = 421`` points a side,
  solved to ``rtol = 1e-10`` (:func:`solve_darcy`), then subsampled
  ``[::sub, ::sub]`` (421 with ``sub = 5`` gives 85, the LSM/FNO grid), or
  ``[offset::sub, offset::sub]``.

Cell-centred files (PDEBench's layout) come from an offset: the cell centres
``(i + 1/2) / s`` are the points ``[sub // 2::sub]`` of a finer grid when
``sub`` is odd (``grid="fno"``, ``res = s * sub``: e.g. ``res=640, sub=5,
offset=2`` gives 128 centres) or when ``res - 1`` is a multiple of ``2 s``
(``grid="node"``, ``sub = (res - 1) / s``, ``offset = sub / 2``: e.g.
``res=513, sub=4, offset=2``).  The written coordinates say which points
were kept.

Grids (``grid=``). The benchmark's ``solve_gwf.m`` treats the ``K x K``
input as values at the cell centres ``(k + 1/2) / K``: it interpolates ``a``
to the ``K`` nodes ``k / (K - 1)`` with tensor-product cubic splines
(MATLAB ``interp2(..., 'spline')``: not-a-knot, extrapolating at the two
outermost nodes), solves there, and interpolates ``u`` back to the centres.
``grid="fno"`` reproduces that (so ``u`` is small but not exactly zero on
the outer ring of points and the stored ``a`` is the two-valued field, as in
the ``.mat`` files); ``grid="node"`` takes ``a`` at the nodes directly and
stores ``u`` with an exactly zero boundary (the system
:func:`~krylearn.operators.darcy.darcy_system` builds from the stored ``a``
at any resolution). The two differ by O(h) near the coefficient's jumps.

Seeds. Sample ``i`` of ``generate_darcy(..., seed=seed)`` draws its field
from ``numpy.random.default_rng(numpy.random.SeedSequence(seed).spawn(n)[i])``
(equivalently ``SeedSequence(seed, spawn_key=(i,))``), so its content does
not depend on the number of workers, on ``n`` or on the order samples finish
in; :func:`sample_rng` gives that generator.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import numbers
import os
import time

import h5py
import numpy as np
import scipy.fft
import scipy.interpolate
import scipy.sparse.linalg

from ..datasets.pde_formats import create_darcy_layout
from ..operators.darcy import darcy_system, embed_interior
from ..solvers.api import available_methods, solve
from ..utils.atomic import atomic_path
from ..utils.checks import check_int, check_real
from ..utils.version import __version__

__all__ = [
    "GRIDS",
    "darcy_coefficient",
    "darcy_sample",
    "generate_darcy",
    "grf_neumann",
    "sample_rng",
    "solve_darcy",
]

GRIDS = ("fno", "node")
GENERATOR = "krylearn.problems.darcy.generate_darcy"


# ---------------------------------------------------------------------------
# random field and coefficient
# ---------------------------------------------------------------------------
def grf_neumann(s: int, rng=None, alpha: float = 2.0, tau: float = 3.0) -> np.ndarray:
    """One sample of the benchmark's Gaussian random field (``GRF.m``).

    Karhunen–Loève expansion in the cosine (Neumann) eigenbasis::

        coef[k1, k2] = tau^(alpha-1) * (pi^2 (k1^2 + k2^2) + tau^2)^(-alpha/2)
        L = s * coef * xi,   xi ~ N(0, 1)^(s x s),   L[0, 0] = 0
        field = idct2(L)     (orthonormal inverse DCT-II, MATLAB's idct2)

    Parameters
    ----------
    s : int
        Points per side (>= 2).
    rng : numpy.random.Generator, int or None
        Source of ``xi`` (an int or None seeds ``numpy.random.default_rng``).
    alpha, tau : float
        Smoothness and inverse length scale (benchmark: 2 and 3), positive.

    Returns
    -------
    numpy.ndarray, (s, s), float64
        Zero-mean field (the constant mode is removed: its spatial mean is 0).
    """
    s = check_int("s", s, 2)
    alpha = check_real("alpha", alpha, positive=True)
    tau = check_real("tau", tau, positive=True)
    if not isinstance(rng, np.random.Generator):
        if rng is not None and (isinstance(rng, bool) or not isinstance(rng, (numbers.Integral, np.random.SeedSequence))):
            raise TypeError(f"rng must be a numpy.random.Generator, an int seed or None, got {type(rng).__name__}")
        rng = np.random.default_rng(rng)
    xi = rng.standard_normal((s, s))
    k = np.arange(s, dtype=np.float64)
    coef = tau ** (alpha - 1.0) * (np.pi ** 2 * (k[:, None] ** 2 + k[None, :] ** 2) + tau ** 2) ** (-alpha / 2.0)
    L = s * coef * xi
    L[0, 0] = 0.0
    return scipy.fft.idctn(L, type=2, norm="ortho")


def darcy_coefficient(field, hi: float = 12.0, lo: float = 3.0) -> np.ndarray:
    """Threshold a field: ``hi`` where ``field >= 0``, ``lo`` elsewhere (float64, shape of ``field``)."""
    field = np.asarray(field)
    if field.dtype.kind not in "iuf":
        raise TypeError(f"field must be a real numeric array, got dtype {field.dtype}")
    if not np.isfinite(field).all():
        raise ValueError("field contains NaN or Inf")
    hi = check_real("hi", hi, positive=True)
    lo = check_real("lo", lo, positive=True)
    return np.where(field >= 0, hi, lo)


# ---------------------------------------------------------------------------
# solve
# ---------------------------------------------------------------------------
def _resample(v: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Tensor-product not-a-knot cubic spline through ``v`` on ``src x src``, evaluated on ``dst x dst``."""
    v = scipy.interpolate.make_interp_spline(src, v, k=3, axis=0)(dst)
    return scipy.interpolate.make_interp_spline(src, v, k=3, axis=1)(dst)


def _centres(s: int) -> np.ndarray:
    return (np.arange(s) + 0.5) / s


def solve_darcy(a, rtol: float = 1e-10, method: str = "pcg-amg", *, f=1.0, grid: str = "node",
                x0=None, return_info: bool = False, **options):
    """Solve ``-div(a grad u) = f``, ``u = 0`` on the boundary of the unit square.

    Parameters
    ----------
    a : array_like, (s, s)
        Coefficient, positive. With ``grid="node"`` its values are at the
        nodes ``i / (s-1)`` (boundary included); with ``grid="fno"`` at the
        cell centres ``(i + 1/2) / s`` (see the module docstring).
    rtol : float
        Relative residual ``||b - A u|| <= rtol ||b||`` of the interior system.
    method : str
        ``"pcg-amg"`` (default), any other :func:`krylearn.solve` method, or
        ``"direct"`` (scipy ``spsolve``, SuperLU).
    f : float or array_like (s, s)
        Source (the benchmark: 1), at the points of ``grid`` like ``a``.
    grid : {"node", "fno"}
        Where ``a`` and the returned ``u`` live.
    x0 : array_like (s, s), optional
        Initial guess at the nodes (its interior is used), e.g. a network's
        prediction. Only for iterative methods and ``grid="node"``.
    return_info : bool
        Also return a dict with ``iterations``, ``residual`` (relative),
        ``seconds`` and ``method``.
    **options
        Passed to :func:`krylearn.solve` (pyamg options for ``pcg-amg``).

    Returns
    -------
    u : numpy.ndarray, (s, s), float64
        With ``grid="node"`` exactly zero on the boundary.
    info : dict
        Only when ``return_info``.

    Raises
    ------
    RuntimeError
        If the iterative method does not reach ``rtol``.
    """
    if grid not in GRIDS:
        raise ValueError(f"grid must be one of {GRIDS}, got {grid!r}")
    rtol = check_real("rtol", rtol, positive=True)
    if not isinstance(method, str):
        raise TypeError(f"method must be a string, got {type(method).__name__}")
    a = np.asarray(a.detach().cpu().numpy() if hasattr(a, "detach") else a)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"a must be a square (s, s) array, got shape {a.shape}")
    s = a.shape[0]
    if grid == "fno":
        if x0 is not None:
            raise ValueError("x0 is only supported with grid='node'")
        a = np.asarray(a, dtype=np.float64)
        if not np.isfinite(a).all() or a.min() <= 0:
            raise ValueError("a must be finite and strictly positive")
        nodes, centres = np.linspace(0.0, 1.0, s), _centres(s)
        a_nodes = _resample(a, centres, nodes)
        if not (isinstance(f, numbers.Real) and not isinstance(f, bool)):
            f = _resample(np.asarray(f, dtype=np.float64), centres, nodes)
        nonpositive = not a_nodes.min() > 0
        if nonpositive:  # spline overshoot at jumps: possibly indefinite, as in MATLAB; solve directly
            method = "direct"
        u_nodes, info = _solve_nodes(a_nodes, f, rtol, method, None, nonpositive, options)
        u = _resample(u_nodes, nodes, centres)
        info["nonpositive_nodes"] = int((a_nodes <= 0).sum())
        return (u, info) if return_info else u
    u, info = _solve_nodes(a, f, rtol, method, x0, False, options)
    return (u, info) if return_info else u


def _solve_nodes(a, f, rtol, method, x0, allow_nonpositive, options):
    s = a.shape[0]
    A, b = darcy_system(a, f, check_positive=not allow_nonpositive)
    t0 = time.perf_counter()
    if method == "direct":
        if x0 is not None:
            raise ValueError("x0 is meaningless for method='direct'")
        # minimum degree on A + A^T: about twice as fast as the default COLAMD on this symmetric matrix
        u_int = scipy.sparse.linalg.spsolve(A.tocsc(), b, permc_spec="MMD_AT_PLUS_A")
        iterations = 0
    else:
        if x0 is not None:
            x0 = np.asarray(x0, dtype=np.float64)
            if x0.shape != a.shape:
                raise ValueError(f"x0 must have the shape of a {a.shape}, got {x0.shape}")
            x0 = np.ascontiguousarray(x0[1:-1, 1:-1]).ravel()
        options.setdefault("check_symmetry", False)  # symmetric by construction
        res = solve(A, b, method=method, x0=x0, rtol=rtol, **options)
        if not res.converged:
            raise RuntimeError(f"{method} did not reach rtol={rtol:g} on the Darcy system: {res.reason} after "
                               f"{res.iterations} iterations (relative residual {res.residuals[-1]:.3g})")
        u_int = np.asarray(res.x, dtype=np.float64)
        iterations = int(res.iterations)
    seconds = time.perf_counter() - t0
    if not np.isfinite(u_int).all():
        raise RuntimeError(f"{method} returned non-finite values on the Darcy system")
    bn = float(np.linalg.norm(b))
    residual = float(np.linalg.norm(b - A @ u_int)) / (bn if bn > 0 else 1.0)
    if method == "direct" and residual > rtol:
        raise RuntimeError(f"the direct solve missed rtol={rtol:g}: relative residual {residual:.3g}")
    return embed_interior(u_int, s), {"iterations": iterations, "residual": residual, "seconds": seconds,
                                      "method": method}


# ---------------------------------------------------------------------------
# samples and files
# ---------------------------------------------------------------------------
def sample_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of sample ``index``: ``default_rng(SeedSequence(seed).spawn(n)[index])`` for any ``n > index``."""
    seed = check_int("seed", seed, 0)
    index = check_int("index", index, 0)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))


def darcy_sample(seed: int, index: int, *, res: int = 421, sub: int = 5, alpha: float = 2.0, tau: float = 3.0,
                 hi: float = 12.0, lo: float = 3.0, rtol: float = 1e-10, method: str = "direct",
                 grid: str = "fno", offset: int = 0) -> tuple[np.ndarray, np.ndarray, dict]:
    """Sample ``index`` of a :func:`generate_darcy` file, computed alone.

    Returns
    -------
    a, u : numpy.ndarray, (s, s), float32, s = (res - 1 - offset) // sub + 1
        Coefficient and solution subsampled ``[offset::sub, offset::sub]``.
    info : dict
        Solver statistics (see :func:`solve_darcy`).
    """
    keep = slice(check_int("offset", offset, 0), None, check_int("sub", sub, 1))
    field = grf_neumann(res, sample_rng(seed, index), alpha, tau)
    a = darcy_coefficient(field, hi, lo)
    u, info = solve_darcy(a, rtol, method, grid=grid, return_info=True)
    return (np.ascontiguousarray(a[keep, keep], dtype=np.float32),
            np.ascontiguousarray(u[keep, keep], dtype=np.float32), info)


def _worker_init() -> None:
    try:
        import torch

        torch.set_num_threads(1)  # one process per core: no oversubscription
    except ImportError:  # pragma: no cover
        pass


def _job(args):
    seed, index, kw = args
    a, u, info = darcy_sample(seed, index, **kw)
    return index, a, u, info


def generate_darcy(path, n: int, res: int = 421, sub: int = 5, seed: int = 0, *, workers: int | None = None,
                   progress: bool = True, chunk: int = 1, compression: str | None = None, alpha: float = 2.0,
                   tau: float = 3.0, hi: float = 12.0, lo: float = 3.0, rtol: float = 1e-10,
                   method: str = "direct", grid: str = "fno", offset: int = 0) -> str:
    """Generate ``n`` Darcy samples into a PDEBench-layout HDF5 file.

    The layout (read back by :func:`krylearn.datasets.pde_formats.read_darcy`)::

        nu            (n, s, s)     float32   coefficient a (values lo / hi)
        tensor        (n, 1, s, s)  float32   solution u
        x-coordinate  (s,)          float32   point coordinates along axis 1
        y-coordinate  (s,)          float32   ... along axis 2 (the same)
        attrs         generator, version, seed, seed_scheme, n, res, sub, offset, alpha,
                      tau, hi, lo, beta (= f = 1), rtol, solver, grid,
                      max_iterations, seconds

    with ``s = (res - 1 - offset) // sub + 1``. Coordinates are the nodes
    ``linspace(0, 1, res)[offset::sub]`` for ``grid="node"`` and the cell
    centres ``((k + 1/2) / res)[offset::sub]`` for ``grid="fno"`` (see the
    module docstring for offsets that give cell-centred files). Chunks hold
    ``chunk`` samples. The file is written to a temporary name and renamed
    into place when complete.

    Parameters
    ----------
    path : str or os.PathLike
        Output file (folder must exist).
    n : int
        Number of samples.
    res, sub : int
        Solve resolution and subsampling stride (benchmark: 421 and 5 -> 85).
    offset : int
        First point kept along each axis, ``0 <= offset < sub`` (default 0).
    seed : int
        Root seed (see the module docstring for the per-sample seeds).
    workers : int, optional
        Processes solving samples in parallel (default ``os.cpu_count()``);
        1 runs in this process. The content does not depend on it.
    progress : bool
        Show a tqdm progress bar.
    chunk : int
        Samples per HDF5 chunk.
    compression : {None, "gzip", "lzf"}
    alpha, tau, hi, lo, rtol, method, grid
        See :func:`grf_neumann`, :func:`darcy_coefficient`, :func:`solve_darcy`.
        ``method`` defaults to ``"direct"`` here: with ``grid="fno"`` most
        421^2 samples have a few non-positive spline-interpolated node
        coefficients and are solved directly anyway (as MATLAB's backslash
        did), and SuperLU with a minimum-degree ordering is faster than
        AMG-PCG at this size on a CPU.

    Returns
    -------
    str
        ``path``.
    """
    n = check_int("n", n, 1)
    seed = check_int("seed", seed, 0)
    kw = _sample_options(res, sub, alpha, tau, hi, lo, rtol, method, grid, offset)
    workers = min(check_int("workers", (os.cpu_count() or 1) if workers is None else workers, 1), n)
    t0 = time.perf_counter()
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as h5:
            max_iterations = _write_samples(h5, n, seed, kw, workers, chunk, compression, progress)
            attrs = dict(generator=GENERATOR, version=__version__, seed=seed,
                         seed_scheme="numpy.random.SeedSequence(seed).spawn(n)[i] -> default_rng", n=n,
                         **{k: kw[k] for k in ("res", "sub", "offset", "alpha", "tau", "hi", "lo")}, beta=1.0,
                         rtol=kw["rtol"], solver=method, grid=grid, max_iterations=max_iterations,
                         seconds=time.perf_counter() - t0,
                         equation="-div(a grad u) = 1 on (0,1)^2, u = 0 on the boundary")
            for k, v in attrs.items():
                h5.attrs[k] = v
    return os.fspath(path)


def _write_samples(h5, n, seed, kw, workers, chunk, compression, progress) -> int:
    """Create the layout in ``h5`` and fill it with samples ``0..n-1``; returns the most solver iterations."""
    keep = slice(kw["offset"], None, kw["sub"])
    coords = (np.linspace(0.0, 1.0, kw["res"]) if kw["grid"] == "node" else _centres(kw["res"]))[keep]
    s = len(coords)
    nu, tensor = create_darcy_layout(h5, n, (s, s), x=coords, y=coords, chunk=chunk, compression=compression)
    from tqdm.auto import tqdm  # optional dependency, imported where the bar is made

    stats = {"max_iterations": 0}
    with tqdm(total=n, desc="darcy", unit="sample", disable=not progress) as bar:
        def store(result):
            i, a, u, info = result
            nu[i] = a
            tensor[i, 0] = u
            stats["max_iterations"] = max(stats["max_iterations"], info["iterations"])
            bar.update(1)

        _run_samples(store, n, seed, kw, workers)
    return stats["max_iterations"]


def _sample_options(res, sub, alpha, tau, hi, lo, rtol, method, grid, offset=0) -> dict:
    """The checked keyword arguments of :func:`darcy_sample` (errors name the argument)."""
    res = check_int("res", res, 3)
    sub = check_int("sub", sub, 1)
    offset = check_int("offset", offset, 0)
    if offset >= sub:
        raise ValueError(f"offset must be in [0, sub) = [0, {sub}), got {offset}")
    if (res - 1 - offset) // sub + 1 < 3:
        raise ValueError(f"sub = {sub} (offset {offset}) leaves fewer than 3 points per side of res = {res}")
    if grid not in GRIDS:
        raise ValueError(f"grid must be one of {GRIDS}, got {grid!r}")
    if method != "direct" and method not in available_methods():  # checked here: grid="fno" may never call it
        raise ValueError(f"method must be 'direct' or one of {available_methods()}, got {method!r}")
    reals = {name: check_real(name, v, positive=True)
             for name, v in (("alpha", alpha), ("tau", tau), ("hi", hi), ("lo", lo), ("rtol", rtol))}
    return dict(res=res, sub=sub, offset=offset, **reals, method=method, grid=grid)


def _run_samples(store, n: int, seed: int, kw: dict, workers: int) -> None:
    """Compute samples ``0..n-1`` (in this process or in ``workers`` spawned ones) and ``store`` each result."""
    if workers == 1:
        for i in range(n):
            store(_job((seed, i, kw)))
        return
    ctx = multiprocessing.get_context("spawn")  # no forked torch/OpenMP state
    with cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init) as ex:
        try:
            pending, nxt = set(), 0
            while nxt < n or pending:
                while nxt < n and len(pending) < 2 * workers:  # bounded memory
                    pending.add(ex.submit(_job, (seed, nxt, kw)))
                    nxt += 1
                done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    store(fut.result())
        except BaseException:
            ex.shutdown(wait=True, cancel_futures=True)
            raise
