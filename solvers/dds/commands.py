"""DDS's CLI subcommands: ``krylearn train diffusion``, ``krylearn bench mri|ct``."""

from __future__ import annotations

from ...cli.imaging import add_bench_parsers, add_train_parser

__all__ = ["add_commands"]


def add_commands(verbs: dict) -> None:
    """Add DDS's subcommands; ``verbs`` maps "train", "eval", "bench", "data" to argparse subparsers."""
    add_train_parser(verbs["train"])
    add_bench_parsers(verbs["bench"])
