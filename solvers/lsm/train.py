"""Training, evaluation and pretrained weights for LSM and its baselines.

The recipe is the authors' Darcy one: relative L2 loss summed over the batch,
Adam with ``weight_decay`` added to the gradient (L2, torch Adam's
``weight_decay``, not AdamW), StepLR x``gamma`` every ``step_size`` epochs,
batch 20, pointwise Gaussian normalisation of inputs and outputs with the
prediction decoded to physical units before the loss.  Added: a validation
split that selects the kept weights, resumable checkpoints, a progress bar,
and DistributedDataParallel under ``torchrun``.

Examples
--------
>>> from krylearn.solvers.lsm import LSM2d, train_operator  # doctest: +SKIP
>>> out = train_operator(LSM2d(), a_tr, u_tr, a_va, u_va, epochs=501, checkpoint="lsm.ckpt")  # doctest: +SKIP
>>> save_pretrained(out["predictor"], None, {"data": "..."}, "lsm-darcy")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from ...utils.atomic import atomic_write_text
from ...utils.errors import FormatError
from ..training import (
    cleanup_distributed,
    hardware,
    load_checkpoint,
    run_fingerprint,
    save_checkpoint,
    seed_everything,
    setup_distributed,
)
from ..weights import load_weights, save_weights, weights_path

from .baselines import FNO2d, UNet2d
from .model import LSM2d
from .normalizer import NormalizedOperator, UnitGaussianNormalizer

__all__ = ["relative_l2", "evaluate", "train_operator", "save_pretrained", "load_pretrained",
           "build_network", "as_fields", "KINDS", "WEIGHTS_DIR"]

#: Network classes by the ``kind`` stored in weight cards.
KINDS = {"lsm": LSM2d, "fno": FNO2d, "unet": UNet2d}

#: Folder of the shipped weights (package data).
WEIGHTS_DIR = Path(__file__).parent / "weights"


# ------------------------------------------------------------------ helpers
def relative_l2(pred: torch.Tensor, true: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Relative L2 error per sample, ``||pred_i - true_i||_2 / ||true_i||_2``, over all but the first axis.

    Parameters
    ----------
    pred, true : torch.Tensor
        Same shape ``(B, ...)``.
    reduction : {"mean", "sum", "none"}

    Returns
    -------
    torch.Tensor
        A scalar, or ``(B,)`` for ``"none"``.
    """
    if pred.shape != true.shape:
        raise ValueError(f"pred and true must have the same shape, got {tuple(pred.shape)} and {tuple(true.shape)}")
    if pred.ndim < 1 or pred.shape[0] == 0:
        raise ValueError(f"pred must have a non-empty batch axis, got shape {tuple(pred.shape)}")
    b = pred.shape[0]
    err = torch.linalg.vector_norm((pred - true).reshape(b, -1), dim=1)
    rel = err / torch.linalg.vector_norm(true.reshape(b, -1), dim=1)
    if reduction == "mean":
        return rel.mean()
    if reduction == "sum":
        return rel.sum()
    if reduction == "none":
        return rel
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def as_fields(x, name: str, channels: int | None = None) -> torch.Tensor:
    """Fields as a float32 CPU tensor ``(N, C, H, W)`` from numpy/torch ``(N, H, W)`` or ``(N, C, H, W)``.

    Raises ``ValueError`` naming ``name`` for a wrong rank, channel count,
    empty input or non-finite values, ``TypeError`` for a non-numeric input.
    """
    if isinstance(x, torch.Tensor):
        t = x.detach().to("cpu")
    else:
        arr = np.asarray(x)
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise TypeError(f"{name} must be a numeric array or tensor, got dtype {arr.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.is_complex():
        raise TypeError(f"{name} must be real, got {t.dtype}")
    if t.ndim == 3:
        t = t.unsqueeze(1)
    if t.ndim != 4:
        raise ValueError(f"{name} must have shape (N, H, W) or (N, C, H, W), got {tuple(t.shape)}")
    if t.shape[0] == 0 or t.shape[-1] == 0 or t.shape[-2] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)})")
    if channels is not None and t.shape[1] != channels:
        raise ValueError(f"{name} must have {channels} channel(s), got shape {tuple(t.shape)}")
    t = t.to(torch.float32)
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return t.contiguous()


def build_network(kind: str, config: dict) -> nn.Module:
    """A fresh network of ``kind`` (``"lsm"``, ``"fno"``, ``"unet"``) from its ``config`` dict."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict, got {type(config).__name__}")
    return KINDS[kind](**config)


def _unwrap(model):
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _channels(model) -> tuple[int | None, int | None]:
    cfg = getattr(_unwrap(model), "config", {}) or {}
    return cfg.get("in_channels"), cfg.get("out_channels")


@torch.no_grad()
def _error_sum(model, a, u, idx, batch_size, device) -> tuple[float, int]:
    total, count = 0.0, 0
    for s in range(0, len(idx), batch_size):
        j = idx[s:s + batch_size]
        pred = model(a[j].to(device))
        total += float(relative_l2(pred, u[j].to(device), "sum"))
        count += len(j)
    return total, count


def evaluate(model: nn.Module, a, u, batch_size: int = 20, device=None) -> float:
    """Mean relative L2 error of ``model(a)`` against ``u``.

    Parameters
    ----------
    model : nn.Module
        Physical in, physical out (e.g. a :class:`NormalizedOperator`), on ``(B, C, H, W)``.
    a, u : array or tensor, (N, H, W) or (N, C, H, W)
    batch_size : int
    device : optional
        Default: the model's device.

    The model runs in eval mode under ``torch.no_grad``; its train/eval mode
    is restored afterwards.
    """
    cin, cout = _channels(model)
    a, u = as_fields(a, "a", cin), as_fields(u, "u", cout)
    if len(a) != len(u) or a.shape[-2:] != u.shape[-2:]:
        raise ValueError(f"a and u must hold the same samples and grid, got {tuple(a.shape)} and {tuple(u.shape)}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if device is None:
        p = next(iter(model.parameters()), None)
        device = p.device if p is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        total, count = _error_sum(model, a, u, torch.arange(len(a)), batch_size, device)
    finally:
        model.train(was_training)
    return total / count


def _write_log(log, records) -> None:
    if log is None:
        return
    if callable(log):
        log(dict(records[-1]))
    else:
        atomic_write_text(log, "".join(json.dumps(r) + "\n" for r in records))


# ------------------------------------------------------------------ training
def train_operator(model: nn.Module, a_train, u_train, a_val=None, u_val=None, *, epochs: int,
                   batch_size: int = 20, lr: float = 5e-4, weight_decay: float = 1e-4, step_size: int = 100,
                   gamma: float = 0.5, seed: int = 0, normalize: bool = True, checkpoint=None,
                   checkpoint_every: int = 1, resume: bool = True, device=None, progress: bool = True,
                   log=None) -> dict:
    """Train an operator network on pairs ``a -> u`` with the LSM recipe; keep the best-validation weights.

    Parameters
    ----------
    model : nn.Module
        :class:`LSM2d`, :class:`FNO2d`, :class:`UNet2d` (channel-first), or a
        :class:`NormalizedOperator` around one (its normalisers are kept).
        Trained in place.
    a_train, u_train : array or tensor, (N, H, W) or (N, C, H, W)
        Inputs and targets in physical units.
    a_val, u_val : optional
        Validation pairs (not the test set): the epoch with the lowest mean
        validation relative L2 gives the returned weights.  Without them, the
        last epoch's weights are kept.
    epochs, batch_size : int
        Global batch size; under DDP each of the ``W`` processes takes every
        W-th sample of the same global batch (a shared permutation per
        epoch), so the batches do not depend on the number of processes.
    lr, weight_decay, step_size, gamma : float
        Adam (L2 ``weight_decay`` added to the gradient) and StepLR per epoch.
    seed : int
        Seeds python/numpy/torch at the start; the sample order of epoch ``e``
        comes from a generator seeded by ``(seed, e)``, so a resumed run sees
        the same batches.
    normalize : bool
        Fit pointwise Gaussian normalisers on the training inputs and targets.
    checkpoint : str or Path, optional
        Written atomically every ``checkpoint_every`` epochs and at the end
        (model, optimizer, scheduler, history, best weights).
    resume : bool
        Continue from ``checkpoint`` when it exists.  It must come from the
        same network and hyper-parameters (``epochs`` may grow).
    device : optional
        Default CUDA when available.  Under ``torchrun`` (``WORLD_SIZE > 1``)
        the processes join a DDP group (gloo on CPU, nccl on CUDA).
    progress : bool
        A tqdm bar over all batches (main process only).
    log : callable or path, optional
        Called with each epoch's record (dict), or a JSON-lines file rewritten
        atomically each epoch.

    Returns
    -------
    dict
        ``train_loss``, ``val_loss`` (lists of mean relative L2 per epoch; val
        ``None`` without validation data), ``lr`` (per epoch), ``best_epoch``
        (1-based), ``best_val``, ``epochs``, ``seconds`` (wall time, summed
        over resumed runs), ``world_size``, ``predictor`` (the
        :class:`NormalizedOperator` with the kept weights, in eval mode).
    """
    for name, v in (("epochs", epochs), ("batch_size", batch_size), ("step_size", step_size),
                    ("checkpoint_every", checkpoint_every)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if not (lr > 0) or not (weight_decay >= 0) or not (0 < gamma <= 1):
        raise ValueError(f"need lr > 0, weight_decay >= 0, 0 < gamma <= 1; got {lr}, {weight_decay}, {gamma}")
    if (a_val is None) != (u_val is None):
        raise ValueError("give both a_val and u_val, or neither")

    net = model.net if isinstance(model, NormalizedOperator) else model
    cin, cout = _channels(net)
    a_tr, u_tr = as_fields(a_train, "a_train", cin), as_fields(u_train, "u_train", cout)
    if len(a_tr) != len(u_tr) or a_tr.shape[-2:] != u_tr.shape[-2:]:
        raise ValueError(f"a_train and u_train must hold the same samples and grid, "
                         f"got {tuple(a_tr.shape)} and {tuple(u_tr.shape)}")
    has_val = a_val is not None
    if has_val:
        a_va, u_va = as_fields(a_val, "a_val", cin), as_fields(u_val, "u_val", cout)
        if len(a_va) != len(u_va) or a_va.shape[-2:] != u_va.shape[-2:]:
            raise ValueError(f"a_val and u_val must hold the same samples and grid, "
                             f"got {tuple(a_va.shape)} and {tuple(u_va.shape)}")

    if isinstance(model, NormalizedOperator):
        predictor = model
    elif normalize:
        predictor = NormalizedOperator(model, UnitGaussianNormalizer.fit(a_tr), UnitGaussianNormalizer.fit(u_tr))
    else:
        predictor = NormalizedOperator(model)

    import torch.distributed as tdist

    owned_group = not (tdist.is_available() and tdist.is_initialized())
    dist = setup_distributed(device)
    try:
        return _train_loop(predictor, a_tr, u_tr, (a_va, u_va) if has_val else None, dist, epochs=epochs,
                           batch_size=batch_size, lr=lr, weight_decay=weight_decay, step_size=step_size,
                           gamma=gamma, seed=seed, checkpoint=checkpoint, checkpoint_every=checkpoint_every,
                           resume=resume, progress=progress, log=log)
    finally:
        if owned_group and dist.enabled:
            cleanup_distributed()


def _train_loop(predictor, a_tr, u_tr, val, dist, *, epochs, batch_size, lr, weight_decay, step_size, gamma,
                seed, checkpoint, checkpoint_every, resume, progress, log) -> dict:
    import torch.distributed as tdist
    from tqdm.auto import tqdm

    seed_everything(seed)
    dev, world, rank = dist.device, dist.world_size, dist.rank
    predictor.to(dev)
    if dist.enabled and dev.type == "cuda":
        predictor.net = nn.SyncBatchNorm.convert_sync_batchnorm(predictor.net)
    optimizer = torch.optim.Adam(predictor.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma)
    fingerprint = run_fingerprint(predictor, lr=lr, weight_decay=weight_decay, batch_size=batch_size,
                               step_size=step_size, gamma=gamma, seed=seed, n_train=len(a_tr),
                               n_val=len(val[0]) if val else 0, grid=list(a_tr.shape[-2:]))

    state = {"epoch": 0, "history": {"train": [], "val": [], "lr": []}, "best_epoch": 0,
             "best_val": math.inf, "best_state": None, "seconds": 0.0}
    ckpt = Path(checkpoint) if checkpoint is not None else None
    if ckpt is not None and resume and ckpt.is_file():
        extra = load_checkpoint(ckpt, model=predictor, optimizer=optimizer, scheduler=scheduler, map_location=dev,
                                fingerprint=fingerprint)
        state.update({k: extra[k] for k in state if k in extra})

    module = predictor
    if dist.enabled:
        module = nn.parallel.DistributedDataParallel(predictor, device_ids=[dev.index] if dev.type == "cuda" else None)

    a_dev, u_dev = a_tr.to(dev), u_tr.to(dev)
    n = len(a_tr)
    n_batches = n // batch_size + (1 if n % batch_size >= world else 0)
    if n_batches == 0:
        raise ValueError(f"a_train has {n} samples, fewer than the {world} processes")
    hist = state["history"]
    records = [{"epoch": i + 1, "train": t, "val": v, "lr": r}
               for i, (t, v, r) in enumerate(zip(hist["train"], hist["val"], hist["lr"]))]
    start = state["epoch"]
    t0 = time.perf_counter()
    bar = tqdm(total=max(epochs - start, 0) * n_batches, disable=not (progress and dist.is_main),
               desc=f"train {predictor.kind}", unit="batch", dynamic_ncols=True)
    try:
        for epoch in range(start, epochs):
            module.train()
            lr_now = optimizer.param_groups[0]["lr"]
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
            total = torch.zeros(2, dtype=torch.float64, device=dev)
            for b in range(n_batches):
                idx = perm[b * batch_size:(b + 1) * batch_size][rank::world].to(dev)
                optimizer.zero_grad(set_to_none=True)
                per = relative_l2(module(a_dev[idx]), u_dev[idx], "none")
                # summed over the global batch (the authors' LpLoss(size_average=False)); DDP averages ranks
                (per.sum() * world).backward()
                optimizer.step()
                total += torch.stack([per.detach().sum().double(), torch.tensor(len(idx), device=dev)])
                bar.update(1)
            scheduler.step()
            if dist.enabled:
                tdist.all_reduce(total)
                for buf in predictor.buffers():  # BatchNorm running stats: use rank 0's everywhere
                    tdist.broadcast(buf, 0)
            train_loss = float(total[0] / total[1])
            val_loss = None
            if val is not None:
                module.eval()
                idx = torch.arange(len(val[0]))[rank::world]
                s = torch.tensor(_error_sum(predictor, val[0], val[1], idx, batch_size, dev),
                                 dtype=torch.float64, device=dev)
                if dist.enabled:
                    tdist.all_reduce(s)
                val_loss = float(s[0] / s[1])
            score = val_loss if val_loss is not None else -float(epoch)
            if score < state["best_val"] or state["best_state"] is None or val_loss is None:
                state["best_val"] = val_loss if val_loss is not None else math.nan
                state["best_epoch"] = epoch + 1
                state["best_state"] = {k: v.detach().clone() for k, v in predictor.state_dict().items()}
            hist["train"].append(train_loss)
            hist["val"].append(val_loss)
            hist["lr"].append(lr_now)
            records.append({"epoch": epoch + 1, "train": train_loss, "val": val_loss, "lr": lr_now})
            state["epoch"] = epoch + 1
            bar.set_postfix(epoch=epoch + 1, train=f"{train_loss:.4g}",
                            val="-" if val_loss is None else f"{val_loss:.4g}")
            if dist.is_main:
                _write_log(log, records)
                if ckpt is not None and ((epoch + 1) % checkpoint_every == 0 or epoch + 1 == epochs):
                    save_checkpoint(ckpt, model=predictor, optimizer=optimizer, scheduler=scheduler,
                                    fingerprint=fingerprint, **{**state, "seconds": state["seconds"] +
                                                                time.perf_counter() - t0})
    finally:
        bar.close()
    seconds = state["seconds"] + time.perf_counter() - t0
    if state["best_state"] is not None:
        predictor.load_state_dict(state["best_state"])
    predictor.eval()
    best_val = state["best_val"]
    return {"train_loss": list(hist["train"]), "val_loss": list(hist["val"]), "lr": list(hist["lr"]),
            "best_epoch": int(state["best_epoch"]),
            "best_val": None if best_val is None or not math.isfinite(best_val) else float(best_val),
            "epochs": int(state["epoch"]), "seconds": float(seconds), "world_size": world,
            "predictor": predictor}


# ------------------------------------------------------------------ weights
def save_pretrained(model: nn.Module, normalizers, card: dict | None, path, *, half: bool = False):
    """Write a predictor's weights (network + normalisers) and its card.

    Parameters
    ----------
    model : NormalizedOperator or network
    normalizers : (x_normalizer, y_normalizer) or None
        Needed when ``model`` is a bare network; ``None`` with a
        :class:`NormalizedOperator` keeps its own.
    card : dict, optional
        Training command, data, seed, wall time, metrics, ...; ``kind``,
        ``config``, ``resolution`` and ``hardware`` are filled in.
    path : str or Path
        File stem; writes ``path.safetensors`` and ``path.json``.
    half : bool
        Store in float16.

    Returns
    -------
    (Path, Path)
    """
    model = _unwrap(model)
    if isinstance(model, NormalizedOperator):
        if normalizers is not None:
            model = NormalizedOperator(model.net, *normalizers)
    else:
        if getattr(model, "kind", None) not in KINDS:
            raise TypeError(f"model must be a NormalizedOperator or one of {sorted(KINDS)} networks, "
                            f"got {type(model).__name__}")
        model = NormalizedOperator(model, *(normalizers or (None, None)))
    card = dict(card or {})
    card["kind"] = model.kind
    card["config"] = model.config
    res = model.resolution
    card["resolution"] = list(res) if res is not None else None
    card.setdefault("hardware", hardware())
    return save_weights(model.state_dict(), card, path, half=half)


def load_pretrained(name_or_path, *, device="cpu") -> NormalizedOperator:
    """Rebuild a predictor saved by :func:`save_pretrained`: a shipped name (``"lsm-darcy"``) or a path.

    Returns a :class:`NormalizedOperator` in eval mode on ``device``, its
    card as ``.card`` and its file stem as ``.source``.  Raises
    ``FormatError`` for a card without a usable ``kind``/``config`` or
    weights that do not fit them.
    """
    path = weights_path(name_or_path, WEIGHTS_DIR)
    state, card = load_weights(path, device="cpu", dtype=torch.float32)
    cpath = Path(path).with_suffix(".json")
    kind, config = card.get("kind"), card.get("config")
    if kind not in KINDS:
        raise FormatError(f"must be one of {sorted(KINDS)}, got {kind!r}", path=cpath, key="kind")
    if not isinstance(config, dict):
        raise FormatError("missing or not an object", path=cpath, key="config")
    try:
        net = build_network(kind, config)
    except (TypeError, ValueError) as e:
        raise FormatError(f"cannot rebuild the {kind} network ({e})", path=cpath, key="config") from None
    norms = []
    for side in ("x_normalizer", "y_normalizer"):
        keys = [f"{side}.{k}" for k in ("mean", "std", "eps")]
        if all(k in state for k in keys):
            norms.append(UnitGaussianNormalizer(state[keys[0]], state[keys[1]], float(state[keys[2]])))
        else:
            norms.append(None)
    predictor = NormalizedOperator(net, *norms)
    try:
        predictor.load_state_dict(state)
    except RuntimeError as e:
        raise FormatError(f"weights do not match the card's {kind} config ({str(e).splitlines()[0]})",
                          path=Path(path).with_suffix(".safetensors")) from None
    predictor.to(device).eval()
    for p in predictor.parameters():
        p.requires_grad_(False)
    predictor.card = card
    predictor.source = str(path)
    return predictor
