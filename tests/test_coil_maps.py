"""Coil maps in MRI reconstruction: non-finite / all-zero maps are refused by name, zero-filled needs no maps
(root-sum-of-squares of the zero-filled coil images), a centre too narrow for ESPIRiT gives joint maps
(fitted with the image to the acquired samples), ESPIRiT maps that miss part of the object are replaced there,
and files without
``reconstruction_rss`` are cropped to the ISMRMRD header's reconSpace."""

import warnings

import h5py
import numpy as np
import pytest
import torch

from krylearn.cli.main import main
from krylearn.datasets.fastmri import read_kspace, read_reconstruction, write_kspace
from krylearn.operators.mri import SenseOperator, birdcage_maps, fft2c, ifft2c, joint_maps, lowres_maps, rss
import krylearn.pipelines.coil_maps as maps_mod
from krylearn.pipelines.coil_maps import check_maps, map_coverage
from krylearn.pipelines.reconstruct import reconstruct_mri, run_method
from krylearn.problems.phantoms import shepp_logan
from krylearn.solvers.dds import GaussianDenoiser
from krylearn.utils.errors import FormatError

SHAPE = (24, 20)


def _problem(slices=2, coils=4):
    x = np.stack([np.roll(np.abs(shepp_logan(SHAPE)), i, axis=1) for i in range(slices)]).astype(np.complex64)
    maps = birdcage_maps(coils, SHAPE).astype(np.complex64)
    k = fft2c(torch.as_tensor(maps[None] * x[:, None])).numpy()
    return x, maps, k


def _raw(path, **datasets):
    with h5py.File(path, "w") as f:
        for key, v in datasets.items():
            f.create_dataset(key, data=v)
    return path


def _prior():
    return GaussianDenoiser(np.zeros((2,) + SHAPE), var=0.25)


# ------------------------------------------------------------------ bad maps
@pytest.mark.parametrize("fill", [0.0, 1e-30, np.nan, np.inf])
@pytest.mark.parametrize("method", ["dds", "cg-sense"])
def test_bad_maps_from_the_user_raise_a_value_error_naming_maps(fill, method):
    _, maps, k = _problem(1)
    bad = np.full_like(maps, fill)
    opts = {"prior": _prior(), "nfe": 2} if method == "dds" else {}
    with pytest.raises(ValueError, match="maps"):
        run_method("mri", method, SenseOperator(bad, np.ones(SHAPE[1])), k[0], **opts)
    with pytest.raises(ValueError, match="maps"):
        check_maps(bad[None])
    check_maps(maps[None])  # good maps pass


@pytest.mark.parametrize("fill", [0.0, 1e-30, np.nan])
@pytest.mark.parametrize("method", ["dds", "cg-sense", "zero-filled"])
def test_bad_maps_in_a_file_raise_format_error(tmp_path, fill, method):
    _, maps, k = _problem(2)
    m = np.broadcast_to(maps, k.shape).copy()
    m[1] = fill
    src = _raw(tmp_path / "k.h5", kspace=k, sensitivity_maps=m)
    opts = {"prior": _prior(), "nfe": 2} if method == "dds" else {}
    with pytest.raises(FormatError) as e:
        reconstruct_mri(src, tmp_path / "o.h5", method, progress=False, previews=False, **opts)
    assert e.value.key == "sensitivity_maps" and str(src) in str(e.value)
    assert not (tmp_path / "o.h5").exists()


def test_cli_exits_nonzero_on_zero_maps(tmp_path, capsys):
    _, maps, k = _problem(1)
    src = _raw(tmp_path / "k.h5", kspace=k, sensitivity_maps=np.zeros_like(k))
    assert main(["reconstruct", "mri", str(src), "--method", "cg-sense", "-q", "-o", str(tmp_path / "o.h5")]) != 0
    assert "sensitivity_maps" in capsys.readouterr().err
    assert not (tmp_path / "o.h5").exists()


# ------------------------------------------------------------------ zero-filled without maps
def _narrow_file(path, coils=4):
    x, maps, k = _problem(2, coils)
    mask = np.zeros(SHAPE[1], bool)
    mask[SHAPE[1] // 2 - 2: SHAPE[1] // 2 + 2] = True  # a 4-line centre: too narrow for ESPIRiT
    mask[::3] = True
    mask[SHAPE[1] // 2 + 2] = mask[SHAPE[1] // 2 - 3] = False
    k = (k * mask).astype(np.complex64)
    write_kspace(path, k, mask=mask)
    return k, mask


@pytest.mark.parametrize("coils", [4, 1])
def test_zero_filled_needs_no_maps_and_is_the_rss_of_the_coil_images(tmp_path, coils):
    src = tmp_path / "k.h5"
    k, mask = _narrow_file(src, coils)
    rep = reconstruct_mri(src, tmp_path / "zf.h5", "zero-filled", progress=False, previews=False)
    rec, attrs = read_reconstruction(tmp_path / "zf.h5")
    ref = rss(ifft2c(k * mask))
    assert rec.shape == (2,) + SHAPE and rec.dtype == np.float32
    np.testing.assert_allclose(rec, ref, rtol=1e-5, atol=1e-6 * ref.max())
    assert attrs["maps"].startswith("none") and rep["maps"] == attrs["maps"]
    if coils > 1:  # a centre too narrow for ESPIRiT: the methods that need maps use joint ones
        rep = reconstruct_mri(src, tmp_path / "cg.h5", "cg-sense", progress=False, previews=False)
        assert rep["maps"].startswith("joint (centre 4 lines")
        x = np.abs(_problem(2, coils)[0])
        cg = read_reconstruction(tmp_path / "cg.h5")[0]
        assert np.linalg.norm(cg - x) < 0.7 * np.linalg.norm(rec - x)


def test_zero_filled_cli_on_a_narrow_centre(tmp_path, capsys):
    src = tmp_path / "k.h5"
    _narrow_file(src)
    assert main(["reconstruct", "mri", str(src), "--method", "zero-filled", "-q", "--no-previews",
                 "-o", str(tmp_path / "zf.h5")]) == 0
    assert read_reconstruction(tmp_path / "zf.h5")[0].shape == (2,) + SHAPE
    capsys.readouterr()
    assert main(["reconstruct", "mri", str(src), "--method", "cg-sense", "-q", "--no-previews",
                 "-o", str(tmp_path / "cg.h5")]) == 0
    with pytest.raises(ValueError, match="fully sampled centre is 4 lines wide"):
        reconstruct_mri(src, tmp_path / "cg7.h5", "cg-sense", calib_width=7, progress=False, previews=False)


def test_zero_filled_with_file_maps_is_unchanged(tmp_path):
    """With maps in the file zero-filled stays the SENSE-combined |A^H y|."""
    x, maps, k = _problem(2)
    write_kspace(tmp_path / "k.h5", k, sensitivity_maps=np.broadcast_to(maps, k.shape))
    reconstruct_mri(tmp_path / "k.h5", tmp_path / "zf.h5", "zero-filled", progress=False, previews=False)
    rec, attrs = read_reconstruction(tmp_path / "zf.h5")
    assert attrs["maps"] == "file"
    ref = np.abs(run_method("mri", "zero-filled", SenseOperator(maps, np.ones(SHAPE[1])), k)[0])
    np.testing.assert_allclose(rec, ref, rtol=1e-5, atol=1e-6 * ref.max())


# ------------------------------------------------------------------ reconSpace crop
def _header(enc, rec):
    return ('<?xml version="1.0" encoding="utf-8"?>\n<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">'
            "<encoding><encodedSpace><matrixSize><x>%d</x><y>%d</y><z>1</z></matrixSize></encodedSpace>"
            "<reconSpace><matrixSize><x>%d</x><y>%d</y><z>1</z></matrixSize></reconSpace></encoding>"
            "</ismrmrdHeader>" % (*enc, *rec))


@pytest.mark.parametrize("enc, recon, expected", [
    ((24, 20), (16, 12), (16, 12)),   # fastMRI: x is k-space axis -2
    ((20, 24), (12, 16), (16, 12)),   # encodedSpace stored the other way round
    ((24, 20), (30, 12), (24, 12)),   # larger than the image: that axis is kept
])
def test_no_rss_crops_to_recon_space(tmp_path, enc, recon, expected):
    x, maps, k = _problem(2)
    write_kspace(tmp_path / "k.h5", k, sensitivity_maps=np.broadcast_to(maps, k.shape), header=_header(enc, recon))
    assert read_kspace(tmp_path / "k.h5").recon_shape == expected
    reconstruct_mri(tmp_path / "k.h5", tmp_path / "zf.h5", "zero-filled", progress=False, previews=False)
    assert read_reconstruction(tmp_path / "zf.h5")[0].shape == (2,) + expected
    reconstruct_mri(tmp_path / "k.h5", tmp_path / "nc.h5", "zero-filled", crop=None, progress=False,
                    previews=False)
    assert read_reconstruction(tmp_path / "nc.h5")[0].shape == (2,) + SHAPE


@pytest.mark.parametrize("header", [None, "<not xml", "<ismrmrdHeader/>", _header((24, 20), (24, 20))])
def test_no_usable_recon_space_keeps_the_encoded_size(tmp_path, header):
    x, maps, k = _problem(1)
    write_kspace(tmp_path / "k.h5", k, sensitivity_maps=np.broadcast_to(maps, k.shape), header=header)
    assert read_kspace(tmp_path / "k.h5").recon_shape is None
    reconstruct_mri(tmp_path / "k.h5", tmp_path / "zf.h5", "zero-filled", progress=False, previews=False)
    assert read_reconstruction(tmp_path / "zf.h5")[0].shape == (1,) + SHAPE


# ------------------------------------------------------------------ coverage
def test_maps_that_miss_part_of_the_object_warn(tmp_path):
    x, maps, k = _problem(2)
    good = np.broadcast_to(maps, k.shape).copy()
    assert np.all(map_coverage(good, k, np.ones(SHAPE)) > 0.95)
    holed = good.copy()
    holed[1, :, :, : SHAPE[1] // 2] = 0  # slice 1: no coil sees the left half
    cover = map_coverage(holed, k, np.ones(SHAPE))
    assert cover[0] > 0.95 and cover[1] < 0.7
    src = _raw(tmp_path / "k.h5", kspace=k, sensitivity_maps=holed)
    with pytest.warns(UserWarning, match=r"cover only \d+% of the signal in slice\(s\) 1"):
        reconstruct_mri(src, tmp_path / "out.h5", "cg-sense", progress=False, previews=False)
    ok = _raw(tmp_path / "ok.h5", kspace=k, sensitivity_maps=good)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reconstruct_mri(ok, tmp_path / "out2.h5", "cg-sense", progress=False, previews=False)


def test_lowres_maps_have_unit_norm_and_reject_bad_input():
    x, maps, k = _problem(1)
    S = lowres_maps(k[0], (None, 1))  # even a single line
    energy = (np.abs(S) ** 2).sum(axis=0)
    assert S.shape == k[0].shape and S.dtype == k.dtype
    assert np.abs(energy[np.abs(x[0]) > 0] - 1).max() < 1e-4
    with pytest.raises(ValueError, match="calib_shape"):
        lowres_maps(k[0], (None, 0))
    with pytest.raises(ValueError, match="all zero"):
        lowres_maps(np.zeros_like(k[0]), (None, 4))
    with pytest.raises(ValueError, match="NaN"):
        lowres_maps(np.full_like(k[0], np.nan), (None, 4))


def test_espirit_maps_that_miss_the_object_are_replaced(tmp_path, monkeypatch):
    x, maps, k = _problem(2)
    src = _raw(tmp_path / "k.h5", kspace=k)
    holed = np.broadcast_to(maps, k.shape[1:]).copy()
    holed[:, :, : SHAPE[1] // 2] = 0
    monkeypatch.setattr(maps_mod, "espirit_maps", lambda kspace, **kw: holed)
    with pytest.warns(UserWarning, match=r"ESPIRiT maps covered only \d+% of the signal in slice\(s\) 0, 1; "
                                         "using joint maps"):
        rep = reconstruct_mri(src, tmp_path / "out.h5", "cg-sense", progress=False, previews=False)
    assert "; joint on 2 slice(s)" in rep["maps"]
    out = read_reconstruction(tmp_path / "out.h5")[0]
    bad = _raw(tmp_path / "bad.h5", kspace=k, sensitivity_maps=np.broadcast_to(holed, k.shape).copy())
    with pytest.warns(UserWarning, match="cover only"):
        reconstruct_mri(bad, tmp_path / "bad_out.h5", "cg-sense", progress=False, previews=False)
    worse = read_reconstruction(tmp_path / "bad_out.h5")[0]
    xa = np.abs(x)
    assert np.linalg.norm(out - xa) < 0.5 * np.linalg.norm(worse - xa)


# ------------------------------------------------------------------ joint maps from narrow centres
N_JOINT = 48


def _narrow(acs: int, accel: int = 4, seed: int = 0):
    """A noisy 8-coil Shepp-Logan slice on a uniform column mask with an ``acs``-line centre."""
    rng = np.random.default_rng(seed)
    x = np.abs(shepp_logan((N_JOINT, N_JOINT))).astype(np.complex64)
    maps = birdcage_maps(8, (N_JOINT, N_JOINT)).astype(np.complex64)
    k = fft2c(torch.as_tensor(maps * x)).numpy()
    k = k + (0.01 * np.abs(k).max() * (rng.standard_normal(k.shape) + 1j * rng.standard_normal(k.shape))
             ).astype(np.complex64)
    mask = np.zeros(N_JOINT, bool)
    mask[::accel] = True
    c = N_JOINT // 2 - acs // 2
    mask[c - 1:c + acs + 1] = False
    mask[c:c + acs] = True
    return np.abs(x), (k * mask).astype(np.complex64), mask


def _cg_error(maps, mask, k, x):
    rec = np.abs(run_method("mri", "cg-sense", SenseOperator(maps, mask.astype(np.float32)), k)[0])
    return np.linalg.norm(rec - x)


@pytest.mark.parametrize("acs, factor", [(2, 0.95), (3, 0.8)])
def test_joint_maps_from_a_narrow_centre_beat_low_resolution_maps_and_zero_filled(acs, factor):
    x, k, mask = _narrow(acs)
    S = joint_maps(k, mask)
    assert S.shape == k.shape and S.dtype == k.dtype
    np.testing.assert_allclose((np.abs(S) ** 2).sum(0), 1.0, atol=1e-4)
    joint = _cg_error(S, mask, k, x)
    low = _cg_error(lowres_maps(k, (None, acs)), mask, k, x)
    zf = np.linalg.norm(rss(ifft2c(torch.as_tensor(k))).numpy() - x)
    assert joint < factor * low and joint < factor * zf


def test_joint_maps_reject_bad_input():
    x, k, mask = _narrow(3)
    with pytest.raises(ValueError, match="mask must have shape"):
        joint_maps(k, mask[:-1])
    with pytest.raises(ValueError, match="NaN"):
        joint_maps(np.full_like(k, np.nan), mask)
    with pytest.raises(ValueError, match="all zero"):
        joint_maps(np.zeros_like(k), mask)
    with pytest.raises(ValueError, match="max_iter"):
        joint_maps(k, mask, max_iter=0)
    with pytest.raises(ValueError, match="coils, ky, kx"):
        joint_maps(k[0], mask)


def test_a_failed_joint_fit_falls_back_to_low_resolution_maps(tmp_path, monkeypatch):
    x, k, mask = _narrow(3)
    write_kspace(tmp_path / "k.h5", k[None], mask=mask)

    def fails(kspace, mask):
        raise ValueError("the joint map estimate did not give finite maps")

    monkeypatch.setattr(maps_mod, "joint_maps", fails)
    rep = reconstruct_mri(tmp_path / "k.h5", tmp_path / "o.h5", "cg-sense", progress=False, previews=False)
    assert rep["maps"].startswith("joint; low-resolution on 1 slice(s) where the joint fit failed")


def test_a_one_line_centre_needs_stored_maps(tmp_path):
    x, k, mask = _narrow(1)
    write_kspace(tmp_path / "k.h5", k[None], mask=mask)
    with pytest.raises(ValueError, match="fully sampled centre is 1 line wide.*at least 2"):
        reconstruct_mri(tmp_path / "k.h5", tmp_path / "o.h5", "cg-sense", progress=False, previews=False)
    reconstruct_mri(tmp_path / "k.h5", tmp_path / "zf.h5", "zero-filled", progress=False, previews=False)
