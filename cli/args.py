"""Argument types and option groups shared by every ``krylearn`` command."""

from __future__ import annotations

import argparse
import os

__all__ = ["DEFAULT_OUT", "floats", "method_list", "int_list", "add_stopping", "add_run_options"]

DEFAULT_OUT = "krylearn-results"


# ---------------------------------------------------------------- helpers
def floats(s: str) -> float:
    try:
        return float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None


def method_list(s: str) -> list[str]:
    methods = [m.strip() for m in s.split(",") if m.strip()]
    if not methods:
        raise argparse.ArgumentTypeError("expected a comma-separated list of methods")
    return methods


def add_stopping(p: argparse.ArgumentParser, rtol=1e-6) -> None:
    p.add_argument("--rtol", type=floats, default=rtol, help=f"relative tolerance (default {rtol:g})")
    p.add_argument("--atol", type=floats, default=0.0, help="absolute tolerance (default 0)")
    p.add_argument("--maxiter", type=int, default=None, help="iteration limit (method default)")


def add_run_options(p: argparse.ArgumentParser, *, out: str, repeats: int) -> None:
    p.add_argument("--repeats", type=int, default=repeats, help=f"timed repeats after one warm-up (default {repeats})")
    p.add_argument("--out", default=os.path.join(DEFAULT_OUT, out), help=f"results folder (default {DEFAULT_OUT}/{out})")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def int_list(s: str) -> list[int]:
    try:
        return [int(v) for v in s.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from None
