"""``krylearn bench dcdm``: DCDM against CG, IC-PCG and AMG-PCG across grid sizes.

For every scene and size it simulates a held-out smoke frame (scene seeds
the training never used), solves its pressure system with each method to
``rtol`` and reads the iterations to the coarser ``rtol_coarse`` off the same
residual history.  It writes one JSON with every row and residual history,
a markdown table, a residual plot per system and an iterations-vs-size plot.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import scipy.sparse

from ...benchmarks.poisson import Problem, machine, plot_residuals, run_method, smoke_problem
from ...utils.atomic import atomic_path, atomic_write_text, save_figure
from ...utils.checks import check_int

__all__ = ["run_dcdm_benchmark", "format_dcdm_table", "iterations_to"]

DEFAULT_METHODS = ("cg", "pcg-ic", "pcg-amg", "mgpcg", "dcdm")


def iterations_to(history, rtol: float) -> int | None:
    """First iteration whose relative residual is ``<= rtol`` (None if never)."""
    h = np.asarray(history, dtype=float)
    hit = np.flatnonzero(h <= rtol)
    return int(hit[0]) if hit.size else None


def _cached_problem(scene, dim, n, frames, seed, cache: Path | None, progress: bool,
                    sim_solver: str = "pcg-amg") -> Problem:
    """Simulate (or load from ``cache``) the held-out frame."""
    tag = "" if sim_solver == "pcg-amg" else f"-{sim_solver}"
    name = f"{scene}-{dim}d-{n}-f{frames}-s{seed}{tag}.npz"
    if cache is not None and (cache / name).is_file():
        with np.load(cache / name, allow_pickle=False) as z:
            A = scipy.sparse.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"]))
            meta = json.loads(str(z["meta"]))
            return Problem(str(z["name"]), A, z["b"], tuple(z["grid_shape"]), z["flags"], meta)
    p = smoke_problem(scene, dim, n, frames, seed, progress=progress, sim_solver=sim_solver)
    p.name = f"{p.name}-s{seed}"
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        with atomic_path(cache / name) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, data=p.A.data, indices=p.A.indices, indptr=p.A.indptr, shape=np.array(p.A.shape),
                         b=p.b, grid_shape=np.array(p.grid_shape), flags=p.flags, name=p.name,
                         meta=json.dumps(p.meta))
    return p


def run_dcdm_benchmark(*, dim: int, sizes, scenes=("smoke-plume", "smoke-obstacle"), seed: int = 0,
                       frames: int = 10, methods=DEFAULT_METHODS, rtol: float = 1e-6, rtol_coarse: float = 1e-4,
                       repeats: int = 1, warmup: int = 1, model: str | None = None, out_dir=None, cache: bool = True,
                       progress: bool = True, sim_solver: str = "pcg-amg") -> dict:
    """Run every method on every (scene, size); return (and write) the report."""
    check_int("frames", frames, 1)
    if not 0 < rtol <= rtol_coarse:
        raise ValueError(f"rtol_coarse must be >= rtol > 0 (its iterations are read off the rtol run), got "
                         f"{rtol_coarse} and {rtol}")
    out = Path(out_dir) if out_dir is not None else None
    rows, residuals = [], {}
    options = {m: {"model": model} for m in methods if m.startswith("dcdm")} if model else {}
    for scene in scenes:
        for n in sizes:
            p = _cached_problem(scene, dim, n, frames, seed, out if (cache and out) else None, progress, sim_solver)
            hist = {}
            for m in methods:
                row, h = run_method(p, m, rtol=rtol, repeats=repeats, warmup=warmup,
                                     options=options.get(m))
                row.update({"problem": p.name, "scene": scene, "n": n, "dim": dim, "unknowns": p.unknowns,
                            "iterations_coarse": iterations_to(h, rtol_coarse)})
                rows.append(row)
                hist[m] = h
                if progress:
                    print(f"  {p.name}: {m}: {row['iterations']} iterations, "
                          f"{row['setup_s'] + row['solve_s']:.3f} s", flush=True)
            residuals[p.name] = {k: v.tolist() for k, v in hist.items()}
            if out is not None:
                out.mkdir(parents=True, exist_ok=True)
                plot_residuals(hist, out / f"{p.name}.png", title=f"{p.name} ({p.unknowns} unknowns)", rtol=rtol)
    report = {
        "benchmark": "dcdm",
        "dim": dim, "sizes": list(sizes), "scenes": list(scenes), "seed": seed, "frames": frames,
        "sim_solver": sim_solver,
        "stopping_rule": {"rtol": rtol, "rtol_coarse": rtol_coarse, "atol": 0.0,
                          "rule": "||r|| <= rtol*||b||; iterations to rtol_coarse read off the same history"},
        "timing": {"repeats": repeats, "warmup": warmup, "statistic": "median"},
        "machine": machine(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "rows": rows,
        "growth": growth(rows),
        "residuals": residuals,
    }
    if out is not None:
        tag = f"dcdm-{dim}d"
        atomic_write_text(out / f"{tag}.json", json.dumps(report, indent=1))
        atomic_write_text(out / f"{tag}.md", format_dcdm_table(report) + "\n")
        plot_scaling(rows, out / f"{tag}-scaling.png", rtol=rtol, rtol_coarse=rtol_coarse)
        report["files"] = [str(out / f"{tag}.{e}") for e in ("json", "md")] + [str(out / f"{tag}-scaling.png")]
    return report


def growth(rows) -> list[dict]:
    """Iteration growth from the smallest to each larger size, per scene and method."""
    out = []
    for scene in sorted({r["scene"] for r in rows}):
        for m in sorted({r["method"] for r in rows}):
            rs = sorted((r for r in rows if r["scene"] == scene and r["method"] == m), key=lambda r: r["n"])
            for r in rs[1:]:
                for key in ("iterations_coarse", "iterations"):
                    a, b = rs[0].get(key), r.get(key)
                    out.append({"scene": scene, "method": m, "from": rs[0]["n"], "to": r["n"], "measure": key,
                                "ratio": (b / a) if a and b else None})
    return out


def format_dcdm_table(report: dict) -> str:
    """Markdown: one row per (system, method) plus the growth table."""
    rc, rf = report["stopping_rule"]["rtol_coarse"], report["stopping_rule"]["rtol"]
    methods = {r["method"] for r in report["rows"]}
    ref = "mgpcg" if "mgpcg" in methods else "pcg-amg"  # the fastest classical method in the run
    lines = [f"| system | unknowns | method | it. to {rc:g} | it. to {rf:g} | setup s | solve s | "
             f"total / {'mgpcg' if ref == 'mgpcg' else 'AMG-PCG'} | fallback steps |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    by_problem: dict = {}
    for r in report["rows"]:
        by_problem.setdefault(r["problem"], []).append(r)
    for name, rs in by_problem.items():
        base = next((r for r in rs if r["method"] == ref), None)
        for r in rs:
            total = r["setup_s"] + r["solve_s"]
            ratio = f"{total / (base['setup_s'] + base['solve_s']):.2f}" if base else ""
            conv = "" if r["converged"] else f" ({r['reason']})"
            fb = r.get("fallback_steps", "")
            lines.append(f"| {name} | {r['unknowns']} | {r['method']} | {r['iterations_coarse']} | "
                         f"{r['iterations']}{conv} | {r['setup_s']:.3f} | {r['solve_s']:.3f} | {ratio} | {fb} |")
    lines.append(f"\nStopping rule ||r|| <= rtol ||b||; iterations to {rc:g} read off the rtol={rf:g} run's "
                 "residual history. Seconds: median of "
                 f"{report['timing']['repeats']} run(s) after {report['timing']['warmup']} warm-up run(s).")
    g = [x for x in report["growth"] if x["measure"] == "iterations_coarse"]
    if g:
        lines += ["", f"Iteration growth (to {rc:g}) from the smallest size:", "",
                  "| scene | method | sizes | ratio |", "|---|---|---|---:|"]
        for x in g:
            ratio = f"{x['ratio']:.2f}" if x["ratio"] else "n/a"
            lines.append(f"| {x['scene']} | {x['method']} | {x['from']} -> {x['to']} | {ratio} |")
    return "\n".join(lines)


def plot_scaling(rows, path, *, rtol: float, rtol_coarse: float) -> None:
    """Iterations vs unknowns, one line per (scene, method)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=110, sharey=True)
    for ax, key, tol in ((axes[0], "iterations_coarse", rtol_coarse), (axes[1], "iterations", rtol)):
        for scene in sorted({r["scene"] for r in rows}):
            for m in sorted({r["method"] for r in rows}):
                rs = sorted((r for r in rows if r["scene"] == scene and r["method"] == m), key=lambda r: r["n"])
                pts = [(r["unknowns"], r[key]) for r in rs if r[key]]
                if pts:
                    ax.loglog(*zip(*pts), marker="o", ls="-" if scene.endswith("plume") else "--",
                              label=f"{m} ({scene})")
        ax.set_title(f"iterations to rtol {tol:g}")
        ax.set_xlabel("unknowns")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("iterations")
    axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    save_figure(fig, path)
