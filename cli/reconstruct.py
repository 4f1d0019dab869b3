"""``krylearn reconstruct mri|ct`` and ``krylearn data mri|ct``: MRI/CT files with any reconstruction method.

The ``--method`` choices are every method that reconstructs the modality
(:func:`krylearn.solvers.reconstructors.method_names`: the classical ones and
those the learned methods declare in their folders), and the method options
are flags built from the methods' own option declarations
(:func:`~krylearn.solvers.reconstructors.option`): ``--lam``, ``--iters``,
``--nfe``, ... (``--no-NAME`` for an option that is on by default), each
listing the methods that take it.  A flag the chosen method does not take is
an error that names it.
"""

from __future__ import annotations

import argparse
import json

from ..pipelines.reconstruct import MASKS, reconstruct_ct, reconstruct_mri
from ..problems.simulate import write_ct_testset, write_mri_testset
from ..solvers.reconstructors import method_class, method_names, option_names
from .args import device, floats

__all__ = ["add_parsers", "method_options"]

_TYPES = {int: int, float: floats, str: str}


def _print(summary: dict) -> None:
    print(json.dumps(summary, indent=1, default=str))


def _flag(name: str, negated: bool = False) -> str:
    return ("--no-" if negated else "--") + name.replace("_", "-")


def add_method_options(p: argparse.ArgumentParser, kind: str) -> None:
    """One flag per option of the methods for ``kind`` (their declarations give the type and the help)."""
    found = {}  # option -> (value type, on by default?, {help: [methods]})
    for method in method_names(kind):
        for name, typ, default, text in method_class(kind, method).Options.described(kind):
            negated = typ is bool and default is True
            seen = found.setdefault(name, (typ, negated, {}))
            if seen[:2] != (typ, negated):
                raise TypeError(f"option {name!r} of method {method!r} has another type than the other methods'")
            seen[2].setdefault(text, []).append(method)
    g = p.add_argument_group("method options (each lists the methods that take it)")
    for name, (typ, negated, helps) in found.items():  # a name that collides with a flag above: argparse refuses it
        text = "; ".join(f"{', '.join(ms)}: {h}" for h, ms in helps.items())
        if typ is bool:
            g.add_argument(_flag(name, negated), dest=f"no_{name}" if negated else name, action="store_true",
                           help=text)
        else:
            g.add_argument(_flag(name), dest=name, type=_TYPES[typ], default=None, metavar=name.upper(), help=text)
    p.set_defaults(method_flags={name: (_flag(name, negated), negated) for name, (_, negated, _) in found.items()})


def method_options(args, kind: str) -> dict:
    """The options of ``args.method`` from the flags given; a flag the method does not take is a ``ValueError``."""
    given, flags = {}, {}
    for name, (flag, negated) in args.method_flags.items():
        value = getattr(args, f"no_{name}" if negated else name, None)
        if negated:
            value = False if value else None
        elif value is False:  # a switch that was not given
            value = None
        if value is not None:
            given[name], flags[name] = value, flag
    takes = option_names(kind, args.method)
    wrong = [flags[name] for name in given if name not in takes]
    if wrong:
        own = [f for name, (f, _) in args.method_flags.items() if name in takes]
        raise ValueError(f"{', '.join(wrong)} does not apply to --method {args.method} "
                         f"(it takes {', '.join(own) or 'no method options'})")
    return given


# ------------------------------------------------------------------ reconstruct
def cmd_reconstruct_mri(args) -> int:
    summary = reconstruct_mri(args.input, args.output, args.method, mask=args.mask, accel=args.accel, acs=args.acs,
                              seed=args.seed, slices=args.slices, device=args.device, scale=args.scale,
                              batch=args.batch, progress=not args.quiet, previews=not args.no_previews,
                              auto=args.auto, folds=args.folds, **method_options(args, "mri"))
    _print(summary)
    return 0


def cmd_reconstruct_ct(args) -> int:
    summary = reconstruct_ct(args.input, args.output, args.method, seed=args.seed, slices=args.slices,
                             device=args.device, scale=args.scale, progress=not args.quiet,
                             previews=not args.no_previews, auto=args.auto, folds=args.folds,
                             **method_options(args, "ct"))
    _print(summary)
    return 0


def _common_reconstruct(p, kind: str) -> None:
    p.add_argument("input", help="input HDF5 file")
    p.add_argument("-o", "--output", required=True, help="output HDF5 (reconstruction; a PNG preview next to it)")
    p.add_argument("--method", default="dds", choices=method_names(kind), help="reconstruction method (default dds)")
    p.add_argument("--seed", type=int, default=0, help="seeds the samplers (and a drawn mask) (default 0)")
    p.add_argument("--slices", default=None, help="slices to reconstruct: '3:9', '1,4,7' or '5' (default all)")
    p.add_argument("--scale", type=floats, default=None, help="image peak magnitude (default: estimated)")
    p.add_argument("--device", type=device, default=None, help="torch device (default: CUDA when available)")
    p.add_argument("--no-previews", action="store_true", help="no PNG preview")
    held = "k-space lines (points for a 2D mask)" if kind == "mri" else "views"
    p.add_argument("--auto", action="store_true",
                   help=f"choose the method's options for this scan by cross-validation on held-out {held}; "
                        "options given as flags stay fixed (the choices are printed and stored)")
    p.add_argument("--folds", type=int, default=3, help="hold-outs of --auto (default 3)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def add_reconstruct_parser(sub) -> None:
    """``krylearn reconstruct mri|ct INPUT -o OUT``."""
    r = sub.add_parser("reconstruct", help="reconstruct MRI / CT files: dds, dps and classical baselines")
    rsub = r.add_subparsers(dest="modality", metavar="MODALITY")
    rm = rsub.add_parser(
        "mri", help="multi-coil MRI from a fastMRI-layout file",
        description="Reads kspace (slices, coils, ky, kx) with zeros where not sampled, an optional mask and "
                    "sensitivity_maps (else ESPIRiT on a fully sampled centre of 6+ lines, or maps fitted "
                    "jointly with the image from a 2-5 line centre); writes the fastMRI submission layout "
                    "(reconstruction: slices, ny, nx, float32 magnitude).")
    _common_reconstruct(rm, "mri")
    rm.add_argument("--mask", default=None, choices=MASKS, help="undersample a fully sampled file retrospectively")
    rm.add_argument("--accel", type=floats, default=None, help="acceleration of --mask (alone: uniform1d)")
    rm.add_argument("--acs", type=floats, default=0.08, help="fully sampled centre fraction (default 0.08)")
    rm.add_argument("--batch", type=int, default=1, help="slices per method call (default 1)")
    add_method_options(rm, "mri")
    rm.set_defaults(func=cmd_reconstruct_mri)
    rc = rsub.add_parser(
        "ct", help="parallel-beam CT from a krylearn CT file (sinogram, angles)",
        description="Reads sinogram (slices, views, det), angles and geometry attributes; several slices are "
                    "one volume (dds: 2D prior per slice + ADMM-TV along z).")
    _common_reconstruct(rc, "ct")
    add_method_options(rc, "ct")
    rc.set_defaults(func=cmd_reconstruct_ct)
    r.set_defaults(func=lambda a, _p=r: (_p.print_help(), 2)[1])


# ------------------------------------------------------------------ data
def cmd_data_mri(args) -> int:
    path = write_mri_testset(args.output, split=args.split, size=args.size, seed=args.seed, accel=args.accel,
                             mask=args.mask, snr_db=None if args.no_noise else args.snr_db, coils=args.coils,
                             acs=args.acs, n_slices=args.slices, inverse_crime=args.inverse_crime, volume=args.data)
    print(f"wrote {path}")
    return 0


def cmd_data_ct(args) -> int:
    path = write_ct_testset(args.output, split=args.split, size=args.size, seed=args.seed, views=args.views,
                            noise=args.noise, n_slices=args.slices, inverse_crime=args.inverse_crime,
                            source=args.source, volume=args.data)
    print(f"wrote {path}")
    return 0


def _common_data(p, size: int) -> None:
    p.add_argument("output", help="output .h5 (written atomically)")
    p.add_argument("--split", default="test", choices=("train", "val", "test"),
                   help="band of the brain volume (default test: never seen in training)")
    p.add_argument("--size", type=int, default=size, help=f"image side (default {size})")
    p.add_argument("--slices", type=int, default=None, help="number of slices (default: the whole band)")
    p.add_argument("--seed", type=int, default=0, help="phase, masks, noise (default 0)")
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
    dm.add_argument("--accel", type=floats, default=4.0, help="acceleration (default 4)")
    dm.add_argument("--mask", default="uniform1d", choices=MASKS, help="sampling pattern (default uniform1d)")
    dm.add_argument("--snr-db", type=floats, default=30.0, help="k-space SNR in dB (default 30)")
    dm.add_argument("--no-noise", action="store_true", help="noiseless k-space")
    dm.add_argument("--coils", type=int, default=8, help="birdcage coils (default 8)")
    dm.add_argument("--acs", type=floats, default=0.08, help="fully sampled centre fraction (default 0.08)")
    dm.set_defaults(func=cmd_data_mri)
    dc = dsub.add_parser(
        "ct", help="simulated parallel-beam sinograms of a held-out volume (MR anatomy as attenuation)",
        description="A contiguous held-out band of the MNI152 T1 volume (or random ellipsoids) projected at "
                    "--views angles over [0, pi); written with its reference volume.")
    _common_data(dc, 128)
    dc.add_argument("--views", type=int, default=8, help="projection angles (default 8)")
    dc.add_argument("--noise", type=floats, default=0.0,
                    help="Gaussian noise std relative to the sinogram's rms (default 0)")
    dc.add_argument("--source", default="brain", choices=("brain", "ellipsoids"),
                    help="what is projected (default brain)")
    dc.set_defaults(func=cmd_data_ct)


def add_parsers(sub, verbs: dict) -> None:
    """Add ``reconstruct`` to the top-level subparsers ``sub`` and ``mri``/``ct`` to ``verbs["data"]``."""
    add_reconstruct_parser(sub)
    add_data_parsers(verbs["data"])
