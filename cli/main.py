"""The ``krylearn`` command line: ``demo``, ``solve``, ``bench``, ``data``, ``train``, ``eval``, ``reconstruct``.

The commands every method shares are built here (``demo``, ``solve``,
``bench poisson|baselines``, ``data poisson``, ``reconstruct``); each learned
method adds its own (``train dcdm``, ``bench relax``, ...) from its folder:
its ``solvers/<name>/method.py`` names a function ``add_commands(verbs)``,
and :func:`build_parser` calls it with the ``train``, ``eval``, ``bench`` and
``data`` subparsers.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from ..solvers.registry import methods
from ..utils.version import __version__
from .bench import add_bench_parsers
from .data import add_data_parsers
from .demo import add_demo
from .errors import error_line
from .parser import finish
from .reconstruct import add_parsers as add_reconstruct_parsers
from .solve import add_solve

__all__ = ["build_parser", "main"]

#: The verbs whose subcommands the methods extend: (help, metavar of their subcommand).
VERBS = {
    "bench": ("benchmarks: a table on stdout, JSON and plots in --out", "BENCH"),
    "data": ("dataset generators writing HDF5", "GENERATOR"),
    "train": ("train a learned method: weights, card, log and loss plot", "METHOD"),
    "eval": ("evaluate a trained model", "METHOD"),
}


def _verb(sub, name: str):
    """The subparsers of ``krylearn NAME`` (``krylearn NAME`` alone prints its help)."""
    text, metavar = VERBS[name]
    p = sub.add_parser(name, help=f"{text} (krylearn {name} --help lists them)", description=text)
    p.set_defaults(func=lambda args, _p=p: (_p.print_help(), 2)[1])
    return p.add_subparsers(dest=name, metavar=metavar)


def build_parser() -> argparse.ArgumentParser:
    """The whole parser: the shared commands, then every learned method's own."""
    p = argparse.ArgumentParser(prog="krylearn",
                                description="Learned and classical solvers for PDEs and inverse problems.")
    p.add_argument("--version", action="version", version=f"krylearn {__version__}")
    p.add_argument("--debug", action="store_true", default=False,
                   help="show the full traceback on errors (also accepted after the command)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    add_demo(sub)
    add_solve(sub)
    verbs = {name: _verb(sub, name) for name in VERBS}
    add_bench_parsers(verbs["bench"])
    add_data_parsers(verbs["data"])
    add_reconstruct_parsers(sub, verbs)
    for method in methods().values():
        if method.commands:
            method.resolve(method.commands)(verbs)
    return finish(p)


def main(argv=None) -> int:
    """Run ``krylearn`` with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    args = parser.parse_args(argv)
    args.command_line = shlex.join(["krylearn", *argv])  # recorded in weight cards
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("krylearn: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one line for the user; --debug shows the traceback
        if getattr(args, "debug", False):
            raise
        print(error_line(exc, getattr(args, "cli_flags", None)), file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
