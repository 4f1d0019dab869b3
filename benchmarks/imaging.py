"""Shared machinery of ``krylearn bench mri`` and ``krylearn bench ct`` (:mod:`.mri`, :mod:`.ct`).

A benchmark runs every method on the slices of each *case* (an MRI mask and
acceleration, a CT view count) and records per-slice PSNR, SSIM and seconds.

Methods
-------
Everything goes through :func:`krylearn.pipelines.reconstruct.run_method`.
``dds`` runs at each NFE of ``dds_nfe`` (labels ``dds-19``, ``dds-49``,
...).  ``dps`` is slow on CPU: it runs on ``dps_count`` evenly spaced slices
of the selection only, and every DDS/DPS comparison (quality and the speed
ratio) is made on those same slices in the same run.  Timings follow one
untimed warm-up call per method (reduced work: 2 NFE / 2 iterations) and
include ``run_method``'s scale estimate.  The prior is resolved once: a name
or path that does not exist becomes a note and a warning, dds/dps are
skipped and the classical methods still run; a prior that exists but does
not fit (wrong channels) is an error.

Hyper-parameters
----------------
Library defaults (:mod:`krylearn.solvers.imaging`, the samplers), unless
``tune=True``: then each case picks, by mean PSNR over validation slices
(never test slices), one option (or one joint pair of options) per method
from :data:`TUNE_GRIDS`: CG's iteration count, the l1-wavelet / TV /
ADMM-TV weight, DDS's ``gamma`` and CG steps per diffusion step (MRI) or
its weight of TV along z (3D CT).  An
option the caller gives explicitly is kept and not tuned.  A choice at the
end of a one-option grid is flagged.

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
that every method ran on).  Targets (:func:`check_targets`) are reported as
met / missed / not run with their numbers, never asserted.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import time
import warnings
from pathlib import Path

import numpy as np

from ..utils.atomic import atomic_path, atomic_write_text
from ..utils.checks import check_int

__all__ = [
    "ERROR_MAX",
    "NORMALISATION",
    "TUNE_GRIDS",
    "check_targets",
    "image_metrics",
    "target_lines",
]

#: Validation grids of ``tune=True``: kind -> method -> (option, candidate values), or
#: ((option, option), candidate pairs) for a joint grid.  ``None`` leaves an option at its default
#: (for DDS's ``gamma``: the noiseless form A^H A x = A^H y).
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
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

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


def _nfes(v, name) -> list[int]:
    if isinstance(v, numbers.Integral) and not isinstance(v, bool):
        v = [v]
    try:
        vals = [check_int(name, x, 1) for x in v]
    except TypeError:
        raise TypeError(f"{name} must be an int or a sequence of ints, got {v!r}") from None
    if not vals:
        raise ValueError(f"{name} must hold at least one NFE")
    return sorted(set(vals))


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


# ------------------------------------------------------------------ prior
def _resolve_prior(prior, kind, device, needed: bool):
    """``(prior for run_method or None, info dict, note or None)``; a missing prior is a note, not an error."""
    from ..pipelines.reconstruct import resolve_prior
    from ..solvers.dds import available_priors
    from ..solvers.learned import find_weights

    if not needed:
        return None, None, None
    if prior is None:
        return None, None, (f"no prior given (--prior): dds/dps skipped, classical methods only "
                            f"(shipped priors: {', '.join(available_priors()) or 'none'})")
    if isinstance(prior, (str, os.PathLike)):
        try:
            find_weights(prior, "dds")
        except ValueError:
            shipped = ", ".join(available_priors()) or "none"
            return None, None, (
                f"prior {str(prior)!r} not found (shipped priors: {shipped}; nor is it a weights file): "
                f"dds/dps skipped, classical methods only. Train one with `krylearn train diffusion --kind {kind} "
                f"...` and pass --prior PATH")
    den, card, label = resolve_prior(prior, kind, device)  # wrong channels etc. are errors
    keep = ("name", "data", "command", "seed", "steps", "wall_time", "seconds", "hardware", "final_loss",
            "metrics", "normalization", "config")
    info = {"label": label, "card": {k: card[k] for k in keep if k in card},
            "parameters": int(sum(p.numel() for p in den.parameters())) if hasattr(den, "parameters") else None}
    return prior, info, None


# ------------------------------------------------------------------ method specs
def _specs(methods, dds_nfe, dps_nfe, n, dps_slices, options) -> list[dict]:
    specs = []
    for m in methods:
        base = dict(options.get(m, {}))
        if m == "dds":
            for k in dds_nfe:
                specs.append({"label": f"dds-{k}", "method": m, "nfe": k, "slices": list(range(n)), "opts": dict(base)})
        elif m == "dps":
            specs.append({"label": f"dps-{dps_nfe}", "method": m, "nfe": dps_nfe, "slices": list(dps_slices),
                          "opts": base})
        else:
            specs.append({"label": m, "method": m, "nfe": None, "slices": list(range(n)), "opts": base})
    return specs


def _run_spec(problem, spec, prior, seed, bar=None, idx=None, opts=None):
    """Run one method on ``idx`` (default its slices): ``(images (k, ny, nx) float32, seconds per slice (k,))``."""
    idx = spec["slices"] if idx is None else idx
    imgs, secs = [], []
    for x, s in problem.solve(spec, idx, prior, seed, dict(spec["opts"] if opts is None else opts)):
        imgs.append(x)
        secs.extend(s)
        if bar is not None:
            bar.update(len(s))
    return np.concatenate(imgs), secs


def _warm_up(problem, specs, prior):
    """One untimed call per method on the first slice, with reduced work (few iterations / NFE)."""
    for spec in specs:
        w = dict(_WARMUP.get(spec["method"], {}))
        nfe = w.pop("nfe", spec["nfe"])
        _run_spec(problem, dict(spec, nfe=nfe), prior, 0, idx=[0], opts={**spec["opts"], **w})


def _tune(problem, specs, prior, grids, seed, progress=False) -> dict:
    """Grid search on a validation problem: returns ``label -> {option, value, scores}`` and updates the specs."""
    from tqdm.auto import tqdm

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
                imgs, _ = _run_spec(problem, spec, prior, seed, idx=list(range(problem.n)), opts=opts)
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


def _run_case(problem, specs, prior, seed, desc, progress) -> list[dict]:
    """Every spec on its slices: rows with per-slice metrics and the images (key ``_images``)."""
    from tqdm.auto import tqdm

    total = sum(len(s["slices"]) for s in specs)
    rows = []
    with tqdm(total=total, desc=desc, unit="slice", disable=not progress, dynamic_ncols=True) as bar:
        for spec in specs:
            bar.set_postfix_str(spec["label"])
            imgs, secs = _run_spec(problem, spec, prior, seed, bar)
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


def same_slices(rows) -> list[dict]:
    """DDS vs DPS on the DPS slices: PSNR, SSIM, seconds and the speed ratio (same run)."""
    out = []
    dps = [r for r in rows if r["method"] == "dps"]
    for p in dps:
        sl = set(p["slices"])
        for d in (r for r in rows if r["method"] == "dds"):
            per = [q for q in d["per_slice"] if q["index"] in sl]
            if len(per) != len(sl):
                continue
            out.append({"dds": d["label"], "dps": p["label"], "slices": sorted(sl),
                        "slice_z": [q["z"] for q in per],
                        "dds_psnr": _stats([q["psnr"] for q in per])[0], "dps_psnr": p["psnr_mean"],
                        "dds_ssim": _stats([q["ssim"] for q in per])[0], "dps_ssim": p["ssim_mean"],
                        "dds_seconds_per_slice": float(np.mean([q["seconds"] for q in per])),
                        "dps_seconds_per_slice": p["seconds_per_slice"],
                        "speedup": p["seconds_per_slice"] / float(np.mean([q["seconds"] for q in per])),
                        "nfe_ratio": p["nfe"] / d["nfe"]})
    return out


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
    import h5py

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


def finish(report: dict, cases: list, out_dir, extra_fig, formatter, save_images: bool = True) -> dict:
    """Add the targets, write the files (when ``out_dir``), strip the arrays; return the report.

    ``cases`` hold ``rows`` (from :func:`run_case`), ``title``, ``_problem``
    and ``_reference``; ``extra_fig(case)`` gives the ``(title, image)`` under
    the truth in the figure; ``formatter(report)`` the markdown;
    ``save_images=False`` skips ``<kind>-images.h5``.
    """
    report["targets"] = check_targets(report | {"cases": cases})
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
    import torch

    from .poisson import machine

    m = machine()
    m["torch_threads"] = torch.get_num_threads()
    return m


# ------------------------------------------------------------------ setup and one case
def setup(kind: str, *, methods, allowed, prior, dds_nfe, dps_nfe, dps_count, tune_slices, seed, options,
          device) -> dict:
    """Check the arguments shared by both benchmarks and resolve the prior once.

    Returns a dict: ``methods`` (canonical order, dds/dps dropped when the
    prior is missing), ``dds_nfe`` (sorted), ``dps_nfe``, ``dps_count``,
    ``tune_slices``, ``seed``, ``options``, ``device``, ``prior`` (for
    :func:`run_method`), ``prior_info``, ``prior_requested``, ``skipped``
    (method -> reason), ``notes``.
    """
    from ..solvers.learned import pick_device

    methods = _methods(methods, allowed)
    cfg = {"kind": kind, "dds_nfe": _nfes(dds_nfe, "dds_nfe"), "dps_nfe": check_int("dps_nfe", dps_nfe, 1),
           "dps_count": check_int("dps_count", dps_count, 1), "tune_slices": check_int("tune_slices", tune_slices, 1),
           "seed": check_int("seed", seed, 0), "options": _options(options), "device": pick_device(device),
           "notes": [], "skipped": {},
           "prior_requested": None if prior is None else (
               str(prior) if isinstance(prior, (str, os.PathLike)) else type(prior).__name__)}
    den, info, note = _resolve_prior(prior, kind, cfg["device"], any(m in ("dds", "dps") for m in methods))
    if note:
        cfg["skipped"] = {m: note for m in methods if m in ("dds", "dps")}
        methods = [m for m in methods if m not in ("dds", "dps")]
        cfg["notes"].append(note)
        warnings.warn(note, UserWarning, stacklevel=3)
    if not methods:
        raise ValueError("methods: nothing left to run (only dds/dps were asked for and the prior is missing)")
    cfg.update(methods=methods, prior=den, prior_info=info)
    return cfg


def dps_selection(cfg: dict, n: int) -> list[int]:
    """The DPS slices (evenly spaced indices into the ``n`` benchmark slices); notes a clamp."""
    if "dps" in cfg["methods"] and cfg["dps_count"] > n:
        cfg["notes"].append(f"dps_count={cfg['dps_count']} > {n} slices: DPS runs on all {n} slices")
    return spread(n, cfg["dps_count"])


def run_case(problem, cfg: dict, *, name: str, dps_slices, validation=None, warm: bool = False,
             progress: bool = True):
    """Every method of ``cfg`` on ``problem``: ``(rows, tuning choices or None)``.

    ``validation``: a problem of validation slices to tune on first (see the
    module notes); ``warm``: run the untimed warm-up calls first.
    """
    specs = _specs(cfg["methods"], cfg["dds_nfe"], cfg["dps_nfe"], problem.n, dps_slices, cfg["options"])
    choices = None
    if validation is not None:
        choices = _tune(validation, specs, cfg["prior"], TUNE_GRIDS[cfg["kind"]], cfg["seed"], progress)
    if warm:
        _warm_up(problem, specs, cfg["prior"])
    return _run_case(problem, specs, cfg["prior"], cfg["seed"], name, progress), choices


def report_head(cfg: dict, *, what: str, tune: bool, warmup: bool, timing: str) -> dict:
    """The report fields both benchmarks share."""
    return {
        "normalisation": NORMALISATION.format(what=what),
        "methods": cfg["methods"], "dds_nfe": cfg["dds_nfe"], "dps_nfe": cfg["dps_nfe"],
        "prior": cfg["prior_info"], "prior_requested": cfg["prior_requested"], "skipped": cfg["skipped"],
        "notes": cfg["notes"], "tune": bool(tune),
        "timing": (timing + ", after one untimed reduced warm-up call per method") if warmup
        else (timing + ", no warm-up"),
        "device": str(cfg["device"]), "machine": _machine(), "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


# ------------------------------------------------------------------ targets
def _row(case, label):
    return next((r for r in case["rows"] if r["label"] == label), None)


def _paired(case, a, b):
    """Mean PSNR of rows ``a`` and ``b`` over their common slices: ``(pa, pb, count)`` or None."""
    ra, rb = _row(case, a), _row(case, b)
    if ra is None or rb is None:
        return None
    common = sorted(set(ra["slices"]) & set(rb["slices"]))
    if not common:
        return None
    pa = _stats([q["psnr"] for q in ra["per_slice"] if q["index"] in common])[0]
    pb = _stats([q["psnr"] for q in rb["per_slice"] if q["index"] in common])[0]
    return pa, pb, len(common)


def _missing(report, case, labels):
    gone = [lab for lab in labels if _row(case, lab) is None]
    why = []
    for lab in gone:
        m = lab.split("-")[0] if lab.startswith(("dds-", "dps-")) else lab
        if m in report.get("skipped", {}):
            why.append(f"{lab}: {m} skipped (prior missing)")
        else:
            why.append(f"{lab} not in this run")
    return "; ".join(why)


def _margin_target(report, case, a, b, margin, name):
    t = {"target": name, "case": case["case"] if case else None, "required_db": margin}
    if case is None:
        return t | {"status": "not run", "detail": "case not in this run"}
    got = _paired(case, a, b)
    if got is None:
        return t | {"status": "not run", "detail": _missing(report, case, (a, b)) or "no common slices"}
    pa, pb, k = got
    d = pa - pb
    ok = d >= margin
    return t | {"status": "met" if ok else "missed", "value_db": d, "a_psnr": pa, "b_psnr": pb, "slices": k,
                "detail": f"{a} {pa:.2f} dB vs {b} {pb:.2f} dB: {d:+.2f} dB "
                          f"({'>=' if ok else '<'} {margin:+g} dB), {k} slices"}


def check_targets(report: dict) -> list[dict]:
    """The issue's targets, as met / missed / not run with their numbers (never asserted).

    MRI: at uniform 1D x4, DDS-49 >= CG-SENSE + 3 dB and >= L1-wavelet + 1 dB
    (mean PSNR over the same slices); per case, DDS-49 >= 15x faster than
    DPS-1000 with a PSNR no lower, on the DPS slices of the same run.
    CT: at 8 views, DDS-49 >= FBP + 8 dB and >= ADMM-TV + 1 dB.
    """
    out = []
    cases = report.get("cases", [])
    if report["benchmark"] == "mri":
        x4 = next((c for c in cases if c.get("mask") == "uniform1d" and c.get("accel_requested") == 4), None)
        out.append(_margin_target(report, x4, "dds-49", "cg-sense", 3.0, "DDS-49 >= CG-SENSE + 3 dB (uniform1d x4)"))
        out.append(_margin_target(report, x4, "dds-49", "l1-wavelet", 1.0,
                                  "DDS-49 >= L1-wavelet + 1 dB (uniform1d x4)"))
        for c in cases:
            name = "DDS-49 >= 15x faster than DPS-1000, PSNR no lower (same slices, same run)"
            t = {"target": name, "case": c["case"], "required_speedup": 15.0}
            comp = next((s for s in c.get("same_slices", []) if s["dds"] == "dds-49"), None)
            if comp is None:
                dps = next((r["label"] for r in c["rows"] if r["method"] == "dps"), "dps-1000")
                out.append(t | {"status": "not run", "detail": _missing(report, c, ("dds-49", dps))})
                continue
            sp, pd, pp = comp["speedup"], comp["dds_psnr"], comp["dps_psnr"]
            detail = (f"dds-49 {comp['dds_seconds_per_slice']:.3g} s/slice vs {comp['dps']} "
                      f"{comp['dps_seconds_per_slice']:.3g} s/slice: {sp:.1f}x faster; PSNR {pd:.2f} vs {pp:.2f} dB "
                      f"on the same {len(comp['slices'])} slice(s) (z {', '.join(map(str, comp['slice_z']))})")
            if comp["dps"] != "dps-1000":
                out.append(t | {"status": "not run", "speedup": sp, "detail": detail + f"; DPS ran with "
                                f"{comp['dps'].split('-')[1]} NFE, the target is about DPS-1000"})
                continue
            ok = sp >= 15.0 and pd >= pp
            out.append(t | {"status": "met" if ok else "missed", "speedup": sp, "dds_psnr": pd, "dps_psnr": pp,
                            "detail": detail})
    else:
        v8 = next((c for c in cases if c.get("views") == 8), None)
        out.append(_margin_target(report, v8, "dds-49", "fbp", 8.0, "3D CT 8 views: DDS-49 >= FBP + 8 dB"))
        out.append(_margin_target(report, v8, "dds-49", "admm-tv", 1.0, "3D CT 8 views: DDS-49 >= ADMM-TV + 1 dB"))
    return out


def target_lines(report: dict) -> list[str]:
    """One printable line per target: ``TARGET met|missed|not run: <target> [case]: numbers``."""
    lines = []
    for t in report.get("targets") or check_targets(report):
        case = f" [{t['case']}]" if t.get("case") else ""
        lines.append(f"TARGET {t['status']}: {t['target']}{case}: {t['detail']}")
    return lines


# ------------------------------------------------------------------ tables
def _f(v, fmt):
    if isinstance(v, str):
        return v
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return format(v, fmt)


def _slices_text(r, n):
    if len(r["slices"]) == n:
        return f"all {n}"
    return f"{len(r['slices'])}: z " + ", ".join(map(str, r["slice_z"]))


def _choice_text(c) -> str:
    names, values = c["option"], c["value"]
    if isinstance(names, str):
        names, values = [names], [values]
    return ", ".join(f"{k}={'default' if v is None else v}" for k, v in zip(names, values))


def case_table(case, n) -> list[str]:
    lines = ["| method | NFE | slices | PSNR dB (mean ± std) | SSIM (mean ± std) | s / slice | options |",
             "|---|---:|---|---:|---:|---:|---|"]
    for r in case["rows"]:
        opts = ", ".join(f"{k}={v}" for k, v in sorted(r["options"].items())) or "defaults"
        lines.append(f"| {r['label']} | {r['nfe'] or '-'} | {_slices_text(r, n)} | {_f(r['psnr_mean'], '.2f')} ± "
                     f"{_f(r['psnr_std'], '.2f')} | {_f(r['ssim_mean'], '.3f')} ± {_f(r['ssim_std'], '.3f')} | "
                     f"{_f(r['seconds_per_slice'], '.3g')} | {opts} |")
    if case.get("same_slices"):
        lines += ["", "DDS vs DPS on the DPS slices (same run):", "",
                  "| DDS | DPS | slices (z) | PSNR DDS / DPS | SSIM DDS / DPS | s/slice DDS / DPS | speed-up | NFE ratio |",
                  "|---|---|---|---:|---:|---:|---:|---:|"]
        for s in case["same_slices"]:
            lines.append(f"| {s['dds']} | {s['dps']} | {', '.join(map(str, s['slice_z']))} | "
                         f"{_f(s['dds_psnr'], '.2f')} / {_f(s['dps_psnr'], '.2f')} | "
                         f"{_f(s['dds_ssim'], '.3f')} / {_f(s['dps_ssim'], '.3f')} | "
                         f"{s['dds_seconds_per_slice']:.3g} / {s['dps_seconds_per_slice']:.3g} | "
                         f"{s['speedup']:.1f}x | {s['nfe_ratio']:.1f} |")
    if case.get("tuning"):
        tu = case["tuning"]
        picks = "; ".join(f"{lab}: {_choice_text(c)}" + (" (at the grid's edge)" if c.get("at_grid_edge") else "")
                          for lab, c in tu["choices"].items()) or "nothing"
        where = ", ".join(map(str, tu["slice_z"]))
        lines += ["", f"Tuned by mean PSNR on validation slices z {where} (seed {tu['seed']}): {picks}."]
    return lines


def common_footer(report) -> list[str]:
    lines = []
    p = report.get("prior")
    if p:
        card = p.get("card") or {}
        lines.append(f"Prior: {p['label']}" + (f" ({p['parameters']:,} parameters)" if p.get("parameters") else "")
                     + (f", trained on {card['data']}" if isinstance(card.get("data"), str) else "") + ".")
    for n in report.get("notes", []):
        lines.append(f"Note: {n}")
    lines += [f"Metrics: {report['normalisation']}.", f"Timing: {report['timing']}."]
    m = report.get("machine") or {}
    lines.append(f"Machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores, torch threads "
                 f"{m.get('torch_threads', '?')}" + (f", GPU {m['gpu']}" if m.get("gpu") else "")
                 + f"; device {report.get('device')}; timings noisy on a shared machine.")
    lines += ["", "Targets:", ""] + [f"- {line}" for line in target_lines(report)]
    return lines


