"""Reconstruction methods by name: the contract every method follows, and the classical methods' table.

A reconstruction method turns data ``y = A x (+ noise)`` into images.  Each
is a :class:`Reconstructor` subclass: its keyword options are a small frozen
dataclass (a subclass of :class:`Options`, checked when the method is set
up), it sets itself up once for a modality and a device (a learned method
loads its weights there), and it is then called on any number of ``(A, y)``::

    rec = setup("cg-sense", "mri", "cpu", iters=20)     # options checked, weights loaded
    x = rec.run(A, y, seed=0, scale=1.0, progress=False)

The classical methods are in :data:`CLASSICAL`; learned ones declare theirs
in their own folder (``reconstructors={"dds": "reconstruct:DDS"}`` in
``solvers/<name>/method.py``) and :func:`setup` finds them through
:func:`krylearn.solvers.registry.reconstructor_entry`.  Nothing here knows
any learned method.

Scaling
-------
Regularised methods and diffusion priors assume images whose peak magnitude
is about :attr:`Reconstructor.peak` (1 for the classical defaults).  A
method whose :attr:`Reconstructor.scaled` is true receives ``scale``, the
data's image peak divided by that target (the caller estimates it with
:func:`krylearn.solvers.imaging.image_scale` unless the user gives it), and
solves for ``x / scale``; linear methods are scale-equivariant and get
``scale = 1``.
"""

from __future__ import annotations

import copy
import dataclasses
import numbers
import types
import typing
from typing import Mapping

import numpy as np
import torch

from ..operators.ct import ParallelBeamProjector, fbp
from ..operators.mri import SenseOperator
from . import imaging
from .registry import reconstructor_entry, reconstructor_names

__all__ = [
    "CLASSICAL",
    "KINDS",
    "NoOptions",
    "SHARED",
    "Options",
    "Reconstructor",
    "check_kind",
    "check_seed",
    "option",
    "method_class",
    "method_names",
    "option_names",
    "setup",
]

#: Modalities: multi-coil MRI (complex SENSE operators) and CT (real projectors).
KINDS = ("mri", "ct")
#: Keywords a caller may pass to every method (a benchmark runs all its methods with one prior);
#: a method whose options lack them ignores them.
SHARED = ("prior", "nfe")


def check_kind(kind) -> str:
    if kind not in KINDS:
        raise ValueError(f"kind must be 'mri' or 'ct', got {kind!r}")
    return kind


# ------------------------------------------------------------------ the contract
def option(default=None, help: str = "", *, kinds=None):
    """A method option: a dataclass field with the help text of its command-line flag.

    Parameters
    ----------
    default
        The value when not given (``None``: the called function's default).
    help : str
        What it does and its default; ``krylearn reconstruct`` shows it under
        ``--NAME`` (``--no-NAME`` for a boolean that defaults to True).
    kinds : tuple of str, optional
        The modalities it applies to (default all the method's).
    """
    return dataclasses.field(default=default, metadata={"help": help, "kinds": kinds})


def _value_type(hint) -> type:
    """``int | None`` -> int; anything that is not int, float or bool -> str (names, paths)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return hint if hint in (int, float, bool) else str


@dataclasses.dataclass(frozen=True)
class Options:
    """Base of a method's options: a frozen dataclass whose fields are its keyword options.

    A field left at ``None`` means the library default of the function the
    method calls; :meth:`kwargs` passes only the fields that are set.
    Declare fields with :func:`option` to give them a command-line flag.
    """

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def described(cls, kind: str) -> list[tuple[str, type, object, str]]:
        """``(name, value type, default, help)`` of the options with a help text that apply to ``kind``."""
        hints = typing.get_type_hints(cls)
        out = []
        for f in dataclasses.fields(cls):
            kinds = f.metadata.get("kinds")
            if f.metadata.get("help") and (kinds is None or kind in kinds):
                out.append((f.name, _value_type(hints[f.name]), f.default, f.metadata["help"]))
        return out

    @classmethod
    def build(cls, method: str, given: Mapping):
        """The options from keyword arguments; ``None`` values mean the default.

        Raises
        ------
        TypeError
            An option the method does not take (the message names it and
            lists the method's options).
        """
        given = {k: v for k, v in given.items() if v is not None}
        unknown = sorted(set(given) - set(cls.names()))
        if unknown:
            raise TypeError(f"method {method!r} takes no option(s) {', '.join(unknown)}; "
                            f"it takes {', '.join(cls.names()) or 'none'}")
        return cls(**given)

    def kwargs(self, *, skip=()) -> dict:
        """The options that are set, as keyword arguments (``skip``: names left out)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) is not None and f.name not in skip}


@dataclasses.dataclass(frozen=True)
class NoOptions(Options):
    """A method without options."""


class Reconstructor:
    """A reconstruction method set up for one modality, device and set of options.

    Subclasses set :attr:`kinds` and :attr:`Options`, may override
    :meth:`prepare` (load what the method needs once), :attr:`scaled`,
    :attr:`peak` and :meth:`record`, and implement :meth:`run`.

    Parameters
    ----------
    kind : {"mri", "ct"}
    name : str
        The name it was set up under (one class may serve several names).
    device : str or torch.device
        Where its networks live (the operator's device for the data).
    **options
        The method's options (see its :attr:`Options`); ``None`` means the default.
    """

    #: Modalities the method reconstructs.
    kinds: tuple[str, ...] = KINDS
    #: Its options (a frozen dataclass).
    Options: type[Options] = NoOptions

    def __init__(self, kind: str, *, name: str, device="cpu", **options):
        self.kind = check_kind(kind)
        self.name = name
        self.options = self.Options.build(name, options)
        #: The options the caller set (``None`` values left out), as given.
        self.given = {k: v for k, v in options.items() if v is not None}
        self.prepare(torch.device(device))

    def prepare(self, device: torch.device) -> None:
        """Load what the method needs once (weights); nothing by default."""

    def with_options(self, **changes) -> "Reconstructor":
        """A copy with some options changed (checked as at set-up), sharing what :meth:`prepare` loaded.

        ``None`` resets an option to its default.  Per-scan parameter choice
        runs one method under many options this way without reloading a prior.
        """
        given = {**self.given, **changes}
        out = copy.copy(self)
        out.options = self.Options.build(self.name, given)
        out.given = {k: v for k, v in given.items() if v is not None}
        return out

    @property
    def scaled(self) -> bool:
        """Whether the data must be normalised to images of peak :attr:`peak` (see the module notes)."""
        return False

    @property
    def peak(self) -> float:
        """The image peak magnitude the method's defaults assume."""
        return 1.0

    def record(self) -> dict:
        """Attributes to write beside a reconstruction (``None`` values are left out)."""
        return {}

    def run(self, A, y, *, seed: int, scale: float, progress: bool):
        """Images ``(*batch, *A.ishape)`` from ``y`` ``(*batch, *A.oshape)`` (numpy or torch)."""
        raise NotImplementedError


# ------------------------------------------------------------------ classical methods
def _batch(A, y) -> tuple:
    return tuple(y.shape[: y.ndim - len(A.oshape)])


def _sense_parts(A, y):
    """Per-slice ``(kspace (B, C, ny, nx), maps (B, C, ny, nx), mask)`` of a SENSE problem for sigpy."""
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


class ZeroFilled(Reconstructor):
    """``A^H y`` (:func:`~krylearn.solvers.imaging.zero_filled`)."""

    kinds = ("mri",)

    def run(self, A, y, *, seed, scale, progress):
        return imaging.zero_filled(A, y)


@dataclasses.dataclass(frozen=True)
class CGOptions(Options):
    """:func:`~krylearn.solvers.imaging.cg_sense`'s ``iters``, ``rtol`` and Tikhonov ``lam``."""

    iters: int | None = option(help=f"CG iterations (default {imaging.CG_SENSE_ITERS})")
    rtol: float | None = option(help="relative residual to stop at (default 1e-6)")
    lam: float | None = option(help="Tikhonov weight, (A^H A + lam I) x = A^H y (default 0)")


class CGSense(Reconstructor):
    """CG on the normal equations (:func:`~krylearn.solvers.imaging.cg_sense`); scaled only with ``lam``."""

    kinds = ("mri",)
    Options = CGOptions

    @property
    def scaled(self) -> bool:
        return bool(self.options.lam)

    def run(self, A, y, *, seed, scale, progress):
        return imaging.cg_sense(A, y / scale, **self.options.kwargs()) * scale


class CGLeastSquares(CGSense):
    """Least squares by CG for CT (the same solver as CG-SENSE)."""

    kinds = ("ct",)


@dataclasses.dataclass(frozen=True)
class L1WaveletOptions(Options):
    """:func:`~krylearn.solvers.imaging.l1_wavelet`'s options."""

    lam: float | None = option(help=f"wavelet weight for unit-peak images (default {imaging.L1_WAVELET_LAM:g})")
    iters: int | None = option(help=f"FISTA iterations (default {imaging.SIGPY_ITERS})")
    wave_name: str | None = option(help="PyWavelets name (default db4)")


@dataclasses.dataclass(frozen=True)
class TVOptions(Options):
    """:func:`~krylearn.solvers.imaging.tv_mri`'s options."""

    lam: float | None = option(help=f"TV weight for unit-peak images (default {imaging.TV_MRI_LAM:g})")
    iters: int | None = option(help=f"primal-dual iterations (default {imaging.SIGPY_ITERS})")
    sigma: float | None = option(help=f"dual step (default {imaging.TV_MRI_SIGMA:g})")


class L1Wavelet(Reconstructor):
    """sigpy's l1-wavelet recon on a SENSE problem (:func:`~krylearn.solvers.imaging.l1_wavelet`)."""

    kinds = ("mri",)
    Options = L1WaveletOptions
    solve = staticmethod(imaging.l1_wavelet)

    @property
    def scaled(self) -> bool:
        return True

    def run(self, A, y, *, seed, scale, progress):
        k, maps, mask = _sense_parts(A, y / scale)
        x = self.solve(k, maps, mask, progress=progress, **self.options.kwargs())
        return x.reshape(_batch(A, y) + A.ishape) * scale


class TV(L1Wavelet):
    """sigpy's total-variation recon on a SENSE problem (:func:`~krylearn.solvers.imaging.tv_mri`)."""

    Options = TVOptions
    solve = staticmethod(imaging.tv_mri)


@dataclasses.dataclass(frozen=True)
class FBPOptions(Options):
    """:func:`krylearn.operators.ct.fbp`'s filter."""

    filter: str | None = option(help="ram-lak, shepp-logan, cosine or hann (default ram-lak)")


class FBP(Reconstructor):
    """Filtered back-projection (:func:`krylearn.operators.ct.fbp`)."""

    kinds = ("ct",)
    Options = FBPOptions

    def run(self, A, y, *, seed, scale, progress):
        if not isinstance(A, ParallelBeamProjector):
            raise TypeError(f"fbp needs a ParallelBeamProjector A, got {type(A).__name__}")
        return fbp(y, projector=A, **self.options.kwargs())


@dataclasses.dataclass(frozen=True)
class ADMMTVOptions(Options):
    """:func:`~krylearn.solvers.imaging.admm_tv_ct`'s options."""

    lam: float | None = option(help=f"TV weight for images in [0, 1] (default {imaging.ADMM_TV_LAM:g})")
    rho: float | None = option(help=f"ADMM penalty (default {imaging.ADMM_TV_RHO:g})")
    iters: int | None = option(help=f"ADMM iterations (default {imaging.ADMM_TV_ITERS})")
    cg_steps: int | None = option(help=f"CG steps per x-update (default {imaging.ADMM_TV_CG_STEPS})")
    tv: str | None = option(help="2d (per slice) or 3d (default: 3d for several slices)")


class ADMMTV(Reconstructor):
    """TV-regularised CT by ADMM (:func:`~krylearn.solvers.imaging.admm_tv_ct`); 3D TV for a volume."""

    kinds = ("ct",)
    Options = ADMMTVOptions

    @property
    def scaled(self) -> bool:
        return True

    def run(self, A, y, *, seed, scale, progress):
        return imaging.admm_tv_ct(A, y / scale, progress=progress, **self.options.kwargs()) * scale


#: The classical methods: name -> :class:`Reconstructor` subclass.
CLASSICAL: dict[str, type[Reconstructor]] = {
    "zero-filled": ZeroFilled,
    "cg-sense": CGSense,
    "l1-wavelet": L1Wavelet,
    "tv": TV,
    "fbp": FBP,
    "admm-tv": ADMMTV,
    "cg": CGLeastSquares,
}


# ------------------------------------------------------------------ lookup
def _all() -> dict[str, type[Reconstructor]]:
    learned = {n: reconstructor_entry(n) for n in reconstructor_names()}
    return {**learned, **CLASSICAL}


def method_names(kind: str) -> tuple[str, ...]:
    """The methods that reconstruct ``kind``: learned ones (registry order) first, then the classical ones."""
    check_kind(kind)
    return tuple(n for n, cls in _all().items() if kind in cls.kinds)


def method_class(kind: str, name: str) -> type[Reconstructor]:
    """The :class:`Reconstructor` subclass registered as ``name`` for ``kind``; ``ValueError`` lists the others."""
    check_kind(kind)
    cls = CLASSICAL.get(name) if isinstance(name, str) else None
    if cls is None and isinstance(name, str):
        cls = reconstructor_entry(name)
    if cls is None or kind not in cls.kinds:
        raise ValueError(f"method must be one of {', '.join(method_names(kind))} for {kind}, got {name!r}")
    return cls


def option_names(kind: str, name: str) -> tuple[str, ...]:
    """The option names ``name`` takes (its :attr:`Reconstructor.Options` fields)."""
    return method_class(kind, name).Options.names()


def setup(name: str, kind: str, device="cpu", **options) -> Reconstructor:
    """Set ``name`` up for ``kind`` on ``device`` with ``options`` (checked; :data:`SHARED` keywords
    that the method does not take are ignored)."""
    cls = method_class(kind, name)
    own = set(cls.Options.names())
    options = {k: v for k, v in options.items() if k not in SHARED or k in own}
    return cls(kind, name=name, device=device, **options)


def check_seed(seed) -> int:
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)
