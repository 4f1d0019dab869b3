"""``python -m krylearn ...``: the same as the ``krylearn`` command."""

from krylearn.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
