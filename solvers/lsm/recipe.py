"""``krylearn train lsm`` / ``krylearn eval lsm``: Darcy files -> trained operator -> weights, card, log, plot.

:func:`train` reads the training, validation and test samples from Darcy
files (any layout :func:`krylearn.datasets.pde_formats.read_darcy` reads),
trains an LSM, FNO or U-Net with the paper's recipe
(:func:`krylearn.solvers.lsm.train_operator`), keeps the best-validation
weights and writes, on rank 0 only::

    <out>.safetensors   weights (network + normalisers)
    <out>.json          card: command, data (files, index ranges, grid), seed,
                        wall time, hardware, parameter count, metrics
    <out>-log.json      per-epoch train / validation relative L2 and lr, with the card
    <out>-loss.png      the loss curves

:func:`evaluate` measures a trained model on a slice of a file.

Splits. ``train`` = samples ``[0, ntrain)`` of ``data_train``, ``val`` =
``[ntrain, ntrain + nval)`` of the same file (disjoint, used only to select
the kept epoch); ``test`` = ``[0, ntest)`` of ``data_test`` when it is given
(the paper: train on ``smooth1``, test on ``smooth2``), otherwise the
``ntest`` samples right after train + val in ``data_train``.  The card says
which.

Examples
--------
>>> from krylearn.solvers.lsm.recipe import train, evaluate                        # doctest: +SKIP
>>> card = train("lsm", "darcy.h5", ntrain=900, nval=100, ntest=200,
...              checkpoint="lsm.ckpt", out="weights/lsm-darcy")             # doctest: +SKIP
>>> evaluate("weights/lsm-darcy", "darcy.h5", start=1000, count=200)["rel_l2_mean"]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
import warnings
from pathlib import Path

import h5py
import numpy as np
import scipy.io
import torch

from ...datasets.grids import same_points
from ...datasets.pde_formats import DarcyData, detect_darcy_format, read_darcy, refuse_time_series
from ...utils.atomic import atomic_write_text
from ...utils.checks import check_int
from ...utils.errors import FormatError
from ..learned import (check_writable, hardware, load_pretrained, pick_device, plot_losses, save_pretrained,
                       seed_everything)
from ..learned.weights import weights_stem
from . import KINDS, NormalizedOperator, build_network, predict, train_operator
from .train import describe_schedule

__all__ = ["DEFAULT_CONFIGS", "count_samples", "evaluate", "resolve_model", "train"]

#: Network settings used when ``config`` leaves them out.  ``lsm`` is the
#: paper's Darcy configuration (19.19 M parameters; the padding and patch are
#: planned from the grid: 85 -> patch 6, padded 96); ``fno`` / ``unet`` are the
#: baselines' common settings (FNO: 12 modes, width 32, 4 layers).
DEFAULT_CONFIGS = {
    "lsm": {"width": 64, "num_basis": 12, "num_token": 4, "patch": None, "levels": 5},
    "fno": {"modes": 12, "width": 32, "layers": 4},
    "unet": {"width": 32, "levels": 4},
}


#: Fewest points per side of a training grid (as ``krylearn data darcy`` writes).
MIN_POINTS = 3


# ------------------------------------------------------------------ helpers
def _check_file(name: str, path) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path to a Darcy file, got {type(path).__name__}")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{name}: no such file {path!r}")
    return path


def count_samples(path) -> int:
    """Number of samples in a Darcy file, read from its header (no sample is loaded).

    Raises ``FormatError`` for files :func:`~krylearn.datasets.pde_formats.read_darcy`
    does not read.
    """
    path = os.fspath(path)
    fmt = detect_darcy_format(path)
    try:
        if fmt in ("krylearn", "pdebench"):
            with h5py.File(path, "r") as f:
                refuse_time_series(f, path)
                if "nu" not in f or not hasattr(f["nu"], "shape") or len(f["nu"].shape) != 3:
                    raise FormatError("missing or not a (N, s1, s2) dataset", path=path, key="nu")
                return int(f["nu"].shape[0])
        if fmt == "fno-mat-v7.3":
            with h5py.File(path, "r") as f:
                if "coeff" not in f or not hasattr(f["coeff"], "shape") or len(f["coeff"].shape) != 3:
                    raise FormatError("missing or not a 3-D dataset", path=path, key="coeff")
                return int(f["coeff"].shape[-1])  # MATLAB column-major: (s2, s1, N)
        info = {name: shape for name, shape, _ in scipy.io.whosmat(path)}
    except OSError as e:
        raise FormatError(f"unreadable file ({e})", path=path) from None
    if "coeff" not in info or len(info["coeff"]) != 3:
        raise FormatError("missing or not a 3-D variable", path=path, key="coeff")
    return int(info["coeff"][0])


def _read(path, start: int, count: int, sub: int):
    return read_darcy(path, start=start, count=count, sub=sub)


def _range(path: str, start: int, count: int, sub: int, data) -> dict:
    return {"file": os.path.abspath(path), "name": os.path.basename(path), "start": int(start),
            "count": int(count), "sub": int(sub), "source": data.source}


def _provenance(attrs: dict) -> dict:
    keep = ("generator", "version", "seed", "n", "res", "sub", "offset", "alpha", "tau", "hi", "lo", "beta", "rtol",
            "solver", "grid", "equation", "matlab_version")
    out = {}
    for k in keep:
        if k in attrs:
            v = attrs[k]
            out[k] = v.tolist() if isinstance(v, np.ndarray) else v
    return json.loads(json.dumps(out, default=str))


def _rank() -> int:
    return int(os.environ.get("RANK", "0")) if int(os.environ.get("WORLD_SIZE", "1")) > 1 else 0


def resolve_model(model, device=None):
    """A :class:`~krylearn.solvers.lsm.NormalizedOperator` from a shipped name, a weights path or an object."""
    if isinstance(model, NormalizedOperator):
        return model if device is None else model.to(pick_device(device))
    if isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a name, a weights path or a NormalizedOperator, got {type(model).__name__}")
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(f"model must be a name, a weights path or a NormalizedOperator, got {type(model).__name__}")
    return load_pretrained(model, method="lsm", device=pick_device(device)).net


def _per_sample_rel_l2(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    n = pred.shape[0]
    p = pred.reshape(n, -1).astype(np.float64)
    t = true.reshape(n, -1).astype(np.float64)
    return np.linalg.norm(p - t, axis=1) / np.linalg.norm(t, axis=1)


def check_grid_size(resolution, sub: int, name: str) -> None:
    """``ValueError`` when sub-sampling by ``sub`` leaves ``name`` fewer than :data:`MIN_POINTS` points per side."""
    if min(resolution) < MIN_POINTS:
        raise ValueError(f"sub = {sub} leaves {name} a {resolution[0]}x{resolution[1]} grid; the operators need at "
                         f"least {MIN_POINTS} points per side: lower sub")


# ------------------------------------------------------------------ evaluate
def _check_resample(resample) -> None:
    if isinstance(resample, str):
        if resample != "native":
            raise ValueError(f"resample must be True, False or 'native', got {resample!r}")
    elif not isinstance(resample, (bool, np.bool_)):
        raise TypeError(f"resample must be True, False or 'native', got {resample!r}")


def _eval_samples(data, start, count, sub):
    """``(DarcyData, file, start, count)`` for :func:`evaluate`'s ``data`` argument."""
    if isinstance(data, DarcyData):
        start = data.start if start == 0 else check_int("start", start, 0)
        return data, data.path, start, len(data)
    file = _check_file("data", data)
    start = check_int("start", start, 0)
    if count is not None:
        count = check_int("count", count, 1)
    n_file = count_samples(file)
    if start >= n_file:
        raise ValueError(f"start = {start} is past the last sample of data ({file!r} holds {n_file}, numbered from 0)")
    if count is None:
        count = n_file - start
    if start + count > n_file or count < 1:
        raise ValueError(f"start + count = {start} + {count} exceeds the {n_file} samples of data ({file!r})")
    return _read(file, start, count, sub), file, start, count


def _timed_predict(predictor, d: DarcyData, batch_size: int, dev, resample) -> tuple[np.ndarray, float]:
    """Predictions for ``d.a`` (at ``d.coords``) and the seconds they took, after one warm-up batch."""
    flag = resample is True
    with warnings.catch_warnings():
        if resample == "native":
            warnings.simplefilter("ignore", UserWarning)
        predict(d.a[:min(batch_size, len(d))], model=predictor, coords=d.coords, batch_size=batch_size, device=dev,
                resample=flag)  # warm-up
        t0 = time.perf_counter()
        pred = predict(d.a, model=predictor, coords=d.coords, batch_size=batch_size, device=dev, resample=flag)
        return pred, time.perf_counter() - t0


def _grid_mismatch(predictor, d: DarcyData) -> str | None:
    """Why ``d``'s grid is not the predictor's training grid, or ``None`` when it is (to a quarter cell)."""
    train_grid, res = predictor.coordinates, tuple(d.resolution)
    if train_grid is None:
        return None
    train_res = tuple(predictor.resolution)
    if res != train_res:
        return f"data has a {res[0]}x{res[1]} grid but the model was trained on {train_res[0]}x{train_res[1]}"
    if not (same_points(d.x, train_grid[0]) and same_points(d.y, train_grid[1])):
        return (f"data's {res[0]}x{res[1]} points ({d.layout} layout) are not the model's training points "
                f"({predictor.layout} layout)")
    return None


def evaluate(model, data, *, start: int = 0, count: int | None = None, sub: int = 1, batch_size: int = 20,
             resample=False, device=None, return_predictions: bool = False) -> dict:
    """Relative L2 error and inference time of a trained operator on samples of a Darcy file.

    Parameters
    ----------
    model : str, Path or NormalizedOperator
        A shipped name (``"lsm-darcy"``), a weights stem written by
        :func:`train` / ``save_pretrained``, or a predictor object.
    data : str, Path or DarcyData
        A Darcy file (any layout ``read_darcy`` reads), or samples already
        read (then ``start``/``count``/``sub`` select nothing more and are
        only recorded; ``start`` defaults to the data's own ``start``).
    start, count, sub : int
        Samples ``[start, start + count)`` (``count=None``: to the end),
        spatial subsampling ``[::sub, ::sub]`` while reading.
    batch_size : int
        Fields per forward pass.
    resample : bool or "native"
        What to do when the data's grid differs from the model's training
        grid (another size, or other points: e.g. cell centres against
        nodes, compared by the file's coordinates): ``False`` raises
        ``ValueError``; ``True`` predicts on the training grid and
        interpolates back by the coordinates (``predict(..., coords=d.coords,
        resample=True)``); ``"native"`` runs the network on the data's grid
        directly.
    device : optional
        Default: CUDA when available.
    return_predictions : bool
        Also return the predictions ``(N, s1, s2)`` float32 under ``"prediction"``.

    Returns
    -------
    dict
        ``rel_l2_mean``, ``rel_l2_median``, ``rel_l2_max``, ``rel_l2`` (per
        sample, float64, ``||u_pred - u|| / ||u||`` over the whole grid),
        ``n``, ``seconds_per_sample`` (batched inference after one warm-up
        batch, reading excluded), ``resolution`` (data grid), ``layout``
        (the data's coordinates: ``"node"``, ``"cell"`` or ``"general"``),
        ``model_resolution`` (training grid), ``resample``, ``file``,
        ``start``, ``count``, ``sub``, ``device``.
    """
    _check_resample(resample)
    batch_size = check_int("batch_size", batch_size, 1)
    sub = check_int("sub", sub, 1)
    d, file, start, count = _eval_samples(data, start, count, sub)
    predictor = resolve_model(model, device)
    dev = next(predictor.parameters()).device
    res, train_res = tuple(d.resolution), predictor.resolution
    mismatch = _grid_mismatch(predictor, d)
    if mismatch and resample is False:
        raise ValueError(f"{mismatch} (sub={sub}); pick sub to match, or pass resample=True (predict on the "
                         "training grid, interpolate back by the coordinates) or resample='native'")
    if not len(d):
        raise ValueError("data holds no samples")
    pred, seconds = _timed_predict(predictor, d, batch_size, dev, resample)
    pred = np.asarray(pred, dtype=np.float32).reshape(d.u.shape)
    rel = _per_sample_rel_l2(pred, d.u)
    out = {"rel_l2_mean": float(rel.mean()), "rel_l2_median": float(np.median(rel)), "rel_l2_max": float(rel.max()),
           "rel_l2": rel.tolist(), "n": len(d), "seconds_per_sample": seconds / len(d),
           "resolution": list(res), "layout": d.layout,
           "model_resolution": list(train_res) if train_res is not None else None,
           "resample": resample if isinstance(resample, str) else bool(resample),
           "file": os.path.abspath(file) if file else None, "start": int(start), "count": int(count),
           "sub": int(sub), "device": str(dev), "batch_size": batch_size}
    if return_predictions:
        out["prediction"] = pred
    return out


# ------------------------------------------------------------------ train
def _check_train_args(kind, data_train, data_test, sub, ntrain, nval, ntest, seed, config):
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    if data_train is None:
        raise ValueError("data_train is required (a Darcy file)")
    data_train = _check_file("data_train", data_train)
    if data_test is not None:
        data_test = _check_file("data_test", data_test)
    if config is not None and not isinstance(config, dict):
        raise TypeError(f"config must be a dict, got {type(config).__name__}")
    # ntrain >= 2: the normalisers need two samples
    return (data_train, data_test, check_int("sub", sub, 1), check_int("ntrain", ntrain, 2),
            check_int("nval", nval, 0), check_int("ntest", ntest, 1), check_int("seed", seed, 0))


def _test_split(data_train, data_test, ntrain, nval, ntest) -> tuple[str, int, str]:
    """``(test file, first test sample, origin)``; ``ValueError`` when the files are too short."""
    n_file = count_samples(data_train)
    if ntrain + nval > n_file:
        raise ValueError(f"ntrain + nval = {ntrain} + {nval} exceeds the {n_file} samples of data_train "
                         f"({data_train!r})")
    if data_test is None:
        if ntrain + nval + ntest > n_file:
            raise ValueError(f"ntest = {ntest}: without data_test the test samples follow train + val, but "
                             f"data_train ({data_train!r}) holds {n_file} samples, not ntrain + nval + ntest = "
                             f"{ntrain + nval + ntest}; lower ntest/ntrain/nval or pass data_test")
        return data_train, ntrain + nval, "data_train: the samples after train + val"
    n_test_file = count_samples(data_test)
    if ntest > n_test_file:
        raise ValueError(f"ntest = {ntest} exceeds the {n_test_file} samples of data_test ({data_test!r})")
    return data_test, 0, "data_test: its first ntest samples"


def _out_stem(out) -> tuple[Path | None, int]:
    """``(weights stem or None, rank)``; the stem's folder is checked writable on rank 0."""
    stem, rank = (weights_stem(out) if out is not None else None), _rank()
    if stem is not None and rank == 0:
        check_writable(stem.parent, "out")
    return stem, rank


def _read_splits(data_train, test_file, test_start, ntrain, nval, ntest, sub):
    """``(train + val samples, test samples, seconds)``; ``ValueError`` when their grids differ."""
    t_read = time.perf_counter()
    d = _read(data_train, 0, ntrain + nval, sub)
    dt = _read(test_file, test_start, ntest, sub)
    check_grid_size(d.resolution, sub, "data_train")
    if dt.resolution != d.resolution:
        raise ValueError(f"data_test has a {dt.resolution[0]}x{dt.resolution[1]} grid at sub={sub}, data_train "
                         f"{d.resolution[0]}x{d.resolution[1]}: the files must share a grid")
    if not (same_points(dt.x, d.x) and same_points(dt.y, d.y)):
        raise ValueError(f"data_test's coordinates ({dt.layout} layout) are not data_train's ({d.layout} layout): "
                         "the files must share a grid")
    return d, dt, time.perf_counter() - t_read


def _fresh_network(kind: str, config: dict | None, seed: int):
    """A new network of ``kind`` (initial weights from ``seed`` only) and its parameter count."""
    seed_everything(seed)
    try:
        net = build_network(kind, {**DEFAULT_CONFIGS[kind], **(config or {})})
    except TypeError as e:
        raise ValueError(f"config: {e}") from None
    return net, int(sum(p.numel() for p in net.parameters()))


def _card(*, kind, name, predictor, command, d, dt, splits, sub, seed, result, read_seconds, n_params, train_args,
          half) -> dict:
    """The weight card, with the test metric of the kept weights measured on ``dt``."""
    data_train, ntrain, nval, test_file, test_start, ntest, test_origin = splits
    batch_size, lr, weight_decay, step_size, gamma, schedule, epochs, bf16 = train_args
    dev = next(predictor.parameters()).device
    test = evaluate(predictor, dt, batch_size=batch_size, device=dev)
    return {
        "name": name,
        "kind": kind,
        "paper": "Wu et al., Solving High-Dimensional PDEs with Latent Spectral Models, ICML 2023",
        "config": dict(predictor.config),
        "command": command or " ".join(shlex.quote(a) for a in sys.argv),
        "data": {
            "train": _range(data_train, 0, ntrain, sub, d),
            "val": _range(data_train, ntrain, nval, sub, d) if nval else None,
            "test": {**_range(test_file, test_start, ntest, sub, dt), "origin": test_origin},
            "resolution": list(d.resolution),
            "layout": d.layout,
            "provenance": _provenance(d.attrs),
        },
        "resolution": list(d.resolution),
        "seed": seed,
        "seconds": round(float(result["seconds"]), 2),
        "read_seconds": round(read_seconds, 2),
        "hardware": hardware(dev),
        "parameters": n_params,
        "metrics": {
            "best_val_rel_l2": result["best_val"],
            "best_epoch": result["best_epoch"],
            "test_rel_l2": test["rel_l2_mean"],
            "test_rel_l2_median": test["rel_l2_median"],
            "test_rel_l2_max": test["rel_l2_max"],
            "train_rel_l2_last_epoch": result["train_loss"][-1] if result["train_loss"] else None,
            "metric": "relative L2 ||u_pred - u|| / ||u|| per sample over the whole grid, mean over samples",
        },
        "epochs": int(result["epochs"]),
        "training": {"batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
                     "optimizer": "Adam, L2 weight decay added to the gradient",
                     "scheduler": describe_schedule(schedule, epochs=epochs, step_size=step_size, gamma=gamma),
                     "autocast": "bfloat16 (training forward pass)" if bf16 else "none",
                     "loss": "relative L2 summed over the batch, in physical units",
                     "normalization": "pointwise unit Gaussian on a and u (training samples)",
                     "selection": "epoch with the lowest mean validation relative L2" if nval else "last epoch",
                     "world_size": int(result["world_size"]), "device": str(dev),
                     "weights_dtype": "float16" if half else "float32"},
        "torch": torch.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def _write_outputs(stem: Path, predictor, card: dict, result: dict, live_log: Path, half: bool, title: str) -> None:
    history = [{"epoch": i + 1, "train": t, "val": v, "lr": r}
               for i, (t, v, r) in enumerate(zip(result["train_loss"], result["val_loss"], result["lr"]))]
    save_pretrained(predictor, card, stem, half=half)
    atomic_write_text(stem.with_name(stem.name + "-log.json"),
                      json.dumps({"card": card, "history": history}, indent=1) + "\n")
    records = [{"epoch": h["epoch"], "loss": h["train"], "val": h["val"]} for h in history]
    plot_losses(records, stem.with_name(stem.name + "-loss.png"), title=title, unit="epoch",
                ylabel="relative L2 error", best=result["best_epoch"] if any(h["val"] is not None for h in history)
                else None)
    if live_log.exists():
        live_log.unlink()  # superseded by -log.json


def train(kind: str = "lsm", data_train=None, data_test=None, *, sub: int = 1, ntrain: int = 1000,
          nval: int = 100, ntest: int = 200, config: dict | None = None, epochs: int = 501,
          batch_size: int = 20, lr: float = 5e-4, weight_decay: float = 1e-4, step_size: int = 100,
          gamma: float = 0.5, seed: int = 0, checkpoint=None, resume: bool = True, device=None, out=None,
          name: str | None = None, half: bool = False, progress: bool = True, command: str | None = None,
          return_model: bool = False, max_minutes: float | None = None, bf16: bool = False, schedule: str = "step"):
    """Train an operator on Darcy files and write its weights, card, log and loss plot.

    Parameters
    ----------
    kind : {"lsm", "fno", "unet"}
    data_train : str or Path
        Darcy file with at least ``ntrain + nval`` samples (``+ ntest`` when ``data_test`` is None).
    data_test : str or Path, optional
        File whose first ``ntest`` samples are the test set (same grid and coordinates after ``sub``).
    sub : int
        Spatial subsampling ``[::sub, ::sub]`` applied to both files.
    ntrain, nval, ntest : int
        Split sizes (see the module docstring); ``nval = 0`` keeps the last epoch.
    config : dict, optional
        Network options overriding :data:`DEFAULT_CONFIGS` ``[kind]``.
    epochs, batch_size, lr, weight_decay, step_size, gamma, seed, schedule :
        The paper's recipe: 501, 20, 5e-4, 1e-4, StepLR(100, 0.5), 0; ``schedule`` "cosine"/"onecycle" replace StepLR.
    checkpoint : str or Path, optional
        Resumable checkpoint, written every epoch (atomic); ``resume`` picks it up.
    device : optional
        Default CUDA when available; ``torchrun`` runs DDP (see ``train_operator``).
    out : str or Path, optional
        Weights stem: ``out.safetensors``, ``out.json``, ``out-log.json``,
        ``out-loss.png`` (folder created).  ``None`` writes nothing.
    name, command : str, optional
        Recorded in the card (defaults: ``out``'s file name or ``"<kind>-darcy"``; this process's ``sys.argv``).
    half, bf16 : bool
        Store float16 weights (the card's test metric is the float32 one);
        bfloat16 autocast in the training forward pass (:func:`train_operator`).
    progress, return_model : bool
        A progress bar; return ``(card, predictor)`` instead of the card.
    max_minutes : float, optional
        Wall-time budget of the training loop: stop (and save) after the
        first epoch past it; the card records the epochs done.

    Returns
    -------
    dict
        The card (``{}`` on ranks other than 0 under DDP): name, kind, config,
        command, data (files, index ranges, resolution, provenance), seed,
        seconds, hardware, parameters, metrics (best validation and test
        relative L2), epochs, training (the hyper-parameters).

    Raises
    ------
    ValueError
        Unknown ``kind``; splits beyond the files' samples; grids that differ
        between the files.
    """
    data_train, data_test, sub, ntrain, nval, ntest, seed = _check_train_args(
        kind, data_train, data_test, sub, ntrain, nval, ntest, seed, config)
    test_file, test_start, test_origin = _test_split(data_train, data_test, ntrain, nval, ntest)
    stem, rank = _out_stem(out)
    d, dt, read_seconds = _read_splits(data_train, test_file, test_start, ntrain, nval, ntest, sub)
    net, n_params = _fresh_network(kind, config, seed)
    live_log = stem.with_name(stem.name + "-log.jsonl") if stem is not None else None
    result = train_operator(net, d.a[:ntrain], d.u[:ntrain], *((d.a[ntrain:], d.u[ntrain:]) if nval else ()),
                            epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                            step_size=step_size, gamma=gamma, seed=seed, checkpoint=checkpoint, resume=resume,
                            device=device, progress=progress, log=live_log, max_minutes=max_minutes, bf16=bf16,
                            schedule=schedule)
    if rank != 0:
        return ({}, result["predictor"]) if return_model else {}
    predictor = result["predictor"]
    predictor.set_coordinates(d.x, d.y)
    name = name or (stem.name if stem is not None else f"{kind}-darcy")
    card = _card(kind=kind, name=name, predictor=predictor, command=command, d=d, dt=dt,
                 splits=(data_train, ntrain, nval, test_file, test_start, ntest, test_origin), sub=sub, seed=seed,
                 result=result, read_seconds=read_seconds, n_params=n_params,
                 train_args=(batch_size, lr, weight_decay, step_size, gamma, schedule, epochs, bf16), half=half)
    if stem is not None:
        _write_outputs(stem, predictor, card, result, live_log, half,
                       f"{name}: {kind}, {d.resolution[0]}x{d.resolution[1]}, {ntrain} training samples")
    return (card, predictor) if return_model else card
