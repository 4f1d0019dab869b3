"""Bad input to the LSM, Navier-Stokes, fcg-lsm and DDS commands, and to the device flags: named errors.

Each test drives the command line (``krylearn.cli.main.main``) or the library
on tiny inputs and checks that bad input gives a one-line error naming the
flag or argument, instead of a traceback, a misleading message or a silent run.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from krylearn.cli.main import main
from krylearn.datasets.fastmri import read_ct, read_kspace, write_ct
from krylearn.datasets.pde_formats import write_darcy
from krylearn.problems.darcy import generate_darcy
from krylearn.problems.navier_stokes import generate_navier_stokes
from krylearn.solvers.api import solve
from krylearn.solvers.lsm.recipe import evaluate, train
from krylearn.solvers.lsm.recipe_ns import train_ns


def _err(capsys, argv) -> str:
    """Run ``krylearn argv``; assert it fails with one ``krylearn: error:`` line and return stderr."""
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("krylearn: error:") and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def darcy_file(tmp_path_factory):
    """12 Darcy samples on a 9 x 9 node grid, (N, 9, 9)."""
    rng = np.random.default_rng(0)
    a = np.where(rng.standard_normal((12, 9, 9)) > 0, 12.0, 3.0)
    u = rng.random((12, 9, 9))
    path = tmp_path_factory.mktemp("darcy") / "d.h5"
    write_darcy(path, a, u)
    return path


@pytest.fixture(scope="module")
def ns_file(tmp_path_factory):
    """4 vorticity trajectories of 5 frames (initial + 4) at 8 x 8."""
    path = tmp_path_factory.mktemp("ns") / "ns.h5"
    generate_navier_stokes(path, 4, size=8, steps=4, record_every=0.001, batch=4, progress=False)
    return path


# ------------------------------------------------------------------ data darcy / data ns
def test_data_darcy_unknown_method_refused_before_solving(tmp_path, capsys):
    out = tmp_path / "d.h5"
    err = _err(capsys, ["data", "darcy", "--n", "1", "--res", "9", "--sub", "2", "--workers", "1",
                        "--method", "nope", "-o", out, "-q"])
    assert "--method" in err and "'nope'" in err
    assert not out.exists()
    with pytest.raises(ValueError, match="method"):  # grid="fno" solves directly, so it was never called
        generate_darcy(tmp_path / "e.h5", 1, res=9, sub=2, workers=1, method="nope", progress=False)


def test_data_ns_odd_size_names_size_and_bad_device(tmp_path, capsys):
    err = _err(capsys, ["data", "ns", "--n", "1", "--size", "7", "--steps", "1", "--out", tmp_path / "a.h5", "-q"])
    assert err.split("error: ")[1].startswith("--size") and "even" in err
    with pytest.raises(ValueError, match="^device"):
        generate_navier_stokes(tmp_path / "b.h5", 1, size=8, steps=1, record_every=0.001, device="nope",
                               progress=False)
    if not __import__("torch").cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            generate_navier_stokes(tmp_path / "c.h5", 1, size=8, steps=1, record_every=0.001, device="cuda",
                                   progress=False)


def test_device_flag_is_checked_when_parsed(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["eval", "lsm", "lsm-darcy", "--data", str(tmp_path / "x.h5"), "--device", "nope"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--device" in err and "'nope'" in err and "Traceback" not in err


# ------------------------------------------------------------------ train / eval lsm (Darcy)
def test_train_lsm_sub_leaving_a_degenerate_grid_is_refused(darcy_file):
    with pytest.raises(ValueError, match=r"sub = 5 leaves data_train a 2x2 grid"):
        train("lsm", darcy_file, sub=5, ntrain=4, nval=0, ntest=2, epochs=1, progress=False)


def test_train_lsm_config_and_flags_errors_name_the_flag(darcy_file, tmp_path, capsys):
    base = ["train", "lsm", "--data", darcy_file, "--ntrain", "4", "--nval", "0", "--ntest", "2", "--epochs", "1",
            "--out", tmp_path / "w", "-q"]
    err = _err(capsys, [*base, "--config", "{bad"])
    assert "--config" in err and "JSON" in err
    err = _err(capsys, [*base, "--kind", "fno", "--levels", "3"])
    assert "--levels" in err and "--kind fno" in err and "--config" not in err
    err = _err(capsys, [*base, "--lr", "0"])
    assert err.split("error: ")[1].startswith("--lr must be > 0")
    assert not (tmp_path / "w.safetensors").exists()


def test_eval_lsm_start_past_the_file_is_named(darcy_file, capsys):
    err = _err(capsys, ["eval", "lsm", "lsm-darcy", "--data", darcy_file, "--start", "50"])
    assert "--start = 50" in err and "12" in err and "-38" not in err
    with pytest.raises(ValueError, match="start = 12 is past"):
        evaluate("lsm-darcy", darcy_file, start=12)


# ------------------------------------------------------------------ train / eval lsm --task ns
def test_train_ns_bad_rollout_and_optimiser_settings(ns_file, tmp_path, capsys):
    base = ["train", "lsm", "--task", "ns", "--data", ns_file, "--ntrain", "2", "--nval", "0", "--ntest", "1",
            "--epochs", "1", "--width", "8", "--levels", "2", "--t-in", "2", "--rollout", "2",
            "--out", tmp_path / "w", "-q"]
    assert "--rollout must be >= 1" in _err(capsys, [*base, "--rollout", "0"])
    assert "--t-in must be >= 1" in _err(capsys, [*base, "--t-in", "0"])
    err = _err(capsys, [*base, "--t-in", "4"])
    assert "--data has 5 frames" in err
    assert "--lr must be > 0" in _err(capsys, [*base, "--lr", "0"])
    assert "--half" in _err(capsys, [*base, "--half"])
    assert "--sub = 4" in _err(capsys, [*base, "--sub", "4"])
    assert not (tmp_path / "w.safetensors").exists()
    with pytest.raises(ValueError, match="gamma"):
        train_ns("fno", ns_file, ntrain=2, nval=0, ntest=1, t_in=2, steps=2, gamma=0.0, epochs=1, progress=False)


def test_eval_ns_empty_window_is_a_clear_error(ns_file, tmp_path, capsys):
    stem = tmp_path / "fno-ns"
    train_ns("fno", ns_file, ntrain=2, nval=0, ntest=1, t_in=2, steps=2, epochs=1, out=stem, progress=False,
             config={"modes": 2, "width": 4, "layers": 1})
    err = _err(capsys, ["eval", "lsm", stem, "--data", ns_file, "--start", "4"])
    assert "--start = 4 is past" in err and "torch" not in err
    assert "--count must be >= 1" in _err(capsys, ["eval", "lsm", stem, "--data", ns_file, "--count", "0"])
    err = _err(capsys, ["bench", "ns", "--data", ns_file, "--models", stem, "--start", "4", "--out", tmp_path / "b"])
    assert "--start = 4 is past" in err and "figure" not in err


# ------------------------------------------------------------------ fcg-lsm
def _poisson(n: int):
    """The 5-point Laplacian on an n x n grid: (n^2, n^2) CSR, and a right-hand side of ones."""
    t = sp.diags([-np.ones(n - 1), 2 * np.ones(n), -np.ones(n - 1)], [-1, 0, 1])
    A = (sp.kron(sp.eye(n), t) + sp.kron(t, sp.eye(n))).tocsr()
    return A, np.ones(n * n)


def test_fcg_lsm_errors_name_fcg_lsm_not_mgpcg():
    A, b = _poisson(8)
    for kwargs, pattern in (({}, "grid_shape is required for fcg-lsm"),
                            ({"grid_shape": (2, 4, 8)}, "fcg-lsm works on 2D grids"),
                            ({"grid_shape": (4, 16)}, "fcg-lsm needs a grid Laplacian")):
        with pytest.raises(ValueError, match=pattern) as e:
            solve(A, b, method="fcg-lsm", **kwargs)
        assert "mgpcg" not in str(e.value)
    with pytest.raises(ValueError, match="fcg-lsm needs") as e:
        solve(-A, b, method="fcg-lsm", grid_shape=(8, 8))
    assert "mgpcg" not in str(e.value)


# ------------------------------------------------------------------ train diffusion / reconstruct
def test_train_diffusion_budget_and_ema_errors_name_the_flags(tmp_path, capsys):
    data = tmp_path / "stack.h5"
    with h5py.File(data, "w") as f:
        f["img"] = np.random.default_rng(0).random((3, 16, 16)).astype(np.float32)
    base = ["train", "diffusion", "--kind", "ct", "--data", data, "--val-fraction", "0", "--steps", "1",
            "--size", "16", "--base", "4", "--channel-mult", "1,2", "--batch-size", "1", "--out", tmp_path / "p",
            "-q", "--no-resume"]
    assert "--max-minutes must be positive" in _err(capsys, [*base, "--max-minutes", "0"])
    assert "--ema must lie in [0, 1)" in _err(capsys, [*base, "--ema", "2"])
    assert not (tmp_path / "p.safetensors").exists()


def _mri_file(path, slices: int = 3, n: int = 16) -> None:
    """A fully sampled 2-coil k-space file (slices, 2, n, n) with a (n,) all-true mask."""
    rng = np.random.default_rng(0)
    k = (rng.standard_normal((slices, 2, n, n)) + 1j * rng.standard_normal((slices, 2, n, n))).astype(np.complex64)
    with h5py.File(path, "w") as f:
        f["kspace"] = k
        f["mask"] = np.ones(n, bool)


def test_empty_slice_range_is_an_error_naming_slices(tmp_path, capsys):
    path = tmp_path / "k.h5"
    _mri_file(path)
    for sel in (slice(2, 1), slice(1, 1), slice(5, 9)):
        with pytest.raises(ValueError, match="selects none of the 3 slices"):
            read_kspace(path, slices=sel)
    assert read_kspace(path, slices=slice(1, 9)).kspace.shape[0] == 2  # a range past the end is clipped
    err = _err(capsys, ["reconstruct", "mri", path, "--method", "zero-filled", "--slices", "2:1",
                        "-o", tmp_path / "o.h5", "-q", "--no-previews"])
    assert "--slices = 2:1 selects none" in err
    ct = tmp_path / "ct.h5"
    write_ct(ct, np.ones((2, 4, 12), np.float32), np.linspace(0, np.pi, 4, endpoint=False), image_shape=(8, 8))
    with pytest.raises(ValueError, match="selects none of the 2 slices"):
        read_ct(ct, slices=slice(1, 1))


def test_dds_init_must_be_a_classical_method(tmp_path, capsys):
    path = tmp_path / "k.h5"
    _mri_file(path, slices=1)
    base = ["reconstruct", "mri", path, "--method", "dds", "--nfe", "1", "--start", "0.5", "-o", tmp_path / "o.h5",
            "-q", "--no-previews"]
    for bad in ("nope", "dps"):
        err = _err(capsys, [*base, "--init", bad])
        assert err.split("error: ")[1].startswith("--init must be a classical mri method") and "tv" in err


def test_data_ns_blowing_up_names_dt(tmp_path, capsys):
    """A time step too large for the flow is the user's input: a one-line error naming --dt, not an internal one."""
    assert main(["data", "ns", "--n", "2", "--size", "32", "--dt", "1e-2", "--batch", "2", "-q",
                 "-o", str(tmp_path / "ns.h5")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("krylearn: error: --dt = 0.01 is too large") and not (tmp_path / "ns.h5").exists()


def test_unknown_device_is_a_named_error_in_python_and_on_the_command_line(tmp_path, capsys):
    from krylearn.solvers.learned import pick_device
    with pytest.raises(ValueError, match="device must be a torch device"):
        pick_device("foo")
    with pytest.raises(SystemExit):
        main(["train", "dcdm", "--device", "foo", "--out", str(tmp_path)])
    assert "argument --device: expected a torch device" in capsys.readouterr().err


def test_lsm_levels_beyond_the_grid_are_refused():
    """A U-Net whose coarsest scale is over twice the grid only pads: refused with the largest sensible levels."""
    from krylearn.solvers.lsm.model import lsm_plan
    assert lsm_plan(85) == ((6, 6), (96, 96))  # the paper's setting still plans as before
    with pytest.raises(ValueError, match=r"levels = 9 .* use levels <= 6"):
        lsm_plan(21, levels=9)
    assert lsm_plan(21, levels=6)[1] == (32, 32)


def test_data_mri_acceleration_beyond_the_centre_names_accel(tmp_path, capsys):
    pytest.importorskip("nilearn")
    assert main(["data", "mri", str(tmp_path / "m.h5"), "--slices", "1", "--accel", "40"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("krylearn: error: --accel = 40.0 keeps 2 of 64 columns") and len(err.splitlines()) == 1


def test_a_navier_stokes_file_given_as_darcy_data_says_so(tmp_path, capsys):
    """eval lsm (a Darcy model) and read_darcy on an NS file: the error says it is a Navier-Stokes file."""
    from krylearn.datasets.pde_formats import read_darcy
    from krylearn.utils.errors import FormatError
    ns = tmp_path / "ns.h5"
    generate_navier_stokes(ns, 2, size=16, steps=3, record_every=0.01, dt=1e-3, batch=2)
    with pytest.raises(FormatError, match="Navier-Stokes file"):
        read_darcy(ns)
    assert main(["eval", "lsm", "lsm-darcy", "--data", str(ns)]) == 2
    assert "is a Navier-Stokes file" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_asked_for_on_a_cpu_build_names_device(tmp_path, capsys):
    assert main(["data", "ns", "--n", "2", "--device", "cuda", "-o", str(tmp_path / "x.h5")]) == 2
    assert "krylearn: error: --device = 'cuda' was asked for but CUDA is not available" in capsys.readouterr().err
