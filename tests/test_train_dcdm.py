"""``krylearn train dcdm`` with bad inputs: another run's checkpoint, stale Ritz caches, corrupt files, unwritable output."""

from __future__ import annotations

import json
import shutil

import pytest

from krylearn.cli.main import main
from krylearn.solvers.dcdm.recipe import cached_data_path, load_training_data, make_training_data, train
from krylearn.utils.errors import FormatError

TINY = ["--arch", "cnn", "--dim", "2", "--ritz", "30", "--steps", "4", "--batch", "2", "--width", "4", "--levels", "2", "-q"]


def _train(out, n=12, *extra):
    return main(["train", "dcdm", "--n", str(n), "--out", str(out), *TINY, *extra])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("dcdm")
    assert _train(out) == 0
    return out


def test_resuming_on_other_data_is_refused_naming_the_data(trained, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(trained, out)
    card = json.loads((out / "dcdm-2d.json").read_text())
    capsys.readouterr()
    assert _train(out, 14) == 2  # a 12^2 run resumed on 14^2 data
    err = capsys.readouterr().err
    assert "checkpoint.pt was written by a different run (differs in data)" in err and "internal error" not in err
    assert json.loads((out / "dcdm-2d.json").read_text()) == card  # nothing claims the new data
    assert _train(out, 12, "--steps", "6") == 0  # the same run may continue
    assert json.loads((out / "dcdm-2d.json").read_text())["training"]["steps"] == 6


def test_the_ritz_cache_is_keyed_by_its_parameters(trained, tmp_path):
    kw = dict(dim=2, n=12, seed=100, frame=8)
    path = cached_data_path(trained, ritz=30, **kw)
    assert path.is_file() and path.name.startswith("ritz-2d-12-")
    assert cached_data_path(trained, ritz=20, **kw) != path
    assert cached_data_path(trained, ritz=30, **{**kw, "seed": 101}) != path
    card = json.loads((trained / "dcdm-2d.json").read_text())
    assert card["data"]["file"] == str(path) and card["data"]["training_matrices"][0]["ritz_vectors"] == 30
    other = cached_data_path(tmp_path, ritz=20, **kw)
    shutil.copy(path, other)  # a file made with ritz=30 under the name of ritz=20
    with pytest.raises(FormatError, match=r"parameters: made from other parameters than asked for \(ritz differ\)"):
        train(dim=2, n=12, ritz=20, out=tmp_path, steps=1, progress=False)


def test_a_corrupt_checkpoint_names_the_file(trained, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(trained, out)
    (out / "checkpoint.pt").write_bytes(b"PK\x03\x04 truncated")
    capsys.readouterr()
    assert _train(out, 12, "--steps", "6") == 2
    err = capsys.readouterr().err
    assert "checkpoint.pt: corrupt or truncated checkpoint" in err
    assert "weights_only" not in err and "internal error" not in err


def test_an_unwritable_output_fails_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert _train(blocker / "out") == 2
    assert "out: cannot write to the folder" in capsys.readouterr().err
    assert _train(tmp_path / "ok", 12, "--save", str(blocker / "w" / "model")) == 2
    assert "save: cannot write to the folder" in capsys.readouterr().err
    assert not list((tmp_path / "ok").glob("*.h5"))  # no training data was made


def test_training_data_round_trip_checks_its_parameters(tmp_path):
    path = make_training_data(tmp_path / "r.h5", dim=2, n=8, scenes=("smoke-plume",), ritz=10, progress=False)
    systems = load_training_data(path)
    assert len(systems) == 1 and systems[0].vectors.shape[0] <= 10
    with pytest.raises(FormatError, match="n differ"):
        load_training_data(path, parameters={"dim": 2, "n": 9, "scenes": ["smoke-plume"], "seed": 100, "frame": 8,
                                             "ritz": 10, "lanczos": "full re-orthogonalisation, start A @ randn(seed)",
                                             "ritz_min_value": 1e-8})
