"""Classical reconstructions (solvers/imaging.py) and the `krylearn reconstruct` recipe."""

import h5py
import numpy as np
import pytest
import torch
from krylearn.utils.errors import FormatError
from krylearn.datasets.fastmri import read_reconstruction, write_ct, write_kspace
from krylearn.problems.phantoms import shepp_logan
from krylearn.operators.ct import ParallelBeamProjector, fbp
from krylearn.operators.mri import (
    SenseOperator,
    acceleration,
    birdcage_maps,
    fft2c,
    uniform1d_mask,
)
from krylearn.solvers import imaging
from krylearn.solvers.dds import GaussianDenoiser, UNet, save_prior

from krylearn.pipelines.reconstruct import (
    acs_width,
    parse_slices,
    reconstruct_ct,
    reconstruct_mri,
    run_method,
)


def _phantom(shape, count=1, complex_=True, seed=0):
    rng = np.random.default_rng(seed)
    img = np.stack([np.roll(shepp_logan(shape), int(rng.integers(-2, 3)), axis=1) for _ in range(count)])
    img = np.clip(np.abs(img), 0, 1)
    if complex_:
        yy, xx = np.mgrid[: shape[0], : shape[1]]
        img = img * np.exp(1j * 0.5 * np.pi * (xx / shape[1] - 0.5 + 0.3 * yy / shape[0]))
    return img


# ------------------------------------------------------------------ MRI baselines
def test_sigpy_sense_forward_equals_ours():
    import sigpy.mri

    ny, nx = 30, 26
    maps = birdcage_maps(4, (ny, nx), dtype=np.complex128)
    mask = uniform1d_mask(nx, 3, seed=1).astype(np.float64)
    mask[mask > 0] *= np.linspace(0.5, 1.5, int(mask.sum()))  # non-binary weights too
    x = _phantom((ny, nx))[0]
    ours = SenseOperator(maps, mask).apply(x)
    theirs = sigpy.mri.linop.Sense(maps, weights=np.broadcast_to(mask ** 2, (ny, nx)))(x)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12 * np.abs(ours).max())


def test_sigpy_problem_mapping_gives_our_least_squares_solution():
    """sigpy's SenseRecon on the mapped data solves our least-squares problem (non-binary weights)."""
    from sigpy.mri.app import SenseRecon

    rng = np.random.default_rng(0)
    ny, nx = 16, 12
    maps = birdcage_maps(6, (ny, nx), dtype=np.complex128)
    mask = uniform1d_mask(nx, 2, acs=0.3, seed=0).astype(np.float64)
    mask[mask > 0] *= rng.uniform(0.5, 1.5, int(mask.sum()))
    A = SenseOperator(maps, mask)
    y = A.apply(rng.standard_normal((ny, nx)) + 1j * rng.standard_normal((ny, nx)))
    ours = imaging.cg_sense(A, y, iters=300, rtol=1e-13)
    [(yk, mps, w)], single = imaging._sigpy_problem(y, maps, mask)
    assert single
    theirs = SenseRecon(yk, mps, weights=w, max_iter=300, show_pbar=False).run()
    np.testing.assert_allclose(theirs, ours, atol=1e-6 * np.abs(ours).max())


def test_cg_sense_matches_dense_least_squares_and_beats_zero_filled():
    rng = np.random.default_rng(1)
    ny, nx = 16, 12
    maps = birdcage_maps(6, (ny, nx), dtype=np.complex128)
    A = SenseOperator(maps, uniform1d_mask(nx, 2, acs=0.3, seed=0))
    x = rng.standard_normal((2, ny, nx)) + 1j * rng.standard_normal((2, ny, nx))
    y = A.apply(x) + 0.01 * (rng.standard_normal((2, 6, ny, nx)) + 1j * rng.standard_normal((2, 6, ny, nx)))
    y = y * A.mask_input.numpy()
    xc, res = imaging.cg_sense(A, y, iters=300, rtol=1e-13, return_result=True)
    assert res.iterations.max() > 10 and res.residuals.shape[1] == 2  # two systems, own CG scalars
    M = A.to_dense().numpy()
    MhM = M.conj().T @ M
    dense = np.linalg.solve(MhM, M.conj().T @ y.reshape(2, -1).T).T.reshape(x.shape)
    np.testing.assert_allclose(xc, dense, atol=1e-6 * np.abs(dense).max())
    zf = imaging.zero_filled(A, y)
    for i in range(2):
        assert np.linalg.norm(A.apply(xc[i]) - y[i]) < 0.5 * np.linalg.norm(A.apply(zf[i]) - y[i])
    # Tikhonov: (A^H A + lam I) x = A^H y
    lam = 0.3
    xt = imaging.cg_sense(A, y[0], iters=300, rtol=1e-13, lam=lam)
    ref = np.linalg.solve(MhM + lam * np.eye(M.shape[1]), M.conj().T @ y[0].reshape(-1))
    np.testing.assert_allclose(xt.reshape(-1), ref, atol=1e-6 * np.abs(ref).max())


def test_l1_wavelet_and_tv_beat_zero_filled_on_a_phantom():
    ny, nx = 32, 32
    maps = birdcage_maps(4, (ny, nx))
    mask = uniform1d_mask(nx, 3, acs=0.15, seed=0)
    x = _phantom((ny, nx), 2)
    A = SenseOperator(maps, mask)
    y = A.apply(x.astype(np.complex64))
    zf = imaging.zero_filled(A, y)
    mps = np.broadcast_to(maps, (2,) + maps.shape)
    l1 = imaging.l1_wavelet(y, mps, mask)
    tv = imaging.tv_mri(y, mps, mask)
    assert l1.shape == tv.shape == (2, ny, nx) and np.iscomplexobj(tv)
    p_zf = imaging.psnr(zf, x)
    assert imaging.psnr(l1, x) > p_zf + 3
    assert imaging.psnr(tv, x) > p_zf + 3
    with pytest.raises(ValueError, match="maps"):
        imaging.l1_wavelet(y, maps, mask)


# ------------------------------------------------------------------ CT baselines
def test_finite_differences_adjoint():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 4, generator=g, dtype=torch.float64)
    for dims in (2, 3):
        v = torch.randn((dims, 3, 5, 4), generator=g, dtype=torch.float64)
        lhs = (imaging.finite_differences(x, dims) * v).sum()
        rhs = (x * imaging.finite_differences_adjoint(v)).sum()
        assert abs(lhs - rhs) <= 1e-12 * abs(lhs)


def test_admm_tv_decreases_objective_and_beats_fbp():
    shape = (32, 32)
    truth = np.stack([shepp_logan(shape).real, np.roll(shepp_logan(shape).real, 1, axis=0)])
    angles = np.linspace(0, np.pi, 8, endpoint=False)
    P = ParallelBeamProjector(shape, angles)
    y = P.apply(truth)
    lam = imaging.ADMM_TV_LAM
    x2, hist = imaging.admm_tv_ct(P, y, iters=60, tv="2d", return_history=True)
    h = np.asarray(hist)
    assert h[-1] < 0.01 * h[0]
    assert np.all(np.diff(h) <= 1e-9 * h[0])  # monotone at the default rho
    f = fbp(y, projector=P)

    def objective(img):
        r = P.apply(img) - y
        return 0.5 * np.sum(r * r) + lam * np.abs(imaging.finite_differences(torch.from_numpy(img), 2).numpy()).sum()

    assert objective(x2) < objective(f)
    assert imaging.psnr(x2, truth) > imaging.psnr(f, truth) + 3
    x3, h3 = imaging.admm_tv_ct(P, y, iters=30, return_history=True)  # auto: 3D TV for a volume
    assert x3.shape == truth.shape and h3[-1] < h3[1]
    with pytest.raises(ValueError, match="tv"):
        imaging.admm_tv_ct(P, y, tv="4d")


def test_tune_picks_the_best_value():
    truth = np.ones((4, 4))
    best, scores = imaging.tune(lambda v: truth * v, truth, [0.5, 1.0, 2.0])
    assert best == 1.0 and scores[1.0] == float("inf")


# ------------------------------------------------------------------ run_method
def test_run_method_shapes_scaling_and_errors():
    ny, nx = 24, 20
    maps = birdcage_maps(4, (ny, nx))
    mask = uniform1d_mask(nx, 2, acs=0.2, seed=0)
    x = _phantom((ny, nx), 2) * 5.0  # peak 5: the regularised methods must rescale
    A = SenseOperator(maps, mask)
    y = A.apply(x.astype(np.complex64))
    for method in ("zero-filled", "cg-sense", "l1-wavelet", "tv"):
        img, sec = run_method("mri", method, A, y)
        assert img.shape == (2, ny, nx) and np.iscomplexobj(img) and sec >= 0
        assert imaging.psnr(img, x) > 15, method
    # a volume operator (4-D maps) gives the same l1-wavelet result as the shared-maps batch
    Av = SenseOperator(np.broadcast_to(maps, (2,) + maps.shape).copy(), mask)
    a, _ = run_method("mri", "l1-wavelet", A, y, scale=5.0)
    b, _ = run_method("mri", "l1-wavelet", Av, y, scale=5.0)
    np.testing.assert_allclose(a, b, atol=1e-5 * np.abs(a).max())
    with pytest.raises(ValueError, match="method"):
        run_method("mri", "fbp", A, y)
    with pytest.raises(TypeError, match="rho"):
        run_method("mri", "cg-sense", A, y, rho=1.0)
    with pytest.raises(ValueError, match="krylearn train diffusion --kind mri"):
        run_method("mri", "dds", A, y, prior="no-such-prior")
    with pytest.raises(ValueError, match="kind"):
        run_method("pet", "fbp", A, y)


def test_run_method_dds_and_dps_with_a_gaussian_prior():
    ny, nx = 12, 10
    maps = birdcage_maps(3, (ny, nx))
    A = SenseOperator(maps, uniform1d_mask(nx, 2, acs=0.3, seed=0))
    x = _phantom((ny, nx))[0]
    y = A.apply(x.astype(np.complex64))
    den = GaussianDenoiser(np.zeros((2, ny, nx)), var=0.25)
    for method, nfe in (("dds", 5), ("dps", 4)):
        img, _ = run_method("mri", method, A, y, prior=den, nfe=nfe, seed=3)
        again, _ = run_method("mri", method, A, y, prior=den, nfe=nfe, seed=3)
        assert img.shape == (ny, nx) and np.all(np.isfinite(img))
        np.testing.assert_array_equal(img, again)  # seeded
    with pytest.raises(ValueError, match="channel"):
        P = ParallelBeamProjector((ny, nx), [0.0, 1.0])
        run_method("ct", "dds", P, np.zeros(P.oshape), prior=den)


# ------------------------------------------------------------------ reconstruct_mri
def _mri_file(path, shape=(30, 26), slices=3, coils=4, maps_in_file=True, mask=None, rss_shape=None):
    x = _phantom(shape, slices).astype(np.complex64)
    maps = birdcage_maps(coils, shape)
    k = fft2c(maps[None] * x[:, None]).astype(np.complex64)
    if mask is not None:
        k = k * mask
    rss = None
    if rss_shape is not None:
        cy, cx = (shape[0] - rss_shape[0]) // 2, (shape[1] - rss_shape[1]) // 2
        rss = np.abs(x)[:, cy:cy + rss_shape[0], cx:cx + rss_shape[1]]
    write_kspace(path, k, mask=mask, reconstruction_rss=rss,
                 sensitivity_maps=np.broadcast_to(maps, k.shape) if maps_in_file else None)
    return x, maps


def test_reconstruct_mri_cg_sense_odd_size_retrospective(tmp_path):
    src = tmp_path / "full.h5"
    x, maps = _mri_file(src)  # 30 x 26, fully sampled, maps in the file
    out = tmp_path / "recon.h5"
    rep = reconstruct_mri(src, out, method="cg-sense", mask="uniform1d", accel=4, seed=7, progress=False)
    mask = uniform1d_mask(26, 4, seed=7)
    assert rep["acceleration"] == pytest.approx(acceleration(mask))
    assert rep["acceleration"] != 4  # 26 columns: the realised ratio is reported, not the nominal one
    rec, attrs = read_reconstruction(out)
    assert rec.shape == (3, 30, 26) and rec.dtype == np.float32
    assert attrs["method"] == "cg-sense" and attrs["acceleration"] == pytest.approx(rep["acceleration"])
    recorded = {"method", "acceleration", "seconds_per_slice", "maps"}
    assert recorded <= set(attrs) and attrs["maps"] == "file"
    np.testing.assert_array_equal(attrs["slices"], [0, 1, 2])
    # the same problem by hand
    A = SenseOperator(maps, mask)
    k = fft2c(maps[None] * x[:, None]) * mask
    ref = np.abs(imaging.cg_sense(A, k.astype(np.complex64)))
    np.testing.assert_allclose(rec, ref, atol=1e-4 * ref.max())
    assert all(p.endswith(".png") and (tmp_path / "recon_preview.png").is_file() for p in rep["previews"])
    # zero-filled is worse than CG-SENSE on the same undersampling
    zf = reconstruct_mri(src, tmp_path / "zf.h5", method="zero-filled", mask="uniform1d", accel=4, seed=7,
                         progress=False, previews=False)
    assert zf["previews"] == []
    rec_zf, _ = read_reconstruction(tmp_path / "zf.h5")
    assert imaging.psnr(rec, np.abs(x)) > imaging.psnr(rec_zf, np.abs(x))


def test_reconstruct_mri_dds_with_a_saved_untrained_unet(tmp_path):
    src = tmp_path / "full.h5"
    _mri_file(src, slices=2)
    net = UNet(in_channels=2, base_channels=8, channel_mult=(1, 2, 2))  # 30 x 26 is padded to 32 x 28
    assert net.size_multiple == 4
    save_prior(net, {"data": "none (test)"}, tmp_path / "tiny")
    out = tmp_path / "dds.h5"
    rep = reconstruct_mri(src, out, method="dds", nfe=3, prior=str(tmp_path / "tiny"), mask="uniform1d",
                          accel=2, progress=False, slices="1:2")
    rec, attrs = read_reconstruction(out)
    assert rec.shape == (1, 30, 26) and rec.dtype == np.float32 and np.all(np.isfinite(rec))
    assert attrs["nfe"] == 3 and attrs["prior"].endswith("tiny") and attrs["cg_steps"] == 5
    np.testing.assert_array_equal(attrs["slices"], [1])
    assert rep["scale"] > 0 and (tmp_path / "dds_preview.png").is_file()
    with pytest.raises(ValueError, match="krylearn train diffusion"):
        reconstruct_mri(src, out, method="dds", prior=str(tmp_path / "missing"), progress=False)


def test_reconstruct_mri_espirit_crop_and_file_mask(tmp_path):
    shape = (32, 32)
    mask = uniform1d_mask(32, 2, acs=0.3, seed=0)
    src = tmp_path / "under.h5"
    _mri_file(src, shape=shape, slices=2, maps_in_file=False, mask=mask, rss_shape=(24, 20))
    out = tmp_path / "o.h5"
    rep = reconstruct_mri(src, out, method="cg-sense", progress=False, previews=False, iters=30)
    rec, attrs = read_reconstruction(out)
    assert rec.shape == (2, 24, 20)  # cropped like fastMRI's reconstruction_rss
    assert attrs["maps"].startswith("espirit") and attrs["mask"] == "file"
    assert rep["acceleration"] == pytest.approx(acceleration(mask))
    assert rep["psnr"] > 25
    with pytest.raises(ValueError, match="mask"):  # already undersampled: no second mask
        reconstruct_mri(src, out, method="cg-sense", mask="uniform1d", accel=2, progress=False)


def test_acs_width_and_parse_slices():
    m = np.zeros(20, bool)
    m[8:13] = True
    m[0] = True
    assert acs_width(m) == 5
    m2 = np.zeros((10, 10), bool)
    m2[3:8, 4:7] = True
    assert acs_width(m2) == 3
    assert parse_slices("3:9") == slice(3, 9) and parse_slices("1,4") == [1, 4] and parse_slices("2") == 2
    with pytest.raises(ValueError, match="slices"):
        parse_slices("a-b")


# ------------------------------------------------------------------ reconstruct_ct
def test_reconstruct_ct_fbp_admm_dds(tmp_path):
    shape = (32, 32)
    vol = np.stack([shepp_logan(shape).real, np.roll(shepp_logan(shape).real, 1, axis=0)])
    angles = np.linspace(0, np.pi, 8, endpoint=False)
    P = ParallelBeamProjector(shape, angles)
    src = tmp_path / "ct.h5"
    write_ct(src, P.apply(vol), angles, image_shape=shape, reference=vol)
    reps = {m: reconstruct_ct(src, tmp_path / f"{m}.h5", method=m, progress=False, previews=m == "fbp")
            for m in ("fbp", "admm-tv", "cg")}
    for m, rep in reps.items():
        rec, attrs = read_reconstruction(tmp_path / f"{m}.h5")
        assert rec.shape == (2, 32, 32) and rec.dtype == np.float32 and attrs["views"] == 8
    assert reps["admm-tv"]["psnr"] > reps["fbp"]["psnr"] + 3
    assert (tmp_path / "fbp_preview.png").is_file()
    net = UNet(in_channels=1, base_channels=8, channel_mult=(1, 2))
    save_prior(net, {"data": "none (test)"}, tmp_path / "tinyct")
    rep = reconstruct_ct(src, tmp_path / "dds.h5", method="dds", nfe=3, prior=str(tmp_path / "tinyct"),
                         progress=False, previews=False)
    rec, attrs = read_reconstruction(tmp_path / "dds.h5")
    assert rec.shape == (2, 32, 32) and np.all(np.isfinite(rec)) and attrs["volume"]
    assert rep["scale"] > 0


def test_ct_dds_tv_options_on_one_slice_and_without_volume():
    shape = (16, 16)
    angles = np.linspace(0, np.pi, 6, endpoint=False)
    P = ParallelBeamProjector(shape, angles)
    torch.manual_seed(0)
    net = UNet(in_channels=1, base_channels=8, channel_mult=(1, 2))
    one = P.apply(shepp_logan(shape).real)[None]  # a one-slice volume: TV along z has nothing to act on
    x1, _ = run_method("ct", "dds", P, one, prior=net, nfe=2, lam=0.2, scale=1.0)
    x0, _ = run_method("ct", "dds", P, one, prior=net, nfe=2, scale=1.0)
    np.testing.assert_array_equal(x1, x0)
    two = np.concatenate([one, one])
    with pytest.raises(TypeError, match="3D CT volumes only"):
        run_method("ct", "dds", P, two, prior=net, nfe=2, lam=0.2, volume=False, scale=1.0)


def test_mislabeled_files_raise_format_error(tmp_path):
    shape = (16, 16)
    angles = np.linspace(0, np.pi, 4, endpoint=False)
    ct = tmp_path / "ct.h5"
    write_ct(ct, ParallelBeamProjector(shape, angles).apply(shepp_logan(shape).real), angles, image_shape=shape)
    with pytest.raises(FormatError, match="kspace"):
        reconstruct_mri(ct, tmp_path / "o.h5", method="zero-filled", progress=False)
    mri = tmp_path / "mri.h5"
    _mri_file(mri, shape=shape, slices=1)
    with pytest.raises(FormatError, match="format"):
        reconstruct_ct(mri, tmp_path / "o.h5", method="fbp", progress=False)
    bad = tmp_path / "real.h5"
    with h5py.File(bad, "w") as f:
        f["kspace"] = np.zeros((1, 2, 8, 8), np.float32)  # real k-space: mislabeled
    with pytest.raises(FormatError, match="kspace"):
        reconstruct_mri(bad, tmp_path / "o.h5", method="cg-sense", progress=False)
    with pytest.raises(ValueError, match="method"):
        reconstruct_mri(mri, tmp_path / "o.h5", method="fbp", progress=False)
    with pytest.raises(ValueError, match="accel"):
        reconstruct_mri(mri, tmp_path / "o.h5", method="cg-sense", mask="poisson2d", progress=False)
