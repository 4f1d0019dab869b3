"""Training an epsilon-prediction diffusion prior (DDPM objective, VP schedule).

Each step draws a batch of images ``x0``, steps ``t ~ U{0, ..., T-1}`` and
noise ``eps ~ N(0, I)`` and minimises ``mean (net(x_t, t) - eps)^2`` with
``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps`` (Adam, linear warm-up,
gradient clipping).  An exponential moving average (EMA) of the weights is
kept and returned: it is the model to sample with.

Determinism: the batch indices of step ``k`` come from a generator seeded by
``(seed, k)``; ``t``, the noise and the augmentation of rank ``r`` from one
seeded by ``(seed, k, r)``.  So a run resumed from a checkpoint continues
exactly as the uninterrupted run, and the global batch does not depend on the
number of processes.  Under ``torchrun`` (``WORLD_SIZE > 1``) the processes
join a DDP group and each takes every ``W``-th image of the global batch.
"""

from __future__ import annotations

import copy
import json
import math
import numbers
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from ...utils.atomic import atomic_write_text
from ..training import (
    cleanup_distributed,
    load_checkpoint,
    run_fingerprint,
    save_checkpoint,
    seed_everything,
    setup_distributed,
)
from torch import nn

from .schedule import VPSchedule

__all__ = ["as_images", "diffusion_loss", "evaluate_loss", "train_diffusion"]


def as_images(data, name: str = "data", channels: int | None = None) -> torch.Tensor:
    """Training images as a float32 CPU tensor ``(N, C, H, W)``.

    Accepts real ``(N, C, H, W)`` / ``(N, H, W)`` (one channel) or complex
    ``(N, H, W)`` (two channels: real, imaginary), numpy or torch.
    """
    t = data.detach().cpu() if isinstance(data, torch.Tensor) else None
    if t is None:
        arr = np.asarray(data)
        if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
            raise TypeError(f"{name} must be a numeric array or tensor, got dtype {arr.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.is_complex():
        if t.ndim != 3:
            raise ValueError(f"complex {name} must have shape (N, H, W), got {tuple(t.shape)}")
        t = torch.stack([t.real, t.imag], dim=1)
    elif t.ndim == 3:
        t = t.unsqueeze(1)
    if t.ndim != 4 or min(t.shape) == 0:
        raise ValueError(f"{name} must have shape (N, C, H, W) (non-empty), got {tuple(t.shape)}")
    if channels is not None and t.shape[1] != channels:
        raise ValueError(f"{name} has {t.shape[1]} channel(s); the model takes {channels}")
    t = t.to(torch.float32).contiguous()
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or Inf")
    return t


def _abar(schedule: VPSchedule, device) -> torch.Tensor:
    return torch.as_tensor(schedule.alphas_cumprod, dtype=torch.float32, device=device)


def diffusion_loss(model, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor,
                   schedule: VPSchedule | None = None) -> torch.Tensor:
    """``mean (model(x_t, t) - noise)^2`` for given ``x0 (B, C, H, W)``, ``t (B,)``, ``noise``."""
    schedule = schedule or VPSchedule()
    ab = _abar(schedule, x0.device)[t].reshape(-1, 1, 1, 1)
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    return F.mse_loss(model(x_t, t), noise)


@torch.no_grad()
def evaluate_loss(model, data, *, schedule: VPSchedule | None = None, seed: int = 0, repeats: int = 4,
                  batch_size: int = 64) -> float:
    """The denoising loss on ``data`` with fixed, seeded ``t`` and noise (``repeats`` draws per image).

    The same ``seed`` gives the same draws, so two models compare on equal terms.
    """
    schedule = schedule or VPSchedule()
    p = next(iter(model.parameters()), None)
    dev = p.device if p is not None else torch.device("cpu")
    x = as_images(data).repeat(repeats, 1, 1, 1)
    g = torch.Generator().manual_seed(seed)
    t = torch.randint(schedule.num_timesteps, (len(x),), generator=g)
    noise = torch.randn(x.shape, generator=g)
    was = model.training
    model.eval()
    total = 0.0
    try:
        for s in range(0, len(x), batch_size):
            sl = slice(s, s + batch_size)
            n = len(x[sl])
            total += float(diffusion_loss(model, x[sl].to(dev), t[sl].to(dev), noise[sl].to(dev), schedule)) * n
    finally:
        model.train(was)
    return total / len(x)


def _step_seed(*parts: int) -> int:
    h = 1469598103934665603
    for p in parts:
        h = ((h ^ (int(p) + 0x9E3779B9)) * 1099511628211) % (1 << 63)
    return h


def train_diffusion(model: nn.Module, data, *, steps: int, batch_size: int = 16, lr: float = 2e-4,
                    ema_decay: float = 0.999, warmup: int = 100, grad_clip: float | None = 1.0,
                    augment=None, schedule: VPSchedule | None = None, seed: int = 0, checkpoint=None,
                    checkpoint_every: int = 500, resume: bool = True, device=None, progress: bool = True,
                    log=None, log_every: int = 50, max_seconds: float | None = None) -> dict:
    """Train ``model`` (an epsilon-prediction network) on ``data``; return the EMA model and a log.

    Parameters
    ----------
    model : nn.Module
        ``eps = model(x_t, t)`` (e.g. :class:`~.unet.UNet`); trained in place.
    data : array or tensor, (N, C, H, W) real or (N, H, W) complex
        Images in the range the sampler will use (e.g. ``|x| <= 1``); kept
        on the training device.
    steps : int
        Optimiser steps in total (a resumed run continues up to ``steps``).
    batch_size : int
        Global batch (split over DDP processes).
    lr, warmup : float, int
        Adam learning rate, reached linearly over ``warmup`` steps.
    ema_decay : float
        EMA factor; the effective decay is ``min(ema_decay, (1 + k) / (10 + k))``
        at step ``k`` (useful averages in short runs).
    grad_clip : float or None
        Clip the global gradient norm.
    augment : callable, optional
        ``augment(x, generator) -> x`` on a batch ``(b, C, H, W)`` (on the
        device) with a seeded CPU ``torch.Generator``; must keep the shape.
    schedule : VPSchedule, optional
    seed : int
    checkpoint : str or Path, optional
        Written atomically every ``checkpoint_every`` steps and at the end
        (model, EMA, optimizer, scheduler, losses, wall time).
    resume : bool
        Continue from ``checkpoint`` when it exists (same network and
        hyper-parameters required; ``steps`` may grow).
    device : optional
        Default CUDA when available (``torchrun``: one device per rank).
    progress : bool
        tqdm bar (main process).
    log : callable or path, optional
        Called with ``{"step", "loss", "lr"}`` every ``log_every`` steps, or a
        JSON-lines file of those records rewritten atomically at checkpoints
        and at the end.
    max_seconds : float, optional
        Wall-time budget of this call: stop after the first step that ends
        past it (checkpoint and log written), even if fewer than ``steps``
        were done.  With DDP the main process decides and all ranks stop at
        the same step.

    Returns
    -------
    dict
        ``model`` (the EMA network, eval mode), ``raw_model`` (the trained
        weights), ``losses`` (per step, mean over the global batch on the main
        process' share), ``final_loss`` (mean of the last ``min(100, steps)``),
        ``steps``, ``seconds`` (wall time summed over resumed runs),
        ``world_size``.
    """
    for name, v in (("steps", steps), ("batch_size", batch_size), ("checkpoint_every", checkpoint_every),
                    ("log_every", log_every)):
        if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if not isinstance(warmup, numbers.Integral) or warmup < 0:
        raise ValueError(f"warmup must be an integer >= 0, got {warmup!r}")
    if not (isinstance(lr, numbers.Real) and lr > 0):
        raise ValueError(f"lr must be > 0, got {lr!r}")
    if not (isinstance(ema_decay, numbers.Real) and 0 <= ema_decay < 1):
        raise ValueError(f"ema_decay must lie in [0, 1), got {ema_decay!r}")
    if grad_clip is not None and not (isinstance(grad_clip, numbers.Real) and grad_clip > 0):
        raise ValueError(f"grad_clip must be None or > 0, got {grad_clip!r}")
    if augment is not None and not callable(augment):
        raise TypeError(f"augment must be callable, got {type(augment).__name__}")
    if max_seconds is not None and not (isinstance(max_seconds, numbers.Real) and max_seconds > 0):
        raise ValueError(f"max_seconds must be None or > 0, got {max_seconds!r}")
    x_all = as_images(data, "data", getattr(model, "in_channels", None))
    m = getattr(model, "size_multiple", 1)
    if x_all.shape[-1] % m or x_all.shape[-2] % m:
        raise ValueError(f"data images are {tuple(x_all.shape[-2:])}; the model needs multiples of {m}")

    import torch.distributed as tdist

    owned = not (tdist.is_available() and tdist.is_initialized())
    dist = setup_distributed(device)
    try:
        return _loop(model, x_all, dist, steps=int(steps), batch_size=int(batch_size), lr=float(lr),
                     ema_decay=float(ema_decay), warmup=int(warmup), grad_clip=grad_clip, augment=augment,
                     schedule=schedule or VPSchedule(), seed=seed, checkpoint=checkpoint,
                     checkpoint_every=int(checkpoint_every), resume=resume, progress=progress, log=log,
                     log_every=int(log_every), max_seconds=max_seconds)
    finally:
        if owned and dist.enabled:
            cleanup_distributed()


def _loop(model, x_all, dist, *, steps, batch_size, lr, ema_decay, warmup, grad_clip, augment, schedule, seed,
          checkpoint, checkpoint_every, resume, progress, log, log_every, max_seconds):
    from tqdm.auto import tqdm

    seed_everything(seed)
    dev, world, rank = dist.device, dist.world_size, dist.rank
    if batch_size < world:
        raise ValueError(f"batch_size={batch_size} is smaller than the {world} processes")
    model.to(dev).train()
    ema = copy.deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda k: 1.0 if warmup == 0 else min(1.0, (k + 1) / warmup))
    fingerprint = run_fingerprint(model, lr=lr, batch_size=batch_size, ema_decay=ema_decay, warmup=warmup,
                               grad_clip=grad_clip, seed=seed, schedule=schedule.config(),
                               data_shape=list(x_all.shape))
    state = {"step": 0, "losses": [], "seconds": 0.0}
    ckpt = Path(checkpoint) if checkpoint is not None else None
    if ckpt is not None and resume and ckpt.is_file():
        extra = load_checkpoint(ckpt, model=model, optimizer=optimizer, scheduler=sched, map_location=dev,
                                fingerprint=fingerprint)
        ema.load_state_dict(extra["ema"])
        state.update({k: extra[k] for k in state if k in extra})
        state["losses"] = [float(v) for v in state["losses"]]

    module = model
    if dist.enabled:
        module = nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    x_dev = x_all.to(dev)
    abar = _abar(schedule, dev)
    T = schedule.num_timesteps
    records = []

    def save():
        if ckpt is not None and dist.is_main:
            save_checkpoint(ckpt, model=model, optimizer=optimizer, scheduler=sched, ema=ema.state_dict(),
                            fingerprint=fingerprint, step=state["step"], losses=list(state["losses"]),
                            seconds=state["seconds"] + time.perf_counter() - t0)
        if log is not None and not callable(log) and dist.is_main:
            losses = state["losses"]
            recs = [{"step": k + 1, "loss": float(np.mean(losses[max(0, k + 1 - log_every):k + 1]))}
                    for k in range(log_every - 1, len(losses), log_every)]
            atomic_write_text(log, "".join(json.dumps(r) + "\n" for r in recs))

    ema_params = list(ema.parameters())
    model_params = [p.detach() for p in model.parameters()]
    t0 = time.perf_counter()
    start = state["step"]
    bar = tqdm(total=max(steps - start, 0), disable=not (progress and dist.is_main), desc="train diffusion",
               unit="step", dynamic_ncols=True)
    try:
        for k in range(start, steps):
            g = torch.Generator().manual_seed(_step_seed(seed, k))
            idx = torch.randint(len(x_all), (batch_size,), generator=g)[rank::world]
            gr = torch.Generator().manual_seed(_step_seed(seed, k, rank))
            x0 = x_dev[idx.to(dev)]
            if augment is not None:
                x0 = augment(x0, gr)
                if not isinstance(x0, torch.Tensor) or x0.shape != (len(idx),) + tuple(x_all.shape[1:]):
                    raise ValueError("augment must return a tensor of the batch's shape")
            t = torch.randint(T, (len(idx),), generator=gr).to(dev)
            noise = torch.randn(x0.shape, generator=gr).to(dev)
            ab = abar[t].reshape(-1, 1, 1, 1)
            x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
            loss = F.mse_loss(module(x_t, t), noise)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if not bool(torch.isfinite(loss)):
                raise FloatingPointError(f"step {k + 1}: the loss is {float(loss)}")
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            sched.step()
            decay = min(ema_decay, (1 + k) / (10 + k))
            with torch.no_grad():
                torch._foreach_lerp_(ema_params, model_params, 1 - decay)
                for be, bm in zip(ema.buffers(), model.buffers()):
                    be.copy_(bm)
            state["losses"].append(float(loss.detach()))
            state["step"] = k + 1
            bar.update(1)
            if (k + 1) % log_every == 0:
                rec = {"step": k + 1, "loss": float(np.mean(state["losses"][-log_every:])),
                       "lr": optimizer.param_groups[0]["lr"]}
                records.append(rec)
                bar.set_postfix(loss=f"{rec['loss']:.4g}")
                if callable(log) and dist.is_main:
                    log(dict(rec))
            out_of_time = max_seconds is not None and time.perf_counter() - t0 >= max_seconds
            if dist.enabled and max_seconds is not None:
                flag = torch.tensor([float(out_of_time)], device=dev)
                torch.distributed.broadcast(flag, 0)
                out_of_time = bool(flag.item())
            if (k + 1) % checkpoint_every == 0 or k + 1 == steps or out_of_time:
                save()
            if out_of_time:
                break
    finally:
        bar.close()
    if steps <= start:
        save()
    seconds = state["seconds"] + time.perf_counter() - t0
    model.eval()
    losses = state["losses"]
    tail = losses[-min(100, len(losses)):] if losses else [math.nan]
    return {"model": ema, "raw_model": model, "losses": list(losses), "final_loss": float(np.mean(tail)),
            "steps": int(state["step"]), "seconds": float(seconds), "world_size": world}
