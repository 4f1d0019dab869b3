"""Argument types, option groups and output checks shared by every ``krylearn`` command."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from ..solvers.learned import check_writable
from ..solvers.solver import takes_grid

__all__ = ["DEFAULT_OUT", "device", "floats", "method_list", "int_list", "grid_shape", "add_stopping",
           "add_run_options", "add_quiet", "comma_list", "writable_folder", "writable_file", "needs_grid"]

DEFAULT_OUT = "krylearn-results"


# ---------------------------------------------------------------- argument types
def floats(s: str) -> float:
    try:
        return float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None


def device(s: str) -> str:
    """``--device``: a torch device name (``cpu``, ``cuda``, ``cuda:1``) or ``auto``, checked when parsed."""
    if s.strip() != "auto":
        try:
            torch.device(s)
        except (RuntimeError, TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected a torch device such as cpu, cuda or cuda:0, "
                                             f"got {s!r}") from None
    return s


def method_list(s: str) -> list[str]:
    methods = [m.strip() for m in s.split(",") if m.strip()]
    if not methods:
        raise argparse.ArgumentTypeError("expected a comma-separated list of methods")
    return methods


def comma_list(s: str) -> list[str]:
    """``"a, b,c"`` -> ``["a", "b", "c"]`` (empty entries dropped)."""
    return [v.strip() for v in s.split(",") if v.strip()]


def int_list(s: str) -> list[int]:
    try:
        return [int(v) for v in s.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from None


def grid_shape(s: str) -> tuple[int, ...]:
    """``"NY,NX"`` or ``"NZ,NY,NX"`` (C order: the last side varies fastest along the rows of A)."""
    try:
        shape = tuple(int(v) for v in s.replace("x", ",").split(","))
    except ValueError:
        shape = ()
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"expected NY,NX or NZ,NY,NX (positive integers), got {s!r}")
    return shape


# ---------------------------------------------------------------- option groups
def add_stopping(p: argparse.ArgumentParser, rtol=1e-6) -> None:
    p.add_argument("--rtol", type=floats, default=rtol, help=f"relative tolerance (default {rtol:g})")
    p.add_argument("--atol", type=floats, default=0.0, help="absolute tolerance (default 0)")
    p.add_argument("--maxiter", type=int, default=None, help="iteration limit (default: the method's own)")


def add_quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars (default: shown)")


def add_run_options(p: argparse.ArgumentParser, *, out: str, repeats: int) -> None:
    p.add_argument("--repeats", type=int, default=repeats, help=f"timed repeats after one warm-up (default {repeats})")
    p.add_argument("--out", default=os.path.join(DEFAULT_OUT, out), help=f"results folder (default {DEFAULT_OUT}/{out})")
    add_quiet(p)


# ---------------------------------------------------------------- checks before long work
def writable_folder(path, flag: str) -> Path:
    """Create the output folder ``path`` and check that files can be written there, naming ``flag`` if not.

    Commands call this before any long work, so an unwritable output fails at once.
    """
    return check_writable(path, flag)


def writable_file(path, flag: str) -> Path:
    """Check that the output file ``path`` can be written (its folder is created), naming ``flag`` if not."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{flag}: {path} is a folder, expected a file path")
    check_writable(path.parent if str(path.parent) else Path("."), flag)
    return path


def needs_grid(method: str) -> bool:
    """Whether ``method`` needs the grid behind the matrix (``grid_shape``), as DCDM and MGPCG do."""
    return takes_grid(method)
