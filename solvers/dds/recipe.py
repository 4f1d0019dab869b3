"""``krylearn train diffusion``: brain slices -> DDS prior -> weights, card, log, plot (and the test sets).

:func:`train_prior` trains the epsilon-prediction UNet of
:mod:`krylearn.solvers.dds` on the *train* band of the MNI152 brain
(:mod:`krylearn.problems.brain`), with :class:`~krylearn.problems.brain.BrainAugment`
applied to every batch, EMA weights and a resumable checkpoint
(:func:`~krylearn.solvers.dds.train_diffusion`), measures the denoising loss
of the untrained and of the trained (EMA) network on the held-out *val*
band, and writes, on rank 0 only::

    <out>.safetensors   the EMA weights
    <out>.json          card: data (source, bands, z indices, size,
                        augmentation, range), command, seed, wall time,
                        hardware, final training loss, val losses, steps
    <out>-log.json      the card plus the training loss every ``log_every`` steps
    <out>-loss.png      the loss curve

With ``data=`` (``krylearn train diffusion --data PATH...``) it trains on the
user's own files instead -- fastMRI k-space, DICOM series, NIfTI volumes,
HDF5 image stacks -- streamed from disk, with whole volumes held out for
validation (:mod:`.recipe_user`, ``docs/dds-training-data.md``).

``kind="mri"``: complex images (2 channels: real, imaginary), ``|x| <= 1``,
smooth random phase, default 64 x 64.  ``kind="ct"``: 1 channel,
attenuation-like in ``[0, 1]`` (MR anatomy, see the data module), default
128 x 128.

:func:`make_data` writes the measurement files of the benchmarks
(fastMRI-style MRI k-space, krylearn CT sinograms) from the held-out band.

Examples
--------
>>> from krylearn.solvers.dds.recipe import train_prior, make_data        # doctest: +SKIP
>>> card = train_prior("mri", out="weights/dds-mri", steps=9000)       # doctest: +SKIP
>>> make_data("mri", "brain-x4.h5", accel=4, snr_db=30)                # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ...problems.broad_images import broad_images, corpus_card
from ...problems.brain import BAND_GAP, BANDS, BrainAugment, brain_slices, complex_brain_slices, field_of_view
from ...problems.phantoms import random_phantom
from ...problems.simulate import write_ct_testset, write_mri_testset
from ...utils.atomic import atomic_write_text
from ...utils.checks import check_int, check_real
from ..learned import check_writable, hardware, pick_device, plot_losses, save_pretrained, seed_everything
from ..learned.weights import weights_stem
from .recipe_user import single_nifti, user_data
from .train import evaluate_loss, train_diffusion
from .unet import UNet

__all__ = ["CORPORA", "PRIOR_DEFAULTS", "make_data", "prior_data", "train_prior"]

#: Per-kind defaults: image size, UNet width / levels, global batch, steps.  The
#: step counts fit ~100 minutes on one CPU core (measured single-threaded on a
#: busy 2-core VM: ~0.6 s/step for mri, ~1.2 s/step for ct; noisy).
PRIOR_DEFAULTS = {
    "mri": {"size": 64, "base": 16, "channel_mult": (1, 2, 2, 2), "batch_size": 16, "steps": 9000},
    "ct": {"size": 128, "base": 16, "channel_mult": (1, 2, 2, 2, 2), "batch_size": 8, "steps": 4800},
}
_KINDS = tuple(PRIOR_DEFAULTS)
#: Built-in training sets: the template's train band, or :mod:`krylearn.problems.broad_images`.
CORPORA = ("template", "broad")
#: Seed of the validation set's phases (fixed, so runs compare on the same images).
VAL_SEED = 12345


def _kind(kind):
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    return kind


def _rank() -> int:
    return int(os.environ.get("RANK", "0")) if int(os.environ.get("WORLD_SIZE", "1")) > 1 else 0


def prior_data(kind: str, split: str = "train", size: int | None = None, *, seed: int = 0, ellipses: int = 0,
               volume=None):
    """The images a prior trains or validates on.

    Returns
    -------
    (images, z)
        ``mri``: complex64 ``(n, size, size)`` with ``|x| <= 1`` (smooth
        random phase from ``seed``); ``ct``: float32 ``(n, 1, size, size)``
        in [0, 1].  ``z``: the MNI152 axial index per image (-1: phantom).
    """
    _kind(kind)
    size = PRIOR_DEFAULTS[kind]["size"] if size is None else check_int("size", size, 8)
    if kind == "mri":
        return complex_brain_slices(split, size, seed=seed, ellipses=ellipses, volume=volume, return_index=True)
    if ellipses:
        x, z = brain_slices(split, size, volume=volume, return_index=True)
        rng = np.random.default_rng(seed)
        ph = np.stack([np.clip(random_phantom(size, count=10, seed=rng, oversample=2), 0, 1)
                       for _ in range(ellipses)]).astype(np.float32)
        return (np.concatenate([x, ph])[:, None], np.concatenate([z, -np.ones(ellipses, dtype=np.int64)]))
    x, z = brain_slices(split, size, volume=volume, return_index=True)
    return x[:, None], z


def _settings(kind, size, base, channel_mult, batch_size, steps, seed, ellipses, val_repeats, lr, max_minutes,
              max_seconds) -> dict:
    """The run's network, data and budget settings with :data:`PRIOR_DEFAULTS` filled in, checked."""
    if max_minutes is not None and max_seconds is not None:
        raise ValueError("give max_minutes or max_seconds, not both")
    if max_minutes is not None:
        check_real("max_minutes", max_minutes, positive=True)
    d = PRIOR_DEFAULTS[kind]
    out = {"size": d["size"] if size is None else check_int("size", size, 8),
           "base": d["base"] if base is None else check_int("base", base, 1),
           "batch_size": d["batch_size"] if batch_size is None else check_int("batch_size", batch_size, 1),
           "mult": tuple(d["channel_mult"] if channel_mult is None else channel_mult),
           "steps": d["steps"] if steps is None else check_int("steps", steps, 1),
           "seed": check_int("seed", seed, 0), "ellipses": check_int("ellipses", ellipses, 0),
           "val_repeats": check_int("val_repeats", val_repeats, 1),
           "max_seconds": max_seconds if max_minutes is None else 60.0 * max_minutes}
    check_real("lr", lr, positive=True)
    m = 2 ** (len(out["mult"]) - 1)
    if out["size"] % m:
        raise ValueError(f"size={out['size']} must be a multiple of {m} for channel_mult={out['mult']}")
    return out


def _images(kind: str, st: dict, volume):
    """``(x_train, z_train, x_val, z_val, seconds)``: the training and validation images and their slices."""
    t0 = time.perf_counter()
    x_train, z_train = prior_data(kind, "train", st["size"], seed=st["seed"], ellipses=st["ellipses"], volume=volume)
    x_val, z_val = prior_data(kind, "val", st["size"], seed=VAL_SEED, volume=volume)
    return x_train, z_train, x_val, z_val, time.perf_counter() - t0


def _broad(kind: str, st: dict):
    """The :func:`~krylearn.problems.broad_images.broad_images` route of :func:`_data`."""
    t0 = time.perf_counter()
    x_train, s_train = broad_images(kind, "train", st["size"], seed=st["seed"],
                                    counts={"ellipses": st["ellipses"]} if st["ellipses"] else None)
    x_val, s_val = broad_images(kind, "val", st["size"], seed=VAL_SEED)
    sources = {"train": s_train, "val": s_val}
    return (x_train, x_val, lambda aug: corpus_card(kind, sources, st["size"], aug),
            f"{len(s_val)} validation (template val band and held-out sample images)", time.perf_counter() - t0)


def _data(kind: str, st: dict, volume, data, rank: int, options: dict, corpus: str = "template"):
    """``(x_train, x_val or None, aug -> card data, val description, seconds)`` for the template, a volume or ``data``.

    ``data`` that is one NIfTI file alone takes the single-volume route
    (axial bands), as ``volume=`` and ``--data`` always did.
    """
    if corpus not in CORPORA:
        raise ValueError(f"corpus must be one of {CORPORA}, got {corpus!r}")
    if data is not None and volume is not None:
        raise ValueError("give volume or data, not both")
    if corpus == "broad":
        if data is not None or volume is not None:
            raise ValueError("corpus='broad' is built in: give no data or volume with it")
        return _broad(kind, st)
    if data is not None and single_nifti(data) is not None:
        volume, data = single_nifti(data), None
    if data is None:
        x_train, z_train, x_val, z_val, seconds = _images(kind, st, volume)
        return (x_train, x_val, lambda aug: _mni_data(kind, volume, st, z_train, z_val, aug),
                f"{len(z_val)} val-band", seconds)
    if st["ellipses"]:
        raise ValueError("ellipses must be 0 with data (it adds phantoms to the MNI152 or single-volume set)")
    ud = user_data(kind, data, size=st["size"], seed=st["seed"], rank=rank, val_seed=VAL_SEED, **options)
    n_val = 0 if ud.x_val is None else len(ud.x_val)
    return ud.train, ud.x_val, lambda aug: ud.card(kind, aug), f"{n_val} held-out-volume", ud.seconds


def _untrained(kind: str, st: dict, x_val, device, rank: int):
    """``(fresh UNet from the seed, device, its val loss on rank 0 else None)``."""
    seed_everything(st["seed"])  # the initial weights depend on the seed only
    net = UNet(in_channels=2 if kind == "mri" else 1, base_channels=st["base"], channel_mult=st["mult"])
    dev = pick_device(device)
    if rank != 0 or x_val is None:
        return net, dev, None
    net.to(dev)
    return net, dev, evaluate_loss(net, x_val, seed=st["seed"], repeats=st["val_repeats"])


def _outputs(out, checkpoint, rank: int):
    """``(weights stem or None, checkpoint path or None, live log path or None)``; the folder checked on rank 0."""
    stem = weights_stem(out) if out is not None else None
    if stem is None:
        return None, checkpoint, None
    if rank == 0:
        check_writable(stem.parent, "out")
    if checkpoint is None:
        checkpoint = stem.with_name(stem.name + "-checkpoint.pt")
    return stem, checkpoint, stem.with_name(stem.name + "-log.jsonl")


def _mni_data(kind, volume, st, z_train, z_val, aug) -> dict:
    """The card's ``data`` entry for the MNI152 template (or one volume split by axial bands)."""
    is_mni = volume is None
    return {
        "source": ("MNI152 ICBM 2009a nonlinear symmetric T1 template, 1 mm, skull-stripped, shipped in the "
                   "nilearn wheel (krylearn.problems.brain)") if is_mni else "user volume",
        "volume": None if is_mni or not isinstance(volume, (str, os.PathLike)) else os.fspath(volume),
        "bands": {k: [list(r) for r in v] for k, v in BANDS.items()} if is_mni else "scaled MNI bands",
        "band_gap_slices": BAND_GAP,
        "train_slices": [int(z) for z in z_train],
        "val_slices": [int(z) for z in z_val],
        "train_images": len(z_train),
        "ellipse_phantoms": int(st["ellipses"]),
        "size": [st["size"], st["size"]],
        "field_of_view_pixels": [int(v) for v in field_of_view(volume)],
        "augmentation": aug.config() if aug is not None else None,
        "normalisation": "volume / 99.9th percentile of its nonzero voxels, clipped to [0, 1]; axial slices in "
                         "one square field of view, antialiased bilinear resampling; slices with < 10% "
                         "foreground skipped",
        "range": ("complex, |x| <= 1, smooth random phase; network channels (real, imaginary)"
                  if kind == "mri" else "real in [0, 1] (MR T1 intensity used as an attenuation-like map)"),
    }


def _card(*, kind, name, command, data, val_desc, st, data_seconds, result, dev, ema, losses, val_initial,
          val_final, lr, warmup, ema_decay, half) -> dict:
    seed, steps, val_repeats = st["seed"], st["steps"], st["val_repeats"]
    batch_size, max_seconds = st["batch_size"], st["max_seconds"]
    card = {
        "name": name,
        "modality": kind,
        "paper": "Chung, Lee, Ye, Decomposed Diffusion Sampler for Accelerating Large-Scale Inverse Problems, "
                 "ICLR 2024",
        "command": command or " ".join(shlex.quote(a) for a in sys.argv),
        "data": data,
        "seed": seed,
        "seconds": round(float(result["seconds"]), 2),
        "data_seconds": round(data_seconds, 2),
        "hardware": hardware(dev),
        "parameters": int(sum(p.numel() for p in ema.parameters())),
        "steps": int(result["steps"]),
        "steps_requested": int(steps),
        "metrics": {
            "final_loss": float(result["final_loss"]),
            "final_loss_definition": f"mean training loss over the last {min(100, len(losses))} steps "
                                     "(augmented batches, raw weights)",
            "val_loss": None if val_final is None else float(val_final),
            "val_loss_untrained": None if val_initial is None else float(val_initial),
            "val_loss_definition": f"mean (eps_hat - eps)^2 on the {val_desc} images, "
                                   f"{val_repeats} seeded (t, eps) draws each, EMA weights",
        },
        "training": {"batch_size": batch_size, "lr": lr, "max_seconds": max_seconds, "warmup": warmup,
                     "ema_decay": ema_decay,
                     "optimizer": "Adam, linear warm-up, gradient norm clipped at 1",
                     "objective": "DDPM epsilon prediction, VP linear beta 1e-4..0.02, T = 1000",
                     "world_size": int(result["world_size"]), "device": str(dev),
                     "weights_dtype": "float16" if half else "float32"},
        "torch": torch.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    return card


def _write_outputs(stem: Path, ema, card: dict, losses: list, log_every: int, val_initial, val_final, half: bool,
                   title: str) -> None:
    history = [{"step": k, "loss": float(np.mean(losses[k - log_every:k]))}
               for k in range(log_every, len(losses) + 1, log_every)]
    save_pretrained(ema, card, stem, half=half)
    atomic_write_text(stem.with_name(stem.name + "-log.json"),
                      json.dumps({"card": card, "history": history}, indent=1) + "\n")
    records = [{"step": k + 1, "loss": v, "val": None} for k, v in enumerate(losses)]
    plot_losses(records, stem.with_name(stem.name + "-loss.png"), title=title, unit="step", smooth=log_every,
                ylabel="denoising loss  mean (eps_hat - eps)^2",
                lines={k: v for k, v in (("val, untrained", val_initial), ("val, EMA weights", val_final))
                       if v is not None})
    live_log = stem.with_name(stem.name + "-log.jsonl")
    if live_log.exists():
        live_log.unlink()  # superseded by -log.json


def _finish(result, x_val, *, kind, st, stem, name, command, data_card, val_desc, data_seconds, val_initial, aug,
            dev, lr, warmup, ema_decay, half, log_every):
    """Rank 0 after training: the validation loss, the card, the files; ``(card, ema model)``."""
    ema, losses = result["model"], [float(v) for v in result["losses"]]
    val_final = None if x_val is None else evaluate_loss(ema, x_val, seed=st["seed"], repeats=st["val_repeats"])
    card = _card(kind=kind, name=name or (stem.name if stem is not None else f"dds-{kind}"), command=command,
                 data=data_card(aug), val_desc=val_desc, st=st, data_seconds=data_seconds, result=result, dev=dev,
                 ema=ema, losses=losses, val_initial=val_initial, val_final=val_final, lr=lr, warmup=warmup,
                 ema_decay=ema_decay, half=half)
    if stem is not None:
        _write_outputs(stem, ema, card, losses, log_every, val_initial, val_final, half,
                       f"{card['name']}: {kind} prior, {st['size']}x{st['size']}, base {st['base']}, "
                       f"{result['steps']} steps")
    return card, ema


def train_prior(kind: str = "mri", out=None, *, steps: int | None = None, size: int | None = None,
                base: int | None = None, channel_mult=None, batch_size: int | None = None, lr: float = 2e-4,
                ema_decay: float = 0.999, warmup: int = 100, seed: int = 0, ellipses: int = 0, augment: bool = True,
                checkpoint=None, checkpoint_every: int = 250, resume: bool = True, progress: bool = True, device=None,
                command: str | None = None, name: str | None = None, half: bool = False, volume=None, data=None,
                val_fraction: float = 0.1, h5_key: str | None = None, axes=("axial",), min_foreground: float = 0.1,
                val_repeats: int = 8, log_every: int = 50, max_minutes: float | None = None,
                max_seconds: float | None = None, return_model: bool = False, corpus: str = "template"):
    """Train a DDS diffusion prior on brain slices (or the user's images); write weights, card, log and plot.

    Parameters
    ----------
    kind : {"mri", "ct"}
        2-channel complex MRI prior or 1-channel CT prior.
    out : str or Path, optional
        Weights stem (``out.safetensors``, ``out.json``, ``out-log.json``,
        ``out-loss.png``; folder created).  ``None`` writes nothing.
    steps : int, optional
        Optimiser steps (a resumed run continues up to ``steps``); default
        from :data:`PRIOR_DEFAULTS`.
    size, base, channel_mult, batch_size :
        Image side, UNet base width and per-level multipliers, global batch;
        defaults in :data:`PRIOR_DEFAULTS` (``size`` must be a multiple of
        ``2 ** (len(channel_mult) - 1)``).
    lr, ema_decay, warmup :
        Adam learning rate (linear warm-up over ``warmup`` steps) and EMA decay.
    seed : int
        Initial weights, batches, noise, augmentation, phases, ``data``'s validation volumes.
    ellipses : int
        Add this many random-ellipse phantoms to the training set (not with ``data``).
    augment : bool
        Apply :class:`~krylearn.problems.brain.BrainAugment` to every batch.
    checkpoint : str or Path, optional
        Default ``<out>-checkpoint.pt`` when ``out`` is given; written every
        ``checkpoint_every`` steps; ``resume`` continues from it.
    device : optional
        Default CUDA when available; ``torchrun`` runs DDP (one device per rank).
    command, name : str, optional
        Recorded in the card (default: this process's ``sys.argv``; ``out``'s
        file name, else ``dds-<kind>``).  ``half``: store float16 weights.
    volume : path or array, optional
        Train on another brain volume than the MNI152 template (split by axial bands).
    data : path or list of paths, optional
        Train on the user's files, streamed (:mod:`.recipe_user`): fastMRI
        ``.h5``, DICOM series, NIfTI, HDF5 stacks; files or folders.  One
        NIfTI file alone is taken as ``volume``.
    val_fraction, h5_key, axes, min_foreground :
        For ``data``: share of the volumes held out, the HDF5 dataset, the
        NIfTI slicing axes, the background rule (see :mod:`.user_images`).
    val_repeats : int
        Noise draws per validation image for the held-out loss.
    max_minutes, max_seconds : float, optional
        Wall-time budget of the training loop (give at most one): stop at the
        first step past it (the card records the steps done).  A resumed run
        gets a new budget.
    return_model : bool
        Return ``(card, ema_model)`` instead of the card (``{}`` on ranks other than 0).
    corpus : {"template", "broad"}
        The template's train band, or :mod:`krylearn.problems.broad_images`
        (``ellipses`` > 0 then replaces its 60 phantoms); not with ``data``/``volume``.
    """
    kind = _kind(kind)
    st = _settings(kind, size, base, channel_mult, batch_size, steps, seed, ellipses, val_repeats, lr, max_minutes,
                   max_seconds)
    rank = _rank()
    stem, checkpoint, live_log = _outputs(out, checkpoint, rank)
    x_train, x_val, data_card, val_desc, data_seconds = _data(kind, st, volume, data, rank, dict(
        val_fraction=val_fraction, h5_key=h5_key, axes=axes, min_foreground=min_foreground), corpus)
    aug = BrainAugment(phase=kind == "mri") if augment else None
    net, dev, val_initial = _untrained(kind, st, x_val, device, rank)
    result = train_diffusion(net, x_train, steps=st["steps"], batch_size=st["batch_size"], lr=lr, ema_decay=ema_decay,
                             warmup=warmup, augment=aug, seed=st["seed"], checkpoint=checkpoint,
                             checkpoint_every=checkpoint_every, resume=resume, device=device, progress=progress,
                             log=live_log, log_every=log_every, max_seconds=st["max_seconds"])
    if rank != 0:
        return ({}, result["model"]) if return_model else {}
    card, ema = _finish(result, x_val, kind=kind, st=st, stem=stem, name=name, command=command, data_card=data_card,
                        val_desc=val_desc, data_seconds=data_seconds, val_initial=val_initial, aug=aug, dev=dev, lr=lr,
                        warmup=warmup, ema_decay=ema_decay, half=half, log_every=log_every)
    return (card, ema) if return_model else card


def make_data(kind: str, out, *, split: str = "test", size: int | None = None, seed: int = 0, **options) -> str:
    """Write a simulated measurement file from a held-out band (the ``krylearn data mri|ct`` command).

    Parameters
    ----------
    kind : {"mri", "ct"}
    out : str or Path
        Output ``.h5``.
    split : {"train", "val", "test"}
    size : int, optional
        Default 64 (MRI) / 128 (CT).
    seed : int
    **options
        ``mri``: :func:`~krylearn.problems.simulate.write_mri_testset` options
        (``accel``, ``mask``, ``snr_db``, ``n_slices``, ``coils``, ``acs``,
        ``inverse_crime``, ``volume``); ``ct``:
        :func:`~krylearn.problems.simulate.write_ct_testset` options
        (``views``, ``noise``, ``n_slices``, ``inverse_crime``, ``source``, ``volume``).

    Returns
    -------
    str, the path written.
    """
    kind = _kind(kind)
    size = PRIOR_DEFAULTS[kind]["size"] if size is None else size
    if kind == "mri":
        return write_mri_testset(out, split=split, size=size, seed=seed, **options)
    return write_ct_testset(out, split=split, size=size, seed=seed, **options)
