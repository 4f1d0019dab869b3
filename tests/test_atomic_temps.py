"""Temporary files left by interrupted atomic writes are cleaned up by the next write of the same target."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

from krylearn.utils import atomic
from krylearn.utils.atomic import atomic_write_text, remove_stale_temps


def _temps(folder, name):
    return sorted(p for p in os.listdir(folder) if p.startswith(f".{name}.tmp-"))


def _age(path, seconds):
    t = time.time() - seconds
    os.utime(path, (t, t))


def _interrupted_write(target):
    """Run a process that dies inside ``atomic_path`` after writing half a file; return its temp file."""
    code = textwrap.dedent(f"""
        import os
        from krylearn.utils.atomic import atomic_path
        with atomic_path({str(target)!r}) as tmp:
            with open(tmp, "w") as f:
                f.write("half a file")
            os._exit(3)  # killed mid-write: no cleanup runs
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 3, proc.stderr
    left = _temps(target.parent, target.name)
    assert len(left) == 1
    return target.parent / left[0]


def test_interrupted_write_leaves_a_temp_that_the_next_write_removes(tmp_path):
    target = tmp_path / "data.h5"
    stale = _interrupted_write(target)
    assert not target.exists()
    # a fresh temp of a dead writer is kept for a grace period (its writer might be in another pid namespace)
    atomic_write_text(target, "first")
    assert stale.exists()
    _age(stale, atomic.DEAD_WRITER_GRACE_SECONDS + 5)
    atomic_write_text(target, "second")
    assert not stale.exists()
    assert target.read_text() == "second"
    assert _temps(tmp_path, target.name) == []


def test_live_writers_and_other_targets_are_left_alone(tmp_path):
    target = tmp_path / "a.txt"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = tmp_path / f".a.txt.tmp-{sleeper.pid}-{atomic._HOST_TAG}-0123abcd"
        other_host = tmp_path / ".a.txt.tmp-999999-ffffff-0123abcd"
        other_target = tmp_path / ".a.txt.tmp-1.tmp-999999-0123abcd"  # a temp of the file "a.txt.tmp-1"
        for p in (live, other_host, other_target):
            p.write_text("partial")
            _age(p, 3600)
        assert remove_stale_temps(target) == []
        assert live.exists() and other_host.exists() and other_target.exists()
        # untouched for longer than STALE_AFTER_SECONDS: stale whoever wrote it
        _age(live, atomic.STALE_AFTER_SECONDS + 5)
        _age(other_host, atomic.STALE_AFTER_SECONDS + 5)
        removed = remove_stale_temps(target)
        assert sorted(removed) == sorted([str(live), str(other_host)])
        assert other_target.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_old_style_temp_names_are_removed_by_age_only(tmp_path):
    target = tmp_path / "s.h5"
    old = tmp_path / ".s.h5.tmp-999999-0123abcd"  # name of a krylearn version without the host tag
    old.write_text("partial")
    _age(old, 3600)
    assert remove_stale_temps(target) == []
    _age(old, atomic.STALE_AFTER_SECONDS + 5)
    assert remove_stale_temps(target) == [str(old)]


def test_remove_stale_temps_checks_its_arguments(tmp_path):
    with pytest.raises(ValueError, match="stale_after"):
        remove_stale_temps(tmp_path / "x", stale_after=-1)
