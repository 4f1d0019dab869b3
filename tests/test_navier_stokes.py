"""Navier–Stokes vorticity data: FNO's solver and random field, analytic solutions, invariants, files, CLI."""

from __future__ import annotations

import json
import math

import h5py
import numpy as np
import pytest
import scipy.io
import torch

from krylearn.cli.main import main
from krylearn.datasets.ns_formats import detect_ns_format, read_navier_stokes, write_navier_stokes
from krylearn.datasets.pde_formats import write_darcy
from krylearn.problems.navier_stokes import (
    gaussian_rf_torus,
    generate_navier_stokes,
    navier_stokes_2d,
    ns_forcing,
    ns_initial,
    ns_samples,
    torus_points,
)
from krylearn.utils.errors import FormatError


# ---------------------------------------------------------------------------
# FNO's code, transcribed (neuraloperator data_generation/navier_stokes: ns_2d.py, random_fields.py)
# ---------------------------------------------------------------------------
def _fno_navier_stokes_2d(w0, f, visc, T, delta_t, record_steps):
    N = w0.size()[-1]
    k_max = math.floor(N / 2.0)
    steps = math.ceil(T / delta_t)
    w_h = torch.fft.fft2(w0)
    f_h = torch.fft.fft2(f)[None]
    record_time = math.floor(steps / record_steps)
    k_y = torch.cat((torch.arange(0, k_max), torch.arange(-k_max, 0)), 0).repeat(N, 1).to(w0.dtype)
    k_x = k_y.transpose(0, 1)
    lap = 4 * (math.pi ** 2) * (k_x ** 2 + k_y ** 2)
    lap[0, 0] = 1.0
    dealias = ((torch.abs(k_y) <= (2.0 / 3.0) * k_max) & (torch.abs(k_x) <= (2.0 / 3.0) * k_max)).to(w0.dtype)[None]
    sol = torch.zeros(*w0.size(), record_steps, dtype=w0.dtype)
    c = 0
    for j in range(steps):
        psi_h = w_h / lap
        q = torch.fft.ifft2(2. * math.pi * k_y * 1j * psi_h, s=(N, N)).real
        v = torch.fft.ifft2(-2. * math.pi * k_x * 1j * psi_h, s=(N, N)).real
        w_x = torch.fft.ifft2(2. * math.pi * k_x * 1j * w_h, s=(N, N)).real
        w_y = torch.fft.ifft2(2. * math.pi * k_y * 1j * w_h, s=(N, N)).real
        F_h = dealias * torch.fft.fft2(q * w_x + v * w_y)
        w_h = (-delta_t * F_h + delta_t * f_h + (1.0 - 0.5 * delta_t * visc * lap) * w_h) / (
            1.0 + 0.5 * delta_t * visc * lap)
        if (j + 1) % record_time == 0:
            sol[..., c] = torch.fft.ifft2(w_h, s=(N, N)).real
            c += 1
    return sol


def _fno_sqrt_eig(size, alpha=2.5, tau=7.0):
    sigma = tau ** (0.5 * (2 * alpha - 2))
    k_max = size // 2
    wavenumbers = torch.cat((torch.arange(0, k_max), torch.arange(-k_max, 0)), 0).repeat(size, 1).double()
    k_x, k_y = wavenumbers.transpose(0, 1), wavenumbers
    sqrt_eig = (size ** 2) * math.sqrt(2.0) * sigma * ((4 * (math.pi ** 2) * (k_x ** 2 + k_y ** 2) + tau ** 2)
                                                       ** (-alpha / 2.0))
    sqrt_eig[0, 0] = 0.0
    return sqrt_eig


def _strong_field(s=32, seed=3, n=2):
    """Random initial fields scaled up so that advection matters within a short run."""
    return torch.as_tensor(ns_initial(seed, range(n), s)) * 20.0


def test_solver_equals_fnos_transcription():
    w0 = _strong_field()
    f = torch.as_tensor(ns_forcing(32))
    ref = _fno_navier_stokes_2d(w0, f, 1e-3, 0.2, 1e-3, 2).permute(0, 3, 1, 2)
    ours, t = navier_stokes_2d(w0, f, nu=1e-3, T=0.2, dt=1e-3, record_every=0.1)
    np.testing.assert_allclose(t, [0.1, 0.2])
    assert (ours[:, -1] - w0).norm() > 0.1 * w0.norm()          # the run does something
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-11)


def test_random_field_equals_fnos_and_has_the_stated_covariance():
    rng = np.random.default_rng(0)
    xi = (rng.standard_normal((400, 16, 16)) + 1j * rng.standard_normal((400, 16, 16))) / math.sqrt(2)
    w = gaussian_rf_torus(xi)
    ref = torch.fft.ifftn(_fno_sqrt_eig(16) * torch.as_tensor(xi), dim=[-1, -2]).real.numpy()
    np.testing.assert_allclose(w, ref, rtol=1e-12, atol=1e-14)
    # pointwise variance = sum over modes of 7^3 (4 pi^2 |k|^2 + 49)^(-2.5), mean mode excluded
    k = np.fft.fftfreq(16, 1 / 16)
    k[8] = -8
    lam = 4 * math.pi ** 2 * (k[:, None] ** 2 + k[None, :] ** 2) + 49.0
    lam[0, 0] = np.inf
    expected = 7.0 ** 3 * (lam ** -2.5).sum()
    assert abs(w.var() / expected - 1) < 0.05
    assert np.abs(w.mean(axis=(1, 2))).max() < 1e-12


def test_initial_fields_are_per_sample_seeded():
    a = ns_initial(5, [0, 1, 2], 16)
    np.testing.assert_array_equal(ns_initial(5, [2], 16)[0], a[2])
    assert not np.allclose(a[0], a[1])
    assert not np.allclose(ns_initial(6, [0], 16)[0], a[0])


def test_single_fourier_mode_decays_at_exp_minus_nu_k2_t():
    # w = cos 2pi(2x + y) + its Taylor-Green-like partner sin 2pi(x - 2y): same |k|^2 = 5, so u.grad w = 0
    x = torus_points(32)
    X, Y = np.meshgrid(x, x, indexing="ij")
    w0 = np.cos(2 * math.pi * (2 * X + Y)) + np.sin(2 * math.pi * (X - 2 * Y))
    nu, T = 1e-2, 1.0
    w, t = navier_stokes_2d(torch.as_tensor(w0[None]), None, nu=nu, T=T, dt=1e-3, record_every=0.5)
    for frame, tk in zip(w[0].numpy(), t):
        exact = math.exp(-nu * 4 * math.pi ** 2 * 5 * tk) * w0
        np.testing.assert_allclose(frame, exact, atol=1e-6)
    assert np.abs(w[0, -1].numpy()).max() < 0.2 * np.abs(w0).max()  # it did decay (exp(-1.97) = 0.14)


def test_forced_flow_from_rest_follows_the_single_mode_solution():
    # f is a single |k|^2 = 2 mode: w(t) = f (1 - exp(-nu lam t)) / (nu lam), lam = 8 pi^2
    f = ns_forcing(16)
    nu = 1e-2
    w, t = navier_stokes_2d(torch.zeros(1, 16, 16, dtype=torch.float64), f, nu=nu, T=2.0, dt=1e-3, record_every=1.0)
    lam = 8 * math.pi ** 2
    for frame, tk in zip(w[0].numpy(), t):
        np.testing.assert_allclose(frame, f * (1 - math.exp(-nu * lam * tk)) / (nu * lam), atol=1e-7)


def test_inviscid_unforced_flow_conserves_energy_and_enstrophy_and_the_mean():
    # with all modes inside the 2/3 band the scheme is a Galerkin truncation of Euler, which conserves
    # both exactly; forward-Euler advection adds an O(dt) drift
    w0 = _strong_field(s=32, n=1)
    k = torch.fft.fftfreq(32, 1 / 32)
    band = (k.abs()[:, None] <= 10) & (k.abs()[None, :] <= 10)
    w0 = torch.fft.ifft2(torch.fft.fft2(w0) * band).real
    drift = []
    for dt in (5e-4, 2.5e-4):
        w, _ = navier_stokes_2d(w0, None, nu=0.0, T=0.5, dt=dt, record_every=0.25)
        assert (w[0, -1] - w0[0]).norm() > 0.2 * w0.norm()            # the flow has evolved
        enstrophy = float((w[0, -1] ** 2).mean()) / float((w0 ** 2).mean()) - 1
        energy = float(_energy(w[:, -1])[0] / _energy(w0)[0]) - 1
        assert abs(enstrophy) < 1e-2 and abs(energy) < 1e-2
        drift.append(enstrophy)
        assert w.mean(dim=(-1, -2)).abs().max() < 1e-12 * w0.abs().max()
    assert 0.4 < drift[1] / drift[0] < 0.6                              # first order in dt


def _energy(w):
    """Kinetic energy 0.5 * mean |u|^2 = 0.5 * sum |w_k|^2 / |2 pi k|^2 / s^4 (mean mode excluded)."""
    s = w.shape[-1]
    k = torch.fft.fftfreq(s, 1 / s, dtype=w.dtype)
    lap = 4 * math.pi ** 2 * (k[:, None] ** 2 + k[None, :] ** 2)
    lap[0, 0] = math.inf
    return 0.5 * (torch.fft.fft2(w).abs() ** 2 / lap).sum(dim=(-1, -2)) / s ** 4


def test_viscous_unforced_energy_decays_and_forced_mean_stays_zero():
    w0 = _strong_field(s=32, n=2)
    w, _ = navier_stokes_2d(w0, None, nu=2e-3, T=0.4, dt=1e-3, record_every=0.1)
    e = torch.cat([_energy(w0)[:, None], _energy(w)], dim=1)
    assert (e[:, 1:] < e[:, :-1]).all()
    wf, _ = navier_stokes_2d(w0.float(), ns_forcing(32), nu=1e-5, T=0.2, dt=1e-3, record_every=0.1)
    assert wf.dtype == torch.float32
    assert wf.mean(dim=(-1, -2)).abs().max() < 1e-6 * wf.abs().max()


def test_solver_rejects_bad_arguments():
    w0 = torch.zeros(1, 8, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="w0"):
        navier_stokes_2d(torch.zeros(8, 8), None)
    with pytest.raises(ValueError, match="f must"):
        navier_stokes_2d(w0, np.zeros((4, 4)))
    with pytest.raises(ValueError, match="record_every"):
        navier_stokes_2d(w0, None, T=1.0, dt=0.3, record_every=1.0)
    with pytest.raises(ValueError, match="nu"):
        navier_stokes_2d(w0, None, nu=-1.0)
    with pytest.raises(ValueError, match="res"):
        ns_samples(0, [0], size=16, res=24)


# ---------------------------------------------------------------------------
# generator and files
# ---------------------------------------------------------------------------
_SMALL = dict(size=16, steps=2, record_every=0.01, dt=1e-3, dtype="float64")


def test_generate_layout_independent_of_batch_and_sample_alone(tmp_path):
    p1, p2 = tmp_path / "a.h5", tmp_path / "b.h5"
    generate_navier_stokes(p1, 3, seed=4, batch=2, progress=False, **_SMALL)
    generate_navier_stokes(p2, 3, seed=4, batch=3, progress=False, **_SMALL)
    d1, d2 = read_navier_stokes(p1), read_navier_stokes(p2)
    assert d1.source == "krylearn" and d1.w.shape == (3, 3, 16, 16) and d1.w.dtype == np.float32
    np.testing.assert_array_equal(d1.w, d2.w)
    np.testing.assert_allclose(d1.t, [0.0, 0.01, 0.02])
    np.testing.assert_allclose(d1.x, np.arange(16) / 16)
    np.testing.assert_allclose(d1.forcing, ns_forcing(16), atol=1e-7)
    np.testing.assert_array_equal(ns_samples(4, [1], **_SMALL)[0], d1.w[1])
    np.testing.assert_allclose(d1.w[:, 0], ns_initial(4, range(3), 16), rtol=1e-6, atol=1e-7)
    assert d1.attrs["seed"] == 4 and d1.attrs["nu"] == 1e-5 and d1.attrs["res"] == 16
    assert not np.allclose(d1.w[:, 2], d1.w[:, 0])
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_generate_on_a_finer_grid_stores_every_other_point(tmp_path):
    p = tmp_path / "fine.h5"
    generate_navier_stokes(p, 1, res=32, seed=1, progress=False, **{**_SMALL, "size": 16})
    d = read_navier_stokes(p)
    fine = ns_samples(1, [0], **{**_SMALL, "size": 32})[0]
    np.testing.assert_array_equal(d.w[0], fine[:, ::2, ::2])
    assert d.attrs["res"] == 32 and d.resolution == (16, 16)


def test_write_read_round_trip_with_slices(tmp_path):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((5, 4, 8, 6)).astype(np.float32)
    p = tmp_path / "ns.h5"
    write_navier_stokes(p, w, t=[0, 0.5, 1, 1.5], attrs={"note": "hand"})
    d = read_navier_stokes(p, start=1, count=3, sub=2)
    np.testing.assert_array_equal(d.w, w[1:4, :, ::2, ::2])
    np.testing.assert_allclose(d.t, [0, 0.5, 1, 1.5])
    np.testing.assert_allclose(d.y, (np.arange(6) / 6)[::2])
    assert d.start == 1 and d.attrs["note"] == "hand" and d.source == "krylearn"
    with pytest.raises(ValueError, match="t must"):
        write_navier_stokes(p, w, t=[0, 1])


def _fno_arrays(n=4, s=8, T=3, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, s, s)).astype(np.float32), rng.standard_normal((n, s, s, T)).astype(np.float32)


def test_read_fno_mat_v5(tmp_path):
    a, u = _fno_arrays()
    p = tmp_path / "NavierStokes_V1e-5_N4_T3.mat"
    scipy.io.savemat(p, {"a": a, "u": u, "t": np.array([[1.0, 2.0, 3.0]])})
    assert detect_ns_format(p) == "fno-mat-v5"
    d = read_navier_stokes(p, start=1, count=2, sub=2)
    np.testing.assert_array_equal(d.w[:, 0], a[1:3, ::2, ::2])
    np.testing.assert_array_equal(d.w[:, 1:], u[1:3, ::2, ::2].transpose(0, 3, 1, 2))
    np.testing.assert_allclose(d.t, [0, 1, 2, 3])
    scipy.io.savemat(p, {"a": a, "u": u[:3]})
    with pytest.raises(FormatError, match="u: shape"):
        read_navier_stokes(p)
    scipy.io.savemat(p, {"a": a})
    with pytest.raises(FormatError, match="u: missing variable"):
        read_navier_stokes(p)


def _mat73(path, **arrays):
    """A MATLAB v7.3-like file: 512-byte MATLAB header block, column-major arrays (axes reversed)."""
    with h5py.File(path, "w", userblock_size=512) as f:
        for k, v in arrays.items():
            f.create_dataset(k, data=np.asarray(v).T)
    with open(path, "r+b") as fh:
        fh.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 .")


def test_read_fno_mat_v73(tmp_path):
    a, u = _fno_arrays(s=6, T=4)
    a[:, 0, 1] = 7.0  # asymmetric in (x, y): a transposed read would show
    p = tmp_path / "ns_v73.mat"
    _mat73(p, a=a, u=u, t=np.arange(1.0, 5.0)[None])
    assert detect_ns_format(p) == "fno-mat-v7.3"
    d = read_navier_stokes(p)
    np.testing.assert_array_equal(d.w[:, 0], a)
    np.testing.assert_array_equal(d.w[:, 1:], u.transpose(0, 3, 1, 2))
    np.testing.assert_allclose(d.t, [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(read_navier_stokes(p, start=2, count=1, sub=2).w[0, 3], u[2, ::2, ::2, 2])
    _mat73(p, a=a[:, :5], u=u)
    with pytest.raises(FormatError, match="u: MATLAB shape"):
        read_navier_stokes(p)


def test_bad_files_raise_format_error_naming_the_key(tmp_path):
    p = tmp_path / "ns.h5"
    write_navier_stokes(p, np.ones((2, 3, 4, 4)))
    raw = p.read_bytes()
    (tmp_path / "cut.h5").write_bytes(raw[: len(raw) // 3])
    with pytest.raises(FormatError, match="cut.h5"):
        read_navier_stokes(tmp_path / "cut.h5")
    (tmp_path / "junk.h5").write_bytes(b"not a data file at all" * 10)
    with pytest.raises(FormatError, match="neither an HDF5"):
        read_navier_stokes(tmp_path / "junk.h5")
    write_darcy(tmp_path / "darcy.h5", np.ones((2, 4, 4)), np.ones((2, 4, 4)))
    with pytest.raises(FormatError, match="nu: a Darcy file"):
        read_navier_stokes(tmp_path / "darcy.h5")
    with h5py.File(tmp_path / "nan.h5", "w") as f:
        w = np.zeros((3, 2, 4, 4), np.float32)
        w[2, 1, 0, 0] = np.nan
        f["tensor"] = w
    with pytest.raises(FormatError, match="tensor: non-finite.*sample 2"):
        read_navier_stokes(tmp_path / "nan.h5")
    read_navier_stokes(tmp_path / "nan.h5", count=2)  # the slice read is clean
    with h5py.File(tmp_path / "badt.h5", "w") as f:
        f["tensor"] = np.zeros((1, 3, 4, 4), np.float32)
        f["t-coordinate"] = np.zeros(2)
    with pytest.raises(FormatError, match="t-coordinate: 2 entries, expected 3"):
        read_navier_stokes(tmp_path / "badt.h5")
    with h5py.File(tmp_path / "rank.h5", "w") as f:
        f["tensor"] = np.zeros((1, 4, 4), np.float32)
    with pytest.raises(FormatError, match="tensor: expected 4 dimensions"):
        read_navier_stokes(tmp_path / "rank.h5")


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------
def test_cli_data_ns(tmp_path, capsys):
    out = tmp_path / "ns.h5"
    rc = main(["data", "ns", "--n", "2", "--size", "16", "--steps", "2", "--record-every", "0.01", "--dt", "1e-3",
               "--seed", "3", "-q", "--out", str(out)])
    assert rc == 0 and "wrote" in capsys.readouterr().out
    d = read_navier_stokes(out)
    assert d.w.shape == (2, 3, 16, 16) and d.attrs["seed"] == 3 and d.attrs["steps"] == 2
    np.testing.assert_allclose(d.w[:, 0], ns_initial(3, range(2), 16), rtol=1e-5, atol=1e-6)
    assert main(["data", "ns", "--n", "1", "--size", "16", "--res", "24", "-q", "--out", str(out)]) != 0
    assert "res" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# autoregressive training (train lsm --task ns, eval lsm)
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ns_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("ns") / "ns.h5"
    generate_navier_stokes(p, 24, size=16, steps=6, record_every=0.05, dt=1e-3, nu=1e-3, seed=0, progress=False)
    return p


def test_rollout_feeds_predictions_back():
    from krylearn.solvers.lsm.rollout import rollout, split_frames

    w = torch.arange(2 * 7 * 4 * 4, dtype=torch.float32).reshape(2, 7, 4, 4)
    x, y = split_frames(w, 3, 2, first=1)
    assert torch.equal(x, w[:, 1:4]) and torch.equal(y, w[:, 4:6])

    class Shift(torch.nn.Module):  # predicts "last frame + 1"; a rollout must add 1 per step
        def forward(self, z):
            return z[:, -1:] + 1

    out = rollout(Shift(), x, 3)
    torch.testing.assert_close(out, torch.stack([x[:, -1] + k for k in (1, 2, 3)], dim=1))
    with pytest.raises(ValueError, match="frames"):
        split_frames(w, 5, 2, first=1)


@pytest.mark.parametrize("kind,config", [("fno", {"modes": 4, "width": 8, "layers": 2}),
                                         ("lsm", {"width": 8, "num_basis": 4, "num_token": 2, "levels": 3})])
def test_trained_model_beats_the_untrained_one_on_held_out_samples(ns_file, tmp_path, kind, config):
    from krylearn.solvers.lsm import build_network
    from krylearn.solvers.lsm.recipe_ns import NS_CONFIGS, evaluate_ns, train_ns
    from krylearn.solvers.lsm.normalizer import NormalizedOperator

    card = train_ns(kind, ns_file, ntrain=16, nval=4, ntest=4, t_in=3, steps=3, config=config, epochs=15,
                    step_size=5, batch_size=4, lr=3e-3, seed=0, out=tmp_path / f"{kind}-ns", progress=False)
    assert card["task"] == "ns" and card["data"]["test"]["start"] == 20 and card["rollout"]["t_in"] == 3
    torch.manual_seed(0)
    untrained = NormalizedOperator(build_network(kind, {**NS_CONFIGS[kind], **config, "in_channels": 3,
                                                        "out_channels": 1}))
    untrained.card = {"rollout": {"t_in": 3, "steps": 3, "first": 1}}
    trained = evaluate_ns(tmp_path / f"{kind}-ns", ns_file, start=20, count=4)
    assert trained["test_l2_full"] == pytest.approx(card["metrics"]["test_l2_full"], rel=1e-5)
    assert trained["test_l2_full"] < 0.5 * evaluate_ns(untrained, ns_file, start=20, count=4)["test_l2_full"]
    assert len(trained["per_step"]) == 3


def test_cli_train_and_eval_ns(ns_file, tmp_path, capsys):
    out = tmp_path / "fno-ns"
    rc = main(["train", "lsm", "--task", "ns", "--kind", "fno", "--data", str(ns_file), "--ntrain", "16", "--nval", "0",
               "--ntest", "4", "--t-in", "3", "--rollout", "2", "--modes", "4", "--width", "8", "--layers", "2",
               "--epochs", "2", "--batch-size", "8", "--schedule", "cosine", "-q", "--out", str(out)])
    assert rc == 0 and "2-step rollout" in capsys.readouterr().out
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["training"]["scheduler"] == "CosineAnnealingLR(T_max=2) per epoch"
    assert main(["eval", "lsm", str(out), "--data", str(ns_file), "--start", "20", "--count", "4"]) == 0
    assert "frames 1..3 in, 2 rolled out" in capsys.readouterr().out
    rc = main(["train", "lsm", "--task", "ns", "--data", str(ns_file), "--ntrain", "20", "--nval", "4", "-q",
               "--out", str(tmp_path / "x")])
    assert rc != 0 and "exceeds the 24 samples" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# bench ns: models side by side
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_ns_models(ns_file, tmp_path_factory):
    from krylearn.solvers.lsm.recipe_ns import train_ns

    d = tmp_path_factory.mktemp("ns-models")
    cards = {}
    for kind, config in (("fno", {"modes": 4, "width": 8, "layers": 2}),
                         ("lsm", {"width": 8, "num_basis": 4, "num_token": 2, "levels": 3})):
        cards[kind] = train_ns(kind, ns_file, ntrain=16, nval=4, ntest=4, t_in=3, steps=3, config=config, epochs=8,
                               batch_size=4, lr=3e-3, seed=0, out=d / f"{kind}-ns", progress=False)
    return d, cards


def test_bench_ns_compares_models_on_their_test_range(ns_file, two_ns_models, tmp_path):
    from krylearn.solvers.lsm.bench_ns import format_ns_table, run_ns_benchmark

    d, cards = two_ns_models
    rep = run_ns_benchmark(ns_file, models=[d / "fno-ns", d / "lsm-ns"], out_dir=tmp_path, repeats=1,
                           figure_sample=3)
    assert rep["data"]["start"] == 20 and rep["data"]["count"] == 4  # the first card's test range
    rows = {r["model"]: r for r in rep["models"]}
    assert list(rows) == ["fno-ns", "lsm-ns", "persistence (last input frame)", "zero"]
    for kind in ("fno", "lsm"):
        r = rows[f"{kind}-ns"]
        assert r["rel_l2_mean"] == pytest.approx(cards[kind]["metrics"]["test_l2_full"], rel=1e-5)
        assert r["overlaps_training"] is None and len(r["per_step"]) == 3 and r["inference_ms_per_sample"] > 0
    assert rows["zero"]["rel_l2_mean"] == 1.0
    w = read_navier_stokes(ns_file, start=20, count=4).w
    last, target = w[:, 3:4], w[:, 4:7]
    direct = np.linalg.norm((target - last).reshape(4, -1), axis=1) / np.linalg.norm(target.reshape(4, -1), axis=1)
    assert rows["persistence (last input frame)"]["rel_l2"] == pytest.approx(direct.tolist(), rel=1e-5)
    for f in rep["files"].values():
        assert (tmp_path / f).is_file()
    assert (tmp_path / "ns.md").read_text() == format_ns_table(rep) + "\n"


def test_bench_ns_refuses_bad_input(ns_file, two_ns_models, tmp_path):
    from krylearn.solvers.lsm.bench_ns import run_ns_benchmark
    from krylearn.solvers.lsm.recipe_ns import train_ns

    d, _ = two_ns_models
    with pytest.warns(UserWarning, match="overlap"):
        rep = run_ns_benchmark(ns_file, models=[d / "fno-ns"], start=14, count=4, repeats=1)
    assert rep["models"][0]["overlaps_training"] == ["train [0, 16)", "val [16, 20)"]
    with pytest.raises(ValueError, match="figure_sample"):
        run_ns_benchmark(ns_file, models=[d / "fno-ns"], figure_sample=4, repeats=1)
    with pytest.raises(ValueError, match="exceeds the 24 samples"):
        run_ns_benchmark(ns_file, models=[d / "fno-ns"], start=20, count=5, repeats=1)
    train_ns("fno", ns_file, ntrain=16, nval=0, ntest=4, t_in=2, steps=3, config={"modes": 4, "width": 8, "layers": 2},
             epochs=1, batch_size=8, out=tmp_path / "other", progress=False)
    with pytest.raises(ValueError, match="rollout settings"):
        run_ns_benchmark(ns_file, models=[d / "fno-ns", tmp_path / "other"], repeats=1)
    with pytest.raises(ValueError, match="not a Navier-Stokes model"):
        run_ns_benchmark(ns_file, models=["lsm-darcy"], repeats=1)


def test_cli_bench_ns(ns_file, two_ns_models, tmp_path, capsys):
    d, _ = two_ns_models
    rc = main(["bench", "ns", "--data", str(ns_file), "--models", f"{d / 'fno-ns'},{d / 'lsm-ns'}", "--repeats", "1",
               "-q", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0 and "| fno-ns (fno) |" in out and "persistence" in out and (tmp_path / "ns-rollout.png").is_file()
    assert main(["bench", "ns", "--data", str(ns_file), "--models", str(tmp_path / "nothing"), "-q",
                 "--out", str(tmp_path)]) != 0
    assert "--models" in capsys.readouterr().err
