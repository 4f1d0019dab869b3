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

:class:`DiffusionTask` states this for the shared
:class:`~krylearn.solvers.learned.Trainer` (one round = one step; the
Trainer keeps the EMA and clips the gradients); :func:`train_diffusion` runs it.
:class:`StreamingDiffusionTask` does the same on images read from files as
the batches are drawn (each rank from its own shard of the file index).
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..learned import Trainer, TrainTask
from .schedule import VPSchedule

__all__ = ["as_images", "diffusion_loss", "evaluate_loss", "DiffusionTask", "StreamingDiffusionTask",
           "train_diffusion"]


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
    """A 63-bit seed from integers (FNV-1a style): the generator seed of one step (and rank)."""
    h = 1469598103934665603
    for p in parts:
        h = ((h ^ (int(p) + 0x9E3779B9)) * 1099511628211) % (1 << 63)
    return h


class DiffusionTask(TrainTask):
    """The DDPM objective for the Trainer: one round is one step on a global batch of ``batch_size`` images.

    Step ``k`` draws the batch indices from a generator seeded by
    ``(seed, k)`` and, on rank ``r``, ``t``, the noise and the augmentation
    from one seeded by ``(seed, k, r)``; rank ``r`` takes every ``W``-th
    image of the global batch.
    """

    unit = "step"
    desc = "train diffusion"

    def __init__(self, model: nn.Module, x_all: torch.Tensor, *, batch_size: int, lr: float, warmup: int,
                 augment, schedule: VPSchedule, seed: int):
        self.model, self.x_all, self.batch_size, self.lr = model, x_all, batch_size, lr
        self.warmup, self.augment, self.schedule, self.seed = warmup, augment, schedule, seed

    def setup(self) -> nn.Module:
        dev, world = self.dist.device, self.dist.world_size
        if self.batch_size < world:
            raise ValueError(f"batch_size={self.batch_size} is smaller than the {world} processes")
        self.x_dev = self.x_all.to(dev)
        self.abar = _abar(self.schedule, dev)
        return self.model.to(dev)

    def make_optimizer(self, model):
        optimizer = torch.optim.Adam(model.parameters(), lr=self.lr)
        warmup = self.warmup
        return optimizer, torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda k: 1.0 if warmup == 0 else min(1.0, (k + 1) / warmup))

    def settings(self) -> dict:
        aug = self.augment
        described = None if aug is None else (aug.config() if hasattr(aug, "config") else
                                               getattr(aug, "__qualname__", type(aug).__name__))
        return {"batch_size": self.batch_size, "warmup": self.warmup, "schedule": self.schedule.config(),
                "augment": described}

    def data(self):
        return (self.x_all,)

    def batches(self, round: int):
        dev, rank, world = self.dist.device, self.dist.rank, self.dist.world_size
        g = torch.Generator().manual_seed(_step_seed(self.seed, round))
        idx = torch.randint(len(self.x_all), (self.batch_size,), generator=g)[rank::world]
        gr = torch.Generator().manual_seed(_step_seed(self.seed, round, rank))
        yield self._noised(self.x_dev[idx.to(dev)], gr)

    def _noised(self, x0: torch.Tensor, gr: torch.Generator):
        """``(augmented x0, t, noise)`` from the rank's generator ``gr`` (augmentation first, then t, then noise)."""
        dev, shape = x0.device, tuple(x0.shape)
        if self.augment is not None:
            x0 = self.augment(x0, gr)
            if not isinstance(x0, torch.Tensor) or tuple(x0.shape) != shape:
                raise ValueError("augment must return a tensor of the batch's shape")
        t = torch.randint(self.schedule.num_timesteps, (shape[0],), generator=gr).to(dev)
        noise = torch.randn(x0.shape, generator=gr).to(dev)
        return x0, t, noise

    def loss(self, module, batch) -> torch.Tensor:
        x0, t, noise = batch
        ab = self.abar[t].reshape(-1, 1, 1, 1)
        x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
        return F.mse_loss(module(x_t, t), noise)


class StreamingDiffusionTask(DiffusionTask):
    """:class:`DiffusionTask` on images read from files as batches are drawn (e.g. :class:`~.user_images.UserImages`).

    The source (passed where :class:`DiffusionTask` takes ``x_all``) has
    ``channels``, ``size``, ``len()``, ``shard(rank, world)``, ``fingerprint()``
    (JSON-able: what the checkpoint ties the run to, instead of the pixels)
    and ``draw_batch(count, generator, rank, world)``.  Rank ``r`` of ``W``
    draws its ``len(range(r, batch_size, W))`` images of step ``k`` from its
    own shard of the source with a generator seeded by ``(seed, k, r, 1)``;
    ``t``, the noise and the augmentation come from ``(seed, k, r)`` as in
    :class:`DiffusionTask`.  The same number of processes gives the same run.
    """

    def setup(self) -> nn.Module:
        dev, rank, world = self.dist.device, self.dist.rank, self.dist.world_size
        if self.batch_size < world:
            raise ValueError(f"batch_size={self.batch_size} is smaller than the {world} processes")
        self.x_all.shard(rank, world)  # every rank has images to draw from
        self.abar = _abar(self.schedule, dev)
        return self.model.to(dev)

    def settings(self) -> dict:
        return {**super().settings(), "streaming": True}

    def data(self):
        return (self.x_all.fingerprint(),)

    def batches(self, round: int):
        dev, rank, world = self.dist.device, self.dist.rank, self.dist.world_size
        count = len(range(rank, self.batch_size, world))
        gi = torch.Generator().manual_seed(_step_seed(self.seed, round, rank, 1))
        gr = torch.Generator().manual_seed(_step_seed(self.seed, round, rank))
        yield self._noised(self.x_all.draw_batch(count, gi, rank, world).to(dev), gr)


def _is_stream(data) -> bool:
    return hasattr(data, "draw_batch") and hasattr(data, "fingerprint")


def _check_args(steps, batch_size, checkpoint_every, log_every, warmup, lr, ema_decay, grad_clip, augment,
                max_minutes, max_seconds) -> float | None:
    """``ValueError``/``TypeError`` for a bad argument; returns the budget in minutes (or ``None``)."""
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
    if max_seconds is not None and max_minutes is not None:
        raise ValueError("give max_minutes or max_seconds, not both")
    return max_minutes if max_seconds is None else max_seconds / 60.0


def _training_images(model, data) -> torch.Tensor:
    """``data`` as training images for ``model`` (channels and size multiple checked); a stream as it is."""
    m = getattr(model, "size_multiple", 1)
    if _is_stream(data):
        channels = getattr(model, "in_channels", data.channels)
        if data.channels != channels:
            raise ValueError(f"data has {data.channels} channel(s); the model takes {channels}")
        if data.size % m:
            raise ValueError(f"data images are {data.size} x {data.size}; the model needs multiples of {m}")
        if len(data) == 0:
            raise ValueError("data holds no training slice")
        return data
    x_all = as_images(data, "data", getattr(model, "in_channels", None))
    if x_all.shape[-1] % m or x_all.shape[-2] % m:
        raise ValueError(f"data images are {tuple(x_all.shape[-2:])}; the model needs multiples of {m}")
    return x_all


def train_diffusion(model: nn.Module, data, *, steps: int, batch_size: int = 16, lr: float = 2e-4,
                    ema_decay: float = 0.999, warmup: int = 100, grad_clip: float | None = 1.0,
                    augment=None, schedule: VPSchedule | None = None, seed: int = 0, checkpoint=None,
                    checkpoint_every: int = 500, resume: bool = True, device=None, progress: bool = True,
                    log=None, log_every: int = 50, max_minutes: float | None = None,
                    max_seconds: float | None = None) -> dict:
    """Train ``model`` (an epsilon-prediction network) on ``data``; return the EMA model and a log.

    Parameters
    ----------
    model : nn.Module
        ``eps = model(x_t, t)`` (e.g. :class:`~.unet.UNet`); trained in place.
    data : array or tensor, (N, C, H, W) real or (N, H, W) complex; or a stream
        Images in the range the sampler will use (e.g. ``|x| <= 1``); kept
        on the training device.  A stream (:class:`~.user_images.UserImages`)
        is read batch by batch instead (:class:`StreamingDiffusionTask`).
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
        Continue from ``checkpoint`` when it exists (same network,
        hyper-parameters and data required; ``steps`` may grow).
    device : optional
        Default CUDA when available (``torchrun``: one device per rank).
    progress : bool
        tqdm bar (main process).
    log : callable or path, optional
        Called with ``{"step", "loss", "lr", ...}`` every ``log_every`` steps,
        or a JSON-lines file of those records rewritten atomically.
    max_minutes : float, optional
        Wall-time budget of this call: stop after the first step that ends
        past it (checkpoint and log written), even if fewer than ``steps``
        were done.  With DDP the main process decides and all ranks stop at
        the same step.
    max_seconds : float, optional
        The same budget in seconds (for existing callers; give at most one).

    Returns
    -------
    dict
        ``model`` (the EMA network, eval mode), ``raw_model`` (the trained
        weights), ``losses`` (per step, mean over the global batch on the main
        process' share), ``final_loss`` (mean of the last ``min(100, steps)``),
        ``steps``, ``seconds`` (wall time summed over resumed runs),
        ``world_size``.
    """
    max_minutes = _check_args(steps, batch_size, checkpoint_every, log_every, warmup, lr, ema_decay, grad_clip,
                              augment, max_minutes, max_seconds)
    task_class = StreamingDiffusionTask if _is_stream(data) else DiffusionTask
    task = task_class(model, _training_images(model, data), batch_size=int(batch_size), lr=float(lr),
                      warmup=int(warmup), augment=augment, schedule=schedule or VPSchedule(), seed=seed)
    result = Trainer(task, rounds=int(steps), seed=seed, device=device, checkpoint=checkpoint,
                     checkpoint_every=int(checkpoint_every), resume=resume, log=log, log_every=int(log_every),
                     ema_decay=float(ema_decay), grad_clip=grad_clip, max_minutes=max_minutes,
                     progress=progress).fit()
    losses = result.losses()
    tail = losses[-min(100, len(losses)):] if losses else [math.nan]
    return {"model": result.model, "raw_model": result.raw_model, "losses": losses,
            "final_loss": float(np.mean(tail)), "steps": result.rounds, "seconds": result.seconds,
            "world_size": result.world_size}
