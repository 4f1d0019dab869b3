"""fastMRI-style k-space files, the submission layout and the CT layout: round trips and schema errors."""

import h5py
import numpy as np
import pytest
from krylearn.utils.errors import FormatError
from krylearn.datasets.fastmri import (
    read_ct,
    read_kspace,
    read_reconstruction,
    write_ct,
    write_kspace,
    write_reconstruction,
)


def _kspace(slices=3, coils=4, ky=12, kx=10, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((slices, coils, ky, kx)) + 1j * rng.standard_normal((slices, coils, ky, kx))
            ).astype(np.complex64)


def _raw(path, **datasets):
    with h5py.File(path, "w") as f:
        for k, v in datasets.items():
            f.create_dataset(k, data=v)
    return path


def _error(path, key, **kw):
    with pytest.raises(FormatError) as e:
        read_kspace(path, **kw)
    assert e.value.key == key and key in str(e.value) and str(path) in str(e.value)
    return e.value


# ------------------------------------------------------------------ MRI
def test_kspace_round_trip(tmp_path):
    k = _kspace()
    mask = np.zeros(10, dtype=bool)
    mask[[0, 4, 5, 8]] = True
    k = k * mask  # zeros where not sampled
    maps = _kspace(seed=1)
    rss = np.random.default_rng(2).random((3, 8, 8)).astype(np.float32)
    attrs = {"acquisition": "CORPD_FBK", "max": 1.5e-4, "norm": 0.02, "patient_id": "abc", "acceleration": 4}
    write_kspace(tmp_path / "a.h5", k, mask=mask, sensitivity_maps=maps, reconstruction_rss=rss, attrs=attrs,
                 header="<ismrmrdHeader/>")
    d = read_kspace(tmp_path / "a.h5")
    np.testing.assert_array_equal(d.kspace, k)
    assert d.kspace.dtype == np.complex64 and d.num_slices == 3 and d.num_coils == 4 and d.image_shape == (12, 10)
    np.testing.assert_array_equal(d.mask, mask)
    np.testing.assert_array_equal(d.sensitivity_maps, maps)
    np.testing.assert_array_equal(d.reconstruction_rss, rss)
    assert d.attrs == attrs and d.header == "<ismrmrdHeader/>"
    np.testing.assert_array_equal(d.sampling_mask(), mask)
    # a subset of slices
    part = read_kspace(tmp_path / "a.h5", slices=[0, 2])
    np.testing.assert_array_equal(part.kspace, k[[0, 2]])
    np.testing.assert_array_equal(part.reconstruction_rss, rss[[0, 2]])
    assert read_kspace(tmp_path / "a.h5", slices=1).kspace.shape == (1, 4, 12, 10)


def test_mask_shapes_and_inferred_mask(tmp_path):
    k = _kspace()
    m2 = np.random.default_rng(0).random((12, 10)) < 0.4
    write_kspace(tmp_path / "m2.h5", k * m2, mask=m2)
    d = read_kspace(tmp_path / "m2.h5")
    assert d.mask.shape == (12, 10)
    np.testing.assert_array_equal(d.sampling_mask(), m2)
    # no mask stored: the nonzero pattern, a column mask when every row agrees
    write_kspace(tmp_path / "m1.h5", k * (np.arange(10) % 3 == 0))
    np.testing.assert_array_equal(read_kspace(tmp_path / "m1.h5").sampling_mask(), np.arange(10) % 3 == 0)
    write_kspace(tmp_path / "m3.h5", k * m2)
    np.testing.assert_array_equal(read_kspace(tmp_path / "m3.h5").sampling_mask(), m2)
    # single-coil (slices, ky, kx) reads with one coil
    _raw(tmp_path / "sc.h5", kspace=k[:, 0])
    assert read_kspace(tmp_path / "sc.h5").kspace.shape == (3, 1, 12, 10)


def test_corrupt_and_mislabeled_files(tmp_path):
    k = _kspace()
    _error(_raw(tmp_path / "nokey.h5", reconstruction_rss=np.zeros((3, 4, 4), np.float32)), "kspace")
    e = _error(_raw(tmp_path / "real.h5", kspace=np.abs(k)), "kspace")
    assert "complex" in str(e)
    _error(_raw(tmp_path / "ndim.h5", kspace=k[0, 0]), "kspace")
    bad = k.copy()
    bad[1, 2, 3, 4] = np.nan
    _error(_raw(tmp_path / "nan.h5", kspace=bad), "kspace")
    e = _error(_raw(tmp_path / "mlen.h5", kspace=k, mask=np.ones(12, bool)), "mask")
    assert "length" in str(e)
    _error(_raw(tmp_path / "m3d.h5", kspace=k, mask=np.ones((1, 12, 10), bool)), "mask")
    _error(_raw(tmp_path / "mneg.h5", kspace=k, mask=-np.ones(10)), "mask")
    _error(_raw(tmp_path / "maps.h5", kspace=k, sensitivity_maps=k[:, :2]), "sensitivity_maps")
    _error(_raw(tmp_path / "mapsr.h5", kspace=k, sensitivity_maps=np.abs(k)), "sensitivity_maps")
    _error(_raw(tmp_path / "rss.h5", kspace=k, reconstruction_rss=np.zeros((2, 4, 4), np.float32)),
           "reconstruction_rss")
    with h5py.File(tmp_path / "grp.h5", "w") as f:
        f.create_group("kspace")
    _error(tmp_path / "grp.h5", "kspace")
    # not HDF5 at all, and a truncated file
    (tmp_path / "junk.h5").write_bytes(b"this is not an HDF5 file" * 100)
    with pytest.raises(FormatError, match="HDF5"):
        read_kspace(tmp_path / "junk.h5")
    write_kspace(tmp_path / "full.h5", _kspace(slices=4, ky=64, kx=64), compression=None)
    data = (tmp_path / "full.h5").read_bytes()
    (tmp_path / "trunc.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError):
        read_kspace(tmp_path / "trunc.h5")
    with pytest.raises(FileNotFoundError):
        read_kspace(tmp_path / "missing.h5")


def test_writer_checks_and_atomicity(tmp_path):
    k = _kspace()
    target = tmp_path / "x.h5"
    write_kspace(target, k)
    before = target.read_bytes()
    with pytest.raises(ValueError, match="mask"):
        write_kspace(target, k, mask=np.ones(7, bool))
    with pytest.raises(TypeError, match="kspace must be complex"):
        write_kspace(target, np.abs(k))
    with pytest.raises(ValueError, match="kspace must have shape"):
        write_kspace(target, k[0])
    with pytest.raises(ValueError, match="sensitivity_maps"):
        write_kspace(target, k, sensitivity_maps=k[:1])
    with pytest.raises(ValueError, match="reconstruction_rss"):
        write_kspace(target, k, reconstruction_rss=np.zeros((5, 4, 4)))
    with pytest.raises(TypeError, match="attrs"):
        write_kspace(target, k, attrs={"bad": object()})
    assert target.read_bytes() == before  # a failed write leaves the old file untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.h5"]  # and no temporary file


def test_reconstruction_layout(tmp_path):
    r = np.random.default_rng(0).random((2, 6, 5))
    write_reconstruction(tmp_path / "r.h5", r, {"method": "dds", "nfe": 49})
    back, attrs = read_reconstruction(tmp_path / "r.h5")
    assert back.dtype == np.float32 and back.shape == (2, 6, 5)
    np.testing.assert_allclose(back, r, rtol=1e-6)
    assert attrs == {"method": "dds", "nfe": 49}
    with h5py.File(tmp_path / "r.h5") as f:
        assert f["reconstruction"].dtype == np.float32
    with pytest.raises(TypeError, match="magnitude"):
        write_reconstruction(tmp_path / "c.h5", r + 1j)
    with pytest.raises(FormatError) as e:
        read_reconstruction(_raw(tmp_path / "n.h5", other=r))
    assert e.value.key == "reconstruction"


# ------------------------------------------------------------------ CT
def test_ct_round_trip_and_errors(tmp_path):
    rng = np.random.default_rng(0)
    sino, ang, ref = rng.random((3, 8, 13)), np.linspace(0, np.pi, 8, endpoint=False), rng.random((3, 9, 9))
    write_ct(tmp_path / "ct.h5", sino, ang, image_shape=(9, 9), det_spacing=1.0, reference=ref,
             attrs={"source": "test", "views": 8})
    d = read_ct(tmp_path / "ct.h5")
    np.testing.assert_array_equal(d.sinogram, sino)
    np.testing.assert_array_equal(d.angles, ang)
    np.testing.assert_array_equal(d.reference, ref)
    assert d.image_shape == (9, 9) and d.det_spacing == 1.0 and d.attrs["source"] == "test"
    np.testing.assert_array_equal(read_ct(tmp_path / "ct.h5", slices=[1]).sinogram, sino[[1]])
    # writer checks
    with pytest.raises(ValueError, match="angles"):
        write_ct(tmp_path / "e.h5", sino, ang[:5], image_shape=(9, 9))
    with pytest.raises(ValueError, match="reference"):
        write_ct(tmp_path / "e.h5", sino, ang, image_shape=(9, 9), reference=ref[:, :5])
    with pytest.raises(ValueError, match="reserved"):
        write_ct(tmp_path / "e.h5", sino, ang, image_shape=(9, 9), attrs={"geometry": "fan"})
    # reader checks, naming the key

    def broken(name, edit):
        p = tmp_path / name
        p.write_bytes((tmp_path / "ct.h5").read_bytes())
        with h5py.File(p, "a") as f:
            edit(f)
        return p

    cases = {
        "format": lambda f: f.attrs.__setitem__("format", "something.else"),
        "geometry": lambda f: f.attrs.__setitem__("geometry", "fan"),
        "image_shape": lambda f: f.attrs.__setitem__("image_shape", np.array([9])),
        "det_spacing": lambda f: f.attrs.__setitem__("det_spacing", -1.0),
        "angles": lambda f: (f.__delitem__("angles"), f.create_dataset("angles", data=ang[:4])),
        "sinogram": lambda f: (f.__delitem__("sinogram"), f.create_dataset("sinogram", data=sino[0])),
        "reference": lambda f: (f.__delitem__("reference"), f.create_dataset("reference", data=ref[:2])),
    }
    for key, edit in cases.items():
        with pytest.raises(FormatError) as e:
            read_ct(broken(f"{key}.h5", edit))
        assert e.value.key == key, (key, str(e.value))
    with pytest.raises(FormatError) as e:
        read_ct(broken("nosino.h5", lambda f: f.__delitem__("sinogram")))
    assert e.value.key == "sinogram"
