"""``krylearn bench ns``: trained Navier–Stokes models side by side on held-out vorticity trajectories.

:func:`run_ns_benchmark` rolls every model out on the same samples (the
first model's test range by default) and reports, per model, the relative
L2 of the whole predicted sequence (FNO's ``test_l2_full``: mean, median,
max), the mean error of each predicted frame, parameters, training seconds
and inference milliseconds per sample (the whole rollout).  Two references
need no training and bound what a model has learned:

* ``persistence``: every predicted frame is the last input frame;
* ``zero``: the prediction is 0 (relative L2 exactly 1).

With ``out_dir`` it writes ``ns.json`` (everything, per-sample errors
included), ``ns.md`` (the table, with the command's machine) and
``ns-rollout.png`` (truth and each model's prediction of one sample at five
times, with the per-frame error curves).
"""

from __future__ import annotations

import json
import os
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from ...benchmarks.poisson import machine
from ...datasets.ns_formats import count_ns_samples, read_navier_stokes
from ...utils.atomic import atomic_write_text, save_figure
from ...utils.checks import check_int
from .bench import _card_ranges, _first_sample, _labels, _model_list, _overlap, _train_seconds
from .recipe import _check_file, resolve_model
from .rollout import rollout, rollout_errors, split_frames

__all__ = ["format_ns_table", "run_ns_benchmark"]

PERSISTENCE = "persistence (last input frame)"


def _rollout_settings(predictor, label) -> tuple[int, int, int]:
    card = getattr(predictor, "card", None) or {}
    if card.get("task") != "ns":
        raise ValueError(f"model {label!r} is not a Navier-Stokes model (its card says task "
                         f"{card.get('task', 'darcy')!r}); train one with `krylearn train lsm --task ns`")
    ro = card.get("rollout") or {}
    return int(ro.get("t_in", predictor.in_channels)), int(ro.get("steps", 10)), int(ro.get("first", 1))


def _stats(full: np.ndarray) -> dict:
    return {"rel_l2_mean": float(full.mean()), "rel_l2_median": float(np.median(full)),
            "rel_l2_max": float(full.max()), "rel_l2": full.tolist()}


class _LastFrame(torch.nn.Module):
    """The persistence reference as a model: the next frame is the last input frame."""

    def forward(self, x):
        return x[:, -1:]


def _persistence(x, y, batch_size) -> dict:
    err = rollout_errors(_LastFrame(), x, y, batch_size, torch.device("cpu"))  # the models' metric, unchanged
    return {"model": PERSISTENCE, "kind": "reference", **_stats(err["full"].numpy()),
            "per_step": err["per_step"].tolist()}


def _model_row(label, predictor, x, y, batch_size, repeats, where) -> dict:
    file, start, count = where
    dev = next(predictor.parameters()).device
    err = rollout_errors(predictor, x, y, batch_size, dev)
    with torch.no_grad():
        rollout(predictor, x[:batch_size].to(dev), y.shape[1])  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            rollout_errors(predictor, x[:batch_size], y[:batch_size], batch_size, dev)
            times.append((time.perf_counter() - t0) / min(batch_size, len(x)))
    card = getattr(predictor, "card", None) or {}
    overlap = _overlap(card, file, start, count, 1)
    if overlap:
        warnings.warn(f"benchmark samples [{start}, {start + count}) of {os.path.basename(file)} overlap "
                      f"{label}'s {', '.join(overlap)} samples: its error is not a held-out error", UserWarning,
                      stacklevel=3)
    train = _card_ranges(card).get("train") or {}
    return {"model": label, "kind": predictor.kind, "config": predictor.config,
            "parameters": int(sum(t.numel() for t in predictor.net.parameters())),
            "train_seconds": _train_seconds(card), "epochs": card.get("epochs"),
            "train_samples": train.get("count"), "train_hardware": card.get("hardware"),
            "card_test_l2_full": (card.get("metrics") or {}).get("test_l2_full"),
            **_stats(err["full"].numpy()), "per_step": err["per_step"].tolist(),
            "inference_ms_per_sample": 1e3 * statistics.median(times), "device": str(dev),
            "overlaps_training": overlap or None}


def run_ns_benchmark(data, *, models, start: int | None = None, count: int | None = None, out_dir=None,
                     batch_size: int = 20, repeats: int = 3, figure_sample: int = 0, device=None,
                     command: str | None = None) -> dict:
    """Roll trained NS models out on the same held-out samples of ``data`` and compare them.

    Parameters
    ----------
    data : str or PathLike
        Vorticity file (ours, PDEBench-style, or FNO's ``NavierStokes_*.mat``).
    models : sequence of str or PathLike
        Weights stems or shipped names of models trained with ``train lsm --task ns``;
        they must share the rollout settings (``t_in``, ``steps``, ``first``).
    start, count : int, optional
        Samples ``[start, start + count)``; ``start`` defaults to the test range in the first model's
        card when it names this file (else 0), ``count`` to the rest of the file.
    out_dir : str or PathLike, optional
        Where ``ns.json``, ``ns.md`` and ``ns-rollout.png`` go.
    batch_size, repeats : int
        Samples per forward pass; timed repeats of one batch's rollout after a warm-up.
    figure_sample : int
        Index (within the benchmark's samples) of the sample drawn in the figure.

    Returns
    -------
    dict
        ``data`` (file, start, count, resolution, frames), ``rollout``, ``models`` (rows, the references
        last), ``machine``, ``command`` and, with ``out_dir``, ``files``.

    Examples
    --------
    >>> r = run_ns_benchmark("ns.h5", models=["weights/lsm-ns", "weights/fno-ns"])   # doctest: +SKIP
    >>> [(m["model"], round(m["rel_l2_mean"], 3)) for m in r["models"]]               # doctest: +SKIP
    """
    file = _check_file("data", data)
    models = _model_list(models)
    batch_size, repeats, figure_sample = (check_int(k, v, lo) for k, v, lo in
                                          (("batch_size", batch_size, 1), ("repeats", repeats, 1),
                                           ("figure_sample", figure_sample, 0)))
    predictors = [resolve_model(m, device) for m in models]
    labels = _labels(predictors, models)
    settings = {lab: _rollout_settings(p, lab) for lab, p in zip(labels, predictors)}
    if len(set(settings.values())) > 1:
        raise ValueError(f"models: the rollout settings (t_in, steps, first) differ: {settings}")
    t_in, steps, first = settings[labels[0]]
    start, start_from = _first_sample(start, predictors[0], labels[0], file, 1)
    n_file = count_ns_samples(file)
    if start >= n_file:
        raise ValueError(f"start = {start} is past the last sample of data ({file!r} holds {n_file}, numbered from 0)")
    count = n_file - start if count is None else check_int("count", count, 1)
    if start + count > n_file:
        raise ValueError(f"start + count = {start} + {count} exceeds the {n_file} samples of data ({file!r})")
    if figure_sample >= count:
        raise ValueError(f"figure_sample must be below count = {count}, got {figure_sample}")
    d = read_navier_stokes(file, start=start, count=count)
    x, y = split_frames(d.w, t_in, steps, first, "data")
    rows = [_model_row(lab, p, x, y, batch_size, repeats, (file, start, count)) for lab, p in zip(labels, predictors)]
    rows += [_persistence(x, y, batch_size), {"model": "zero", "kind": "reference", **_stats(np.ones(count)),
                                  "per_step": [1.0] * steps}]
    report = {"data": {"file": os.path.abspath(file), "start": start, "count": count, "start_from": start_from,
                       "resolution": list(d.resolution), "frames": int(d.w.shape[1]),
                       "times": [float(t) for t in d.t]},
              "rollout": {"t_in": t_in, "steps": steps, "first": first}, "models": rows,
              "machine": machine(), "command": command}
    if out_dir is not None:
        report["files"] = _write_outputs(Path(out_dir), report, d, x, y, predictors, labels, figure_sample)
    return report


def format_ns_table(report: dict) -> str:
    """The markdown table of a :func:`run_ns_benchmark` report."""
    d, ro = report["data"], report["rollout"]
    s1, s2 = d["resolution"]
    f0 = ro["first"]
    lines = [f"Navier-Stokes vorticity, {os.path.basename(d['file'])} samples [{d['start']}, "
             f"{d['start'] + d['count']}), {s1}x{s2}: frames {f0}..{f0 + ro['t_in'] - 1} in, "
             f"{ro['steps']} rolled out. Relative L2 of the whole predicted sequence per sample.", ""]
    m = report["machine"]
    where = f"{m['cpu']}, {m['cores']} cores, torch {m['torch']}" + (f", GPU {m['gpu']}" if m.get("gpu") else "")
    lines += [f"`{report['command']}` on {where}." if report.get("command") else f"Machine: {where}.", ""]
    lines += ["| model | parameters | epochs | training samples | training s | rel. L2 mean | median | max | "
              "first frame | last frame | inference ms/sample |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report["models"]:
        flag = " (overlaps training!)" if r.get("overlaps_training") else ""
        name = f"{r['model']}{flag}" if r["kind"] == "reference" else f"{r['model']} ({r['kind']}){flag}"
        if r["kind"] == "reference":
            cells = ["-"] * 4
        else:
            ts = f"{r['train_seconds']:.0f}" if r.get("train_seconds") is not None else "-"
            cells = [f"{r['parameters']:,}", str(r.get("epochs") or "-"), str(r.get("train_samples") or "-"), ts]
        inference = f"{r['inference_ms_per_sample']:.1f}" if "inference_ms_per_sample" in r else "-"
        lines.append(f"| {name} | " + " | ".join(cells) +
                     f" | {r['rel_l2_mean']:.4f} | {r['rel_l2_median']:.4f} | {r['rel_l2_max']:.4f} | "
                     f"{r['per_step'][0]:.4f} | {r['per_step'][-1]:.4f} | {inference} |")
    return "\n".join(lines)


def _write_outputs(out: Path, report, d, x, y, predictors, labels, k) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": str(out / "ns.json"), "table": str(out / "ns.md"), "figure": str(out / "ns-rollout.png")}
    atomic_write_text(files["json"], json.dumps(report, indent=1) + "\n")
    atomic_write_text(files["table"], format_ns_table(report) + "\n")
    preds = {}
    with torch.no_grad():
        for lab, p in zip(labels, predictors):
            dev = next(p.parameters()).device
            preds[lab] = rollout(p, x[k:k + 1].to(dev), y.shape[1])[0].cpu().numpy()
    _plot_rollout(report, d, y[k].numpy(), preds, k, files["figure"])
    return files


def _plot_rollout(report, d, truth, preds, k, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ro = report["rollout"]
    steps = truth.shape[0]
    cols = sorted({0, steps // 4, steps // 2, (3 * steps) // 4, steps - 1})
    rows = [("truth", truth)] + list(preds.items())
    fig = plt.figure(figsize=(2.4 * (len(cols) + 2), 2.3 * len(rows)), dpi=100)
    grid = fig.add_gridspec(len(rows), len(cols) + 2)
    lim = float(np.abs(truth).max())
    for r, (name, w) in enumerate(rows):
        for c, s in enumerate(cols):
            ax = fig.add_subplot(grid[r, c])
            ax.imshow(w[s], cmap="RdBu_r", vmin=-lim, vmax=lim, origin="lower")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"t = {d.t[ro['first'] + ro['t_in'] + s]:g}", fontsize=9)
            if c == 0:
                ax.set_ylabel(name, fontsize=9)
    ax = fig.add_subplot(grid[:, len(cols):])
    t_out = [float(d.t[ro["first"] + ro["t_in"] + s]) for s in range(steps)]
    for r in report["models"]:
        if r["model"] != "zero":
            ax.plot(t_out, r["per_step"], marker="o", ms=3, label=r["model"])
    ax.set_xlabel("t")
    ax.set_ylabel("relative L2 per frame (mean over samples)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle(f"sample {d.start + k} of {os.path.basename(report['data']['file'])}: vorticity rollout")
    fig.tight_layout()
    save_figure(fig, path)
