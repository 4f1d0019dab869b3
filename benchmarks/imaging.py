"""The shared harness of the imaging benchmarks (``krylearn bench mri|ct``, DDS's :mod:`~krylearn.solvers.dds.bench_mri`
and :mod:`~krylearn.solvers.dds.bench_ct`): run reconstruction methods on a problem's slices and score them.

A benchmark runs every method on the slices of each *case* (an MRI mask and
acceleration, a CT view count) and records per-slice PSNR, SSIM and seconds.
A *problem* holds the case's data and truth (``n``, ``z``, ``reference``,
``magnitude``) and a ``solve(spec, idx, shared, seed, opts)`` that yields
``(images, seconds per slice)``; a *spec* is one run: ``label``,
``method``, ``nfe``, ``slices`` and ``opts``.

Methods
-------
Everything goes through :func:`krylearn.pipelines.reconstruct.run_method`,
with the spec's options and the benchmark's ``shared`` keywords (e.g. a
diffusion prior).  Timings follow one untimed warm-up call per method
(reduced work: 2 NFE / 2 iterations, :data:`_WARMUP`) and include
``run_method``'s scale estimate.

Hyper-parameters
----------------
Library defaults (:mod:`krylearn.solvers.imaging`, the samplers), unless
``tune=True``: then each case picks, by mean PSNR over validation slices
(never test slices), one option (or one joint pair of options) per method
from :data:`TUNE_GRIDS`: CG's iteration count, the l1-wavelet / TV /
ADMM-TV weight, DDS's ``gamma`` and CG steps per diffusion step (MRI) or
its weight of TV along z (3D CT).  An option the caller gives explicitly is
kept and not tuned.  A choice at the end of a one-option grid is flagged.

Metrics
-------
Per slice, with scikit-image's ``peak_signal_noise_ratio`` and
``structural_similarity`` (default 7 x 7 uniform window): both images are
divided by the reference slice's maximum and ``data_range = 1``; MRI on
magnitudes, CT on the real values (negative values of FBP count as errors);
whole image, no clipping, no mask.  PSNR of an exact reconstruction is
``inf`` (written ``"inf"`` in the JSON).  Mean and standard deviation
(``ddof = 0``) over slices.

Outputs
-------
In ``out_dir``: ``<kind>.json`` (everything, per slice), ``<kind>.md``
(tables and target checks), ``<kind>-images.h5`` (truth and every
reconstruction as float32: magnitude for MRI, real for CT; the metrics are
exactly those of these arrays; group per case, ``images/<label>`` with
attributes ``slices`` and ``slice_z``) and ``<kind>-<case>.png`` (truth and
each method's image, error maps beneath, for the slice nearest the middle
that every method ran on).  The benchmark's targets (a ``targets``
function given to :func:`finish`) are reported as met / missed / not run
with their numbers, never asserted.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from tqdm.auto import tqdm

from ..pipelines.parameter_choice import default_grid
from ..solvers.learned import pick_device
from ..utils.atomic import atomic_path, atomic_write_text
from ..utils.checks import check_int
from .poisson import machine

__all__ = [
    "ERROR_MAX",
    "NORMALISATION",
    "TUNE_GRIDS",
    "case_table",
    "common_footer",
    "finish",
    "format_value",
    "image_metrics",
    "report_head",
    "run_case",
    "setup",
    "spread",
    "target_lines",
]

TUNE_GRIDS = {
    "mri": {"cg-sense": ("iters", (5, 10, 20, 40)), "l1-wavelet": ("lam", (1e-4, 3e-4, 1e-3, 3e-3)),
            "tv": ("lam", (3e-4, 1e-3, 3e-3, 1e-2)),
            "dds": (("gamma", "cg_steps"), ((None, 5), (None, 10), (None, 15), (3.0, 10), (30.0, 10),
                                            (100.0, 10)))},
    "ct": {"cg": ("iters", (10, 20, 40, 80, 160)), "admm-tv": ("lam", (0.03, 0.1, 0.3, 1.0, 3.0)),
           "dds": ("lam", (0.04, 0.1, 0.2, 0.5))},
}
NORMALISATION = ("per slice, reconstruction and reference both divided by the reference's maximum, "
                 "data_range = 1 (scikit-image peak_signal_noise_ratio / structural_similarity, 7x7 window); "
                 "{what}; whole image, no clipping")
#: Upper end of the error maps' colour scale (errors in units of the reference slice's maximum).
ERROR_MAX = 0.2
_WARMUP = {"dds": {"nfe": 2}, "dps": {"nfe": 2}, "cg-sense": {"iters": 2}, "cg": {"iters": 2},
           "l1-wavelet": {"iters": 2}, "tv": {"iters": 2}, "admm-tv": {"iters": 2}}


# ------------------------------------------------------------------ metrics
def image_metrics(image, reference, *, magnitude: bool = True) -> dict:
    """PSNR (dB) and SSIM of one slice, both divided by the reference's maximum, ``data_range = 1``.

    Parameters
    ----------
    image, reference : array, (ny, nx)
        Complex or real.  ``magnitude=True`` compares ``|image|`` with
        ``|reference|`` (MRI); ``False`` the real values (CT).
    magnitude : bool

    Returns
    -------
    dict ``{"psnr": float, "ssim": float}``; ``psnr`` is ``inf`` when the
    images are equal.
    """
    a = np.asarray(image)
    b = np.asarray(reference)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"image {a.shape} and reference {b.shape} must be equal 2-D shapes")
    if magnitude:
        a, b = np.abs(a), np.abs(b)
    elif np.iscomplexobj(a) or np.iscomplexobj(b):
        raise TypeError("image and reference must be real when magnitude=False")
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    peak = float(b.max())
    if not math.isfinite(peak) or peak <= 0:
        raise ValueError(f"reference must have a positive finite maximum, got {peak}")
    if not np.all(np.isfinite(a)):
        return {"psnr": float("nan"), "ssim": float("nan")}
    a, b = a / peak, b / peak
    if np.array_equal(a, b):
        p = float("inf")
    else:
        p = float(peak_signal_noise_ratio(b, a, data_range=1.0))
    s = float(structural_similarity(b, a, data_range=1.0))
    return {"psnr": p, "ssim": s}


def _stats(values) -> tuple[float, float]:
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return float("nan"), float("nan")
    if np.isinf(v).any():
        return float(v.mean()), float("nan")
    return float(v.mean()), float(v.std())


# ------------------------------------------------------------------ arguments
def _methods(methods, allowed, name="methods") -> list[str]:
    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",") if m.strip()]
    try:
        methods = list(methods)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of method names, got {type(methods).__name__}") from None
    bad = [m for m in methods if m not in allowed]
    if bad or not methods:
        raise ValueError(f"{name} must name at least one of {', '.join(allowed)}; got {methods!r}")
    order = [m for m in allowed if m in methods]  # canonical order, no duplicates
    return order



def spread(n: int, k: int) -> list[int]:
    """``k`` evenly spaced indices of ``range(n)`` (first and last included)."""
    return [int(i) for i in np.unique(np.round(np.linspace(0, n - 1, min(k, n))).astype(np.int64))]


def _options(options) -> dict:
    if options is None:
        return {}
    if not isinstance(options, dict) or not all(isinstance(v, dict) for v in options.values()):
        raise TypeError("options must be a dict: method -> dict of run_method options")
    return {k: dict(v) for k, v in options.items()}


def _jsonable(o):
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, np.ndarray):
        return _jsonable(o.tolist())
    if isinstance(o, np.generic):
        return _jsonable(o.item())
    if isinstance(o, float) and not math.isfinite(o):
        return "nan" if math.isnan(o) else ("inf" if o > 0 else "-inf")
    if isinstance(o, (str, int, float, bool)) or o is None:
        return o
    return str(o)


def _run_spec(problem, spec, shared, seed, bar=None, idx=None, opts=None):
    """Run one method on ``idx`` (default its slices): ``(images (k, ny, nx) float32, seconds per slice (k,))``."""
    idx = spec["slices"] if idx is None else idx
    imgs, secs = [], []
    for x, s in problem.solve(spec, idx, shared, seed, dict(spec["opts"] if opts is None else opts)):
        imgs.append(x)
        secs.extend(s)
        if bar is not None:
            bar.update(len(s))
    return np.concatenate(imgs), secs


def _warm_up(problem, specs, shared):
    """One untimed call per method on the first slice, with reduced work (few iterations / NFE)."""
    for spec in specs:
        w = dict(_WARMUP.get(spec["method"], {}))
        nfe = w.pop("nfe", spec["nfe"])
        _run_spec(problem, dict(spec, nfe=nfe), shared, 0, idx=[0], opts={**spec["opts"], **w})


def _tune(problem, specs, shared, grids, seed, progress=False) -> dict:
    """Grid search on a validation problem: returns ``label -> {option, value, scores}`` and updates the specs."""
    def grid(method):  # (names, candidate tuples, joint?)
        name, values = grids[method]
        joint = not isinstance(name, str)
        return (tuple(name), [tuple(v) for v in values], joint) if joint else ((name,), [(v,) for v in values], joint)

    todo = [s for s in specs if s["method"] in grids and not set(grid(s["method"])[0]) & set(s["opts"])]
    total = sum(len(grid(s["method"])[1]) for s in todo)
    out = {}
    with tqdm(total=total, desc="tuning on val", unit="run", disable=not progress, dynamic_ncols=True) as bar:
        for spec in todo:
            names, combos, joint = grid(spec["method"])
            scores = {}
            for combo in combos:
                opts = {k: v for k, v in spec["opts"].items() if k not in names}
                opts.update({k: v for k, v in zip(names, combo) if v is not None})  # None: the default
                imgs, _ = _run_spec(problem, spec, shared, seed, idx=list(range(problem.n)), opts=opts)
                ps = [image_metrics(imgs[j], problem.reference[j], magnitude=problem.magnitude)["psnr"]
                      for j in range(problem.n)]
                scores[combo] = float(np.mean(ps))
                bar.update(1)
            best = max(scores, key=lambda c: scores[c] if math.isfinite(scores[c]) else -math.inf)
            spec["opts"].update({k: v for k, v in zip(names, best) if v is not None})
            edge = (not joint and len(combos) > 1 and best in (combos[0], combos[-1])
                    and None not in (combos[0][0], combos[-1][0]))
            show = list if joint else (lambda c: c[0])
            out[spec["label"]] = {"option": list(names) if joint else names[0], "value": show(best),
                                  "at_grid_edge": bool(edge),
                                  "scores_psnr": [[show(c), sc] for c, sc in scores.items()]}
    return out


def _run_case(problem, specs, shared, seed, desc, progress) -> list[dict]:
    """Every spec on its slices: rows with per-slice metrics and the images (key ``_images``)."""
    total = sum(len(s["slices"]) for s in specs)
    rows = []
    with tqdm(total=total, desc=desc, unit="slice", disable=not progress, dynamic_ncols=True) as bar:
        for spec in specs:
            bar.set_postfix_str(spec["label"])
            imgs, secs = _run_spec(problem, spec, shared, seed, bar)
            per = []
            for j, i in enumerate(spec["slices"]):
                m = image_metrics(imgs[j], problem.reference[i], magnitude=problem.magnitude)
                per.append({"index": int(i), "z": int(problem.z[i]), "psnr": m["psnr"], "ssim": m["ssim"],
                            "seconds": secs[j]})
            pm, ps = _stats([p["psnr"] for p in per])
            sm, ss = _stats([p["ssim"] for p in per])
            rows.append({"label": spec["label"], "method": spec["method"], "nfe": spec["nfe"],
                         "options": {k: v for k, v in spec["opts"].items()},
                         "slices": [int(i) for i in spec["slices"]], "slice_z": [int(problem.z[i]) for i in spec["slices"]],
                         "psnr_mean": pm, "psnr_std": ps, "ssim_mean": sm, "ssim_std": ss,
                         "seconds_per_slice": float(np.mean(secs)), "seconds_total": float(np.sum(secs)),
                         "per_slice": per, "_images": imgs})
    return rows

# ------------------------------------------------------------------ figure
def _figure(path, problem, rows, title, extra=None):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    common = set(range(problem.n))
    for r in rows:
        common &= set(r["slices"])
    if not common:
        return None
    mid = (problem.n - 1) / 2
    i = min(common, key=lambda k: (abs(k - mid), k))
    ref = problem.reference[i].astype(np.float64)
    peak = float(np.abs(ref).max()) or 1.0
    cols = [("truth", ref / peak, None)]
    for r in rows:
        j = r["slices"].index(i)
        q = r["per_slice"][j]
        cols.append((f"{r['label']}\n{q['psnr']:.2f} dB, SSIM {q['ssim']:.3f}", r["_images"][j] / peak, r))
    errs = [np.abs(c[1] - ref / peak) for c in cols[1:]]
    emax = ERROR_MAX
    n = len(cols)
    fig = Figure(figsize=(2.3 * n, 5.0))
    FigureCanvasAgg(fig)
    for c, (name, img, _) in enumerate(cols):
        ax = fig.add_subplot(2, n, c + 1)
        ax.imshow(img, cmap="gray", vmin=0.0, vmax=1.0)
        ax.set_title(name if c else f"truth (z = {int(problem.z[i])})", fontsize=8)
        ax.axis("off")
        ax = fig.add_subplot(2, n, n + c + 1)
        if c == 0:
            if extra is not None:
                ax.imshow(extra[1], cmap="gray", aspect="auto", interpolation="nearest",
                          vmin=float(np.min(extra[1])), vmax=float(np.max(extra[1])) or 1.0)
                ax.set_title(extra[0], fontsize=8)
        else:
            im = ax.imshow(errs[c - 1], cmap="magma", vmin=0.0, vmax=emax)
            ax.set_title(f"|error| (0 to {ERROR_MAX:g})", fontsize=8)
            if c == n - 1:
                fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return str(path)


def _write_images(path, kind, cases):
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["benchmark"] = kind
        f.attrs["values"] = "magnitude" if kind == "mri" else "real attenuation values"
        for case in cases:
            g = f.create_group(case["case"])
            g.create_dataset("reference", data=case["_reference"], compression="gzip")
            g.create_dataset("slice_z", data=np.asarray(case["slice_z"], dtype=np.int64))
            for r in case["rows"]:
                d = g.create_dataset(f"images/{r['label']}", data=r["_images"], compression="gzip")
                d.attrs["slices"] = np.asarray(r["slices"], dtype=np.int64)
                d.attrs["slice_z"] = np.asarray(r["slice_z"], dtype=np.int64)


def finish(report: dict, cases: list, out_dir, extra_fig, formatter, save_images: bool = True, *,
           targets=None) -> dict:
    """Add the targets, write the files (when ``out_dir``), strip the arrays; return the report.

    ``cases`` hold ``rows`` (from :func:`run_case`), ``title``, ``_problem``
    and ``_reference``; ``extra_fig(case)`` gives the ``(title, image)`` under
    the truth in the figure; ``formatter(report)`` the markdown;
    ``save_images=False`` skips ``<kind>-images.h5``; ``targets(report)``
    gives the benchmark's target checks (a list of dicts with ``target``,
    ``case``, ``status`` and ``detail``; none by default).
    """
    report["targets"] = [] if targets is None else targets(report | {"cases": cases})
    kind = report["benchmark"]
    out = None if out_dir is None else Path(out_dir)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        files = {"json": str(out / f"{kind}.json"), "table": str(out / f"{kind}.md"),
                 "images": str(out / f"{kind}-images.h5") if save_images else None, "figures": []}
        if save_images:
            _write_images(out / f"{kind}-images.h5", kind, cases)
        for case in cases:
            fig = _figure(out / f"{kind}-{case['case']}.png", case["_problem"], case["rows"], case["title"],
                          extra_fig(case)) if case["rows"] else None
            case["figure"] = fig
            if fig:
                files["figures"].append(fig)
        report["files"] = files
    for case in cases:
        for k in [k for k in case if k.startswith("_")]:
            del case[k]
        for r in case["rows"]:
            r.pop("_images", None)
    report["cases"] = cases
    if out is not None:
        atomic_write_text(out / f"{kind}.json", json.dumps(_jsonable(report), indent=1, allow_nan=False) + "\n")
        atomic_write_text(out / f"{kind}.md", formatter(report) + "\n")
    return report


def _machine():
    m = machine()
    m["torch_threads"] = torch.get_num_threads()
    return m

def setup(kind: str, *, methods, allowed, tune_slices, seed, options, device) -> dict:
    """Check the arguments every imaging benchmark has.

    Returns a dict: ``kind``, ``methods`` (canonical order: that of
    ``allowed``), ``tune_slices``, ``seed``, ``options`` (method -> dict of
    :func:`run_method` options), ``device``, ``shared`` (keywords for every
    method call, empty here), ``skipped`` (method -> reason) and ``notes``.
    """
    return {"kind": kind, "methods": _methods(methods, allowed),
            "tune_slices": check_int("tune_slices", tune_slices, 1), "seed": check_int("seed", seed, 0),
            "options": _options(options), "device": pick_device(device), "shared": {}, "notes": [], "skipped": {}}


def run_case(problem, cfg: dict, specs: list[dict], *, name: str, validation=None, warm: bool = False,
             progress: bool = True):
    """Every spec on ``problem``: ``(rows, tuning choices or None)``.

    ``validation``: a problem of validation slices to tune on first (see the
    module notes; the specs' options are updated); ``warm``: run the untimed
    warm-up calls first.
    """
    choices = None
    if validation is not None:
        choices = _tune(validation, specs, cfg["shared"], TUNE_GRIDS[cfg["kind"]], cfg["seed"], progress)
    if warm:
        _warm_up(problem, specs, cfg["shared"])
    return _run_case(problem, specs, cfg["shared"], cfg["seed"], name, progress), choices


def report_head(cfg: dict, *, what: str, tune: bool, warmup: bool, timing: str) -> dict:
    """The report fields every imaging benchmark shares."""
    return {
        "normalisation": NORMALISATION.format(what=what), "methods": cfg["methods"], "skipped": cfg["skipped"],
        "notes": cfg["notes"], "tune": bool(tune),
        "timing": (timing + ", after one untimed reduced warm-up call per method") if warmup
        else (timing + ", no warm-up"),
        "device": str(cfg["device"]), "machine": _machine(), "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def target_lines(report: dict) -> list[str]:
    """One printable line per target: ``TARGET met|missed|not run: <target> [case]: numbers``."""
    lines = []
    for t in report.get("targets") or []:
        case = f" [{t['case']}]" if t.get("case") else ""
        lines.append(f"TARGET {t['status']}: {t['target']}{case}: {t['detail']}")
    return lines


# ------------------------------------------------------------------ tables
def format_value(v, fmt) -> str:
    """``v`` formatted with ``fmt``; ``-`` for None/NaN, ``inf`` for infinity, strings as they are."""
    if isinstance(v, str):
        return v
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return format(v, fmt)


_f = format_value


def _slices_text(r, n):
    if len(r["slices"]) == n:
        return f"all {n}"
    return f"{len(r['slices'])}: z " + ", ".join(map(str, r["slice_z"]))


def _choice_text(c) -> str:
    names, values = c["option"], c["value"]
    if isinstance(names, str):
        names, values = [names], [values]
    return ", ".join(f"{k}={'default' if v is None else v}" for k, v in zip(names, values))


def case_table(case, n, sections=()) -> list[str]:
    """Markdown of one case: a row per run, then each of ``sections(case)`` (lists of lines), then the tuning."""
    lines = ["| method | NFE | slices | PSNR dB (mean ± std) | SSIM (mean ± std) | s / slice | options |",
             "|---|---:|---|---:|---:|---:|---|"]
    for r in case["rows"]:
        opts = ", ".join(f"{k}={v}" for k, v in sorted(r["options"].items())) or (
            "chosen per scan" if case.get("auto") and default_grid(case.get("kind", ""), r["method"])
            else "defaults")
        lines.append(f"| {r['label']} | {r['nfe'] or '-'} | {_slices_text(r, n)} | {_f(r['psnr_mean'], '.2f')} ± "
                     f"{_f(r['psnr_std'], '.2f')} | {_f(r['ssim_mean'], '.3f')} ± {_f(r['ssim_std'], '.3f')} | "
                     f"{_f(r['seconds_per_slice'], '.3g')} | {opts} |")
    for section in sections:
        lines += section(case)
    if case.get("tuning"):
        tu = case["tuning"]
        picks = "; ".join(f"{lab}: {_choice_text(c)}" + (" (at the grid's edge)" if c.get("at_grid_edge") else "")
                          for lab, c in tu["choices"].items()) or "nothing"
        where = ", ".join(map(str, tu["slice_z"]))
        lines += ["", f"Tuned by mean PSNR on validation slices z {where} (seed {tu['seed']}): {picks}."]
    return lines


def common_footer(report, head=()) -> list[str]:
    """The lines under the tables: ``head`` (e.g. what was loaded), notes, metrics, timing, machine, targets."""
    lines = list(head)
    if report.get("auto"):
        lines.append("Options: chosen per slice (per volume for CT) by cross-validation on held-out measurements "
                     "(--auto); the seconds include the choice.")
    for n in report.get("notes", []):
        lines.append(f"Note: {n}")
    lines += [f"Metrics: {report['normalisation']}.", f"Timing: {report['timing']}."]
    m = report.get("machine") or {}
    lines.append(f"Machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores, torch threads "
                 f"{m.get('torch_threads', '?')}" + (f", GPU {m['gpu']}" if m.get("gpu") else "")
                 + f"; device {report.get('device')}; timings noisy on a shared machine.")
    lines += ["", "Targets:", ""] + [f"- {line}" for line in target_lines(report)]
    return lines
