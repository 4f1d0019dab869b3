"""``krylearn bench poisson`` and ``krylearn bench baselines``: the solver benchmarks every method shares.

The learned methods add their own benchmarks (``bench dcdm``, ``bench relax``,
``bench darcy``, ``bench mri|ct``) from their folders' ``commands.py``.
"""

from __future__ import annotations

import json

from ..benchmarks.baselines import compare_cg, compare_spmv, format_cg_table, format_spmv_table
from ..benchmarks.frames import format_frames_table, plot_frames, record_frames, run_frames
from ..benchmarks.poisson import format_table, machine, run_benchmark
from ..solvers.learned import pick_device
from ..solvers.solver import method_class
from ..utils.atomic import atomic_write_text
from .args import add_run_options, add_stopping, device, floats, method_list, writable_folder
from .problem import add_problem, load_problem, methods_for

__all__ = ["add_bench_parsers"]


def add_bench_parsers(bench) -> None:
    """``krylearn bench poisson`` and ``krylearn bench baselines`` under the ``bench`` subparsers."""
    bp = bench.add_parser("poisson", help="iterations and seconds of several methods on one Poisson system",
                          description="Prints a table (method, iterations, setup s, solve s, final relative "
                                      "residual, converged) and writes JSON + a residual-vs-iteration PNG.")
    add_problem(bp)
    add_stopping(bp)
    bp.add_argument("--methods", type=method_list, default=None,
                    help="comma-separated (default cg,pcg-ic,pcg-amg,mgpcg; with --sequence also dcdm)")
    bp.add_argument("--sequence", type=int, default=0, metavar="N",
                    help="solve N consecutive frames of the scene instead of one: a fresh krylearn.solve per "
                         "frame against one Solver warm-started from the previous frame (default 0: one frame)")
    bp.add_argument("--solver-only", action="store_true",
                    help="with --sequence: skip the fresh-solve-per-frame path (default: run both)")
    bp.add_argument("--sim-solver", default="pcg-amg",
                    help="with --sequence: the method the simulation solves its own pressure with (default pcg-amg)")
    bp.add_argument("--device", type=device, default=None,
                    help="with --sequence: solve on this device, e.g. cuda (default: the CPU; the simulation "
                         "always runs on the CPU)")
    add_run_options(bp, out="bench", repeats=3)
    bp.set_defaults(func=cmd_bench_poisson)
    bb = bench.add_parser("baselines", help="krylearn cg / pcg-amg / SpMV against scipy and pyamg on one system")
    add_problem(bb)
    bb.add_argument("--rtol", type=floats, default=1e-6, help="relative tolerance (default 1e-6)")
    add_run_options(bb, out="bench", repeats=3)
    bb.set_defaults(func=cmd_bench_baselines)


def cmd_bench_poisson(args) -> int:
    writable_folder(args.out, "--out")
    if args.sequence < 0:
        raise ValueError(f"--sequence must be >= 0 (0: one frame), got {args.sequence}")
    if args.sequence:
        return _bench_frames(args)
    if args.device is not None:
        raise ValueError("--device applies to --sequence runs; a single system runs on the CPU")
    problem = load_problem(args)
    methods = methods_for(problem, args.methods or ["cg", "pcg-ic", "pcg-amg", "mgpcg"])
    if not methods:
        raise ValueError("no method left to run")
    report = run_benchmark(problem, methods, rtol=args.rtol, atol=args.atol, maxiter=args.maxiter,
                           repeats=args.repeats, warmup=1, out_dir=args.out, progress=not args.quiet)
    print(f"{problem.name}: {problem.unknowns} unknowns, nnz {problem.A.nnz}")
    print(format_table(report["rows"], rtol=args.rtol, atol=args.atol))
    print("\nwrote " + " and ".join(report["files"]))
    return 0


def _bench_frames(args) -> int:
    if args.file:
        raise ValueError("--sequence simulates its frames; it cannot be combined with --file")
    if args.grid_shape is not None:
        raise ValueError("--grid-shape applies to a .mtx --file; simulated frames have their own grid")
    methods = args.methods or ["cg", "pcg-ic", "pcg-amg", "mgpcg", "dcdm"]
    method_class(args.sim_solver)  # an unknown name fails before the simulation runs
    device = pick_device(args.device) if args.device is not None else None  # an unusable device fails here too
    seq = record_frames(args.scene, args.dim, args.n, args.sequence, args.seed, progress=not args.quiet,
                        sim_solver=args.sim_solver)
    report = run_frames(seq, methods, rtol=args.rtol, maxiter=args.maxiter, progress=not args.quiet,
                        fresh=not args.solver_only, device=device)
    report["machine"] = machine()
    report["command"] = args.command_line
    table = format_frames_table(report)
    print(table)
    out = writable_folder(args.out, "--out")
    name = report["problem"]["name"]
    atomic_write_text(out / f"{name}.json", json.dumps(report, indent=1))
    atomic_write_text(out / f"{name}.md", table + "\n")
    plot_frames(report, out / f"{name}.png")
    print(f"\nwrote {out / (name + '.json')}, {out / (name + '.md')} and {out / (name + '.png')}")
    return 0


def cmd_bench_baselines(args) -> int:
    out = writable_folder(args.out, "--out")
    problem = load_problem(args)
    print(f"{problem.name}: {problem.unknowns} unknowns, nnz {problem.A.nnz}")
    cg_rows = compare_cg(problem, rtol=args.rtol, repeats=args.repeats)
    spmv_rows = compare_spmv(problem)
    print(format_cg_table(cg_rows, args.rtol))
    print()
    print(format_spmv_table(spmv_rows))
    path = out / f"baselines-{problem.name}.json"
    atomic_write_text(path, json.dumps({"problem": problem.name, "unknowns": problem.unknowns,
                                        "meta": problem.meta, "rtol": args.rtol, "machine": machine(),
                                        "cg": cg_rows, "spmv": spmv_rows}, indent=1))
    print(f"\nwrote {path}")
    return 0
