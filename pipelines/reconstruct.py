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

import json
import math
import numbers
import os
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from ..datasets.fastmri import read_ct, read_kspace, write_reconstruction
from ..operators.base import Operator
from ..operators.ct import ParallelBeamProjector
from ..operators.mri import (
    SenseOperator,
    acceleration,
    gaussian1d_mask,
    ifft2c,
    poisson2d_mask,
    rss,
    uniform1d_mask,
)
from ..solvers.imaging import image_scale
from ..solvers.learned import pick_device
from ..solvers.reconstructors import Reconstructor, ZeroFilled, check_kind, check_seed, method_class, setup
from ..utils.version import __version__
from .coil_maps import _checked_maps, acs_width, check_maps
from .parameter_choice import choose_options
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


def run_method(kind: str, method: str, A, y, *, seed: int = 0, scale=None, progress: bool = False,
               auto: bool = False, folds: int = 3, **options):
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
    auto : bool
        Choose the method's options for this scan first
        (:func:`~krylearn.pipelines.parameter_choice.choose_options`,
        ``folds`` hold-outs); ``options`` given stay fixed.  The seconds
        include the choice.
    folds : int
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
    if not auto:
        return run_reconstruction(rec, A, y, seed=seed, scale=scale, progress=progress)
    t0 = time.perf_counter()
    y = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    rec = choose_options(rec, A, y, folds=folds, seed=seed, scale=scale, progress=progress).reconstructor
    x, _ = run_reconstruction(rec, A, y, seed=seed, scale=scale, progress=progress)
    return x, time.perf_counter() - t0


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


def _auto(rec, A, y, *, auto, folds, seed, scale, progress, choices: list, label):
    """``rec``, or with ``auto``: ``rec`` with the options :func:`choose_options` picks for this scan (noted in
    ``choices``)."""
    if not auto:
        return rec
    ch = choose_options(rec, A, y, folds=folds, seed=seed, scale=scale, progress=progress)
    choices.append({"slices": label, **ch.record()})
    return ch.reconstructor


def _mri_slices(rec, kspace, maps, mask, dev, *, seed, scale, batch, progress, auto=False, folds=3, choices=None):
    """``(magnitudes (S, ky, kx) float32, seconds, scale)``: the method on chunks of ``batch`` slices.

    With ``auto``, each chunk's options are chosen first (:func:`choose_options`; its time is counted),
    and ``choices`` gets one record per chunk.
    """
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
        t0 = time.perf_counter()
        chosen = _auto(rec, A, y, auto=auto, folds=folds, seed=seed + a, scale=scale, progress=inner,
                       choices=choices, label=f"{a}:{b}")
        x, sec = run_reconstruction(chosen, A, y, seed=seed + a, scale=scale, progress=inner)
        if auto:
            sec = time.perf_counter() - t0
        images[a:b] = _float32_images(np.abs(x), rec.name).reshape(b - a, ky, kx)
        seconds += sec
    return images, seconds, scale


def _mri_images(rec, input, data, kspace, m, index, dev, *, calib_width, seed, scale, batch, progress, auto, folds):
    """``(images, seconds, scale, where the maps came from, auto choices or None)`` of the file's slices."""
    choices = [] if auto else None
    if data.sensitivity_maps is None and type(rec) is ZeroFilled:
        # zero-filled needs no coil maps (and no ESPIRiT, which may not run on a narrow centre)
        images, seconds = _rss_zero_filled(kspace, m, progress)
        return images, seconds, scale, _RSS_LABEL, choices
    maps, maps_label = _checked_maps(input, data, kspace, m, index, calib_width, progress)
    images, seconds, scale = _mri_slices(rec, kspace, maps, m, dev, seed=seed, scale=scale, batch=batch,
                                         progress=progress, auto=auto, folds=folds, choices=choices)
    return images, seconds, scale, maps_label, choices


def reconstruct_mri(input, out, method: str = "dds", *, mask=None, accel=None, acs: float = 0.08, seed: int = 0,
                    slices=None, device=None, scale=None, calib_width=None, batch: int = 1, crop="auto",
                    progress: bool = True, previews: bool = True, auto: bool = False, folds: int = 3,
                    **options) -> dict:
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
        Centre width for the coil maps (default ``min(24, ACS)``): ESPIRiT from 6 lines, joint maps from 2.
    batch : int
        Slices per method call (a 4-D SENSE operator; CG scalars are then
        shared by the slices of a call).  Default 1: each slice on its own.
    crop : "auto", None or (ny, nx)
        Centre-crop the output; ``"auto"`` crops to the shape of the file's
        ``reconstruction_rss`` (fastMRI crops to e.g. 320 x 320), else its header's ``reconSpace``.
    progress, previews : bool
    auto, folds : bool, int
        Choose the method's options per chunk of slices by cross-validation on ``folds`` held-out
        sets of k-space lines (:func:`~krylearn.pipelines.parameter_choice.choose_options`); given
        options stay fixed.  The choices go to the output's ``auto`` attribute (JSON); seconds include them.
    **options
        The method's options (see :func:`run_method`), e.g. ``lam``,
        ``iters``; for dds ``prior`` (default ``"dds-mri"``), ``nfe``,
        ``gamma``, ``cg_steps``, ``eta``, ``start``, ``init``.

    Returns
    -------
    dict with ``output``, ``previews``, ``method``, ``shape``, ``acceleration``, ``seconds_per_slice``,
    ``scale``, ``maps`` (where they came from), ``auto`` (the choices, or None) and, when the file
    has ``reconstruction_rss`` of the output's shape, ``psnr`` against it.
    """
    seed = check_seed(seed)
    mask = _mask_name(mask, accel)
    dev = pick_device(device)
    rec = setup(method, "mri", dev, **options)
    data, index = _load_mri(input, slices)
    kspace, m, mask_label = _undersample(input, data, mask, accel, acs, seed)
    images, seconds, scale, maps_label, choices = _mri_images(
        rec, input, data, kspace, m, index, dev, calib_width=calib_width, seed=seed, scale=scale, batch=batch,
        progress=progress, auto=auto, folds=folds)
    if crop == "auto":
        crop = data.reconstruction_rss.shape[-2:] if data.reconstruction_rss is not None else data.recon_shape
    if crop is not None:
        images = np.ascontiguousarray(center_crop(images, tuple(int(c) for c in crop)))
    run = {"method": method, "seed": seed, "acceleration": float(acceleration(m)), "mask": mask_label,
           "seconds_per_slice": seconds / images.shape[0], "maps": maps_label,
           "scale": None if scale is None else float(scale), "auto": choices}
    return _write_mri(out, input, images, index, data.reconstruction_rss, run, rec, previews)


def _write_mri(out, input, images, index, rss, run: dict, rec, previews: bool) -> dict:
    """Write the submission layout (``run``, the method's record, PSNR against ``rss``) and a preview; the summary."""
    psnr = psnr_against(images, rss)
    attrs = {**run, "auto": None if run["auto"] is None else json.dumps(run["auto"]), "slices": index.astype(np.int64),
             "input": os.path.basename(os.fspath(input)),
             "psnr_vs_reconstruction_rss": psnr, **_record(rec)}
    write_reconstruction(out, images, attrs=_versioned(attrs))
    title = f"{run['method']} (R = {run['acceleration']:.2f})"
    shots = write_previews(out, images, index, title) if previews else []
    return {"output": os.fspath(out), "previews": shots, "method": run["method"], "shape": images.shape,
            "acceleration": run["acceleration"], "seconds_per_slice": run["seconds_per_slice"],
            "scale": run["scale"], "psnr": psnr, "maps": run["maps"], "auto": run["auto"]}


def _versioned(attrs: dict) -> dict:
    return {**attrs, "krylearn_version": __version__}


# ------------------------------------------------------------------ CT
def reconstruct_ct(input, out, method: str = "dds", *, seed: int = 0, slices=None, device=None, scale=None,
                   progress: bool = True, previews: bool = True, auto: bool = False, folds: int = 3,
                   **options) -> dict:
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
    seed, slices, device, scale, progress, previews, folds
        As :func:`reconstruct_mri`.
    auto : bool
        As :func:`reconstruct_mri`, once for the whole selection, holding
        out whole views.
    **options
        The method's options (see :func:`run_method`), e.g. ``lam``,
        ``rho``, ``iters``, ``filter``; for dds ``prior`` (default
        ``"dds-ct"``), ``nfe``, ``cg_steps``, ``eta``, ``volume`` and
        ``gamma`` (only with ``volume=False``).

    Returns
    -------
    dict with ``output``, ``previews``, ``method``, ``shape``, ``views``,
    ``seconds_per_slice``, ``scale``, ``auto`` and, when the file has a
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
    choices = [] if auto else None
    t0 = time.perf_counter()
    chosen = _auto(rec, P, data.sinogram, auto=auto, folds=folds, seed=seed, scale=scale, progress=progress,
                   choices=choices, label=f"0:{S}")
    x, seconds = run_reconstruction(chosen, P, data.sinogram, seed=seed, scale=scale, progress=progress)
    seconds = time.perf_counter() - t0 if auto else seconds
    rec = chosen
    images = _float32_images(x, method).reshape(S, *data.image_shape)
    psnr = psnr_against(images, None if data.reference is None else np.asarray(data.reference, dtype=np.float32))
    attrs = {
        "method": method, "seed": seed, "views": int(views), "seconds_per_slice": seconds / S,
        "scale": None if scale is None else float(scale), "slices": index.astype(np.int64),
        "input": os.path.basename(os.fspath(input)), "psnr_vs_reference": psnr, **_record(rec),
        "auto": None if choices is None else json.dumps(choices),
    }
    write_reconstruction(out, images, attrs=_versioned(attrs))
    shots = write_previews(out, images, index, f"{method} ({views} views)", data.reference) if previews else []
    return {"output": os.fspath(out), "previews": shots, "method": method, "shape": images.shape,
            "views": int(views), "seconds_per_slice": seconds / S, "scale": attrs["scale"], "psnr": psnr,
            "auto": choices}
