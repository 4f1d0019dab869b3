"""``krylearn bench darcy``: learned operators (LSM, FNO, U-Net) against AMG-PCG on Darcy flow, and warm starts.

For held-out samples of a Darcy file it reports, per model:

* test relative L2 error ``||u_pred - u|| / ||u||`` (whole grid, mean /
  median / max over the same samples for every model), parameter count,
  training seconds (from the model's card);
* inference seconds per sample (batched, after a warm-up, median of
  ``repeats`` passes) against the seconds of one ``pcg-amg`` solve
  (hierarchy setup + iterations, ``rtol``) of the finite-difference system
  :func:`~krylearn.operators.darcy.darcy_system` of the same sample at the
  same resolution.

The warm-start study takes the first ``warm_count`` of those samples, builds
``A u = b`` at the data's resolution and solves it with ``cg`` and
``pcg-amg`` to ``rtol`` from ``x0 = 0`` and from ``x0 = interior(prediction)``
of each model (and, as a reference, from the stored ``u`` of the file):
iterations, seconds, per-sample warm/cold ratios.

The file's ``u`` is *not* the solution of that system: the benchmark data
are solved on a finer grid (421 points, FNO: interpolated from cell centres)
and sub-sampled, while the system here is the 5-point discretisation at the
sub-sampled resolution.  The report measures ``||u_FD - u_data|| / ||u_data||``
(``u_FD``: a direct solve of the system); a network trained on the file
approximates ``u_data``, so its warm start cannot start closer to ``u_FD``
than about this distance, and the stored-``u`` row shows the iterations such
a perfect network would save.

Outputs (atomic writes) in ``out_dir``: ``darcy.json`` (everything, per
sample), ``darcy.md`` (tables), ``darcy-samples-<model>.png`` (coefficient /
truth / prediction / error for ``figure_samples`` samples) and
``darcy-warmstart.png`` (residual histories of the first sample).
"""

from __future__ import annotations

import json
import os
import re
import statistics
import time
from pathlib import Path

import numpy as np

from ..utils.atomic import atomic_path, atomic_write_text

__all__ = ["DEFAULT_MODELS", "format_darcy_table", "run_darcy_benchmark", "warm_start_study"]

DEFAULT_MODELS = ("lsm-darcy",)
ORACLE = "stored u (data)"


# ------------------------------------------------------------------ warm starts
def _solve(A, b, method, x0, rtol, repeats, maxiter):
    from ..solvers.api import solve

    best = None
    for _ in range(repeats):
        res = solve(A, b, method=method, x0=x0, rtol=rtol, maxiter=maxiter, check_symmetry=False)
        if best is None or res.setup_seconds + res.solve_seconds < best.setup_seconds + best.solve_seconds:
            best = res
    return best


def warm_start_study(a, guesses: dict | None = None, *, u_data=None, methods=("cg", "pcg-amg"), rtol: float = 1e-8,
                     repeats: int = 1, maxiter: int | None = None, keep_histories: int = 1,
                     progress: bool = True) -> dict:
    """Iterations and seconds to ``rtol`` on ``darcy_system(a_i)`` from ``x0 = 0`` and from each guess.

    Parameters
    ----------
    a : array_like, (N, s1, s2)
        Coefficients at the nodes (boundary included).
    guesses : dict[str, array_like (N, s1, s2)], optional
        Initial guesses as fields on the same grid (their interiors are used),
        e.g. network predictions.  The name ``"zero"`` is reserved.
    u_data : array_like (N, s1, s2), optional
        Reference fields (a file's stored solutions): ``fd_vs_data`` reports
        ``||u_FD - u_data|| / ||u_data||`` over the whole grid.
    methods : sequence of str
        :func:`krylearn.solve` methods.
    rtol : float
        Stopping rule ``||b - A x|| <= rtol ||b||``.
    repeats : int
        Timed runs per solve; the fastest is kept (iterations do not change).
    maxiter : int, optional
    keep_histories : int
        Residual histories are kept for this many first samples.
    progress : bool

    Returns
    -------
    dict
        ``n``, ``unknowns``, ``methods``, ``guesses`` (names, ``"zero"``
        first), ``runs[method][guess]`` with per-sample lists
        ``iterations``, ``converged``, ``setup_s``, ``solve_s``,
        ``initial_residual``, and for guesses ``x0_error_vs_fd``
        (``||x0 - u_FD|| / ||u_FD||`` over the unknowns); ``fd_vs_data`` (per
        sample, when ``u_data``); ``histories[method][guess]`` (lists);
        ``direct_residual`` (per sample, of the direct ``u_FD``).
    """
    import scipy.sparse.linalg
    from tqdm.auto import tqdm

    from ..operators.darcy import darcy_system, interior

    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 3:
        raise ValueError(f"a must have shape (N, s1, s2), got {a.shape}")
    guesses = dict(guesses or {})
    if "zero" in guesses:
        raise ValueError("guesses: the name 'zero' is reserved for x0 = 0")
    for k, g in guesses.items():
        if np.shape(g) != a.shape:
            raise ValueError(f"guesses[{k!r}] must have the shape of a {a.shape}, got {np.shape(g)}")
    if u_data is not None and np.shape(u_data) != a.shape:
        raise ValueError(f"u_data must have the shape of a {a.shape}, got {np.shape(u_data)}")
    if isinstance(methods, str):
        methods = (methods,)
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
    names = ["zero", *guesses]
    runs = {m: {g: {"iterations": [], "converged": [], "setup_s": [], "solve_s": [], "initial_residual": [],
                    **({"x0_error_vs_fd": []} if g != "zero" else {})} for g in names} for m in methods}
    histories = {m: {g: [] for g in names} for m in methods}
    fd_vs_data, direct_residual = [], []
    n = a.shape[0]
    for i in tqdm(range(n), desc="warm starts", unit="sample", disable=not progress):
        A, b = darcy_system(a[i])
        u_fd = scipy.sparse.linalg.spsolve(A.tocsc(), b, permc_spec="MMD_AT_PLUS_A")
        direct_residual.append(float(np.linalg.norm(b - A @ u_fd) / np.linalg.norm(b)))
        if u_data is not None:
            ud = np.asarray(u_data[i], dtype=np.float64)
            full = np.zeros_like(ud)
            full[1:-1, 1:-1] = u_fd.reshape(ud.shape[0] - 2, ud.shape[1] - 2)
            fd_vs_data.append(float(np.linalg.norm(full - ud) / np.linalg.norm(ud)))
        x0s = {"zero": None, **{k: interior(np.asarray(g[i], dtype=np.float64)) for k, g in guesses.items()}}
        for m in methods:
            for g, x0 in x0s.items():
                res = _solve(A, b, m, x0, rtol, repeats, maxiter)
                r = runs[m][g]
                r["iterations"].append(int(res.iterations))
                r["converged"].append(bool(res.converged))
                r["setup_s"].append(float(res.setup_seconds))
                r["solve_s"].append(float(res.solve_seconds))
                r["initial_residual"].append(float(res.residuals[0]))
                if x0 is not None:
                    r["x0_error_vs_fd"].append(float(np.linalg.norm(x0 - u_fd) / np.linalg.norm(u_fd)))
                if i < keep_histories:
                    histories[m][g].append(np.asarray(res.residuals, dtype=float).tolist())
    return {"n": n, "unknowns": int((a.shape[1] - 2) * (a.shape[2] - 2)), "methods": list(methods),
            "guesses": names, "rtol": rtol, "runs": runs, "fd_vs_data": fd_vs_data or None,
            "direct_residual": direct_residual, "histories": histories}


def _summarise_warm(study: dict) -> list[dict]:
    rows = []
    for m in study["methods"]:
        cold = study["runs"][m]["zero"]
        cold_it = np.asarray(cold["iterations"], dtype=float)
        cold_s = np.asarray(cold["setup_s"]) + np.asarray(cold["solve_s"])
        for g in study["guesses"]:
            r = study["runs"][m][g]
            it = np.asarray(r["iterations"], dtype=float)
            sec = np.asarray(r["setup_s"]) + np.asarray(r["solve_s"])
            rows.append({
                "method": m, "x0": g,
                "iterations_median": float(np.median(it)), "iterations_min": int(it.min()),
                "iterations_max": int(it.max()),
                "iteration_ratio_median": float(np.median(it / np.maximum(cold_it, 1))),
                "seconds_median": float(np.median(sec)),
                "solve_seconds_median": float(np.median(r["solve_s"])),
                "seconds_ratio_median": float(np.median(sec / cold_s)),
                "all_converged": bool(all(r["converged"])),
                "initial_residual_median": float(np.median(r["initial_residual"])),
                "x0_error_vs_fd_median": (float(np.median(r["x0_error_vs_fd"])) if "x0_error_vs_fd" in r else None),
            })
    return rows


# ------------------------------------------------------------------ helpers
def _label(predictor, model) -> str:
    card = getattr(predictor, "card", None) or {}
    if card.get("name"):
        return str(card["name"])
    if isinstance(model, (str, os.PathLike)):
        return Path(model).with_suffix("").name if str(model).endswith((".json", ".safetensors")) else Path(model).name
    return getattr(predictor, "kind", "model")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "model"


def _train_seconds(card: dict):
    s = card.get("seconds")
    if isinstance(s, dict):
        s = s.get("training")
    return float(s) if isinstance(s, (int, float)) else None


def _card_ranges(card: dict):
    data = card.get("data") if isinstance(card.get("data"), dict) else {}
    return {k: v for k, v in data.items() if isinstance(v, dict) and "start" in v and "count" in v}


def _overlap(card: dict, file: str, start: int, count: int, sub: int) -> list[str]:
    hits = []
    for split in ("train", "val"):
        r = _card_ranges(card).get(split)
        if r is None or r.get("name", os.path.basename(r.get("file", ""))) != os.path.basename(file):
            continue
        lo, hi = int(r["start"]), int(r["start"]) + int(r["count"])
        if lo < start + count and start < hi:
            hits.append(f"{split} [{lo}, {hi})")
    return hits


def _time_inference(predictor, a, batch_size, repeats) -> float:
    from ..solvers.lsm import predict

    dev = next(predictor.parameters()).device
    predict(a[:batch_size], model=predictor, batch_size=batch_size, device=dev)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        predict(a, model=predictor, batch_size=batch_size, device=dev)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) / len(a)


def _plot_samples(d, pred, rel, idx, path, title) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = len(idx)
    fig, axes = plt.subplots(rows, 4, figsize=(12, 2.9 * rows), dpi=100, squeeze=False)
    for r, i in enumerate(idx):
        u, p = d.u[i], pred[i]
        vmin, vmax = float(min(u.min(), p.min())), float(max(u.max(), p.max()))
        panels = [(d.a[i], "coefficient a", "viridis", None, None), (u, "truth u", "magma", vmin, vmax),
                  (p, "prediction", "magma", vmin, vmax), (p - u, f"error (rel. L2 {rel[i]:.2e})", "RdBu_r", None, None)]
        for c, (img, name, cmap, lo, hi) in enumerate(panels):
            ax = axes[r, c]
            if c == 3:
                m = float(np.abs(img).max()) or 1.0
                lo, hi = -m, m
            im = ax.imshow(img, cmap=cmap, vmin=lo, vmax=hi, origin="lower")
            ax.set_title(f"sample {d.start + i}: {name}" if c == 0 else name, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


# ------------------------------------------------------------------ benchmark
def run_darcy_benchmark(data, *, models=DEFAULT_MODELS, start: int | None = None, count: int = 200, sub: int = 1,
                        out_dir=None, warm_start: bool = True, warm_count: int = 20, rtol: float = 1e-8,
                        repeats: int = 3, batch_size: int = 20, methods=("cg", "pcg-amg"), oracle: bool = True,
                        figure_samples: int = 4, device=None, progress: bool = True) -> dict:
    """Benchmark trained operators and warm-started solvers on held-out Darcy samples.

    Parameters
    ----------
    data : str or Path
        A Darcy file (``read_darcy`` layouts).
    models : sequence of str / Path / NormalizedOperator
        Shipped names (``"lsm-darcy"``), weights stems, or predictor objects.
    start : int, optional
        First sample.  Default: the test range in the first model's card when
        it names a file of the same name and the same ``sub``, else 0.
    count : int
        Samples evaluated (all models see the same ones).
    sub : int
        Spatial subsampling while reading; the grid must be the models'
        training grid.
    out_dir : str or Path, optional
        Where the JSON, markdown and figures go (created); ``None`` writes nothing.
    warm_start : bool
        Run the warm-start study (otherwise only the ``pcg-amg`` timing from zero).
    warm_count : int
        Samples of the study (the first ``warm_count`` of the evaluated ones).
    rtol : float
        Stopping rule of every solve, ``||b - A x|| <= rtol ||b||``.
    repeats : int
        Timed repetitions (inference passes; solves keep the fastest).
    batch_size : int
        Inference batch.
    methods : sequence of str
        Solvers of the warm-start study.
    oracle : bool
        Also warm-start from the file's stored ``u``.
    figure_samples : int
        Samples shown per model figure.
    device : optional
        Where the networks run (default CUDA when available).
    progress : bool

    Returns
    -------
    dict
        ``data``, ``rtol``, ``machine``, ``models`` (rows), ``amg``
        (``pcg-amg`` from zero: seconds and iterations per sample),
        ``fd_vs_data``, ``warm_start`` (``rows`` summary, ``study`` raw),
        ``files`` written.

    Raises
    ------
    ValueError
        ``count``/``start`` beyond the file; a model trained on another grid
        (names ``sub``); empty ``models``.
    """
    from ..datasets.pde_formats import read_darcy
    from ..utils.checks import check_int
    from ..pipelines.lsm import (
        _check_file,
        count_samples,
        evaluate,
        resolve_model,
    )

    from .poisson import machine, plot_residuals

    file = _check_file("data", data)
    if isinstance(models, (str, os.PathLike)):
        models = (models,)
    models = list(models)
    if not models:
        raise ValueError("models must name at least one model")
    count = check_int("count", count, 1)
    sub = check_int("sub", sub, 1)
    warm_count = check_int("warm_count", warm_count, 1)
    repeats = check_int("repeats", repeats, 1)
    batch_size = check_int("batch_size", batch_size, 1)
    figure_samples = check_int("figure_samples", figure_samples, 0)
    if not (isinstance(rtol, (int, float)) and 0 < rtol < 1):
        raise ValueError(f"rtol must be in (0, 1), got {rtol!r}")

    predictors = [resolve_model(m, device) for m in models]
    labels = []
    for p, m in zip(predictors, models):
        lab = _label(p, m)
        while lab in labels:
            lab += "'"
        labels.append(lab)

    start_from = "argument"
    if start is None:
        start, start_from = 0, "default 0"
        test = _card_ranges(getattr(predictors[0], "card", None) or {}).get("test")
        if test and os.path.basename(test.get("file", test.get("name", ""))) == os.path.basename(file) \
                and int(test.get("sub", 1)) == sub:
            start, start_from = int(test["start"]), f"test range in {labels[0]}'s card"
    start = check_int("start", start, 0)
    n_file = count_samples(file)
    if start + count > n_file:
        raise ValueError(f"start + count = {start} + {count} exceeds the {n_file} samples of data ({file!r})")
    d = read_darcy(file, start=start, count=count, sub=sub)
    for lab, p in zip(labels, predictors):
        if p.resolution is not None and tuple(p.resolution) != tuple(d.resolution):
            raise ValueError(f"model {lab!r} was trained on a {p.resolution[0]}x{p.resolution[1]} grid, but data at "
                             f"sub={sub} has {d.resolution[0]}x{d.resolution[1]}: pick sub to match")

    rows, preds = [], {}
    for lab, p, m in zip(labels, predictors, models):
        ev = evaluate(p, d, batch_size=batch_size, return_predictions=True)
        preds[lab] = ev.pop("prediction")
        card = getattr(p, "card", None) or {}
        overlap = _overlap(card, file, start, count, sub)
        if overlap:
            import warnings

            warnings.warn(f"benchmark samples [{start}, {start + count}) of {os.path.basename(file)} overlap "
                          f"{lab}'s {', '.join(overlap)} samples: its error is not a held-out error", UserWarning,
                          stacklevel=2)
        rows.append({
            "model": lab, "source": getattr(p, "source", None) or (str(m) if isinstance(m, (str, os.PathLike)) else None),
            "kind": p.kind, "config": p.config, "parameters": int(sum(t.numel() for t in p.net.parameters())),
            "train_seconds": _train_seconds(card), "train_hardware": card.get("hardware"),
            "card_test_rel_l2": (card.get("metrics") or {}).get("test_rel_l2"),
            "rel_l2_mean": ev["rel_l2_mean"], "rel_l2_median": ev["rel_l2_median"], "rel_l2_max": ev["rel_l2_max"],
            "rel_l2": ev["rel_l2"],
            "inference_s_per_sample": _time_inference(p, d.a, batch_size, repeats),
            "device": ev["device"], "overlaps_training": overlap or None,
        })

    nw = min(warm_count, len(d))
    guesses = {}
    if warm_start:
        guesses = {lab: preds[lab][:nw] for lab in labels}
        if oracle:
            guesses[ORACLE] = d.u[:nw]
    study = warm_start_study(d.a[:nw], guesses, u_data=d.u[:nw],
                             methods=tuple(methods) if warm_start else ("pcg-amg",), rtol=rtol,
                             repeats=repeats, progress=progress)
    if "pcg-amg" in study["runs"]:
        amg_runs = study["runs"]["pcg-amg"]["zero"]
    else:  # methods without pcg-amg: time it alone for the inference comparison
        amg_runs = warm_start_study(d.a[:nw], methods=("pcg-amg",), rtol=rtol, repeats=repeats,
                                    progress=False)["runs"]["pcg-amg"]["zero"]
    amg_total = np.asarray(amg_runs["setup_s"]) + np.asarray(amg_runs["solve_s"])
    amg = {"seconds_per_sample": float(np.median(amg_total)), "setup_s_median": float(np.median(amg_runs["setup_s"])),
           "solve_s_median": float(np.median(amg_runs["solve_s"])),
           "iterations_median": float(np.median(amg_runs["iterations"])), "samples": nw,
           "unknowns": study["unknowns"], "rtol": rtol}
    for r in rows:
        r["amg_s_per_sample"] = amg["seconds_per_sample"]
        r["amg_over_inference"] = amg["seconds_per_sample"] / r["inference_s_per_sample"]
    fd = np.asarray(study["fd_vs_data"])
    report = {
        "benchmark": "darcy",
        "data": {"file": os.path.abspath(file), "start": start, "count": count, "sub": sub,
                 "start_from": start_from, "resolution": list(d.resolution), "source": d.source,
                 "grid": d.attrs.get("grid"), "res": d.attrs.get("res")},
        "rtol": rtol, "stopping_rule": f"||b - A x|| <= rtol ||b||, rtol = {rtol:g}",
        "machine": machine(), "repeats": repeats, "batch_size": batch_size,
        "models": rows, "amg": amg,
        "fd_vs_data": {"rel_l2_median": float(np.median(fd)), "rel_l2_max": float(fd.max()),
                       "rel_l2_min": float(fd.min()), "per_sample": fd.tolist(), "samples": nw},
        "warm_start": {"enabled": bool(warm_start), "samples": list(range(start, start + nw)),
                       "rows": _summarise_warm(study) if warm_start else [], "study": study},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    report["data"] = json.loads(json.dumps(report["data"], default=str))
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        files = {"json": str(out / "darcy.json"), "table": str(out / "darcy.md"), "figures": []}
        nfig = min(figure_samples, len(d))
        for r in rows:
            if nfig:
                png = out / f"darcy-samples-{_safe(r['model'])}.png"
                _plot_samples(d, preds[r["model"]], r["rel_l2"], list(range(nfig)), png,
                              f"{r['model']} ({r['kind']}) on {os.path.basename(file)}, "
                              f"{d.resolution[0]}x{d.resolution[1]}")
                files["figures"].append(str(png))
        if warm_start:
            hist = {f"{m}, x0 = {g}": study["histories"][m][g][0] for m in study["methods"] for g in study["guesses"]
                    if study["histories"][m][g]}
            png = out / "darcy-warmstart.png"
            plot_residuals(hist, png, title=f"Darcy sample {start}, {d.resolution[0]}x{d.resolution[1]}: "
                                            "cold and warm starts", rtol=rtol)
            files["figures"].append(str(png))
        report["files"] = files
        atomic_write_text(out / "darcy.json", json.dumps(report, indent=1, default=str) + "\n")
        atomic_write_text(out / "darcy.md", format_darcy_table(report) + "\n")
    return report


def format_darcy_table(report: dict) -> str:
    """Markdown tables of a :func:`run_darcy_benchmark` report: accuracy and speed, then warm starts."""
    d, amg = report["data"], report["amg"]
    s1, s2 = d["resolution"]
    lines = [(f"Darcy flow, {os.path.basename(d['file'])} samples [{d['start']}, {d['start'] + d['count']}), "
             f"{s1}x{s2} (sub {d['sub']}); AMG-PCG: `pcg-amg` on the {s1}x{s2} 5-point system "
             f"({amg['unknowns']} unknowns), median of {amg['samples']} samples, "
             f"{amg['iterations_median']:.0f} iterations."), "",
             ("| model | parameters | training s | test rel. L2 mean | median | max | inference s/sample | "
             "AMG-PCG s/sample | AMG / inference |"),
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report["models"]:
        ts = f"{r['train_seconds']:.4g}" if r.get("train_seconds") is not None else "-"
        flag = " (overlaps training!)" if r.get("overlaps_training") else ""
        lines.append(f"| {r['model']} ({r['kind']}){flag} | {r['parameters']:,} | {ts} | {r['rel_l2_mean']:.4f} | "
                     f"{r['rel_l2_median']:.4f} | {r['rel_l2_max']:.4f} | {r['inference_s_per_sample']:.2e} | "
                     f"{r['amg_s_per_sample']:.2e} | {r['amg_over_inference']:.1f} |")
    fd = report["fd_vs_data"]
    lines += ["", (f"||u_FD - u_data|| / ||u_data|| (direct solve of the {s1}x{s2} system against the file's u): "
              f"median {fd['rel_l2_median']:.2e}, max {fd['rel_l2_max']:.2e} over {fd['samples']} samples.")]
    ws = report["warm_start"]
    if ws["enabled"] and ws["rows"]:
        lines += ["", (f"Warm starts, {len(ws['samples'])} samples, {report['stopping_rule']} "
                  "(ratios: median over samples of warm / cold; seconds include the AMG setup):"), "",
                  ("| method | x0 | iterations median (min-max) | iterations warm/cold | seconds median | "
                  "seconds warm/cold | x0 error vs u_FD | initial rel. residual |"),
                  "|---|---|---:|---:|---:|---:|---:|---:|"]
        for r in ws["rows"]:
            err = f"{r['x0_error_vs_fd_median']:.2e}" if r["x0_error_vs_fd_median"] is not None else "1"
            conv = "" if r["all_converged"] else " (not all converged)"
            lines.append(f"| {r['method']} | {r['x0']} | {r['iterations_median']:.1f} ({r['iterations_min']}-"
                         f"{r['iterations_max']}){conv} | {r['iteration_ratio_median']:.2f} | "
                         f"{r['seconds_median']:.2e} | {r['seconds_ratio_median']:.2f} | {err} | "
                         f"{r['initial_residual_median']:.2e} |")
    m = report.get("machine") or {}
    lines += ["", f"Machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores"
              + (f", GPU {m['gpu']}" if m.get("gpu") else "") + "; timings noisy on a shared machine."]
    return "\n".join(lines)
