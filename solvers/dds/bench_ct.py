"""``krylearn bench ct``: 3D DDS against FBP, least-squares CG, ADMM-TV (and DPS) on a held-out brain volume.

Data (held out, simulated here, nothing downloaded)
---------------------------------------------------
The first ``n_slices`` contiguous slices of the *test* band
(:func:`krylearn.problems.brain.brain_volume`: MR T1 anatomy used as an
attenuation-like map in [0, 1], not CT numbers), projected on a grid twice
as fine by :func:`krylearn.problems.simulate.simulate_ct`
(``downsample=2``: no inverse crime), ``views`` parallel-beam angles over
[0, pi), optional relative Gaussian noise: the same data ``krylearn data
ct`` writes for the same arguments.  A *case* is a view count.  The truth
is the 2 x 2 block mean of the fine volume (the image the reconstruction
grid models).  Each method runs as one call on the whole volume, so
``dds`` is the 3D sampler (2D prior per slice, ADMM-TV along z) and
``admm-tv`` uses 3D TV; seconds per slice are the call's seconds divided
by the slices.  DPS (independent 2D slices) runs on ``dps_count`` slices
in one batched call; DDS's per-slice time comes from a call on the whole
volume (network calls batched over all slices), so on CT the DDS/DPS
speed ratio also reflects the batch sizes (the speed target is MRI's).
With ``tune=True`` the validation volume is the first ``tune_slices``
slices of the ``val`` band (seed ``seed + 1``).

Everything else (methods, timing, metrics, outputs, targets) is in
:mod:`krylearn.benchmarks.imaging`; the prior, the DDS/DPS runs and the targets in
:mod:`.bench_common`.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch

from ...benchmarks.imaging import case_table, common_footer, finish, run_case
from ...operators.ct import ParallelBeamProjector
from ...pipelines.reconstruct import run_method
from ...problems.brain import brain_volume
from ...problems.simulate import simulate_ct
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

__all__ = ["CT_BENCH_METHODS", "DEFAULT_CT_METHODS", "DEFAULT_CT_VIEWS", "format_ct_table", "run_ct_benchmark"]

#: Methods ``krylearn bench ct`` knows, in the order of the tables and figures.
CT_BENCH_METHODS = ("fbp", "cg", "admm-tv", "dds", "dps")
DEFAULT_CT_METHODS = ("fbp", "cg", "admm-tv", "dds")
DEFAULT_CT_VIEWS = (8, 16, 32)


class _CTProblem:
    """A simulated sinogram volume of one view count; ``solve`` runs a method on the volume (or a subset)."""

    magnitude = False

    def __init__(self, vol, z, *, views, noise, seed, device):
        self.sim = simulate_ct(vol, views, noise=noise, seed=seed, downsample=2)
        self.z = np.asarray(z, dtype=np.int64)
        self.reference = self.sim.reference.astype(np.float32)
        self.n = self.reference.shape[0]
        dtype = torch.float32 if torch.device(device).type == "cuda" else torch.float64
        self.P = ParallelBeamProjector(self.reference.shape[1:], self.sim.angles, n_det=self.sim.n_det,
                                       det_spacing=1.0, dtype=dtype, device=device)

    def solve(self, spec, idx, shared, seed, opts):
        """Yield once: ``(images (k, ny, nx) float32, [seconds / k] * k)`` of one call on the slices ``idx``."""
        idx = list(idx)
        x, s = run_method("ct", spec["method"], self.P, self.sim.sinogram[idx], nfe=spec["nfe"],
                          seed=seed + int(idx[0]), progress=False, **shared, **opts)
        x = np.asarray(x, dtype=np.float32).reshape((len(idx),) + self.reference.shape[1:])
        yield x, [float(s) / len(idx)] * len(idx)


def run_ct_benchmark(*, n_slices: int = 8, size: int = 128, views=DEFAULT_CT_VIEWS, noise: float = 0.0,
                     methods=DEFAULT_CT_METHODS, prior="dds-ct", dds_nfe=(49,), dps_nfe: int = 1000,
                     dps_count: int = 1, options=None, tune: bool = False, auto: bool = False, tune_slices: int = 4,
                     seed: int = 0, warmup: bool = True, device=None, volume=None, out_dir=None, save_images: bool = True,
                     progress: bool = True) -> dict:
    """Benchmark sparse-view CT reconstructions on a held-out 3-D brain volume.

    Parameters
    ----------
    n_slices : int
        The first ``n_slices`` contiguous slices of the test band (16 at most).
    size : int
        Slice side (the prior's training size for DDS, e.g. 128).
    views : int or sequence of int
        One case per view count.
    noise : float
        Relative sinogram noise (``sigma = noise * rms(sinogram)``).
    methods : sequence of str
        Subset of :data:`CT_BENCH_METHODS`.
    prior, dds_nfe, dps_nfe, dps_count, options, seed, warmup, device, volume, out_dir, save_images, progress
        As :func:`.bench_mri.run_mri_benchmark` (default prior
        ``dds-ct``, 1 channel; files ``ct.json``, ``ct.md``,
        ``ct-images.h5`` (about 4 MB per view count at 16 slices of
        128 x 128), ``ct-views-<v>.png``).
    tune : bool
        Tune CG's iterations and ADMM-TV's ``lam`` per view count on the
        validation volume.
    auto : bool
        Choose each method's options for the volume from its own data (held-out views,
        :mod:`krylearn.pipelines.parameter_choice`; seconds include it); not with ``tune``.
    tune_slices : int
        Slices of the validation volume (at most the band's 10).

    Returns
    -------
    dict (as ``ct.json``).
    """
    n_slices, size, views, noise = _check_args(n_slices, size, views, noise)
    cfg = setup("ct", methods=methods, allowed=CT_BENCH_METHODS, prior=prior, dds_nfe=dds_nfe, dps_nfe=dps_nfe,
                dps_count=dps_count, tune_slices=tune_slices, seed=seed, options=options, device=device)
    auto_options(cfg, auto, tune)
    seed = cfg["seed"]
    vol, z = brain_volume("test", 2 * size, volume=volume, return_index=True)
    if n_slices > len(z):
        raise ValueError(f"n_slices={n_slices} exceeds the {len(z)} slices of the 'test' band")
    vol, z = vol[:n_slices], z[:n_slices]
    val = None
    if tune:
        vvol, vz = brain_volume("val", 2 * size, volume=volume, return_index=True)
        k = min(cfg["tune_slices"], len(vz))
        val = (vvol[:k], vz[:k])
    dps_slices = dps_selection(cfg, n_slices)
    out_cases = [_run_ct_case(cfg, (vol, z), val, v, noise, title=f"{v} views, {n_slices}-slice volume, "
                              f"{size}x{size}, noise {noise:g}", dps_slices=dps_slices, warm=warmup and k == 0,
                              progress=progress)
                 for k, v in enumerate(views)]
    report = {
        "benchmark": "ct",
        "data": {"source": ("MNI152 2009a sym T1 (nilearn), test band, MR T1 intensity used as an attenuation-like "
                            "map in [0, 1] (not CT numbers)") if volume is None else "user volume, test band",
                 "split": "test", "size": size, "n_slices": n_slices, "slice_z": z.tolist(),
                 "geometry": "parallel beam, angles linspace(0, pi, views, endpoint=False), unit pixels and bins",
                 "noise_relative": noise,
                 "simulation": "projected on a 2x finer grid (downsample=2): no inverse crime",
                 "truth": "2x2 block mean of the fine volume (the image the reconstruction grid models)",
                 "seed": seed},
        "dps_slices": dps_slices,
        **report_head(cfg, what="real values (negative values count as errors)", tune=tune, warmup=warmup,
                      timing="seconds of one run_method call on the volume (DPS: on its slices, a smaller batch) "
                             "divided by its slices, scale estimate included"),
    }

    def extra(case):
        p = case["_problem"]
        i = min(range(p.n), key=lambda j: abs(j - (p.n - 1) / 2))
        return (f"sinogram ({case['views']} views)", p.sim.sinogram[i])

    return finish(report, out_cases, out_dir, extra, format_ct_table, save_images, targets=check_targets)


def _check_args(n_slices, size, views, noise):
    """The checked ``(n_slices, size, [views, ...], noise)``; errors name the argument."""
    n_slices = check_int("n_slices", n_slices, 1)
    size = check_int("size", size, 16)
    if isinstance(views, numbers.Integral) and not isinstance(views, bool):
        views = [views]
    if isinstance(views, str) or not hasattr(views, "__iter__"):
        raise TypeError(f"views must be an int or a sequence of ints, got {views!r}")
    views = [check_int("views", v, 1) for v in views]
    if not views:
        raise ValueError("views must name at least one view count")
    noise = check_real("noise", noise)
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    return n_slices, size, views, noise


def _run_ct_case(cfg, test, val, views, noise, *, title, dps_slices, warm, progress) -> dict:
    """One view count: project the test (and validation) volume, run every method, record."""
    (vol, z), seed, dev = test, cfg["seed"], cfg["device"]
    name = f"views-{views}"
    prob = _CTProblem(vol, z, views=views, noise=noise, seed=seed, device=dev)
    vprob = None if val is None else _CTProblem(*val, views=views, noise=noise, seed=seed + 1, device=dev)
    rows, choices = run_case(prob, cfg, specs(cfg, prob.n, dps_slices), name=name, validation=vprob, warm=warm,
                             progress=progress)
    return {
        "case": name, "views": views, "sigma": float(prob.sim.sigma), "n_det": int(prob.sim.n_det),
        "slice_z": z.tolist(),
        "tuning": None if vprob is None else {"split": "val", "slice_z": val[1].tolist(), "seed": seed + 1,
                                              "choices": choices},
        "title": title, "rows": rows, "same_slices": same_slices(rows), "_problem": prob,
        "_reference": prob.reference, "auto": bool(cfg["shared"].get("auto")), "kind": "ct",
    }


def format_ct_table(report: dict) -> str:
    """Markdown of a :func:`run_ct_benchmark` report: one table per view count, targets."""
    d = report["data"]
    lines = [(f"Sparse-view parallel-beam CT, a held-out {d['n_slices']}-slice volume (MNI z "
              f"{d['slice_z'][0]}-{d['slice_z'][-1]}) of {d['source']}, {d['size']}x{d['size']}, relative noise "
              f"{d['noise_relative']:g}; {d['simulation']}.")]
    for case in report["cases"]:
        lines += ["", f"### {case['views']} views ({case['n_det']} detector bins)", ""]
        lines += case_table(case, d["n_slices"], sections=(comparison_table,))
    lines += ["", *common_footer(report, prior_lines(report))]
    return "\n".join(lines)
