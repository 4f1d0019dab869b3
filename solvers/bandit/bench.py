"""The ``krylearn bench relax`` benchmark: tuning SOR's omega across a sequence of systems.

For one sequence (Khodak et al., "Learning to Relax", ICLR 2024: the shifted
Laplacians with plain SOR from ``x0 = 0``, or the 2D heat equation with
SSOR-preconditioned CG warm-started from the previous step) it runs every
method of :mod:`krylearn.solvers.bandit` over the whole sequence and reports

- total iterations and solve seconds of: omega = 1 (Gauss–Seidel), the
  textbook omega = 1.5, ``YoungSpectral`` (Young's formula from an estimated
  Jacobi spectral radius; its extra matvecs are counted), ``TsallisINF``,
  ``ChebCB`` (sequences with contexts), ``Young`` (residual-history
  estimator; plain SOR only), and two oracles computed by grid search over the tuners' grid
  (``grid_costs``: every arm on every instance): the best fixed omega in
  hindsight and the instance-optimal omega (per instance, best arm of the
  grid); with ``solver="pcg-ssor"`` also plain CG for reference;
- ratios and regret against both oracles, and the ratio to the best fixed
  omega of each prefix of the sequence (checkpoints);
- the randomized tuners over several seeds (mean, std, min–max).

The oracles' iterations come from ``grid_costs`` (with ``warm_start`` each
instance there starts from the stored reference solution of the previous
one, else zeros); their seconds come from replaying the oracle's omegas
through ``tune`` (the replay's iterations are in the JSON too: equal to the
grid's without warm start, close to them with it). "Instance-optimal" is
optimal over the grid only: ``YoungSpectral`` and ``Young`` choose omega on a
continuum and can beat it.

Writes ``relax-<name>-<solver>[-warm].json``, ``.md`` (the printed table) and
``.png`` (cumulative iterations over t, mean with a min–max band over seeds,
and regret curves), plus ``-omega.png`` (the chosen omegas). ``grid_costs``
results are cached in the results folder, keyed by the sequence's meta and
the solver settings.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from ...benchmarks.poisson import machine
from ...problems.sequences import Sequence, heat2d, shifted_laplacian
from ...utils.atomic import atomic_path
from ..api import solve
from . import ChebCB, Fixed, TsallisINF, Tuner, Young, YoungSpectral, best_fixed, grid_costs, instance_optimal, tune
from .bench_report import format_table, plot_report, write_report

__all__ = [
    "SEQUENCE_KINDS",
    "DEFAULT_GRID",
    "make_sequence",
    "default_settings",
    "run_relax",
    "format_table",
    "plot_report",
    "write_report",
]

#: sequences the benchmark can generate
SEQUENCE_KINDS = ("shifted-low", "shifted-high", "heat2d")
#: the tuners' grid (the paper's: 20 omegas on [1, 1.95])
DEFAULT_GRID = np.linspace(1.0, 1.95, 20)
#: prefix lengths at which the ratio to the best fixed omega (in hindsight on the prefix) is reported
CHECKPOINTS = (50, 100, 200, 500, 1000, 2000, 5000, 10000)
_CACHE_VERSION = 1


# ---------------------------------------------------------------------------
# sequences and their default solver settings
# ---------------------------------------------------------------------------
def make_sequence(kind: str, T: int = 1000, n: int | None = None, seed: int = 0, progress: bool = True):
    """Generate a benchmark sequence.

    Parameters
    ----------
    kind : {"shifted-low", "shifted-high", "heat2d"}
    T : int
        Instances (time steps for heat2d).
    n : int, optional
        Grid points per side: default 10 (n = 100 unknowns, the paper's) for
        the shifted Laplacians, 64 for heat2d (4096 unknowns; ~4 min for T = 1000 and 5 seeds on 2 cores).
    seed : int
    progress : bool
    """
    if kind in ("shifted-low", "shifted-high"):
        return shifted_laplacian(T, variance=kind.split("-")[1], grid=10 if n is None else n, seed=seed)
    if kind == "heat2d":
        return heat2d(64 if n is None else n, T, seed=seed, progress=progress)
    raise ValueError(f"sequence must be one of {SEQUENCE_KINDS}, got {kind!r}")


def default_settings(sequence) -> dict:
    """The paper's solver settings for a sequence: heat -> SSOR-PCG warm-started, else plain SOR from 0.

    Both stop at ``||r|| <= 1e-8 ||b||`` (``= 1e-8 ||r0||`` from ``x0 = 0``) with a
    10,000-iteration cap.
    """
    kind = str(getattr(sequence, "meta", {}).get("kind", ""))
    if kind == "heat2d":
        return {"solver": "pcg-ssor", "warm_start": True, "rtol": 1e-8, "maxiter": 10_000}
    return {"solver": "sor", "warm_start": False, "rtol": 1e-8, "maxiter": 10_000}


# ---------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------
def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def _plain_cg(A, b, x0=None, *, omega=None, rtol=1e-8, atol=0.0, maxiter=None):
    """Unpreconditioned CG with the tuners' solver signature (``omega`` ignored): a reference row."""
    return solve(A, b, method="cg", x0=x0, rtol=rtol, atol=atol, maxiter=maxiter, check_symmetry=False)


def _cache_key(sequence, grid, settings) -> str:
    key = {
        "version": _CACHE_VERSION,
        "name": sequence.name,
        "length": len(sequence),
        "meta": _jsonable(sequence.meta),
        "grid": np.asarray(grid, dtype=np.float64).tolist(),
        **{k: settings[k] for k in ("solver", "warm_start", "rtol", "maxiter")},
    }
    file = sequence.meta.get("file") if isinstance(sequence.meta, dict) else None
    if file:
        st = Path(file).stat()
        key["file_stat"] = [st.st_size, st.st_mtime_ns]
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def _grid_costs(sequence, grid, settings, cache_dir, progress):
    path = None
    if cache_dir is not None:
        key = _cache_key(sequence, grid, settings)
        path = Path(cache_dir) / f"grid-costs-{sequence.name}-{key[:16]}.npz"
        if path.exists():
            with np.load(path, allow_pickle=False) as z:
                costs = z["costs"]
            if costs.shape == (len(sequence), len(grid)):
                return costs, {"cached": True, "path": str(path), "seconds": None}
    t0 = time.perf_counter()
    costs = np.asarray(grid_costs(sequence, grid, solver=settings["solver"], warm_start=settings["warm_start"],
                                  rtol=settings["rtol"], maxiter=settings["maxiter"], progress=progress))
    seconds = time.perf_counter() - t0
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, costs=costs, grid=np.asarray(grid, dtype=np.float64))
    return costs, {"cached": False, "path": None if path is None else str(path), "seconds": seconds}


class _Replay(Tuner):
    """A tuner that plays a precomputed omega per instance (the oracles' replays, for their seconds)."""

    def __init__(self, values, name: str):
        super().__init__(grid=np.unique(np.asarray(values, dtype=np.float64)))
        self.name = name
        self.values = np.asarray(values, dtype=np.float64)
        self._t = 0

    def suggest(self, context=None, instance=None) -> float:
        return float(self.values[self._t])

    def update(self, value, result, context=None) -> None:
        self._t += 1


def _warmup(sequence, settings) -> None:
    """Two untimed solves through ``tune`` before anything is timed (numba compilation, caches)."""
    head = [sequence[t] for t in range(min(2, len(sequence)))]
    tune(head, Fixed(1.5), solver=settings["solver"], warm_start=settings["warm_start"], rtol=settings["rtol"],
         maxiter=settings["maxiter"], progress=False)


def _run(sequence, tuner, settings, progress):
    t0 = time.perf_counter()
    r = tune(sequence, tuner, solver=settings["solver"], warm_start=settings["warm_start"], rtol=settings["rtol"],
             maxiter=settings["maxiter"], progress=progress)
    wall = time.perf_counter() - t0
    return {
        "iterations": np.asarray(r.iterations, dtype=np.int64),
        "values": np.asarray(r.values, dtype=np.float64),
        "seconds": float(np.sum(r.seconds)),
        "wall": wall,
        "converged": int(np.sum(r.converged)),
        "extra_matvecs": int(r.extra_matvecs),
    }


def _method_specs(sequence, grid, solver):
    """(name, factory(seed) -> tuner, randomized) for every tuner compared (Young with plain SOR only)."""
    specs = [
        ("omega=1", lambda s: Fixed(1.0), False),
        ("omega=1.5", lambda s: Fixed(1.5), False),
        ("YoungSpectral", lambda s: YoungSpectral(grid), False),
        ("TsallisINF", lambda s: TsallisINF(grid, seed=s), True),
    ]
    if sequence.contexts is not None and sequence.context_range is not None:
        specs.append(("ChebCB", lambda s: ChebCB(grid, context_range=sequence.context_range, seed=s), True))
    if solver == "sor":  # Young reads SOR's residual history; it refuses other solvers
        specs.append(("Young", lambda s: Young(grid, seed=s), True))
    return specs


def _stats(values) -> dict:
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max())}


def run_relax(sequence, *, solver=None, warm_start=None, rtol=None, maxiter=None, seeds: int = 5, grid=None,
              cache_dir=None, progress: bool = True, include_cg: bool | None = None) -> dict:
    """Run every tuner and both oracles over ``sequence``; return the report dict.

    Parameters
    ----------
    sequence : krylearn.problems.sequences.Sequence or list of LinearSystem
        A list is wrapped with ``Sequence.from_systems`` (contexts from ``attrs["context"]``).
    solver, warm_start, rtol, maxiter
        Override :func:`default_settings` of the sequence (``solver`` a
        ``krylearn.solve`` method name: "sor", "ssor", "pcg-ssor").
    seeds : int
        Seeds ``0..seeds-1`` of the randomized tuners (TsallisINF, ChebCB, Young).
    grid : array_like, optional
        The tuners' omega grid (default 20 points on [1, 1.95]); the oracles use it too.
    cache_dir : path, optional
        Folder for the cached ``grid_costs`` (``grid-costs-<name>-<key>.npz``).
    progress : bool
        tqdm bars.
    include_cg : bool, optional
        Add an unpreconditioned-CG reference row (default: when the solver is "pcg-ssor").

    Returns
    -------
    dict
        JSON-ready: ``sequence``, ``settings``, ``grid``, ``oracles``
        (``best_fixed`` index/omega/total, ``instance_optimal`` total,
        per-step ``costs`` (T,) of both), ``methods`` (per method: per-seed
        totals, seconds, wall, per-step iterations and omegas),
        ``rows`` (the table), ``checkpoints``, ``machine``.
    """
    sequence, settings, grid, include_cg = _prepare(sequence, seeds, grid, include_cg, solver=solver,
                                                    warm_start=warm_start, rtol=rtol, maxiter=maxiter)
    _warmup(sequence, settings)
    t0 = time.perf_counter()
    costs, cache_info = _grid_costs(sequence, grid, settings, cache_dir, progress)
    oracles = _oracles(costs)
    methods = _run_methods(sequence, grid, settings, seeds, include_cg, progress)
    methods.update(_replay_oracles(sequence, grid, settings, oracles, progress))
    checkpoints = [c for c in CHECKPOINTS if c < len(sequence)] + [len(sequence)]
    rows = _rows(methods, costs, checkpoints, oracles)
    wall = time.perf_counter() - t0
    return _jsonable(_report(sequence, settings, seeds, grid, costs, cache_info, oracles, checkpoints, rows, methods,
                             wall))


def _prepare(sequence, seeds, grid, include_cg, **overrides):
    """``(sequence, settings, grid, include_cg)`` with defaults filled in; ``ValueError`` for bad arguments."""
    if not hasattr(sequence, "contexts"):  # a plain list of LinearSystem
        sequence = Sequence.from_systems(list(sequence), name="systems")
    if isinstance(seeds, bool) or not isinstance(seeds, (int, np.integer)) or seeds < 1:
        raise ValueError(f"seeds must be an int >= 1, got {seeds!r}")
    if len(sequence) < 1:
        raise ValueError("sequence is empty")
    settings = default_settings(sequence)
    settings.update({k: v for k, v in overrides.items() if v is not None})
    grid = DEFAULT_GRID if grid is None else np.asarray(grid, dtype=np.float64)
    if include_cg is None:
        include_cg = settings["solver"] == "pcg-ssor"
    return sequence, settings, grid, include_cg


def _oracles(costs) -> dict:
    """Best fixed arm and instance-optimal arms of the grid costs ``(T, arms)``, with their per-step costs."""
    bf_index, bf_total = best_fixed(costs)
    io_indices, io_total = instance_optimal(costs)
    bf_index = int(bf_index)
    io_indices = np.asarray(io_indices, dtype=np.int64)
    return {"bf_index": bf_index, "bf_total": bf_total, "bf_costs": costs[:, bf_index].astype(np.int64),
            "io_indices": io_indices, "io_total": io_total,
            "io_costs": costs[np.arange(costs.shape[0]), io_indices].astype(np.int64)}


def _run_methods(sequence, grid, settings, seeds, include_cg, progress) -> dict:
    """Every tuner over the sequence (the randomized ones once per seed), and plain CG when asked."""
    methods: dict[str, dict] = {}
    for name, factory, randomized in _method_specs(sequence, grid, settings["solver"]):
        runs = [_run(sequence, factory(s), settings, progress) for s in (range(seeds) if randomized else [0])]
        methods[name] = {"randomized": randomized, "runs": runs}
    if include_cg:
        cg_run = _run(sequence, Fixed(1.0), dict(settings, solver=_plain_cg), progress)
        methods["CG (no precond.)"] = {"randomized": False, "runs": [cg_run]}
    return methods


def _replay_oracles(sequence, grid, settings, oracles, progress) -> dict:
    """The two oracles: iterations from the grid costs, seconds from replaying their omegas."""
    T = len(sequence)
    replays = {
        "best fixed (hindsight)": (np.full(T, grid[oracles["bf_index"]]), oracles["bf_costs"]),
        "instance-optimal": (grid[oracles["io_indices"]], oracles["io_costs"]),
    }
    methods = {}
    for name, (values, oracle_costs) in replays.items():
        run = _run(sequence, _Replay(values, name), settings, progress)
        run["replay_iterations"] = run["iterations"]
        run["iterations"] = oracle_costs
        run["values"] = values
        methods[name] = {"randomized": False, "runs": [run], "oracle": True}
    return methods


def _rows(methods, costs, checkpoints, oracles) -> list[dict]:
    """The table rows (and each method's prefix ratios to the best fixed omega, stored in ``methods``)."""
    bf_total, io_total = oracles["bf_total"], oracles["io_total"]
    prefix_best = {c: float(costs[:c].sum(axis=0).min()) for c in checkpoints}
    rows = []
    for name, m in methods.items():
        totals = [int(r["iterations"].sum()) for r in m["runs"]]
        cum = np.stack([np.cumsum(r["iterations"]) for r in m["runs"]])
        m["totals"] = totals
        m["checkpoint_ratio_to_best_fixed"] = {
            str(c): _stats(cum[:, c - 1] / prefix_best[c]) for c in checkpoints
        }
        row = {
            "method": name,
            "seeds": len(m["runs"]),
            "total": _stats(totals),
            "ratio_best_fixed": _stats(np.asarray(totals) / bf_total),
            "ratio_instance_optimal": _stats(np.asarray(totals) / io_total),
            "regret_best_fixed": _stats(np.asarray(totals) - bf_total),
            "regret_instance_optimal": _stats(np.asarray(totals) - io_total),
            "solve_s": _stats([r["seconds"] for r in m["runs"]]),
            "wall_s": _stats([r["wall"] for r in m["runs"]]),
            "extra_matvecs": int(np.mean([r["extra_matvecs"] for r in m["runs"]])),
            "converged": int(min(r["converged"] for r in m["runs"])),
            "omega_mean": float(np.mean([r["values"].mean() for r in m["runs"]])),
        }
        if m.get("oracle"):
            row["replay_total"] = int(m["runs"][0]["replay_iterations"].sum())
        rows.append(row)
    return rows


def _report(sequence, settings, seeds, grid, costs, cache_info, oracles, checkpoints, rows, methods, wall) -> dict:
    solver_name = settings["solver"]
    if not isinstance(solver_name, str):
        solver_name = getattr(solver_name, "__name__", "callable")
    return {
        "benchmark": "relax",
        "sequence": {"name": sequence.name, "T": len(sequence), "n": int(sequence[0].n),
                     "meta": _jsonable(sequence.meta),
                     "context_range": None if sequence.context_range is None else list(sequence.context_range),
                     "has_contexts": sequence.contexts is not None,
                     "contexts": None if sequence.contexts is None else np.asarray(sequence.contexts)},
        "settings": {**settings, "solver": solver_name, "seeds": int(seeds),
                     "stopping_rule": "||r|| <= max(rtol*||b||, 0)",
                     "x0": "previous instance's computed solution" if settings["warm_start"] else "zeros"},
        "grid": grid.tolist(),
        "oracles": {
            "source": "grid_costs: every arm of the grid on every instance"
                      + (" (warm start from the stored reference solution of the previous instance)"
                         if settings["warm_start"] else " (from x0 = 0)"),
            "best_fixed": {"index": oracles["bf_index"], "omega": float(grid[oracles["bf_index"]]),
                           "total": int(oracles["bf_total"])},
            "instance_optimal": {"total": int(oracles["io_total"]), "omegas": grid[oracles["io_indices"]]},
            "grid_costs": cache_info,
            "arm_totals": costs.sum(axis=0),
        },
        "checkpoints": checkpoints,
        "rows": rows,
        "methods": methods,
        "wall_seconds": wall,
        "machine": machine(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
