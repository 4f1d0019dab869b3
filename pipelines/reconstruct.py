"""``krylearn reconstruct mri|ct``: DDS and the classical baselines on MRI/CT files.

Three layers:

* :func:`run_method` -- one method on an operator ``A`` and data ``y`` (what
  the CLI and the benchmarks share): ``(images, seconds)``.
* :func:`reconstruct_mri` -- a fastMRI-style k-space file in, the fastMRI
  submission layout (``reconstruction`` (slices, ny, nx) float32 magnitude)
  and PNG previews out.
* :func:`reconstruct_ct` -- a ``krylearn.ct`` sinogram file in, the same
  layout (real attenuation values, not a magnitude) and previews out.

Scaling
-------
The diffusion priors and the regularisation weights of the classical
methods assume images whose robust peak magnitude is about 1 (the brain data
are divided by the 99.9th percentile of the nonzero voxels).  Unless a
``scale`` is given, :func:`run_method` estimates the image's peak with
:func:`krylearn.solvers.imaging.image_scale` (10 CG iterations on the normal
equations, 99.9th percentile of the foreground), divides the data by it,
reconstructs and multiplies back; a prior whose card has
``normalization = {"peak": p}`` is matched to ``p`` instead of 1.  Linear
methods (zero-filled, CG-SENSE / CG without ``lam``, FBP) are
scale-equivariant and skip it.
"""

from __future__ import annotations
from ..utils.version import __version__

import math
import numbers
import os
import time
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "CT_METHODS",
    "DEFAULT_NFE",
    "MASKS",
    "MRI_METHODS",
    "acs_width",
    "parse_slices",
    "reconstruct_ct",
    "reconstruct_mri",
    "resolve_prior",
    "run_method",
]

MRI_METHODS = ("dds", "dps", "cg-sense", "zero-filled", "l1-wavelet", "tv")
CT_METHODS = ("dds", "dps", "fbp", "admm-tv", "cg")
#: Retrospective undersampling patterns for ``reconstruct_mri(mask=...)``.
MASKS = ("uniform1d", "gaussian1d", "poisson2d")
#: Network calls when ``nfe`` is None.
DEFAULT_NFE = {"dds": 49, "dps": 1000}
#: Default prior names per kind.
DEFAULT_PRIOR = {"mri": "dds-mri", "ct": "dds-ct"}

# keyword options each method takes (anything else is a TypeError naming it)
_OPTIONS = {
    "zero-filled": (),
    "cg-sense": ("iters", "rtol", "lam"),
    "cg": ("iters", "rtol", "lam"),
    "l1-wavelet": ("lam", "iters", "wave_name"),
    "tv": ("lam", "iters", "sigma"),
    "fbp": ("filter",),
    "admm-tv": ("lam", "rho", "iters", "cg_steps", "tv"),
    "dds": ("gamma", "cg_steps", "eta", "net_batch", "volume", "lam", "rho"),
    "dps": ("zeta", "eta", "net_batch"),
}
_SCALED = ("l1-wavelet", "tv", "admm-tv", "dds", "dps")
_ESPIRIT_MIN = 6


# ------------------------------------------------------------------ helpers
def _check_kind(kind):
    if kind not in ("mri", "ct"):
        raise ValueError(f"kind must be 'mri' or 'ct', got {kind!r}")
    return kind


def _check_method(kind, method):
    methods = MRI_METHODS if kind == "mri" else CT_METHODS
    if method not in methods:
        raise ValueError(f"method must be one of {', '.join(methods)} for {kind}, got {method!r}")
    return method


def _check_nfe(method, nfe):
    if method not in DEFAULT_NFE:
        return None
    if nfe is None:
        return DEFAULT_NFE[method]
    if not isinstance(nfe, numbers.Integral) or isinstance(nfe, bool) or nfe < 1:
        raise ValueError(f"nfe must be a positive integer, got {nfe!r}")
    return int(nfe)


def _check_seed(seed):
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _prior_channels(den):
    ch = getattr(den, "in_channels", None)
    if ch is None and isinstance(getattr(den, "config", None), dict):
        ch = den.config.get("in_channels")
    return ch


def _prior_peak(card) -> float:
    norm = card.get("normalization") if isinstance(card, dict) else None
    if isinstance(norm, dict):
        for key in ("peak", "max"):
            v = norm.get(key)
            if isinstance(v, numbers.Real) and math.isfinite(v) and v > 0:
                return float(v)
    return 1.0


def resolve_prior(prior, kind: str, device="cpu"):
    """The denoiser for ``prior``: ``(denoiser, card, label)``.

    Parameters
    ----------
    prior : str, path, or callable
        A shipped prior name (``"dds-mri"``, ``"dds-ct"``), the path of
        weights written by :func:`krylearn.solvers.dds.save_prior`, or a
        denoiser object (a :class:`~krylearn.solvers.dds.UNet`, a
        :class:`~krylearn.solvers.dds.GaussianDenoiser`, ...).
    kind : {"mri", "ct"}
        Checks the channels: 2 (real, imaginary) for MRI, 1 for CT.

    Raises
    ------
    ValueError
        Unknown prior (the message says how to train one) or wrong channels.
    """
    from ..solvers.dds import available_priors, load_prior

    _check_kind(kind)
    if prior is None:
        raise ValueError(f"prior is required for the diffusion methods; pass --prior NAME|PATH "
                         f"(shipped: {', '.join(available_priors()) or 'none'})")
    if isinstance(prior, (str, os.PathLike)):
        try:
            den, card = load_prior(prior, device=device, return_card=True)
        except ValueError:
            shipped = ", ".join(available_priors()) or "none"
            raise ValueError(
                f"prior {str(prior)!r} is neither a shipped prior (shipped: {shipped}) nor a weights file; "
                f"train one with `krylearn train diffusion --kind {kind} ...` and pass --prior PATH") from None
        label = str(prior)
    elif callable(prior):
        den, card, label = prior, dict(getattr(prior, "card", None) or {}), type(prior).__name__
    else:
        raise TypeError(f"prior must be a name, a path or a denoiser, got {type(prior).__name__}")
    want = 2 if kind == "mri" else 1
    ch = _prior_channels(den)
    if ch is not None and ch != want:
        raise ValueError(f"prior {label!r} takes {ch} channel(s); {kind} needs {want} "
                         f"({'real, imaginary' if kind == 'mri' else 'one real channel'})")
    return den, card, label


def _sense_parts(A, y):
    """Per-slice ``(kspace (B, C, ny, nx), maps (B, C, ny, nx), mask)`` of a SENSE problem for sigpy."""
    from ..operators.mri import SenseOperator

    if not isinstance(A, SenseOperator):
        raise TypeError(f"A must be a SenseOperator for l1-wavelet/tv, got {type(A).__name__}")
    yk = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    maps = A.maps.detach().cpu().numpy()  # (S, C, ny, nx)
    mask = A.mask_input.detach().cpu().numpy()
    S = maps.shape[0]
    k = yk.reshape((-1,) + maps.shape[1:])  # (B * S, C, ny, nx)
    reps = k.shape[0] // S
    maps = np.tile(maps, (reps, 1, 1, 1)) if reps > 1 else maps
    if mask.ndim == 3:
        mask = np.tile(mask, (reps, 1, 1))
    return k, maps, mask


# ------------------------------------------------------------------ one method
def run_method(kind: str, method: str, A, y, *, prior=None, nfe=None, seed: int = 0, scale=None,
               progress: bool = False, **opts):
    """Reconstruct images from ``y = A x (+ noise)`` with one method.

    Parameters
    ----------
    kind : {"mri", "ct"}
    method : str
        MRI: ``dds``, ``dps``, ``cg-sense``, ``zero-filled``, ``l1-wavelet``,
        ``tv``.  CT: ``dds``, ``dps``, ``fbp``, ``admm-tv``, ``cg``.
    A : Operator
        MRI: a :class:`~krylearn.operators.mri.SenseOperator` (3-D maps: a
        batch of slices sharing maps and mask; 4-D maps: a volume).
        CT: a :class:`~krylearn.operators.ct.ParallelBeamProjector` (FBP
        needs it; the others take any real operator on ``(ny, nx)``).
    y : numpy.ndarray or torch.Tensor, (*batch, *A.oshape)
        Data; for CT ``(slices, views, det)`` is a volume (z = slice axis:
        ``dds`` uses the 3D sampler with TV along z, ``admm-tv`` 3D TV).
    prior : name, path or denoiser
        For ``dds`` / ``dps`` (see :func:`resolve_prior`).
    nfe : int, optional
        Network calls (default 49 for ``dds``, 1000 for ``dps``).
    seed : int
        Seeds the samplers.
    scale : float, optional
        Image peak magnitude (see the module notes); estimated when None.
    progress : bool
    **opts
        Per method: ``cg-sense``/``cg``: ``iters``, ``rtol``, ``lam``;
        ``l1-wavelet``: ``lam``, ``iters``, ``wave_name``; ``tv``: ``lam``,
        ``iters``, ``sigma``; ``fbp``: ``filter``; ``admm-tv``: ``lam``,
        ``rho``, ``iters``, ``cg_steps``, ``tv``; ``dds``: ``gamma``,
        ``cg_steps``, ``eta``, ``net_batch`` and for CT volumes ``volume``
        (default True), ``lam``, ``rho`` (TV along z); ``dps``: ``zeta``,
        ``eta``, ``net_batch``.  Defaults are in
        :mod:`krylearn.solvers.imaging` and the samplers.

    Returns
    -------
    (images, seconds)
        ``images``: numpy ``(*batch, *A.ishape)``, complex for MRI, real for
        CT; ``seconds``: wall time of the whole call after loading the prior
        (scale estimate included), CUDA synchronised.  Divide by the number
        of slices for seconds per slice.
    """
    from ..operators.base import Operator
    from ..solvers import imaging

    _check_kind(kind)
    _check_method(kind, method)
    if not isinstance(A, Operator):
        raise TypeError(f"A must be a krylearn Operator, got {type(A).__name__}")
    if kind == "mri" and not A.dtype.is_complex:
        raise TypeError(f"A must be a complex (SENSE) operator for mri, got dtype {A.dtype}")
    if kind == "ct" and A.dtype.is_complex:
        raise TypeError(f"A must be a real operator for ct, got dtype {A.dtype}")
    unknown = sorted(set(opts) - set(_OPTIONS[method]))
    if unknown:
        raise TypeError(f"method {method!r} takes no option(s) {', '.join(unknown)}; "
                        f"it takes {', '.join(_OPTIONS[method]) or 'none'}")
    nfe = _check_nfe(method, nfe)
    seed = _check_seed(seed)
    if scale is not None and (not isinstance(scale, numbers.Real) or not math.isfinite(scale) or scale <= 0):
        raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    y = np.asarray(y)

    den, card = None, {}
    if method in ("dds", "dps"):
        den, card, _ = resolve_prior(prior, kind, A.device)

    _sync(A.device)
    t0 = time.perf_counter()
    needs_scale = method in _SCALED or (method in ("cg-sense", "cg") and opts.get("lam", 0))
    s = 1.0
    if needs_scale:
        s = float(scale) if scale is not None else imaging.image_scale(A, y) / _prior_peak(card)

    if method == "zero-filled":
        x = imaging.zero_filled(A, y)
    elif method in ("cg-sense", "cg"):
        x = imaging.cg_sense(A, y / s, **opts) * s
    elif method in ("l1-wavelet", "tv"):
        k, maps, mask = _sense_parts(A, y / s)
        fn = imaging.l1_wavelet if method == "l1-wavelet" else imaging.tv_mri
        x = fn(k, maps, mask, progress=progress, **opts).reshape(y.shape[: y.ndim - len(A.oshape)] + A.ishape) * s
    elif method == "fbp":
        from ..operators.ct import ParallelBeamProjector, fbp

        if not isinstance(A, ParallelBeamProjector):
            raise TypeError(f"fbp needs a ParallelBeamProjector A, got {type(A).__name__}")
        x = fbp(y, projector=A, **opts)
    elif method == "admm-tv":
        x = imaging.admm_tv_ct(A, y / s, progress=progress, **opts) * s
    elif method == "dds":
        x = _run_dds(kind, den, A, y, nfe, seed, s, progress, opts)
    else:  # dps
        from ..solvers.dds import dps_sample

        x = dps_sample(den, A, y, nfe=nfe, seed=seed, scale=s, progress=progress, **opts)
    x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    _sync(A.device)
    return x, time.perf_counter() - t0


def _run_dds(kind, den, A, y, nfe, seed, s, progress, opts):
    from ..solvers.dds import dds_sample, dds_sample_volume

    opts = dict(opts)
    volume = opts.pop("volume", True)
    gamma = opts.pop("gamma", None)
    tv = {k: opts.pop(k) for k in ("lam", "rho") if k in opts}
    batch = y.shape[: y.ndim - len(A.oshape)]
    if kind == "ct" and volume:
        if len(batch) == 1 and batch[0] > 1:
            if gamma is not None:
                raise ValueError("gamma is not used by the 3D CT sampler (it solves the noiseless ADMM form); "
                                 "pass volume=False for slice-by-slice DDS with gamma")
            return dds_sample_volume(den, A, y, nfe=nfe, seed=seed, scale=s, progress=progress, **tv, **opts)
        tv = {}  # a one-slice volume: TV along z is zero, lam / rho have nothing to act on
    if tv:
        raise TypeError(f"dds option(s) {', '.join(sorted(tv))} apply to 3D CT volumes only")
    return dds_sample(den, A, y, nfe=nfe, seed=seed, scale=s, progress=progress, gamma=gamma, **opts)


# ------------------------------------------------------------------ shared file helpers
def parse_slices(text):
    """``"5"`` -> 5, ``"3:9"`` -> slice(3, 9), ``"1,4,7"`` -> [1, 4, 7]; None and parsed values pass through."""
    if text is None or isinstance(text, (numbers.Integral, slice, list, tuple, np.ndarray)):
        return list(text) if isinstance(text, tuple) else text
    if not isinstance(text, str):
        raise TypeError(f"slices must be a string like '5', '3:9' or '1,4,7', got {type(text).__name__}")
    t = text.strip()
    try:
        if ":" in t:
            parts = [int(p) if p.strip() else None for p in t.split(":")]
            if len(parts) > 3:
                raise ValueError
            return slice(*parts)
        if "," in t:
            return [int(p) for p in t.split(",") if p.strip()]
        return int(t)
    except ValueError:
        raise ValueError(f"slices must look like '5', '3:9' or '1,4,7', got {text!r}") from None


def _slice_indices(slices, n):
    if slices is None:
        return np.arange(n)
    if isinstance(slices, numbers.Integral):
        return np.array([int(slices) % n])
    if isinstance(slices, slice):
        return np.arange(n)[slices]
    return np.mod(np.asarray(slices, dtype=np.int64), n)


def _num_slices(path, key):
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return f[key].shape[0] if key in f and hasattr(f[key], "shape") else None
    except OSError:
        return None


def _center_crop(x, shape):
    ny, nx = x.shape[-2:]
    cy, cx = shape
    if cy > ny or cx > nx:
        return x
    y0, x0 = (ny - cy) // 2, (nx - cx) // 2
    return x[..., y0:y0 + cy, x0:x0 + cx]


def _preview_path(out) -> Path:
    out = Path(out)
    return out.with_name(out.stem + "_preview.png")


def _write_previews(out, images, index, title, reference=None) -> list[str]:
    """One PNG beside ``out``: up to 4 evenly spaced slices (and the reference below, if any)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ..utils.atomic import atomic_path

    n = images.shape[0]
    pick = np.unique(np.linspace(0, n - 1, min(4, n)).round().astype(int))
    rows = 2 if reference is not None else 1
    fig = Figure(figsize=(3 * len(pick), 3.2 * rows + 0.4))
    FigureCanvasAgg(fig)
    lo = 0.0 if images.min() >= 0 else float(np.quantile(images, 0.001))
    hi = float(np.quantile(images, 0.999)) or 1.0
    for j, i in enumerate(pick):
        ax = fig.add_subplot(rows, len(pick), j + 1)
        ax.imshow(images[i], cmap="gray", vmin=lo, vmax=hi)
        ax.set_title(f"slice {int(index[i])}", fontsize=9)
        ax.axis("off")
        if reference is not None:
            ax = fig.add_subplot(rows, len(pick), len(pick) + j + 1)
            ax.imshow(reference[i], cmap="gray", vmin=lo, vmax=hi)
            ax.set_title("reference", fontsize=9)
            ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = _preview_path(out)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return [str(path)]


def _psnr(images, reference):
    from ..solvers.imaging import psnr

    if reference is None or reference.shape != images.shape:
        return None
    return psnr(images, reference)


def _chunks(n, batch):
    if not isinstance(batch, numbers.Integral) or isinstance(batch, bool) or batch < 1:
        raise ValueError(f"batch must be a positive integer, got {batch!r}")
    return [(i, min(i + int(batch), n)) for i in range(0, n, int(batch))]


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


def _draw_mask(mask, accel, shape, seed, acs):
    from ..operators.mri import gaussian1d_mask, poisson2d_mask, uniform1d_mask

    if mask not in MASKS:
        raise ValueError(f"mask must be one of {', '.join(MASKS)}, got {mask!r}")
    if accel is None:
        raise ValueError(f"mask={mask!r} needs accel (e.g. --accel 4)")
    if not isinstance(accel, numbers.Real) or not math.isfinite(accel) or accel < 1:
        raise ValueError(f"accel must be a finite number >= 1, got {accel!r}")
    if mask == "uniform1d":
        return uniform1d_mask(shape, accel, acs=acs, seed=seed)
    if mask == "gaussian1d":
        return gaussian1d_mask(shape, accel, acs=acs, seed=seed)
    return poisson2d_mask(shape, accel, seed=seed)


def _coil_maps(data, kspace, mask, calib_width, progress):
    """``(maps (S, C, ky, kx), source)`` from the file or ESPIRiT on the ACS region."""
    from tqdm.auto import tqdm

    from ..operators.mri import espirit_maps

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
            f"{_ESPIRIT_MIN} and at most the centre's width (got {width}): store sensitivity_maps in the "
            "file or use a mask with a wider centre (acs)")
    width = int(width)
    kernel = min(6, width // 2)  # sigpy's default 6 fails on narrow calibration regions
    maps = [espirit_maps(kspace[i], calib_width=width, kernel_width=kernel)
            for i in tqdm(range(S), disable=not progress, desc="ESPIRiT", unit="slice", dynamic_ncols=True)]
    return np.stack(maps).astype(kspace.dtype, copy=False), f"espirit (calib_width={width}, kernel_width={kernel})"


def reconstruct_mri(input, out, method: str = "dds", nfe=None, prior="dds-mri", mask=None, accel=None,
                    seed: int = 0, slices=None, gamma=None, cg_steps: int = 5, eta: float = 0.85, device=None,
                    progress: bool = True, previews: bool = True, *, acs: float = 0.08, scale=None,
                    calib_width=None, batch: int = 1, crop="auto", **opts) -> dict:
    """Reconstruct a fastMRI-style multi-coil file; write the submission layout and a preview.

    Parameters
    ----------
    input : path
        fastMRI layout (:func:`krylearn.datasets.fastmri.read_kspace`):
        ``kspace`` (slices, coils, ky, kx), optional ``mask``,
        ``sensitivity_maps``, ``reconstruction_rss``.
    out : path
        Output HDF5: ``reconstruction`` (slices, ny, nx) float32 magnitude,
        attributes ``method``, ``nfe``, ``seed``, ``acceleration``,
        ``seconds_per_slice``, ``prior``, ``maps``, ``mask``, ``scale``, ...
    method : {"dds", "dps", "cg-sense", "zero-filled", "l1-wavelet", "tv"}
    nfe : int, optional
        Network calls (49 for dds, 1000 for dps by default).
    prior : name or path
        Diffusion prior for dds/dps (2 channels).
    mask : {"uniform1d", "gaussian1d", "poisson2d"}, optional
        Undersample a fully sampled file retrospectively (drawn with
        ``seed``; the realised acceleration is reported).  Default: the
        file's own sampling (its ``mask``, else where k-space is nonzero).
    accel : float, optional
        Acceleration for ``mask`` (``accel`` alone implies ``uniform1d``).
    seed : int
        Seeds the mask and the samplers (chunk starting at slice ``i`` of
        the selection uses ``seed + i``).
    slices : int, slice, list or str, optional
        Slices to reconstruct (``"3:9"``, ``"1,4,7"``).
    gamma, cg_steps, eta
        DDS data-consistency weight (None: noiseless form), CG steps per
        step, noise fraction.
    device : str, optional
        Default CUDA when available.
    progress, previews : bool
    acs : float
        Fully sampled centre fraction of drawn 1D masks (default 8%).
    scale : float, optional
        Image peak magnitude (estimated when None; see the module notes).
    calib_width : int, optional
        ESPIRiT calibration width (default ``min(24, ACS width)``).
    batch : int
        Slices per sampler call (a 4-D SENSE operator; CG scalars are then
        shared by the slices of a call).  Default 1: each slice on its own.
    crop : "auto", None or (ny, nx)
        Centre-crop the output; ``"auto"`` crops to the shape of the file's
        ``reconstruction_rss`` (fastMRI crops to e.g. 320 x 320).
    **opts
        Method options (see :func:`run_method`), e.g. ``lam``, ``iters``.

    Returns
    -------
    dict with ``output``, ``previews``, ``method``, ``shape``, ``acceleration``,
    ``seconds_per_slice``, ``scale`` and, when the file has
    ``reconstruction_rss`` of the output's shape, ``psnr`` against it.
    """
    from tqdm.auto import tqdm

    from ..datasets.fastmri import read_kspace, write_reconstruction
    from ..operators.mri import SenseOperator, acceleration
    from ..solvers.learned import pick_device

    _check_method("mri", method)
    nfe = _check_nfe(method, nfe)
    seed = _check_seed(seed)
    if accel is not None and mask is None:
        mask = "uniform1d"
    if mask is not None and mask not in MASKS:
        raise ValueError(f"mask must be one of {', '.join(MASKS)}, got {mask!r}")
    dev = pick_device(device)
    slices = parse_slices(slices)
    data = read_kspace(input, slices=slices)
    n_total = _num_slices(input, "kspace") or data.num_slices
    index = _slice_indices(slices, n_total)
    kspace = data.kspace
    S, _, ky, kx = kspace.shape

    if mask is not None:
        if data.mask is not None and acceleration(data.sampling_mask()) > 1.0:
            raise ValueError(f"mask={mask!r} undersamples a fully sampled file, but {input} is already "
                             f"undersampled (its mask has acceleration {acceleration(data.sampling_mask()):.2f}); "
                             "drop --mask/--accel")
        m = _draw_mask(mask, accel, (ky, kx), seed, acs)
        kspace = kspace * (m if m.ndim == 2 else m[None, :])
        mask_label = mask
    else:
        m = data.sampling_mask()
        mask_label = "file" if data.mask is not None else "file (nonzero k-space)"
    realised = acceleration(m)

    if method in ("dds", "dps"):
        den, card, prior_label = resolve_prior(prior, "mri", dev)
    else:
        den, card, prior_label = None, {}, None
    maps, maps_label = _coil_maps(data, kspace, m, calib_width, progress)
    mask_f = m.astype(np.float32)
    method_opts = dict(opts)
    if method == "dds":
        method_opts.update(gamma=gamma, cg_steps=cg_steps, eta=eta)
        if gamma is None:
            method_opts.pop("gamma")

    if scale is None and (method in _SCALED or (method == "cg-sense" and opts.get("lam"))):
        from ..solvers.imaging import image_scale

        vol = SenseOperator(maps, mask_f).to(dev)
        scale = image_scale(vol, kspace) / _prior_peak(card)

    chunks = _chunks(S, batch)
    images = np.zeros((S, ky, kx), dtype=np.float32)
    seconds = 0.0
    inner = progress and len(chunks) == 1
    for a, b in tqdm(chunks, disable=not progress or len(chunks) == 1, desc=f"{method}", unit="chunk",
                     dynamic_ncols=True):
        A = SenseOperator(maps[a] if b - a == 1 else maps[a:b], mask_f).to(dev)
        y = kspace[a] if b - a == 1 else kspace[a:b]
        x, sec = run_method("mri", method, A, y, prior=den, nfe=nfe, seed=seed + a, scale=scale,
                            progress=inner, **method_opts)
        images[a:b] = np.abs(x).reshape(b - a, ky, kx)
        seconds += sec

    if crop == "auto":
        crop = data.reconstruction_rss.shape[-2:] if data.reconstruction_rss is not None else None
    if crop is not None:
        images = np.ascontiguousarray(_center_crop(images, tuple(int(c) for c in crop)))
    psnr = _psnr(images, data.reconstruction_rss)
    attrs = {
        "method": method, "nfe": nfe, "seed": seed, "acceleration": float(realised), "mask": mask_label,
        "seconds_per_slice": seconds / S, "prior": prior_label, "maps": maps_label,
        "scale": None if scale is None else float(scale), "gamma": gamma if method == "dds" else None,
        "cg_steps": cg_steps if method == "dds" else None, "eta": eta if method == "dds" else None,
        "slices": index.astype(np.int64), "input": os.path.basename(os.fspath(input)),
        "psnr_vs_reconstruction_rss": psnr, "krylearn_version": __version__,
        "options": ", ".join(f"{k}={v}" for k, v in sorted(opts.items())) or None,
    }
    write_reconstruction(out, images, attrs=attrs)
    shots = _write_previews(out, images, index, f"{method} (R = {realised:.2f})") if previews else []
    return {"output": os.fspath(out), "previews": shots, "method": method, "shape": images.shape,
            "acceleration": float(realised), "seconds_per_slice": seconds / S, "scale": attrs["scale"],
            "psnr": psnr, "maps": maps_label}




# ------------------------------------------------------------------ CT
def reconstruct_ct(input, out, method: str = "dds", nfe=None, prior="dds-ct", seed: int = 0, slices=None,
                   gamma=None, cg_steps: int = 5, eta: float = 0.85, device=None, progress: bool = True,
                   previews: bool = True, *, scale=None, volume: bool = True, **opts) -> dict:
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
        :func:`reconstruct_mri`.
    method : {"dds", "dps", "fbp", "admm-tv", "cg"}
        ``dds`` on more than one slice runs the 3D sampler (2D prior per
        slice, ADMM-TV along z) unless ``volume=False``; ``admm-tv`` uses 3D
        TV for a volume (option ``tv="2d"`` for per-slice); ``cg`` is least
        squares by CG on the normal equations (``iters`` is the regulariser).
    nfe, prior, seed, slices, gamma, cg_steps, eta, device, progress, previews, scale
        As :func:`reconstruct_mri` (``gamma`` only with ``volume=False``).
    **opts
        Method options (see :func:`run_method`), e.g. ``lam``, ``rho``,
        ``iters``, ``filter``.

    Returns
    -------
    dict with ``output``, ``previews``, ``method``, ``shape``, ``views``,
    ``seconds_per_slice``, ``scale`` and, when the file has a
    ``reference``, ``psnr`` against it (data range: its maximum).
    """
    from ..datasets.fastmri import read_ct, write_reconstruction
    from ..operators.ct import ParallelBeamProjector
    from ..solvers.learned import pick_device

    _check_method("ct", method)
    nfe = _check_nfe(method, nfe)
    seed = _check_seed(seed)
    dev = pick_device(device)
    slices = parse_slices(slices)
    data = read_ct(input, slices=slices)
    n_total = _num_slices(input, "sinogram") or data.sinogram.shape[0]
    index = _slice_indices(slices, n_total)
    S, views, det = data.sinogram.shape
    dtype = torch.float32 if dev.type == "cuda" else torch.float64
    P = ParallelBeamProjector(data.image_shape, data.angles, n_det=det, det_spacing=data.det_spacing,
                              dtype=dtype, device=dev)
    prior_label, den, card = None, None, {}
    if method in ("dds", "dps"):
        den, card, prior_label = resolve_prior(prior, "ct", dev)
        opts = dict(opts)
        if method == "dds":
            opts.update(cg_steps=cg_steps, eta=eta, volume=volume)
            if gamma is not None:
                opts["gamma"] = gamma
    if scale is None and (method in _SCALED or (method == "cg" and opts.get("lam"))):
        from ..solvers.imaging import image_scale

        scale = image_scale(P, data.sinogram) / _prior_peak(card)
    x, seconds = run_method("ct", method, P, data.sinogram, prior=den, nfe=nfe,
                            seed=seed, scale=scale, progress=progress, **opts)
    images = np.asarray(x, dtype=np.float32).reshape(S, *data.image_shape)
    psnr = _psnr(images, None if data.reference is None else np.asarray(data.reference, dtype=np.float32))
    attrs = {
        "method": method, "nfe": nfe, "seed": seed, "views": int(views), "seconds_per_slice": seconds / S,
        "prior": prior_label, "scale": None if scale is None else float(scale),
        "gamma": gamma if method == "dds" else None, "cg_steps": cg_steps if method == "dds" else None,
        "eta": eta if method == "dds" else None, "volume": bool(volume) if method == "dds" else None,
        "slices": index.astype(np.int64), "input": os.path.basename(os.fspath(input)),
        "psnr_vs_reference": psnr, "krylearn_version": __version__,
        "options": ", ".join(f"{k}={v}" for k, v in sorted(opts.items()) if k not in
                             ("cg_steps", "eta", "volume", "gamma")) or None,
    }
    write_reconstruction(out, images, attrs=attrs)
    shots = _write_previews(out, images, index, f"{method} ({views} views)", data.reference) if previews else []
    return {"output": os.fspath(out), "previews": shots, "method": method, "shape": images.shape,
            "views": int(views), "seconds_per_slice": seconds / S, "scale": attrs["scale"], "psnr": psnr}
