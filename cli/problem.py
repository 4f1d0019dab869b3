"""The problem options of ``demo``, ``bench poisson`` and ``bench baselines``: a simulated frame or a file.

A problem carries the grid behind its matrix when one is known (simulated
frames, krylearn HDF5 files that store it, or ``--grid-shape`` for a
Matrix Market file); :func:`methods_for` drops the methods that need a grid
(DCDM) with a printed note when none is.
"""

from __future__ import annotations

import argparse
import math

from ..benchmarks.poisson import Problem, file_problem, smoke_problem
from ..problems.smoke import SCENES
from .args import grid_shape, needs_grid

__all__ = ["add_problem", "load_problem", "methods_for"]


def add_problem(p: argparse.ArgumentParser) -> None:
    """The options that choose the problem."""
    g = p.add_argument_group("problem (a generated smoke-simulation frame, or a file)")
    g.add_argument("--scene", default="smoke-obstacle", choices=SCENES,
                   help="simulated scene (default smoke-obstacle)")
    g.add_argument("--dim", type=int, default=2, choices=(2, 3), help="2 or 3 (default 2)")
    g.add_argument("--n", type=int, default=128, help="cells per side (default 128)")
    g.add_argument("--frames", type=int, default=10, help="simulate this many frames, take the last (default 10)")
    g.add_argument("--seed", type=int, default=0, help="scene seed (default 0)")
    g.add_argument("--file", default=None,
                   help="a krylearn HDF5 systems file or a Matrix Market .mtx instead (default: simulate)")
    g.add_argument("--index", type=int, default=-1,
                   help="system index in an HDF5 --file, negative counts from the end (default -1: the last)")
    g.add_argument("--grid-shape", type=grid_shape, default=None, metavar="SHAPE",
                   help="the grid behind a .mtx --file's rows, NY,NX or NZ,NY,NX in C order, for DCDM "
                        "(default: none, DCDM is skipped; HDF5 files and simulations carry their grid)")


def load_problem(args) -> Problem:
    """The problem the options name (with ``--grid-shape`` applied to a file without a grid)."""
    if args.file:
        problem = file_problem(args.file, args.index)
        if args.grid_shape is not None:
            _set_grid(problem, args.grid_shape)
        return problem
    if args.grid_shape is not None:
        raise ValueError("--grid-shape applies to a .mtx --file; a simulated frame has its own grid")
    if args.n < 4:
        raise ValueError(f"--n must be >= 4, got {args.n}")
    if args.frames < 1:
        raise ValueError(f"--frames must be >= 1, got {args.frames}")
    return smoke_problem(args.scene, args.dim, args.n, args.frames, args.seed, progress=not args.quiet)


def _set_grid(problem: Problem, shape: tuple) -> None:
    if problem.grid_shape is not None and tuple(problem.grid_shape) != tuple(shape):
        raise ValueError(f"--grid-shape {','.join(map(str, shape))} differs from the grid stored in the file "
                         f"{tuple(problem.grid_shape)}")
    if math.prod(shape) != problem.A.shape[0]:
        raise ValueError(f"--grid-shape {','.join(map(str, shape))} has {math.prod(shape)} cells but the matrix "
                         f"has {problem.A.shape[0]} rows")
    problem.grid_shape = tuple(shape)


def methods_for(problem: Problem, methods: list[str]) -> list[str]:
    """``methods`` without those that need a grid when ``problem`` has none (a note names them)."""
    if problem.grid_shape is not None:
        return list(methods)
    skipped = [m for m in methods if needs_grid(m)]
    if skipped:
        where = problem.meta.get("file", problem.name)
        print(f"note: skipping {', '.join(skipped)}: {'it needs' if len(skipped) == 1 else 'they need'} the grid "
              f"behind the matrix, and {where} stores none; give --grid-shape NY,NX (or NZ,NY,NX)")
    return [m for m in methods if m not in skipped]
