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

from ..utils.atomic import atomic_path, atomic_write_text

from .poisson import machine

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
    from ..problems.sequences import heat2d, shifted_laplacian

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
    from ..solvers.api import solve

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
    from ..solvers.bandit import grid_costs

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


def _replay(values, name: str):
    """A tuner that plays a precomputed omega per instance (the oracles' replays, for their seconds)."""
    from ..solvers.bandit import Tuner

    class Replay(Tuner):
        def __init__(self):
            super().__init__(grid=np.unique(np.asarray(values, dtype=np.float64)))
            self.name = name
            self.values = np.asarray(values, dtype=np.float64)
            self._t = 0

        def suggest(self, context=None, instance=None) -> float:
            return float(self.values[self._t])

        def update(self, value, result, context=None) -> None:
            self._t += 1

    return Replay()


def _warmup(sequence, settings) -> None:
    """Two untimed solves through ``tune`` before anything is timed (numba compilation, caches)."""
    from ..solvers.bandit import Fixed, tune

    head = [sequence[t] for t in range(min(2, len(sequence)))]
    tune(head, Fixed(1.5), solver=settings["solver"], warm_start=settings["warm_start"], rtol=settings["rtol"],
         maxiter=settings["maxiter"], progress=False)


def _run(sequence, tuner, settings, progress):
    from ..solvers.bandit import tune

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
    from ..solvers import bandit as B

    specs = [
        ("omega=1", lambda s: B.Fixed(1.0), False),
        ("omega=1.5", lambda s: B.Fixed(1.5), False),
        ("YoungSpectral", lambda s: B.YoungSpectral(grid), False),
        ("TsallisINF", lambda s: B.TsallisINF(grid, seed=s), True),
    ]
    if sequence.contexts is not None and sequence.context_range is not None:
        specs.append(("ChebCB", lambda s: B.ChebCB(grid, context_range=sequence.context_range, seed=s), True))
    if solver == "sor":  # Young reads SOR's residual history; it refuses other solvers
        specs.append(("Young", lambda s: B.Young(grid, seed=s), True))
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
    from ..solvers.bandit import best_fixed, instance_optimal

    if not hasattr(sequence, "contexts"):  # a plain list of LinearSystem
        from ..problems.sequences import Sequence

        sequence = Sequence.from_systems(list(sequence), name="systems")
    if isinstance(seeds, bool) or not isinstance(seeds, (int, np.integer)) or seeds < 1:
        raise ValueError(f"seeds must be an int >= 1, got {seeds!r}")
    if len(sequence) < 1:
        raise ValueError("sequence is empty")
    settings = default_settings(sequence)
    for k, v in (("solver", solver), ("warm_start", warm_start), ("rtol", rtol), ("maxiter", maxiter)):
        if v is not None:
            settings[k] = v
    grid = DEFAULT_GRID if grid is None else np.asarray(grid, dtype=np.float64)
    if include_cg is None:
        include_cg = settings["solver"] == "pcg-ssor"
    T = len(sequence)
    _warmup(sequence, settings)

    t0 = time.perf_counter()
    costs, cache_info = _grid_costs(sequence, grid, settings, cache_dir, progress)
    bf_index, bf_total = best_fixed(costs)
    io_indices, io_total = instance_optimal(costs)
    bf_index = int(bf_index)
    io_indices = np.asarray(io_indices, dtype=np.int64)
    bf_costs = costs[:, bf_index].astype(np.int64)
    io_costs = costs[np.arange(T), io_indices].astype(np.int64)

    methods: dict[str, dict] = {}
    specs = _method_specs(sequence, grid, settings["solver"])
    for name, factory, randomized in specs:
        runs = [_run(sequence, factory(s), settings, progress) for s in (range(seeds) if randomized else [0])]
        methods[name] = {"randomized": randomized, "runs": runs}
    if include_cg:
        cg_settings = dict(settings, solver=_plain_cg)
        from ..solvers.bandit import Fixed

        cg_run = _run(sequence, Fixed(1.0), cg_settings, progress)
        methods["CG (no precond.)"] = {"randomized": False, "runs": [cg_run]}
    replays = {
        "best fixed (hindsight)": (np.full(T, grid[bf_index]), bf_costs),
        "instance-optimal": (grid[io_indices], io_costs),
    }
    for name, (values, oracle_costs) in replays.items():
        run = _run(sequence, _replay(values, name), settings, progress)
        run["replay_iterations"] = run["iterations"]
        run["iterations"] = oracle_costs
        run["values"] = values
        methods[name] = {"randomized": False, "runs": [run], "oracle": True}

    checkpoints = [c for c in CHECKPOINTS if c < T] + [T]
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
    wall = time.perf_counter() - t0
    solver_name = settings["solver"]
    if not isinstance(solver_name, str):
        solver_name = getattr(solver_name, "__name__", "callable")
    report = {
        "benchmark": "relax",
        "sequence": {"name": sequence.name, "T": T, "n": int(sequence[0].n), "meta": _jsonable(sequence.meta),
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
            "best_fixed": {"index": bf_index, "omega": float(grid[bf_index]), "total": int(bf_total)},
            "instance_optimal": {"total": int(io_total), "omegas": grid[io_indices]},
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
    return _jsonable(report)


# ---------------------------------------------------------------------------
# reporting
# ---------------------------------------------------------------------------
def _pm(s: dict, fmt="{:,.0f}") -> str:
    if s["max"] == s["min"]:
        return fmt.format(s["mean"])
    return f"{fmt.format(s['mean'])} ± {fmt.format(s['std'])} [{fmt.format(s['min'])}–{fmt.format(s['max'])}]"


def format_table(report: dict) -> str:
    """Markdown table of a :func:`run_relax` report (plus the checkpoint ratios), naming the settings."""
    seq, st = report["sequence"], report["settings"]
    bf = report["oracles"]["best_fixed"]
    lines = [
        f"### {seq['name']}: T = {seq['T']}, n = {seq['n']}, solver {st['solver']}, x0 = {st['x0']}",
        "",
        ("| method | total iterations (mean ± std [min–max]) | × best fixed | × instance-opt. "
         "| regret vs best fixed | regret vs instance-opt. | solve s | wall s | extra matvecs | mean omega |"),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        name = r["method"] + (f" ({r['seeds']} seeds)" if r["seeds"] > 1 else "")
        if r["method"] == "best fixed (hindsight)":
            name += f", omega = {bf['omega']:.3f}"
        lines.append(
            f"| {name} | {_pm(r['total'])} | {r['ratio_best_fixed']['mean']:.3f} | "
            f"{r['ratio_instance_optimal']['mean']:.3f} | {_pm(r['regret_best_fixed'])} | "
            f"{_pm(r['regret_instance_optimal'])} | {r['solve_s']['mean']:.2f} | {r['wall_s']['mean']:.2f} | "
            f"{r['extra_matvecs']:,} | {r['omega_mean']:.3f} |"
        )
    cps = report["checkpoints"]
    lines += ["", "Ratio to the best fixed omega in hindsight on the first t instances (mean over seeds):", "",
              "| method | " + " | ".join(f"t = {c}" for c in cps) + " |",
              "|---|" + "---:|" * len(cps)]
    for name, m in report["methods"].items():
        if m.get("oracle") and name != "instance-optimal":
            continue
        ratios = m["checkpoint_ratio_to_best_fixed"]
        lines.append(f"| {name} | " + " | ".join(f"{ratios[str(c)]['mean']:.3f}" for c in cps) + " |")
    lines += [
        "",
        (f"Stopping rule: ||r|| <= rtol*||b||, rtol = {st['rtol']:g}, cap {st['maxiter']:,} iterations. "
         f"Oracles from {report['oracles']['source']}, on the tuners' grid of {len(report['grid'])} omegas "
         f"in [{report['grid'][0]:g}, {report['grid'][-1]:g}] (YoungSpectral and Young pick omega on a "
         "continuum, so they can beat the grid's instance optimum); their seconds come from replaying their omegas. "
         "Seconds: summed solve wall time (solve s) and the whole run including the tuner (wall s), "
         f"on {report['machine']['cpu']} ({report['machine']['cores']} cores)."),
    ]
    return "\n".join(lines)


def plot_report(report: dict, path, omega_path=None) -> None:
    """Cumulative iterations, regret vs best fixed and vs instance-optimal (PNG); optionally the omegas chosen."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = report["methods"]
    T = report["sequence"]["T"]
    t = np.arange(1, T + 1)
    cum_bf = np.cumsum(methods["best fixed (hindsight)"]["runs"][0]["iterations"])
    cum_io = np.cumsum(methods["instance-optimal"]["runs"][0]["iterations"])
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8), dpi=110)
    for k, (name, m) in enumerate(methods.items()):
        c = colors[k % len(colors)]
        ls = "--" if m.get("oracle") else "-"
        cum = np.stack([np.cumsum(r["iterations"]) for r in m["runs"]]).astype(np.float64)
        for ax, curves in ((axes[0], cum), (axes[1], cum - cum_bf), (axes[2], cum - cum_io)):
            ax.plot(t, curves.mean(axis=0), color=c, ls=ls, lw=1.4, label=name)
            if curves.shape[0] > 1:
                ax.fill_between(t, curves.min(axis=0), curves.max(axis=0), color=c, alpha=0.2, lw=0)
    axes[0].set_ylabel("cumulative iterations")
    axes[0].set_yscale("log")
    axes[1].set_ylabel("regret vs best fixed omega (iterations)")
    axes[2].set_ylabel("regret vs instance-optimal omega (iterations)")
    for ax in (axes[1], axes[2]):
        ax.set_yscale("symlog", linthresh=max(10.0, 0.001 * T))
    for ax in axes:
        ax.set_xlabel("instance t")
        ax.grid(True, which="both", alpha=0.3)
    seq, st = report["sequence"], report["settings"]
    fig.suptitle(f"{seq['name']} (n = {seq['n']}), {st['solver']}, rtol {st['rtol']:g}, "
                 f"x0 = {st['x0']}; band: min–max over {st['seeds']} seeds")
    axes[2].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    if omega_path is None:
        return
    has_ctx = bool(seq["has_contexts"]) and seq.get("contexts") is not None
    fig, axes = plt.subplots(1, 2 if has_ctx else 1, figsize=(15 if has_ctx else 9, 4.8), dpi=110, squeeze=False)
    axes = axes[0]
    w = max(1, T // 50)
    kernel = np.ones(w) / w
    shown = [(k, name, m) for k, (name, m) in enumerate(methods.items())
             if not name.startswith("CG") and not name.startswith("omega=")]
    for k, name, m in shown:
        c = colors[k % len(colors)]
        ls = "--" if m.get("oracle") else "-"
        v = np.asarray(m["runs"][0]["values"], dtype=float)
        sm = np.convolve(np.pad(v, (w // 2, w - 1 - w // 2), mode="edge"), kernel, mode="valid") if w > 1 else v
        axes[0].plot(t, sm, color=c, ls=ls, lw=1.2, label=name)
    axes[0].set_xlabel("instance t")
    axes[0].set_ylabel(f"omega (moving mean over {w} instances; first seed)")
    axes[0].grid(True, alpha=0.3)
    axes[0].set_title("omega over the sequence")
    if has_ctx:
        ctx = np.asarray(seq["contexts"], dtype=float)
        late = slice(T // 2, None)  # the second half: what the tuners learned
        for k, name, m in shown:
            v = np.asarray(m["runs"][0]["values"], dtype=float)
            if np.ptp(v) == 0:
                continue
            axes[1].scatter(ctx[late], v[late], s=6 if m.get("oracle") else 4, alpha=0.6,
                            color=colors[k % len(colors)], marker="x" if m.get("oracle") else "o", label=name)
        axes[1].set_xlabel("context")
        axes[1].set_ylabel("omega")
        axes[1].grid(True, alpha=0.3)
        axes[1].set_title("omega against the context, second half of the sequence")
    axes[0].legend(fontsize=7, loc="best")
    if has_ctx:
        axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), markerscale=2)
    fig.suptitle(f"{seq['name']}: omegas chosen")
    fig.tight_layout()
    with atomic_path(Path(omega_path)) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def write_report(report: dict, out_dir) -> list[str]:
    """Write ``relax-<name>-<solver>[-warm].{json,md,png}`` and ``-omega.png`` into ``out_dir``; return the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    st = report["settings"]
    stem = f"relax-{report['sequence']['name']}-{st['solver']}" + ("-warm" if st["warm_start"] else "")
    paths = [out / f"{stem}.json", out / f"{stem}.md", out / f"{stem}.png", out / f"{stem}-omega.png"]
    atomic_write_text(paths[0], json.dumps(report, indent=None, separators=(",", ":")))
    atomic_write_text(paths[1], format_table(report) + "\n")
    plot_report(report, paths[2], paths[3])
    return [str(p) for p in paths]
