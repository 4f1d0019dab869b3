"""``krylearn solve`` / ``demo`` / ``bench poisson`` with bad input: indices, grids for DCDM, complex right-hand sides."""

from __future__ import annotations

import json

import numpy as np
import pyamg
import pytest
import scipy.io
import scipy.sparse as sp

from krylearn.cli.main import main
from krylearn.datasets.systems import SystemsFile, SystemsWriter


@pytest.fixture(scope="module")
def systems(tmp_path_factory):
    """Four smoke-frame pressure systems on a 16 x 16 grid (grid shape and cell flags stored)."""
    path = tmp_path_factory.mktemp("sys") / "s.h5"
    assert main(["data", "poisson", "--n", "16", "--frames", "4", "-o", str(path), "-q"]) == 0
    return path


@pytest.fixture()
def poisson_mtx(tmp_path):
    """A 16 x 16 grid Laplacian in Matrix Market form (no grid stored)."""
    path = tmp_path / "A.mtx"
    scipy.io.mmwrite(path, pyamg.gallery.poisson((16, 16), format="csr"))
    return path


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def _relres(path, i, x) -> float:
    with SystemsFile(path) as f:
        s = f[i]
    b = np.asarray(s.b)[0]
    return float(np.linalg.norm(b - s.A @ x) / np.linalg.norm(b))


@pytest.mark.parametrize("index", ["9", "4", "-5"])
def test_an_index_outside_the_file_is_a_one_line_error(systems, tmp_path, capsys, index):
    assert main(["solve", str(systems), "--index", index, "-o", str(tmp_path / "x.npy")]) == 2
    line = _one_line(capsys.readouterr().err)
    assert f"system index {index} is out of range" in line and "0 to 3" in line
    assert not (tmp_path / "x.npy").exists()


def test_negative_indices_count_from_the_end(systems, tmp_path, capsys):
    assert main(["solve", str(systems), "--index", "-1", "--rtol", "1e-10", "-o", str(tmp_path / "x.npy")]) == 0
    x = np.load(tmp_path / "x.npy")
    assert _relres(systems, 3, x) <= 1e-10 * 1.01
    assert _relres(systems, 1, x) > 1e-6  # not another frame's system


def test_a_file_without_systems_is_a_one_line_error(tmp_path, capsys):
    path = tmp_path / "empty.h5"
    with SystemsWriter(path, generator="test", parameters={}, seed=None):
        pass
    assert main(["solve", str(path)]) == 2
    assert "holds no systems" in _one_line(capsys.readouterr().err)


def test_dcdm_reads_the_grid_the_file_stores(systems, tmp_path, capsys):
    assert main(["solve", str(systems), "--index", "2", "--method", "dcdm", "-o", str(tmp_path / "x.npy")]) == 0
    assert "method='dcdm'" in capsys.readouterr().out
    assert _relres(systems, 2, np.load(tmp_path / "x.npy")) <= 1e-6 * 1.01


def test_dcdm_on_a_matrix_market_file_needs_grid_shape(poisson_mtx, tmp_path, capsys):
    assert main(["solve", str(poisson_mtx), "--method", "dcdm"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "--grid-shape NY,NX" in line and "grid_shape=" not in line
    assert main(["solve", str(poisson_mtx), "--method", "dcdm", "--grid-shape", "16,16", "-o",
                 str(tmp_path / "x.npy")]) == 0
    A = scipy.io.mmread(poisson_mtx).tocsr()
    x = np.load(tmp_path / "x.npy")
    b = np.ones(A.shape[0])
    assert np.linalg.norm(b - A @ x) <= 1e-6 * np.linalg.norm(b) * 1.01
    capsys.readouterr()
    assert main(["solve", str(poisson_mtx), "--method", "dcdm", "--grid-shape", "8,8"]) == 2
    assert "--grid-shape 8,8 has 64 cells but A has 256 rows" in _one_line(capsys.readouterr().err)
    with pytest.raises(SystemExit):
        main(["solve", str(poisson_mtx), "--grid-shape", "16"])


def test_grid_shape_must_agree_with_the_stored_grid(systems, capsys):
    assert main(["solve", str(systems), "--method", "dcdm", "--grid-shape", "8,32"]) == 2
    assert "differs from the grid the file stores" in _one_line(capsys.readouterr().err)


def test_demo_and_bench_skip_dcdm_with_a_note_when_no_grid_is_known(poisson_mtx, tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--file", str(poisson_mtx), "--methods", "cg,dcdm", "--out", str(out), "-q"]) == 0
    text = capsys.readouterr().out
    assert "note: skipping dcdm" in text and "--grid-shape" in text
    assert [r["method"] for r in json.loads((out / "A.json").read_text())["rows"]] == ["cg"]
    out = tmp_path / "bench"
    assert main(["bench", "poisson", "--file", str(poisson_mtx), "--methods", "cg,dcdm", "--grid-shape", "16,16",
                 "--repeats", "1", "--out", str(out), "-q"]) == 0
    rows = json.loads((out / "A.json").read_text())["rows"]
    assert [r["method"] for r in rows] == ["cg", "dcdm"] and all(r["converged"] for r in rows)


def test_demo_runs_dcdm_on_a_file_that_stores_its_grid(systems, tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--file", str(systems), "--methods", "cg,dcdm", "--out", str(out), "-q"]) == 0
    assert "note" not in capsys.readouterr().out
    rows = json.loads(next(out.glob("*.json")).read_text())["rows"]
    assert [r["method"] for r in rows] == ["cg", "dcdm"] and rows[1]["converged"]


def test_a_complex_rhs_for_a_real_matrix_keeps_its_imaginary_part(poisson_mtx, tmp_path, capsys):
    b = np.ones(256) + 1j * np.linspace(0, 1, 256)
    np.save(tmp_path / "b.npy", b)
    assert main(["solve", str(poisson_mtx), "--rhs", str(tmp_path / "b.npy"), "--method", "pcg-ic",
                 "--rtol", "1e-10", "-o", str(tmp_path / "x.npy")]) == 0
    A = scipy.io.mmread(poisson_mtx).tocsr()
    x = np.load(tmp_path / "x.npy")
    assert np.iscomplexobj(x) and np.abs(x.imag).max() > 0
    assert np.linalg.norm(b - A @ x) <= 1e-10 * np.linalg.norm(b) * 1.01
    assert main(["solve", str(poisson_mtx), "--rhs", str(tmp_path / "b.npy"), "--method", "dcdm",
                 "--grid-shape", "16,16"]) == 2  # DCDM is real-only, and says so in one line
    assert "real" in _one_line(capsys.readouterr().err)
    np.save(tmp_path / "real.npy", b.real.astype(np.complex128))  # complex dtype, zero imaginary part: real
    assert main(["solve", str(poisson_mtx), "--rhs", str(tmp_path / "real.npy"), "-o", str(tmp_path / "x.npy")]) == 0
    assert not np.iscomplexobj(np.load(tmp_path / "x.npy"))


def test_a_complex_rhs_for_a_complex_hermitian_matrix_is_solved(tmp_path):
    L = pyamg.gallery.poisson((6, 6), format="csr")
    A = (L + 0.5j * (sp.eye(36, k=1) - sp.eye(36, k=-1))).tocsr()  # Hermitian positive definite
    scipy.io.mmwrite(tmp_path / "H.mtx", A)
    b = np.exp(1j * np.arange(36))
    np.save(tmp_path / "b.npy", b)
    assert main(["solve", str(tmp_path / "H.mtx"), "--rhs", str(tmp_path / "b.npy"), "--method", "cg",
                 "--rtol", "1e-10", "-o", str(tmp_path / "x.npy")]) == 0
    x = np.load(tmp_path / "x.npy")
    assert np.iscomplexobj(x) and np.linalg.norm(b - A @ x) <= 1e-10 * np.linalg.norm(b) * 1.01
