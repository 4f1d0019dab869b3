"""DDS's CLI subcommands: ``krylearn train diffusion``, ``krylearn bench mri|ct``.

Declared in :mod:`.method` (``commands="commands:add_commands"``); the CLI
calls :func:`add_commands` with its verbs' subparsers.  ``krylearn
reconstruct`` and ``krylearn data mri|ct`` serve every reconstruction method
and live in :mod:`krylearn.cli.reconstruct`.
"""

from __future__ import annotations

import argparse
import json
import os

from ...cli.args import DEFAULT_OUT, device, floats, int_list, method_list
from .bench_ct import CT_BENCH_METHODS, DEFAULT_CT_METHODS, format_ct_table, run_ct_benchmark
from .bench_mri import DEFAULT_MRI_CASES, MRI_BENCH_METHODS, format_mri_table, run_mri_benchmark
from .recipe import train_prior

__all__ = ["add_commands"]


def _print(summary: dict) -> None:
    print(json.dumps(summary, indent=1, default=str))


# ------------------------------------------------------------------ train
def _mult(s: str) -> tuple:
    try:
        return tuple(int(v) for v in s.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, e.g. 1,2,2,2, got {s!r}") from None


def _axes(s: str) -> tuple:
    names = ("axial", "coronal", "sagittal")
    axes = names if s.strip() == "all" else tuple(a.strip() for a in s.split(","))
    if not axes or any(a not in names for a in axes):
        raise argparse.ArgumentTypeError(f"expected names of {','.join(names)} separated by commas, or all; "
                                         f"got {s!r}")
    return axes


def cmd_train_diffusion(args) -> int:
    card = train_prior(args.kind, args.out, steps=args.steps, size=args.size, base=args.base,
                       channel_mult=args.channel_mult, batch_size=args.batch_size, lr=args.lr, ema_decay=args.ema_decay,
                       warmup=args.warmup, seed=args.seed, ellipses=args.ellipses, augment=not args.no_augment,
                       checkpoint=args.checkpoint, checkpoint_every=args.checkpoint_every,
                       resume=not args.no_resume, progress=not args.quiet, device=args.device,
                       command=args.command_line, name=args.name, half=args.half, data=args.data,
                       val_fraction=args.val_fraction, h5_key=args.h5_key, axes=args.axes,
                       min_foreground=args.min_foreground, corpus=args.corpus,
                       max_minutes=args.max_minutes)
    if card:
        keep = ("name", "steps", "seconds", "parameters")
        _print({k: card[k] for k in keep} | card["metrics"] | {"weights": os.fspath(args.out) + ".safetensors"})
    return 0


def add_train_parser(tsub) -> None:
    """``krylearn train diffusion --kind mri|ct --out STEM``."""
    t = tsub.add_parser(
        "diffusion", help="train a DDS diffusion prior (epsilon-prediction UNet) on brain slices or your images",
        description="VP schedule (linear beta 1e-4..0.02, T=1000), Adam with warm-up, EMA weights, resumable "
                    "checkpoints, DDP under torchrun; trains on the train band of the MNI152 volume with "
                    "augmentation, reports the held-out (val band) loss. With --data it trains on your files "
                    "instead (fastMRI .h5 k-space, DICOM series, NIfTI, HDF5 image stacks; files or folders), "
                    "streamed from disk, whole volumes held out for validation (docs/dds-training-data.md). "
                    "Writes OUT.safetensors, OUT.json, OUT-log.json and OUT-loss.png.")
    t.add_argument("--kind", default="mri", choices=("mri", "ct"),
                   help="mri: complex 64^2 slices (2 channels); ct: real 128^2 slices (default mri)")
    t.add_argument("--out", required=True, help="weights stem")
    t.add_argument("--steps", type=int, default=None, help="optimiser steps (default: 9000 mri, 4800 ct)")
    t.add_argument("--size", type=int, default=None, help="image side (default: 64 mri, 128 ct)")
    t.add_argument("--base", type=int, default=None, help="UNet base channels (default 16)")
    t.add_argument("--channel-mult", type=_mult, default=None,
                   help="UNet width per level, e.g. 1,2,2,2 (default: 1,2,2,2 mri, 1,2,2,2,2 ct)")
    t.add_argument("--batch-size", type=int, default=None, help="global batch (default: 16 mri, 8 ct)")
    t.add_argument("--lr", type=floats, default=2e-4, help="Adam learning rate (default 2e-4)")
    t.add_argument("--ema", dest="ema_decay", type=floats, default=0.999, help="EMA decay (default 0.999)")
    t.add_argument("--warmup", type=int, default=100, help="linear learning-rate warm-up steps (default 100)")
    t.add_argument("--seed", type=int, default=0, help="weights, batches, noise, augmentation (default 0)")
    t.add_argument("--ellipses", type=int, default=0,
                   help="random-ellipse phantoms mixed into the training set (default 0; with --corpus broad, "
                        "0 keeps its 60)")
    t.add_argument("--corpus", default="template", choices=("template", "broad"),
                   help="built-in training set: template (the MNI152 train band) or broad (the template plus "
                        "random contrasts, coronal/sagittal views, sample photographs and phantoms; "
                        "krylearn.problems.broad_images); not with --data (default template)")
    t.add_argument("--no-augment", action="store_true", help="no brain augmentation")
    t.add_argument("--checkpoint", default=None, help="resumable checkpoint (default OUT-checkpoint.pt)")
    t.add_argument("--checkpoint-every", type=int, default=250, help="steps between checkpoints (default 250)")
    t.add_argument("--no-resume", action="store_true", help="start over instead of resuming the checkpoint")
    t.add_argument("--device", type=device, default=None, help="torch device (default: CUDA when available)")
    t.add_argument("--half", action="store_true", help="store float16 weights")
    t.add_argument("--data", nargs="+", default=None, metavar="PATH",
                   help="train on these files or folders instead of the MNI152 template: fastMRI .h5 (fully "
                        "sampled k-space), DICOM series (.dcm), NIfTI (.nii, .nii.gz), HDF5 image stacks; one "
                        "NIfTI file alone is split by axial bands as before")
    t.add_argument("--val-fraction", type=floats, default=0.1,
                   help="with --data: share of the volumes (files, DICOM series) held out for validation, at "
                        "least one; 0: no validation (default 0.1)")
    t.add_argument("--h5-key", default=None,
                   help="with --data: the HDF5 dataset of the image stacks (default: kspace for fastMRI files, "
                        "else the only (N, H, W) float dataset)")
    t.add_argument("--axes", type=_axes, default=("axial",),
                   help="with --data: NIfTI slicing axes, comma-separated of axial,coronal,sagittal, or all "
                        "(default axial)")
    t.add_argument("--min-foreground", type=floats, default=0.1,
                   help="with --data: skip slices whose pixels above 0.1 (after normalisation) cover less than "
                        "this share (default 0.1)")
    t.add_argument("--name", default=None, help="name in the card (default: the stem)")
    t.add_argument("--max-minutes", type=floats, default=None,
                   help="wall-time budget: stop (and save) at the first step past it, even before --steps "
                        "(default: none)")
    t.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train_diffusion)


# ------------------------------------------------------------------ bench
def _snr(s: str):
    if s.strip().lower() in ("none", "inf"):
        return None
    return floats(s)


def _imaging_options(args) -> dict:
    opts = {}
    for method, key, value in (("dds", "gamma", args.dds_gamma), ("dds", "eta", args.dds_eta),
                               ("dds", "cg_steps", args.dds_cg_steps), ("dps", "zeta", args.dps_zeta)):
        if value is not None:
            opts.setdefault(method, {})[key] = value
    return opts


def _print_imaging(report, table) -> None:
    print(table)  # ends with the notes (e.g. a missing prior) and one "TARGET met|missed|not run" line per target
    if report.get("files"):
        f = report["files"]
        print("\nwrote " + ", ".join(x for x in [f["json"], f["table"], f["images"], *f["figures"]] if x))


def _common(args) -> dict:
    """The keyword arguments both benchmarks take, from the flags they share."""
    return dict(n_slices=args.slices, size=args.size, methods=args.methods, prior=args.prior, dds_nfe=args.dds_nfe,
                dps_nfe=args.dps_nfe, dps_count=args.dps_count, options=_imaging_options(args), tune=args.tune,
                auto=args.auto, tune_slices=args.tune_slices, seed=args.seed, warmup=not args.no_warmup,
                device=args.device, out_dir=args.out, save_images=not args.no_images, progress=not args.quiet)


def cmd_bench_mri(args) -> int:
    report = run_mri_benchmark(cases=args.cases, snr_db=args.snr, coils=args.coils, acs=args.acs, **_common(args))
    _print_imaging(report, format_mri_table(report))
    return 0


def cmd_bench_ct(args) -> int:
    report = run_ct_benchmark(views=args.views, noise=args.noise, **_common(args))
    _print_imaging(report, format_ct_table(report))
    return 0


def _add_imaging_common(p, *, prior, slices, size, methods, known, dps_count, tune_slices):
    p.add_argument("--prior", default=prior, help=f"diffusion prior name or weights path (default {prior}); "
                   "if missing, dds/dps are skipped with a note and the classical methods still run; 'auto' "
                   "(with --auto): DDS chooses among the shipped priors per scan")
    p.add_argument("--slices", type=int, default=slices, help=f"held-out test slices (default {slices})")
    p.add_argument("--size", type=int, default=size, help=f"image side (default {size})")
    p.add_argument("--methods", type=method_list, default=list(methods),
                   help=f"comma-separated, of {','.join(known)} (default {','.join(methods)})")
    p.add_argument("--dds-nfe", type=int_list, default=[49],
                   help="comma-separated DDS NFEs, e.g. 19,49,99 (default 49)")
    p.add_argument("--dps-nfe", type=int, default=1000, help="DPS network calls (default 1000)")
    p.add_argument("--dps-count", type=int, default=dps_count,
                   help=f"evenly spaced slices DPS runs on (default {dps_count}); DDS/DPS compared on those")
    p.add_argument("--dds-gamma", type=floats, default=None, help="DDS data weight (default: tuned or noiseless form)")
    p.add_argument("--dds-eta", type=floats, default=None, help="DDS fresh-noise fraction (default 0.85)")
    p.add_argument("--dds-cg-steps", type=int, default=None, help="CG steps per DDS step (default 5)")
    p.add_argument("--dps-zeta", type=floats, default=None, help="DPS guidance strength (default 1)")
    p.add_argument("--tune", action="store_true", help="tune lam / iterations / gamma on validation slices per case")
    p.add_argument("--auto", action="store_true",
                   help="choose every method's options per scan by cross-validation on held-out measurements")
    p.add_argument("--tune-slices", type=int, default=tune_slices, help=f"validation slices (default {tune_slices})")
    p.add_argument("--seed", type=int, default=0, help="phases, masks, noise, samplers (default 0)")
    p.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up calls")
    p.add_argument("--device", type=device, default=None, help="torch device (default: CUDA when available)")
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
    _add_imaging_common(bm, prior="dds-mri", slices=8, size=64, methods=MRI_BENCH_METHODS, known=MRI_BENCH_METHODS,
                        dps_count=2, tune_slices=2)
    bm.add_argument("--cases", type=method_list, default=list(DEFAULT_MRI_CASES),
                    help=f"comma-separated mask:acceleration (default {','.join(DEFAULT_MRI_CASES)})")
    bm.add_argument("--snr", type=_snr, default=30.0, help="k-space SNR in dB, or 'none' (default 30)")
    bm.add_argument("--coils", type=int, default=8, help="birdcage coils (default 8)")
    bm.add_argument("--acs", type=floats, default=0.08, help="fully sampled centre of 1-D masks (default 0.08)")
    bm.set_defaults(func=cmd_bench_mri)

    bc = bsub.add_parser("ct", help="3D DDS vs FBP / CG / ADMM-TV (and DPS) on a held-out brain volume",
                         description="Sparse-view parallel-beam sinograms (no inverse crime) of the MNI152 test "
                                     "band (MR anatomy as an attenuation-like map); PSNR/SSIM per slice and seconds "
                                     "per slice; target checks printed. Writes ct.json, ct.md, ct-images.h5 and a "
                                     "figure per view count.")
    _add_imaging_common(bc, prior="dds-ct", slices=8, size=128, methods=DEFAULT_CT_METHODS, known=CT_BENCH_METHODS,
                        dps_count=1, tune_slices=4)
    bc.add_argument("--views", type=int_list, default=[8, 16, 32], help="comma-separated view counts (default 8,16,32)")
    bc.add_argument("--noise", type=floats, default=0.0, help="relative sinogram noise (default 0)")
    bc.set_defaults(func=cmd_bench_ct)


def add_commands(verbs: dict) -> None:
    """Add DDS's subcommands; ``verbs`` maps "train", "eval", "bench", "data" to argparse subparsers."""
    add_train_parser(verbs["train"])
    add_bench_parsers(verbs["bench"])
