"""``krylearn bench relax`` on tiny settings: files written, every method present, oracle properties."""

import json
from pathlib import Path

import numpy as np
import pytest

from krylearn.cli.main import main

SYNTHETIC_METHODS = {"omega=1", "omega=1.5", "YoungSpectral", "TsallisINF", "ChebCB", "Young",
                     "best fixed (hindsight)", "instance-optimal"}


def _report(out: Path, stem: str) -> dict:
    for suffix in (".json", ".md", ".png", "-omega.png"):
        f = out / f"{stem}{suffix}"
        assert f.exists() and f.stat().st_size > 0, f
    assert (out / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return json.loads((out / f"{stem}.json").read_text())


def test_bench_relax_synthetic(tmp_path, capsys):
    out = tmp_path / "res"
    rc = main(["bench", "relax", "--sequence", "shifted-low", "--T", "30", "--seeds", "2", "--out", str(out), "-q"])
    assert rc == 0
    printed = capsys.readouterr().out
    rep = _report(out, "relax-shifted-low-n100-T30-s0-sor")
    rows = {r["method"]: r for r in rep["rows"]}
    assert set(rows) == SYNTHETIC_METHODS
    for name in SYNTHETIC_METHODS:  # every method is a row of the printed table
        assert any(line.startswith(f"| {name}") for line in printed.splitlines()), name
    assert rows["TsallisINF"]["seeds"] == 2 and rows["ChebCB"]["seeds"] == 2 and rows["omega=1"]["seeds"] == 1
    total = {k: r["total"]["mean"] for k, r in rows.items()}
    # properties of the oracles (not hard-coded numbers): omega = 1 is the grid's first arm
    assert total["instance-optimal"] <= total["best fixed (hindsight)"] <= total["omega=1"]
    arms = np.asarray(rep["oracles"]["arm_totals"])
    assert total["best fixed (hindsight)"] == arms.min() and total["omega=1"] == arms[0]
    # bandits play grid values, so no instance can beat the per-instance best arm
    for k in ("TsallisINF", "ChebCB"):
        assert rows[k]["total"]["min"] >= total["instance-optimal"]
    # the replays (which give the oracles' seconds) solve exactly what grid_costs counted (x0 = 0)
    for k in ("best fixed (hindsight)", "instance-optimal"):
        assert rows[k]["replay_total"] == total[k]
    assert rows["YoungSpectral"]["extra_matvecs"] > 0
    assert rep["settings"]["solver"] == "sor" and rep["settings"]["rtol"] == 1e-8
    assert rep["settings"]["warm_start"] is False
    # second run: grid costs come from the cache in the results folder, same numbers
    assert rep["oracles"]["grid_costs"]["cached"] is False
    assert main(["bench", "relax", "--sequence", "shifted-low", "--T", "30", "--seeds", "1", "--out", str(out),
                 "-q"]) == 0
    rep2 = json.loads((out / "relax-shifted-low-n100-T30-s0-sor.json").read_text())
    assert rep2["oracles"]["grid_costs"]["cached"] is True
    assert rep2["oracles"]["arm_totals"] == rep["oracles"]["arm_totals"]


def test_bench_relax_heat_file(tmp_path, capsys):
    seq = tmp_path / "heat.h5"
    assert main(["data", "sequence", "--kind", "heat2d", "--n", "6", "--steps", "40", "--dt", "0.025", "-o", str(seq),
                 "-q"]) == 0
    out = tmp_path / "res"
    rc = main(["bench", "relax", "--file", str(seq), "--T", "25", "--seeds", "1", "--out", str(out), "-q"])
    assert rc == 0
    rep = _report(out, "relax-heat2d-n6-T40-0to25-pcg-ssor-warm")
    rows = {r["method"]: r for r in rep["rows"]}
    # SSOR-PCG warm-started: no Young (SOR only), plus the plain-CG reference row
    assert set(rows) == (SYNTHETIC_METHODS - {"Young"}) | {"CG (no precond.)"}
    assert rep["settings"]["solver"] == "pcg-ssor" and rep["settings"]["warm_start"] is True
    assert rep["sequence"]["T"] == 25 and rep["sequence"]["has_contexts"]
    arms = np.asarray(rep["oracles"]["arm_totals"])
    io, bf = rows["instance-optimal"]["total"]["mean"], rows["best fixed (hindsight)"]["total"]["mean"]
    assert io <= bf == arms.min() <= arms[0]
    assert all(r["converged"] == 25 for r in rep["rows"])


def test_bench_relax_bad_arguments(tmp_path, capsys):
    assert main(["bench", "relax", "--T", "0", "--out", str(tmp_path)]) == 2
    assert main(["bench", "relax", "--seeds", "0", "--out", str(tmp_path)]) == 2
    assert main(["bench", "relax", "--file", str(tmp_path / "missing.h5"), "--out", str(tmp_path)]) == 2
    with pytest.raises(SystemExit):
        main(["bench", "relax", "--sequence", "bogus"])
    err = capsys.readouterr().err
    assert "--T must be >= 1" in err and "--seeds must be >= 1" in err and "missing.h5" in err
    for n, kind in (("0", "shifted-low"), ("20", "shifted-high"), ("1", "heat2d")):  # as data sequence checks it
        assert main(["bench", "relax", "--sequence", kind, "--n", n, "--T", "3", "--out", str(tmp_path), "-q"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("krylearn: error: --n must be") and len(err.splitlines()) == 1, err
