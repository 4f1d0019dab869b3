"""What DDS's MRI and CT benchmarks (:mod:`.bench_mri`, :mod:`.bench_ct`) add to the shared imaging harness.

The harness (:mod:`krylearn.benchmarks.imaging`) runs any reconstruction
methods on a problem's slices and scores them; DDS's benchmarks add:

* the diffusion prior, resolved once (:func:`setup`): a name or path that
  does not exist becomes a note and a warning, dds/dps are skipped and the
  classical methods still run; a prior that exists but does not fit (wrong
  channels, a corrupt file) is an error.  ``prior="auto"`` (with ``auto``)
  lets DDS choose among the modality's shipped priors per scan, as
  ``krylearn reconstruct --auto`` does without ``--prior``; DPS then runs
  with the modality's default prior;
* one run per DDS NFE (labels ``dds-19``, ``dds-49``, ...) and DPS on
  ``dps_count`` evenly spaced slices only (it is slow on CPU) (:func:`specs`);
* DDS against DPS on the DPS slices of the same run (:func:`same_slices`):
  quality and the speed ratio;
* the targets (:func:`check_targets`), reported as met / missed / not run
  with their numbers, never asserted.
"""

from __future__ import annotations

import numbers
import os
import warnings

import numpy as np

from ...benchmarks import imaging as harness
from ...benchmarks.imaging import _stats, spread
from ...pipelines.parameter_choice import DDS_PRIORS
from ...utils.checks import check_int
from ..learned import find_weights
from .prior import available_priors
from .reconstruct import resolve_prior

__all__ = ["AUTO", "DIFFUSION", "check_targets", "comparison_table", "dps_selection", "prior_lines", "report_head",
           "same_slices", "setup", "specs"]

#: The diffusion methods: they need the prior and are skipped without it.
DIFFUSION = ("dds", "dps")
#: ``prior=AUTO``: DDS chooses its prior per scan among :data:`DDS_PRIORS` (needs ``auto``).
AUTO = "auto"


# ------------------------------------------------------------------ arguments and prior
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



def _resolve_prior(prior, kind, device, needed: bool):
    """``(prior for run_method or None, info dict, note or None)``; a missing prior is a note, not an error."""
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
    den, card, label = resolve_prior(prior, kind, device)  # wrong channels, corrupt files etc. are errors
    keep = ("name", "data", "command", "seed", "steps", "wall_time", "seconds", "hardware", "final_loss",
            "metrics", "normalization", "config")
    info = {"label": label, "card": {k: card[k] for k in keep if k in card},
            "parameters": int(sum(p.numel() for p in den.parameters())) if hasattr(den, "parameters") else None}
    return prior, info, None


def setup(kind: str, *, methods, allowed, prior, dds_nfe, dps_nfe, dps_count, tune_slices, seed, options,
          device) -> dict:
    """The harness's :func:`~krylearn.benchmarks.imaging.setup` plus the NFEs and the prior, resolved once.

    Adds to its dict: ``dds_nfe`` (sorted), ``dps_nfe``, ``dps_count``,
    ``shared`` (``{"prior": ...}`` for every method call), ``prior_info``,
    ``prior_requested``; dds/dps are dropped from ``methods`` (with a note in
    ``skipped`` and ``notes``) when the prior is missing.
    """
    cfg = harness.setup(kind, methods=methods, allowed=allowed, tune_slices=tune_slices, seed=seed, options=options,
                        device=device)
    cfg.update(dds_nfe=_nfes(dds_nfe, "dds_nfe"), dps_nfe=check_int("dps_nfe", dps_nfe, 1),
               dps_count=check_int("dps_count", dps_count, 1),
               prior_requested=None if prior is None else (
                   str(prior) if isinstance(prior, (str, os.PathLike)) else type(prior).__name__))
    methods = cfg["methods"]
    if isinstance(prior, str) and prior == AUTO:
        return _setup_auto_prior(cfg, kind)
    den, info, note = _resolve_prior(prior, kind, cfg["device"], any(m in DIFFUSION for m in methods))
    if note:
        cfg["skipped"] = {m: note for m in methods if m in DIFFUSION}
        methods = [m for m in methods if m not in DIFFUSION]
        cfg["notes"].append(note)
        warnings.warn(note, UserWarning, stacklevel=3)
    if not methods:
        raise ValueError("methods: nothing left to run (only dds/dps were asked for and the prior is missing)")
    cfg.update(methods=methods, shared={"prior": den}, prior_info=info)
    return cfg


def _setup_auto_prior(cfg: dict, kind: str) -> dict:
    """``prior="auto"``: no prior shared by the method calls, so DDS's per-scan grid runs every shipped prior.

    Each candidate prior is resolved here (a missing or broken one is an
    error: the choice would silently shrink); DPS, which chooses nothing,
    runs with the first (the modality's default).
    """
    methods = cfg["methods"]
    needed = any(m in DIFFUSION for m in methods)
    infos = [_resolve_prior(p, kind, cfg["device"], needed) for p in DDS_PRIORS[kind]]
    missing = [n for (_, _, n) in infos if n]
    if missing:
        raise ValueError(f"prior='auto' chooses among {', '.join(DDS_PRIORS[kind])}, but: {missing[0]}")
    info = None
    if needed:
        info = {"label": f"chosen per scan among {', '.join(i['label'] for _, i, _ in infos)}",
                "candidates": [i for _, i, _ in infos], "parameters": None}
        if "dps" in methods:
            cfg["notes"].append(f"prior auto: DPS runs with {DDS_PRIORS[kind][0]} (it has no options to choose)")
    cfg.update(shared={}, prior_info=info, prior_auto=True)
    return cfg


def dps_selection(cfg: dict, n: int) -> list[int]:
    """The DPS slices (evenly spaced indices into the ``n`` benchmark slices); notes a clamp."""
    if "dps" in cfg["methods"] and cfg["dps_count"] > n:
        cfg["notes"].append(f"dps_count={cfg['dps_count']} > {n} slices: DPS runs on all {n} slices")
    return spread(n, cfg["dps_count"])


def specs(cfg: dict, n: int, dps_slices) -> list[dict]:
    """The runs of one case: one per method, one per DDS NFE, DPS on its slices only."""
    return _specs(cfg["methods"], cfg["dds_nfe"], cfg["dps_nfe"], n, dps_slices, cfg["options"])


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



def auto_options(cfg: dict, auto: bool, tune: bool) -> None:
    """``auto``: every method call chooses its options per scan (``run_method(auto=True)``); not with ``tune``."""
    if auto and tune:
        raise ValueError("auto and tune exclude each other: auto chooses per scan, tune on validation slices")
    if cfg.get("prior_auto") and not auto:
        raise ValueError("prior='auto' (--prior auto) chooses the prior per scan by cross-validation: add --auto")
    if auto:
        cfg["shared"]["auto"] = True


def report_head(cfg: dict, **kw) -> dict:
    """The harness's :func:`~krylearn.benchmarks.imaging.report_head` with the NFEs, the prior and ``auto``."""
    head = harness.report_head(cfg, **kw)
    return {"normalisation": head.pop("normalisation"), "methods": head.pop("methods"),
            "auto": bool(cfg["shared"].get("auto")), "dds_nfe": cfg["dds_nfe"],
            "dps_nfe": cfg["dps_nfe"], "prior": cfg["prior_info"], "prior_requested": cfg["prior_requested"],
            **head}


# ------------------------------------------------------------------ DDS against DPS
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




def comparison_table(case) -> list[str]:
    """Markdown lines of :func:`same_slices` (for :func:`~krylearn.benchmarks.imaging.case_table`'s sections)."""
    if not case.get("same_slices"):
        return []
    f = harness.format_value
    lines = ["", "DDS vs DPS on the DPS slices (same run):", "",
             "| DDS | DPS | slices (z) | PSNR DDS / DPS | SSIM DDS / DPS | s/slice DDS / DPS | speed-up | NFE ratio |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for s in case["same_slices"]:
        lines.append(f"| {s['dds']} | {s['dps']} | {', '.join(map(str, s['slice_z']))} | "
                     f"{f(s['dds_psnr'], '.2f')} / {f(s['dps_psnr'], '.2f')} | "
                     f"{f(s['dds_ssim'], '.3f')} / {f(s['dps_ssim'], '.3f')} | "
                     f"{s['dds_seconds_per_slice']:.3g} / {s['dps_seconds_per_slice']:.3g} | "
                     f"{s['speedup']:.1f}x | {s['nfe_ratio']:.1f} |")
    return lines


def prior_lines(report) -> list[str]:
    """``Prior: <label> (<n> parameters), trained on <data>.`` when a prior was loaded."""
    p = report.get("prior")
    if not p:
        return []
    card = p.get("card") or {}
    return [f"Prior: {p['label']}" + (f" ({p['parameters']:,} parameters)" if p.get("parameters") else "")
            + (f", trained on {card['data']}" if isinstance(card.get("data"), str) else "") + "."]


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

