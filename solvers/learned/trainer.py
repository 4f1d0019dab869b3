"""One training loop for every learned method: :class:`Trainer` runs a :class:`TrainTask`.

A method supplies only what is its own -- its model, its optimiser, its
batches and loss, its validation metric -- as a :class:`TrainTask`.  The
:class:`Trainer` owns everything else, the same way for every method:

* the loop: ``rounds`` rounds (a round is one optimiser step, or one epoch of
  several steps: the task's ``unit``), zero-grad / backward / a finite-loss
  check / optional gradient clipping / optimiser step per batch, and the
  learning-rate scheduler stepped once per round;
* DistributedDataParallel under ``torchrun`` (``WORLD_SIZE > 1``; gloo on
  CPU, nccl on CUDA): the model is wrapped for the loss, the task splits its
  batches by rank;
* an exponential moving average (EMA) of the weights, optional;
* validation every ``val_every`` rounds and at the end, keeping the weights
  with the lowest validation value (the last weights without validation);
* resumable checkpoints every ``checkpoint_every`` rounds, at the end and
  when stopped early, carrying a fingerprint of all inputs (network,
  optimiser, task settings, seed, a content digest of the data): resuming
  another run is refused, naming what differs;
* a wall-time budget ``max_minutes``: save and stop after the first round
  that ends past it;
* a tqdm progress bar (``progress=False`` silences it) and a log of records
  (a callable, or a JSON-lines file rewritten atomically).

Determinism: the Trainer seeds python/numpy/torch with ``seed`` before the
task's :meth:`TrainTask.setup`; checkpoints hold the model, optimiser,
scheduler, EMA, global torch RNG and the task's own state, so a resumed run
continues exactly as the uninterrupted one when the task draws its batches
from seeded generators.
"""

from __future__ import annotations

import copy
import json
import math
import numbers
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed
from torch import nn
from tqdm.auto import tqdm

from ...utils.atomic import atomic_write_text
from .checkpoint import check_writable, digest, json_clean, load_checkpoint, save_checkpoint
from .runtime import Dist, cleanup_distributed, group_initialized, seed_everything, setup_distributed

__all__ = ["TrainTask", "Trainer", "TrainResult"]

#: Optimiser hyper-parameters that enter a run's fingerprint (when the optimiser has them).
_OPTIMIZER_KEYS = ("lr", "betas", "eps", "weight_decay", "momentum", "dampening", "nesterov", "amsgrad")


class TrainTask:
    """What a learned method supplies to the :class:`Trainer`; subclass and override.

    Attributes
    ----------
    unit : str
        Name of one round in logs, records and the progress bar (``"step"``, ``"epoch"``).
    desc : str
        Progress bar label.
    dist : Dist
        Set by the Trainer before :meth:`setup` (rank, world size, device).
    """

    unit: str = "step"
    desc: str = "training"
    dist: Dist = Dist()

    def setup(self) -> nn.Module:
        """Build or place the model and the data on ``self.dist.device``; return the model to train.

        Called once, after the Trainer has seeded every generator with its ``seed``.
        """
        raise NotImplementedError

    def make_optimizer(self, model: nn.Module):
        """``(optimizer, scheduler or None)`` for ``model``; the scheduler is stepped once per round."""
        raise NotImplementedError

    def settings(self) -> dict:
        """JSON-able hyper-parameters of the run that the optimiser does not hold (for the fingerprint)."""
        return {}

    def data(self):
        """The training and validation inputs (arrays, tensors, sparse matrices), digested for the fingerprint."""
        return ()

    def batches(self, round: int):
        """The batches of round ``round`` (0-based), one per optimiser step; this rank's share under DDP."""
        raise NotImplementedError

    def loss(self, module: nn.Module, batch) -> torch.Tensor:
        """The scalar to minimise on ``batch``; ``module`` is the (possibly DDP-wrapped) model."""
        raise NotImplementedError

    def end_round(self, round: int, losses: list[float]) -> float:
        """The round's training loss to record, from the per-step ``losses`` (default: their mean)."""
        return float(np.mean(losses)) if losses else math.nan

    def validate(self, model: nn.Module) -> float | None:
        """Validation value (lower is better) of ``model`` (eval mode, no grad), or ``None``: no validation."""
        return None

    def state_dict(self) -> dict:
        """The task's own resumable state (e.g. sampler generators): tensors and plain containers."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`."""


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns.

    Attributes
    ----------
    model : nn.Module
        The kept weights (EMA weights when the EMA is on; the best-validation
        weights when validated, else the last), eval mode, on the training device.
    raw_model : nn.Module
        The trained (non-EMA) model; the same object as ``model`` without EMA.
    history : list of dict
        One record per round: ``{unit: k, "loss", "lr", "val", "seconds"}``
        (``val`` is ``None`` where not validated; ``lr`` is the rate the round used).
    log : list of dict
        Records every ``log_every`` rounds and at the end: ``loss`` is the
        mean over the rounds since the previous record, ``val`` the last
        validation among them.
    best_round, best_val
        The round whose weights were kept (1-based) and its validation value
        (``None`` without validation).
    rounds : int
        Rounds done in total (resumed runs included).
    seconds : float
        Wall time summed over resumed runs.
    stopped_early : bool
        The wall-time budget ended the run before ``rounds``.
    rank, world_size : int
    """

    model: nn.Module
    raw_model: nn.Module
    history: list = field(default_factory=list)
    log: list = field(default_factory=list)
    best_round: int = 0
    best_val: float | None = None
    rounds: int = 0
    seconds: float = 0.0
    stopped_early: bool = False
    rank: int = 0
    world_size: int = 1

    def losses(self) -> list[float]:
        """Training loss per round."""
        return [r["loss"] for r in self.history]


def _positive_int(name, v, minimum=1):
    if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {v!r}")
    return int(v)


def _optional_positive(name, v, upper=None):
    if v is None:
        return None
    if not isinstance(v, numbers.Real) or isinstance(v, bool) or not math.isfinite(v) or v <= 0 or (
            upper is not None and v >= upper):
        raise ValueError(f"{name} must be None or a number > 0{f' and < {upper}' if upper else ''}, got {v!r}")
    return float(v)


class Trainer:
    """Run a :class:`TrainTask` (see the module notes for what the Trainer owns).

    Parameters
    ----------
    task : TrainTask
    rounds : int
        Rounds in total; a resumed run continues up to ``rounds`` (it may grow).
    seed : int
        Seeds python/numpy/torch before ``task.setup()``.
    device : optional
        Default CUDA when available; under ``torchrun`` one device per rank.
    checkpoint : str or Path, optional
        Checkpoint file; its folder must be writable (checked before training).
    checkpoint_every : int
        Rounds between checkpoints (also written at the end and when stopped early).
    resume : bool
        Continue from ``checkpoint`` when it exists (same fingerprint required).
    val_every : int
        Rounds between validations (also at the last round and when stopped early).
    log : callable or path, optional
        Called with each new log record, or a JSON-lines file of all log
        records rewritten atomically whenever one is added (main process).
    log_every : int
        Rounds per log record.
    ema_decay : float, optional
        Keep an EMA of the weights with decay ``min(ema_decay, (1 + k) / (10 + k))``
        after optimiser step ``k`` (0-based; short runs average usefully);
        the EMA is validated, kept and returned.
    grad_clip : float, optional
        Clip the global gradient norm.
    max_minutes : float, optional
        Wall-time budget of this call: save and stop after the first round
        that ends past it (under DDP rank 0 decides for all ranks).
    progress : bool
        Show a tqdm bar (main process).
    """

    def __init__(self, task: TrainTask, *, rounds: int, seed: int = 0, device=None, checkpoint=None,
                 checkpoint_every: int = 1, resume: bool = True, val_every: int = 1, log=None, log_every: int = 1,
                 ema_decay: float | None = None, grad_clip: float | None = None, max_minutes: float | None = None,
                 progress: bool = True):
        if not isinstance(task, TrainTask):
            raise TypeError(f"task must be a TrainTask, got {type(task).__name__}")
        self.task = task
        self.rounds = _positive_int("rounds", rounds)
        self.seed = _positive_int("seed", seed, 0)
        self.checkpoint_every = _positive_int("checkpoint_every", checkpoint_every)
        self.val_every = _positive_int("val_every", val_every)
        self.log_every = _positive_int("log_every", log_every)
        self.ema_decay = None if ema_decay is None else float(ema_decay)
        if ema_decay is not None and not (isinstance(ema_decay, numbers.Real) and 0 <= ema_decay < 1):
            raise ValueError(f"ema_decay must be None or lie in [0, 1), got {ema_decay!r}")
        self.grad_clip = _optional_positive("grad_clip", grad_clip)
        self.max_minutes = _optional_positive("max_minutes", max_minutes)
        if log is not None and not callable(log) and not isinstance(log, (str, os.PathLike)):
            raise TypeError(f"log must be a callable or a path, got {type(log).__name__}")
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.log_target = log
        self.device, self.resume, self.progress = device, bool(resume), bool(progress)

    # ------------------------------------------------------------------ entry point
    def fit(self) -> TrainResult:
        """Train; return a :class:`TrainResult`.  Joins (and leaves) a DDP group under ``torchrun``."""
        owned = not group_initialized()
        dist = setup_distributed(self.device)
        try:
            return self._fit(dist)
        finally:
            if owned and dist.enabled:
                cleanup_distributed()

    def _fit(self, dist: Dist) -> TrainResult:
        if dist.is_main:
            for target, what in ((self.checkpoint, "checkpoint"), (self.log_target, "log")):
                if target is not None and not callable(target):
                    check_writable(Path(target).parent, what)
        self.dist = self.task.dist = dist
        seed_everything(self.seed)
        model = self.task.setup()
        model.train()
        ema = None
        if self.ema_decay is not None:
            ema = copy.deepcopy(model).eval()
            for p in ema.parameters():
                p.requires_grad_(False)
        optimizer, scheduler = self.task.make_optimizer(model)
        run = _Run(model, ema, optimizer, scheduler, self._fingerprint(model, optimizer))
        if self.checkpoint is not None and self.resume and self.checkpoint.is_file():
            self._restore(run)
        run.module = model
        if dist.enabled:
            dev = dist.device
            run.module = nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda"
                                                             else None)
        self._loop(run)
        return self._finish(run)

    # ------------------------------------------------------------------ fingerprint and resume
    def _fingerprint(self, model: nn.Module, optimizer) -> dict:
        net = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
        opt = {k: optimizer.defaults[k] for k in _OPTIMIZER_KEYS if k in optimizer.defaults}
        return json_clean({
            "network": {"class": type(net).__name__, "config": getattr(net, "config", None),
                        "kind": getattr(net, "kind", None)},
            "optimizer": type(optimizer).__name__, **opt,
            "seed": self.seed, "ema_decay": self.ema_decay, "grad_clip": self.grad_clip,
            **self.task.settings(),
            "data": digest(self.task.data()),
        })

    def _restore(self, run: "_Run") -> None:
        extra = load_checkpoint(self.checkpoint, model=run.model, optimizer=run.optimizer, scheduler=run.scheduler,
                                map_location=self.dist.device, fingerprint=run.fingerprint)
        if run.ema is not None:
            run.ema.load_state_dict(extra["ema"])
        self.task.load_state_dict(extra.get("task") or {})
        for k in ("round", "opt_steps", "history", "log", "best_state", "best_val", "best_round", "seconds"):
            if k in extra:
                setattr(run, k, extra[k])

    def _save(self, run: "_Run", seconds: float) -> None:
        if self.checkpoint is None or not self.dist.is_main:
            return
        save_checkpoint(self.checkpoint, model=run.model, optimizer=run.optimizer, scheduler=run.scheduler,
                        fingerprint=run.fingerprint, ema=None if run.ema is None else run.ema.state_dict(),
                        task=self.task.state_dict(), round=run.round, opt_steps=run.opt_steps,
                        history=run.history, log=run.log, best_state=run.best_state, best_val=run.best_val,
                        best_round=run.best_round, seconds=seconds)

    # ------------------------------------------------------------------ the loop
    def _loop(self, run: "_Run") -> None:
        t0 = time.perf_counter()
        start_seconds = run.seconds
        bar = tqdm(total=self.rounds, initial=min(run.round, self.rounds), desc=self.task.desc, unit=self.task.unit,
                   disable=not (self.progress and self.dist.is_main), dynamic_ncols=True)
        try:
            for r in range(run.round, self.rounds):
                record = self._round(run, r)
                run.round = r + 1
                run.seconds = start_seconds + time.perf_counter() - t0
                record["seconds"] = run.seconds
                last = r + 1 == self.rounds
                out_of_time = self._out_of_time(t0)
                if (r + 1) % self.val_every == 0 or last or out_of_time:
                    self._validate(run, record)
                run.history.append(record)
                if (r + 1) % self.log_every == 0 or last or out_of_time:
                    self._log(run, bar)
                bar.update(1)
                if (r + 1) % self.checkpoint_every == 0 or last or out_of_time:
                    self._save(run, run.seconds)
                if out_of_time:
                    run.stopped_early = True
                    break
        finally:
            bar.close()

    def _round(self, run: "_Run", r: int) -> dict:
        model, optimizer = run.model, run.optimizer
        run.module.train()
        lr = optimizer.param_groups[0]["lr"]
        losses = []
        for batch in self.task.batches(r):
            loss = self.task.loss(run.module, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if not bool(torch.isfinite(loss.detach())):
                raise FloatingPointError(f"{self.task.unit} {r + 1}: the loss is {float(loss.detach())}")
            if self.grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), self.grad_clip)
            optimizer.step()
            if run.ema is not None:
                self._update_ema(run)
            run.opt_steps += 1
            losses.append(float(loss.detach()))
        if run.scheduler is not None:
            run.scheduler.step()
        return {self.task.unit: r + 1, "loss": self.task.end_round(r, losses), "lr": lr, "val": None}

    def _update_ema(self, run: "_Run") -> None:
        k = run.opt_steps
        decay = min(self.ema_decay, (1 + k) / (10 + k))
        with torch.no_grad():
            torch._foreach_lerp_(run.ema_params, run.model_params, 1 - decay)
            for be, bm in zip(run.ema.buffers(), run.model.buffers()):
                be.copy_(bm)

    def _out_of_time(self, t0: float) -> bool:
        if self.max_minutes is None:
            return False
        out = time.perf_counter() - t0 >= 60.0 * self.max_minutes
        if self.dist.enabled:
            flag = torch.tensor([float(out)], device=self.dist.device)
            torch.distributed.broadcast(flag, 0)
            out = bool(flag.item())
        return out

    def _validate(self, run: "_Run", record: dict) -> None:
        kept = run.kept
        kept.eval()
        with torch.no_grad():
            v = self.task.validate(kept)
        run.module.train()
        if v is None:
            return
        record["val"] = float(v)
        if v < run.best_val:
            run.best_val, run.best_round = float(v), record[self.task.unit]
            run.best_state = {k: t.detach().clone() for k, t in kept.state_dict().items()}

    def _log(self, run: "_Run", bar) -> None:
        unit = self.task.unit
        since = run.log[-1][unit] if run.log else 0
        window = [h for h in run.history if h[unit] > since]
        vals = [h["val"] for h in window if h["val"] is not None]
        rec = {unit: window[-1][unit], "loss": float(np.mean([h["loss"] for h in window])),
               "val": vals[-1] if vals else None, "lr": window[-1]["lr"], "seconds": window[-1]["seconds"]}
        run.log.append(rec)
        bar.set_postfix(loss=f"{rec['loss']:.4g}", **({} if rec["val"] is None else {"val": f"{rec['val']:.4g}"}))
        if not self.dist.is_main or self.log_target is None:
            return
        if callable(self.log_target):
            self.log_target(dict(rec))
        else:
            atomic_write_text(self.log_target, "".join(json.dumps(r) + "\n" for r in run.log))

    def _finish(self, run: "_Run") -> TrainResult:
        if run.best_state is not None:
            run.kept.load_state_dict(run.best_state)
        else:
            run.best_round = run.round
        run.model.eval()
        best_val = run.best_val if math.isfinite(run.best_val) else None
        return TrainResult(model=run.kept, raw_model=run.model, history=list(run.history), log=list(run.log),
                           best_round=int(run.best_round), best_val=best_val, rounds=int(run.round),
                           seconds=float(run.seconds), stopped_early=run.stopped_early, rank=self.dist.rank,
                           world_size=self.dist.world_size)


class _Run:
    """The mutable state of one :meth:`Trainer.fit` call (what a checkpoint stores)."""

    def __init__(self, model, ema, optimizer, scheduler, fingerprint):
        self.model, self.ema, self.optimizer, self.scheduler = model, ema, optimizer, scheduler
        self.fingerprint = fingerprint
        self.module = model
        self.kept = ema if ema is not None else model
        self.ema_params = list(ema.parameters()) if ema is not None else []
        self.model_params = [p.detach() for p in model.parameters()]
        self.round = self.opt_steps = self.best_round = 0
        self.history, self.log = [], []
        self.best_state, self.best_val = None, math.inf
        self.seconds = 0.0
        self.stopped_early = False
