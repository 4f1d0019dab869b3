"""``krylearn bench fcg-lsm``: FCG with the LSM preconditioner against CG, IC-PCG, AMG-PCG and mgpcg on Darcy.

For each grid size and each held-out coefficient field (a seed the
training never used) it solves the Darcy system ``-div(a grad u) = 1`` to
``rtol`` with every method and records iterations, setup and solve
seconds.  It writes one JSON with every row, a markdown table (median over
fields, ratios to IC-PCG's iterations and to the fastest classical
method's time) and an iterations-vs-size plot.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from ...benchmarks.poisson import Problem, machine, run_method
from ...utils.atomic import atomic_write_text, save_figure
from .recipe import darcy_operator

__all__ = ["DEFAULT_METHODS", "run_fcg_lsm_benchmark", "format_fcg_lsm_table"]

DEFAULT_METHODS = ("cg", "pcg-ic", "pcg-amg", "mgpcg", "fcg-lsm")


def run_fcg_lsm_benchmark(*, sizes=(85, 170, 340), fields: int = 3, seed: int = 999, methods=DEFAULT_METHODS,
                          rtol: float = 1e-8, repeats: int = 1, warmup: int = 1, model=None, out_dir=None,
                          progress: bool = True) -> dict:
    """Run every method on every (size, field); return (and write) the report."""
    out = Path(out_dir) if out_dir is not None else None
    rows = []
    options = {"fcg-lsm": {"model": model}} if model is not None else {}
    for s in sizes:
        for i in range(fields):
            A, b = darcy_operator(s, seed, i)
            p = Problem(f"darcy-{s}-s{seed}-{i}", A, b, grid_shape=(s - 2, s - 2))
            for m in methods:
                opts = {"check_symmetry": False} if m.startswith("pcg") or m in ("cg", "mgpcg") else {}
                row, _ = run_method(p, m, rtol=rtol, repeats=repeats, warmup=warmup,
                                    options={**opts, **options.get(m, {})})
                row.update({"problem": p.name, "size": s, "field": i, "unknowns": p.unknowns})
                rows.append(row)
                if progress:
                    print(f"  {p.name}: {m}: {row['iterations']} iterations, "
                          f"{row['setup_s'] + row['solve_s']:.3f} s", flush=True)
    report = {
        "benchmark": "fcg-lsm",
        "problem": "Darcy -div(a grad u) = 1, u = 0 on the boundary; a thresholded GRF (12 / 3)",
        "sizes": list(sizes), "fields": fields, "seed": seed, "model": str(model) if model else "fcg-lsm-darcy",
        "stopping_rule": {"rtol": rtol, "atol": 0.0, "rule": "||b - A x|| <= rtol ||b|| (true residual)"},
        "timing": {"repeats": repeats, "warmup": warmup, "statistic": "median"},
        "machine": machine(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "rows": rows,
        "summary": summarize(rows),
    }
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "fcg-lsm.json", json.dumps(report, indent=1))
        atomic_write_text(out / "fcg-lsm.md", format_fcg_lsm_table(report) + "\n")
        plot_iterations(report["summary"], out / "fcg-lsm-scaling.png", rtol=rtol)
        report["files"] = [str(out / f) for f in ("fcg-lsm.json", "fcg-lsm.md", "fcg-lsm-scaling.png")]
    return report


def summarize(rows) -> list[dict]:
    """Median iterations and seconds per (size, method), with the ratios the table shows."""
    out = []
    sizes = sorted({r["size"] for r in rows})
    methods = list(dict.fromkeys(r["method"] for r in rows))
    for s in sizes:
        med = {}
        for m in methods:
            rs = [r for r in rows if r["size"] == s and r["method"] == m]
            med[m] = {"iterations": statistics.median(r["iterations"] for r in rs),
                      "setup_s": statistics.median(r["setup_s"] for r in rs),
                      "solve_s": statistics.median(r["solve_s"] for r in rs),
                      "converged": all(r["converged"] for r in rs), "unknowns": rs[0]["unknowns"]}
        classical = [m for m in methods if m in ("pcg-amg", "mgpcg", "pcg-ic", "cg")]
        fastest = min(classical, key=lambda m: med[m]["setup_s"] + med[m]["solve_s"]) if classical else None
        for m in methods:
            v = med[m]
            total = v["setup_s"] + v["solve_s"]
            row = {"size": s, "method": m, **v, "total_s": total}
            if "pcg-ic" in med:
                row["iterations_over_ic"] = v["iterations"] / max(med["pcg-ic"]["iterations"], 1)
            if fastest:
                row["fastest_classical"] = fastest
                row["time_over_fastest"] = total / (med[fastest]["setup_s"] + med[fastest]["solve_s"])
            first = next((x for x in out if x["method"] == m and x["size"] == sizes[0]), None)
            row["growth"] = v["iterations"] / first["iterations"] if first and first["iterations"] else 1.0
            out.append(row)
    return out


def format_fcg_lsm_table(report: dict) -> str:
    """Markdown: median over the fields, per size and method."""
    rtol = report["stopping_rule"]["rtol"]
    lines = [f"| grid | unknowns | method | iterations to {rtol:g} | / IC-PCG | growth from "
             f"{report['sizes'][0]} | setup s | solve s | time / fastest classical |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in report["summary"]:
        conv = "" if r["converged"] else " (not converged)"
        over_ic = f"{r['iterations_over_ic']:.2f}" if "iterations_over_ic" in r else ""
        fast = f"{r['time_over_fastest']:.2f} ({r['fastest_classical']})" if "time_over_fastest" in r else ""
        lines.append(f"| {r['size']}² | {r['unknowns']} | {r['method']} | {r['iterations']:g}{conv} | {over_ic} | "
                     f"{r['growth']:.2f} | {r['setup_s']:.3f} | {r['solve_s']:.3f} | {fast} |")
    fields = f"{report['fields']} held-out coefficient field{'s' if report['fields'] != 1 else ''}"
    lines.append(f"\nMedian over {fields} (seed {report['seed']}) per size; "
                 f"seconds: median of {report['timing']['repeats']} run(s) after {report['timing']['warmup']} "
                 f"warm-up run(s). Machine: {report['machine']['cpu']}, torch {report['machine']['torch']}.")
    return "\n".join(lines)


def plot_iterations(summary, path, *, rtol: float) -> None:
    """Iterations vs unknowns, one line per method (log-log)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2), dpi=110)
    for m in dict.fromkeys(r["method"] for r in summary):
        pts = [(r["unknowns"], r["iterations"]) for r in summary if r["method"] == m]
        ax.loglog(*zip(*pts), marker="o", label=m)
    ax.set_xlabel("unknowns")
    ax.set_ylabel(f"iterations to rtol {rtol:g}")
    ax.set_title("Darcy: iterations against grid size (median over fields)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
