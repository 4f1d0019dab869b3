"""DDS and DPS as reconstruction methods (``krylearn reconstruct --method dds|dps``).

Declared in :mod:`.method` (``reconstructors={"dds": "reconstruct:DDS",
"dps": "reconstruct:DPS"}``) and found by
:func:`krylearn.solvers.reconstructors.setup`; each is a
:class:`~krylearn.solvers.reconstructors.Reconstructor` whose options are
a small dataclass (:class:`DDSOptions`, :class:`DPSOptions`).  Setting one up
loads its diffusion prior once (:func:`resolve_prior`); the data are then
normalised to the prior's image range (its card's ``normalization.peak``,
else 1).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import numbers
import os

from ...utils.errors import FormatError
from ..reconstructors import Options, Reconstructor, check_kind, method_names, option, setup
from .dds_sampler import dds_sample
from .dps import dps_sample
from .prior import available_priors, load_prior
from .volume import dds_sample_volume

__all__ = ["DDS", "DDSOptions", "DEFAULT_INIT", "DEFAULT_PRIOR", "DPS", "DPSOptions", "prior_peak", "resolve_prior"]

#: The shipped prior of each modality (the default of ``prior``).
DEFAULT_PRIOR = {"mri": "dds-mri", "ct": "dds-ct"}
#: The classical method a run with ``start < 1`` starts from, per modality (the default of ``init``).
DEFAULT_INIT = {"mri": "tv", "ct": "admm-tv"}
_PRIOR_HELP = "diffusion prior: a shipped name or a weights path (default dds-mri for mri, dds-ct for ct)"


def _channels(den):
    ch = getattr(den, "in_channels", None)
    if ch is None and isinstance(getattr(den, "config", None), dict):
        ch = den.config.get("in_channels")
    return ch


def prior_peak(card) -> float:
    """The image peak a prior was trained on: its card's ``normalization`` ``peak`` (or ``max``), else 1."""
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
    FormatError
        The weights file exists but is corrupt or of another kind (the
        message names the file and what does not match).
    """
    check_kind(kind)
    if prior is None:
        raise ValueError(f"prior is required for the diffusion methods; pass --prior NAME|PATH "
                         f"(shipped: {', '.join(available_priors()) or 'none'})")
    if isinstance(prior, (str, os.PathLike)):
        try:
            den, card = load_prior(prior, device=device, return_card=True)
        except FormatError:
            raise  # the file exists and names itself: a corrupt or mismatched prior is not a missing one
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
    ch = _channels(den)
    if ch is not None and ch != want:
        raise ValueError(f"prior {label!r} takes {ch} channel(s); {kind} needs {want} "
                         f"({'real, imaginary' if kind == 'mri' else 'one real channel'})")
    return den, card, label


def _check_nfe(nfe) -> None:
    if not isinstance(nfe, numbers.Integral) or isinstance(nfe, bool) or nfe < 1:
        raise ValueError(f"nfe must be a positive integer, got {nfe!r}")


@dataclasses.dataclass(frozen=True)
class DDSOptions(Options):
    """DDS's options (the sampler's defaults; see :func:`~krylearn.solvers.dds.dds_sample`).

    Attributes
    ----------
    prior : name, path or denoiser, optional
        Default: the shipped prior of the modality (:data:`DEFAULT_PRIOR`).
    nfe : int
        Network calls (49).
    gamma : float, optional
        Data weight of ``(I + gamma A^H A) x = x0 + gamma A^H y``; None: the
        noiseless form ``A^H A x = A^H y``.
    cg_steps : int
        CG steps per diffusion step (5).
    eta : float
        Fresh-noise fraction (0.85).
    net_batch : int, optional
        At most this many images per network call.
    volume : bool
        CT with several slices: the 3D sampler (TV along z) rather than
        independent slices.
    lam, rho : float, optional
        Weight and ADMM penalty of the TV along z (3D CT only; the 3D
        sampler's defaults).
    start : float
        Share of the diffusion to run (1: from pure noise, the paper's
        sampler).  Below 1 the sampler starts from the ``init``
        reconstruction noised to that level: the smaller, the less weight
        the prior gets (and the fewer network calls; ``nfe`` is then spread
        over the shorter chain).  0: the ``init`` image itself, no network
        call (the end of the scale, for per-scan choice).
    init : str, optional
        The classical method whose image ``start < 1`` starts from, run
        with its default options, or with options chosen per scan under
        ``--auto`` (:meth:`DDS.with_init`); default :data:`DEFAULT_INIT`:
        ``tv`` for MRI, ``admm-tv`` for CT.
    """

    prior: object = option(help=_PRIOR_HELP)
    nfe: int = option(49, "network calls (default 49)")
    gamma: float | None = option(help="data weight, (I + gamma A^H A) x = x0 + gamma A^H y (default: the noiseless "
                                      "form A^H A x = A^H y)")
    cg_steps: int = option(5, "CG steps per diffusion step (default 5)")
    eta: float = option(0.85, "fresh-noise fraction (default 0.85)")
    net_batch: int | None = option(help="at most this many images per network call (default: all)")
    volume: bool = option(True, "slices independently, without TV along z (default: one volume)", kinds=("ct",))
    lam: float | None = option(help="weight of the TV along z (default 0.04)", kinds=("ct",))
    rho: float | None = option(help="ADMM penalty of the TV along z (default 10)", kinds=("ct",))
    start: float = option(1.0, "share of the diffusion to run; below 1 it starts from the --init image noised "
                               "to that level, so the prior weighs less; 0: the --init image itself "
                               "(default 1: from pure noise)")
    init: str | None = option(help="classical method the sampler starts from when start < 1 "
                                   "(default tv for mri, admm-tv for ct)")

    def __post_init__(self):
        _check_nfe(self.nfe)
        if not isinstance(self.start, numbers.Real) or isinstance(self.start, bool) or not 0 <= self.start <= 1:
            raise ValueError(f"start must lie in [0, 1], got {self.start!r}")


@dataclasses.dataclass(frozen=True)
class DPSOptions(Options):
    """DPS's options (see :func:`~krylearn.solvers.dds.dps_sample`): ``prior``, ``nfe`` (1000),
    guidance ``zeta``, DDIM ``eta``, ``net_batch``."""

    prior: object = option(help=_PRIOR_HELP)
    nfe: int = option(1000, "network calls (default 1000)")
    zeta: float | None = option(help="guidance strength (default 1)")
    eta: float | None = option(help="DDIM noise level (default 1)")
    net_batch: int | None = option(help="at most this many images per network call (default: all)")

    def __post_init__(self):
        _check_nfe(self.nfe)


def _same_prior(a, b) -> bool:
    """Whether two ``prior`` options name the same prior (None: the default; objects by identity)."""
    if a is b:
        return True
    names = (str, os.PathLike)
    return isinstance(a, names) and isinstance(b, names) and os.fspath(a) == os.fspath(b)


class _Diffusion(Reconstructor):
    """What DDS and DPS share: the prior, loaded once, and the data scaled to its range."""

    def prepare(self, device):
        self.prior_device = device
        prior = DEFAULT_PRIOR[self.kind] if self.options.prior is None else self.options.prior
        self.denoiser, self.card, self.prior_label = resolve_prior(prior, self.kind, device)

    def with_options(self, **changes):
        out = super().with_options(**changes)
        if not _same_prior(out.options.prior, self.options.prior):  # per-scan choice between priors
            _Diffusion.prepare(out, self.prior_device)
        return out

    @property
    def scaled(self) -> bool:
        return True

    @property
    def peak(self) -> float:
        return prior_peak(self.card)

    def record(self) -> dict:
        return {"nfe": self.options.nfe, "prior": self.prior_label}


def _setup_init(init, kind: str, device) -> Reconstructor:
    """The classical method ``init`` (default :data:`DEFAULT_INIT`), set up; ``ValueError`` naming ``init``."""
    init = init or DEFAULT_INIT[kind]
    classical = [m for m in method_names(kind) if m not in ("dds", "dps")]
    if init not in classical:
        raise ValueError(f"init must be a classical {kind} method, one of {', '.join(classical)}; got {init!r}")
    return setup(init, kind, device)


class DDS(_Diffusion):
    """The Decomposed Diffusion Sampler; CT volumes (several slices) use the 3D sampler unless ``volume=False``."""

    Options = DDSOptions

    def prepare(self, device):
        super().prepare(device)
        self.device = device
        self.init = _setup_init(self.options.init, self.kind, device)

    def with_options(self, **changes):
        out = super().with_options(**changes)
        if out.options.init != self.options.init:
            out.init = _setup_init(out.options.init, self.kind, self.device)
        return out

    def with_init(self, init: Reconstructor) -> "DDS":
        """A copy that starts (when ``start < 1``) from ``init``'s image (a classical method with chosen options)."""
        if not isinstance(init, Reconstructor) or init.name in ("dds", "dps") or init.kind != self.kind:
            raise ValueError(f"init must be a classical {self.kind} Reconstructor, got {init!r}")
        out = copy.copy(self)
        out.init = init
        return out

    def record(self) -> dict:
        o = self.options
        out = super().record() | {"gamma": o.gamma, "cg_steps": o.cg_steps, "eta": o.eta,
                                  "volume": bool(o.volume) if self.kind == "ct" else None}
        if o.start < 1:
            out |= {"start": o.start, "init": o.init or DEFAULT_INIT[self.kind], "init_options": repr(self.init.given)}
        return out

    def _start(self, A, y, *, seed, scale) -> dict:
        """``start``/``init`` keywords of the samplers: the ``init`` method's image when ``start < 1``."""
        if self.options.start == 1:
            return {}
        s = scale * self.peak / self.init.peak if self.init.scaled else scale
        x = self.init.run(A, y, seed=seed, scale=s, progress=False)
        return {"start": self.options.start, "init": x.reshape(y.shape[: y.ndim - len(A.oshape)] + A.ishape)}

    def run(self, A, y, *, seed, scale, progress):
        o = self.options
        common = dict(nfe=o.nfe, seed=seed, scale=scale, progress=progress, cg_steps=o.cg_steps, eta=o.eta,
                      **self._start(A, y, seed=seed, scale=scale))
        if o.net_batch is not None:
            common["net_batch"] = o.net_batch
        tv = {k: v for k, v in (("lam", o.lam), ("rho", o.rho)) if v is not None}
        batch = y.shape[: y.ndim - len(A.oshape)]
        if o.start == 0:
            return common["init"]
        if self.kind == "ct" and o.volume:
            if len(batch) == 1 and batch[0] > 1:
                if o.gamma is not None:
                    raise ValueError("gamma is not used by the 3D CT sampler (it solves the noiseless ADMM "
                                     "form); pass volume=False for slice-by-slice DDS with gamma")
                return dds_sample_volume(self.denoiser, A, y, **common, **tv)
            tv = {}  # a one-slice volume: TV along z is zero, lam / rho have nothing to act on
        if tv:
            raise TypeError(f"dds option(s) {', '.join(sorted(tv))} apply to 3D CT volumes only")
        return dds_sample(self.denoiser, A, y, gamma=o.gamma, **common)


class DPS(_Diffusion):
    """Diffusion posterior sampling (the slow baseline DDS is compared with)."""

    Options = DPSOptions

    def run(self, A, y, *, seed, scale, progress):
        opts = self.options.kwargs(skip=("prior", "nfe"))
        return dps_sample(self.denoiser, A, y, nfe=self.options.nfe, seed=seed, scale=scale, progress=progress,
                          **opts)
