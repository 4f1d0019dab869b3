"""Stacks of 2-D images from the files users have: fastMRI k-space, DICOM series, NIfTI volumes, HDF5 stacks.

A *volume* here is a stack of 2-D slices that belong together.
:func:`find_volumes` turns paths (files or folders, formats mixed) into a
list of :class:`ImageVolume` records, reading headers and shapes only;
:func:`read_slice` reads one slice of one volume.  Nothing else is held in
memory, so a training set may be larger than the machine's memory.

Formats (a folder is searched recursively; hidden files are skipped)
--------------------------------------------------------------------
``fastmri``  ``.h5`` / ``.hdf5`` with a root ``kspace`` dataset, multi-coil
             ``(slices, coils, ky, kx)`` or single-coil ``(slices, ky, kx)``
             complex, fully sampled (a file whose ``mask`` leaves k-space
             columns out is refused).  One file is one volume.  Slices are
             read with :func:`krylearn.datasets.fastmri.read_kspace`.  Images
             (:func:`kspace_image`):

             * complex: the coil-combined image ``sum_c conj(S_c) m_c /
               sum_c |S_c|^2`` (``m_c = ifft2c(kspace_c)``) with the file's
               ``sensitivity_maps`` when it has them, else with
               low-resolution maps from the fully sampled centre
               (:func:`krylearn.operators.mri.lowres_maps`: the coil images of
               the Hann-windowed central 8 % of k-space along each axis, at
               least 8 lines, over their root-sum-of-squares).  These maps
               carry the object's low-resolution phase, so the image keeps
               the fine phase only; a single-coil file gives ``m`` itself.
             * real: the root-sum-of-squares ``sqrt(sum_c |m_c|^2)``.
``dicom``    ``.dcm`` files, or files without an extension that carry the
             DICOM signature; one series (folder + ``SeriesInstanceUID``) is
             one volume, one file one slice (:mod:`.dicom_series`); values
             ``RescaleSlope * stored + RescaleIntercept``.  A multi-frame
             file (``NumberOfFrames > 1``, e.g. Enhanced MR) is one volume
             of its own whose slices are its frames in stored order, each
             with its own rescale from the functional groups where they give
             one; it stays in its series' split group (the file when it has
             no ``SeriesInstanceUID``).  Frames are read one at a time.
``nifti``    ``.nii`` / ``.nii.gz``, 3-D ``(x, y, z)`` or 4-D ``(x, y, z, t)``,
             read with nibabel's array proxy: only the requested slice of the
             requested frame is read (a ``.nii.gz`` is decompressed up to
             it).  Each frame ``t`` of a 4-D file (fMRI, diffusion, multi-echo
             series) is a volume of its own, in the file's split group; a
             4-D file with one frame reads as 3-D.  5-D and higher images
             (vector, tensor or other components) are refused.  Slices are
             taken along the RAS+ axes of the voxel-to-world affine, whatever
             the storage order: ``axial`` (along z, inferior to superior;
             rows anterior first, columns left to right, as
             :func:`krylearn.problems.brain.mni152_volume`), ``coronal``
             (along y; rows superior first) and ``sagittal`` (along x; rows
             superior first, columns anterior first).  Each axis asked for is
             its own volume (of each frame), all in the same split *group*
             (the file).
``hdf5``     any other ``.h5`` / ``.hdf5``: one dataset of shape
             ``(N, H, W)``, ``(N, H, W, 1)`` or ``(N, 1, H, W)``, real or
             complex; ``key=`` names it, else it must be the only 3-D/4-D
             floating-point (or complex) dataset of that layout in the file.
             One file is one volume of ``N`` slices.

Errors
------
A path that does not exist raises ``FileNotFoundError`` naming it; a folder
with no file of these formats, an unknown file type, or an ambiguous HDF5
stack raise ``ValueError``; a corrupt or malformed file raises
:class:`~krylearn.utils.errors.FormatError` naming the file (and the key).
"""

from __future__ import annotations

import functools
import os
import zlib
from dataclasses import dataclass, field

import h5py
import numpy as np

from ..operators.mri import ifft2c, lowres_maps, rss
from ..utils.errors import FormatError
from .dicom_series import dicom_series, is_dicom_file, read_dicom_slice
from .fastmri import read_kspace
from .fileio import check_readable, check_stored, open_h5

__all__ = ["AXES", "FORMATS", "ImageVolume", "find_volumes", "kspace_image", "read_slice"]

#: The formats :func:`find_volumes` knows.
FORMATS = ("fastmri", "dicom", "nifti", "hdf5")
#: NIfTI slicing axes, by name: the RAS+ axis the slices are taken along.
AXES = {"sagittal": 0, "coronal": 1, "axial": 2}
_H5 = (".h5", ".hdf5")
_NII = (".nii", ".nii.gz")
_DCM = (".dcm",)
#: Low-resolution coil maps use this share of k-space along each axis (at least _CALIB_MIN lines).
_CALIB_SHARE, _CALIB_MIN = 0.08, 8


@dataclass(frozen=True)
class ImageVolume:
    """One stack of 2-D slices in a file (or a DICOM series): where it is and its shape, no pixels.

    Attributes
    ----------
    path : str
        The file (for DICOM: the series' folder; a multi-frame DICOM file: the file).
    format : {"fastmri", "dicom", "nifti", "hdf5"}
    slices : int
        Number of 2-D slices.
    shape : (int, int)
        In-plane size ``(H, W)`` in pixels, as read (fastMRI: ``(ky, kx)``).
    is_complex : bool
        The source holds complex images (fastMRI, a complex HDF5 stack).
    key : str
        HDF5: the dataset; NIfTI: the axis name; DICOM: ``SeriesInstanceUID``; fastMRI: ``"kspace"``.
    group : str
        The unit a validation split holds out whole (the file; a DICOM series).
    files : tuple of str
        DICOM: one file per slice, in slice order (a multi-frame file: that file alone).
    info : dict
        Format details for the record (coils, modality, layout, dtype; a 4-D
        NIfTI frame: ``frame``, ``frames``; a multi-frame DICOM: ``frames``).
    frame : int or None
        A 4-D NIfTI file (more than one frame): the frame ``t`` (from 0) this volume is; else ``None``.
    """

    path: str
    format: str
    slices: int
    shape: tuple
    is_complex: bool
    key: str = ""
    group: str = ""
    files: tuple = ()
    info: dict = field(default_factory=dict, compare=False, hash=False)
    frame: int | None = None

    @property
    def label(self) -> str:
        """``path`` with the key where one file holds several volumes (``a.nii#coronal``, ``b.nii#axial,frame=3``)."""
        if self.format == "nifti":
            return f"{self.path}#{self.key}" + ("" if self.frame is None else f",frame={self.frame}")
        if self.format == "dicom" and self.info.get("series_in_folder", 1) > 1:
            return f"{self.path}#{self.key}"
        return self.path

    def describe(self) -> dict:
        """A JSON-able summary (for cards and logs)."""
        return {"path": self.label, "format": self.format, "slices": int(self.slices),
                "shape": [int(v) for v in self.shape], "complex": bool(self.is_complex), **self.info}


# ------------------------------------------------------------------ discovery
def _kind_of(path: str) -> str | None:
    low = path.lower()
    if low.endswith(_H5):
        return "h5"
    if low.endswith(_NII):
        return "nifti"
    if low.endswith(_DCM):
        return "dicom"
    base = os.path.basename(path)
    if "." not in base and is_dicom_file(path):
        return "dicom"
    return None


def _walk(folder: str) -> list[tuple[str, str]]:
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            p = os.path.join(root, name)
            k = _kind_of(p)
            if k is not None:
                found.append((p, k))
    return found


def _expand(paths) -> list[tuple[str, str]]:
    """``(file, "h5" | "nifti" | "dicom")`` for every file under ``paths``, each once."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    try:
        paths = [os.fspath(p) for p in paths]
    except TypeError:
        raise TypeError("data must be a path or a list of paths (files or folders)") from None
    if not paths:
        raise ValueError("data: give at least one file or folder")
    found, seen = [], set()
    for p in paths:
        if not os.path.exists(p):
            raise FileNotFoundError(f"data: no such file or folder: {p!r}")
        if os.path.isdir(p):
            items = _walk(p)
            if not items:
                raise ValueError(f"data: the folder {p!r} holds no readable image files (looked for "
                                 f"{', '.join(_H5 + _NII + _DCM)} and DICOM files without an extension)")
        else:
            k = _kind_of(p)
            if k is None:
                raise ValueError(f"data: {p!r} is not a file type krylearn reads for training images "
                                 f"({', '.join(_H5 + _NII + _DCM)})")
            items = [(p, k)]
        for f, k in items:
            real = os.path.realpath(f)
            if real not in seen:
                seen.add(real)
                found.append((os.path.abspath(f), k))
    return found


def find_volumes(paths, *, key: str | None = None, axes=("axial",)) -> list[ImageVolume]:
    """Index the volumes under ``paths`` (files or folders, formats mixed), reading headers only.

    Parameters
    ----------
    paths : str, PathLike or list of them
    key : str, optional
        HDF5 stacks: the dataset to read (``"kspace"`` or absent: fastMRI
        files are read as k-space; any other name reads that dataset of
        every HDF5 file as an image stack, e.g. ``"reconstruction_rss"``).
    axes : sequence of {"axial", "coronal", "sagittal"}, or a comma-separated str, or "all"
        NIfTI slicing axes; each gives one volume per file (per frame of a 4-D file).

    Returns
    -------
    list of ImageVolume, sorted by (group, key, frame, path): the order does
    not depend on the order of ``paths``.

    Raises
    ------
    FileNotFoundError
        A path does not exist.
    ValueError
        A folder with no readable file, a file of unknown type, a bad ``axes``.
    FormatError
        A corrupt or malformed file (named), see the module notes.
    ImportError
        DICOM without pydicom, NIfTI without nibabel.
    """
    axes = _check_axes(axes)
    files = _expand(paths)
    out = []
    for f, k in files:
        if k == "h5":
            out.append(_h5_volume(f, key))
        elif k == "nifti":
            out.extend(_nifti_volumes(f, axes))
    dcm = [f for f, k in files if k == "dicom"]
    if dcm:
        out.extend(_dicom_volumes(dcm))
    return sorted(out, key=lambda v: (v.group, v.key, -1 if v.frame is None else v.frame, v.path))


def _check_axes(axes) -> tuple:
    if isinstance(axes, str):
        axes = ("axial", "coronal", "sagittal") if axes.strip() == "all" else tuple(a.strip() for a in axes.split(","))
    axes = tuple(axes)
    if not axes or any(a not in AXES for a in axes) or len(set(axes)) != len(axes):
        raise ValueError(f"axes must be distinct names of {tuple(AXES)}, got {axes!r}")
    return axes


# ------------------------------------------------------------------ HDF5: fastMRI and stacks
def _h5_volume(path: str, key: str | None) -> ImageVolume:
    with open_h5(path) as f:
        if "kspace" in f and key in (None, "kspace"):
            return _fastmri_volume(f, path)
        return _stack_volume(f, path, key)


def _fastmri_volume(f: h5py.File, path: str) -> ImageVolume:
    ds = f["kspace"]
    if not isinstance(ds, h5py.Dataset) or ds.dtype.kind != "c" or ds.ndim not in (3, 4) or min(ds.shape) == 0:
        raise FormatError(f"must be a complex (slices, coils, ky, kx) or (slices, ky, kx) dataset, got "
                          f"{getattr(ds, 'dtype', 'a group')} {getattr(ds, 'shape', '')}", path=path, key="kspace")
    check_stored(ds, path, "kspace")
    if "mask" in f and isinstance(f["mask"], h5py.Dataset):
        try:
            m = np.asarray(f["mask"][()])
        except (OSError, ValueError, TypeError) as e:
            raise FormatError(f"cannot be read ({e})", path=path, key="mask") from None
        if m.size and not np.all(m != 0):
            raise ValueError(f"data: {path} is undersampled (its mask samples {np.mean(m != 0):.0%} of k-space); "
                             "training images need fully sampled k-space (fastMRI train/val files)")
    _check_no_skipped_columns(ds, path)
    coils = ds.shape[1] if ds.ndim == 4 else 1
    return ImageVolume(path=path, format="fastmri", slices=int(ds.shape[0]), shape=tuple(ds.shape[-2:]),
                       is_complex=True, key="kspace", group=path,
                       info={"coils": int(coils), "sensitivity_maps": "sensitivity_maps" in f})


def _check_no_skipped_columns(ds: h5py.Dataset, path: str) -> None:
    """``ValueError`` when the middle slice's central k-space rows have all-zero columns inside the sampled band.

    Catches column-undersampled k-space stored without a ``mask``; zero
    columns at the edges (readout padding of fully sampled scans) are fine.
    Reads 8 rows of one slice.
    """
    ny = ds.shape[-2]
    rows = slice(max(ny // 2 - 4, 0), min(ny // 2 + 4, ny))
    k = np.asarray(ds[(ds.shape[0] // 2, Ellipsis, rows, slice(None))])
    energy = (np.abs(k) ** 2).reshape(-1, k.shape[-1]).sum(axis=0)
    hit = np.flatnonzero(energy > 0)
    if hit.size == 0:
        return
    skipped = int(np.count_nonzero(energy[hit[0]:hit[-1] + 1] == 0))
    if skipped:
        raise ValueError(f"data: {path} looks undersampled: {skipped} k-space columns inside the sampled band are "
                         "zero in its middle slice (and it has no mask); training images need fully sampled k-space "
                         "(fastMRI train/val files)")


def _stack_layout(ds) -> str | None:
    if ds.ndim == 3:
        return "nhw"
    if ds.ndim == 4 and ds.shape[3] == 1:
        return "nhw1"
    if ds.ndim == 4 and ds.shape[1] == 1:
        return "n1hw"
    return None


def _stack_candidates(f: h5py.File) -> list[str]:
    names = []

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and obj.dtype.kind in "fc" and _stack_layout(obj) is not None:
            names.append(name)
    f.visititems(visit)
    return sorted(names)


def _stack_volume(f: h5py.File, path: str, key: str | None) -> ImageVolume:
    if key is None:
        names = _stack_candidates(f)
        if len(names) != 1:
            what = f"several: {', '.join(names)}" if names else "none"
            raise ValueError(f"data: {path} is not a fastMRI file (no kspace) and holds {what} 3-D/4-D "
                             "floating-point image stacks (N, H, W); name the dataset with key= (--h5-key)")
        key = names[0]
    if key not in f or not isinstance(f[key], h5py.Dataset):
        raise FormatError("missing dataset (the image stack asked for)", path=path, key=key)
    ds = f[key]
    layout = _stack_layout(ds)
    if layout is None or ds.dtype.kind not in "fciu" or min(ds.shape) == 0:
        raise FormatError(f"must be a numeric (N, H, W), (N, H, W, 1) or (N, 1, H, W) image stack, got "
                          f"{ds.dtype} {ds.shape}", path=path, key=key)
    check_stored(ds, path, key)
    hw = ds.shape[1:3] if layout != "n1hw" else ds.shape[2:4]
    return ImageVolume(path=path, format="hdf5", slices=int(ds.shape[0]), shape=tuple(int(v) for v in hw),
                       is_complex=ds.dtype.kind == "c", key=key, group=path,
                       info={"layout": layout, "dtype": str(ds.dtype)})


# ------------------------------------------------------------------ NIfTI
def _nibabel():
    try:
        import nibabel
    except ImportError:
        raise ImportError("reading NIfTI volumes needs nibabel, which is not installed: pip install nibabel "
                          "(or pip install krylearn[data])") from None
    return nibabel


@functools.lru_cache(maxsize=8)
def _nifti(path: str):
    """``(image with an array proxy, its (ras axis, flip) per voxel axis)``; no voxel data is read."""
    nib = _nibabel()
    check_readable(path)
    try:
        img = nib.load(path)
        shape = img.shape
        ornt = nib.io_orientation(img.affine)
        if not np.all(np.isfinite(ornt)):
            raise ValueError("its affine has a degenerate (zero or repeated) voxel axis")
    except (nib.filebasedimages.ImageFileError, OSError, EOFError, ValueError, zlib.error) as e:
        raise FormatError(f"cannot be read as NIfTI ({e})", path=path) from None
    if len(shape) > 4:
        raise FormatError(f"holds a {len(shape)}-D image of shape {shape}; expected a 3-D volume (x, y, z) or a "
                          "4-D series of them (x, y, z, t): 5-D and higher images (vector, tensor or other "
                          "components per voxel) are not read; save each component as its own 3-D/4-D file",
                          path=path)
    if len(shape) < 3 or min(shape) < 1:
        raise FormatError(f"holds an image of shape {shape}; expected a 3-D volume (x, y, z) or a 4-D series "
                          "of them (x, y, z, t)", path=path)
    if img.get_data_dtype().kind not in "biufc":
        raise FormatError(f"holds {img.get_data_dtype()} voxels, expected numbers", path=path)
    return img, [(int(a), int(s)) for a, s in ornt]


def _nifti_volumes(path: str, axes) -> list[ImageVolume]:
    """One volume per axis, of each frame of a 4-D file; all in the file's split group."""
    img, ornt = _nifti(path)
    ras_shape = [0, 0, 0]
    for i, (a, _) in enumerate(ornt):
        ras_shape[a] = int(img.shape[i])
    n_frames = int(img.shape[3]) if len(img.shape) == 4 else 1
    frames = [None] if n_frames == 1 else list(range(n_frames))
    out = []
    for name in axes:
        a = AXES[name]
        rest = [ras_shape[b] for b in range(3) if b != a]  # (x, y) / (x, z) / (y, z)
        for t in frames:
            info = {"axis": name, "dtype": str(img.get_data_dtype())}
            if t is not None:
                info.update(frame=t, frames=n_frames)
            out.append(ImageVolume(path=path, format="nifti", slices=ras_shape[a], shape=(rest[1], rest[0]),
                                   is_complex=img.get_data_dtype().kind == "c", key=name, group=path,
                                   info=info, frame=t))
    return out


def _nifti_slice(path: str, axis: str, k: int, frame: int | None = None) -> np.ndarray:
    """Slice ``k`` along ``axis`` (of frame ``frame`` of a 4-D file), in the orientation of the module notes."""
    img, ornt = _nifti(path)
    a = AXES[axis]
    vox = [i for i, (r, _) in enumerate(ornt) if r == a][0]
    n = img.shape[vox]
    idx = n - 1 - k if ornt[vox][1] < 0 else k
    sl = [slice(None)] * 3 + ([frame or 0] if len(img.shape) == 4 else [])
    sl[vox] = idx
    try:
        plane = np.asarray(img.dataobj[tuple(sl)])  # the proxy reads this plane of this frame only
    except (OSError, EOFError, ValueError, zlib.error) as e:
        at = "" if frame is None else f" of frame {frame}"
        raise FormatError(f"cannot read slice {k}{at} ({e})", path=path) from None
    rest = [i for i in range(3) if i != vox]  # the two remaining voxel axes, in storage order
    ras = [ornt[i][0] for i in rest]
    if ras[0] > ras[1]:
        plane, rest, ras = plane.T, rest[::-1], ras[::-1]
    for j, i in enumerate(rest):
        if ornt[i][1] < 0:
            plane = np.flip(plane, axis=j)
    # plane is (first RAS axis, second RAS axis), both increasing: show the second as rows, top = high
    return np.ascontiguousarray(plane.T[::-1, ::-1] if axis == "sagittal" else plane.T[::-1, :])


# ------------------------------------------------------------------ DICOM
def _dicom_volumes(files: list) -> list[ImageVolume]:
    series = dicom_series(files)
    per_folder: dict = {}
    for s in series:
        if not s.frames:
            per_folder[s.folder] = per_folder.get(s.folder, 0) + 1
    out = []
    for s in series:
        if s.frames:  # a multi-frame file: its own volume, in its series' group (the file without a series UID)
            out.append(ImageVolume(path=os.path.abspath(s.files[0]), format="dicom", slices=s.frames,
                                   shape=tuple(s.shape), is_complex=False, key=s.uid,
                                   group=f"{s.folder}#{s.uid}" if s.uid else os.path.abspath(s.files[0]),
                                   files=s.files, info={"modality": s.modality, "sorted_by": s.sorted_by,
                                                        "frames": s.frames}))
            continue
        out.append(ImageVolume(path=s.folder, format="dicom", slices=len(s.files), shape=tuple(s.shape),
                               is_complex=False, key=s.uid, group=f"{s.folder}#{s.uid}", files=s.files,
                               info={"modality": s.modality, "sorted_by": s.sorted_by,
                                     "series_in_folder": per_folder[s.folder]}))
    return out


# ------------------------------------------------------------------ slices
def kspace_image(kspace, maps=None, *, complex_image: bool = True) -> np.ndarray:
    """The image of one fully sampled k-space slice (see the module notes).

    Parameters
    ----------
    kspace : numpy.ndarray, complex, (coils, ky, kx)
        Centred k-space (:func:`krylearn.operators.mri.fft2c` convention).
    maps : numpy.ndarray, complex, (coils, ky, kx), optional
        Coil sensitivities; default: low-resolution maps from the centre.
    complex_image : bool
        ``True``: the coil-combined complex image; ``False``: the
        root-sum-of-squares magnitude.

    Returns
    -------
    numpy.ndarray, (ky, kx): complex64 or float32.
    """
    k = np.asarray(kspace)
    if not np.any(k):
        return np.zeros(k.shape[1:], dtype=np.complex64 if complex_image else np.float32)
    coil_images = np.asarray(ifft2c(k.astype(np.complex64, copy=False)))
    if not complex_image:
        return np.asarray(rss(coil_images), dtype=np.float32)
    if k.shape[0] == 1 and maps is None:
        return coil_images[0].astype(np.complex64)
    if maps is None:
        calib = tuple(max(min(_CALIB_MIN, n), round(_CALIB_SHARE * n)) for n in k.shape[1:])
        maps = lowres_maps(k, calib)
    maps = np.asarray(maps)
    num = np.sum(np.conj(maps) * coil_images, axis=0)
    den = np.sum(np.abs(maps) ** 2, axis=0)
    out = np.where(den > 1e-6, num / np.maximum(den, 1e-6), 0)
    return out.astype(np.complex64)


def _fastmri_slice(vol: ImageVolume, k: int, complex_image: bool) -> np.ndarray:
    d = read_kspace(vol.path, slices=k)
    maps = None if d.sensitivity_maps is None else d.sensitivity_maps[0]
    return kspace_image(d.kspace[0], maps, complex_image=complex_image)


def _stack_slice(vol: ImageVolume, k: int) -> np.ndarray:
    with open_h5(vol.path) as f:
        if vol.key not in f:
            raise FormatError("missing dataset (the file changed after it was indexed?)", path=vol.path,
                              key=vol.key)
        ds = f[vol.key]
        try:
            a = ds[k]
        except (OSError, ValueError, TypeError, KeyError, IndexError) as e:
            raise FormatError(f"cannot read image {k} ({e})", path=vol.path, key=vol.key) from None
    a = np.asarray(a)
    return a[..., 0] if vol.info.get("layout") == "nhw1" else (a[0] if vol.info.get("layout") == "n1hw" else a)


def read_slice(vol: ImageVolume, k: int, *, complex_image: bool = False) -> np.ndarray:
    """Slice ``k`` of ``vol`` at its native in-plane size, values as stored (no normalisation).

    Parameters
    ----------
    vol : ImageVolume
    k : int
        ``0 <= k < vol.slices``.
    complex_image : bool
        For complex sources: ``True`` returns the complex image, ``False``
        its magnitude (fastMRI: the root-sum-of-squares).  Real sources are
        returned real either way.

    Returns
    -------
    numpy.ndarray, ``vol.shape``: complex64 (complex source and
    ``complex_image``) or float32.

    Raises
    ------
    FormatError
        The file is corrupt, changed since indexing, or holds NaN/Inf in the slice.
    """
    if not 0 <= int(k) < vol.slices:
        raise IndexError(f"slice {k} is out of range for {vol.label} ({vol.slices} slices)")
    k = int(k)
    if vol.format == "fastmri":
        img = _fastmri_slice(vol, k, complex_image)
    elif vol.format == "hdf5":
        img = _stack_slice(vol, k)
    elif vol.format == "nifti":
        img = _nifti_slice(vol.path, vol.key, k, vol.frame)
    elif vol.format == "dicom" and vol.info.get("frames"):
        img = read_dicom_slice(vol.files[0], frame=k)
    elif vol.format == "dicom":
        img = read_dicom_slice(vol.files[k])
    else:
        raise ValueError(f"unknown format {vol.format!r}; expected one of {FORMATS}")
    if img.shape != tuple(vol.shape):
        where = vol.path if vol.format != "dicom" else vol.files[0 if vol.info.get("frames") else k]
        raise FormatError(f"slice {k} has shape {img.shape}, the index says {tuple(vol.shape)} (the file changed "
                          "after it was indexed?)", path=where)
    if np.iscomplexobj(img):
        img = img.astype(np.complex64) if complex_image else np.abs(img).astype(np.float32)
    else:
        img = img.astype(np.float32)
    if not np.all(np.isfinite(img)):
        raise FormatError(f"slice {k} holds NaN or Inf", path=vol.label)
    return img
