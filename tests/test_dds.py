"""DDS method core: schedule, UNet, exact Gaussian denoiser, DDS/DPS samplers, CG data step, training.

No trained network: the samplers are checked against closed forms with an
exact Gaussian denoiser, the networks are tiny and mostly untrained.
"""

import copy

import numpy as np
import pytest
import torch
from _dds_problems import (
    N,
    disc,
    gaussian_mri,
    posterior_mean,
    smooth_cov,
    tiny_unet,
    toy_images,
)
from krylearn.operators.ct import ParallelBeamProjector
from krylearn.operators.mri import SenseOperator, birdcage_maps, uniform1d_mask
from krylearn.solvers.dds import (
    GaussianDenoiser,
    SamplingError,
    UNet,
    VPSchedule,
    cg_fixed,
    crop,
    data_consistency,
    dds_sample,
    dds_sample_volume,
    dps_sample,
    evaluate_loss,
    load_prior,
    pad_to_multiple,
    save_prior,
    time_grid,
    train_diffusion,
    tweedie,
)
from krylearn.solvers.dds.volume import _dz, _dzt
from krylearn.solvers.dds.schedule import q_sample


@pytest.fixture(scope="module")
def mri():
    return gaussian_mri()


def _rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


# ------------------------------------------------------------------ schedule
def test_schedule_and_time_grid():
    s = VPSchedule()
    assert s.alpha_bar(-1) == 1.0
    np.testing.assert_allclose(s.alphas_cumprod, np.cumprod(1 - np.linspace(1e-4, 0.02, 1000)))
    for nfe, skip in ((19, 50), (49, 20), (99, 10)):
        t, tn = time_grid(nfe)
        assert len(t) == nfe and t[0] == nfe * skip and t[-1] == skip
        assert np.all(np.diff(t) == -skip) and tn[-1] == -1 and np.array_equal(tn[:-1], t[1:])
    t, _ = time_grid(1000, kind="uniform")
    assert np.array_equal(t, np.arange(999, -1, -1))
    with pytest.raises(ValueError, match="nfe"):
        time_grid(1000)
    x0, eps = torch.randn(3, 2, 4, 4, dtype=torch.float64), torch.randn(3, 2, 4, 4, dtype=torch.float64)
    ab = s.alpha_bar(500)
    torch.testing.assert_close(tweedie(q_sample(x0, ab, eps), eps, ab), x0)


def test_gaussian_denoiser_matches_posterior_of_x0():
    rng = np.random.default_rng(0)
    L = rng.standard_normal((12, 12))
    cov = L @ L.T / 12
    mean = rng.standard_normal((3, 2, 2))
    den = GaussianDenoiser(mean, cov=cov)
    x_t = torch.from_numpy(rng.standard_normal((2, 3, 2, 2)))
    t = torch.tensor([10, 700])
    x0 = tweedie(x_t, den(x_t, t), torch.from_numpy(den.schedule.alpha_bar(t.numpy()))[:, None, None, None])
    for i in range(2):  # E[x0 | x_t] = mu + sqrt(a) S (a S + (1 - a) I)^-1 (x_t - sqrt(a) mu)
        a = den.schedule.alpha_bar(int(t[i]))
        d = x_t[i].numpy().ravel() - np.sqrt(a) * mean.ravel()
        ref = mean.ravel() + np.sqrt(a) * cov @ np.linalg.solve(a * cov + (1 - a) * np.eye(12), d)
        np.testing.assert_allclose(x0[i].numpy().ravel(), ref, rtol=1e-9, atol=1e-9)
    # diagonal and dense forms agree
    var = rng.random((3, 2, 2)) + 0.1
    a, b = GaussianDenoiser(mean, var=var), GaussianDenoiser(mean, cov=np.diag(var.ravel()))
    torch.testing.assert_close(a(x_t, t), b(x_t, t))
    with pytest.raises(ValueError, match="cov"):
        GaussianDenoiser(mean, cov=np.eye(5))


# ------------------------------------------------------------------ data consistency
def test_cg_data_step_equals_dense_prox_complex(mri):
    A, M, y = mri["A"], mri["M"], mri["y"]
    rng = np.random.default_rng(3)
    x0 = rng.standard_normal((N, N)) + 1j * rng.standard_normal((N, N))
    gamma = 0.7
    n = N * N
    ref = np.linalg.solve(np.eye(n) + gamma * M.conj().T @ M, x0.ravel() + gamma * M.conj().T @ y.ravel())
    out = data_consistency(A, x0, y, gamma=gamma, steps=80)
    assert out.dtype == np.complex128 and out.shape == (N, N)
    np.testing.assert_allclose(out.ravel(), ref, rtol=1e-9, atol=1e-9)
    # noiseless form from x0: the Krylov solution is the data-consistent point closest to x0
    out0 = data_consistency(A, x0, y, gamma=None, steps=80)
    ref0 = x0.ravel() + np.linalg.pinv(M, rcond=1e-10) @ (y.ravel() - M @ x0.ravel())
    np.testing.assert_allclose(out0.ravel(), ref0, rtol=1e-8, atol=1e-8)
    # a few steps: batched slices are independent systems
    few = data_consistency(A, np.stack([x0, 2 * x0]), np.stack([y, y]), gamma=gamma, steps=3)
    np.testing.assert_allclose(few[0], data_consistency(A, x0, y, gamma=gamma, steps=3), rtol=1e-12, atol=1e-12)
    assert _rel(few[0].ravel(), ref) < _rel(x0.ravel(), ref)


def test_authors_one_plus_i_rhs_fails_the_prox(mri):
    """The released code adds gamma A^H y to the 2-channel real x0: the rhs becomes x0 + (1+i) gamma A^H y."""
    A, M, y = mri["A"], mri["M"], mri["y"]
    rng = np.random.default_rng(4)
    x0 = rng.standard_normal((N, N)) + 1j * rng.standard_normal((N, N))
    gamma = 0.7
    n = N * N
    ref = np.linalg.solve(np.eye(n) + gamma * M.conj().T @ M, x0.ravel() + gamma * M.conj().T @ y.ravel())
    AHy = A.H(torch.from_numpy(y))
    x0_2ch = torch.from_numpy(np.stack([x0.real, x0.imag]))  # the network layout (2, H, W)
    bcg_2ch = x0_2ch + gamma * AHy  # broadcasting a complex image over both real channels
    bcg_bug = bcg_2ch[0] + 1j * bcg_2ch[1]  # real_to_nchw_comp
    torch.testing.assert_close(bcg_bug, torch.from_numpy(x0) + (1 + 1j) * gamma * AHy)
    apply = lambda v: v + gamma * A.N._apply(v)
    bug = cg_fixed(apply, bcg_bug[None], torch.from_numpy(x0)[None], 80)[0].numpy()
    assert _rel(bug.ravel(), ref) > 0.1
    ours = data_consistency(A, x0, y, gamma=gamma, steps=80)
    assert _rel(ours.ravel(), ref) < 1e-9


def test_cg_fixed_uses_conjugated_inner_products():
    """A Hermitian PD system where COCG-style (unconjugated) scalars go wrong; ours converges in n steps."""
    rng = np.random.default_rng(5)
    B = rng.standard_normal((6, 6)) + 1j * rng.standard_normal((6, 6))
    H = torch.from_numpy(B.conj().T @ B + np.eye(6))
    b = torch.from_numpy(rng.standard_normal((1, 6)) + 1j * rng.standard_normal((1, 6)))
    x = cg_fixed(lambda v: v @ H.T, b, torch.zeros_like(b), 6)
    torch.testing.assert_close(x[0], torch.linalg.solve(H, b[0]), rtol=1e-8, atol=1e-8)


# ------------------------------------------------------------------ DDS vs closed form
def test_dds_approaches_gaussian_posterior_mean_mri(mri):
    """Exact denoiser: the mean of DDS samples lands near E[x | y], far nearer than any baseline.

    DDS is not an exact posterior sampler: on this problem the limit of the
    sample mean (400 samples) sits at 0.05 (eta = 0), 0.14 (eta = 0.85) and
    0.5 (eta = 0.85, 5 CG steps, not yet data consistent) of the best
    baseline's error; the bounds leave room for the 64-sample noise.
    """
    A, y, pm = mri["A"], mri["y"], mri["pm"]
    Y = np.repeat(y[None], 64, axis=0)  # 64 independent samples in one batch
    base = min(_rel(A.H(y), pm), _rel(mri["mean"], pm), _rel(mri["minnorm"], pm))  # zero-filled, prior, min-norm
    X = dds_sample(mri["den"], A, Y, nfe=49, eta=0.0, cg_steps=20, seed=0, progress=False)
    assert X.shape == (64, N, N) and np.iscomplexobj(X)
    assert _rel(X.mean(0), pm) < 0.2 * base
    assert _rel(A(X[0]), y) < 1e-6  # every sample fits the data
    X = dds_sample(mri["den"], A, Y, nfe=49, eta=0.85, cg_steps=20, seed=1, progress=False)
    assert _rel(X.mean(0), pm) < 0.35 * base
    X = dds_sample(mri["den"], A, Y, nfe=49, seed=2, progress=False)  # the defaults: eta 0.85, 5 CG steps
    assert _rel(X.mean(0), pm) < 0.7 * base


def test_dds_seeds_reproducible_and_eta_zero_deterministic(mri):
    kw = {"nfe": 10, "progress": False}
    a = dds_sample(mri["den"], mri["A"], mri["y"], seed=3, **kw)
    b = dds_sample(mri["den"], mri["A"], mri["y"], seed=3, **kw)
    c = dds_sample(mri["den"], mri["A"], mri["y"], seed=4, **kw)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    # torch in -> torch out, and the callback sees every step
    seen = []
    out = dds_sample(mri["den"], mri["A"], torch.from_numpy(mri["y"]), seed=3, callback=lambda i, t, x: seen.append(t),
                     **kw)
    assert isinstance(out, torch.Tensor) and seen == time_grid(10)[0].tolist()
    np.testing.assert_array_equal(out.numpy(), a)


def test_dds_noisy_form_and_scale(mri):
    A, y = mri["A"], mri["y"]
    # gamma -> large approaches the noiseless projection; scale is exact bookkeeping
    x1 = dds_sample(mri["den"], A, y, nfe=20, gamma=0.5, seed=0, progress=False)
    x2 = dds_sample(mri["den"], A, 3.0 * y, nfe=20, gamma=0.5, scale=3.0, seed=0, progress=False)
    np.testing.assert_allclose(x2, 3.0 * x1, rtol=1e-4, atol=1e-5)
    assert _rel(A(x1), y) < 0.5


def test_failures_are_reported(mri):
    def bad(x, t):
        out = torch.zeros_like(x)
        if int(t[0]) < 500:
            out[0, 0, 0, 0] = float("nan")
        return out

    with pytest.raises(SamplingError, match="step"):
        dds_sample(bad, mri["A"], mri["y"], nfe=10, progress=False)
    with pytest.raises(ValueError, match="nfe"):
        dds_sample(mri["den"], mri["A"], mri["y"], nfe=0)
    with pytest.raises(ValueError, match="eta"):
        dds_sample(mri["den"], mri["A"], mri["y"], eta=1.5)
    with pytest.raises(ValueError, match="gamma"):
        dds_sample(mri["den"], mri["A"], mri["y"], gamma=-1.0)
    with pytest.raises(ValueError, match="y has shape"):
        dds_sample(mri["den"], mri["A"], mri["y"][:, :4])
    with pytest.raises(TypeError, match="A must be"):
        dds_sample(mri["den"], mri["M"], mri["y"])


# ------------------------------------------------------------------ DPS
def test_dps_reduces_misfit_and_is_reproducible(mri):
    A, y = mri["A"], mri["y"]
    kw = {"nfe": 100, "seed": 0, "progress": False}
    guided = dps_sample(mri["den"], A, y, zeta=1.0, **kw)
    free = dps_sample(mri["den"], A, y, zeta=0.0, **kw)
    assert _rel(A(guided), y) < 0.5 * _rel(A(free), y)
    np.testing.assert_array_equal(guided, dps_sample(mri["den"], A, y, zeta=1.0, **kw))


def test_dps_step_is_invariant_to_the_operators_scale(mri):
    A, y = mri["A"], mri["y"]
    kw = {"nfe": 50, "seed": 0, "progress": False}
    c = 30.0  # about ||A|| of 8-view parallel-beam CT at 128^2
    base = dps_sample(mri["den"], A, y, **kw)
    scaled = dps_sample(mri["den"], c * A, c * y, **kw)
    assert _rel(scaled, base) < 1e-6
    raw = dps_sample(mri["den"], c * A, c * y, normalize=False, **kw)  # the paper's step: c^2 too large
    assert _rel(raw, base) > 0.1


def test_dps_runs_through_a_unet_with_padding():
    torch.manual_seed(0)
    net = UNet(in_channels=2, base_channels=8, channel_mult=(1, 2), num_heads=2)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    A = SenseOperator(birdcage_maps(2, (6, 10)), uniform1d_mask(10, 2, seed=0))
    x = np.random.default_rng(0).standard_normal((6, 10)).astype(np.complex64)
    y = A(x)
    out = dps_sample(net, A, y, nfe=4, seed=0, progress=False)
    assert out.shape == (6, 10) and np.all(np.isfinite(out))


# ------------------------------------------------------------------ UNet, padding
@pytest.mark.parametrize("cin,size", [(2, (8, 8)), (1, (16, 24)), (2, (32, 16))])
def test_unet_shapes_and_time_conditioning(cin, size):
    torch.manual_seed(0)
    net = UNet(in_channels=cin, base_channels=8, channel_mult=(1, 2, 2), num_heads=2).eval()
    x = torch.randn(2, cin, *size)
    with torch.no_grad():
        assert torch.count_nonzero(net(x, torch.tensor([5, 500]))) == 0  # zero-initialised output layer
        for p in net.parameters():
            torch.nn.init.normal_(p, std=0.05)
        a = net(x, torch.tensor([5, 5]))
        b = net(x, torch.tensor([900, 900]))
    assert a.shape == x.shape
    assert (a - b).abs().max() > 1e-3 * a.abs().max()
    assert net.size_multiple == 4
    with pytest.raises(ValueError, match="multiples of 4"):
        net(torch.randn(1, cin, 10, 8), 3)


def test_pad_crop_and_dds_at_odd_size():
    x = torch.randn(3, 10, 13)
    p, pads = pad_to_multiple(x, 8)
    assert p.shape == (3, 16, 16) and torch.equal(crop(p, pads), x)
    assert float(p.sum() - x.sum()) == pytest.approx(0.0, abs=1e-4)
    torch.manual_seed(0)
    net = UNet(in_channels=2, base_channels=8, channel_mult=(1, 2, 2), num_heads=2).eval()
    A = SenseOperator(birdcage_maps(2, (10, 13)), uniform1d_mask(13, 2, seed=0))
    y = A(np.random.default_rng(0).standard_normal((2, 10, 13)).astype(np.complex64))
    out = dds_sample(net, A, y, nfe=5, cg_steps=30, seed=0, progress=False)
    assert out.shape == (2, 10, 13) and out.dtype == np.complex64
    assert _rel(A(out), y) < 1e-3  # the noiseless data step fits the data


# ------------------------------------------------------------------ training, weights


def test_training_reduces_loss(tmp_path):
    data = toy_images(32)
    held_out = toy_images(16, seed=1)
    net = tiny_unet()
    before = evaluate_loss(copy.deepcopy(net), held_out, seed=7)
    out = train_diffusion(net, data, steps=80, batch_size=16, lr=3e-3, warmup=5, ema_decay=0.9, seed=0,
                          progress=False, log=tmp_path / "log.jsonl", log_every=20)
    after = evaluate_loss(out["model"], held_out, seed=7)
    assert after < 0.8 * before, (before, after)
    assert len(out["losses"]) == 80 and out["steps"] == 80 and not out["model"].training
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 4


def test_training_resume_is_exact(tmp_path):
    data = toy_images(16)
    kw = dict(batch_size=4, lr=1e-3, warmup=2, seed=3, progress=False, augment=lambda x, g: torch.flip(x, (-1,))
              if torch.rand((), generator=g) < 0.5 else x)
    full = train_diffusion(tiny_unet(), data, steps=6, checkpoint=tmp_path / "a.ckpt", **kw)
    train_diffusion(tiny_unet(), data, steps=3, checkpoint=tmp_path / "b.ckpt", **kw)
    resumed = train_diffusion(tiny_unet(), data, steps=6, checkpoint=tmp_path / "b.ckpt", **kw)
    assert resumed["losses"] == full["losses"]
    for k, v in full["raw_model"].state_dict().items():
        assert torch.equal(v, resumed["raw_model"].state_dict()[k]), k
    for k, v in full["model"].state_dict().items():
        assert torch.equal(v, resumed["model"].state_dict()[k]), k
    with pytest.raises(ValueError, match="different run"):
        train_diffusion(tiny_unet(), data, steps=7, checkpoint=tmp_path / "b.ckpt", **{**kw, "lr": 5e-4})
    with pytest.raises(ValueError, match="channel"):
        train_diffusion(tiny_unet(), np.zeros((4, 2, 8, 8), np.float32), steps=1, progress=False)


def test_training_time_budget_stops_early_and_resumes_exactly(tmp_path):
    data = toy_images(16)
    kw = dict(batch_size=4, lr=1e-3, warmup=2, seed=5, progress=False, checkpoint_every=100)
    full = train_diffusion(tiny_unet(), data, steps=5, **kw)
    # a budget smaller than one step: exactly one step, then a checkpoint
    cut = train_diffusion(tiny_unet(), data, steps=5, checkpoint=tmp_path / "c.ckpt", max_seconds=1e-9, **kw)
    assert cut["steps"] == 1 and len(cut["losses"]) == 1
    rest = train_diffusion(tiny_unet(), data, steps=5, checkpoint=tmp_path / "c.ckpt", **kw)
    assert rest["steps"] == 5 and rest["losses"] == full["losses"]
    for k, v in full["model"].state_dict().items():
        assert torch.equal(v, rest["model"].state_dict()[k]), k
    with pytest.raises(ValueError, match="max_seconds"):
        train_diffusion(tiny_unet(), data, steps=2, max_seconds=0, **kw)


def test_prior_save_load(tmp_path):
    net = tiny_unet()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    save_prior(net, {"data": "toy discs", "seed": 0}, tmp_path / "toy")
    loaded, card = load_prior(tmp_path / "toy", return_card=True)
    assert card["config"] == net.config and card["kind"] == "dds-unet"
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, torch.tensor([3, 400])), net.eval()(x, torch.tensor([3, 400])))
    with pytest.raises(ValueError, match="neither a shipped model"):
        load_prior("no-such-prior")


# ------------------------------------------------------------------ CT (kept last)
# Building a ParallelBeamProjector runs numba's parallel (OpenMP) kernels; on this
# machine torch is several times slower in the same process afterwards unless
# NUMBA_THREADING_LAYER=workqueue or NUMBA_NUM_THREADS=1 is set, so the tests that
# build one come after the torch-heavy ones.
def test_dds_approaches_gaussian_posterior_mean_real_ct():
    angles = np.linspace(0, np.pi, 3, endpoint=False)
    P = ParallelBeamProjector((N, N), angles)
    cov = smooth_cov(N, var=0.1)
    mean = 0.5 * disc(N)[None]
    den = GaussianDenoiser(mean, cov=cov)
    x_true = den.sample(1, seed=2)[0, 0]
    y = P(x_true)
    R = P.to_sparse().toarray()
    assert R.shape[0] < N * N  # underdetermined
    pm = posterior_mean(R, cov, mean.ravel(), y.ravel()).reshape(N, N)
    X = dds_sample(den, P, np.repeat(y[None], 64, 0), nfe=49, eta=0.0, cg_steps=30, seed=0, progress=False)
    assert X.dtype == np.float64 and not np.iscomplexobj(X)
    minnorm = (np.linalg.pinv(R) @ y.ravel()).reshape(N, N)
    e_dds = _rel(X.mean(0), pm)  # about 0.12 of the baseline over seeds
    assert e_dds < 0.3 * min(_rel(minnorm, pm), _rel(mean[0], pm)), (e_dds, _rel(minnorm, pm))


def test_dz_adjoint_and_volume_sampler():
    rng = np.random.default_rng(0)
    u, v = torch.from_numpy(rng.standard_normal((5, 3, 4))), torch.from_numpy(rng.standard_normal((5, 3, 4)))
    assert float((_dz(u) * v).sum()) == pytest.approx(float((u * _dzt(v)).sum()), rel=1e-12)
    P = ParallelBeamProjector((N, N), np.linspace(0, np.pi, 4, endpoint=False))
    den = GaussianDenoiser(0.5 * disc(N)[None], cov=smooth_cov(N, var=0.1))
    truth = np.repeat(den.sample(1, seed=5)[:, 0], 4, axis=0)  # 4 identical slices
    y = P(truth)
    tv = {}
    for lam in (0.0, 1.0):
        vol = dds_sample_volume(den, P, y, nfe=20, lam=lam, rho=10.0, seed=0, progress=False)
        assert vol.shape == (4, N, N) and np.all(np.isfinite(vol))
        tv[lam] = np.abs(np.diff(vol, axis=0)).sum()
    assert tv[1.0] < 0.5 * tv[0.0]
    with pytest.raises(ValueError, match="rho"):
        dds_sample_volume(den, P, y, rho=0.0)
    with pytest.raises(ValueError, match="complex_data"):
        dds_sample(den, P, y, complex_data=True)
