"""LSM end to end: the training recipe, evaluation, the Darcy benchmark and warm starts (tiny, fast)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from krylearn.problems.darcy import generate_darcy, solve_darcy
from krylearn.datasets.pde_formats import read_darcy, write_darcy
from krylearn.operators.darcy import darcy_system, interior
from krylearn.solvers.lsm import LSM2d, load_pretrained, predict
from krylearn.solvers.lsm.warm import warm_start

import krylearn
from krylearn.solvers.lsm.bench import (
    format_darcy_table,
    run_darcy_benchmark,
    warm_start_study,
)
from krylearn.solvers.lsm.recipe import count_samples, evaluate, train

TINY = {"width": 8, "num_basis": 4, "num_token": 2, "levels": 3}


@pytest.fixture(scope="module")
def darcy_file(tmp_path_factory):
    """24 samples solved at 33 nodes, sub-sampled to 17 x 17."""
    path = tmp_path_factory.mktemp("data") / "tiny.h5"
    generate_darcy(path, 24, res=33, sub=2, seed=0, workers=1, progress=False, grid="node")
    return path


@pytest.fixture(scope="module")
def trained(darcy_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("weights")
    card = train("lsm", darcy_file, ntrain=12, nval=4, ntest=8, config=TINY, epochs=2, batch_size=4,
                 out=out / "tiny-lsm", checkpoint=out / "tiny-lsm.ckpt", progress=False, command="pytest")
    return card, out / "tiny-lsm"


# ------------------------------------------------------------------ recipe
def test_train_writes_weights_card_log_and_plot(trained, darcy_file):
    card, stem = trained
    for suffix in (".safetensors", ".json"):
        assert stem.with_suffix(suffix).is_file()
    assert stem.with_name("tiny-lsm-loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not stem.with_name("tiny-lsm-log.jsonl").exists()  # the live log is folded into -log.json
    log = json.loads(stem.with_name("tiny-lsm-log.json").read_text())
    assert [r["epoch"] for r in log["history"]] == [1, 2]
    assert log["history"][-1]["train"] == card["metrics"]["train_rel_l2_last_epoch"]
    assert min(r["val"] for r in log["history"]) == card["metrics"]["best_val_rel_l2"]

    on_disk = json.loads(stem.with_suffix(".json").read_text())
    assert on_disk["metrics"] == card["metrics"] and on_disk["command"] == "pytest"
    assert card["kind"] == "lsm" and card["epochs"] == 2 and card["seed"] == 0
    assert card["parameters"] == sum(p.numel() for p in LSM2d(**TINY).parameters())
    data = card["data"]
    assert (data["train"]["start"], data["train"]["count"]) == (0, 12)
    assert (data["val"]["start"], data["val"]["count"]) == (12, 4)
    assert (data["test"]["start"], data["test"]["count"]) == (16, 8)
    assert data["test"]["origin"].startswith("data_train") and data["resolution"] == [17, 17]
    assert data["provenance"]["grid"] == "node" and data["provenance"]["res"] == 33


def test_evaluate_and_predict_reproduce_the_cards_test_metric(trained, darcy_file):
    card, stem = trained
    ev = evaluate(stem, darcy_file, start=16, count=8)
    assert ev["rel_l2_mean"] == pytest.approx(card["metrics"]["test_rel_l2"], rel=1e-6)
    assert ev["rel_l2_max"] == pytest.approx(card["metrics"]["test_rel_l2_max"], rel=1e-6)
    d = read_darcy(darcy_file, start=16, count=8)
    u = predict(d.a, model=str(stem))
    rel = np.linalg.norm((u - d.u).reshape(8, -1), axis=1) / np.linalg.norm(d.u.reshape(8, -1), axis=1)
    assert rel.mean() == pytest.approx(card["metrics"]["test_rel_l2"], rel=1e-5)


def test_resume_continues_from_the_checkpoint(trained, darcy_file, tmp_path):
    _, stem = trained
    import shutil

    ckpt = tmp_path / "c.ckpt"
    shutil.copy(stem.with_suffix(".ckpt"), ckpt)
    card = train("lsm", darcy_file, ntrain=12, nval=4, ntest=8, config=TINY, epochs=3, batch_size=4,
                 out=tmp_path / "resumed", checkpoint=ckpt, progress=False)
    log = json.loads((tmp_path / "resumed-log.json").read_text())
    first = json.loads(stem.with_name("tiny-lsm-log.json").read_text())["history"]
    assert card["epochs"] == 3 and len(log["history"]) == 3
    assert log["history"][:2] == first  # epochs 1-2 restored, not retrained


def test_separate_test_file_and_another_kind(darcy_file, tmp_path):
    d = read_darcy(darcy_file, start=18, count=6)
    test_file = tmp_path / "test.h5"
    write_darcy(test_file, d.a, d.u)
    card = train("fno", darcy_file, test_file, ntrain=12, nval=0, ntest=6, config={"modes": 4, "width": 8, "layers": 2},
                 epochs=1, batch_size=4, out=tmp_path / "fno", progress=False)
    assert card["data"]["test"]["origin"].startswith("data_test") and card["data"]["test"]["start"] == 0
    assert card["data"]["val"] is None and card["metrics"]["best_val_rel_l2"] is None
    ev = evaluate(tmp_path / "fno", test_file)
    assert ev["rel_l2_mean"] == pytest.approx(card["metrics"]["test_rel_l2"], rel=1e-6)
    assert load_pretrained(tmp_path / "fno").net.kind == "fno"


def test_bad_arguments_name_themselves(trained, darcy_file, tmp_path):
    _, stem = trained
    assert count_samples(darcy_file) == 24
    with pytest.raises(ValueError, match="kind"):
        train("transformer", darcy_file, ntrain=4, nval=0, ntest=2, epochs=1)
    with pytest.raises(ValueError, match="ntrain"):
        train("lsm", darcy_file, ntrain=20, nval=8, ntest=1, config=TINY, epochs=1)
    with pytest.raises(ValueError, match="ntest"):
        train("lsm", darcy_file, ntrain=12, nval=4, ntest=9, config=TINY, epochs=1)
    with pytest.raises(FileNotFoundError, match="data_train"):
        train("lsm", tmp_path / "missing.h5", config=TINY, epochs=1)
    small = tmp_path / "coarse.h5"
    d = read_darcy(darcy_file, count=4, sub=2)  # 9 x 9
    write_darcy(small, d.a, d.u)
    with pytest.raises(ValueError, match="data_test"):
        train("lsm", darcy_file, small, ntrain=12, nval=4, ntest=2, config=TINY, epochs=1)
    with pytest.raises(ValueError, match="resample"):
        evaluate(stem, darcy_file, start=16, count=4, sub=2)
    with pytest.raises(ValueError, match="count"):
        evaluate(stem, darcy_file, start=20, count=8)
    ev = evaluate(stem, darcy_file, start=16, count=4, sub=2, resample=True)  # 9x9 -> predicted on 17x17
    assert ev["resolution"] == [9, 9] and ev["model_resolution"] == [17, 17] and np.isfinite(ev["rel_l2_mean"])


# ------------------------------------------------------------------ benchmark
def test_benchmark_writes_its_files_and_agrees_with_evaluate(trained, darcy_file, tmp_path):
    card, stem = trained
    rep = run_darcy_benchmark(darcy_file, models=[stem], count=8, warm_count=3, repeats=1, out_dir=tmp_path,
                              progress=False)
    assert rep["data"]["start"] == 16  # the test range of the model's card
    row = rep["models"][0]
    assert row["model"] == "tiny-lsm" and row["overlaps_training"] is None
    assert row["rel_l2_mean"] == pytest.approx(card["metrics"]["test_rel_l2"], rel=1e-6)
    copied = {"parameters": "parameters", "train_seconds": "seconds"}  # bench row field -> card field
    for row_key, card_key in copied.items():
        assert row[row_key] == card[card_key], row_key
    for name in ("darcy.json", "darcy.md", "darcy-samples-tiny-lsm.png", "darcy-warmstart.png"):
        assert (tmp_path / name).is_file(), name
    on_disk = json.loads((tmp_path / "darcy.json").read_text())
    assert on_disk["models"][0]["rel_l2"] == row["rel_l2"]
    rows = {(r["method"], r["x0"]): r for r in rep["warm_start"]["rows"]}
    assert set(rows) == {(m, g) for m in ("cg", "pcg-amg") for g in ("zero", "tiny-lsm", "stored u (data)")}
    assert all(r["all_converged"] for r in rows.values())
    # the stored u was solved on a finer grid: it is not the 17x17 finite-difference solution
    assert 1e-4 < rep["fd_vs_data"]["rel_l2_median"] < 0.2
    table = (tmp_path / "darcy.md").read_text()
    assert table == format_darcy_table(rep) + "\n" and "tiny-lsm" in table and "rtol = 1e-08" in table


def test_benchmark_of_two_models_with_one_name_writes_two_figures(trained, darcy_file, tmp_path):
    _, stem = trained
    rep = run_darcy_benchmark(darcy_file, models=[stem, stem], count=2, warm_start=False, repeats=1,
                              out_dir=tmp_path, progress=False)
    assert [r["model"] for r in rep["models"]] == ["tiny-lsm", "tiny-lsm'"]
    figures = rep["files"]["figures"]
    assert len(set(figures)) == 2 and all(os.path.isfile(f) for f in figures)


def test_benchmark_flags_samples_the_model_was_trained_on(trained, darcy_file):
    _, stem = trained
    with pytest.warns(UserWarning, match="overlap"):
        rep = run_darcy_benchmark(darcy_file, models=[stem], start=0, count=4, warm_start=False, repeats=1,
                                  progress=False)
    assert rep["models"][0]["overlaps_training"] == ["train [0, 12)"]
    assert rep["warm_start"]["rows"] == [] and rep["amg"]["iterations_median"] > 0


def test_warm_start_from_the_exact_solution_needs_no_iterations(darcy_file):
    d = read_darcy(darcy_file, count=3)
    a = d.a.astype(np.float64)
    exact = np.stack([solve_darcy(ai, method="direct", grid="node") for ai in a])
    study = warm_start_study(a, {"exact": exact}, u_data=exact, methods=("cg", "pcg-amg"), rtol=1e-8,
                             progress=False)
    for m in ("cg", "pcg-amg"):
        assert max(study["runs"][m]["exact"]["iterations"]) <= 1
        assert min(study["runs"][m]["zero"]["iterations"]) > 1
        assert all(study["runs"][m]["zero"]["converged"])
    assert min(study["runs"]["cg"]["zero"]["iterations"]) > 20
    assert max(study["fd_vs_data"]) < 1e-12 and max(study["runs"]["cg"]["exact"]["x0_error_vs_fd"]) < 1e-12
    with pytest.raises(ValueError, match="zero"):
        warm_start_study(a, {"zero": exact})
    with pytest.raises(ValueError, match="guesses"):
        warm_start_study(a, {"x": exact[:, 1:]})


# ------------------------------------------------------------------ warm_start
def test_warm_start_gives_the_systems_unknowns(trained, darcy_file):
    _, stem = trained
    d = read_darcy(darcy_file, start=16, count=3)
    A, b = darcy_system(d.a[0])
    x0 = warm_start(d.a[0], model=str(stem))
    assert x0.shape == (A.shape[0],) == b.shape and x0.dtype == np.float64
    np.testing.assert_allclose(x0, interior(predict(d.a[0], model=str(stem))), rtol=1e-6)
    batch = warm_start(torch.from_numpy(d.a), model=str(stem))
    assert batch.shape == (3, A.shape[0])
    np.testing.assert_allclose(batch[0], x0, rtol=1e-5, atol=1e-9)
    res = krylearn.solve(A, b, method="pcg-amg", x0=x0, rtol=1e-8)
    assert res.converged and np.linalg.norm(b - A @ res.x) <= 1e-8 * np.linalg.norm(b) * (1 + 1e-6)


def test_warm_start_rejects_bad_coefficients(trained):
    _, stem = trained
    with pytest.raises(ValueError, match="a must have shape"):
        warm_start(np.ones(17), model=str(stem))
    with pytest.raises(ValueError, match="positive"):
        warm_start(-np.ones((17, 17)), model=str(stem))
    with pytest.raises(ValueError, match="NaN"):
        warm_start(np.full((17, 17), np.nan), model=str(stem))
    with pytest.raises(TypeError, match="a must be"):
        warm_start([[1.0] * 17] * 17, model=str(stem))
