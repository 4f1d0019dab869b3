"""The prepared GPU run for LSM (benchmarks/run_gpu_lsm.sh) works end to end, run on the CPU at toy sizes.

A GPU session has minutes, not hours, so the script must not fail on its
first real run: each stage makes its data, times a short training run,
trains for the epochs that fit its budget and scores the test file.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "run_gpu_lsm.sh"


def _run(stage: str, tmp_path: Path, **env) -> subprocess.CompletedProcess:
    bindir = tmp_path / "bin"  # the script calls python3: make it this interpreter
    bindir.mkdir(exist_ok=True)
    (bindir / "python3").symlink_to(sys.executable)
    full = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", "OUT": str(tmp_path / "out"),
            "WORK": str(tmp_path / "work"), "DEVICE": "cpu", "OMP_NUM_THREADS": "1", **env}
    return subprocess.run(["bash", str(SCRIPT), stage], capture_output=True, text=True, env=full, timeout=600)


def _trained_in_budget(log: str, name: str, card_path: Path, probe_path: Path, minutes: float) -> None:
    """The epochs announced for ``name`` are those of the probe's pace that fit ``minutes``; the run kept to them."""
    card, probe = json.loads(card_path.read_text()), json.loads(probe_path.read_text())
    fit = max(1, int(0.9 * minutes * 60 / (probe["seconds"] / probe["epochs"])))
    assert f"{name}: " in log and f"training {fit} epochs" in log.split(f"{name}: ", 1)[1].splitlines()[0]
    assert 1 <= card["epochs"] <= fit  # --max-minutes may stop it early on a loaded machine


def test_darcy_stage_makes_data_trains_in_budget_and_scores(tmp_path):
    p = _run("darcy", tmp_path, DARCY_N="24", DARCY_TEST="4", DARCY_RES="106", DARCY_WIDTH="8",
             DARCY_MINUTES="0.1", DARCY_BASELINE="")
    assert p.returncode == 0, p.stderr[-2000:]
    out = tmp_path / "out"
    _trained_in_budget((out / "darcy.txt").read_text(), "lsm-darcy-w8", out / "lsm-darcy-w8.json",
                       tmp_path / "work" / "lsm-darcy-w8-probe.json", 0.1)
    report = json.loads((out / "darcy.json").read_text())
    assert report["models"][0]["rel_l2_mean"] < 1.0  # trained: better than predicting zero


@pytest.mark.slow
def test_ns_stage_makes_data_trains_both_models_and_rolls_out(tmp_path):
    p = _run("ns", tmp_path, NS_TRAIN="8", NS_VAL="2", NS_TEST="3", NS_SIZE="32", NS_DT="2e-3", NS_BATCH="13",
             NS_WIDTH="8", NS_MINUTES_LSM="0.1", NS_MINUTES_FNO="0.1")
    assert p.returncode == 0, p.stderr[-2000:]
    out = tmp_path / "out"
    for name in ("lsm-ns-w8", "fno-ns"):
        _trained_in_budget((out / "ns.txt").read_text(), name, out / f"{name}.json",
                           tmp_path / "work" / f"{name}-probe.json", 0.1)
    assert (out / "ns-rollout.png").exists() and "persistence" in (out / "ns.md").read_text()


def test_unknown_stage_is_refused(tmp_path):
    p = _run("lsm", tmp_path)
    assert p.returncode == 2 and "usage" in p.stderr
