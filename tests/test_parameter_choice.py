"""Per-scan parameter choice: hold-outs, the held-out score, DDS's prior weight (start/init), and the commands."""

import json

import h5py
import numpy as np
import pytest
import torch

from krylearn.cli import main
from krylearn.operators.ct import ParallelBeamProjector
from krylearn.operators.mri import SenseOperator, birdcage_maps, uniform1d_mask
from krylearn.pipelines.parameter_choice import _SHARE, _centre, choose_options, default_grid, holdout_folds
from krylearn.pipelines.reconstruct import reconstruct_mri, run_method
from krylearn.problems.phantoms import shepp_logan
from krylearn.problems.simulate import simulate_mri
from krylearn.solvers.dds import GaussianDenoiser, dds_sample
from krylearn.solvers.dds.schedule import time_grid
from krylearn.solvers.imaging import psnr
from krylearn.solvers.reconstructors import setup

N = 32


@pytest.fixture(scope="module")
def mri():
    x = shepp_logan((2 * N, 2 * N)).astype(np.complex128)
    sim = simulate_mri(x, 4, mask="uniform1d", accel=3, snr_db=30, seed=0, downsample=2)
    A = SenseOperator(sim.maps[0], sim.mask.astype(np.float32))
    return A, sim.kspace[0], np.abs(sim.image[0]), sim.mask


def test_line_holdouts_are_disjoint_acquired_lines_outside_the_centre(mri):
    A, y, _, mask = mri
    folds = holdout_folds(A, y, folds=3, seed=1)
    held = [np.flatnonzero(f.A_held.mask_input.numpy()) for f in folds]
    centre = np.arange(N // 2 - 1, N // 2 + 2)
    seen = set()
    for f, h in zip(folds, held):
        assert len(h) >= 1 and mask[h].all() and not set(h) & set(centre) and not set(h) & seen
        seen |= set(h)
        keep = f.A_keep.mask_input.numpy()
        assert np.all(keep + f.A_held.mask_input.numpy() == mask)  # every acquired line is kept or held
        assert np.all(f.y_keep[..., h] == 0) and np.array_equal(f.y_held[..., h], y[..., h])
        assert np.allclose(f.A_held(torch.as_tensor(np.ones((N, N), np.complex64))).numpy()[..., keep > 0], 0)


def test_point_holdouts_for_a_2d_mask_and_view_holdouts_for_ct():
    mask2 = np.zeros((N, N), np.float32)
    mask2[::2, ::2] = 1
    mask2[N // 2 - 2:N // 2 + 2, N // 2 - 2:N // 2 + 2] = 1
    A = SenseOperator(birdcage_maps(2, (N, N)), mask2)
    f = holdout_folds(A, np.ones((2, N, N), np.complex64), folds=2, seed=0)[0]
    held = f.A_held.mask_input.numpy()
    assert held.sum() >= 1 and np.all(held <= mask2) and held[N // 2 - 2:N // 2 + 2, N // 2 - 2:N // 2 + 2].sum() == 0
    P = ParallelBeamProjector((16, 16), np.linspace(0, np.pi, 16, endpoint=False))
    y = np.random.default_rng(0).standard_normal((3,) + P.oshape)
    folds = holdout_folds(P, y, folds=3, seed=0)
    for f in folds:
        assert f.A_keep.angles.size + f.A_held.angles.size == 16
        assert f.y_keep.shape == (3, f.A_keep.angles.size, P.n_det)
        idx = [int(np.argmin(np.abs(P.angles - a))) for a in f.A_held.angles]
        assert np.array_equal(f.y_held, y[:, idx])


def test_bad_hold_out_requests_name_the_argument(mri):
    A, y, _, mask = mri
    with pytest.raises(ValueError, match="folds"):
        holdout_folds(A, y, folds=0)
    many = holdout_folds(A, y, folds=20)  # fewer lines outside the centre than that: fewer folds
    outer = int(np.sum((mask != 0) & ~_centre(mask != 0)))
    size = max(1, round(_SHARE["lines"] * outer))
    assert len(many) == (outer - 1) // size and all(f.A_held.mask_input.sum() == size for f in many)
    P = ParallelBeamProjector((16, 16), np.linspace(0, np.pi, 3, endpoint=False))
    assert len(holdout_folds(P, np.zeros(P.oshape), folds=3)) == 2
    P = ParallelBeamProjector((16, 16), np.array([0.0]))
    with pytest.raises(ValueError, match="too few views"):
        holdout_folds(P, np.zeros(P.oshape), folds=3)
    from krylearn.operators.base import Identity
    with pytest.raises(TypeError, match="SenseOperator or a ParallelBeamProjector"):
        holdout_folds(Identity((4, 4)), np.zeros((4, 4)))


def test_the_choice_refuses_a_useless_regulariser_without_seeing_the_reference(mri):
    A, y, ref, _ = mri
    rec = setup("tv", "mri")
    grid = [{"lam": 3e-3}, {"lam": 30.0}]  # the second flattens the image
    ch = choose_options(rec, A, y, grid=grid, folds=3, seed=0)
    assert ch.options == {"lam": 3e-3}
    scores = dict((o["lam"], s) for o, s in ch.scores)
    assert scores[3e-3] < scores[30.0]
    good, _ = run_method("mri", "tv", A, y, lam=3e-3)
    bad, _ = run_method("mri", "tv", A, y, lam=30.0)
    assert psnr(good, ref) > psnr(bad, ref) + 3  # the held-out score ranked them as the truth does


def test_options_given_stay_fixed_and_a_method_without_a_grid_is_left_alone(mri):
    A, y, _, _ = mri
    ch = choose_options(setup("tv", "mri", lam=1e-2), A, y)
    assert ch.options == {} and ch.scores == [] and ch.reconstructor.options.lam == 1e-2
    ch = choose_options(setup("zero-filled", "mri"), A, y)
    assert ch.options == {} and default_grid("mri", "zero-filled") == [] == default_grid("mri", "cg-sense")
    x, _ = run_method("mri", "tv", A, y, auto=True)
    assert x.shape == (N, N) and np.all(np.isfinite(x))


def test_dds_with_no_prior_weight_returns_its_init_image(mri):
    A, y, _, _ = mri
    den = GaussianDenoiser(np.zeros((2, N, N)), var=1.0)
    x, _ = run_method("mri", "dds", A, y, prior=den, start=0.0, init="tv", scale=1.0)
    tv, _ = run_method("mri", "tv", A, y, scale=1.0)
    assert np.array_equal(x, tv)
    rec = setup("dds", "mri", prior=den, start=0.0)
    assert rec.record()["start"] == 0.0 and rec.record()["init"] == "tv"


def test_with_options_keeps_the_loaded_prior_and_checks_the_values():
    den = GaussianDenoiser(np.zeros((2, 8, 8)), var=1.0)
    rec = setup("dds", "mri", prior=den, nfe=3)
    other = rec.with_options(start=0.1, eta=0.0)
    assert other.denoiser is rec.denoiser and other.options.start == 0.1 and other.options.nfe == 3
    assert rec.options.start == 1.0
    with pytest.raises(ValueError, match="start"):
        rec.with_options(start=-0.1)
    with pytest.raises(TypeError, match="takes no option"):
        rec.with_options(lamda=1)


def test_time_grid_of_a_partial_chain():
    t, tn = time_grid(10, start=0.1)
    assert t[0] == 100 and np.all(np.diff(t) < 0) and tn[-1] == -1 and len(t) == 10
    assert time_grid(50, start=0.01)[0].tolist() == list(range(10, -1, -1))  # rounded, deduplicated
    with pytest.raises(ValueError, match="start"):
        time_grid(10, start=1.5)
    with pytest.raises(ValueError, match="start"):
        time_grid(10, kind="uniform", start=0.5)


def test_a_short_chain_stays_near_its_start_image_and_a_full_one_does_not():
    """With the prior's mean far from the truth, the prior weighs less the later the chain starts."""
    n = 8
    truth = np.zeros((n, n), np.complex128)
    truth[2:6, 2:6] = 1.0
    den = GaussianDenoiser(np.stack([np.full((n, n), -1.0), np.zeros((n, n))]), var=0.01)
    A = SenseOperator(birdcage_maps(2, (n, n), dtype=np.complex128), uniform1d_mask(n, 2, acs=0.25, seed=0))
    y = A(truth)
    kw = dict(nfe=10, cg_steps=1, eta=0.0, seed=0, progress=False)
    near = dds_sample(den, A, y, start=0.02, init=truth, **kw)
    far = dds_sample(den, A, y, **kw)
    assert np.linalg.norm(near - truth) < 0.5 * np.linalg.norm(far - truth)
    with pytest.raises(ValueError, match="needs init"):
        dds_sample(den, A, y, start=0.5, **kw)
    with pytest.raises(ValueError, match="init must have shape"):
        dds_sample(den, A, y, start=0.5, init=np.zeros((n, n + 1)), **kw)


def test_reconstruct_mri_auto_writes_its_choices(tmp_path, capsys):
    from krylearn.problems.simulate import write_mri_testset
    pytest.importorskip("nilearn")
    src = write_mri_testset(tmp_path / "in.h5", size=32, n_slices=1, seed=0)
    out = reconstruct_mri(src, tmp_path / "o.h5", "tv", auto=True, progress=False, previews=False)
    assert out["auto"][0]["chosen"]["lam"] in [g["lam"] for g in default_grid("mri", "tv")]
    with h5py.File(tmp_path / "o.h5") as f:
        assert 1 <= json.loads(f.attrs["auto"])[0]["folds"] <= 3
    assert main(["reconstruct", "mri", str(src), "-o", str(tmp_path / "p.h5"), "--method", "tv", "--auto",
                 "--folds", "0", "-q"]) == 2
    assert "--folds must be a positive integer" in capsys.readouterr().err


def test_bench_mri_auto_says_so_and_excludes_tune(capsys):
    pytest.importorskip("nilearn")
    from krylearn.solvers.dds.bench_mri import format_mri_table, run_mri_benchmark
    report = run_mri_benchmark(n_slices=1, size=32, cases=("uniform1d:3",), methods=("cg-sense", "tv"), auto=True,
                               warmup=False, progress=False)
    table = format_mri_table(report)
    assert report["auto"] and "chosen per scan" in table and "cross-validation on held-out" in table
    assert all(np.isfinite(r["psnr_mean"]) for r in report["cases"][0]["rows"])
    assert main(["bench", "mri", "--auto", "--tune", "--methods", "tv", "--slices", "1", "-q"]) == 2
    assert "auto and tune exclude each other" in capsys.readouterr().err


def test_ct_choice_holds_out_views_and_prefers_the_regularised_image():
    img = shepp_logan((32, 32))
    P = ParallelBeamProjector((32, 32), np.linspace(0, np.pi, 12, endpoint=False))
    y = P(torch.as_tensor(img)).numpy()
    y = y + 0.05 * np.abs(y).max() * np.random.default_rng(0).standard_normal(y.shape)
    ch = choose_options(setup("admm-tv", "ct"), P, y, grid=[{"lam": 0.1}, {"lam": 1e-6}], seed=0)
    assert ch.folds == 3 and ch.options == {"lam": 0.1}  # TV beats (almost) no regularisation on noisy views
