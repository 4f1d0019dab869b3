"""``krylearn train diffusion --data``: DDS priors on the user's fastMRI / DICOM / NIfTI / HDF5 files.

Small files of every format are written here (24 x 20 slices), then: the
index, the prepared images, the split by volume, a tiny training run that
writes a loadable prior and resumes exactly, the command line, and the
errors for bad input.
"""

from __future__ import annotations

import json
import os
import sys

import h5py
import numpy as np
import pytest
import torch

from krylearn.datasets.fastmri import write_kspace
from krylearn.datasets.image_stacks import find_volumes, kspace_image, read_slice
from krylearn.operators.mri import birdcage_maps, fft2c, ifft2c, rss
from krylearn.solvers.dds.train import StreamingDiffusionTask
from krylearn.solvers.dds.user_images import UserImages, val_groups, volume_stats
from krylearn.utils.errors import FormatError

nib = pytest.importorskip("nibabel")
pydicom = pytest.importorskip("pydicom")

H, W = 24, 20


def _blob(rng, h=H, w=W, value=1.0):
    """An off-centre ellipse with a ramp, ~30 % of the image: float32 (h, w)."""
    y, x = np.mgrid[:h, :w]
    cy, cx = h / 2 + rng.uniform(-2, 2), w / 2 + rng.uniform(-2, 2)
    ry, rx = rng.uniform(0.3, 0.4) * h, rng.uniform(0.3, 0.4) * w
    inside = ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1
    return (inside * value * (0.6 + 0.4 * x / w)).astype(np.float32)


def _phase(rng, h=H, w=W):
    y, x = np.mgrid[:h, :w]
    return np.exp(1j * (rng.uniform(-1, 1) + 0.05 * x + 0.03 * y))


def _write_dicom(path, pixels, *, z, instance, uid, modality="MR", slope=1.0, intercept=0.0, pixel_data=True):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"  # MR image storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID, ds.InstanceNumber = modality, uid, instance
    ds.ImagePositionPatient = [0.0, 0.0, float(z)]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if pixel_data:
        ds.PixelData = np.ascontiguousarray(pixels, dtype=np.uint16).tobytes()
    _save_dicom(ds, path)


def _save_dicom(ds, path):
    try:
        ds.save_as(str(path), enforce_file_format=True)  # pydicom >= 3
    except TypeError:  # pydicom 2
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(str(path), write_like_original=False)


def _group_item(rescale=None, *, position=None, orientation=None):
    """A functional group item: PixelValueTransformation (``(slope, intercept)``), PlanePosition, PlaneOrientation."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    item = Dataset()
    for seq, values in (("PixelValueTransformationSequence", rescale and dict(
            RescaleSlope=rescale[0], RescaleIntercept=rescale[1], RescaleType="US")),
                        ("PlanePositionSequence", position and dict(ImagePositionPatient=list(position))),
                        ("PlaneOrientationSequence", orientation and dict(ImageOrientationPatient=list(orientation)))):
        if values:
            inner = Dataset()
            for k, v in values.items():
                setattr(inner, k, v)
            setattr(item, seq, Sequence([inner]))
    return item


def _write_multiframe(path, frames, *, uid, top=None, shared=None, per_frame=None, positions=None):
    """An Enhanced MR file of ``frames`` (N, rows, cols) uint16; rescale ``(slope, intercept)`` at the top level,
    in the shared functional group and/or one per frame (``per_frame``: a list, ``None`` entries leave it out);
    ``positions``: one ImagePositionPatient per frame (the orientation is shared: axial)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4.1"  # Enhanced MR image storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "MR"
    if uid:
        ds.SeriesInstanceUID = uid
    ds.NumberOfFrames = len(frames)
    ds.Rows, ds.Columns = frames.shape[1:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    if top is not None:
        ds.RescaleSlope, ds.RescaleIntercept = top
    if shared is not None or positions is not None:
        axial = None if positions is None else (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
        ds.SharedFunctionalGroupsSequence = Sequence([_group_item(shared, orientation=axial)])
    if per_frame is not None or positions is not None:
        per_frame = per_frame or [None] * len(frames)
        ds.PerFrameFunctionalGroupsSequence = Sequence([_group_item(r, position=None if positions is None else
                                                                    positions[t]) for t, r in enumerate(per_frame)])
    ds.PixelData = np.ascontiguousarray(frames, dtype=np.uint16).tobytes()
    _save_dicom(ds, path)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """One small file set of every format; returns a dict of paths."""
    root = tmp_path_factory.mktemp("userdata")
    rng = np.random.default_rng(0)
    maps = birdcage_maps(4, (H, W))
    out = {"root": root}
    fm = root / "fastmri"
    fm.mkdir()
    for i in range(2):  # multi-coil, 3 slices each, the first empty (background)
        imgs = np.stack([np.zeros((H, W))] + [_blob(rng) * _phase(rng) for _ in range(2)]).astype(np.complex64)
        write_kspace(fm / f"file{i}.h5", fft2c(maps[None] * imgs[:, None]))
    single = root / "single.h5"
    with h5py.File(single, "w") as f:  # single-coil (slices, ky, kx)
        f["kspace"] = fft2c(np.stack([_blob(rng) * _phase(rng) for _ in range(2)]).astype(np.complex64))
    out.update(fastmri_dir=fm, single=single)

    dcm = root / "dicom" / "series1"
    dcm.mkdir(parents=True)
    order = [2, 0, 3, 1]  # file names do not follow the positions
    for name, k in enumerate(order):
        px = _blob(np.random.default_rng(k), value=100.0 * (k + 1)) + 10
        _write_dicom(dcm / f"im{name}.dcm", px, z=2.5 * k, instance=10 - k, uid="1.2.3.4", slope=2.0,
                     intercept=-10.0)
    out["dicom_dir"] = root / "dicom"

    out["nifti"] = []
    for i in range(2):
        vol = np.stack([_blob(rng, H, W).T for _ in range(5)], axis=-1)  # (x=W, y=H, z=5)
        p = root / f"vol{i}.nii.gz"
        nib.save(nib.Nifti1Image(vol, np.diag([1.0, 1.0, 2.0, 1.0])), str(p))
        out["nifti"].append(p)

    stack = root / "fields.h5"
    with h5py.File(stack, "w") as f:
        f.create_dataset("u", data=np.stack([_blob(rng) - 0.5 for _ in range(6)])[:, None], chunks=(1, 1, H, W))
        f["x-coordinate"] = np.linspace(0, 1, W)
    out["stack"] = stack
    return out


def _all(files):
    return [files["fastmri_dir"], files["single"], files["dicom_dir"], *files["nifti"], files["stack"]]


# ------------------------------------------------------------------ index
def test_index_counts_volumes_and_slices_from_headers(files):
    vols = find_volumes(_all(files))
    by = {}
    for v in vols:
        by.setdefault(v.format, []).append(v)
    assert sorted(by) == ["dicom", "fastmri", "hdf5", "nifti"]
    assert [v.slices for v in by["fastmri"]] == [3, 3, 2] and [v.info["coils"] for v in by["fastmri"]] == [4, 4, 1]
    assert by["dicom"][0].slices == 4 and by["dicom"][0].shape == (H, W) and by["dicom"][0].info["modality"] == "MR"
    assert [v.slices for v in by["nifti"]] == [5, 5] and by["nifti"][0].shape == (H, W)
    assert by["hdf5"][0].slices == 6 and by["hdf5"][0].key == "u" and by["hdf5"][0].info["layout"] == "n1hw"
    assert all(v.shape == (H, W) for v in vols)
    # the order of the paths given does not matter; a file given twice counts once
    assert find_volumes(_all(files)[::-1] + [files["single"]]) == vols
    three = find_volumes(files["nifti"][0], axes="axial,coronal,sagittal")
    assert [(v.key, v.slices, v.shape) for v in three] == [("axial", 5, (H, W)), ("coronal", H, (5, W)),
                                                          ("sagittal", W, (5, H))]
    assert len({v.group for v in three}) == 1


def test_dicom_slices_sorted_by_position_with_rescale(files):
    (vol,) = find_volumes(files["dicom_dir"])
    assert vol.info["sorted_by"] == "position"
    for k in range(4):
        img = read_slice(vol, k)
        assert img.dtype == np.float32 and img.shape == (H, W)
        # stored = round(blob(value=100 (k+1)) + 10) -> 2 * stored - 10
        assert img.min() == pytest.approx(2 * 10 - 10, abs=2) and 2 * 100 * (k + 1) * 0.6 < img.max() <= 2 * (
            100 * (k + 1) + 10) - 10 + 1


def test_nifti_slices_follow_the_ras_axes_of_any_affine(files, tmp_path):
    rng = np.random.default_rng(1)
    data = rng.uniform(0, 1, (6, 5, 4)).astype(np.float32)
    aff = np.array([[0, 0, -2.0, 0], [1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 0, 1]])  # permuted, one axis flipped
    p = tmp_path / "odd.nii"
    nib.save(nib.Nifti1Image(data, aff), str(p))
    canon = np.asarray(nib.as_closest_canonical(nib.load(str(p))).dataobj)  # (x, y, z) RAS+
    vols = {v.key: v for v in find_volumes(p, axes=("axial", "coronal", "sagittal"))}
    for k in range(canon.shape[2]):
        np.testing.assert_array_equal(read_slice(vols["axial"], k), canon[:, :, k].T[::-1, :])
    for k in range(canon.shape[1]):
        np.testing.assert_array_equal(read_slice(vols["coronal"], k), canon[:, k, :].T[::-1, :])
    for k in range(canon.shape[0]):
        np.testing.assert_array_equal(read_slice(vols["sagittal"], k), canon[k, :, :].T[::-1, ::-1])
    # axial slices as the MNI152 reader orders the volume: (z, y anterior first, x)
    from krylearn.problems.brain import mni152_volume

    ref = mni152_volume(files["nifti"][0])
    (ax,) = find_volumes(files["nifti"][0])
    for k in range(5):
        s = read_slice(ax, k)
        np.testing.assert_allclose(np.clip(s / np.percentile(np.stack([read_slice(ax, j) for j in range(5)])[
            np.stack([read_slice(ax, j) for j in range(5)]) > 0], 99.9), 0, 1), ref[k], atol=1e-6)


def test_fastmri_images_coil_combined_or_rss(tmp_path):
    rng = np.random.default_rng(3)
    maps = birdcage_maps(6, (32, 28))
    x = (_blob(rng, 32, 28) * _phase(rng, 32, 28)).astype(np.complex64)
    k = fft2c(maps * x)
    np.testing.assert_allclose(kspace_image(k, maps), x, atol=1e-5)  # true maps: the image itself
    write_kspace(tmp_path / "maps.h5", np.stack([k, k]), sensitivity_maps=np.stack([maps, maps]))
    (vol,) = find_volumes(tmp_path / "maps.h5")
    assert vol.info["sensitivity_maps"] and vol.is_complex
    np.testing.assert_allclose(read_slice(vol, 1, complex_image=True), x, atol=1e-5)  # the file's maps are used
    np.testing.assert_allclose(read_slice(vol, 1), rss(ifft2c(k)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(kspace_image(k, complex_image=False), rss(ifft2c(k)), rtol=1e-5, atol=1e-6)
    low = kspace_image(k)  # low-resolution maps from the centre
    assert low.dtype == np.complex64 and low.shape == (32, 28)
    assert np.corrcoef(np.abs(low).ravel(), np.abs(x).ravel())[0, 1] > 0.95
    assert not np.any(kspace_image(np.zeros_like(k)))


# ------------------------------------------------------------------ 4-D NIfTI, multi-frame DICOM
_ODD_AFFINE = np.array([[0, 0, -2.0, 0], [1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 0, 1]])  # permuted, one axis flipped


def test_4d_nifti_frames_are_volumes_of_one_file_group(tmp_path):
    from krylearn.datasets.image_stacks import _nifti

    rng = np.random.default_rng(5)
    data = rng.uniform(0, 1, (6, 5, 4, 3)).astype(np.float32)  # (x, y, z, t): 3 frames
    p4 = tmp_path / "series.nii.gz"
    nib.save(nib.Nifti1Image(data, _ODD_AFFINE), str(p4))
    vols = find_volumes(p4, axes="all")
    assert len(vols) == 3 * 3 and {v.group for v in vols} == {os.fspath(p4)}
    assert [(v.key, v.frame) for v in vols] == [(a, t) for a in ("axial", "coronal", "sagittal") for t in range(3)]
    assert vols[3].label == f"{p4}#coronal,frame=0" and vols[3].info["frames"] == 3
    assert len({v.label for v in vols}) == len(vols) and len(set(vols)) == len(vols)
    for t in range(3):  # each frame reads exactly as the same frame saved as a 3-D file
        p3 = tmp_path / f"frame{t}.nii.gz"
        nib.save(nib.Nifti1Image(data[..., t], _ODD_AFFINE), str(p3))
        ref = {v.key: v for v in find_volumes(p3, axes="all")}
        assert all(v.frame is None for v in ref.values())
        for v in (v for v in vols if v.frame == t):
            assert (v.slices, v.shape) == (ref[v.key].slices, ref[v.key].shape)
            for k in range(v.slices):
                np.testing.assert_array_equal(read_slice(v, k), read_slice(ref[v.key], k))
    assert not _nifti(os.fspath(p4))[0].in_memory  # read through the array proxy, never loaded whole
    # a validation split keeps every frame and axis of the file on one side
    other = tmp_path / "other.nii"
    nib.save(nib.Nifti1Image(rng.uniform(0, 1, (6, 5, 4)).astype(np.float32), np.eye(4)), str(other))
    both = find_volumes([p4, other], axes="all")
    ui = UserImages(both, channels=1, size=16, seed=0, val_fraction=0.5)
    sides = {}
    for side, entries in (("train", ui.train), ("val", ui.val)):
        for vi in {int(v) for v in entries[:, 0]}:
            sides.setdefault(both[vi].path, set()).add(side)
    assert sorted(map(len, sides.values())) == [1, 1] and len(sides) == 2


def test_4d_nifti_with_one_frame_is_read_as_before(tmp_path):
    data = np.random.default_rng(6).uniform(0, 1, (6, 5, 4)).astype(np.float32)
    p = tmp_path / "one.nii"
    nib.save(nib.Nifti1Image(data[..., None], np.eye(4)), str(p))
    (v,) = find_volumes(p)
    assert v.frame is None and v.label == f"{p}#axial" and "frames" not in v.info
    np.testing.assert_array_equal(read_slice(v, 2), data[:, :, 2].T[::-1, :])


def test_a_single_4d_nifti_trains_as_user_data_a_3d_one_as_one_volume(tmp_path):
    from krylearn.solvers.dds.recipe_user import single_nifti

    data = np.random.default_rng(7).uniform(0, 1, (6, 5, 4, 3)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / "fmri.nii"))
    nib.save(nib.Nifti1Image(data[..., :1], np.eye(4)), str(tmp_path / "one.nii"))
    assert single_nifti(tmp_path / "fmri.nii") is None  # a volume per frame: the user-data route
    assert single_nifti(tmp_path / "one.nii") == os.fspath(tmp_path / "one.nii")


def test_5d_and_2d_nifti_are_refused_naming_file_and_shape(tmp_path):
    p5 = tmp_path / "vector.nii"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 3, 1, 3), np.float32), np.eye(4)), str(p5))
    with pytest.raises(FormatError, match=r"vector\.nii: holds a 5-D image of shape \(4, 4, 3, 1, 3\)"):
        find_volumes(p5)
    p2 = tmp_path / "flat.nii"
    nib.save(nib.Nifti1Image(np.zeros((4, 4), np.float32), np.eye(4)), str(p2))
    with pytest.raises(FormatError, match=r"flat\.nii: holds an image of shape \(4, 4\)"):
        find_volumes(p2)


def _expected(frames, slope, intercept):
    return frames.astype(np.float32) * np.float32(slope) + np.float32(intercept)


def test_multiframe_dicom_is_one_volume_with_each_frames_rescale(tmp_path):
    from krylearn.datasets.dicom_series import read_dicom_slice

    rng = np.random.default_rng(7)
    px = rng.integers(0, 4000, (4, H, W)).astype(np.uint16)
    rescale = [(1.0, 0.0), (2.0, -10.0), None, (0.5, 3.0)]  # frame 2 has no per-frame values: the shared ones
    p = tmp_path / "enhanced.dcm"
    _write_multiframe(p, px, uid="5.6.7", top=(9.0, 9.0), shared=(3.0, -1.0), per_frame=rescale)
    (vol,) = find_volumes(p)
    assert (vol.format, vol.slices, vol.shape, vol.files) == ("dicom", 4, (H, W), (os.fspath(p),))
    assert vol.label == os.fspath(p) and vol.info["frames"] == 4 and vol.info["sorted_by"] == "frames"
    for k, r in enumerate(rescale):
        np.testing.assert_array_equal(read_slice(vol, k), _expected(px[k], *(r or (3.0, -1.0))))
    top = tmp_path / "top.dcm"  # no functional groups: the file-level tags
    _write_multiframe(top, px[:3], uid="", top=(2.0, 5.0))
    (tv,) = find_volumes(top)
    assert tv.slices == 3 and tv.group == os.fspath(top)  # no series UID: the file is its own group
    for k in range(3):
        np.testing.assert_array_equal(read_slice(tv, k), _expected(px[k], 2.0, 5.0))
    with pytest.raises(FormatError, match="enhanced.dcm.*4 frames: give frame="):
        read_dicom_slice(p)
    with pytest.raises(IndexError, match="frame 4 is out of range.*enhanced.dcm"):
        read_dicom_slice(p, frame=4)


def test_single_frame_enhanced_files_sort_and_rescale_from_functional_groups(tmp_path):
    px = np.random.default_rng(10).integers(0, 4000, (3, H, W)).astype(np.uint16)
    folder = tmp_path / "enhanced_single"
    folder.mkdir()
    for name, k in zip("abc", (1, 2, 0)):  # names do not follow the positions; no top-level position tags
        _write_multiframe(folder / f"{name}.dcm", px[k:k + 1], uid="3.3", per_frame=[(2.0, -float(k))],
                          positions=[(0.0, 0.0, 5.0 * k)])
    (vol,) = find_volumes(folder)
    assert vol.slices == 3 and vol.info["sorted_by"] == "position" and "frames" not in vol.info
    for k in range(3):
        np.testing.assert_array_equal(read_slice(vol, k), _expected(px[k], 2.0, -float(k)))


def test_multiframe_dicom_without_frame_reads_decodes_each_file_once(tmp_path, monkeypatch):
    from krylearn.datasets import dicom_series as dcm

    px = np.random.default_rng(8).integers(0, 4000, (5, H, W)).astype(np.uint16)
    p = tmp_path / "old.dcm"
    _write_multiframe(p, px, uid="5.6.8", shared=(2.0, 1.0))
    monkeypatch.delattr(pydicom, "pixels", raising=False)  # as pydicom 2: no one-frame reader
    dcm._all_frames.cache_clear()
    (vol,) = find_volumes(p)
    for k in range(5):
        np.testing.assert_array_equal(read_slice(vol, k), _expected(px[k], 2.0, 1.0))
    info = dcm._all_frames.cache_info()
    assert (info.misses, info.hits) == (1, 4)


def test_folder_mixing_multiframe_files_and_a_series_reads_end_to_end(tmp_path):
    root = tmp_path / "exam"
    root.mkdir()
    rng = np.random.default_rng(9)
    single = [(_blob(rng, value=300.0) + 5).astype(np.uint16) for _ in range(3)]
    for k, im in enumerate(single):
        _write_dicom(root / f"s{k}.dcm", im, z=-2.0 * k, instance=k + 1, uid="1.1.1", slope=2.0, intercept=-4.0)
    mf = np.stack([(_blob(rng, value=500.0) + 1).astype(np.uint16) for _ in range(5)])
    _write_multiframe(root / "mf", mf, uid="2.2.2", per_frame=[(1.5, float(t)) for t in range(5)])  # no extension
    _write_multiframe(root / "same_series.dcm", mf[:2], uid="1.1.1", top=(1.0, 0.0))
    nib.save(nib.Nifti1Image(np.stack([_blob(rng).T for _ in range(4)], -1)[..., None].repeat(2, -1),
                             np.eye(4)), str(root / "bold.nii"))
    vols = find_volumes(root)
    dicom = {os.path.basename(v.label.split("#")[0]): v for v in vols if v.format == "dicom"}
    assert sorted(dicom) == ["exam", "mf", "same_series.dcm"]
    series, multi, same = dicom["exam"], dicom["mf"], dicom["same_series.dcm"]
    assert (series.slices, multi.slices, same.slices) == (3, 5, 2) and series.info["sorted_by"] == "position"
    assert series.group == same.group != multi.group  # a multi-frame file stays with its series in the split
    for k in range(3):  # positions -2 k: the last file first
        np.testing.assert_array_equal(read_slice(series, k), _expected(single[2 - k], 2.0, -4.0))
    for k in range(5):
        np.testing.assert_array_equal(read_slice(multi, k), _expected(mf[k], 1.5, float(k)))
    nifti = [v for v in vols if v.format == "nifti"]
    assert [v.frame for v in nifti] == [0, 1] and all(read_slice(v, 3).shape == (H, W) for v in nifti)
    assert len({v.group for v in vols}) == 3
    ui = UserImages(vols, channels=2, size=16, seed=1, val_fraction=0.34)
    x = ui.draw_batch(8, torch.Generator().manual_seed(0))
    assert x.shape == (8, 2, 16, 16) and bool(torch.isfinite(x).all())
    assert len(ui.val_groups) == 1 and not {vols[int(i)].group for i in ui.train[:, 0]} & set(ui.val_groups)


# ------------------------------------------------------------------ images
@pytest.mark.parametrize("channels", [1, 2])
def test_images_come_out_at_the_training_size_normalised(files, channels):
    vols = find_volumes(_all(files))
    ui = UserImages(vols, channels=channels, size=16, seed=0, val_fraction=0)
    x = ui.draw_batch(24, torch.Generator().manual_seed(0))
    assert x.shape == (24, channels, 16, 16) and x.dtype == torch.float32 and bool(torch.isfinite(x).all())
    mag = x.pow(2).sum(1).sqrt()
    assert float(mag.max()) <= 1.0 and float(mag.amax(dim=(1, 2)).min()) > 0.5  # each image reaches the peak
    if channels == 1:
        assert float(x.min()) >= 0
    fm = [i for i, v in enumerate(vols) if v.format == "fastmri" and v.slices == 3]
    assert ui.image(fm[0], 0) is None and ui.image(fm[0], 1) is not None  # the empty slice is background
    for vi, v in enumerate(vols):
        s = volume_stats(v, channels == 2)
        assert s.scale > 0 and s.fov is not None and s.fov[2] >= max(v.shape) * 0.5


def test_validation_split_is_by_file_and_seeded(files):
    vols = find_volumes(_all(files), axes="axial,coronal")
    groups = sorted({v.group for v in vols})
    assert val_groups(groups, 0.3, 0) == val_groups(groups, 0.3, 0)
    assert any(val_groups(groups, 0.3, 0) != val_groups(groups, 0.3, s) for s in range(1, 6))
    ui = UserImages(vols, channels=2, size=16, seed=4, val_fraction=0.3)
    held = set(ui.val_groups)
    assert len(held) == round(0.3 * len(groups))
    train_vols = {int(v) for v in ui.train[:, 0]}
    val_vols = {int(v) for v in ui.val[:, 0]}
    assert not train_vols & val_vols
    assert {vols[i].group for i in val_vols} == held and not {vols[i].group for i in train_vols} & held
    x, where = ui.val_images()
    assert x.shape[1:] == (2, 16, 16) and len(where) == len(x)
    assert {w[0].split("#")[0] for w in where} <= {g.split("#")[0] for g in held}
    for r in range(2):  # each DDP rank draws from its own shard
        lo, hi = ui.shard(r, 2)
        assert (lo, hi) == (r * len(ui) // 2, (r + 1) * len(ui) // 2)


# ------------------------------------------------------------------ training
def test_tiny_training_run_writes_a_loadable_prior_and_resumes(files, tmp_path, monkeypatch):
    from krylearn.solvers.dds import load_prior
    from krylearn.solvers.dds.recipe import train_prior

    kw = dict(size=16, base=8, channel_mult=(1, 2), batch_size=4, warmup=2, seed=0, progress=False, log_every=1,
              checkpoint_every=1, val_repeats=1, command="test", data=_all(files), val_fraction=0.3)
    card, ema = train_prior("mri", out=tmp_path / "full", steps=4, return_model=True, **kw)
    for suffix in (".safetensors", ".json", "-log.json", "-loss.png"):
        assert (tmp_path / f"full{suffix}").is_file()
    net, c = load_prior(tmp_path / "full", return_card=True)
    assert net.in_channels == 2 and c["steps"] == 4 and np.isfinite(c["metrics"]["val_loss"])
    d = c["data"]
    assert d["inputs"] == [os.fspath(p) for p in _all(files)] and d["size"] == [16, 16]
    assert set(d["formats"]) == {"fastmri", "dicom", "nifti", "hdf5"} and d["slices_indexed"] == 3 + 3 + 2 + 4 + 10 + 6
    assert d["val_volumes"] and d["train_volumes"] + len(d["val_volumes"]) == d["volumes"] == 7
    assert "99.9th percentile" in d["normalisation"] and "bounding box" in d["size_policy"]
    assert d["val_images"] == len(d["val_slices"]) > 0

    train_prior("mri", out=tmp_path / "part", steps=2, **kw)
    rounds = []
    batches = StreamingDiffusionTask.batches
    monkeypatch.setattr(StreamingDiffusionTask, "batches", lambda self, r: (rounds.append(r), batches(self, r))[1])
    _, resumed = train_prior("mri", out=tmp_path / "part", steps=4, return_model=True, **kw)
    assert rounds == [2, 3]  # continued from the checkpoint of step 2
    for a, b in zip(ema.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="different run"):  # other data: the checkpoint is refused
        train_prior("mri", out=tmp_path / "part", steps=5, **{**kw, "data": _all(files)[:-1]})
    assert train_prior("mri", steps=4, max_minutes=1e-9, **kw)["steps"] == 1  # the wall-time budget holds


def test_one_nifti_file_alone_keeps_the_single_volume_route(files):
    from krylearn.solvers.dds.recipe_user import single_nifti

    assert single_nifti([files["nifti"][0]]) == os.fspath(files["nifti"][0])
    assert single_nifti(files["nifti"]) is None and single_nifti([files["stack"]]) is None


def test_command_line_trains_a_ct_prior_on_folders(files, tmp_path, capsys):
    from krylearn.cli.main import main
    from krylearn.solvers.dds import load_prior

    stem = tmp_path / "ct"
    assert main(["train", "diffusion", "--kind", "ct", "--data", str(files["dicom_dir"]), str(files["fastmri_dir"]),
                 *map(str, files["nifti"]), "--axes", "all", "--size", "16", "--base", "8", "--channel-mult", "1,2",
                 "--steps", "2", "--batch-size", "2", "--val-fraction", "0.25", "--out", str(stem), "-q"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 2 and np.isfinite(summary["val_loss"])
    net, card = load_prior(stem, return_card=True)
    assert net.in_channels == 1 and card["command"].startswith("krylearn train diffusion --kind ct --data")
    assert card["data"]["options"]["axes"] == ["axial", "coronal", "sagittal"]
    assert main(["train", "diffusion", "--data", str(tmp_path / "nowhere"), "--out", str(stem)]) == 2
    assert "nowhere" in capsys.readouterr().err


# ------------------------------------------------------------------ bad input
def test_bad_inputs_raise_errors_naming_the_path(files, tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        find_volumes(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images")
    with pytest.raises(ValueError, match="empty.*no readable image files"):
        find_volumes(empty)
    with pytest.raises(ValueError, match="notes.txt"):
        find_volumes(empty / "notes.txt")
    bad = tmp_path / "corrupt.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + os.urandom(200))
    with pytest.raises(FormatError, match="corrupt.h5"):
        find_volumes(bad)
    nopix = tmp_path / "nopix"
    nopix.mkdir()
    _write_dicom(nopix / "a.dcm", np.ones((H, W)), z=0, instance=1, uid="9.9", pixel_data=False)
    with pytest.raises(FormatError, match="a.dcm.*no PixelData"):
        find_volumes(nopix)
    (tmp_path / "junk.dcm").write_bytes(os.urandom(300))
    with pytest.raises(FormatError, match="junk.dcm"):
        find_volumes(tmp_path / "junk.dcm")
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(files["nifti"][0].read_bytes()[:60])
    with pytest.raises(FormatError, match="cut.nii.gz"):
        find_volumes(cut)
    two = tmp_path / "two.h5"
    with h5py.File(two, "w") as f:
        f["a"], f["b"] = np.zeros((2, 4, 4)), np.zeros((2, 4, 4))
    with pytest.raises(ValueError, match="two.h5.*several: a, b.*h5-key"):
        find_volumes(two)
    with pytest.raises(FormatError, match="two.h5: c"):
        find_volumes(two, key="c")
    under = tmp_path / "under.h5"
    write_kspace(under, np.ones((1, 2, 8, 8), np.complex64), mask=np.arange(8) % 2 == 0)
    with pytest.raises(ValueError, match="under.h5 is undersampled"):
        find_volumes(under)
    k = np.ones((3, 2, 16, 12), np.complex64)
    k[..., :2] = k[..., -1:] = 0  # readout padding at the edges: a fully sampled scan
    padded = tmp_path / "padded.h5"
    write_kspace(padded, k)
    assert find_volumes(padded)[0].shape == (16, 12)
    k[..., 5::3] = 0  # every third column inside the band skipped, no mask stored
    write_kspace(tmp_path / "skipped.h5", k)
    with pytest.raises(ValueError, match="skipped.h5 looks undersampled: 2 k-space columns"):
        find_volumes(tmp_path / "skipped.h5")
    with pytest.raises(ValueError, match="at least 2"):
        UserImages(find_volumes(files["single"]), channels=2, size=16, val_fraction=0.1)
    monkeypatch.setitem(sys.modules, "pydicom", None)
    with pytest.raises(ImportError, match=r"pip install krylearn\[dicom\]"):
        find_volumes(files["dicom_dir"])


def test_bad_data_stops_train_prior_before_training(tmp_path):
    from krylearn.solvers.dds.recipe import train_prior

    with pytest.raises(FileNotFoundError, match="nowhere"):
        train_prior("mri", data=[tmp_path / "nowhere"], steps=1, size=16, base=8, channel_mult=(1, 2), progress=False)


_DDP_SCRIPT = """
import sys
from krylearn.cli.main import main
sys.exit(main(["train", "diffusion", "--data", *sys.argv[2:], "--size", "16", "--base", "8", "--channel-mult", "1,2",
               "--steps", "3", "--batch-size", "4", "--val-fraction", "0.3", "--out", sys.argv[1], "-q",
               "--device", "cpu"]))
"""


@pytest.mark.slow
def test_torchrun_two_gloo_processes_train_on_their_shards(files, tmp_path):
    import socket
    import subprocess

    script = tmp_path / "run.py"
    script.write_text(_DDP_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = [sys.executable, str(script), str(tmp_path / "ddp"), *map(str, _all(files))]
    procs = [subprocess.Popen(args, env={**env, "WORLD_SIZE": "2", "RANK": str(r), "LOCAL_RANK": str(r),
                                         "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                                         "OMP_NUM_THREADS": "1"}) for r in range(2)]
    assert all(p.wait(timeout=300) == 0 for p in procs)
    card = json.loads((tmp_path / "ddp.json").read_text())
    assert card["training"]["world_size"] == 2 and card["steps"] == 3 and card["data"]["volumes"] == 7
