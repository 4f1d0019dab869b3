"""Per-scan parameter choice (``--auto``) against the defaults, on images from outside the template and inside it.

Image sets (nothing downloaded):

* ``epi``: real EPI brain slices (T2*-weighted, 128 x 96, 2 mm) from the
  ``example4d.nii.gz`` file of nibabel's test data: a real scan, another
  contrast and another subject than the MNI152 T1 template the priors
  were trained on;
* ``photo``: grey-level photographs from scikit-image (camera, moon, coins,
  astronaut): far from any MR or CT image;
* ``brain``: the template's own test band (the priors' distribution);
* ``val-brain``, ``val-photo``: validation sets for choosing between priors
  (the template's val band; crops of the two sample images that the broad
  corpus holds out for validation, :data:`krylearn.problems.broad_images.VAL_IMAGES`).

MRI: 8 birdcage coils, uniform column mask x4 / x8 (8% centre), 30 dB
complex noise, k-space simulated on a 2x finer grid (no inverse crime),
64 x 64, a smooth random phase.  CT: 128 x 128, parallel beam, 8 / 16 views,
simulated on a 2x finer grid, no noise.

Each method runs with its defaults and with its options chosen per scan
by :func:`krylearn.pipelines.parameter_choice.choose_options` (3 folds;
nothing about the reference is used).  PSNR (dB) against the reference,
data range its maximum, as ``krylearn bench mri|ct``.

Run: ``OMP_NUM_THREADS=1 python benchmarks/scripts/dds_auto.py mri|ct [--sets epi,photo,brain]
[--count K] [--out benchmarks/results/dds-auto] [--prior NAME_OR_PATH] [--methods dds]
[--baselines-from OLD.json]``.  ``--baselines-from`` copies the rows of the
methods not run from an earlier report of the same sets (the classical
methods do not depend on the prior, and every draw is seeded).
"""

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from skimage import color, data, transform

from krylearn.operators.ct import ParallelBeamProjector
from krylearn.operators.mri import SenseOperator
from krylearn.pipelines.parameter_choice import choose_options
from krylearn.pipelines.reconstruct import run_reconstruction
from krylearn.problems.brain import complex_brain_slices, ct_slices
from krylearn.problems.broad_images import VAL_IMAGES, natural_image
from krylearn.problems.phase import smooth_phase
from krylearn.problems.simulate import simulate_ct, simulate_mri
from krylearn.solvers.imaging import psnr
from krylearn.solvers.reconstructors import setup
from krylearn.utils.atomic import atomic_write_text, save_figure

PHOTOS = ("camera", "moon", "coins", "astronaut")
EPI_Z = (4, 7, 10, 13, 16, 19)
METHODS = {"mri": ("cg-sense", "l1-wavelet", "tv", "dds"), "ct": ("cg", "admm-tv", "dds")}


def _square(im, size):
    h, w = im.shape
    s = max(h, w)
    canvas = np.zeros((s, s))
    canvas[(s - h) // 2:(s - h) // 2 + h, (s - w) // 2:(s - w) // 2 + w] = im
    return np.clip(transform.resize(canvas, (size, size), anti_aliasing=True), 0, None)


def _centre_square(im):
    h, w = im.shape
    s = min(h, w)
    return im[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]


def epi_slices(size):
    """Real EPI slices, padded to square, ``(k, size, size)`` in [0, ~1]."""
    import nibabel as nib
    path = Path(nib.__file__).parent / "tests" / "data" / "example4d.nii.gz"
    vol = np.asarray(nib.load(str(path)).dataobj[..., 0], dtype=np.float64)
    out = np.stack([_square(vol[:, :, z].T[::-1], size) for z in EPI_Z])
    return out / np.percentile(out[out > 0], 99.9)


def photo_slices(size):
    out = []
    for name in PHOTOS:
        im = getattr(data, name)()
        im = color.rgb2gray(im[..., :3]) if im.ndim == 3 else im.astype(np.float64)
        out.append(_square(_centre_square(im), size))
    out = np.stack(out)
    return out / np.percentile(out, 99.9, axis=(1, 2), keepdims=True)


def val_photo_slices(size):
    """Two squares of each validation sample image: the centre square and its top-left quarter."""
    out = []
    for name in VAL_IMAGES:
        sq = _centre_square(natural_image(name))
        s = sq.shape[0]
        out += [_square(sq, size), _square(sq[:s // 2, :s // 2], size)]
    out = np.stack(out)
    return out / np.percentile(out, 99.9, axis=(1, 2), keepdims=True)


def images(name, kind, size):
    """The set ``name`` on the simulation grid (twice ``size``): real ``(k, 2 size, 2 size)``, or complex for MRI."""
    if name in ("brain", "val-brain"):
        split = "test" if name == "brain" else "val"
        if kind == "mri":
            x = complex_brain_slices(split, 2 * size, seed=0)
            return x[np.linspace(0, len(x) - 1, 6).round().astype(int)]
        x = ct_slices(split, 2 * size)
        return x[np.linspace(0, len(x) - 1, 6).round().astype(int)]
    x = {"epi": epi_slices, "photo": photo_slices, "val-photo": val_photo_slices}[name](2 * size)
    if kind == "mri":
        x = x * np.exp(1j * smooth_phase(len(x), x.shape[1:], seed=5))
    return x


def problems(kind, name, level, size, count=None):
    """``[(A, y, reference)]`` per slice of set ``name`` at acceleration / view count ``level`` (``count``: evenly spaced)."""
    x = images(name, kind, size)
    if count is not None and count < len(x):
        x = x[np.linspace(0, len(x) - 1, count).round().astype(int)]
    if kind == "mri":
        sim = simulate_mri(x, 8, mask="uniform1d", accel=level, snr_db=30, seed=1, downsample=2)
        ref = np.abs(sim.image)
        m = sim.mask.astype(np.float32)
        return [(SenseOperator(sim.maps[i], m), sim.kspace[i], ref[i]) for i in range(len(x))]
    sim = simulate_ct(x, int(level), seed=1, downsample=2)
    P = ParallelBeamProjector(sim.reference.shape[1:], sim.angles, n_det=sim.n_det)
    return [(P, sim.sinogram[i], sim.reference[i]) for i in range(len(x))]


def _old_rows(path, methods):
    """Rows of the methods not in ``methods`` from an earlier report, keyed by (set, level, slice, method)."""
    if path is None:
        return {}
    rows = json.loads(Path(path).read_text())["rows"]
    return {(r["set"], r["level"], r["slice"], r["method"]): r for r in rows if r["method"] not in methods}


def run(kind, sets, levels, size, out, count=None, prior=None, methods=None, baselines_from=None):
    rows = []
    methods = METHODS[kind] if methods is None else methods
    recs = {m: setup(m, kind, **({"prior": prior} if m == "dds" and prior else {})) for m in methods}
    old = _old_rows(baselines_from, methods)
    for name in sets:
        for level in levels:
            for i, (A, y, ref) in enumerate(problems(kind, name, level, size, count)):
                for m in METHODS[kind]:
                    if m not in recs:
                        if (name, level, i, m) not in old:
                            raise SystemExit(f"--baselines-from has no row for {name} {level} slice {i} {m}")
                        rows.append(old[(name, level, i, m)])
                        continue
                    rec = recs[m]
                    x, s = run_reconstruction(rec, A, y, seed=i)
                    t0 = time.perf_counter()
                    ch = choose_options(rec, A, y, seed=i)
                    xa, sa = run_reconstruction(ch.reconstructor, A, y, seed=i)
                    rows.append({"set": name, "level": level, "slice": i, "method": m,
                                 "psnr_default": psnr(x, ref), "psnr_auto": psnr(xa, ref),
                                 "seconds_default": s, "seconds_auto": time.perf_counter() - t0,
                                 "choice": ch.record()})
                    print(f"{name} {level} {i} {m}: default {rows[-1]['psnr_default']:.2f} "
                          f"auto {rows[-1]['psnr_auto']:.2f} {ch.options}", flush=True)
    report = {"kind": kind, "size": size, "levels": list(levels), "rows": rows, "prior": prior,
              "baselines_from": baselines_from,
              "command": " ".join(sys.argv), "machine": platform.processor() or platform.machine(),
              "torch": torch.__version__, "threads": torch.get_num_threads()}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / f"{kind}.json", json.dumps(report, indent=1))
    atomic_write_text(out / f"{kind}.md", table(report))
    figure(report, out / f"{kind}.png")
    print(table(report))


def table(report) -> str:
    kind, rows = report["kind"], report["rows"]
    unit = "x" if kind == "mri" else " views"
    lines = [f"PSNR (dB), mean over slices: default / chosen per scan (`{report['command']}`)", "",
             "| set | " + ("accel" if kind == "mri" else "views") + " | "
             + " | ".join(METHODS[kind]) + " | DDS auto - best other auto | slices with DDS auto < CG |",
             "|---|---:|" + "---:|" * (len(METHODS[kind]) + 2)]
    for name in dict.fromkeys(r["set"] for r in rows):
        for level in report["levels"]:
            sel = [r for r in rows if r["set"] == name and r["level"] == level]
            if not sel:
                continue
            mean = {m: (np.mean([r["psnr_default"] for r in sel if r["method"] == m]),
                        np.mean([r["psnr_auto"] for r in sel if r["method"] == m])) for m in METHODS[kind]}
            best = max(v[1] for m, v in mean.items() if m != "dds")
            cg = METHODS[kind][0]
            per = {(r["slice"], r["method"]): r for r in sel}
            worse = sum(per[(i, "dds")]["psnr_auto"] < per[(i, cg)]["psnr_default"]
                        for i in {r["slice"] for r in sel})
            lines.append(f"| {name} | {level:g}{unit} | " + " | ".join(f"{d:.2f} / {a:.2f}" for d, a in mean.values())
                         + f" | {mean['dds'][1] - best:+.2f} | {worse} of {len(sel) // len(METHODS[kind])} |")
    return "\n".join(lines) + "\n"


def figure(report, path) -> None:
    """Mean PSNR per (set, level): each method with its defaults (light) and chosen per scan (dark)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    kind, rows = report["kind"], report["rows"]
    groups = [(s, lv) for s in dict.fromkeys(r["set"] for r in rows) for lv in report["levels"]]
    methods = METHODS[kind]
    fig, ax = plt.subplots(figsize=(1.6 * len(groups) + 2, 3.6))
    w = 0.8 / (2 * len(methods))
    for j, m in enumerate(methods):
        for k, key in enumerate(("psnr_default", "psnr_auto")):
            vals = [np.mean([r[key] for r in rows if (r["set"], r["level"], r["method"]) == (s, lv, m)])
                    for s, lv in groups]
            ax.bar(np.arange(len(groups)) + (2 * j + k - len(methods) + 0.5) * w, vals, w, color=f"C{j}",
                   alpha=0.45 if k == 0 else 1.0, label=f"{m} ({'defaults' if k == 0 else 'per scan'})")
    ax.set_xticks(np.arange(len(groups)))
    ax.set_xticklabels([f"{s}\n{lv:g}{'x' if kind == 'mri' else ' views'}" for s, lv in groups])
    lo = min(min(r["psnr_default"], r["psnr_auto"]) for r in rows)
    ax.set_ylim(lo - 2, None)
    ax.set_ylabel("PSNR (dB), mean over slices")
    ax.set_title(f"{kind.upper()}: options as shipped against options chosen per scan (cross-validation)")
    ax.legend(fontsize=7, ncol=len(methods), loc="upper right")
    save_figure(fig, path)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("kind", choices=("mri", "ct"))
    p.add_argument("--sets", default="epi,photo,brain")
    p.add_argument("--levels", default=None, help="accelerations (mri, default 4,8) or view counts (ct, default 8,16)")
    p.add_argument("--out", default="benchmarks/results/dds-auto")
    p.add_argument("--count", type=int, default=None, help="evenly spaced slices per set (default all)")
    p.add_argument("--prior", default=None, help="DDS prior: a shipped name or a weights path (default: shipped)")
    p.add_argument("--methods", default=None, help="methods to run, comma-separated (default all)")
    p.add_argument("--baselines-from", default=None, help="earlier report JSON for the methods not run")
    a = p.parse_args()
    levels = [float(v) for v in (a.levels or ("4,8" if a.kind == "mri" else "8,16")).split(",")]
    methods = None if a.methods is None else tuple(a.methods.split(","))
    run(a.kind, a.sets.split(","), levels, 64 if a.kind == "mri" else 128, Path(a.out), a.count, a.prior, methods,
        a.baselines_from)


if __name__ == "__main__":
    main()
