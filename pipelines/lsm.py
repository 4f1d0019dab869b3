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
>>> from krylearn.pipelines.lsm import train, evaluate                        # doctest: +SKIP
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
from pathlib import Path

import numpy as np

from ..utils.atomic import atomic_path, atomic_write_text
from ..utils.checks import check_int

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
    import h5py

    from ..utils.errors import FormatError
    from ..datasets.pde_formats import detect_darcy_format

    path = os.fspath(path)
    fmt = detect_darcy_format(path)
    try:
        if fmt in ("krylearn", "pdebench"):
            with h5py.File(path, "r") as f:
                if "nu" not in f or not hasattr(f["nu"], "shape") or len(f["nu"].shape) != 3:
                    raise FormatError("missing or not a (N, s1, s2) dataset", path=path, key="nu")
                return int(f["nu"].shape[0])
        if fmt == "fno-mat-v7.3":
            with h5py.File(path, "r") as f:
                if "coeff" not in f or not hasattr(f["coeff"], "shape") or len(f["coeff"].shape) != 3:
                    raise FormatError("missing or not a 3-D dataset", path=path, key="coeff")
                return int(f["coeff"].shape[-1])  # MATLAB column-major: (s2, s1, N)
        import scipy.io

        info = {name: shape for name, shape, _ in scipy.io.whosmat(path)}
    except OSError as e:
        raise FormatError(f"unreadable file ({e})", path=path) from None
    if "coeff" not in info or len(info["coeff"]) != 3:
        raise FormatError("missing or not a 3-D variable", path=path, key="coeff")
    return int(info["coeff"][0])


def _read(path, start: int, count: int, sub: int):
    from ..datasets.pde_formats import read_darcy

    return read_darcy(path, start=start, count=count, sub=sub)


def _range(path: str, start: int, count: int, sub: int, data) -> dict:
    return {"file": os.path.abspath(path), "name": os.path.basename(path), "start": int(start),
            "count": int(count), "sub": int(sub), "source": data.source}


def _provenance(attrs: dict) -> dict:
    keep = ("generator", "version", "seed", "n", "res", "sub", "alpha", "tau", "hi", "lo", "beta", "rtol",
            "solver", "grid", "equation", "matlab_version")
    out = {}
    for k in keep:
        if k in attrs:
            v = attrs[k]
            out[k] = v.tolist() if isinstance(v, np.ndarray) else v
    return json.loads(json.dumps(out, default=str))


def _rank() -> int:
    return int(os.environ.get("RANK", "0")) if int(os.environ.get("WORLD_SIZE", "1")) > 1 else 0


def _stem(out) -> Path:
    p = Path(out)
    return p.with_suffix("") if p.suffix in (".safetensors", ".json") else p


def _plot_losses(history: list, best_epoch: int, path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    ax.semilogy(epochs, [r["train"] for r in history], label="train (mean over the epoch)")
    if any(r["val"] is not None for r in history):
        ax.semilogy(epochs, [r["val"] if r["val"] is not None else np.nan for r in history], label="validation")
        ax.axvline(best_epoch, color="gray", ls=":", lw=1, label=f"kept epoch {best_epoch}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("relative L2 error")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def resolve_model(model, device=None):
    """A :class:`~krylearn.solvers.lsm.NormalizedOperator` from a shipped name, a weights path or an object."""
    import torch

    from ..solvers.lsm import NormalizedOperator, load_pretrained
    from ..solvers.training import pick_device

    if isinstance(model, NormalizedOperator):
        return model if device is None else model.to(pick_device(device))
    if isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a name, a weights path or a NormalizedOperator, got {type(model).__name__}")
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(f"model must be a name, a weights path or a NormalizedOperator, got {type(model).__name__}")
    return load_pretrained(model, device=pick_device(device))


def _per_sample_rel_l2(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    n = pred.shape[0]
    p = pred.reshape(n, -1).astype(np.float64)
    t = true.reshape(n, -1).astype(np.float64)
    return np.linalg.norm(p - t, axis=1) / np.linalg.norm(t, axis=1)


# ------------------------------------------------------------------ evaluate
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
        grid: ``False`` raises ``ValueError``; ``True`` predicts on the
        training grid and interpolates back (``predict(..., resample=True)``);
        ``"native"`` runs the network on the data's grid directly.
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
        batch, reading excluded), ``resolution`` (data grid),
        ``model_resolution`` (training grid), ``resample``, ``file``,
        ``start``, ``count``, ``sub``, ``device``.
    """
    from ..datasets.pde_formats import DarcyData
    from ..solvers.lsm import predict

    if isinstance(resample, str):
        if resample != "native":
            raise ValueError(f"resample must be True, False or 'native', got {resample!r}")
    elif not isinstance(resample, (bool, np.bool_)):
        raise TypeError(f"resample must be True, False or 'native', got {resample!r}")
    batch_size = check_int("batch_size", batch_size, 1)
    sub = check_int("sub", sub, 1)
    if isinstance(data, DarcyData):
        d = data
        file = d.path
        start = d.start if start == 0 else check_int("start", start, 0)
        count = len(d)
    else:
        file = _check_file("data", data)
        start = check_int("start", start, 0)
        if count is not None:
            count = check_int("count", count, 1)
        n_file = count_samples(file)
        if count is None:
            count = n_file - start
        if start + count > n_file or count < 1:
            raise ValueError(f"start + count = {start} + {count} exceeds the {n_file} samples of data ({file!r})")
        d = _read(file, start, count, sub)
    predictor = resolve_model(model, device)
    dev = next(predictor.parameters()).device
    res, train_res = tuple(d.resolution), predictor.resolution
    if train_res is not None and res != tuple(train_res) and resample is False:
        raise ValueError(f"data has a {res[0]}x{res[1]} grid (sub={sub}) but the model was trained on "
                         f"{train_res[0]}x{train_res[1]}; pick sub to match, or pass resample=True "
                         "(predict on the training grid, interpolate back) or resample='native'")
    if not len(d):
        raise ValueError("data holds no samples")
    flag = resample is True
    import warnings

    with warnings.catch_warnings():
        if resample == "native":
            warnings.simplefilter("ignore", UserWarning)
        predict(d.a[:min(batch_size, len(d))], model=predictor, batch_size=batch_size, device=dev,
                resample=flag)  # warm-up
        t0 = time.perf_counter()
        pred = predict(d.a, model=predictor, batch_size=batch_size, device=dev, resample=flag)
        seconds = time.perf_counter() - t0
    pred = np.asarray(pred, dtype=np.float32).reshape(d.u.shape)
    rel = _per_sample_rel_l2(pred, d.u)
    out = {"rel_l2_mean": float(rel.mean()), "rel_l2_median": float(np.median(rel)), "rel_l2_max": float(rel.max()),
           "rel_l2": rel.tolist(), "n": len(d), "seconds_per_sample": seconds / len(d),
           "resolution": list(res), "model_resolution": list(train_res) if train_res is not None else None,
           "resample": resample if isinstance(resample, str) else bool(resample),
           "file": os.path.abspath(file) if file else None, "start": int(start), "count": int(count),
           "sub": int(sub), "device": str(dev), "batch_size": batch_size}
    if return_predictions:
        out["prediction"] = pred
    return out


# ------------------------------------------------------------------ train
def train(kind: str = "lsm", data_train=None, data_test=None, *, sub: int = 1, ntrain: int = 1000,
          nval: int = 100, ntest: int = 200, config: dict | None = None, epochs: int = 501,
          batch_size: int = 20, lr: float = 5e-4, weight_decay: float = 1e-4, step_size: int = 100,
          gamma: float = 0.5, seed: int = 0, checkpoint=None, resume: bool = True, device=None, out=None,
          name: str | None = None, half: bool = False, progress: bool = True, command: str | None = None,
          return_model: bool = False):
    """Train an operator on Darcy files and write its weights, card, log and loss plot.

    Parameters
    ----------
    kind : {"lsm", "fno", "unet"}
    data_train : str or Path
        Darcy file with at least ``ntrain + nval`` samples (``+ ntest`` when
        ``data_test`` is None).
    data_test : str or Path, optional
        File whose first ``ntest`` samples are the test set (same grid after ``sub``).
    sub : int
        Spatial subsampling ``[::sub, ::sub]`` applied to both files.
    ntrain, nval, ntest : int
        Split sizes (see the module docstring); ``nval = 0`` keeps the last epoch.
    config : dict, optional
        Network options overriding :data:`DEFAULT_CONFIGS` ``[kind]``.
    epochs, batch_size, lr, weight_decay, step_size, gamma, seed :
        The paper's recipe: 501, 20, 5e-4, 1e-4, StepLR(100, 0.5), 0.
    checkpoint : str or Path, optional
        Resumable checkpoint, written every epoch (atomic); ``resume`` picks it up.
    device : optional
        Default CUDA when available; ``torchrun`` runs DDP (see ``train_operator``).
    out : str or Path, optional
        Weights stem: ``out.safetensors``, ``out.json``, ``out-log.json``,
        ``out-loss.png`` (folder created).  ``None`` writes nothing.
    name : str, optional
        Card name (default: ``out``'s file name, else ``"<kind>-darcy"``).
    half : bool
        Store the weights in float16 (the card's test metric is the float32 one).
    progress : bool
        Progress bars.
    command : str, optional
        Recorded in the card (default: this process's ``sys.argv``).
    return_model : bool
        Return ``(card, predictor)`` instead of the card.

    Returns
    -------
    dict
        The card (``{}`` on ranks other than 0 under DDP): ``name``, ``kind``,
        ``config``, ``command``, ``data`` (train/val/test files and index
        ranges, ``resolution``, the generator's provenance), ``seed``,
        ``seconds`` (training wall time), ``hardware``, ``parameters``,
        ``metrics`` (``best_val_rel_l2``, ``best_epoch``, ``test_rel_l2``
        (mean) with median/max, ``train_rel_l2_last_epoch``), ``epochs``,
        ``training`` (the hyper-parameters).

    Raises
    ------
    ValueError
        Unknown ``kind``; ``ntrain + nval`` (or ``+ ntest``) beyond
        ``data_train``; ``ntest`` beyond ``data_test``; grids that differ
        between the files.
    """
    import torch

    from ..solvers.lsm import build_network, save_pretrained, train_operator
    from ..solvers.lsm.train import KINDS
    from ..solvers.training import hardware, seed_everything

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    if data_train is None:
        raise ValueError("data_train is required (a Darcy file)")
    data_train = _check_file("data_train", data_train)
    if data_test is not None:
        data_test = _check_file("data_test", data_test)
    sub = check_int("sub", sub, 1)
    ntrain = check_int("ntrain", ntrain, 2)  # the normalisers need two samples
    nval = check_int("nval", nval, 0)
    ntest = check_int("ntest", ntest, 1)
    seed = check_int("seed", seed, 0)
    if config is not None and not isinstance(config, dict):
        raise TypeError(f"config must be a dict, got {type(config).__name__}")

    n_file = count_samples(data_train)
    if ntrain + nval > n_file:
        raise ValueError(f"ntrain + nval = {ntrain} + {nval} exceeds the {n_file} samples of data_train "
                         f"({data_train!r})")
    if data_test is None:
        if ntrain + nval + ntest > n_file:
            raise ValueError(f"ntest = {ntest}: without data_test the test samples follow train + val, but "
                             f"data_train ({data_train!r}) holds {n_file} samples, not ntrain + nval + ntest = "
                             f"{ntrain + nval + ntest}; lower ntest/ntrain/nval or pass data_test")
        test_file, test_start = data_train, ntrain + nval
        test_origin = "data_train: the samples after train + val"
    else:
        n_test_file = count_samples(data_test)
        if ntest > n_test_file:
            raise ValueError(f"ntest = {ntest} exceeds the {n_test_file} samples of data_test ({data_test!r})")
        test_file, test_start = data_test, 0
        test_origin = "data_test: its first ntest samples"

    t_read = time.perf_counter()
    d = _read(data_train, 0, ntrain + nval, sub)
    dt = _read(test_file, test_start, ntest, sub)
    read_seconds = time.perf_counter() - t_read
    if dt.resolution != d.resolution:
        raise ValueError(f"data_test has a {dt.resolution[0]}x{dt.resolution[1]} grid at sub={sub}, data_train "
                         f"{d.resolution[0]}x{d.resolution[1]}: the files must share a grid")
    a_tr, u_tr = d.a[:ntrain], d.u[:ntrain]
    a_va, u_va = (d.a[ntrain:], d.u[ntrain:]) if nval else (None, None)

    full_config = {**DEFAULT_CONFIGS[kind], **(config or {})}
    seed_everything(seed)  # the initial weights depend on the seed only
    try:
        net = build_network(kind, full_config)
    except TypeError as e:
        raise ValueError(f"config: {e}") from None
    n_params = int(sum(p.numel() for p in net.parameters()))

    stem = _stem(out) if out is not None else None
    rank = _rank()
    if stem is not None and rank == 0:
        stem.parent.mkdir(parents=True, exist_ok=True)
    live_log = stem.with_name(stem.name + "-log.jsonl") if stem is not None else None
    result = train_operator(net, a_tr, u_tr, a_va, u_va, epochs=epochs, batch_size=batch_size, lr=lr,
                            weight_decay=weight_decay, step_size=step_size, gamma=gamma, seed=seed,
                            checkpoint=checkpoint, resume=resume, device=device, progress=progress, log=live_log)
    if rank != 0:
        return ({}, result["predictor"]) if return_model else {}
    predictor = result["predictor"]
    dev = next(predictor.parameters()).device
    test = evaluate(predictor, dt, batch_size=batch_size, device=dev)

    name = name or (stem.name if stem is not None else f"{kind}-darcy")
    history = [{"epoch": i + 1, "train": t, "val": v, "lr": r}
               for i, (t, v, r) in enumerate(zip(result["train_loss"], result["val_loss"], result["lr"]))]
    card = {
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
                     "scheduler": f"StepLR(step_size={step_size}, gamma={gamma}) per epoch",
                     "loss": "relative L2 summed over the batch, in physical units",
                     "normalization": "pointwise unit Gaussian on a and u (training samples)",
                     "selection": "epoch with the lowest mean validation relative L2" if nval else "last epoch",
                     "world_size": int(result["world_size"]), "device": str(dev),
                     "weights_dtype": "float16" if half else "float32"},
        "torch": torch.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    if stem is not None:
        save_pretrained(predictor, None, card, stem, half=half)
        atomic_write_text(stem.with_name(stem.name + "-log.json"),
                          json.dumps({"card": card, "history": history}, indent=1) + "\n")
        _plot_losses(history, result["best_epoch"], stem.with_name(stem.name + "-loss.png"),
                     f"{name}: {kind}, {d.resolution[0]}x{d.resolution[1]}, {ntrain} training samples")
        if live_log is not None and live_log.exists():
            live_log.unlink()  # superseded by -log.json
    return (card, predictor) if return_model else card
