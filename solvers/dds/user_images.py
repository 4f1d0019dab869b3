"""Training images streamed from the user's files: an index of (volume, slice), one size policy, a split by volume.

:class:`UserImages` indexes the slices of
:class:`~krylearn.datasets.image_stacks.ImageVolume` records (fastMRI,
DICOM, NIfTI, HDF5 stacks; found with
:func:`~krylearn.datasets.image_stacks.find_volumes`) without reading
pixels, holds out whole volumes for validation, and reads the slices of a
training batch when the batch is drawn (:meth:`UserImages.draw_batch`),
keeping the last ``cache`` prepared images in memory.

Policy, per volume (fixed for all slices of the volume)
--------------------------------------------------------
Statistics come from up to :data:`STAT_SLICES` (8) evenly spaced slices of
the volume, read at their native size:

1. *values*: complex sources (fastMRI coil-combined images, complex HDF5
   stacks; ``--kind mri``) keep their complex values.  Real values are
   shifted so that the smallest sampled value is 0 (``x - min(x_min, 0)``),
   except DICOM series with ``Modality`` CT, which are mapped from
   Hounsfield units to ``HU + 1000`` (air 0, water 1000: proportional to
   attenuation); values below 0 after the shift are set to 0.
2. *scale*: the 99.9th percentile of the nonzero magnitudes (a robust peak,
   as the MNI152 template of the shipped priors:
   :mod:`krylearn.problems.brain`).
3. *field of view*: the object's bounding box -- the rows and columns in
   which at least 1 % of the pixels exceed 5 % of the scale, in any sampled
   slice -- centred, its longer side enlarged by 8 % (but not beyond the
   longer side of the image), a square; zero padding where it leaves the
   array.  Pixels are taken as square (the pixel spacing is not read).

Each slice is then cropped to that square, resampled to ``size x size``
(bilinear, antialiased when shrinking; real and imaginary parts alike),
divided by the scale and limited to ``|x| <= 1`` (real: clipped to
``[0, 1]``; complex: pixels above 1 in magnitude are scaled back to it).
Real images for a complex prior get a zero imaginary part.  A slice whose
pixels with ``|x| > 0.1`` cover less than ``min_foreground`` (default 10 %)
of the image is *background* and never trained on (the edges of a volume,
empty frames).  That is decided when the slice is first read: a drawn
background slice is replaced by a new draw (rejection sampling, so training
slices are drawn uniformly among the non-background ones).

Validation split
----------------
Whole *groups* (a file; a DICOM series) are held out: ``round(val_fraction
* groups)`` of them (at least 1 when ``val_fraction > 0``), picked by a
permutation seeded with ``seed``.  At most ``val_limit`` evenly spaced
non-background slices of them form the validation images, read once.

Streaming and DDP
-----------------
Rank ``r`` of ``W`` processes draws its share of every global batch from its
own contiguous shard of the training index (``r``-th of ``W`` equal parts,
in (group, slice) order, so mostly its own files).  Draws come from the
generator the caller passes, and the background test depends only on the
data, so a run resumed with the same number of processes continues with
the same batches.
"""

from __future__ import annotations

import collections
import hashlib
import json
import math
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ...datasets.image_stacks import ImageVolume, read_slice

__all__ = ["NORMALISATION", "SIZE_POLICY", "STAT_SLICES", "UserImages", "VolumeStats", "prepare_slice",
           "val_groups", "volume_stats"]

#: Slices per volume that the scale and the field of view are estimated from.
STAT_SLICES = 8
#: Bounding box: pixels above this share of the scale, in at least _BOX_SHARE of a row / column.
_BOX_LEVEL, _BOX_SHARE = 0.05, 0.01
#: Enlargement of the bounding box's longer side.
_MARGIN = 0.08
#: A pixel is foreground above this magnitude (after normalisation).
_FOREGROUND_LEVEL = 0.1
#: Hounsfield units to attenuation-like values: HU + this (DICOM CT only).
_HU_OFFSET = 1000.0
#: Draws per requested image before giving up on a shard that is (nearly) all background.
_MAX_DRAWS = 100
#: Largest number of volumes listed one by one in :meth:`UserImages.describe`.
_LIST_LIMIT = 200
_BELOW_ONE = np.float32(1 - 2**-20)  # |x| <= 1 after rounding to complex64

#: The size policy, as recorded in cards.
SIZE_POLICY = ("per volume: square field of view on the object's bounding box (rows/columns with >= 1% of pixels "
               "above 5% of the volume's scale, in up to 8 evenly spaced slices), centred, longer side enlarged by "
               "8% but not beyond the image's longer side, zero-padded outside the array; resampled to size x size, "
               "bilinear, antialiased when shrinking; pixel spacing ignored (square pixels)")
#: The normalisation, as recorded in cards.
NORMALISATION = ("per volume: complex values kept (fastMRI coil-combined); real values shifted to a minimum of 0 "
                 "(DICOM CT: HU + 1000), negatives set to 0; divided by the 99.9th percentile of the nonzero "
                 "magnitudes of up to 8 evenly spaced slices; |x| limited to 1")


@dataclass(frozen=True)
class VolumeStats:
    """One volume's normalisation and field of view (see the module notes).

    Attributes
    ----------
    offset : float
        Added to real values before the scale (0 for complex sources).
    scale : float
        The robust peak the values are divided by (> 0).
    fov : (int, int, int) or None
        ``(row0, col0, side)`` of the square window; ``None``: the volume is empty.
    """

    offset: float
    scale: float
    fov: tuple | None


def _sample_slices(n: int) -> np.ndarray:
    return np.unique(np.round(np.linspace(0, n - 1, min(n, STAT_SLICES))).astype(np.int64))


def _span(share: np.ndarray) -> tuple[int, int] | None:
    idx = np.flatnonzero(share >= _BOX_SHARE)
    return (int(idx[0]), int(idx[-1]) + 1) if idx.size else None


def volume_stats(vol: ImageVolume, complex_image: bool, samples: dict | None = None) -> VolumeStats:
    """Offset, scale and field of view of ``vol`` from up to :data:`STAT_SLICES` of its slices.

    Parameters
    ----------
    vol : ImageVolume
    complex_image : bool
        Read complex sources as complex images (a 2-channel prior).
    samples : dict, optional
        Filled with ``{slice: native image}`` of the slices read (so a caller can keep them).
    """
    ks = [int(k) for k in _sample_slices(vol.slices)]
    imgs = [read_slice(vol, k, complex_image=complex_image) for k in ks]
    if samples is not None:
        samples.update(zip(ks, imgs))
    offset = 0.0
    if not np.iscomplexobj(imgs[0]):
        offset = _HU_OFFSET if vol.info.get("modality") == "CT" else max(0.0, -min(float(i.min()) for i in imgs))
    mags = [np.abs(i) if np.iscomplexobj(i) else np.maximum(i + np.float32(offset), 0) for i in imgs]
    nonzero = np.concatenate([m[m > 0].ravel() for m in mags])
    if nonzero.size == 0:
        return VolumeStats(offset, 1.0, None)
    scale = float(np.percentile(nonzero, 99.9))
    if not scale > 0:
        return VolumeStats(offset, 1.0, None)
    on = [m > _BOX_LEVEL * scale for m in mags]
    rows = _span(np.max([o.mean(axis=1) for o in on], axis=0))
    cols = _span(np.max([o.mean(axis=0) for o in on], axis=0))
    if rows is None or cols is None:
        return VolumeStats(offset, scale, None)
    box = max(rows[1] - rows[0], cols[1] - cols[0])
    side = max(box, min(math.ceil(box * (1.0 + _MARGIN)), max(vol.shape)))
    y0 = round((rows[0] + rows[1]) / 2 - side / 2)
    x0 = round((cols[0] + cols[1]) / 2 - side / 2)
    return VolumeStats(offset, scale, (int(y0), int(x0), int(side)))


def _crop(img: np.ndarray, fov) -> np.ndarray:
    y0, x0, side = fov
    ny, nx = img.shape
    out = np.zeros((side, side), dtype=img.dtype)
    ya, yb, xa, xb = max(y0, 0), min(y0 + side, ny), max(x0, 0), min(x0 + side, nx)
    if ya < yb and xa < xb:
        out[ya - y0:yb - y0, xa - x0:xb - x0] = img[ya:yb, xa:xb]
    return out


def prepare_slice(img: np.ndarray, stats: VolumeStats, size: int, channels: int) -> np.ndarray:
    """One native slice as a training image under the policy of the module notes.

    Parameters
    ----------
    img : numpy.ndarray, (H, W), float32 or complex64
        As :func:`~krylearn.datasets.image_stacks.read_slice` returns it.
    stats : VolumeStats
        Its volume's statistics.
    size : int
        Output side in pixels.
    channels : {1, 2}
        1: real image in ``[0, 1]``; 2: (real, imaginary) with ``|x| <= 1``.

    Returns
    -------
    numpy.ndarray, float32, (channels, size, size)
    """
    if stats.fov is None:
        return np.zeros((channels, size, size), dtype=np.float32)
    if np.iscomplexobj(img):
        a = _crop(img.astype(np.complex64) / np.float32(stats.scale), stats.fov)
        parts = [a.real, a.imag] if channels == 2 else [np.abs(a)]
    else:
        a = _crop(np.maximum(img + np.float32(stats.offset), 0) / np.float32(stats.scale), stats.fov)
        parts = [a]
    t = torch.from_numpy(np.ascontiguousarray(np.stack(parts), dtype=np.float32))[None]
    if t.shape[-1] != size:
        t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=t.shape[-1] > size)
    t = t[0]
    if t.shape[0] == 2:
        mag = torch.sqrt(t[0] ** 2 + t[1] ** 2)
        t = t * torch.clamp(float(_BELOW_ONE) / mag.clamp_min(1e-30), max=1.0)
    else:
        t = t.clamp(0.0, float(_BELOW_ONE) if channels == 2 else 1.0)
        if channels == 2:
            t = torch.cat([t, torch.zeros_like(t)])
    return np.ascontiguousarray(t.numpy(), dtype=np.float32)


def val_groups(groups, val_fraction: float, seed: int) -> list[str]:
    """The groups held out for validation: ``round(val_fraction * n)`` (>= 1 when > 0) by a seeded permutation.

    Raises
    ------
    ValueError
        ``val_fraction`` outside ``[0, 1)``, or no group would be left to train on.
    """
    groups = sorted(set(groups))
    if not (isinstance(val_fraction, (int, float)) and 0 <= val_fraction < 1):
        raise ValueError(f"val_fraction must lie in [0, 1), got {val_fraction!r}")
    if val_fraction == 0:
        return []
    n_val = max(1, round(val_fraction * len(groups)))
    if n_val >= len(groups):
        raise ValueError(f"data: the validation split holds out whole volumes (files, DICOM series), so it needs at "
                         f"least 2 of them; found {len(groups)} ({', '.join(groups)}); give more volumes, or "
                         "val_fraction=0 (--val-fraction 0) to train without validation")
    pick = np.random.default_rng(int(seed)).permutation(len(groups))[:n_val]
    return sorted(groups[i] for i in pick)


def _bytes(vol: ImageVolume) -> int:
    try:
        return int(sum(os.path.getsize(f) for f in (vol.files or (vol.path,))))
    except OSError:
        return -1


class UserImages:
    """The training (and validation) images of a set of volumes, read lazily (see the module notes).

    Parameters
    ----------
    volumes : list of ImageVolume
    channels : {1, 2}
        1: real images (a CT prior); 2: complex images as (real, imaginary) (an MRI prior).
    size : int
        Training image side in pixels.
    seed : int
        Picks the validation volumes.
    val_fraction : float
        Share of the groups (files, DICOM series) held out; 0: no validation.
    min_foreground : float
        Background rule (share of pixels with ``|x| > 0.1``), in ``[0, 1)``.
    cache : int
        Prepared images kept in memory (least recently used dropped).
    val_limit : int
        Most validation images.

    Attributes
    ----------
    volumes, channels, size, min_foreground
    val_groups : list of str
        The held-out groups (file paths; DICOM ``folder#uid``).
    background_seen : int
        Training slices this process found to be background so far.
    """

    def __init__(self, volumes, *, channels: int, size: int, seed: int = 0, val_fraction: float = 0.1,
                 min_foreground: float = 0.1, cache: int = 2048, val_limit: int = 64):
        self.volumes = list(volumes)
        if not self.volumes or not all(isinstance(v, ImageVolume) for v in self.volumes):
            raise ValueError("volumes must be a non-empty list of ImageVolume")
        if channels not in (1, 2):
            raise ValueError(f"channels must be 1 or 2, got {channels!r}")
        if not 0 <= float(min_foreground) < 1:
            raise ValueError(f"min_foreground must lie in [0, 1), got {min_foreground!r}")
        self.channels, self.size, self.min_foreground = int(channels), int(size), float(min_foreground)
        self.cache_size, self.val_limit, self.seed = max(int(cache), 0), max(int(val_limit), 1), int(seed)
        self.val_fraction = float(val_fraction)
        self.val_groups = val_groups([v.group for v in self.volumes], val_fraction, seed)
        held = set(self.val_groups)
        entries = {False: [], True: []}
        for vi, v in enumerate(self.volumes):
            entries[v.group in held].extend((vi, k) for k in range(v.slices))
        self.train = np.asarray(entries[False], dtype=np.int64).reshape(-1, 2)
        self.val = np.asarray(entries[True], dtype=np.int64).reshape(-1, 2)
        self._stats: dict = {}
        self._cache: collections.OrderedDict = collections.OrderedDict()
        self._background: set = set()
        self.background_seen = 0

    def __len__(self) -> int:
        """Training slices indexed (background ones included until they are read)."""
        return len(self.train)

    # ------------------------------------------------------------------ reading
    def stats(self, vi: int) -> VolumeStats:
        """:class:`VolumeStats` of volume ``vi`` (computed once per process; the slices read are kept)."""
        vi = int(vi)
        if vi not in self._stats:
            samples: dict = {}
            self._stats[vi] = volume_stats(self.volumes[vi], self.channels == 2, samples)
            for k, img in samples.items():
                self._keep((vi, k), img)
        return self._stats[vi]

    def _keep(self, key: tuple, img: np.ndarray) -> np.ndarray | None:
        """Prepare a native slice, classify it, cache it; the image or ``None`` (background)."""
        x = prepare_slice(img, self._stats[key[0]], self.size, self.channels)
        mag = np.sqrt(np.sum(x ** 2, axis=0))
        if float(np.mean(mag > _FOREGROUND_LEVEL)) < self.min_foreground or not np.any(mag):
            self._background.add(key)
            return None
        if self.cache_size:
            self._cache[key] = x
            self._cache.move_to_end(key)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return x

    def image(self, vi: int, k: int) -> np.ndarray | None:
        """Prepared slice ``k`` of volume ``vi``, float32 ``(channels, size, size)``; ``None`` if background."""
        key = (int(vi), int(k))
        self.stats(key[0])
        if key in self._background:
            return None
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        return self._keep(key, read_slice(self.volumes[key[0]], key[1], complex_image=self.channels == 2))

    def shard(self, rank: int = 0, world: int = 1) -> tuple[int, int]:
        """``(start, stop)``: rank ``rank``'s contiguous part of the training index."""
        n = len(self.train)
        lo, hi = rank * n // world, (rank + 1) * n // world
        if hi <= lo:
            raise ValueError(f"data: {n} training slices cannot be shared by {world} processes")
        return lo, hi

    def draw_batch(self, count: int, generator: torch.Generator, rank: int = 0, world: int = 1) -> torch.Tensor:
        """``count`` non-background training images drawn uniformly from this rank's shard.

        Returns
        -------
        torch.Tensor, float32, CPU, ``(count, channels, size, size)``

        Raises
        ------
        ValueError
            The shard is (nearly) all background: ``100 * count`` draws found too few images.
        """
        lo, hi = self.shard(rank, world)
        out, draws = [], 0
        while len(out) < count:
            if draws >= _MAX_DRAWS * count:
                raise ValueError(f"data: {draws} draws from training slices {lo}..{hi - 1} found only {len(out)} "
                                 f"with at least {self.min_foreground:.0%} foreground (pixels above "
                                 f"{_FOREGROUND_LEVEL}); lower min_foreground or check the data")
            i = lo + int(torch.randint(hi - lo, (1,), generator=generator))
            draws += 1
            before = len(self._background)
            x = self.image(*self.train[i])
            self.background_seen += len(self._background) - before
            if x is not None:
                out.append(x)
        return torch.from_numpy(np.stack(out))

    def val_images(self) -> tuple[torch.Tensor | None, list]:
        """The validation images, float32 ``(n, channels, size, size)`` (``None`` without validation), and their
        ``(volume label, slice)``.

        Raises
        ------
        ValueError
            The validation volumes hold no non-background slice.
        """
        if len(self.val) == 0:
            return None, []
        n = len(self.val)
        cand = np.unique(np.round(np.linspace(0, n - 1, min(n, 2 * self.val_limit))).astype(np.int64))
        kept = []
        for i in cand:
            vi, k = (int(v) for v in self.val[i])
            x = self.image(vi, k)
            if x is not None:
                kept.append((x, (self.volumes[vi].label, k)))
        if not kept:
            raise ValueError(f"data: the validation volumes ({', '.join(self.val_groups)}) hold no slice with at "
                             f"least {self.min_foreground:.0%} foreground; lower min_foreground or give others")
        pick = np.unique(np.round(np.linspace(0, len(kept) - 1, min(len(kept), self.val_limit))).astype(np.int64))
        return torch.from_numpy(np.stack([kept[i][0] for i in pick])), [list(kept[i][1]) for i in pick]

    # ------------------------------------------------------------------ records
    def fingerprint(self) -> dict:
        """What a checkpoint ties a run to: the volumes (label, format, slices, shape, bytes) and the policy."""
        return {"volumes": [[v.label, v.format, v.slices, list(v.shape), _bytes(v)] for v in self.volumes],
                "channels": self.channels, "size": self.size, "min_foreground": self.min_foreground,
                "val_groups": self.val_groups, "stat_slices": STAT_SLICES, "policy": SIZE_POLICY + NORMALISATION}

    def describe(self) -> dict:
        """A JSON-able account of the data for a card (counts, formats, the split)."""
        held = set(self.val_groups)
        formats: dict = {}
        for v in self.volumes:
            f = formats.setdefault(v.format, {"volumes": 0, "slices": 0})
            f["volumes"] += 1
            f["slices"] += v.slices
        train = [v.label for v in self.volumes if v.group not in held]
        return {
            "volumes": len(self.volumes), "groups": len({v.group for v in self.volumes}),
            "slices_indexed": int(sum(v.slices for v in self.volumes)), "formats": formats,
            "train_volumes": len(train), "train_slices_indexed": len(self.train),
            "train_volume_list": train if len(train) <= _LIST_LIMIT else None,
            "train_volume_list_sha256": hashlib.sha256(json.dumps(train).encode()).hexdigest(),
            "val_fraction": self.val_fraction, "val_volumes": [v.label for v in self.volumes if v.group in held],
            "val_slices_indexed": len(self.val),
            "volume_details": [v.describe() for v in self.volumes] if len(self.volumes) <= _LIST_LIMIT else None,
        }
