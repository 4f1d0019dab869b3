"""``krylearn reconstruct`` and ``krylearn data mri|ct``: reconstruction of MRI/CT files with any method."""

from __future__ import annotations

from .imaging import add_data_parsers, add_reconstruct_parser

__all__ = ["add_parsers"]


def add_parsers(sub, verbs: dict) -> None:
    """Add ``reconstruct`` to the top-level subparsers ``sub`` and ``mri``/``ct`` to ``verbs["data"]``."""
    add_reconstruct_parser(sub)
    add_data_parsers(verbs["data"])
