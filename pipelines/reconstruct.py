"""``krylearn reconstruct mri|ct``: any reconstruction method on MRI/CT files.

Three layers:

* :func:`run_method` -- one method on an operator ``A`` and data ``y`` (what
  the CLI and the benchmarks share): ``(images, seconds)``.  Methods are
  found by name through :func:`krylearn.solvers.reconstructors.setup` (the
  classical table, and the learned methods' own declarations); each takes
  its own options.
* :func:`reconstruct_mri` -- a fastMRI-style k-space file in, the fastMRI
  submission layout (``reconstruction`` (slices, ny, nx) float32 magnitude)
  and PNG previews out, in five steps: load -> undersample -> coil maps ->
  method -> write.
* :func:`reconstruct_ct` -- a ``krylearn.ct`` sinogram file in, the same
  layout (real attenuation values, not a magnitude) and previews out.

Scaling
-------
The diffusion priors and the regularisation weights of the classical
methods assume images whose robust peak magnitude is about 1 (the brain data
are divided by the 99.9th percentile of the nonzero voxels).  For such a
method (:attr:`~krylearn.solvers.reconstructors.Reconstructor.scaled`),
unless a ``scale`` is given, the image's peak is estimated with
:func:`krylearn.solvers.imaging.image_scale` (10 CG iterations on the normal
equations, 99.9th percentile of the foreground) and divided by the peak the
method assumes (a prior's card may say ``normalization = {"peak": p}``); the
data are divided by it, reconstructed and multiplied back.  Linear methods
(zero-filled, CG-SENSE / CG without ``lam``, FBP) are scale-equivariant and
skip it: the image of ``s y`` is ``s`` times the image of ``y`` for every
``s`` whose images float32 can hold.
"""

from __future__ import annotations

import math
import numbers
import os
import time
import warnings

import numpy as np
import torch
from tqdm.auto import tqdm

from ..datasets.fastmri import read_ct, read_kspace, write_reconstruction
from ..operators.base import Operator
from ..operators.ct import ParallelBeamProjector
from ..operators.mri import (
    SenseOperator,
    acceleration,
    espirit_maps,
    gaussian1d_mask,
    ifft2c,
    poisson2d_mask,
    rss,
    uniform1d_mask,
)
from ..solvers.imaging import image_scale
from ..solvers.learned import pick_device
from ..solvers.reconstructors import Reconstructor, ZeroFilled, check_kind, check_seed, method_class, setup
from ..utils.errors import FormatError
from ..utils.version import __version__
from .reconstruct_files import center_crop, num_slices, parse_slices, psnr_against, slice_indices, write_previews

__all__ = [
    "MASKS",
    "acs_width",
    "check_maps",
    "parse_slices",
    "reconstruct_ct",
    "reconstruct_mri",
    "run_method",
    "run_reconstruction",
]

#: Retrospective undersampling patterns for ``reconstruct_mri(mask=...)``.
MASKS = ("uniform1d", "gaussian1d", "poisson2d")
_ESPIRIT_MIN = 6
# share of the object the coil maps must cover before a warning; aliasing in the zero-filled image counts
# as object, so well-estimated maps can score 0.85-0.95 on undersampled data
_MIN_COVERAGE = 0.8
_RSS_LABEL = "none (zero-filled: root-sum-of-squares of the coil images)"
_FLOAT32_MAX = float(np.finfo(np.float32).max)


# ------------------------------------------------------------------ one method
def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _check_operator(kind: str, A) -> None:
    if not isinstance(A, Operator):
        raise TypeError(f"A must be a krylearn Operator, got {type(A).__name__}")
    if kind == "mri" and not A.dtype.is_complex:
        raise TypeError(f"A must be a complex (SENSE) operator for mri, got dtype {A.dtype}")
    if kind == "ct" and A.dtype.is_complex:
        raise TypeError(f"A must be a real operator for ct, got dtype {A.dtype}")


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


def run_reconstruction(rec: Reconstructor, A, y, *, seed: int = 0, scale=None, progress: bool = False):
    """Run a method that is set up (:func:`krylearn.solvers.reconstructors.setup`) on ``y = A x (+ noise)``.

    Parameters
    ----------
    rec : Reconstructor
    A : Operator
        As :func:`run_method`.
    y : numpy.ndarray or torch.Tensor, (*batch, *A.oshape)
    seed : int
        Seeds the samplers.
    scale : float, optional
        Image peak magnitude for a scaled method (see the module notes);
        estimated when None.
    progress : bool

    Returns
    -------
    (images, seconds)
        ``images``: numpy ``(*batch, *A.ishape)``; ``seconds``: wall time
        of the call (scale estimate included), CUDA synchronised.
    """
    _check_operator(rec.kind, A)
    if isinstance(A, SenseOperator):
        check_maps(A.maps, "A")
    seed = check_seed(seed)
    if scale is not None and (not isinstance(scale, numbers.Real) or not math.isfinite(scale) or scale <= 0):
        raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    y = np.asarray(y)
    _sync(A.device)
    t0 = time.perf_counter()
    s = 1.0
    if rec.scaled:
        s = float(scale) if scale is not None else image_scale(A, y) / rec.peak
    x = rec.run(A, y, seed=seed, scale=s, progress=progress)
    x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    _sync(A.device)
    return x, time.perf_counter() - t0


def run_method(kind: str, method: str, A, y, *, seed: int = 0, scale=None, progress: bool = False, **options):
    """Reconstruct images from ``y = A x (+ noise)`` with one method.

    Parameters
    ----------
    kind : {"mri", "ct"}
    method : str
        Any name of :func:`krylearn.solvers.reconstructors.method_names`:
        MRI ``dds``, ``dps``, ``zero-filled``, ``cg-sense``, ``l1-wavelet``,
        ``tv``; CT ``dds``, ``dps``, ``fbp``, ``admm-tv``, ``cg``.
    A : Operator
        MRI: a :class:`~krylearn.operators.mri.SenseOperator` (3-D maps: a
        batch of slices sharing maps and mask; 4-D maps: a volume).
        CT: a :class:`~krylearn.operators.ct.ParallelBeamProjector` (FBP
        needs it; the others take any real operator on ``(ny, nx)``).
    y : numpy.ndarray or torch.Tensor, (*batch, *A.oshape)
        Data; for CT ``(slices, views, det)`` is a volume (z = slice axis:
        ``dds`` uses the 3D sampler with TV along z, ``admm-tv`` 3D TV).
    seed : int
        Seeds the samplers.
    scale : float, optional
        Image peak magnitude (see the module notes); estimated when None.
    progress : bool
    **options
        The method's options (its ``Options`` dataclass; ``None`` means the
        default): ``cg-sense``/``cg``: ``iters``, ``rtol``, ``lam``;
        ``l1-wavelet``: ``lam``, ``iters``, ``wave_name``; ``tv``: ``lam``,
        ``iters``, ``sigma``; ``fbp``: ``filter``; ``admm-tv``: ``lam``,
        ``rho``, ``iters``, ``cg_steps``, ``tv``; ``dds``: ``prior``,
        ``nfe``, ``gamma``, ``cg_steps``, ``eta``, ``net_batch`` and for CT
        volumes ``volume`` (default True), ``lam``, ``rho`` (TV along z);
        ``dps``: ``prior``, ``nfe``, ``zeta``, ``eta``, ``net_batch``.
        ``prior`` and ``nfe`` may be passed to every method (one call per
        method in a loop); the methods without them ignore them.

    Returns
    -------
    (images, seconds)
        ``images``: numpy ``(*batch, *A.ishape)``, complex for MRI, real for
        CT; ``seconds``: wall time of the whole call after setting the
        method up (loading a prior), scale estimate included, CUDA
        synchronised.  Divide by the number of slices for seconds per slice.
    """
    check_kind(kind)
    method_class(kind, method)
    _check_operator(kind, A)
    rec = setup(method, kind, A.device, **options)
    return run_reconstruction(rec, A, y, seed=seed, scale=scale, progress=progress)


def _record(rec: Reconstructor) -> dict:
    """The method's own attributes and the other options it was given (``"k=v, ..."``)."""
    own = rec.record()
    rest = ", ".join(f"{k}={v}" for k, v in sorted(rec.given.items()) if k not in own)
    return {**own, "options": rest or None}


def _float32_images(x, what: str) -> np.ndarray:
    """``x`` (real) as float32, refusing values float32 cannot hold instead of writing Inf."""
    x = np.asarray(x)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{what} produced non-finite values")
    top = float(np.max(np.abs(x))) if x.size else 0.0
    if top > _FLOAT32_MAX:
        raise ValueError(f"{what}: the image reaches {top:.3g}, beyond float32's range ({_FLOAT32_MAX:.3g}) of the "
                         "output layout; divide the data by a power of ten and multiply the result back")
    return x.astype(np.float32)


# ------------------------------------------------------------------ MRI
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


def _mask_name(mask, accel):
    if accel is not None and mask is None:
        mask = "uniform1d"
    if mask is not None and mask not in MASKS:
        raise ValueError(f"mask must be one of {', '.join(MASKS)}, got {mask!r}")
    return mask


def _draw_mask(mask, accel, shape, seed, acs):
    if accel is None:
        raise ValueError(f"mask={mask!r} needs accel (e.g. --accel 4)")
    if not isinstance(accel, numbers.Real) or not math.isfinite(accel) or accel < 1:
        raise ValueError(f"accel must be a finite number >= 1, got {accel!r}")
    if mask == "uniform1d":
        return uniform1d_mask(shape, accel, acs=acs, seed=seed)
    if mask == "gaussian1d":
        return gaussian1d_mask(shape, accel, acs=acs, seed=seed)
    return poisson2d_mask(shape, accel, seed=seed)


def _load_mri(input, slices):
    """``(data, index)``: the selected slices of a fastMRI-style file and their numbers in the file."""
    slices = parse_slices(slices)
    data = read_kspace(input, slices=slices)
    n_total = num_slices(input, "kspace") or data.num_slices
    return data, slice_indices(slices, n_total)


def _undersample(input, data, mask, accel, acs, seed):
    """``(kspace, mask, label)``: the file's sampling, or a mask drawn on a fully sampled file."""
    if mask is None:
        return data.kspace, data.sampling_mask(), "file" if data.mask is not None else "file (nonzero k-space)"
    if data.mask is not None and acceleration(data.sampling_mask()) > 1.0:
        raise ValueError(f"mask={mask!r} undersamples a fully sampled file, but {input} is already "
                         f"undersampled (its mask has acceleration {acceleration(data.sampling_mask()):.2f}); "
                         "drop --mask/--accel")
    m = _draw_mask(mask, accel, data.kspace.shape[-2:], seed, acs)
    return data.kspace * (m if m.ndim == 2 else m[None, :]), m, mask


def _coil_maps(data, kspace, mask, calib_width, progress):
    """``(maps (S, C, ky, kx), source)`` from the file or ESPIRiT on the ACS region."""
    if data.sensitivity_maps is not None:
        return data.sensitivity_maps, "file"
    S, C, ky, _ = kspace.shape
    if C == 1:
        return np.ones_like(kspace), "single-coil (ones)"
    acs = acs_width(mask) if mask.ndim == 2 else min(acs_width(mask), ky)
    width = min(24, acs) if calib_width is None else calib_width
    if not isinstance(width, numbers.Integral) or width < _ESPIRIT_MIN or width > acs:
        raise ValueError(
            f"the mask's fully sampled centre is {acs} lines wide; ESPIRiT needs a calib_width of at least "
            f"{_ESPIRIT_MIN} and at most the centre's width (got {width}), so this method, which needs coil "
            "maps, cannot run: store sensitivity_maps in the file or use a mask with a wider centre (acs); "
            "--method zero-filled needs no coil maps")
    width = int(width)
    kernel = min(6, width // 2)  # sigpy's default 6 fails on narrow calibration regions
    maps = [espirit_maps(kspace[i], calib_width=width, kernel_width=kernel)
            for i in tqdm(range(S), disable=not progress, desc="ESPIRiT", unit="slice", dynamic_ncols=True)]
    return np.stack(maps).astype(kspace.dtype, copy=False), f"espirit (calib_width={width}, kernel_width={kernel})"


def _checked_maps(input, data, kspace, mask, index, calib_width, progress):
    """The file's or ESPIRiT's coil maps and their label; bad maps in the file are a ``FormatError``.

    Maps that leave part of the object uncovered (see :func:`map_coverage`)
    give a warning: every method would lose the signal there.
    """
    maps, label = _coil_maps(data, kspace, mask, calib_width, progress)
    if label == "file":
        try:
            check_maps(maps, "sensitivity_maps", index,
                       "store maps that are nonzero inside the field of view, or leave them out for ESPIRiT")
        except ValueError as e:
            raise FormatError(str(e).removeprefix("sensitivity_maps: "), path=input,
                              key="sensitivity_maps") from None
    else:
        check_maps(maps, f"{input}: {label}", index, "is the slice's k-space empty? store sensitivity_maps")
    if kspace.shape[1] > 1:
        cover = map_coverage(maps, kspace, mask)
        poor = [int(index[i]) if index is not None else i for i in np.flatnonzero(cover < _MIN_COVERAGE)]
        if poor:
            warnings.warn(f"{input}: the coil maps ({label}) cover only {100 * float(cover.min()):.0f}% of the "
                          f"signal in slice(s) {', '.join(map(str, poor[:8]))}: every method loses the image "
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


def _rss_zero_filled(kspace, mask, progress):
    """``(magnitudes (S, ky, kx) float32, seconds)``: root-sum-of-squares of the zero-filled coil images.

    ``sqrt(sum_c |ifft2c(M y_c)|^2)``: fastMRI's zero-filled baseline, which
    needs no coil maps.  With maps normalised to ``sum_c |S_c|^2 = 1`` it
    has the scale of the SENSE-combined ``|A^H y|``.
    """
    t0 = time.perf_counter()
    w = np.asarray(mask).astype(np.float32 if kspace.dtype == np.complex64 else np.float64)
    images = np.stack([
        _float32_images(rss(ifft2c(kspace[i] * w)), "zero-filled")
        for i in tqdm(range(kspace.shape[0]), disable=not progress, desc="zero-filled", unit="slice",
                      dynamic_ncols=True)])
    return images, time.perf_counter() - t0


def _chunks(n, batch):
    if not isinstance(batch, numbers.Integral) or isinstance(batch, bool) or batch < 1:
        raise ValueError(f"batch must be a positive integer, got {batch!r}")
    return [(i, min(i + int(batch), n)) for i in range(0, n, int(batch))]


def _mri_slices(rec, kspace, maps, mask, dev, *, seed, scale, batch, progress):
    """``(magnitudes (S, ky, kx) float32, seconds, scale)``: the method on chunks of ``batch`` slices."""
    S, _, ky, kx = kspace.shape
    mask_f = mask.astype(np.float32)
    if scale is None and rec.scaled:
        scale = image_scale(SenseOperator(maps, mask_f).to(dev), kspace) / rec.peak
    chunks = _chunks(S, batch)
    images = np.zeros((S, ky, kx), dtype=np.float32)
    seconds = 0.0
    inner = progress and len(chunks) == 1
    for a, b in tqdm(chunks, disable=not progress or len(chunks) == 1, desc=f"{rec.name}", unit="chunk",
                     dynamic_ncols=True):
        A = SenseOperator(maps[a] if b - a == 1 else maps[a:b], mask_f).to(dev)
        y = kspace[a] if b - a == 1 else kspace[a:b]
        x, sec = run_reconstruction(rec, A, y, seed=seed + a, scale=scale, progress=inner)
        images[a:b] = _float32_images(np.abs(x), rec.name).reshape(b - a, ky, kx)
        seconds += sec
    return images, seconds, scale


def reconstruct_mri(input, out, method: str = "dds", *, mask=None, accel=None, acs: float = 0.08, seed: int = 0,
                    slices=None, device=None, scale=None, calib_width=None, batch: int = 1, crop="auto",
                    progress: bool = True, previews: bool = True, **options) -> dict:
    """Reconstruct a fastMRI-style multi-coil file; write the submission layout and a preview.

    Parameters
    ----------
    input : path
        fastMRI layout (:func:`krylearn.datasets.fastmri.read_kspace`):
        ``kspace`` (slices, coils, ky, kx), optional ``mask``,
        ``sensitivity_maps``, ``reconstruction_rss``.
    out : path
        Output HDF5: ``reconstruction`` (slices, ny, nx) float32 magnitude,
        attributes ``method``, ``seed``, ``acceleration``,
        ``seconds_per_slice``, ``maps``, ``mask``, ``scale``, the method's
        own (``nfe``, ``prior``, ``gamma``, ``cg_steps``, ``eta`` for dds)
        and ``options`` (the other options given).
    method : str
        ``dds``, ``dps``, ``cg-sense``, ``zero-filled``, ``l1-wavelet``, ``tv``.
        Without ``sensitivity_maps`` in the file, ``zero-filled`` is the RSS
        of the zero-filled coil images (no ESPIRiT, any centre width).
    mask : {"uniform1d", "gaussian1d", "poisson2d"}, optional
        Undersample a fully sampled file retrospectively (drawn with
        ``seed``; the realised acceleration is reported).  Default: the
        file's own sampling (its ``mask``, else where k-space is nonzero).
    accel : float, optional
        Acceleration for ``mask`` (``accel`` alone implies ``uniform1d``).
    acs : float
        Fully sampled centre fraction of drawn 1D masks (default 8%).
    seed : int
        Seeds the mask and the samplers (chunk starting at slice ``i`` of
        the selection uses ``seed + i``).
    slices : int, slice, list or str, optional
        Slices to reconstruct (``"3:9"``, ``"1,4,7"``).
    device : str, optional
        Default CUDA when available.
    scale : float, optional
        Image peak magnitude (estimated when None; see the module notes).
    calib_width : int, optional
        ESPIRiT calibration width (default ``min(24, ACS width)``).
    batch : int
        Slices per method call (a 4-D SENSE operator; CG scalars are then
        shared by the slices of a call).  Default 1: each slice on its own.
    crop : "auto", None or (ny, nx)
        Centre-crop the output; ``"auto"`` crops to the shape of the file's
        ``reconstruction_rss`` (fastMRI crops to e.g. 320 x 320), else its header's ``reconSpace``.
    progress, previews : bool
    **options
        The method's options (see :func:`run_method`), e.g. ``lam``,
        ``iters``; for dds ``prior`` (default ``"dds-mri"``), ``nfe``,
        ``gamma``, ``cg_steps``, ``eta``.

    Returns
    -------
    dict with ``output``, ``previews``, ``method``, ``shape``, ``acceleration``,
    ``seconds_per_slice``, ``scale``, ``maps`` (where they came from) and, when the file has
    ``reconstruction_rss`` of the output's shape, ``psnr`` against it.
    """
    seed = check_seed(seed)
    mask = _mask_name(mask, accel)
    dev = pick_device(device)
    rec = setup(method, "mri", dev, **options)
    data, index = _load_mri(input, slices)
    kspace, m, mask_label = _undersample(input, data, mask, accel, acs, seed)
    if data.sensitivity_maps is None and type(rec) is ZeroFilled:
        # zero-filled needs no coil maps (and no ESPIRiT, which may not run on a narrow centre)
        images, seconds = _rss_zero_filled(kspace, m, progress)
        maps_label = _RSS_LABEL
    else:
        maps, maps_label = _checked_maps(input, data, kspace, m, index, calib_width, progress)
        images, seconds, scale = _mri_slices(rec, kspace, maps, m, dev, seed=seed, scale=scale, batch=batch,
                                             progress=progress)
    if crop == "auto":
        crop = data.reconstruction_rss.shape[-2:] if data.reconstruction_rss is not None else data.recon_shape
    if crop is not None:
        images = np.ascontiguousarray(center_crop(images, tuple(int(c) for c in crop)))
    run = {"method": method, "seed": seed, "acceleration": float(acceleration(m)), "mask": mask_label,
           "seconds_per_slice": seconds / images.shape[0], "maps": maps_label,
           "scale": None if scale is None else float(scale)}
    return _write_mri(out, input, images, index, data.reconstruction_rss, run, rec, previews)


def _write_mri(out, input, images, index, rss, run: dict, rec, previews: bool) -> dict:
    """Write the submission layout (``run``, the method's record, PSNR against ``rss``) and a preview; the summary."""
    psnr = psnr_against(images, rss)
    attrs = {**run, "slices": index.astype(np.int64), "input": os.path.basename(os.fspath(input)),
             "psnr_vs_reconstruction_rss": psnr, **_record(rec)}
    write_reconstruction(out, images, attrs=_versioned(attrs))
    title = f"{run['method']} (R = {run['acceleration']:.2f})"
    shots = write_previews(out, images, index, title) if previews else []
    return {"output": os.fspath(out), "previews": shots, "method": run["method"], "shape": images.shape,
            "acceleration": run["acceleration"], "seconds_per_slice": run["seconds_per_slice"],
            "scale": run["scale"], "psnr": psnr, "maps": run["maps"]}


def _versioned(attrs: dict) -> dict:
    return {**attrs, "krylearn_version": __version__}


# ------------------------------------------------------------------ CT
def reconstruct_ct(input, out, method: str = "dds", *, seed: int = 0, slices=None, device=None, scale=None,
                   progress: bool = True, previews: bool = True, **options) -> dict:
    """Reconstruct a ``krylearn.ct`` sinogram file; write ``reconstruction`` and a preview.

    Parameters
    ----------
    input : path
        :func:`krylearn.datasets.fastmri.read_ct` layout: ``sinogram``
        (slices, views, det), ``angles``, geometry attributes, optional
        ``reference``.
    out : path
        Output HDF5: ``reconstruction`` (slices, ny, nx) float32 (real
        attenuation values, not a magnitude), attributes as
        :func:`reconstruct_mri` (``views`` instead of the sampling; dds also
        records ``volume``).
    method : str
        ``dds`` (on more than one slice the 3D sampler: 2D prior per slice,
        ADMM-TV along z, unless ``volume=False``), ``dps``, ``fbp``,
        ``admm-tv`` (3D TV for a volume; option ``tv="2d"`` for per-slice),
        ``cg`` (least squares by CG on the normal equations; ``iters`` is
        the regulariser).
    seed, slices, device, scale, progress, previews
        As :func:`reconstruct_mri`.
    **options
        The method's options (see :func:`run_method`), e.g. ``lam``,
        ``rho``, ``iters``, ``filter``; for dds ``prior`` (default
        ``"dds-ct"``), ``nfe``, ``cg_steps``, ``eta``, ``volume`` and
        ``gamma`` (only with ``volume=False``).

    Returns
    -------
    dict with ``output``, ``previews``, ``method``, ``shape``, ``views``,
    ``seconds_per_slice``, ``scale`` and, when the file has a
    ``reference``, ``psnr`` against it (data range: its maximum).
    """
    seed = check_seed(seed)
    dev = pick_device(device)
    rec = setup(method, "ct", dev, **options)
    slices = parse_slices(slices)
    data = read_ct(input, slices=slices)
    index = slice_indices(slices, num_slices(input, "sinogram") or data.sinogram.shape[0])
    S, views, det = data.sinogram.shape
    dtype = torch.float32 if dev.type == "cuda" else torch.float64
    P = ParallelBeamProjector(data.image_shape, data.angles, n_det=det, det_spacing=data.det_spacing,
                              dtype=dtype, device=dev)
    if scale is None and rec.scaled:
        scale = image_scale(P, data.sinogram) / rec.peak
    x, seconds = run_reconstruction(rec, P, data.sinogram, seed=seed, scale=scale, progress=progress)
    images = _float32_images(x, method).reshape(S, *data.image_shape)
    psnr = psnr_against(images, None if data.reference is None else np.asarray(data.reference, dtype=np.float32))
    attrs = {
        "method": method, "seed": seed, "views": int(views), "seconds_per_slice": seconds / S,
        "scale": None if scale is None else float(scale), "slices": index.astype(np.int64),
        "input": os.path.basename(os.fspath(input)), "psnr_vs_reference": psnr, **_record(rec),
    }
    write_reconstruction(out, images, attrs=_versioned(attrs))
    shots = write_previews(out, images, index, f"{method} ({views} views)", data.reference) if previews else []
    return {"output": os.fspath(out), "previews": shots, "method": method, "shape": images.shape,
            "views": int(views), "seconds_per_slice": seconds / S, "scale": attrs["scale"], "psnr": psnr}
