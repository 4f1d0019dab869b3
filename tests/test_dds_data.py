"""DDS data: brain slices and their split, augmentation, MRI/CT simulation, file round trips, prior training."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from krylearn.problems import brain as B
from krylearn.problems import simulate as S
from krylearn.datasets.fastmri import read_ct, read_kspace
from krylearn.operators.ct import ParallelBeamProjector
from krylearn.operators.mri import SenseOperator, acceleration


def _has_nilearn():
    try:
        import nibabel  # noqa: F401
        import nilearn  # noqa: F401
    except ImportError:
        return False
    return True


needs_mni = pytest.mark.skipif(not _has_nilearn(), reason="the MNI152 template needs nilearn (krylearn[data])")


def _complex_phantoms(n=4, size=32, seed=0):
    from krylearn.problems.phantoms import random_phantom

    rng = np.random.default_rng(seed)
    mag = np.stack([np.clip(np.abs(random_phantom(size, seed=rng)), 0, 1) for _ in range(n)])
    return (mag * np.exp(1j * B.smooth_phase(n, (size, size), seed=seed))).astype(np.complex64)


# ------------------------------------------------------------------ split
def test_bands_are_disjoint_with_gaps():
    idx = {s: set(B.band_indices(s).tolist()) for s in ("train", "val", "test")}
    assert all(idx.values())
    for a, ia in idx.items():
        for b, ib in idx.items():
            if a < b:
                assert not ia & ib
                gap = min(abs(i - j) for i in ia for j in ib)
                assert gap > B.BAND_GAP  # at least BAND_GAP slices left out in between


def test_bad_split_and_overlapping_bands_are_rejected():
    with pytest.raises(ValueError, match="split"):
        B.band_indices("training")
    bad = {"train": ((0, 10),), "val": ((5, 12),), "test": ((20, 30),)}
    with pytest.raises(ValueError, match="overlap"):
        B.band_indices("test", 40, bands=bad)


@needs_mni
def test_mni_volume_and_slices_come_from_their_bands():
    v = B.mni152_volume()
    assert v.shape == (189, 233, 197) and v.dtype == np.float32
    assert v.min() >= 0 and v.max() == 1.0
    seen = {}
    for split in ("train", "val", "test"):
        x, z = B.brain_slices(split, 32, return_index=True)
        assert x.shape == (len(z), 32, 32) and x.dtype == np.float32
        assert 0 <= x.min() and x.max() <= 1
        assert set(z.tolist()) <= set(B.band_indices(split).tolist())
        assert np.all((x > 0.1).mean(axis=(1, 2)) >= 0.1)  # mostly-background slices skipped
        seen[split] = set(z.tolist())
    assert not (seen["train"] & seen["test"]) and not (seen["train"] & seen["val"]) and not (seen["val"] & seen["test"])
    vol, zv = B.brain_volume("test", 32, return_index=True)
    assert np.array_equal(zv, np.arange(82, 98)) and vol.shape == (16, 32, 32)


@needs_mni
def test_complex_slices_have_unit_bounded_magnitude_and_smooth_phase():
    x = B.complex_brain_slices("val", 32, seed=3, ellipses=2)
    assert x.dtype == np.complex64 and x.shape[1:] == (32, 32)
    assert np.abs(x).max() <= 1.0
    mag = B.brain_slices("val", 32)
    np.testing.assert_allclose(np.abs(x[: len(mag)]), np.minimum(mag, 1 - 2**-20), atol=1e-6)
    # smooth phase: neighbouring foreground pixels differ by well under a radian
    inside = (mag[:, :, 1:] > 0.2) & (mag[:, :, :-1] > 0.2)
    dphi = np.angle(x[: len(mag), :, 1:] * np.conj(x[: len(mag), :, :-1]))
    assert np.abs(dphi[inside]).max() < 0.5


def test_missing_nilearn_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "nilearn", None)
    with pytest.raises(ImportError, match=r"pip install nilearn"):  # the package that holds it, on PyPI
        B.mni152_path()


# ------------------------------------------------------------------ augmentation
@pytest.mark.parametrize("channels", [1, 2])
def test_augment_keeps_shape_and_dtype_is_seeded_and_changes_the_image(channels):
    x = _complex_phantoms(6, 32)
    t = torch.from_numpy(np.stack([x.real, x.imag], 1)) if channels == 2 else torch.from_numpy(np.abs(x))[:, None]
    aug = B.BrainAugment()
    a = aug(t, torch.Generator().manual_seed(7))
    b = aug(t, torch.Generator().manual_seed(7))
    c = aug(t, torch.Generator().manual_seed(8))
    assert a.shape == t.shape and a.dtype == t.dtype
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert (a - t).abs().amax(dim=(1, 2, 3)).min() > 1e-2  # every image changed
    mag = a.abs() if channels == 1 else a.square().sum(1).sqrt()
    assert float(mag.max()) <= 1 + 1e-6
    if channels == 1:
        assert float(a.min()) >= 0


def test_augment_flip_only_is_an_exact_flip_and_phase_only_keeps_magnitude():
    t = torch.from_numpy(np.abs(_complex_phantoms(3, 32)))[:, None]
    flip = B.BrainAugment(hflip=1.0, rotate=0.0, scale=(1, 1), translate=0.0, elastic=0.0, gamma=(1, 1),
                          intensity=(1, 1), phase=False)
    torch.testing.assert_close(flip(t, torch.Generator().manual_seed(0)), t.flip(-1), atol=1e-6, rtol=0)
    x = _complex_phantoms(3, 32)
    c = torch.from_numpy(np.stack([x.real, x.imag], 1))
    phase = B.BrainAugment(hflip=0.0, rotate=0.0, scale=(1, 1), translate=0.0, elastic=0.0, gamma=(1, 1),
                           intensity=(1, 1), phase=True)
    y = phase(c, torch.Generator().manual_seed(0))
    torch.testing.assert_close(y.square().sum(1), c.square().sum(1), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(y, c, atol=1e-3)


def test_augment_numpy_front_end_and_bad_input():
    x = _complex_phantoms(2, 16)
    a = B.augment(x, seed=1)
    assert a.shape == x.shape and a.dtype == np.complex64
    np.testing.assert_array_equal(a, B.augment(x, seed=1))
    with pytest.raises(ValueError, match="C = 1 or 2"):
        B.BrainAugment()(torch.zeros(2, 3, 8, 8), None)
    with pytest.raises(ValueError, match="hflip"):
        B.BrainAugment(hflip=2.0)


# ------------------------------------------------------------------ MRI simulation
def test_simulated_kspace_zero_off_mask_snr_and_exact_forward_model():
    x = _complex_phantoms(4, 32)
    sim = S.simulate_mri(x, coils=8, mask="uniform1d", accel=4, snr_db=20.0, seed=5)
    assert sim.kspace.shape == (4, 8, 32, 32) and sim.kspace.dtype == np.complex64
    m = np.broadcast_to(sim.mask, sim.kspace.shape)
    assert np.all(sim.kspace[~m] == 0)
    assert sim.acceleration == pytest.approx(acceleration(sim.mask))
    noise = (sim.kspace - sim.noiseless)[m]
    rms = np.sqrt(np.mean(np.abs(sim.noiseless.astype(np.complex128)) ** 2))
    snr_est = 20 * np.log10(rms / np.sqrt(np.mean(np.abs(noise) ** 2)))
    assert snr_est == pytest.approx(20.0, abs=0.3)
    assert sim.inverse_crime and sim.attrs["inverse_crime"] is True
    A = SenseOperator(sim.maps, sim.mask)
    y = A.apply(torch.from_numpy(sim.image)).numpy()
    np.testing.assert_allclose(y, np.where(m, sim.noiseless, 0), atol=1e-5 * np.abs(sim.noiseless).max())
    np.testing.assert_allclose(sim.reference_rss, np.abs(sim.image), atol=1e-5)


def test_simulation_on_a_finer_grid_avoids_the_inverse_crime():
    x = _complex_phantoms(2, 64)
    sim = S.simulate_mri(x, coils=4, accel=4, snr_db=None, seed=0, downsample=2)
    assert sim.kspace.shape == (2, 4, 32, 32) and sim.sigma == 0.0
    assert not sim.inverse_crime and sim.attrs["inverse_crime"] is False
    y = SenseOperator(sim.maps, np.ones(32)).apply(torch.from_numpy(sim.image)).numpy()
    rel = np.linalg.norm(y - sim.noiseless) / np.linalg.norm(sim.noiseless)
    assert 1e-4 < rel < 0.1  # close, but no coarse-grid model reproduces the data


def test_simulate_mri_rejects_bad_arguments():
    x = _complex_phantoms(1, 16)
    with pytest.raises(ValueError, match="mask"):
        S.simulate_mri(x, mask="radial")
    with pytest.raises(ValueError, match="downsample"):
        S.simulate_mri(x, maps=np.ones((2, 8, 8), np.complex64), downsample=2)
    with pytest.raises(ValueError, match="downsample"):
        S.simulate_mri(_complex_phantoms(1, 15), downsample=2)


# ------------------------------------------------------------------ CT simulation
def test_simulate_ct_is_the_projector_and_finer_grid_is_close():
    vol = B.random_ellipsoids((3, 32, 32), seed=0)
    sim = S.simulate_ct(vol, 8, seed=0)
    P = ParallelBeamProjector((32, 32), sim.angles)
    np.testing.assert_allclose(P.apply(torch.from_numpy(sim.reference.astype(np.float64))).numpy(), sim.sinogram,
                               atol=1e-4)
    fine = S.simulate_ct(B.random_ellipsoids((3, 64, 64), seed=0), 8, noise=0.02, seed=1, downsample=2)
    assert fine.sinogram.shape == sim.sinogram.shape and not fine.inverse_crime
    p = P.apply(torch.from_numpy(fine.reference.astype(np.float64))).numpy()
    rel = np.linalg.norm(p - fine.noiseless) / np.linalg.norm(fine.noiseless)
    assert 1e-5 < rel < 0.05
    resid = fine.sinogram - fine.noiseless
    assert np.std(resid) == pytest.approx(0.02 * np.sqrt(np.mean(fine.noiseless.astype(np.float64) ** 2)), rel=0.1)


# ------------------------------------------------------------------ files
@needs_mni
def test_mri_and_ct_test_files_read_back(tmp_path):
    p = S.write_mri_testset(tmp_path / "mri.h5", size=32, accel=4, snr_db=25.0, n_slices=3, seed=2, coils=4)
    d = read_kspace(p)
    assert d.kspace.shape == (3, 4, 32, 32) and d.sensitivity_maps.shape == d.kspace.shape
    assert d.reconstruction_rss.shape == (3, 32, 32)
    assert d.attrs["inverse_crime"] is False or d.attrs["inverse_crime"] == 0
    assert d.attrs["snr_db"] == 25.0 and d.attrs["split"] == "test"
    assert set(np.asarray(d.attrs["slice_z"]).tolist()) <= set(B.band_indices("test").tolist())
    m = np.broadcast_to(d.sampling_mask(), d.kspace.shape)
    assert np.all(d.kspace[~m] == 0)

    c = read_ct(S.write_ct_testset(tmp_path / "ct.h5", 8, size=32, n_slices=4, noise=0.01))
    assert c.sinogram.shape[:2] == (4, 8) and c.reference.shape == (4, 32, 32) and c.image_shape == (32, 32)
    np.testing.assert_allclose(c.angles, np.linspace(0, np.pi, 8, endpoint=False))
    assert np.array_equal(np.asarray(c.attrs["slice_z"]), np.arange(82, 86))


def test_ct_ellipsoid_testset_reads_back(tmp_path):
    c = read_ct(S.write_ct_testset(tmp_path / "e.h5", 4, size=16, n_slices=2, source="ellipsoids",
                                   inverse_crime=True))
    assert c.sinogram.shape[:2] == (2, 4) and c.reference.shape == (2, 16, 16)
    P = ParallelBeamProjector((16, 16), c.angles)
    np.testing.assert_allclose(P.apply(torch.from_numpy(c.reference.astype(np.float64))).numpy(), c.sinogram,
                               atol=1e-4)


# ------------------------------------------------------------------ training
def test_train_prior_lowers_the_held_out_loss_and_writes_loadable_weights(tmp_path):
    from krylearn.solvers.dds import evaluate_loss
    from krylearn.solvers.learned import load_pretrained

    from krylearn.solvers.dds.recipe import train_prior

    vol = B.random_ellipsoids((60, 48, 48), count=8, seed=0)  # no nilearn needed
    stem = tmp_path / "tiny"
    card = train_prior("mri", out=stem, steps=120, size=16, base=8, channel_mult=(1, 2), batch_size=8,
                       warmup=10, volume=vol, progress=False, log_every=20, command="test")
    mt = card["metrics"]
    assert mt["val_loss"] < 0.9 * mt["val_loss_untrained"]
    assert card["steps"] == 120 and card["command"] == "test" and card["data"]["size"] == [16, 16]
    for suffix in (".safetensors", ".json", "-log.json", "-loss.png"):
        assert (tmp_path / f"tiny{suffix}").is_file()
    net, c = load_pretrained(stem)
    assert c["config"]["in_channels"] == 2 and c["modality"] == "mri"
    from krylearn.solvers.dds.recipe import VAL_SEED, prior_data

    xv, _ = prior_data("mri", "val", 16, seed=VAL_SEED, volume=vol)
    assert evaluate_loss(net, xv, seed=0, repeats=8) == pytest.approx(mt["val_loss"], rel=1e-4)
    log = json.loads((tmp_path / "tiny-log.json").read_text())
    assert [r["step"] for r in log["history"]] == [20, 40, 60, 80, 100, 120]


@needs_mni
def test_user_nifti_volume_is_read_in_z_y_x_order(tmp_path):
    import nibabel as nib

    data = np.random.default_rng(0).uniform(0, 1, (12, 10, 8)).astype(np.float32)  # (x, y, z), RAS affine
    path = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    v = B.mni152_volume(path)
    assert v.shape == (8, 10, 12)
    expect = data.transpose(2, 1, 0)[:, ::-1, :]  # z first, anterior (high y) in row 0
    np.testing.assert_allclose(v, np.clip(expect / np.percentile(expect[expect > 0], 99.9), 0, 1), rtol=1e-6)
    with pytest.raises(FileNotFoundError, match="path"):
        B.mni152_volume(tmp_path / "missing.nii")
