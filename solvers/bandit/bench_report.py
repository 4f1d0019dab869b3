"""Reports of ``krylearn bench relax``: the markdown table, the cumulative-cost / regret / omega plots, the files.

:func:`format_table` and :func:`plot_report` read a report of
:func:`krylearn.solvers.bandit.bench.run_relax`; :func:`write_report` writes
``relax-<name>-<solver>[-warm].{json,md,png}`` and ``-omega.png``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ...utils.atomic import atomic_write_text, save_figure

__all__ = ["format_table", "plot_report", "write_report"]


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
    save_figure(fig, Path(path))
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
    save_figure(fig, Path(omega_path))


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
