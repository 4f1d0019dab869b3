"""``krylearn bench mri``: DDS against zero-filled, CG-SENSE, L1-wavelet, TV and DPS on held-out brain slices.

Data (held out, simulated here, nothing downloaded)
---------------------------------------------------
``n_slices`` evenly spaced slices of the *test* band of the MNI152 brain
(:func:`krylearn.problems.brain.complex_brain_slices`, smooth random phase
drawn from ``seed``), made on a grid twice as fine and simulated by
:func:`krylearn.problems.simulate.simulate_mri` with ``downsample=2`` (so
no inverse crime), birdcage coils, one mask per case, complex Gaussian
k-space noise at ``snr_db`` (its definition: :mod:`krylearn.problems.simulate`):
the same data ``krylearn data mri`` writes for the same arguments.  A
*case* is a mask and an acceleration (``"uniform1d:4"``); the realised
acceleration is reported.  The truth is ``|x|`` of the object low-passed to
the reconstruction grid.  Methods run slice by slice.  With ``tune=True``
the validation slices are ``tune_slices`` slices of the ``val`` band with
their own phase, mask draw and noise (seed ``seed + 1``).

Everything else (methods, timing, metrics, outputs, targets) is in
:mod:`krylearn.benchmarks.imaging`; the prior, the DDS/DPS runs and the targets in
:mod:`.bench_common`.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ...benchmarks.imaging import case_table, common_footer, finish, run_case, spread
from ...operators.mri import SenseOperator
from ...pipelines.reconstruct import run_method
from ...problems.brain import brain_slices, complex_brain_slices
from ...problems.simulate import simulate_mri
from ...utils.checks import check_int, check_real
from .bench_common import (
    auto_options,
    check_targets,
    comparison_table,
    dps_selection,
    prior_lines,
    report_head,
    same_slices,
    setup,
    specs,
)

__all__ = ["DEFAULT_MRI_CASES", "MRI_BENCH_METHODS", "format_mri_table", "parse_case", "run_mri_benchmark"]

#: Methods ``krylearn bench mri`` knows, in the order of the tables and figures.
MRI_BENCH_METHODS = ("zero-filled", "cg-sense", "l1-wavelet", "tv", "dds", "dps")
DEFAULT_MRI_CASES = ("uniform1d:4", "uniform1d:8", "poisson2d:8")
_MASKS = ("uniform1d", "gaussian1d", "poisson2d")


def parse_case(case) -> tuple[str, float]:
    """``"uniform1d:4"`` (or ``("uniform1d", 4)``) -> ``("uniform1d", 4.0)``; errors name ``cases``."""
    if isinstance(case, str):
        parts = case.strip().split(":")
        if len(parts) != 2:
            raise ValueError(f"cases: {case!r} must look like 'uniform1d:4' (mask:acceleration)")
        mask = parts[0].strip()
        try:
            acc = float(parts[1])
        except ValueError:
            raise ValueError(f"cases: the acceleration in {case!r} is not a number") from None
    elif isinstance(case, (tuple, list)) and len(case) == 2:
        mask, acc = case
    else:
        raise ValueError(f"cases: {case!r} must be 'mask:acceleration' or a (mask, acceleration) pair")
    if mask not in _MASKS:
        raise ValueError(f"cases: mask {mask!r} must be one of {', '.join(_MASKS)}")
    if not isinstance(acc, numbers.Real) or isinstance(acc, bool) or not math.isfinite(acc) or acc < 1:
        raise ValueError(f"cases: the acceleration in {case!r} must be a finite number >= 1")
    return str(mask), float(acc)


class _MRIProblem:
    """Simulated multi-coil slices of one case; ``solve`` runs a method slice by slice."""

    magnitude = True

    def __init__(self, x, z, *, mask, accel, coils, acs, snr_db, seed, device):
        self.sim = simulate_mri(x, coils, mask=mask, accel=accel, acs=acs, snr_db=snr_db, seed=seed, downsample=2)
        self.z = np.asarray(z, dtype=np.int64)
        self.reference = np.abs(self.sim.image).astype(np.float32)
        self.mask_f = np.asarray(self.sim.mask, dtype=np.float32)
        self.device = device
        self.n = self.reference.shape[0]

    def solve(self, spec, idx, shared, seed, opts):
        """Yield ``(images (1, ny, nx) float32 magnitude, [seconds])`` per slice of ``idx``."""
        for i in idx:
            A = SenseOperator(self.sim.maps[i], self.mask_f).to(self.device)
            x, s = run_method("mri", spec["method"], A, self.sim.kspace[i], nfe=spec["nfe"], seed=seed + int(i),
                              progress=False, **shared, **opts)
            yield np.abs(x).astype(np.float32)[None], [float(s)]


def _load(split, size, k, seed, volume, name):
    """``k`` evenly spaced complex slices of a band (as ``write_mri_testset``): ``(x (k, 2s, 2s), z (k,))``."""
    x, z = complex_brain_slices(split, 2 * size, seed=seed, volume=volume, return_index=True)
    _, z_out = brain_slices(split, size, volume=volume, return_index=True)  # foreground rule on the output grid
    keep = np.isin(z, z_out)
    x, z = x[keep], z[keep]
    if k > len(z):
        raise ValueError(f"{name}={k} exceeds the {len(z)} slices of the {split!r} band at {size}x{size}")
    sel = spread(len(z), k)
    return x[sel], z[sel]


def run_mri_benchmark(*, n_slices: int = 8, size: int = 64, cases=DEFAULT_MRI_CASES, snr_db=30.0, coils: int = 8,
                      acs: float = 0.08, methods=MRI_BENCH_METHODS, prior="dds-mri", dds_nfe=(49,),
                      dps_nfe: int = 1000, dps_count: int = 2, options=None, tune: bool = False, auto: bool = False,
                      tune_slices: int = 2, seed: int = 0, warmup: bool = True, device=None, volume=None,
                      out_dir=None, save_images: bool = True, progress: bool = True) -> dict:
    """Benchmark MRI reconstructions on held-out simulated multi-coil brain slices.

    Parameters
    ----------
    n_slices : int
        Evenly spaced slices of the test band (16 at 64 x 64).
    size : int
        Image side (the prior's training size for DDS, e.g. 64).
    cases : str or sequence of str or (mask, accel)
        ``"uniform1d:4"``, ``"uniform1d:8"``, ``"poisson2d:8"``, ...
    snr_db : float or None
        k-space SNR in dB; None: noiseless.
    coils, acs
        Birdcage coils; fully sampled centre fraction of the 1-D masks.
    methods : sequence of str
        Subset of :data:`MRI_BENCH_METHODS`.
    prior : name, path or denoiser
        For dds/dps (2 channels); a missing one is a note and a warning, and dds/dps
        are skipped.  ``"auto"`` (with ``auto``): DDS chooses the prior per scan.
    dds_nfe : int or sequence of int
        DDS runs (labels ``dds-<nfe>``); 49 is the targets'.
    dps_nfe, dps_count : int
        DPS network calls and the number of evenly spaced slices it runs on.
    options : dict, optional
        ``method -> run_method options`` (e.g. ``{"dds": {"eta": 0.5}}``);
        an option given here is not tuned.
    tune : bool
        Pick options per case on validation slices (see the module notes).
    auto : bool
        Choose each method's options per slice from its own data (:mod:`krylearn.pipelines.parameter_choice`;
        seconds include it); not with ``tune``.
    tune_slices : int
    seed : int
        Phase, masks, noise; the sampler seed of slice ``i`` is ``seed + i``.
    warmup : bool
        One untimed reduced call per method first.
    device : str, optional
        Default CUDA when available (sigpy's methods run on CPU).
    volume : path or array, optional
        A brain volume instead of the MNI152 template.
    out_dir : str or Path, optional
        Where ``mri.json``, ``mri.md``, ``mri-images.h5`` and
        ``mri-<case>.png`` go; None writes nothing.
    save_images : bool
        Write ``mri-images.h5`` (every reconstruction, float32; about
        0.5 MB per case at 16 slices of 64 x 64).
    progress : bool

    Returns
    -------
    dict (as ``mri.json``): ``data``, ``normalisation``, ``prior``,
    ``skipped``, ``notes``, ``dps_slices``, ``cases`` (``rows`` with
    per-slice metrics and seconds, ``same_slices``, ``tuning``),
    ``targets``, ``machine``, ``files``.
    """
    n_slices, size, parsed, snr_db, coils, acs = _check_args(n_slices, size, cases, snr_db, coils, acs)
    cfg = setup("mri", methods=methods, allowed=MRI_BENCH_METHODS, prior=prior, dds_nfe=dds_nfe, dps_nfe=dps_nfe,
                dps_count=dps_count, tune_slices=tune_slices, seed=seed, options=options, device=device)
    auto_options(cfg, auto, tune)
    seed = cfg["seed"]
    x, z = _load("test", size, n_slices, seed, volume, "n_slices")
    val = _load("val", size, cfg["tune_slices"], seed + 1, volume, "tune_slices") if tune else None
    dps_slices = dps_selection(cfg, n_slices)
    sim = {"coils": coils, "acs": acs, "snr_db": snr_db, "device": cfg["device"]}
    out_cases = [_run_mri_case(cfg, (x, z), val, mask, accel, sim, size=size, dps_slices=dps_slices,
                               warm=warmup and k == 0, progress=progress)
                 for k, (mask, accel) in enumerate(parsed)]
    report = {
        "benchmark": "mri",
        "data": _data_record(volume, size=size, n_slices=n_slices, z=z, seed=seed, **sim),
        "dps_slices": dps_slices,
        **report_head(cfg, what="magnitude images", tune=tune, warmup=warmup,
                      timing="seconds per slice of run_method (scale estimate included), slice by slice"),
    }
    return finish(report, out_cases, out_dir, _mask_panel, format_mri_table, save_images, targets=check_targets)


def _mask_panel(case):
    """The figure's panel under the truth: the case's sampling mask."""
    m = np.asarray(case["_problem"].sim.mask, dtype=np.float32)
    size = case["_problem"].reference.shape[-1]
    return (f"mask (R = {case['acceleration']:.2f})", np.broadcast_to(m, (size, size)))


def _data_record(volume, *, size, n_slices, z, coils, acs, snr_db, seed, device) -> dict:
    """The report's ``data``: what was simulated and how."""
    return {"source": "MNI152 2009a sym T1 (nilearn), test band" if volume is None else "user volume, test band",
            "split": "test", "size": size, "n_slices": n_slices, "slice_z": z.tolist(), "coils": coils,
            "maps": "birdcage (normalised to sum |S|^2 = 1)", "acs": acs, "snr_db": snr_db,
            "snr_definition": "20 log10(rms(fully sampled noiseless k-space) / sigma), see krylearn.problems.simulate",
            "simulation": "complex images on a 2x finer grid, k-space cropped (downsample=2): no inverse crime",
            "truth": "|x| of the object low-passed to the reconstruction grid", "seed": seed}


def _check_args(n_slices, size, cases, snr_db, coils, acs):
    """The checked ``(n_slices, size, [(mask, accel), ...], snr_db, coils, acs)``; errors name the argument."""
    n_slices = check_int("n_slices", n_slices, 1)
    size = check_int("size", size, 16)
    parsed = [parse_case(c) for c in ([cases] if isinstance(cases, str) else cases)]
    if not parsed:
        raise ValueError("cases must name at least one case, e.g. 'uniform1d:4'")
    if snr_db is not None:
        snr_db = check_real("snr_db", snr_db)
    coils = check_int("coils", coils, 1)
    acs = check_real("acs", acs)
    if not 0 <= acs < 1:
        raise ValueError(f"acs must lie in [0, 1), got {acs}")
    return n_slices, size, parsed, snr_db, coils, acs


def _run_mri_case(cfg, test, val, mask, accel, sim, *, size, dps_slices, warm, progress) -> dict:
    """One case (mask, acceleration): simulate the test (and validation) slices, run every method, record."""
    (x, z), seed, coils, snr_db = test, cfg["seed"], sim["coils"], sim["snr_db"]
    name = f"{mask}-x{accel:g}"
    prob = _MRIProblem(x, z, mask=mask, accel=accel, seed=seed, **sim)
    vprob = None if val is None else _MRIProblem(*val, mask=mask, accel=accel, seed=seed + 1, **sim)
    rows, choices = run_case(prob, cfg, specs(cfg, prob.n, dps_slices), name=name, validation=vprob, warm=warm,
                             progress=progress)
    return {
        "case": name, "mask": mask, "accel_requested": accel, "acceleration": float(prob.sim.acceleration),
        "sigma": float(prob.sim.sigma), "snr_db": snr_db, "slice_z": z.tolist(),
        "tuning": None if vprob is None else {"split": "val", "slice_z": val[1].tolist(), "seed": seed + 1,
                                              "choices": choices},
        "title": (f"{mask} R={prob.sim.acceleration:.2f}, {coils} coils, "
                  f"SNR {'inf' if snr_db is None else f'{snr_db:g}'} dB, {size}x{size}"),
        "rows": rows, "same_slices": same_slices(rows), "auto": bool(cfg["shared"].get("auto")), "kind": "mri",
        "_problem": prob, "_reference": prob.reference,
    }


def format_mri_table(report: dict) -> str:
    """Markdown of a :func:`run_mri_benchmark` report: one table per case, DDS/DPS comparison, targets."""
    d = report["data"]
    snr = "noiseless" if d["snr_db"] is None else f"SNR {d['snr_db']:g} dB"
    zs = ", ".join(map(str, d["slice_z"]))
    lines = [(f"Multi-coil MRI, {d['n_slices']} held-out slices (MNI z {zs}) of {d['source']}, "
              f"{d['size']}x{d['size']}, {d['coils']} birdcage coils, {snr}; {d['simulation']}.")]
    for case in report["cases"]:
        head = f"### {case['case']}: realised R = {case['acceleration']:.2f}, noise sigma {case['sigma']:.3g}"
        lines += ["", head, ""]
        lines += case_table(case, d["n_slices"], sections=(comparison_table,))
    lines += ["", *common_footer(report, prior_lines(report))]
    return "\n".join(lines)
