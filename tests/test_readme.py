"""The README runs as printed: every Python block and every ``krylearn`` command line in it.

Python blocks (```python) run in-process, each in a fresh namespace and a
temporary working directory.  Command lines are the lines (or the ``&&``
parts of a line) of ```bash and plain ``` blocks that start with
``krylearn ``; each runs as ``python -m krylearn <same arguments>`` in a
temporary directory shared by the lines of its block, in order (a later line
may read what an earlier one wrote).  ``pip`` and ``pytest`` parts are what CI
itself runs and are skipped here.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

#: The README stays short: the long material lives in docs/ and benchmarks/README.md.
MAX_LINES = 320

#: Words about how the package was built, which mean nothing to a user.
FORBIDDEN = {
    "issue N": r"\bissues?\s*#?\d+",
    "the issue's": r"\bthe issue'?s?\b",
    "task": r"\btasks?\b",
    "lent": r"\blent\b",
    "helper": r"\bhelpers?\b",
    "session": r"\bsessions?\b",
    "../shared": r"\.\./shared",
    "DESIGN.md": r"\bDESIGN\.md\b",
}

_FENCE = re.compile(r"^```([A-Za-z0-9_+-]*)[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def _text() -> str:
    return README.read_text(encoding="utf-8")


def _blocks(text: str) -> list[tuple[str, str, int]]:
    """``(language, body, first line number)`` of every fenced block."""
    return [(m.group(1).lower(), m.group(2), text.count("\n", 0, m.start()) + 2) for m in _FENCE.finditer(text)]


def _python_blocks():
    return [pytest.param(body, id=f"line{line}") for lang, body, line in _blocks(_text()) if lang in ("python", "py")]


def command_lines(body: str) -> list[list[str]]:
    """The ``krylearn ...`` commands of a shell block, as argument lists (comments dropped)."""
    commands = []
    for line in body.splitlines():
        for part in line.split("&&"):
            words = shlex.split(part, comments=True)
            if words and words[0] == "krylearn":
                commands.append(words)
    return commands


def _shell_blocks():
    found = []
    for lang, body, line in _blocks(_text()):
        commands = command_lines(body) if lang in ("", "bash", "sh", "shell", "console") else []
        if commands:
            found.append(pytest.param(commands, id=f"line{line}"))
    return found


def test_readme_is_short():
    n = len(_text().splitlines())
    assert n <= MAX_LINES, f"README.md has {n} lines; keep it under {MAX_LINES} (details go to docs/)"


def test_readme_has_no_internal_words():
    text = _text()
    hits = {name: re.findall(pattern, text, flags=re.IGNORECASE) for name, pattern in FORBIDDEN.items()}
    assert not {k: v for k, v in hits.items() if v}


def test_readme_has_examples_and_commands():
    assert len(_python_blocks()) >= 6  # solve, Solver, DCDM, bandit, LSM, DDS
    assert any(c[:2] == ["krylearn", "demo"] for p in _shell_blocks() for c in p.values[0])


@pytest.mark.parametrize("doc", ["README.md", "benchmarks/README.md", *sorted(
    str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))])
def test_relative_links_resolve(doc):
    path = ROOT / doc
    targets = re.findall(r"\]\(([^)\s]+)\)", path.read_text(encoding="utf-8"))
    local = [t.split("#")[0] for t in targets if not re.match(r"[a-z]+:", t) and not t.startswith("#")]
    assert local, f"{doc} links nowhere"
    missing = [t for t in local if not (path.parent / t).exists()]
    assert not missing, f"{doc} links to missing files: {missing}"


def test_command_lines_parsing():
    body = "pip install x && krylearn demo  # the demo\nkrylearn solve 'a b.mtx' -o x.npy\npytest -q\n"
    assert command_lines(body) == [["krylearn", "demo"], ["krylearn", "solve", "a b.mtx", "-o", "x.npy"]]


@pytest.mark.parametrize("code", _python_blocks())
def test_python_block_runs(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    exec(compile(code, str(README), "exec"), {"__name__": "__readme__"})


@pytest.mark.parametrize("commands", _shell_blocks())
def test_command_lines_run(commands, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    for words in commands:
        proc = subprocess.run([sys.executable, "-m", "krylearn", *words[1:]], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{shlex.join(words)} exited {proc.returncode}:\n{proc.stdout[-2000:]}" \
                                     f"\n{proc.stderr[-4000:]}"
