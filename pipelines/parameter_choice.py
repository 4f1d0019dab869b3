"""Per-scan parameter choice without ground truth: cross-validation on held-out measurements.

A method's regulariser weight (TV's ``lam``, CG-SENSE's iteration count,
DDS's prior weight ``start`` ...) is chosen for each scan from its own
measurements:

1. hold out a share of the acquired samples -- k-space lines outside the
   fully sampled centre for a 1D (column) mask, k-space points outside it
   for a 2D mask, whole views for CT;
2. reconstruct from the rest with every candidate of the method's grid;
3. score each candidate by how well its image predicts the held-out samples,
   ``sum_f ||A_f x_f - y_f||^2 / sum_f ||y_f||^2`` over ``folds`` disjoint
   hold-outs ``f`` (``A_f`` keeps only fold ``f``'s samples);
4. reconstruct from all the data with the best candidate.

Holding out whole lines (views) asks the reconstruction what it asks on the
real scan: to fill in what was not measured.  Every candidate runs with the
same seed and the same data scale (estimated once from all the data), so
the scores differ only by the options.  The score includes the noise of the
held-out samples, the same for every candidate.

Cost: ``folds x len(grid)`` reconstructions on top of the final one.
"""

from __future__ import annotations

import dataclasses
import numbers

import numpy as np
import torch
from tqdm.auto import tqdm

from ..operators.ct import ParallelBeamProjector
from ..operators.mri import SenseOperator
from ..solvers.imaging import ADMM_TV_LAM, L1_WAVELET_LAM, TV_MRI_LAM, image_scale
from ..solvers.reconstructors import Reconstructor
from .coil_maps import acs_width

__all__ = ["Choice", "DDS_PRIORS", "DEFAULT_GRIDS", "choose_options", "default_grid", "holdout_folds"]

_LAM_STEPS = (0.25, 0.5, 1.0, 2.0, 4.0)
#: Candidate options per ``(kind, method)``; a method not listed has nothing to choose.  The DDS grid
#: runs from the paper's sampler (``{}``: all of the diffusion, from pure noise) to short runs that start
#: from the ``init`` reconstruction (``start`` = 0.3 ... 0.02), where the prior weighs less and less.
#: (``start = 0``, the ``init`` image itself, chose worse on the test images: 0.1 dB lower mean PSNR,
#: from noise between it and 0.02.)  CG-SENSE is not listed: a least-squares image
#: cannot predict a k-space line that was not measured (held-out errors of 0.9-1.3, relative, on most
#: slices), so held-out lines say nothing about its iteration count.
DEFAULT_GRIDS = {
    ("mri", "l1-wavelet"): [{"lam": s * L1_WAVELET_LAM} for s in _LAM_STEPS],
    ("mri", "tv"): [{"lam": s * TV_MRI_LAM} for s in _LAM_STEPS],
    ("ct", "cg"): [{"iters": k} for k in (5, 10, 20, 40, 80)],
    ("ct", "admm-tv"): [{"lam": s * ADMM_TV_LAM} for s in _LAM_STEPS],
    ("ct", "fbp"): [{"filter": f} for f in ("ram-lak", "shepp-logan", "cosine", "hann")],
}
_DDS_GRID = [{}, {"cg_steps": 10}, {"eta": 0.5}, {"start": 0.3, "nfe": 20, "eta": 0.5},
             {"start": 0.1, "nfe": 10, "eta": 0.0}, {"start": 0.05, "nfe": 5, "eta": 0.0},
             {"start": 0.02, "nfe": 2, "eta": 0.0}]
#: The shipped priors DDS's grid runs with when no prior was given: each prior with every setting, so the
#: prior itself is chosen per scan.  On validation scans (MRI and CT) this picked the template prior on all
#: 20 template slices and the broad prior on 14 of 16 held-out pictures (benchmarks/README.md, "A broader
#: prior, chosen per scan").
DDS_PRIORS = {"mri": ("dds-mri", "dds-mri-broad"), "ct": ("dds-ct", "dds-ct-broad")}
for _kind, _priors in DDS_PRIORS.items():
    DEFAULT_GRIDS[(_kind, "dds")] = [dict(c, prior=p) for p in _priors for c in _DDS_GRID]
#: Share of the held-out candidates (lines, points, views) in each fold.
_SHARE = {"lines": 0.3, "points": 0.15, "views": 0.125}


def default_grid(kind: str, method: str) -> list[dict]:
    """The candidates :func:`choose_options` tries for ``method`` (a copy; ``[]``: nothing to choose)."""
    return [dict(c) for c in DEFAULT_GRIDS.get((kind, method), [])]


@dataclasses.dataclass
class Fold:
    """One hold-out: the operator and data of the kept samples, and those of the held-out ones."""

    A_keep: object
    y_keep: np.ndarray
    A_held: object
    y_held: np.ndarray


def _centre(mask: np.ndarray) -> np.ndarray:
    """Boolean array of the fully sampled centre of a column mask ``(kx,)`` or a 2D mask ``(ky, kx)``."""
    w = acs_width(mask)
    out = np.zeros(mask.shape, dtype=bool)
    if mask.ndim == 1:
        c = mask.shape[0] // 2
        lo = c
        while lo > 0 and mask[lo - 1]:
            lo -= 1
        out[lo:lo + w] = w > 0
    elif w:
        cy, cx = mask.shape[0] // 2, mask.shape[1] // 2
        out[cy - w // 2:cy - w // 2 + w, cx - w // 2:cx - w // 2 + w] = True
    return out


def _groups(candidates: np.ndarray, folds: int, share: float, rng, what: str) -> list[np.ndarray]:
    """Up to ``folds`` disjoint random groups of ``max(1, round(share * n))`` entries of ``candidates``.

    Fewer folds when there are not enough entries (some must never be held out); none is an error.
    """
    n = candidates.size
    size = max(1, int(round(share * n)))
    folds = min(folds, (n - 1) // size)
    if folds < 1:
        raise ValueError(f"too few {what} to cross-validate: {n}, need at least 2; choose the options yourself")
    perm = rng.permutation(candidates)
    return [np.sort(perm[i * size:(i + 1) * size]) for i in range(folds)]


def _sense_folds(A: SenseOperator, y: np.ndarray, folds: int, rng) -> list[Fold]:
    mask = A.mask_input.detach().cpu().numpy()
    if mask.ndim not in (1, 2):
        raise ValueError(f"cross-validation takes a mask shared by the slices ((kx,) or (ky, kx)), got shape "
                         f"{mask.shape}")
    sampled = (mask != 0) & ~_centre(mask != 0)
    what = f"acquired k-space {'lines' if mask.ndim == 1 else 'points'} outside the centre"
    flat = np.flatnonzero(sampled)
    maps = A.maps if A.volume else A.maps[0]
    out = []
    for g in _groups(flat, folds, _SHARE["lines" if mask.ndim == 1 else "points"], rng, what):
        held = np.zeros(mask.size, dtype=mask.dtype)
        held[g] = 1
        held = held.reshape(mask.shape)
        keep = mask * (held == 0)
        out.append(Fold(SenseOperator(maps, keep, dtype=A.dtype), y * keep,
                        SenseOperator(maps, held * mask, dtype=A.dtype), y * held))
    return out


def _ct_folds(P: ParallelBeamProjector, y: np.ndarray, folds: int, rng) -> list[Fold]:
    out = []
    for g in _groups(np.arange(P.angles.size), folds, _SHARE["views"], rng, "views"):
        keep = np.setdiff1d(np.arange(P.angles.size), g)
        proj = [ParallelBeamProjector(P.image_shape, P.angles[v], n_det=P.n_det, det_spacing=P.det_spacing,
                                      dtype=P.dtype, device=P.device) for v in (keep, g)]
        out.append(Fold(proj[0], np.ascontiguousarray(y[..., keep, :]), proj[1], np.ascontiguousarray(y[..., g, :])))
    return out


def holdout_folds(A, y, folds: int = 3, seed: int = 0) -> list[Fold]:
    """``folds`` disjoint hold-outs of the acquired samples of ``y = A x (+ noise)`` (see the module notes).

    Parameters
    ----------
    A : SenseOperator or ParallelBeamProjector
        SENSE with a mask shared by the slices; CT with at least ``2 folds`` views.
    y : numpy.ndarray, (*batch, *A.oshape)
    folds : int
    seed : int
        Draws the hold-outs.

    Returns
    -------
    list of :class:`Fold`
    """
    if not isinstance(folds, numbers.Integral) or isinstance(folds, bool) or folds < 1:
        raise ValueError(f"folds must be a positive integer, got {folds!r}")
    rng = np.random.default_rng(seed)
    y = np.asarray(y)
    if isinstance(A, SenseOperator):
        return _sense_folds(A, y, int(folds), rng)
    if isinstance(A, ParallelBeamProjector):
        return _ct_folds(A, y, int(folds), rng)
    raise TypeError(f"cross-validation needs a SenseOperator or a ParallelBeamProjector, got {type(A).__name__}")


@dataclasses.dataclass
class Choice:
    """The outcome of :func:`choose_options`.

    Attributes
    ----------
    options : dict
        The chosen candidate (the options it sets beyond those given).
    scores : list of (dict, float)
        Every candidate and its held-out relative error (lower is better).
    folds : int
    reconstructor : Reconstructor
        The method with the chosen options, to run on all the data.
    init : Choice or None
        DDS: the choice made first for the classical method it starts from.
    """

    options: dict
    scores: list
    folds: int
    reconstructor: Reconstructor
    init: "Choice | None" = None

    def record(self) -> dict:
        """JSON-ready summary: chosen options, folds, every candidate's score (and the init method's choice)."""
        out = {"chosen": self.options, "folds": self.folds,
               "scores": [{"options": o, "heldout_error": s} for o, s in self.scores]}
        if self.init is not None:
            out["init"] = {"method": self.init.reconstructor.name, **self.init.record()}
        return out


def _as_numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _predict(A, x) -> np.ndarray:
    t = torch.as_tensor(_as_numpy(x)).to(device=A.device, dtype=A.dtype)
    return _as_numpy(A(t))


def choose_options(rec: Reconstructor, A, y, *, grid=None, folds: int = 3, seed: int = 0, scale=None,
                   progress: bool = False) -> Choice:
    """Choose ``rec``'s options for this scan by cross-validation on held-out measurements.

    Parameters
    ----------
    rec : Reconstructor
        The method, set up (:func:`krylearn.solvers.reconstructors.setup`);
        options it was given are kept fixed (a candidate does not override them).
    A : SenseOperator or ParallelBeamProjector
    y : numpy.ndarray, (*batch, *A.oshape)
    grid : list of dict, optional
        Candidates (default :func:`default_grid`).  An empty grid chooses ``{}``.
    folds : int
        Disjoint hold-outs (default 3).
    seed : int
        Draws the hold-outs and seeds every candidate's sampler alike.
    scale : float, optional
        Image peak magnitude for a scaled method (estimated from all of
        ``y`` when None, as :func:`~.reconstruct.run_reconstruction` does).
    progress : bool

    Returns
    -------
    Choice

    Notes
    -----
    A DDS whose grid starts from a classical image (``start < 1``) first
    has that method's options chosen the same way, on the same hold-outs.
    """
    y = _as_numpy(y)
    return _choose(rec, A, y, grid, folds, seed, scale, progress, parts=None)


def _candidates(rec: Reconstructor, grid) -> list[dict]:
    """The grid (default :func:`default_grid`) without the options ``rec`` was given, duplicates dropped."""
    grid = default_grid(rec.kind, rec.name) if grid is None else [dict(c) for c in grid]
    cands = []
    for c in grid:
        c = {k: v for k, v in c.items() if k not in rec.given}
        if c not in cands:
            cands.append(c)
    return cands


def _choose(rec, A, y, grid, folds, seed, scale, progress, parts) -> Choice:
    """:func:`choose_options` on hold-outs ``parts`` (made here when None, and shared with the init's choice)."""
    cands = _candidates(rec, grid)
    if len(cands) <= 1:
        c = cands[0] if cands else {}
        return Choice(c, [], 0, rec.with_options(**c))
    parts = holdout_folds(A, y, folds, seed) if parts is None else parts
    init = None
    if isinstance(getattr(rec, "init", None), Reconstructor) and any(
            c.get("start", rec.options.start) < 1 for c in cands):
        init = _choose(rec.init, A, y, None, folds, seed, None, progress, parts)
        rec = rec.with_init(init.reconstructor)
    if rec.scaled and scale is None:
        scale = image_scale(A, y) / rec.peak
    err = np.zeros(len(cands))
    norm = sum(float(np.sum(np.abs(f.y_held) ** 2)) for f in parts)
    jobs = [(j, f) for f in parts for j in range(len(cands))]
    for j, f in tqdm(jobs, disable=not progress, desc=f"choosing {rec.name}'s options", unit="run",
                     dynamic_ncols=True):
        x = rec.with_options(**cands[j]).run(f.A_keep, f.y_keep, seed=seed, scale=scale or 1.0, progress=False)
        err[j] += float(np.sum(np.abs(_predict(f.A_held, x) - f.y_held) ** 2))
    err = err / max(norm, np.finfo(float).tiny)
    if not np.all(np.isfinite(err)):
        bad = [cands[j] for j in np.flatnonzero(~np.isfinite(err))]
        raise ValueError(f"cross-validation gave non-finite scores for {bad}")
    best = int(np.argmin(err))
    return Choice(cands[best], [(c, float(e)) for c, e in zip(cands, err)], len(parts),
                  rec.with_options(**cands[best]), init)
