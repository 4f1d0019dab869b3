"""What every ``krylearn`` command gets once the parser tree is built: ``--debug``, stated defaults, its flag names.

:func:`finish` walks the whole tree, including the subcommands that the
learned methods add themselves (``solvers/<name>/commands.py``), so that

* ``--debug`` works before or after any subcommand;
* every option's help states its default: an option without help, or whose
  help does not mention its default, gets ``(default: ...)`` appended;
* the parsed namespace carries ``cli_flags`` (dest -> the longest option
  string of the command that runs), which the error printer uses to name
  flags instead of Python keywords.
"""

from __future__ import annotations

import argparse

__all__ = ["finish", "subparsers_of", "options_of"]


def subparsers_of(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The subcommands of ``parser`` by name (empty when it has none)."""
    return {name: sub for a in options_of(parser, positional=True) if a.nargs == argparse.PARSER
            for name, sub in a.choices.items()}


def options_of(parser: argparse.ArgumentParser, *, positional: bool = False) -> list[argparse.Action]:
    """The actions of ``parser``: its options (with ``positional``, its positional arguments instead)."""
    # argparse keeps a parser's actions in the private ``_actions`` list (groups included); there is no public view
    return [a for a in parser._actions if bool(a.option_strings) != positional]


def _default_text(action: argparse.Action) -> str:
    d = action.default
    if d is None:
        return "(default: not set)"
    if isinstance(d, (list, tuple)):
        return f"(default {','.join(str(v) for v in d)})"
    return f"(default {d})"


def _state_default(action: argparse.Action) -> None:
    if action.help == argparse.SUPPRESS or action.dest in ("help", "version"):
        return
    text = (action.help or "").strip()
    if action.nargs == 0:  # a flag: off unless given
        action.help = text or "(off unless given)"
    elif action.required:
        action.help = text or "(required)"
    elif "default" not in text.lower():
        action.help = f"{text} {_default_text(action)}".strip()


def finish(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``--debug``, state defaults and record ``cli_flags`` on ``parser`` and every subcommand below it."""
    flags = {a.dest: max(a.option_strings, key=len) for a in options_of(parser)}
    if "debug" not in flags:
        # SUPPRESS: a subcommand that is not given --debug leaves the top level's value alone
        parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                            help="show the full traceback on errors")
        flags["debug"] = "--debug"
    for action in options_of(parser):
        _state_default(action)
    parser.set_defaults(cli_flags=flags)
    for sub in subparsers_of(parser).values():
        finish(sub)
    return parser
