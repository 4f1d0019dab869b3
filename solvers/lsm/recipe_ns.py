"""``krylearn train lsm --task ns`` / ``eval lsm`` on Navier–Stokes files: vorticity series -> weights, card, log, plot.

:func:`train_ns` reads vorticity time series (any layout
:func:`krylearn.datasets.ns_formats.read_navier_stokes` reads: ours, or FNO's
``NavierStokes_V1e-5_N1200_T20.mat``), trains an LSM, FNO or U-Net
autoregressively (:func:`krylearn.solvers.lsm.rollout.train_rollout`: 10
frames in, one out, 10-step rollout, loss summed over the steps), keeps the
best-validation weights and writes ``<out>.safetensors``, ``<out>.json`` (the
card, with ``"task": "ns"`` and the rollout settings), ``<out>-log.json`` and
``<out>-loss.png``.  :func:`evaluate_ns` measures a trained model.

Splits (the paper's: first 1000 train, last 200 test): ``train`` = samples
``[0, ntrain)`` of ``data_train``, ``val`` = the next ``nval`` (selection
only), ``test`` = the *last* ``ntest`` samples of ``data_train`` or the first
``ntest`` of ``data_test``.

Network defaults (:data:`NS_CONFIGS`): LSM as the authors' NS script (width
64, 12 bases, 4 tokens, 5 levels; the planned patch at 64^2 is their 4);
FNO as FNO's ``fourier_2d_time.py`` (12 modes, width 20, 4 layers, no
padding: the domain is periodic).  Inputs are not normalised (as both).
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from pathlib import Path

import torch

from ...datasets.ns_formats import NSData, count_ns_samples, read_navier_stokes
from ...utils.atomic import atomic_write_text
from ...utils.checks import check_int
from ..learned import check_writable, hardware, plot_losses, save_pretrained, seed_everything
from ..learned.weights import weights_stem
from .networks import KINDS, build_network
from .recipe import check_grid_size, resolve_model
from .rollout import rollout_errors, split_frames, train_rollout
from .train import check_optimizer_args, describe_schedule

__all__ = ["NS_CONFIGS", "evaluate_ns", "train_ns"]

#: Network settings per kind when ``config`` leaves them out (``in_channels`` is ``t_in``).
NS_CONFIGS = {
    "lsm": {"width": 64, "num_basis": 12, "num_token": 4, "patch": None, "levels": 5},
    "fno": {"modes": 12, "width": 20, "layers": 4, "padding": 0},
    "unet": {"width": 32, "levels": 4},
}


def _samples(path, start, count, sub, name) -> NSData:
    d = read_navier_stokes(path, start=start, count=count, sub=sub)
    if len(d) < count:
        raise ValueError(f"{name}: {path!r} holds too few samples for [{start}, {start + count})")
    return d


def _splits(data_train, data_test, ntrain, nval, ntest, sub):
    n = count_ns_samples(data_train)
    if ntrain + nval > n or (data_test is None and ntrain + nval + ntest > n):
        raise ValueError(f"ntrain + nval{' + ntest' if data_test is None else ''} = {ntrain} + {nval}"
                         f"{f' + {ntest}' if data_test is None else ''} exceeds the {n} samples of data_train "
                         f"({data_train!r}); the paper's split of FNO's 1200 samples is ntrain 1000, nval 0, ntest 200")
    d = _samples(data_train, 0, ntrain + nval, sub, "data_train")
    check_grid_size(d.resolution, sub, "data_train")
    test_file, test_start = (data_train, n - ntest) if data_test is None else (data_test, 0)
    dt = _samples(test_file, test_start, ntest, sub, "data_test")
    if dt.resolution != d.resolution or dt.frames != d.frames:
        raise ValueError(f"data_test has {dt.frames} frames of {dt.resolution}, data_train {d.frames} of "
                         f"{d.resolution}: the files must match")
    return d, dt, test_file, test_start


def _range(path, start, count, sub, data) -> dict:
    return {"file": os.path.abspath(path), "name": os.path.basename(path), "start": int(start),
            "count": int(count), "sub": int(sub), "source": data.source}


def _provenance(attrs: dict) -> dict:
    keep = ("generator", "version", "seed", "n", "size", "res", "steps", "record_every", "nu", "dt", "dtype",
            "matlab_version")
    return json.loads(json.dumps({k: attrs[k] for k in keep if k in attrs}, default=str))


def evaluate_ns(model, data, *, start: int = 0, count: int | None = None, sub: int = 1, batch_size: int = 20,
                device=None) -> dict:
    """Rollout errors of a trained NS model on samples of a file (or on :class:`NSData`).

    The rollout settings (``t_in``, ``steps``, ``first``) come from the model's card.

    Returns
    -------
    dict
        ``test_l2_full`` (mean over samples of the relative L2 of the whole
        predicted sequence), ``rel_l2`` (per sample), ``per_step`` (mean
        relative L2 of each predicted frame), ``n``, ``seconds_per_sample``
        (the whole rollout), ``file``, ``start``, ``t_in``, ``steps``, ``first``.
    """
    predictor = resolve_model(model, device)
    card = getattr(predictor, "card", None) or {}
    ro = card.get("rollout") or {}
    t_in = int(ro.get("t_in", predictor.in_channels))
    steps, first = int(ro.get("steps", 10)), int(ro.get("first", 1))
    if isinstance(data, NSData):
        d, file = data, data.path
    else:
        count = None if count is None else check_int("count", count, 1)
        d, file = read_navier_stokes(data, start=start, count=count, sub=check_int("sub", sub, 1)), data
    if not len(d):
        raise ValueError(f"start = {start} is past the last sample of data ({file!r}, numbered from 0)")
    x, y = split_frames(d.w, t_in, steps, first, "data")
    dev = next(predictor.parameters()).device
    t0 = time.perf_counter()
    err = rollout_errors(predictor, x, y, check_int("batch_size", batch_size, 1), dev)
    seconds = time.perf_counter() - t0
    full = err["full"].numpy()
    return {"test_l2_full": float(full.mean()), "rel_l2": full.tolist(), "per_step": err["per_step"].tolist(),
            "n": len(d), "seconds_per_sample": seconds / len(d), "file": os.path.abspath(file) if file else None,
            "start": int(d.start), "t_in": t_in, "steps": steps, "first": first, "device": str(dev)}


def _card(kind, name, predictor, command, d, dt, where, seed, result, n_params, rollout_args, train_args):
    data_train, ntrain, nval, test_file, test_start, ntest, sub = where
    t_in, steps, first = rollout_args
    predictor.card = {"rollout": {"t_in": t_in, "steps": steps, "first": first}}
    test = evaluate_ns(predictor, dt, batch_size=train_args["batch_size"])
    return {
        "name": name, "kind": kind, "task": "ns",
        "paper": "Wu et al., Solving High-Dimensional PDEs with Latent Spectral Models, ICML 2023",
        "config": dict(predictor.config),
        "command": command or " ".join(shlex.quote(a) for a in sys.argv),
        "rollout": {"t_in": t_in, "steps": steps, "first": first,
                    "frames": f"in {first}..{first + t_in - 1}, out {first + t_in}..{first + t_in + steps - 1}"},
        "data": {"train": _range(data_train, 0, ntrain, sub, d),
                 "val": _range(data_train, ntrain, nval, sub, d) if nval else None,
                 "test": _range(test_file, test_start, ntest, sub, dt),
                 "resolution": list(d.resolution), "provenance": _provenance(d.attrs)},
        "seed": seed, "seconds": round(float(result["seconds"]), 2),
        "hardware": hardware(next(predictor.parameters()).device), "parameters": n_params,
        "metrics": {"test_l2_full": test["test_l2_full"], "test_l2_per_step": test["per_step"],
                    "best_val_l2_full": result["best_val"], "best_epoch": result["best_epoch"],
                    "train_l2_full_last_epoch": result["train_loss"][-1] if result["train_loss"] else None,
                    "metric": "relative L2 of the whole predicted sequence per sample, mean over samples"},
        "epochs": int(result["epochs"]),
        "training": {**train_args, "optimizer": "Adam, L2 weight decay added to the gradient",
                     "loss": "relative L2 per predicted frame, summed over the batch and the rollout steps",
                     "normalization": "none", "world_size": int(result["world_size"])},
        "torch": torch.__version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def _write(stem: Path, predictor, card, result, title) -> None:
    history = [{"epoch": i + 1, "train": t, "val": v, "lr": r}
               for i, (t, v, r) in enumerate(zip(result["train_loss"], result["val_loss"], result["lr"]))]
    save_pretrained(predictor, card, stem)
    atomic_write_text(stem.with_name(stem.name + "-log.json"),
                      json.dumps({"card": card, "history": history}, indent=1) + "\n")
    plot_losses([{"epoch": h["epoch"], "loss": h["train"], "val": h["val"]} for h in history],
                stem.with_name(stem.name + "-loss.png"), title=title, unit="epoch",
                ylabel="relative L2 of the rollout", best=result["best_epoch"] if card["data"]["val"] else None)
    live = stem.with_name(stem.name + "-log.jsonl")
    if live.exists():
        live.unlink()


def _check_rollout_args(t_in, steps, first, lr, weight_decay, gamma) -> None:
    """``ValueError`` naming the first bad rollout or optimiser setting (as ``train`` checks Darcy's)."""
    check_int("t_in", t_in, 1)
    check_int("steps", steps, 1)
    check_int("first", first, 0)
    check_optimizer_args(lr, weight_decay, gamma)


def train_ns(kind: str = "lsm", data_train=None, data_test=None, *, sub: int = 1, ntrain: int = 1000,
             nval: int = 0, ntest: int = 200, t_in: int = 10, steps: int = 10, first: int = 1,
             config: dict | None = None, epochs: int = 501, batch_size: int = 20, lr: float = 5e-4,
             weight_decay: float = 1e-4, step_size: int = 100, gamma: float = 0.5, seed: int = 0, checkpoint=None,
             resume: bool = True, device=None, out=None, name: str | None = None, progress: bool = True,
             command: str | None = None, max_minutes: float | None = None, schedule: str = "step") -> dict:
    """Train an autoregressive NS operator on vorticity files; write weights, card, log and plot.

    Parameters are those of :func:`krylearn.solvers.lsm.recipe.train` plus the
    rollout (``t_in`` frames in from frame ``first``, ``steps`` frames out);
    ``nval`` defaults to 0 (the paper has no validation split; the last epoch
    is kept) and the test samples are the last ``ntest`` of ``data_train``
    unless ``data_test`` is given.

    Returns
    -------
    dict
        The card (``{}`` on ranks other than 0 under DDP).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    if data_train is None or not os.path.isfile(data_train):
        raise FileNotFoundError(f"data_train: no such file {data_train!r}")
    ntrain, nval, ntest, sub = (check_int(k, v, m) for k, v, m in
                                (("ntrain", ntrain, 1), ("nval", nval, 0), ("ntest", ntest, 1), ("sub", sub, 1)))
    _check_rollout_args(t_in, steps, first, lr, weight_decay, gamma)
    stem = weights_stem(out) if out is not None else None
    if stem is not None:
        check_writable(stem.parent, "out")
    d, dt, test_file, test_start = _splits(data_train, data_test, ntrain, nval, ntest, sub)
    if first + t_in + steps > d.frames:
        raise ValueError(f"data_train has {d.frames} frames, too few for t_in = {t_in} input frames from frame "
                         f"{first} and steps = {steps} rollout steps ({first + t_in + steps} frames)")
    seed_everything(seed)
    try:
        net = build_network(kind, {**NS_CONFIGS[kind], **(config or {}), "in_channels": t_in, "out_channels": 1})
    except TypeError as e:
        raise ValueError(f"config: {e}") from None
    n_params = int(sum(p.numel() for p in net.parameters()))
    train_args = {"batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
                  "scheduler": describe_schedule(schedule, epochs=epochs, step_size=step_size, gamma=gamma)}
    result = train_rollout(net, d.w[:ntrain], d.w[ntrain:] if nval else None, t_in=t_in, steps=steps, first=first,
                           epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                           step_size=step_size, gamma=gamma, seed=seed, checkpoint=checkpoint, resume=resume,
                           device=device, progress=progress, max_minutes=max_minutes, schedule=schedule,
                           log=stem.with_name(stem.name + "-log.jsonl") if stem is not None else None)
    if int(os.environ.get("RANK", "0")) != 0 and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return {}
    predictor = result["predictor"]
    name = name or (stem.name if stem is not None else f"{kind}-ns")
    card = _card(kind, name, predictor, command, d, dt, (data_train, ntrain, nval, test_file, test_start, ntest, sub),
                 seed, result, n_params, (t_in, steps, first), train_args)
    if stem is not None:
        _write(stem, predictor, card, result, f"{name}: {kind}, NS {d.resolution[0]}x{d.resolution[1]}, "
                                              f"{ntrain} training samples")
    return card
