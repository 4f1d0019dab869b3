"""Coil sensitivity maps for MRI reconstruction: from the file, ESPIRiT, or the low-resolution coil images.

:func:`check_maps` refuses maps that are non-finite or all zero;
:func:`map_coverage` measures how much of the object they cover;
:func:`acs_width` reads the fully sampled centre off a mask.  The
reconstruction pipeline (:mod:`.reconstruct`) takes its maps from
``_checked_maps``:

* the file's ``sensitivity_maps`` when present (kept even when they cover the
  object poorly, with a warning);
* ESPIRiT on the fully sampled centre when it is at least ``_ESPIRIT_MIN``
  lines wide, with joint maps (:func:`~krylearn.operators.mri.joint_maps`)
  on the slices where ESPIRiT leaves more than a fifth of the object
  uncovered;
* joint maps alone from a centre of ``_JOINT_MIN`` to ``_ESPIRIT_MIN - 1``
  lines (they fit the coil maps and the image to the acquired samples of
  the central square, outer lines included);
* the low-resolution maps (:func:`~krylearn.operators.mri.lowres_maps`) on a
  slice where the joint fit fails.
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np
import torch
from tqdm.auto import tqdm

from ..operators.mri import espirit_maps, ifft2c, joint_maps, lowres_maps, rss
from ..utils.errors import FormatError

__all__ = ["acs_width", "check_maps", "map_coverage"]

_ESPIRIT_MIN = 6
# narrowest centre for joint maps: with 0 or 1 line CG-SENSE scored below zero-filled (docs/dds.md)
_JOINT_MIN = 2
# share of the object the coil maps must cover before a warning; aliasing in the zero-filled image counts
# as object, so well-estimated maps can score 0.85-0.95 on undersampled data
_MIN_COVERAGE = 0.8


def check_maps(maps, what: str = "maps", index=None, hint: str | None = None) -> None:
    """``ValueError`` when the coil maps of a slice are non-finite or all zero (nothing could be reconstructed there).

    "All zero" is judged in the maps' own precision: maps so small that
    ``sum_c |S_c|^2`` underflows to 0 everywhere (e.g. ``1e-30`` in
    complex64) make ``A^H A = 0`` just as zeros do, and an iterative method
    would return its prior's image (or zeros) without a word.

    Parameters
    ----------
    maps : array or tensor, (slices, coils, ny, nx)
    what : str
        Names the maps in the message (e.g. the file and its key).
    index : sequence of int, optional
        The slices' numbers to report (default ``0 .. slices - 1``).
    hint : str, optional
        What to do about it (default: store maps that are nonzero in the field of view).
    """
    m = maps.detach() if isinstance(maps, torch.Tensor) else torch.from_numpy(np.asarray(maps))
    if m.ndim == 3:
        m = m.unsqueeze(0)

    def names(bad):
        bad = [int(index[i]) for i in bad] if index is not None else bad
        return f"{', '.join(map(str, bad[:8]))}{' ...' if len(bad) > 8 else ''}"

    finite = torch.isfinite(m).reshape(m.shape[0], -1).all(dim=1)
    if not bool(finite.all()):
        bad = torch.nonzero(~finite).reshape(-1).tolist()
        raise ValueError(f"{what}: the coil maps of slice(s) {names(bad)} contain NaN or Inf; "
                         f"{hint or 'give finite maps'}")
    m = m.abs() if m.is_complex() else m.abs().to(torch.promote_types(m.dtype, torch.float32))
    energy = (m * m).sum(dim=1).reshape(m.shape[0], -1).amax(dim=1)  # max over pixels of sum_c |S_c|^2
    zero = torch.nonzero(energy == 0).reshape(-1).tolist()
    if zero:
        hint = hint or "give maps that are nonzero inside the field of view"
        raise ValueError(f"{what}: the coil maps of slice(s) {names(zero)} are all zero (or so small that "
                         f"sum |S|^2 underflows to 0), so no image is determined there; {hint}")


def acs_width(mask) -> int:
    """Width of the fully sampled centre of a mask: a column mask ``(kx,)`` or a 2D one ``(ky, kx)``.

    For ``(kx,)`` the run of sampled columns through ``kx // 2``; for
    ``(ky, kx)`` the side of the largest fully sampled square centred on
    ``(ky // 2, kx // 2)``.
    """
    m = np.asarray(mask) != 0
    if m.ndim == 1:
        c = m.shape[0] // 2
        if not m[c]:
            return 0
        lo = c
        while lo > 0 and m[lo - 1]:
            lo -= 1
        hi = c
        while hi < m.shape[0] - 1 and m[hi + 1]:
            hi += 1
        return hi - lo + 1
    cy, cx = m.shape[0] // 2, m.shape[1] // 2
    w = 0
    while True:
        h = w + 1
        y0, x0 = cy - h // 2, cx - h // 2
        if y0 < 0 or x0 < 0 or y0 + h > m.shape[0] or x0 + h > m.shape[1] or not m[y0:y0 + h, x0:x0 + h].all():
            return w
        w = h


def _coil_maps(data, kspace, mask, calib_width, progress):
    """``(maps (S, C, ky, kx), source, width)`` from the file, ESPIRiT on the ACS region, or joint maps.

    ``width`` is the calibration width used (None for maps from the file or a single coil).

    ESPIRiT needs a fully sampled centre of at least ``_ESPIRIT_MIN`` lines; a
    narrower one (down to ``_JOINT_MIN``) gives joint maps instead.
    """
    if data.sensitivity_maps is not None:
        return data.sensitivity_maps, "file", None
    S, C, ky, _ = kspace.shape
    if C == 1:
        return np.ones_like(kspace), "single-coil (ones)", None
    acs = acs_width(mask) if mask.ndim == 2 else min(acs_width(mask), ky)
    width = min(24, acs) if calib_width is None else calib_width
    if not isinstance(width, numbers.Integral) or isinstance(width, bool) or not _JOINT_MIN <= width <= acs:
        raise ValueError(
            f"the mask's fully sampled centre is {acs} line{'' if acs == 1 else 's'} wide; coil maps need a "
            f"calib_width of at least {_JOINT_MIN} and at most the centre's width (got {width}), so this method, "
            "which needs coil maps, cannot run: store sensitivity_maps in the file or use a mask with a fully "
            "sampled centre (acs); --method zero-filled needs no coil maps")
    width = int(width)
    if width < _ESPIRIT_MIN:
        maps, label = _joint(kspace, mask, width, progress)
        return maps, f"{label} (centre {width} lines; ESPIRiT needs {_ESPIRIT_MIN})", width
    kernel = min(6, width // 2)  # sigpy's default 6 fails on narrow calibration regions
    maps = [espirit_maps(kspace[i], calib_width=width, kernel_width=kernel)
            for i in tqdm(range(S), disable=not progress, desc="ESPIRiT", unit="slice", dynamic_ncols=True)]
    label = f"espirit (calib_width={width}, kernel_width={kernel})"
    return np.stack(maps).astype(kspace.dtype, copy=False), label, width


def _joint(kspace, mask, width, progress=False):
    """``(maps, label)``: joint maps per slice; the low-resolution maps on slices where the fit fails."""
    maps, failed = [], []
    for i in tqdm(range(kspace.shape[0]), disable=not progress, desc="coil maps", unit="slice", dynamic_ncols=True):
        try:
            maps.append(joint_maps(kspace[i], mask))
        except ValueError:
            failed.append(i)
            maps.append(_lowres(kspace[i:i + 1], mask, width)[0])
    label = "joint"
    if failed:
        label += f"; low-resolution on {len(failed)} slice(s) where the joint fit failed"
    return np.stack(maps).astype(kspace.dtype, copy=False), label


def _lowres(kspace, mask, width):
    shape = (None, width) if np.asarray(mask).ndim == 1 else (width, width)
    return np.stack([lowres_maps(kspace[i], shape) for i in range(kspace.shape[0])])


def _slice_names(index, rows):
    return ", ".join(str(int(index[i]) if index is not None else i) for i in rows[:8])


def _checked_maps(input, data, kspace, mask, index, calib_width, progress):
    """The file's, ESPIRiT's or the low-resolution coil maps and their label; bad maps in a file are a ``FormatError``.

    ESPIRiT maps that leave part of the object uncovered (see
    :func:`map_coverage`) are replaced, on those slices, by the
    low-resolution maps (a warning says so); maps from the file that do are
    kept, with a warning: every method would lose the signal there.
    """
    maps, label, width = _coil_maps(data, kspace, mask, calib_width, progress)
    if label == "file":
        try:
            check_maps(maps, "sensitivity_maps", index,
                       "store maps that are nonzero inside the field of view, or leave them out for ESPIRiT")
        except ValueError as e:
            raise FormatError(str(e).removeprefix("sensitivity_maps: "), path=input,
                              key="sensitivity_maps") from None
    else:
        check_maps(maps, f"{input}: {label}", index, "is the slice's k-space empty? store sensitivity_maps")
    if kspace.shape[1] == 1:
        return maps, label
    cover = map_coverage(maps, kspace, mask)
    poor = np.flatnonzero(cover < _MIN_COVERAGE)
    if poor.size and label.startswith("espirit"):
        maps = maps.copy()
        maps[poor], how = _joint(kspace[poor], mask, width)
        warnings.warn(f"{input}: the ESPIRiT maps covered only {100 * float(cover[poor].min()):.0f}% of the "
                      f"signal in slice(s) {_slice_names(index, poor)}; using joint maps there",
                      stacklevel=3)
        label = f"{label}; {how} on {poor.size} slice(s) where ESPIRiT covered < {_MIN_COVERAGE:.0%}"
        cover[poor] = map_coverage(maps[poor], kspace[poor], mask)
        poor = np.flatnonzero(cover < _MIN_COVERAGE)
    if poor.size:
        warnings.warn(f"{input}: the coil maps ({label}) cover only {100 * float(cover.min()):.0f}% of the "
                      f"signal in slice(s) {_slice_names(index, poor)}: every method loses the image "
                      "where sum |S|^2 is near 0; store sensitivity_maps or use a wider fully sampled centre",
                      stacklevel=3)
    return maps, label


def map_coverage(maps, kspace, mask) -> np.ndarray:
    """Per slice, the share of the object's signal where the coil maps are not near zero.

    The object is where the root-sum-of-squares of the zero-filled coil
    images exceeds a fifth of its 99th percentile; a pixel is covered when
    ``sum_c |S_c|^2`` there is at least a quarter of its median over the
    object.  ``maps``, ``kspace``: (S, C, ky, kx); returns (S,) float in [0, 1].
    """
    w = np.asarray(mask).astype(np.float32)
    out = np.ones(kspace.shape[0])
    for i in range(kspace.shape[0]):
        img = np.asarray(rss(ifft2c(kspace[i] * w)))
        obj = img > 0.2 * np.percentile(img, 99)
        if not obj.any():
            continue
        energy = (np.abs(np.asarray(maps[i])) ** 2).sum(axis=0)
        ref = np.median(energy[obj])
        out[i] = float(np.mean(energy[obj] >= 0.25 * ref)) if ref > 0 else 0.0
    return out
