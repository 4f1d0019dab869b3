"""The imaging (DDS) commands of the ``krylearn`` CLI: ``reconstruct``, ``data mri|ct``, ``train diffusion``, ``bench mri|ct``.

:mod:`krylearn.cli.main` builds the parser and calls the ``add_*`` functions
here with its sub-parser groups; each command calls one recipe function
and prints its summary.
"""

from __future__ import annotations

import argparse
import json
import os

from .args import DEFAULT_OUT, floats as _floats, method_list as _method_list

__all__ = ["add_bench_parsers", "add_data_parsers", "add_reconstruct_parser", "add_train_parser"]


def _print(summary: dict) -> None:
    print(json.dumps(summary, indent=1, default=str))


# ------------------------------------------------------------------ reconstruct
def _method_opts(args) -> dict:
    return {k: v for k, v in (("lam", args.lam), ("iters", args.iters), ("rho", getattr(args, "rho", None)),
                              ("filter", getattr(args, "filter", None))) if v is not None}


def cmd_reconstruct_mri(args) -> int:
    from ..pipelines.reconstruct import reconstruct_mri

    summary = reconstruct_mri(args.input, args.output, method=args.method, nfe=args.nfe, prior=args.prior,
                              mask=args.mask, accel=args.accel, seed=args.seed, slices=args.slices,
                              gamma=args.gamma, cg_steps=args.cg_steps, eta=args.eta, device=args.device,
                              progress=not args.quiet, previews=not args.no_previews, acs=args.acs,
                              scale=args.scale, batch=args.batch, **_method_opts(args))
    _print(summary)
    return 0


def cmd_reconstruct_ct(args) -> int:
    from ..pipelines.reconstruct import reconstruct_ct

    summary = reconstruct_ct(args.input, args.output, method=args.method, nfe=args.nfe, prior=args.prior,
                             seed=args.seed, slices=args.slices, gamma=args.gamma, cg_steps=args.cg_steps,
                             eta=args.eta, device=args.device, progress=not args.quiet,
                             previews=not args.no_previews, scale=args.scale, volume=not args.no_volume,
                             **_method_opts(args))
    _print(summary)
    return 0


def _common_reconstruct(p, prior: str) -> None:
    p.add_argument("input", help="input HDF5 file")
    p.add_argument("-o", "--output", required=True, help="output HDF5 (reconstruction; a PNG preview next to it)")
    p.add_argument("--nfe", type=int, default=None, help="network calls (default 49 for dds, 1000 for dps)")
    p.add_argument("--prior", default=prior, help=f"diffusion prior: shipped name or weights path (default {prior})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--slices", default=None, help="slices to reconstruct: '3:9', '1,4,7' or '5' (default all)")
    p.add_argument("--gamma", type=_floats, default=None,
                   help="DDS data weight: (I + gamma A^H A) x = x0 + gamma A^H y (default: noiseless form)")
    p.add_argument("--cg-steps", type=int, default=5, help="CG steps per diffusion step (default 5)")
    p.add_argument("--eta", type=_floats, default=0.85, help="DDS fresh-noise fraction (default 0.85)")
    p.add_argument("--scale", type=_floats, default=None, help="image peak magnitude (default: estimated)")
    p.add_argument("--lam", type=_floats, default=None, help="regularisation weight of l1-wavelet / tv / admm-tv")
    p.add_argument("--iters", type=int, default=None, help="iterations of the classical methods")
    p.add_argument("--device", default=None)
    p.add_argument("--no-previews", action="store_true", help="no PNG preview")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def add_reconstruct_parser(sub) -> None:
    """``krylearn reconstruct mri|ct INPUT -o OUT``."""
    r = sub.add_parser("reconstruct", help="reconstruct MRI / CT files: dds, dps and classical baselines")
    rsub = r.add_subparsers(dest="modality", metavar="MODALITY")
    rm = rsub.add_parser(
        "mri", help="multi-coil MRI from a fastMRI-layout file",
        description="Reads kspace (slices, coils, ky, kx) with zeros where not sampled, an optional mask and "
                    "sensitivity_maps (else ESPIRiT on the ACS region); writes the fastMRI submission layout "
                    "(reconstruction: slices, ny, nx, float32 magnitude).")
    _common_reconstruct(rm, "dds-mri")
    rm.add_argument("--method", default="dds", choices=("dds", "dps", "cg-sense", "zero-filled", "l1-wavelet", "tv"))
    rm.add_argument("--mask", default=None, choices=("uniform1d", "gaussian1d", "poisson2d"),
                    help="undersample a fully sampled file retrospectively")
    rm.add_argument("--accel", type=_floats, default=None, help="acceleration of --mask (alone: uniform1d)")
    rm.add_argument("--acs", type=_floats, default=0.08, help="fully sampled centre fraction (default 0.08)")
    rm.add_argument("--batch", type=int, default=1, help="slices per sampler call (default 1)")
    rm.set_defaults(func=cmd_reconstruct_mri)
    rc = rsub.add_parser(
        "ct", help="parallel-beam CT from a krylearn CT file (sinogram, angles)",
        description="Reads sinogram (slices, views, det), angles and geometry attributes; several slices are "
                    "one volume (dds: 2D prior per slice + ADMM-TV along z).")
    _common_reconstruct(rc, "dds-ct")
    rc.add_argument("--method", default="dds", choices=("dds", "dps", "fbp", "admm-tv", "cg"))
    rc.add_argument("--rho", type=_floats, default=None, help="ADMM penalty of admm-tv")
    rc.add_argument("--filter", default=None, help="FBP filter (default ram-lak)")
    rc.add_argument("--no-volume", action="store_true", help="slices independently (no TV along z)")
    rc.set_defaults(func=cmd_reconstruct_ct)
    r.set_defaults(func=lambda a, _p=r: (_p.print_help(), 2)[1])


# ------------------------------------------------------------------ data
def cmd_data_mri(args) -> int:
    from ..pipelines.dds import make_data

    path = make_data("mri", args.output, split=args.split, size=args.size, seed=args.seed, accel=args.accel,
                     mask=args.mask, snr_db=None if args.no_noise else args.snr_db, coils=args.coils, acs=args.acs,
                     n_slices=args.slices, inverse_crime=args.inverse_crime, volume=args.data)
    print(f"wrote {path}")
    return 0


def cmd_data_ct(args) -> int:
    from ..pipelines.dds import make_data

    path = make_data("ct", args.output, split=args.split, size=args.size, seed=args.seed, views=args.views,
                     noise=args.noise, n_slices=args.slices, inverse_crime=args.inverse_crime, source=args.source,
                     volume=args.data)
    print(f"wrote {path}")
    return 0


def _common_data(p, size: int) -> None:
    p.add_argument("output", help="output .h5 (written atomically)")
    p.add_argument("--split", default="test", choices=("train", "val", "test"),
                   help="band of the brain volume (default test: never seen in training)")
    p.add_argument("--size", type=int, default=size, help=f"image side (default {size})")
    p.add_argument("--slices", type=int, default=None, help="number of slices (default: the whole band)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--inverse-crime", action="store_true",
                   help="simulate on the reconstruction grid (default: on a 2x finer grid, then reduce)")
    p.add_argument("--data", default=None, help="a NIfTI volume instead of the MNI152 template")


def add_data_parsers(dsub) -> None:
    """``krylearn data mri|ct OUT.h5``."""
    dm = dsub.add_parser(
        "mri", help="simulated multi-coil k-space of held-out brain slices, fastMRI layout",
        description="MNI152 T1 slices (nilearn, the 'data' extra) with a smooth phase, birdcage coil maps, an "
                    "undersampling mask and complex Gaussian noise; SNR = 20 log10(rms of the fully sampled "
                    "noiseless k-space / noise std).")
    _common_data(dm, 64)
    dm.add_argument("--accel", type=_floats, default=4.0, help="acceleration (default 4)")
    dm.add_argument("--mask", default="uniform1d", choices=("uniform1d", "gaussian1d", "poisson2d"))
    dm.add_argument("--snr-db", type=_floats, default=30.0, help="k-space SNR in dB (default 30)")
    dm.add_argument("--no-noise", action="store_true", help="noiseless k-space")
    dm.add_argument("--coils", type=int, default=8)
    dm.add_argument("--acs", type=_floats, default=0.08, help="fully sampled centre fraction (default 0.08)")
    dm.set_defaults(func=cmd_data_mri)
    dc = dsub.add_parser(
        "ct", help="simulated parallel-beam sinograms of a held-out volume (MR anatomy as attenuation)",
        description="A contiguous held-out band of the MNI152 T1 volume (or random ellipsoids) projected at "
                    "--views angles over [0, pi); written with its reference volume.")
    _common_data(dc, 128)
    dc.add_argument("--views", type=int, default=8, help="projection angles (default 8)")
    dc.add_argument("--noise", type=_floats, default=0.0,
                    help="Gaussian noise std relative to the sinogram's rms (default 0)")
    dc.add_argument("--source", default="brain", choices=("brain", "ellipsoids"))
    dc.set_defaults(func=cmd_data_ct)


# ------------------------------------------------------------------ train
def _mult(s: str) -> tuple:
    try:
        return tuple(int(v) for v in s.split(","))
    except ValueError:
        raise ValueError(f"--channel-mult must be integers separated by commas, got {s!r}") from None


def cmd_train_diffusion(args) -> int:
    from ..pipelines.dds import train_prior

    card = train_prior(args.kind, args.out, steps=args.steps, size=args.size, base=args.base,
                       channel_mult=args.channel_mult, batch_size=args.batch_size, lr=args.lr, ema_decay=args.ema,
                       warmup=args.warmup, seed=args.seed, ellipses=args.ellipses, augment=not args.no_augment,
                       checkpoint=args.checkpoint, checkpoint_every=args.checkpoint_every,
                       resume=not args.no_resume, progress=not args.quiet, device=args.device,
                       command=args.command_line, name=args.name, half=args.half,
                       volume=args.data,
                       max_seconds=None if args.max_minutes is None else 60.0 * args.max_minutes)
    if card:
        keep = ("name", "steps", "seconds", "parameters")
        _print({k: card[k] for k in keep} | card["metrics"] | {"weights": os.fspath(args.out) + ".safetensors"})
    return 0


def add_train_parser(tsub) -> None:
    """``krylearn train diffusion --kind mri|ct --out STEM``."""
    t = tsub.add_parser(
        "diffusion", help="train a DDS diffusion prior (epsilon-prediction UNet) on brain slices",
        description="VP schedule (linear beta 1e-4..0.02, T=1000), Adam with warm-up, EMA weights, resumable "
                    "checkpoints, DDP under torchrun; trains on the train band of the MNI152 volume with "
                    "augmentation, reports the held-out (val band) loss. Writes OUT.safetensors, OUT.json, "
                    "OUT-log.json and OUT-loss.png.")
    t.add_argument("--kind", default="mri", choices=("mri", "ct"),
                   help="mri: complex 64^2 slices (2 channels); ct: real 128^2 slices")
    t.add_argument("--out", required=True, help="weights stem")
    t.add_argument("--steps", type=int, default=None, help="optimiser steps (default: 9000 mri, 4800 ct)")
    t.add_argument("--size", type=int, default=None)
    t.add_argument("--base", type=int, default=None, help="UNet base channels (default 16)")
    t.add_argument("--channel-mult", type=_mult, default=None, help="e.g. 1,2,2,2")
    t.add_argument("--batch-size", type=int, default=None)
    t.add_argument("--lr", type=_floats, default=2e-4)
    t.add_argument("--ema", type=_floats, default=0.999, help="EMA decay (default 0.999)")
    t.add_argument("--warmup", type=int, default=100)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--ellipses", type=int, default=0, help="random-ellipse phantoms mixed into the training set")
    t.add_argument("--no-augment", action="store_true")
    t.add_argument("--checkpoint", default=None, help="resumable checkpoint (default OUT-checkpoint.pt)")
    t.add_argument("--checkpoint-every", type=int, default=250)
    t.add_argument("--no-resume", action="store_true")
    t.add_argument("--device", default=None)
    t.add_argument("--half", action="store_true", help="store float16 weights")
    t.add_argument("--data", default=None, help="a NIfTI volume instead of the MNI152 template")
    t.add_argument("--name", default=None, help="name in the card (default: the stem)")
    t.add_argument("--max-minutes", type=_floats, default=None,
                   help="wall-time budget: stop (and save) at the first step past it, even before --steps")
    t.add_argument("-q", "--quiet", action="store_true")
    t.set_defaults(func=cmd_train_diffusion)


# ------------------------------------------------------------------ bench
def _ints(s: str) -> list[int]:
    try:
        return [int(v) for v in s.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from None


def _snr(s: str):
    if s.strip().lower() in ("none", "inf"):
        return None
    return _floats(s)


def _imaging_options(args) -> dict:
    opts = {}
    if args.dds_gamma is not None:
        opts.setdefault("dds", {})["gamma"] = args.dds_gamma
    if args.dds_eta is not None:
        opts.setdefault("dds", {})["eta"] = args.dds_eta
    if args.dds_cg_steps is not None:
        opts.setdefault("dds", {})["cg_steps"] = args.dds_cg_steps
    if args.dps_zeta is not None:
        opts.setdefault("dps", {})["zeta"] = args.dps_zeta
    return opts


def _print_imaging(report, table) -> None:
    print(table)  # ends with the notes (e.g. a missing prior) and one "TARGET met|missed|not run" line per target
    if report.get("files"):
        f = report["files"]
        print("\nwrote " + ", ".join(x for x in [f["json"], f["table"], f["images"], *f["figures"]] if x))


def cmd_bench_mri(args) -> int:
    from ..benchmarks.mri import format_mri_table, run_mri_benchmark

    report = run_mri_benchmark(n_slices=args.slices, size=args.size, cases=args.cases, snr_db=args.snr,
                               coils=args.coils, acs=args.acs, methods=args.methods, prior=args.prior,
                               dds_nfe=args.dds_nfe, dps_nfe=args.dps_nfe, dps_count=args.dps_count,
                               options=_imaging_options(args), tune=args.tune, tune_slices=args.tune_slices,
                               seed=args.seed, warmup=not args.no_warmup, device=args.device, out_dir=args.out,
                               save_images=not args.no_images, progress=not args.quiet)
    _print_imaging(report, format_mri_table(report))
    return 0


def cmd_bench_ct(args) -> int:
    from ..benchmarks.ct import format_ct_table, run_ct_benchmark

    report = run_ct_benchmark(n_slices=args.slices, size=args.size, views=args.views, noise=args.noise,
                              methods=args.methods, prior=args.prior, dds_nfe=args.dds_nfe, dps_nfe=args.dps_nfe,
                              dps_count=args.dps_count, options=_imaging_options(args), tune=args.tune,
                              tune_slices=args.tune_slices, seed=args.seed, warmup=not args.no_warmup,
                              device=args.device, out_dir=args.out, save_images=not args.no_images,
                              progress=not args.quiet)
    _print_imaging(report, format_ct_table(report))
    return 0


def _add_imaging_common(p, *, prior, slices, size, methods, dps_count, tune_slices):
    p.add_argument("--prior", default=prior, help=f"diffusion prior name or weights path (default {prior}); "
                   "if missing, dds/dps are skipped with a note and the classical methods still run")
    p.add_argument("--slices", type=int, default=slices, help=f"held-out test slices (default {slices})")
    p.add_argument("--size", type=int, default=size, help=f"image side (default {size})")
    p.add_argument("--methods", type=_method_list, default=list(methods),
                   help=f"comma-separated (default {','.join(methods)})")
    p.add_argument("--dds-nfe", type=_ints, default=[49], help="comma-separated DDS NFEs, e.g. 19,49,99 (default 49)")
    p.add_argument("--dps-nfe", type=int, default=1000, help="DPS network calls (default 1000)")
    p.add_argument("--dps-count", type=int, default=dps_count,
                   help=f"evenly spaced slices DPS runs on (default {dps_count}); DDS/DPS compared on those")
    p.add_argument("--dds-gamma", type=_floats, default=None, help="DDS data weight (default: tuned or noiseless form)")
    p.add_argument("--dds-eta", type=_floats, default=None, help="DDS fresh-noise fraction (default 0.85)")
    p.add_argument("--dds-cg-steps", type=int, default=None, help="CG steps per DDS step (default 5)")
    p.add_argument("--dps-zeta", type=_floats, default=None, help="DPS guidance strength (default 1)")
    p.add_argument("--tune", action="store_true", help="tune lam / iterations / gamma on validation slices per case")
    p.add_argument("--tune-slices", type=int, default=tune_slices, help=f"validation slices (default {tune_slices})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up calls")
    p.add_argument("--device", default=None)
    p.add_argument("--no-images", action="store_true", help="do not write <kind>-images.h5 (all reconstructions)")
    p.add_argument("--out", default=os.path.join(DEFAULT_OUT, "dds"), help=f"results folder (default {DEFAULT_OUT}/dds)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def add_bench_parsers(bsub) -> None:
    """``krylearn bench mri|ct``."""
    bm = bsub.add_parser("mri", help="DDS vs zero-filled / CG-SENSE / L1-wavelet / TV / DPS on held-out brain MRI",
                         description="Simulated multi-coil k-space (birdcage coils, noise at --snr dB, no inverse "
                                     "crime) of held-out MNI152 test-band slices; PSNR/SSIM (skimage, magnitude / "
                                     "reference max, data_range 1) and seconds per slice; target checks printed. "
                                     "Writes mri.json, mri.md, mri-images.h5 and a figure per case.")
    _add_imaging_common(bm, prior="dds-mri", slices=8, size=64,
                        methods=("zero-filled", "cg-sense", "l1-wavelet", "tv", "dds", "dps"), dps_count=2,
                        tune_slices=2)
    bm.add_argument("--cases", type=_method_list, default=["uniform1d:4", "uniform1d:8", "poisson2d:8"],
                    help="comma-separated mask:acceleration (default uniform1d:4,uniform1d:8,poisson2d:8)")
    bm.add_argument("--snr", type=_snr, default=30.0, help="k-space SNR in dB, or 'none' (default 30)")
    bm.add_argument("--coils", type=int, default=8)
    bm.add_argument("--acs", type=_floats, default=0.08, help="fully sampled centre of 1-D masks (default 0.08)")
    bm.set_defaults(func=cmd_bench_mri)

    bc = bsub.add_parser("ct", help="3D DDS vs FBP / CG / ADMM-TV (and DPS) on a held-out brain volume",
                         description="Sparse-view parallel-beam sinograms (no inverse crime) of the MNI152 test "
                                     "band (MR anatomy as an attenuation-like map); PSNR/SSIM per slice and seconds "
                                     "per slice; target checks printed. Writes ct.json, ct.md, ct-images.h5 and a "
                                     "figure per view count.")
    _add_imaging_common(bc, prior="dds-ct", slices=8, size=128, methods=("fbp", "cg", "admm-tv", "dds"), dps_count=1,
                        tune_slices=4)
    bc.add_argument("--views", type=_ints, default=[8, 16, 32], help="comma-separated view counts (default 8,16,32)")
    bc.add_argument("--noise", type=_floats, default=0.0, help="relative sinogram noise (default 0)")
    bc.set_defaults(func=cmd_bench_ct)
