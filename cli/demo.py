"""``krylearn demo``: one simulated (or given) Poisson system solved by every available method."""

from __future__ import annotations

import json

from ..benchmarks.poisson import format_table, plot_residuals, run_benchmark
from ..solvers.api import RELAXATION_METHODS, available_methods
from ..utils.atomic import atomic_write_text
from .args import add_run_options, add_stopping, method_list, writable_folder
from .problem import add_problem, load_problem, methods_for

__all__ = ["add_demo"]

#: Stationary methods get a bounded budget and a sensible omega so that the demo stays short.
_OPTIONS = {"sor": {"omega": 1.9}, "ssor": {"omega": 1.5}, "pcg-ssor": {"omega": 1.5}}


def add_demo(sub) -> None:
    """``krylearn demo``."""
    d = sub.add_parser("demo", help="solve a generated fluid-simulation pressure system with every method",
                       description="Simulate smoke on a MAC grid, take one frame's pressure system, solve it with "
                                   "every available method, print the comparison table and write a residual plot.")
    add_problem(d)
    add_stopping(d)
    d.add_argument("--methods", type=method_list, default=None,
                   help="comma-separated (default: all available; DCDM only where the grid is known)")
    d.add_argument("--relax-maxiter", type=int, default=5000,
                   help="iteration cap for SOR/SSOR/Gauss-Seidel/Jacobi when --maxiter is not given (default 5000)")
    add_run_options(d, out="demo", repeats=1)
    d.set_defaults(func=cmd_demo)


def cmd_demo(args) -> int:
    out = writable_folder(args.out, "--out")
    problem = load_problem(args)
    methods = methods_for(problem, args.methods or available_methods())
    print(f"krylearn demo: {problem.name}: {problem.unknowns} unknowns "
          f"({problem.A.shape[0]} grid cells, nnz {problem.A.nnz})")
    rows, report = [], None
    for group, maxiter in (([m for m in methods if m not in RELAXATION_METHODS], args.maxiter),
                           ([m for m in methods if m in RELAXATION_METHODS], args.maxiter or args.relax_maxiter)):
        if not group:
            continue
        r = run_benchmark(problem, group, rtol=args.rtol, atol=args.atol, maxiter=maxiter, repeats=args.repeats,
                          warmup=1, out_dir=None, options=_OPTIONS, progress=not args.quiet)
        rows += r["rows"]
        if report is None:
            report = r
        else:
            report["residuals"].update(r["residuals"])
    if report is None:
        raise ValueError("no method left to run")
    report["rows"] = rows
    atomic_write_text(out / f"{problem.name}.json", json.dumps(report, indent=1))
    plot_residuals(report["residuals"], out / f"{problem.name}.png", title=problem.name, rtol=args.rtol)
    print(format_table(rows, rtol=args.rtol, atol=args.atol))
    print(f"\nwrote {out / (problem.name + '.json')} and {out / (problem.name + '.png')}")
    return 0
