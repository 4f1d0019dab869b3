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

Augmentation
------------
:class:`BrainAugment` (torch, vectorised over the batch, seeded by a
``torch.Generator``) is the ``augment(x, generator)`` callable that
:func:`krylearn.solvers.dds.train_diffusion` takes: flips, small rotations
and scalings, translations, an elastic deformation (a smooth random
displacement field), intensity scaling and gamma on the magnitude, and for
2-channel (real, imaginary) batches a smooth random phase.
:func:`augment` is the numpy front end.

CT
--
:func:`ct_slices` / :func:`brain_volume` give the same anatomy at 128 x 128
as an *attenuation-like* map in ``[0, 1]``: it is MR T1 contrast used as an
attenuation map (no bone, no CT numbers), which is enough to train and test
a sparse-view reconstruction prior but is not CT data.
:func:`random_ellipsoids` gives 3-D ellipsoid phantoms instead.
"""

from __future__ import annotations

import functools
import math
import numbers
import os
import zlib

import numpy as np
import torch
import torch.nn.functional as F

from ..utils.checks import check_int, check_real

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
_DATA_HINT = "pip install krylearn[data]"


# ------------------------------------------------------------------ volume
def mni152_path() -> str:
    """Path of the MNI152 T1 template inside the installed ``nilearn`` package.

    Raises
    ------
    ImportError
        When nilearn is not installed (naming ``pip install krylearn[data]``).
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
    """
    if path is None:
        path = mni152_path()
    elif not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or PathLike, got {type(path).__name__}")
    path = os.path.abspath(os.fspath(path))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"path: no such file {path!r}")
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


# ------------------------------------------------------------------ phase
def _coords(h, w, device, dtype):
    y = torch.linspace(-1.0, 1.0, h, device=device, dtype=dtype)
    x = torch.linspace(-1.0, 1.0, w, device=device, dtype=dtype)
    return y[:, None], x[None, :]


def _smooth_field(b, h, w, generator, grid: int, device, dtype):
    """Smooth random fields ``(b, h, w)``, unit-variance coarse control points upsampled bicubically."""
    c = torch.randn(b, 1, grid, grid, generator=generator)
    return F.interpolate(c, size=(h, w), mode="bicubic", align_corners=True)[:, 0].to(device=device, dtype=dtype)


def _phase_torch(b, h, w, generator, device, dtype, linear: float = math.pi / 2, quadratic: float = math.pi / 4,
                 field: float = math.pi / 4, grid: int = 4) -> torch.Tensor:
    """Smooth random phase maps ``(b, h, w)`` in radians (see :func:`smooth_phase`)."""
    u = torch.rand(b, 6, generator=generator).to(device=device, dtype=dtype) * 2 - 1  # U(-1, 1)
    yy, xx = _coords(h, w, device, dtype)
    c = u[:, :, None, None]
    phi = (math.pi * c[:, 0] + linear * (c[:, 1] * xx + c[:, 2] * yy)
           + quadratic * (c[:, 3] * xx * xx + c[:, 4] * xx * yy + c[:, 5] * yy * yy))
    if field:
        phi = phi + field * _smooth_field(b, h, w, generator, grid, device, dtype)
    return phi


def _torch_generator(seed) -> torch.Generator:
    if isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, np.random.Generator):
        return torch.Generator().manual_seed(int(seed.integers(0, 2**62)))
    if seed is None:
        return torch.Generator().manual_seed(int(np.random.SeedSequence().generate_state(1, np.uint64)[0] >> 2))
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise TypeError(f"seed must be a non-negative int, a numpy Generator or a torch.Generator, got {seed!r}")
    return torch.Generator().manual_seed(int(seed))


def smooth_phase(count: int, shape, seed=None, *, linear: float = math.pi / 2, quadratic: float = math.pi / 4,
                 field: float = math.pi / 4, grid: int = 4) -> np.ndarray:
    """Smooth random phase maps, float32 ``(count, ny, nx)`` radians.

    ``phi = pi c0 + linear (c1 x + c2 y) + quadratic (c3 x^2 + c4 x y + c5 y^2) + field g(x, y)``
    with ``x, y`` in ``[-1, 1]`` across the image, ``c_k ~ U(-1, 1)`` and ``g`` a
    unit-variance random field on a ``grid x grid`` control lattice,
    bicubically interpolated (band-limited: a few cycles per field of view at
    most).  This mimics the slowly varying phase of MR images (B0, coil
    combination, receiver offset).

    Parameters
    ----------
    count : int
    shape : (ny, nx)
    seed : int, numpy Generator or torch.Generator, optional
    linear, quadratic, field : float
        Peak amplitudes (radians) of the terms.
    grid : int
        Control points per side of the random field (>= 2).
    """
    count = check_int("count", count, 0)
    try:
        ny, nx = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be (ny, nx), got {shape!r}") from None
    grid = check_int("grid", grid, 2)
    g = _torch_generator(seed)
    return _phase_torch(count, ny, nx, g, torch.device("cpu"), torch.float32, linear, quadratic, field,
                        grid).numpy()


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
    g = _torch_generator(seed)
    if ellipses:
        from .phantoms import random_phantom

        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=g)))
        ph = np.stack([np.clip(np.abs(random_phantom(size, count=10, seed=rng, oversample=2)), 0, 1)
                       for _ in range(ellipses)]).astype(np.float32)  # a loop over images, not pixels
        mag = np.concatenate([mag, ph])
        z = np.concatenate([z, -np.ones(ellipses, dtype=np.int64)])
    mag = np.minimum(mag, np.float32(1 - 2**-20))  # |x| <= 1 after rounding to complex64
    if phase:
        phi = _phase_torch(mag.shape[0], size, size, g, torch.device("cpu"), torch.float32).numpy()
        x = (mag * np.exp(1j * phi)).astype(np.complex64)
    else:
        x = mag.astype(np.complex64)
    return (x, z) if return_index else x


# ------------------------------------------------------------------ augmentation
def _pair(name, v, lo=None):
    try:
        a, b = (float(t) for t in v)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (low, high) pair, got {v!r}") from None
    if not (math.isfinite(a) and math.isfinite(b) and a <= b) or (lo is not None and a < lo):
        raise ValueError(f"{name} must be finite with low <= high{'' if lo is None else f' and low >= {lo}'}, "
                         f"got {v!r}")
    return a, b


def _prob(name, v):
    v = check_real(name, v)
    if not 0 <= v <= 1:
        raise ValueError(f"{name} must be a probability in [0, 1], got {v}")
    return v


class BrainAugment:
    """Random geometric, intensity and phase augmentation of image batches (torch, vectorised).

    ``x = aug(x, generator)`` on a real batch ``(b, C, H, W)``, ``C = 1``
    (magnitude / attenuation) or ``C = 2`` (real, imaginary of a complex
    image); the output has the input's shape, dtype and device.  All random
    numbers come from ``generator`` (a CPU ``torch.Generator``; default the
    global torch RNG), so the same seed gives the same batch on any device.

    Steps, each drawn independently per image:

    1. one resampling (bilinear, zeros outside) through an affine map --
       left-right flip with probability ``hflip``, up-down flip with
       ``vflip``, rotation ``U(-rotate, rotate)`` degrees, isotropic scale
       ``U(*scale)``, shift ``U(-translate, translate)`` of the half-width per
       axis -- plus an elastic displacement: a random field on an
       ``elastic_grid`` x ``elastic_grid`` lattice (std ``elastic`` in units
       of the half-width), bicubically interpolated, so it is smooth;
    2. the magnitude ``m`` becomes ``s * m ** gamma`` with ``gamma`` log-uniform
       in ``gamma`` and ``s ~ U(*intensity)`` (the phase is kept; ``C = 1``
       keeps the sign);
    3. ``C = 2`` and ``phase``: multiplication by ``exp(i phi)``, ``phi`` a
       :func:`smooth_phase` map.

    With ``intensity[1] <= 1`` an input with ``|x| <= 1`` stays so
    (interpolation is a convex combination).

    Parameters
    ----------
    hflip, vflip : float
        Flip probabilities (default 0.5 and 0: anatomy keeps its orientation).
    rotate : float
        Degrees.
    scale : (float, float)
    translate : float
    elastic : float
        0 switches the elastic part off.
    elastic_grid : int
    gamma, intensity : (float, float)
    phase : bool
    """

    def __init__(self, *, hflip: float = 0.5, vflip: float = 0.0, rotate: float = 10.0, scale=(0.9, 1.1),
                 translate: float = 0.05, elastic: float = 0.03, elastic_grid: int = 5, gamma=(0.8, 1.25),
                 intensity=(0.8, 1.0), phase: bool = True):
        self.hflip, self.vflip = _prob("hflip", hflip), _prob("vflip", vflip)
        self.rotate = check_real("rotate", rotate)
        self.scale = _pair("scale", scale, 1e-3)
        self.translate = check_real("translate", translate)
        self.elastic = check_real("elastic", elastic)
        if self.elastic < 0 or self.translate < 0:
            raise ValueError("elastic and translate must be >= 0")
        self.elastic_grid = check_int("elastic_grid", elastic_grid, 2)
        self.gamma = _pair("gamma", gamma, 1e-3)
        self.intensity = _pair("intensity", intensity, 0.0)
        self.phase = bool(phase)

    def config(self) -> dict:
        """The settings (JSON-serialisable), for weight cards."""
        return {"hflip": self.hflip, "vflip": self.vflip, "rotate_degrees": self.rotate, "scale": list(self.scale),
                "translate": self.translate, "elastic": self.elastic, "elastic_grid": self.elastic_grid,
                "gamma": list(self.gamma), "intensity": list(self.intensity), "phase": self.phase}

    def __repr__(self) -> str:
        return "BrainAugment(" + ", ".join(f"{k}={v!r}" for k, v in self.config().items()) + ")"

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor (b, C, H, W), got {type(x).__name__}")
        if x.ndim != 4 or x.shape[1] not in (1, 2):
            raise ValueError(f"x must have shape (b, C, H, W) with C = 1 or 2 (real, imaginary), got {tuple(x.shape)}")
        if x.is_complex() or not x.is_floating_point():
            raise TypeError(f"x must be a real floating tensor, got {x.dtype}")
        b, c, h, w = x.shape
        if b == 0:
            return x
        g = generator
        dev, dt = x.device, x.dtype
        on_x = lambda t: t.to(device=dev, dtype=dt)
        u = torch.rand(b, 7, generator=g)
        sx = torch.where(u[:, 0] < self.hflip, -1.0, 1.0)
        sy = torch.where(u[:, 1] < self.vflip, -1.0, 1.0)
        ang = torch.deg2rad((2 * u[:, 2] - 1) * self.rotate)
        s = self.scale[0] + (self.scale[1] - self.scale[0]) * u[:, 3]
        tx, ty = (2 * u[:, 4] - 1) * self.translate, (2 * u[:, 5] - 1) * self.translate
        # output pixel p samples the input at theta @ [p, 1]: rotation / scale, then the flips
        cos, sin = torch.cos(ang) / s, torch.sin(ang) / s
        theta = torch.stack([torch.stack([cos * sx, -sin * sx, tx], 1),
                             torch.stack([sin * sy, cos * sy, ty], 1)], 1)  # (b, 2, 3)
        grid = F.affine_grid(on_x(theta), [b, c, h, w], align_corners=False)
        if self.elastic > 0:
            d = torch.randn(b, 2, self.elastic_grid, self.elastic_grid, generator=g) * self.elastic
            d = F.interpolate(d, size=(h, w), mode="bicubic", align_corners=True)
            grid = grid + on_x(d.permute(0, 2, 3, 1))
        y = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

        lg0, lg1 = math.log(self.gamma[0]), math.log(self.gamma[1])
        gam = on_x(torch.exp(lg0 + (lg1 - lg0) * u[:, 6])).reshape(b, 1, 1, 1)
        amp = on_x(self.intensity[0] + (self.intensity[1] - self.intensity[0])
                  * torch.rand(b, generator=g)).reshape(b, 1, 1, 1)
        m = y.abs() if c == 1 else torch.sqrt((y * y).sum(dim=1, keepdim=True))
        factor = amp * torch.where(m > 0, m.clamp_min(1e-12) ** (gam - 1), torch.zeros_like(m))
        y = y * factor
        if c == 2 and self.phase:
            phi = _phase_torch(b, h, w, g, dev, dt)[:, None]
            cs, sn = torch.cos(phi), torch.sin(phi)
            re, im = y[:, :1], y[:, 1:]
            y = torch.cat([re * cs - im * sn, re * sn + im * cs], dim=1)
        return y.contiguous()


def augment(images, seed=None, **options) -> np.ndarray:
    """Augment a stack of images with :class:`BrainAugment` (numpy in, numpy out).

    Parameters
    ----------
    images : array, (n, H, W) real or complex, or (H, W)
        Complex images are augmented as (real, imaginary) channels and get a
        smooth random phase.
    seed : int, numpy Generator or torch.Generator, optional
    **options
        :class:`BrainAugment` settings.

    Returns
    -------
    numpy.ndarray of the input's shape; float32 or complex64.
    """
    a = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if a.dtype == object or a.dtype.kind not in "biufc":
        raise TypeError(f"images must be a numeric array, got dtype {a.dtype}")
    if a.ndim not in (2, 3):
        raise ValueError(f"images must have shape (n, H, W) or (H, W), got {a.shape}")
    single = a.ndim == 2
    a = a[None] if single else a
    if np.iscomplexobj(a):
        t = torch.from_numpy(np.stack([a.real, a.imag], axis=1).astype(np.float32))
    else:
        t = torch.from_numpy(a.astype(np.float32)[:, None])
    out = BrainAugment(**options)(t, _torch_generator(seed)).numpy()
    res = (out[:, 0] + 1j * out[:, 1]).astype(np.complex64) if np.iscomplexobj(a) else out[:, 0]
    return res[0] if single else res


# ------------------------------------------------------------------ 3-D phantoms
def random_ellipsoids(shape, count: int = 12, seed=None) -> np.ndarray:
    """A random 3-D ellipsoid phantom, float32 ``(nz, ny, nx)`` in ``[0, 1]``.

    A body ellipsoid (value 0.5..0.8, semi-axes 0.7..0.9 in-plane and
    0.8..1.2 along z of the half-widths) plus ``count`` inner ellipsoids
    (random orientation about z, semi-axes 0.05..0.3, values in
    [-0.25, 0.25]), summed and clipped to [0, 1].  Axial slices are 2-D
    ellipse phantoms that change smoothly along z: a cheap stand-in for a
    CT volume when the MNI template is not wanted.

    Parameters
    ----------
    shape : (nz, ny, nx)
    count : int
    seed : int or numpy Generator, optional
    """
    try:
        nz, ny, nx = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be (nz, ny, nx), got {shape!r}") from None
    if min(nz, ny, nx) < 1:
        raise ValueError(f"shape must be positive, got {shape!r}")
    count = check_int("count", count, 0)
    rng = np.random.default_rng(seed)
    z = np.linspace(-1, 1, nz, dtype=np.float32)[:, None, None]
    y = np.linspace(1, -1, ny, dtype=np.float32)[None, :, None]
    x = np.linspace(-1, 1, nx, dtype=np.float32)[None, None, :]
    vol = np.zeros((nz, ny, nx), dtype=np.float32)
    rows = [(rng.uniform(0.5, 0.8), rng.uniform(0.7, 0.9), rng.uniform(0.7, 0.9), rng.uniform(0.8, 1.2),
             0.0, 0.0, 0.0, rng.uniform(0, np.pi))]
    for _ in range(count):
        r = 0.5 * rng.uniform(0, 1) ** (1 / 3)
        d = rng.normal(size=3)
        d /= np.linalg.norm(d) + 1e-12
        rows.append((rng.uniform(-0.25, 0.25), *rng.uniform(0.05, 0.3, 3), *(r * d), rng.uniform(0, np.pi)))
    for v, a, b, cz, x0, y0, z0, phi in rows:  # a loop over the few ellipsoids, vectorised over voxels
        cs, sn = np.cos(phi), np.sin(phi)
        u = (x - x0) * cs + (y - y0) * sn
        w = -(x - x0) * sn + (y - y0) * cs
        vol += np.float32(v) * (((u / a) ** 2 + (w / b) ** 2 + ((z - z0) / cz) ** 2) <= 1.0)
    return np.clip(vol, 0.0, 1.0)
