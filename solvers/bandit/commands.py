"""The bandit's CLI subcommands: ``krylearn bench relax`` and ``krylearn data sequence``.

``data sequence`` lives here rather than among the shared generators: its
sequences (shifted Laplacians, the heat equation) are the Learning-to-Relax
benchmark's, the kinds it writes are the ones ``bench relax`` simulates, and
``bench relax --file`` reads what it writes.
"""

from __future__ import annotations

import argparse
import os

from ...cli.args import DEFAULT_OUT, add_quiet, floats, writable_file, writable_folder
from ...problems.sequences import heat2d, read_sequence, shifted_laplacian, write_sequence
from .bench import SEQUENCE_KINDS, format_table, make_sequence, run_relax, write_report

__all__ = ["add_commands"]


def add_commands(verbs: dict) -> None:
    """Add ``bench relax`` and ``data sequence``; ``verbs`` maps "train", "eval", "bench", "data" to subparsers."""
    _add_bench(verbs["bench"])
    _add_data(verbs["data"])


# ------------------------------------------------------------------ bench relax
def _sequence_kinds(s: str) -> list[str]:
    kinds = [k.strip() for k in s.split(",") if k.strip()]
    bad = [k for k in kinds if k not in SEQUENCE_KINDS]
    if not kinds or bad:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(SEQUENCE_KINDS)}, got {s!r}")
    return kinds


def _add_bench(bench_verb) -> None:
    br = bench_verb.add_parser(
        "relax", help="bandit-tuned SOR omega across a sequence of systems (Learning to Relax)",
        description="Runs omega=1, omega=1.5, YoungSpectral, TsallisINF, ChebCB (with contexts), Young and the "
                    "best-fixed / instance-optimal oracles (grid search over the tuners' 20 omegas on [1, 1.95]) "
                    "over each sequence; prints a table (totals, ratios, regret, seconds; bandits over --seeds "
                    "seeds) and writes JSON, markdown and PNG (cumulative cost, regret, omegas) into --out. "
                    "Defaults: shifted Laplacians with plain SOR from x0 = 0; heat2d with SSOR-PCG warm-started; "
                    "rtol 1e-8, cap 10,000 iterations.")
    src = br.add_mutually_exclusive_group()
    src.add_argument("--sequence", type=_sequence_kinds, default=["shifted-low", "shifted-high"],
                     help="comma-separated: shifted-low, shifted-high, heat2d (default shifted-low,shifted-high)")
    src.add_argument("--file", default=None,
                     help="a krylearn HDF5 systems file read as a sequence instead (default: generate --sequence)")
    br.add_argument("--T", type=int, default=None, help="instances (default 1000; with --file: the whole file)")
    br.add_argument("--n", type=int, default=None, help="grid points per side (default 10 for shifted-*, 64 for heat2d)")
    br.add_argument("--seed", type=int, default=0, help="sequence seed (default 0)")
    br.add_argument("--seeds", type=int, default=5, help="seeds of the randomized tuners (default 5)")
    br.add_argument("--solver", default=None, help="sor | ssor | pcg-ssor (default: sor; pcg-ssor for heat2d)")
    br.add_argument("--warm-start", action=argparse.BooleanOptionalAction, default=None,
                    help="start each instance from the previous solution (default: on for heat2d only)")
    br.add_argument("--rtol", type=floats, default=None, help="relative tolerance (default 1e-8)")
    br.add_argument("--maxiter", type=int, default=None, help="iteration cap (default 10000)")
    br.add_argument("--no-cache", action="store_true",
                    help="recompute the grid costs even if cached in --out (default: reuse the cache)")
    br.add_argument("--out", default=os.path.join(DEFAULT_OUT, "relax"), help=f"results folder (default {DEFAULT_OUT}/relax)")
    add_quiet(br)
    br.set_defaults(func=cmd_bench_relax)


def grid_points(kind: str, n: int | None) -> int:
    """``--n`` for a sequence ``kind``: its default when None, checked against what the kind allows."""
    if kind == "heat2d":
        n = 64 if n is None else n
        if n < 2:
            raise ValueError(f"--n must be >= 2, got {n}")
        return n
    n = 10 if n is None else n
    if not 1 <= n <= 11:
        raise ValueError(f"--n must be in [1, 11] for {kind} (larger grids make L + c I indefinite), got {n}")
    return n


def cmd_bench_relax(args) -> int:
    if args.T is not None and args.T < 1:
        raise ValueError(f"--T must be >= 1, got {args.T}")
    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    out = writable_folder(args.out, "--out")
    if args.file:
        seq = read_sequence(args.file)
        sequences = [seq if args.T is None or args.T >= len(seq) else seq[: args.T]]
    else:
        sequences = [make_sequence(k, args.T or 1000, grid_points(k, args.n), args.seed, progress=not args.quiet)
                     for k in args.sequence]
    for seq in sequences:
        if len(seq) == 0:
            raise ValueError(f"{seq.name}: the sequence is empty")
        report = run_relax(seq, solver=args.solver, warm_start=args.warm_start, rtol=args.rtol,
                           maxiter=args.maxiter, seeds=args.seeds, cache_dir=None if args.no_cache else out,
                           progress=not args.quiet)
        files = write_report(report, out)
        print(format_table(report))
        print("\nwrote " + ", ".join(files) + "\n")
    return 0


# ------------------------------------------------------------------ data sequence
def _add_data(data_verb) -> None:
    ds = data_verb.add_parser("sequence", help="a sequence of related systems (Learning to Relax) to HDF5",
                              description="heat2d: Crank-Nicolson steps of a 2D heat equation with time-varying "
                                          "diffusion (reference solutions stored); shifted-low / shifted-high: "
                                          "10x10 grid Laplacian + c I with Beta-distributed shifts. One matrix is "
                                          "stored, with per-system scale/shift attributes.")
    ds.add_argument("--kind", required=True, choices=SEQUENCE_KINDS, help="the sequence (required)")
    ds.add_argument("--n", type=int, default=None, help="grid points per side (default 64 for heat2d, 10 for shifted-*)")
    ds.add_argument("--steps", type=int, default=1000, help="instances / time steps (default 1000)")
    ds.add_argument("--dt", type=floats, default=1e-3, help="heat2d time step (default 1e-3)")
    ds.add_argument("--seed", type=int, default=0, help="sequence seed (default 0)")
    ds.add_argument("-o", "--output", required=True, help="output .h5 path (required; written atomically)")
    add_quiet(ds)
    ds.set_defaults(func=cmd_data_sequence)


def cmd_data_sequence(args) -> int:
    if args.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")
    writable_file(args.output, "--output")
    n = grid_points(args.kind, args.n)
    if args.kind == "heat2d":
        seq = heat2d(n, args.steps, dt=args.dt, seed=args.seed, progress=not args.quiet)
    else:
        seq = shifted_laplacian(args.steps, variance=args.kind.split("-")[1], grid=n, seed=args.seed)
    path = write_sequence(args.output, seq, progress=not args.quiet)
    print(f"wrote {path}: {seq.name}, {len(seq)} systems of {seq[0].n} unknowns, contexts in {seq.context_range}")
    return 0
