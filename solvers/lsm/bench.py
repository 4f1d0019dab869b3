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
import warnings
from pathlib import Path

import numpy as np

from ...benchmarks.poisson import machine, plot_residuals
from ...datasets.pde_formats import read_darcy
from ...utils.atomic import atomic_write_text, save_figure
from ...utils.checks import check_int
from .bench_warm import summarise_warm, warm_start_study
from .predict import predict
from .recipe import _check_file, count_samples, evaluate, resolve_model

__all__ = ["DEFAULT_MODELS", "format_darcy_table", "run_darcy_benchmark", "warm_start_study"]

DEFAULT_MODELS = ("lsm-darcy",)
ORACLE = "stored u (data)"


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


def _time_inference(predictor, d, batch_size, repeats) -> float:
    dev = next(predictor.parameters()).device
    predict(d.a[:batch_size], model=predictor, coords=d.coords, batch_size=batch_size, device=dev)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        predict(d.a, model=predictor, coords=d.coords, batch_size=batch_size, device=dev)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) / len(d)


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
    save_figure(fig, path)


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
    file = _check_file("data", data)
    models = _model_list(models)
    count, sub, warm_count, repeats, batch_size, figure_samples = (
        check_int(k, v, lo) for k, v, lo in (("count", count, 1), ("sub", sub, 1), ("warm_count", warm_count, 1),
                                             ("repeats", repeats, 1), ("batch_size", batch_size, 1),
                                             ("figure_samples", figure_samples, 0)))
    if not (isinstance(rtol, (int, float)) and 0 < rtol < 1):
        raise ValueError(f"rtol must be in (0, 1), got {rtol!r}")
    predictors = [resolve_model(m, device) for m in models]
    labels = _labels(predictors, models)
    start, start_from = _first_sample(start, predictors[0], labels[0], file, sub)
    d = _read_samples(file, start, count, sub, labels, predictors)
    rows, preds = _model_rows(labels, predictors, models, d, (file, start, count, sub), batch_size, repeats)
    nw = min(warm_count, len(d))
    study, amg = _solver_runs(d, preds, labels, nw, warm_start=warm_start, oracle=oracle, methods=methods,
                              rtol=rtol, repeats=repeats, progress=progress)
    report = _report(d, (file, start, count, sub), start_from, rows, amg, study, warm_start=warm_start, rtol=rtol,
                     repeats=repeats, batch_size=batch_size)
    if out_dir is not None:
        report["files"] = _write_outputs(Path(out_dir), report, d, preds, study, figure_samples)
    return report


def _model_list(models) -> list:
    if isinstance(models, (str, os.PathLike)):
        models = (models,)
    models = list(models)
    if not models:
        raise ValueError("models must name at least one model")
    return models


def _labels(predictors, models) -> list[str]:
    """One distinct label per model (a repeated name gets primes)."""
    labels = []
    for p, m in zip(predictors, models):
        lab = _label(p, m)
        while lab in labels:
            lab += "'"
        labels.append(lab)
    return labels


def _first_sample(start, predictor, label, file, sub) -> tuple[int, str]:
    """``(start, where it came from)``: the argument, else the test range in the first model's card, else 0."""
    if start is not None:
        return check_int("start", start, 0), "argument"
    test = _card_ranges(getattr(predictor, "card", None) or {}).get("test")
    if test and os.path.basename(test.get("file", test.get("name", ""))) == os.path.basename(file) \
            and int(test.get("sub", 1)) == sub:
        return check_int("start", int(test["start"]), 0), f"test range in {label}'s card"
    return 0, "default 0"


def _read_samples(file, start, count, sub, labels, predictors):
    """The benchmark's samples; ``ValueError`` when they exceed the file or a model was trained on another grid."""
    n_file = count_samples(file)
    if start + count > n_file:
        raise ValueError(f"start + count = {start} + {count} exceeds the {n_file} samples of data ({file!r})")
    d = read_darcy(file, start=start, count=count, sub=sub)
    for lab, p in zip(labels, predictors):
        if p.resolution is not None and tuple(p.resolution) != tuple(d.resolution):
            raise ValueError(f"model {lab!r} was trained on a {p.resolution[0]}x{p.resolution[1]} grid, but data at "
                             f"sub={sub} has {d.resolution[0]}x{d.resolution[1]}: pick sub to match")
    return d


def _model_rows(labels, predictors, models, d, samples, batch_size, repeats) -> tuple[list, dict]:
    """Accuracy and inference speed of every model: ``(rows, predictions by label)``."""
    file, start, count, sub = samples
    rows, preds = [], {}
    for lab, p, m in zip(labels, predictors, models):
        ev = evaluate(p, d, batch_size=batch_size, resample=True, return_predictions=True)
        preds[lab] = ev.pop("prediction")
        card = getattr(p, "card", None) or {}
        overlap = _overlap(card, file, start, count, sub)
        if overlap:
            warnings.warn(f"benchmark samples [{start}, {start + count}) of {os.path.basename(file)} overlap "
                          f"{lab}'s {', '.join(overlap)} samples: its error is not a held-out error", UserWarning,
                          stacklevel=3)
        rows.append({
            "model": lab, "source": getattr(p, "source", None) or (str(m) if isinstance(m, (str, os.PathLike)) else None),
            "kind": p.kind, "config": p.config, "parameters": int(sum(t.numel() for t in p.net.parameters())),
            "train_seconds": _train_seconds(card), "train_hardware": card.get("hardware"),
            "card_test_rel_l2": (card.get("metrics") or {}).get("test_rel_l2"),
            "rel_l2_mean": ev["rel_l2_mean"], "rel_l2_median": ev["rel_l2_median"], "rel_l2_max": ev["rel_l2_max"],
            "rel_l2": ev["rel_l2"],
            "inference_s_per_sample": _time_inference(p, d, batch_size, repeats),
            "device": ev["device"], "overlaps_training": overlap or None,
        })
    return rows, preds


def _solver_runs(d, preds, labels, nw, *, warm_start, oracle, methods, rtol, repeats, progress) -> tuple[dict, dict]:
    """The warm-start study on the first ``nw`` samples and the ``pcg-amg``-from-zero timing: ``(study, amg)``."""
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
    return study, amg


def _report(d, samples, start_from, rows, amg, study, *, warm_start, rtol, repeats, batch_size) -> dict:
    """The JSON-ready report (also sets each row's AMG comparison)."""
    file, start, count, sub = samples
    for r in rows:
        r["amg_s_per_sample"] = amg["seconds_per_sample"]
        r["amg_over_inference"] = amg["seconds_per_sample"] / r["inference_s_per_sample"]
    fd = np.asarray(study["fd_vs_data"])
    nw = amg["samples"]
    data = {"file": os.path.abspath(file), "start": start, "count": count, "sub": sub,
            "start_from": start_from, "resolution": list(d.resolution), "source": d.source,
            "grid": d.attrs.get("grid"), "res": d.attrs.get("res")}
    return {
        "benchmark": "darcy",
        "data": json.loads(json.dumps(data, default=str)),
        "rtol": rtol, "stopping_rule": f"||b - A x|| <= rtol ||b||, rtol = {rtol:g}",
        "machine": machine(), "repeats": repeats, "batch_size": batch_size,
        "models": rows, "amg": amg,
        "fd_vs_data": {"rel_l2_median": float(np.median(fd)), "rel_l2_max": float(fd.max()),
                       "rel_l2_min": float(fd.min()), "per_sample": fd.tolist(), "samples": nw},
        "warm_start": {"enabled": bool(warm_start), "samples": list(range(start, start + nw)),
                       "rows": summarise_warm(study) if warm_start else [], "study": study},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def _write_outputs(out: Path, report: dict, d, preds: dict, study: dict, figure_samples: int) -> dict:
    """``darcy.json``, ``darcy.md`` and the figures in ``out``; returns the ``files`` entry of the report."""
    out.mkdir(parents=True, exist_ok=True)
    name = os.path.basename(report["data"]["file"])
    files = {"json": str(out / "darcy.json"), "table": str(out / "darcy.md"), "figures": []}
    nfig = min(figure_samples, len(d))
    stems = []
    for r in report["models"]:
        if nfig:
            stem, k = _safe(r["model"]), 1
            while stem in stems:  # labels that differ only in characters _safe drops (a repeated name's primes)
                k += 1
                stem = f"{_safe(r['model'])}-{k}"
            stems.append(stem)
            png = out / f"darcy-samples-{stem}.png"
            _plot_samples(d, preds[r["model"]], r["rel_l2"], list(range(nfig)), png,
                          f"{r['model']} ({r['kind']}) on {name}, {d.resolution[0]}x{d.resolution[1]}")
            files["figures"].append(str(png))
    if report["warm_start"]["enabled"]:
        hist = {f"{m}, x0 = {g}": study["histories"][m][g][0] for m in study["methods"] for g in study["guesses"]
                if study["histories"][m][g]}
        png = out / "darcy-warmstart.png"
        plot_residuals(hist, png, title=f"Darcy sample {report['data']['start']}, {d.resolution[0]}x{d.resolution[1]}: "
                                        "cold and warm starts", rtol=report["rtol"])
        files["figures"].append(str(png))
    report["files"] = files
    atomic_write_text(out / "darcy.json", json.dumps(report, indent=1, default=str) + "\n")
    atomic_write_text(out / "darcy.md", format_darcy_table(report) + "\n")
    return files


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
