"""The krylearn command line: help, solve, data, bench, demo, one-line errors."""

import json
import subprocess
import sys

import numpy as np
import pyamg
import pytest
import scipy.io
import scipy.sparse as sp

from krylearn.cli.main import main


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "krylearn", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


@pytest.mark.parametrize("sub", [[], ["demo"], ["solve"], ["bench"], ["bench", "poisson"],
                                 ["bench", "baselines"], ["bench", "relax"], ["data"], ["data", "poisson"],
                                 ["data", "sequence"], ["bench", "dcdm"], ["bench", "darcy"], ["data", "darcy"],
                                 ["train"], ["train", "dcdm"], ["train", "lsm"], ["eval"], ["eval", "lsm"],
                                 ["bench", "ns"], ["data", "ns"]])
def test_help(sub, capsys):
    with pytest.raises(SystemExit) as e:
        main([*sub, "--help"])
    assert e.value.code == 0
    assert "usage: krylearn" in capsys.readouterr().out


def test_solve_mtx_roundtrip(tmp_path):
    A = pyamg.gallery.poisson((12, 12), format="csr")
    scipy.io.mmwrite(tmp_path / "A.mtx", A)
    b = np.arange(144, dtype=float)
    np.save(tmp_path / "b.npy", b)
    rc = main(["solve", str(tmp_path / "A.mtx"), "--rhs", str(tmp_path / "b.npy"), "--method", "pcg-ic",
               "--rtol", "1e-10", "-o", str(tmp_path / "x.npy")])
    assert rc == 0
    x = np.load(tmp_path / "x.npy")
    assert np.linalg.norm(b - A @ x) <= 1e-10 * np.linalg.norm(b) * 1.01


def test_solve_not_spd_mtx_is_one_line_error(tmp_path):
    A = sp.diags([1.0, -2.0, 3.0, 1.0]).tocsr()
    scipy.io.mmwrite(tmp_path / "indef.mtx", A)
    p = run_cli("solve", str(tmp_path / "indef.mtx"), "--method", "cg")
    assert p.returncode == 2
    err = p.stderr.strip().splitlines()
    assert len(err) == 1 and "not symmetric positive definite" in err[0]
    N = sp.csr_matrix(np.array([[2.0, 1.0], [0.0, 2.0]]))
    scipy.io.mmwrite(tmp_path / "nonsym.mtx", N)
    p = run_cli("solve", str(tmp_path / "nonsym.mtx"), "--method", "cg")
    assert p.returncode == 2 and "not symmetric" in p.stderr and "Traceback" not in p.stderr


@pytest.mark.parametrize("content", [b"", b"garbage that is not hdf5" * 10])
def test_corrupt_h5_is_one_line_error(tmp_path, content):
    f = tmp_path / "bad.h5"
    f.write_bytes(content)
    p = run_cli("solve", str(f))
    assert p.returncode == 2
    assert "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "bad.h5" in p.stderr


def test_missing_file_and_bad_number():
    p = run_cli("solve", "/nonexistent/A.mtx")
    assert p.returncode == 2 and "not found" in p.stderr and "Traceback" not in p.stderr
    p = run_cli("bench", "poisson", "--rtol", "abc")
    assert p.returncode == 2 and "expected a number" in p.stderr


@pytest.mark.parametrize("args,flag", [
    (["dcdm", "--sizes", "16", "--methods", "mgpcg", "--frames", "0"], "--frames"),
    (["dcdm", "--sizes", "16", "--methods", "mgpcg", "--repeats", "0"], "--repeats"),
    (["dcdm", "--sizes", "16", "--methods", "mgpcg", "--warmup", "-1"], "--warmup"),
    (["dcdm", "--sizes", "16", "--methods", "mgpcg", "--rtol-coarse", "1e-9"], "--rtol-coarse"),
    (["poisson", "--n", "16", "--methods", "mgpcg", "--repeats", "0"], "--repeats"),
    (["poisson", "--sequence", "-3"], "--sequence"),
    (["baselines", "--repeats", "0"], "--repeats"),
])
def test_bench_counts_out_of_range_name_the_flag(tmp_path, capsys, args, flag):
    """Zero repeats, no frames, a negative warm-up or sequence, a coarse tolerance below the run's: named errors."""
    assert main(["bench", *args, "--out", str(tmp_path), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"krylearn: error: {flag} must be") and len(err.splitlines()) == 1, err


def test_data_bench_and_demo(tmp_path):
    h5 = tmp_path / "systems.h5"
    assert main(["data", "poisson", "--scene", "smoke-obstacle", "--dim", "2", "--n", "24", "--frames", "3",
                 "-o", str(h5), "-q"]) == 0
    from krylearn.datasets.systems import SystemsFile

    with SystemsFile(h5) as f:
        assert len(f) == 3
    out = tmp_path / "bench"
    assert main(["bench", "poisson", "--file", str(h5), "--methods", "cg,pcg-amg", "--repeats", "1",
                 "--out", str(out), "-q"]) == 0
    [js] = list(out.glob("*.json"))
    report = json.loads(js.read_text())
    assert [r["method"] for r in report["rows"]] == ["cg", "pcg-amg"]
    assert all(r["converged"] and r["final_rel_residual"] <= 1e-6 * 1.01 for r in report["rows"])
    assert list(out.glob("*.png"))
    demo = tmp_path / "demo"
    assert main(["demo", "--n", "16", "--frames", "2", "--out", str(demo), "-q", "--relax-maxiter", "300"]) == 0
    rep = json.loads(next(demo.glob("*.json")).read_text())
    names = {r["method"] for r in rep["rows"]}
    assert {"cg", "pcg-ic", "pcg-amg", "sor", "jacobi"} <= names
    assert next(demo.glob("*.png")).stat().st_size > 1000


def test_installed_import_does_not_shadow_datasets(tmp_path):
    """After install, a top-level ``import datasets`` elsewhere must never find our folder."""
    from pathlib import Path

    import krylearn

    repo = Path(krylearn.__file__).resolve().parent
    code = ("import importlib.util; s = importlib.util.find_spec('datasets'); "
            "print(s.origin if s is not None else None); "
            "print(list(s.submodule_search_locations or []) if s is not None else [])")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert p.returncode == 0, p.stderr
    assert str(repo / "datasets") not in p.stdout
    import krylearn.datasets as kd

    assert Path(kd.__file__).resolve().parent == repo / "datasets"


def test_reconstruct_mri_and_ct_commands(tmp_path, capsys):
    """`krylearn reconstruct` on tiny files: CG-SENSE / FBP write the submission layout and report PSNR."""
    import h5py
    import torch
    from krylearn.datasets.fastmri import write_ct, write_kspace
    from krylearn.problems.phantoms import shepp_logan
    from krylearn.operators.ct import ParallelBeamProjector
    from krylearn.operators.mri import birdcage_maps, fft2c

    x = shepp_logan((32, 32)).astype(np.complex64)
    maps = birdcage_maps(4, (32, 32)).astype(np.complex64)
    full = fft2c(torch.as_tensor(maps * x)).numpy()[None]                      # (1, coils, ky, kx), fully sampled
    write_kspace(tmp_path / "mri.h5", full, sensitivity_maps=maps[None], reconstruction_rss=np.abs(x)[None])
    out = tmp_path / "rec.h5"
    assert main(["reconstruct", "mri", str(tmp_path / "mri.h5"), "--method", "cg-sense", "--accel", "2",
                 "-q", "-o", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert 1.5 < summary["acceleration"] <= 2.0
    with h5py.File(out) as f:
        rec = f["reconstruction"][()]
    assert rec.shape == (1, 32, 32) and rec.dtype == np.float32
    assert np.linalg.norm(rec[0] - np.abs(x)) < 0.2 * np.linalg.norm(np.abs(x))

    angles = np.linspace(0, np.pi, 24, endpoint=False)
    img = shepp_logan((32, 32))
    P = ParallelBeamProjector((32, 32), angles)
    sino = (P @ torch.as_tensor(img[None], dtype=torch.float64)).numpy()
    write_ct(tmp_path / "ct.h5", sino, angles, image_shape=(32, 32), reference=img[None])
    assert main(["reconstruct", "ct", str(tmp_path / "ct.h5"), "--method", "fbp", "-q", "-o",
                 str(tmp_path / "ct-rec.h5")]) == 0
    assert json.loads(capsys.readouterr().out)["psnr"] > 15
    # a prior that does not exist: one-line error naming it
    assert main(["reconstruct", "ct", str(tmp_path / "ct.h5"), "--prior", "no-such-prior", "-q", "-o",
                 str(tmp_path / "x.h5")]) == 2
    assert "no-such-prior" in capsys.readouterr().err


def test_imaging_data_train_and_bench_commands(tmp_path, capsys):
    """`krylearn data mri|ct`, `train diffusion` and `bench mri` end to end on tiny settings."""
    pytest.importorskip("nilearn")
    from krylearn.datasets.fastmri import read_ct, read_kspace
    from krylearn.solvers.dds import load_prior

    assert main(["data", "mri", str(tmp_path / "m.h5"), "--size", "32", "--slices", "2", "--accel", "2"]) == 0
    data = read_kspace(tmp_path / "m.h5")
    assert data.kspace.shape[0] == 2 and data.kspace.shape[-2:] == (32, 32)
    assert main(["data", "ct", str(tmp_path / "c.h5"), "--size", "32", "--slices", "2", "--views", "6"]) == 0
    assert read_ct(tmp_path / "c.h5").sinogram.shape[:2] == (2, 6)
    capsys.readouterr()

    stem = tmp_path / "prior"
    assert main(["train", "diffusion", "--kind", "mri", "--size", "16", "--base", "8", "--channel-mult", "1,2",
                 "--steps", "3", "--batch-size", "2", "--out", str(stem), "-q"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 3 and np.isfinite(summary["val_loss"])
    net, card = load_prior(stem, return_card=True)
    assert card["command"].startswith("krylearn train diffusion") and net.in_channels == 2

    out = tmp_path / "bench"
    assert main(["bench", "mri", "--slices", "1", "--size", "32", "--cases", "uniform1d:2",
                 "--methods", "zero-filled,cg-sense,dds", "--prior", "no-such-prior", "--no-warmup", "--no-images",
                 "--out", str(out), "-q"]) == 0
    text = capsys.readouterr().out
    assert "no-such-prior" in text and "cg-sense" in text
    report = json.loads((out / "mri.json").read_text())
    assert report and (out / "mri.md").is_file()
    with pytest.raises(SystemExit):
        main(["bench", "ct", "--views", "eight"])
