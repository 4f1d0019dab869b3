"""Real brain anatomy for the DDS priors and benchmarks, with nothing downloaded at run time.

Source
------
The MNI152 T1 template (ICBM 2009a nonlinear symmetric, 1 mm, skull-stripped,
197 x 233 x 189 voxels) that ships inside the ``nilearn`` wheel
(``nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz``),
read with ``nibabel``.  Both come with ``pip install krylearn[data]``.  Any
other NIfTI volume (a path) or a 3-D array can be passed as ``volume=``.

Orientation and range
---------------------
:func:`mni152_volume` returns ``(z, y, x)`` float32: ``z`` axial slices from
inferior to superior, rows from anterior (row 0) to posterior, columns from
the subject's left to right (neurological display).  Intensities are divided
by the 99.9th percentile of the nonzero voxels and clipped to ``[0, 1]``.

Slices
------
All slices of a volume share one square in-plane field of view: the bounding
box of the voxels above 0.05 (over the whole volume), centred, enlarged by
8 % and padded with zeros where it leaves the array; it is resampled to
``size x size`` with antialiased bilinear interpolation.  Slices whose
foreground (pixels above 0.1) covers less than ``min_foreground`` (default
10 %) of the field of view are skipped (the top and bottom of the brain).

Split by region (no slice is in two splits)
-------------------------------------------
Axial bands of the MNI152 volume, half-open ``[start, stop)`` z indices
(1 mm apart), with gaps of 6 slices (6 mm) between neighbouring bands so that
adjacent, nearly identical slices never straddle two splits::

    train  [20, 60) and [104, 150)   cerebellum / temporal lobes; upper cerebrum
    val    [66, 76)                  basal ganglia level (model selection / held-out loss)
    test   [82, 98)                  lateral ventricles (benchmarks; the 3-D CT volume)
    gaps   [60, 66), [76, 82), [98, 104)

After the foreground rule (at 64 x 64) the MNI152 gives 82 training, 10 validation and
16 test slices.  Other volumes get these bands scaled by ``nz / 189``
unless ``bands=`` is given.

Augmentation and phase
----------------------
:class:`BrainAugment` / :func:`augment` (:mod:`krylearn.problems.augment`)
and :func:`smooth_phase` (:mod:`krylearn.problems.phase`) are importable
from here too.

CT
--
:func:`ct_slices` / :func:`brain_volume` give the same anatomy at 128 x 128
as an *attenuation-like* map in ``[0, 1]``: it is MR T1 contrast used as an
attenuation map (no bone, no CT numbers), which is enough to train and test
a sparse-view reconstruction prior but is not CT data.
:func:`random_ellipsoids` (:mod:`krylearn.problems.phantoms`, importable
from here too) gives 3-D ellipsoid phantoms instead.
"""

from __future__ import annotations

import functools
import math
import os
import zlib

import numpy as np
import torch
import torch.nn.functional as F

from ..datasets.fileio import check_readable
from ..utils.checks import check_int, check_real
from .augment import BrainAugment, augment
from .phantoms import random_ellipsoids, random_phantom
from .phase import phase_maps, smooth_phase, torch_generator

__all__ = [
    "BANDS",
    "BAND_GAP",
    "MNI_FILE",
    "MNI_SLICES",
    "BrainAugment",
    "augment",
    "band_indices",
    "brain_slices",
    "brain_volume",
    "complex_brain_slices",
    "ct_slices",
    "field_of_view",
    "mni152_path",
    "mni152_volume",
    "random_ellipsoids",
    "smooth_phase",
]

#: The template file inside nilearn's wheel.
MNI_FILE = "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
#: Axial slices of the MNI152 volume.
MNI_SLICES = 189
#: Half-open axial z ranges of each split in the MNI152 volume (see the module notes).
BANDS = {
    "train": ((20, 60), (104, 150)),
    "val": ((66, 76),),
    "test": ((82, 98),),
}
#: Slices left out between neighbouring bands.
BAND_GAP = 6
_SPLITS = tuple(BANDS)
_DATA_HINT = "pip install nilearn"


# ------------------------------------------------------------------ volume
def mni152_path() -> str:
    """Path of the MNI152 T1 template inside the installed ``nilearn`` package.

    Raises
    ------
    ImportError
        When nilearn is not installed (naming ``pip install nilearn``).
    FileNotFoundError
        When this nilearn version does not ship the file.
    """
    try:
        import nilearn
    except ImportError:
        raise ImportError("the MNI152 brain template ships with nilearn, which is not installed: "
                          f"{_DATA_HINT}") from None
    path = os.path.join(os.path.dirname(nilearn.__file__), "datasets", "data", MNI_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"nilearn {getattr(nilearn, '__version__', '?')} does not ship {MNI_FILE} "
                                f"(looked in {os.path.dirname(path)}); {_DATA_HINT} installs one that does")
    return path


def _nibabel():
    try:
        import nibabel
    except ImportError:
        raise ImportError(f"reading NIfTI volumes needs nibabel, which is not installed: {_DATA_HINT}") from None
    return nibabel


def _normalise(v: np.ndarray) -> np.ndarray:
    v = np.nan_to_num(v.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    v = v - min(float(v.min()), 0.0)
    nz = v[v > 0]
    if nz.size == 0:
        raise ValueError("volume is empty (no positive voxel)")
    hi = float(np.percentile(nz, 99.9))
    return np.clip(v / hi, 0.0, 1.0).astype(np.float32)


@functools.lru_cache(maxsize=4)
def _read_nifti(path: str) -> np.ndarray:
    nib = _nibabel()
    try:
        img = nib.as_closest_canonical(nib.load(path))  # RAS+ voxel axes
        data = np.asarray(img.dataobj)
    except FileNotFoundError:
        raise
    except (nib.filebasedimages.ImageFileError, OSError, EOFError, ValueError, zlib.error) as e:
        raise ValueError(f"volume: cannot read {path!r} as NIfTI ({e})") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(f"volume: {path!r} holds a {data.ndim}-D image, expected a 3-D volume")
    if np.iscomplexobj(data) or data.dtype.kind not in "biuf":
        raise ValueError(f"volume: {path!r} holds {data.dtype} voxels, expected real numbers")
    # RAS (x: left->right, y: posterior->anterior, z: inferior->superior) -> (z, y anterior first, x)
    v = np.ascontiguousarray(data.transpose(2, 1, 0)[:, ::-1, :])
    v = _normalise(v)
    v.setflags(write=False)
    return v


def mni152_volume(path=None) -> np.ndarray:
    """The MNI152 T1 template (or a user's NIfTI volume) as ``(z, y, x)`` float32 in ``[0, 1]``.

    Parameters
    ----------
    path : str or PathLike, optional
        A NIfTI file (``.nii`` / ``.nii.gz``) to read instead of the template.

    Returns
    -------
    numpy.ndarray, float32, (z, y, x)
        The MNI152 is (189, 233, 197) at 1 mm; orientation and normalisation
        as in the module notes.  A fresh (writable) copy on every call.

    Raises
    ------
    ImportError
        nilearn / nibabel missing (``pip install krylearn[data]``).
    FileNotFoundError, IsADirectoryError, PermissionError
        ``path`` does not exist, is a folder or cannot be read.
    ValueError
        ``path`` is not a readable 3-D NIfTI volume.
    """
    if path is None:
        path = mni152_path()
    elif not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or PathLike, got {type(path).__name__}")
    try:
        path, _ = check_readable(os.path.abspath(os.fspath(path)))
    except OSError as e:  # not found, a folder, no permission: the message names the argument
        raise type(e)(f"path: {e}") from None
    return _read_nifti(path).copy()


def _volume(volume) -> tuple[np.ndarray, bool]:
    """``(volume (z, y, x) float32 in [0, 1], is_the_mni_template)``."""
    if volume is None:
        return _read_nifti(mni152_path()), True
    if isinstance(volume, (str, os.PathLike)):
        return mni152_volume(volume), False
    if isinstance(volume, torch.Tensor):
        volume = volume.detach().cpu().numpy()
    v = np.asarray(volume)
    if v.dtype == object or np.iscomplexobj(v) or v.dtype.kind not in "biuf":
        raise TypeError(f"volume must be a path or a real 3-D array, got dtype {v.dtype}")
    if v.ndim != 3 or min(v.shape) < 2:
        raise ValueError(f"volume must have shape (z, y, x), got {v.shape}")
    return _normalise(v), False


# ------------------------------------------------------------------ split
def _check_split(split):
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
    return split


def _bands(bands, nz: int, is_mni: bool) -> dict:
    if bands is None:
        if is_mni or nz == MNI_SLICES:
            return {k: tuple(v) for k, v in BANDS.items()}
        f = nz / MNI_SLICES
        return {k: tuple((round(a * f), round(b * f)) for a, b in v) for k, v in BANDS.items()}
    if not isinstance(bands, dict) or set(bands) != set(_SPLITS):
        raise ValueError(f"bands must be a dict with keys {_SPLITS} of ((start, stop), ...) z ranges")
    out = {}
    for k in _SPLITS:
        try:
            out[k] = tuple((int(a), int(b)) for a, b in bands[k])
        except (TypeError, ValueError):
            raise ValueError(f"bands[{k!r}] must be a sequence of (start, stop) pairs, got {bands[k]!r}") from None
    seen = np.zeros(nz, dtype=np.int64)
    for k, ranges in out.items():
        for a, b in ranges:
            if not 0 <= a < b <= nz:
                raise ValueError(f"bands[{k!r}] range ({a}, {b}) must satisfy 0 <= start < stop <= {nz}")
            seen[a:b] += 1
    if seen.max() > 1:
        raise ValueError("bands overlap: each slice may belong to one split only")
    return out


def band_indices(split: str, nz: int = MNI_SLICES, bands=None) -> np.ndarray:
    """The z indices of a split's band(s) (before the foreground rule), sorted int64.

    Parameters
    ----------
    split : {"train", "val", "test"}
    nz : int
        Slices of the volume (189 for the MNI152; other sizes scale the bands).
    bands : dict, optional
        ``{"train": ((start, stop), ...), "val": ..., "test": ...}`` overriding :data:`BANDS`.
    """
    _check_split(split)
    nz = check_int("nz", nz, 1)
    b = _bands(bands, nz, nz == MNI_SLICES and bands is None)
    return np.concatenate([np.arange(a, c, dtype=np.int64) for a, c in b[split]])


def field_of_view(volume=None, margin: float = 0.08) -> tuple[int, int, int]:
    """The square in-plane window ``(row0, col0, side)`` shared by all slices of ``volume``.

    Bounding box of the voxels above 0.05, centred, its longer side enlarged by
    ``margin``; it may reach outside the array (zero padding).
    """
    v, _ = _volume(volume)
    m = v > 0.05
    if not m.any():
        raise ValueError("volume has no voxel above 0.05 (after normalisation)")
    ys = np.flatnonzero(m.any(axis=(0, 2)))
    xs = np.flatnonzero(m.any(axis=(0, 1)))
    side = math.ceil(max(ys[-1] - ys[0] + 1, xs[-1] - xs[0] + 1) * (1.0 + margin))
    y0 = round((ys[0] + ys[-1] + 1) / 2 - side / 2)
    x0 = round((xs[0] + xs[-1] + 1) / 2 - side / 2)
    return y0, x0, side


def _crop_square(v: np.ndarray, fov) -> np.ndarray:
    """``v[:, y0:y0+side, x0:x0+side]`` with zero padding outside the array."""
    y0, x0, side = fov
    nz, ny, nx = v.shape
    out = np.zeros((nz, side, side), dtype=np.float32)
    ya, yb = max(y0, 0), min(y0 + side, ny)
    xa, xb = max(x0, 0), min(x0 + side, nx)
    out[:, ya - y0:yb - y0, xa - x0:xb - x0] = v[:, ya:yb, xa:xb]
    return out


def _resample(slices: np.ndarray, size: int) -> np.ndarray:
    """Antialiased bilinear resampling of ``(n, s, s)`` to ``(n, size, size)``, clipped to [0, 1]."""
    if slices.shape[0] == 0:
        return np.zeros((0, size, size), dtype=np.float32)
    t = torch.from_numpy(np.ascontiguousarray(slices))[:, None]
    if t.shape[-1] != size:
        t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False,
                          antialias=t.shape[-1] > size)
    return t[:, 0].clamp_(0.0, 1.0).numpy()


def _check_size(size):
    return check_int("size", size, 8)


def brain_slices(split: str = "train", size: int = 64, *, volume=None, bands=None, min_foreground: float = 0.1,
                 return_index: bool = False):
    """Axial slices of a split, ``size x size``, magnitude in ``[0, 1]``.

    Parameters
    ----------
    split : {"train", "val", "test"}
        Region of the volume (see the module notes for the bands).
    size : int
        Output side in pixels (64 for the MRI prior, 128 for CT).  The field
        of view is the same for every size, so ``2 * size`` is the same
        anatomy on a grid twice as fine.
    volume : path or array (z, y, x), optional
        Default: the MNI152 template.
    bands : dict, optional
        Overrides :data:`BANDS` (see :func:`band_indices`).
    min_foreground : float
        Skip slices whose pixels above 0.1 cover less than this fraction
        (decided on the ``size`` grid).
    return_index : bool
        Also return the z index of each slice.

    Returns
    -------
    numpy.ndarray, float32, (n, size, size) [, numpy.ndarray int64 (n,)]
    """
    _check_split(split)
    size = _check_size(size)
    min_foreground = check_real("min_foreground", min_foreground)
    if not 0 <= min_foreground < 1:
        raise ValueError(f"min_foreground must lie in [0, 1), got {min_foreground}")
    v, is_mni = _volume(volume)
    z = np.concatenate([np.arange(a, b, dtype=np.int64) for a, b in _bands(bands, v.shape[0], is_mni)[split]])
    img = _resample(_crop_square(v[z], field_of_view(v)), size)
    keep = (img > 0.1).mean(axis=(1, 2)) >= min_foreground
    img, z = img[keep], z[keep]
    if img.shape[0] == 0:
        raise ValueError(f"split {split!r} keeps no slice with min_foreground={min_foreground}")
    return (img, z) if return_index else img


def brain_volume(split: str = "test", size: int = 128, *, volume=None, bands=None, return_index: bool = False):
    """A contiguous block of axial slices (a held-out 3-D volume), ``(nz, size, size)`` float32 in [0, 1].

    Every slice of the split's band is kept (no foreground rule), so the
    slices are 1 voxel apart; the split must be a single band (``val`` or
    ``test`` with the default bands).  For the 3-D CT benchmark: ``test`` at
    128 x 128 is 16 slices of attenuation-like anatomy (see the module notes).
    """
    _check_split(split)
    size = _check_size(size)
    v, is_mni = _volume(volume)
    b = _bands(bands, v.shape[0], is_mni)[split]
    if len(b) != 1:
        raise ValueError(f"split {split!r} is not one contiguous band ({b}); pick 'val' or 'test' or pass bands")
    z = np.arange(b[0][0], b[0][1], dtype=np.int64)
    img = _resample(_crop_square(v[z], field_of_view(v)), size)
    return (img, z) if return_index else img


def ct_slices(split: str = "train", size: int = 128, **kwargs):
    """:func:`brain_slices` at CT size: MR T1 anatomy used as an attenuation-like map in [0, 1].

    Not CT data (no bone, no Hounsfield units): the template is skull-stripped
    MR.  Keyword arguments go to :func:`brain_slices`.
    """
    return brain_slices(split, size, **kwargs)


def complex_brain_slices(split: str = "train", size: int = 64, *, seed=0, phase: bool = True, ellipses: int = 0,
                         volume=None, bands=None, min_foreground: float = 0.1, return_index: bool = False):
    """Complex brain slices for the MRI prior: magnitude from :func:`brain_slices`, a smooth phase.

    Parameters
    ----------
    split, size, volume, bands, min_foreground
        As :func:`brain_slices`.
    seed : int, numpy Generator or torch.Generator
        Draws the phases (and the ellipse phantoms).
    phase : bool
        ``False`` gives real images stored as complex (zero phase).
    ellipses : int
        Append this many random-ellipse phantoms
        (:func:`krylearn.problems.phantoms.random_phantom`, absolute value
        clipped to [0, 1]) with their own smooth phases.
    return_index : bool
        Also return the z index per slice (-1 for the phantoms).

    Returns
    -------
    numpy.ndarray, complex64, (n, size, size), ``|x| <= 1`` [, int64 (n,)]
    """
    ellipses = check_int("ellipses", ellipses, 0)
    mag, z = brain_slices(split, size, volume=volume, bands=bands, min_foreground=min_foreground,
                          return_index=True)
    g = torch_generator(seed)
    if ellipses:
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=g)))
        ph = np.stack([np.clip(np.abs(random_phantom(size, count=10, seed=rng, oversample=2)), 0, 1)
                       for _ in range(ellipses)]).astype(np.float32)  # a loop over images, not pixels
        mag = np.concatenate([mag, ph])
        z = np.concatenate([z, -np.ones(ellipses, dtype=np.int64)])
    mag = np.minimum(mag, np.float32(1 - 2**-20))  # |x| <= 1 after rounding to complex64
    if phase:
        phi = phase_maps(mag.shape[0], size, size, g, torch.device("cpu"), torch.float32).numpy()
        x = (mag * np.exp(1j * phi)).astype(np.complex64)
    else:
        x = mag.astype(np.complex64)
    return (x, z) if return_index else x
