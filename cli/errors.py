"""One line per error, naming the command's flags where the library names Python arguments.

Library messages are written for Python callers ("pass resample=True",
"grid_shape is required ... pass grid_shape=(ny, nx)"); at the command line
the same advice must name flags (``--resample yes``, ``--grid-shape NY,NX``).
:func:`error_line` rewrites the known phrases with the flags of the command
that ran (``cli_flags``: dest -> option string, see :mod:`.parser`), drops a
hint whose flag that command does not have, and prefixes ``--`` to a leading
argument name that is one of the command's options ("rtol must be ..." ->
"--rtol must be ...").
"""

from __future__ import annotations

import re

from ..utils.errors import FormatError

__all__ = ["error_line", "translate", "KNOWN_ERRORS", "FLAG_PHRASES"]

#: Errors that are the user's input or environment ("krylearn: error: ..."); others are internal errors.
KNOWN_ERRORS = (ValueError, TypeError, FormatError, OSError, KeyError, IndexError, ImportError)

#: ``(library phrase (regex), dests the CLI phrase needs, CLI phrase, phrase when the command lacks those flags)``.
FLAG_PHRASES = [
    (r"pass grid_shape=\(ny, nx\) or \(nz, ny, nx\)", ("grid_shape",), "give {grid_shape} NY,NX or NZ,NY,NX",
     "this command knows no grid for it"),
    (r"pass resample=True (\([^)]*\)) or resample='native'", ("resample",),
     r"give {resample} yes \1 or {resample} native", r"resample \1"),
    (r"; pass check_symmetry=False to override", ("check_symmetry",), "; give {check_symmetry} to skip this check",
     ""),
    (r"pass volume=False", ("no_volume",), "give {no_volume}", "reconstruct slices independently"),
    (r"start over without resuming", ("no_resume",), "start over with {no_resume}", "start over without resuming"),
    (r"or pass data_test\b", ("test",), "or give {test}", "or give a test file"),
    (r"\bdata_train\b", ("data",), "{data}", "the training file"),
    (r"\bdata_test\b", ("test",), "{test}", "the test file"),
    (r"more than max_entries=(\w+); pass a larger max_entries \(or None\) to read it anyway", (),
     r"more than the reader's limit of \1 values", r"more than the reader's limit of \1 values"),
]

_LEADING_NAME = re.compile(r"^([a-z][a-z0-9_]*)(?=( must | has | is |: | = ))")


def translate(message: str, flags: dict | None) -> str:
    """``message`` with its Python argument names replaced by the flags in ``flags`` (dest -> option string)."""
    flags = flags or {}
    for pattern, dests, cli, fallback in FLAG_PHRASES:
        if all(d in flags for d in dests):
            repl = cli.format(**{d: flags[d] for d in dests})
        else:
            repl = fallback
        message = re.sub(pattern, repl, message)
    m = _LEADING_NAME.match(message)
    if m and m.group(1) in flags:
        message = flags[m.group(1)] + message[m.end(1):]
    return message


def error_line(exc: BaseException, flags: dict | None = None) -> str:
    """``krylearn: error: <first line>`` (or ``internal error (Type)`` for errors that are not the user's input)."""
    kind = "error" if isinstance(exc, KNOWN_ERRORS) else f"internal error ({type(exc).__name__})"
    text = str(exc).strip()
    if isinstance(exc, KeyError) and len(exc.args) == 1:
        text = str(exc.args[0])
    msg = text.splitlines()[0] if text else type(exc).__name__
    return f"krylearn: {kind}: {translate(msg, flags)}"
