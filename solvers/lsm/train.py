"""Training LSM and its baselines with the authors' Darcy recipe, on the shared Trainer.

The recipe: relative L2 loss summed over the batch, Adam with
``weight_decay`` added to the gradient (L2, torch Adam's ``weight_decay``,
not AdamW), StepLR x``gamma`` every ``step_size`` epochs (or a cosine or
one-cycle schedule over the run, ``schedule``), batch 20,
pointwise Gaussian normalisation of inputs and outputs with the prediction
decoded to physical units before the loss.  :class:`OperatorTask` states it
for :class:`~krylearn.solvers.learned.Trainer` (one round = one epoch),
which adds the validation split that selects the kept weights, resumable
checkpoints, a progress bar, a wall-time budget and DistributedDataParallel
under ``torchrun``.

Examples
--------
>>> from krylearn.solvers.lsm import LSM2d, train_operator  # doctest: +SKIP
>>> out = train_operator(LSM2d(), a_tr, u_tr, a_va, u_va, epochs=501, checkpoint="lsm.ckpt")  # doctest: +SKIP
>>> save_pretrained(out["predictor"], {"data": "..."}, "lsm-darcy")  # doctest: +SKIP
"""

from __future__ import annotations

import math
import numbers
import warnings
from pathlib import Path

import torch
import torch.distributed
import torch.nn as nn

from ..learned import Trainer, TrainTask
from .metrics import as_fields, error_sum, model_channels, relative_l2
from .normalizer import NormalizedOperator, UnitGaussianNormalizer

__all__ = ["OperatorTask", "train_operator", "SCHEDULES", "make_scheduler", "describe_schedule"]

#: Learning-rate schedules, stepped once per epoch.
SCHEDULES = ("step", "cosine", "onecycle")


def cpu_has_native_bf16() -> bool | None:
    """Whether this CPU computes in bfloat16 natively (AVX-512 BF16 or AMX); ``None`` where it cannot be told.

    Without it, bfloat16 autocast on the CPU is emulated: a Darcy LSM training
    step took 8x the float32 time on an AVX2-only CPU, 0.52x on one with it.
    """
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    return any(flag in text for flag in ("avx512_bf16", "amx_bf16"))


def make_scheduler(optimizer, schedule: str, *, epochs: int, step_size: int, gamma: float):
    """The per-epoch learning-rate schedule of ``optimizer`` (its ``lr`` is the peak).

    ``"step"``: StepLR, x``gamma`` every ``step_size`` epochs (the paper's).
    ``"cosine"``: cosine decay from ``lr`` to 0 over ``epochs``.
    ``"onecycle"``: OneCycleLR over ``epochs``: warm-up from ``lr / 25`` for
    the first 30%, then cosine decay to ``lr / 2.5e5`` (torch's defaults).
    The last two suit a short, fixed budget: the rate reaches its low end
    when the run ends, whatever ``epochs`` is; such a run resumes only with
    the same ``epochs`` (the task's settings record it).
    """
    if schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma)
    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    if schedule == "onecycle":
        peak = [g["lr"] for g in optimizer.param_groups]
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=peak, total_steps=epochs + 1)
    raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")


def describe_schedule(schedule: str, *, epochs: int, step_size: int, gamma: float) -> str:
    """The schedule as the weight cards record it."""
    if schedule == "step":
        return f"StepLR(step_size={step_size}, gamma={gamma}) per epoch"
    if schedule == "cosine":
        return f"CosineAnnealingLR(T_max={epochs}) per epoch"
    return f"OneCycleLR(total_steps={epochs + 1}, pct_start=0.3, cosine) per epoch"


class OperatorTask(TrainTask):
    """Supervised operator learning ``a -> u`` for the Trainer: one round is one epoch.

    The sample order of epoch ``e`` is a permutation seeded by ``(seed, e)``,
    shared by all ranks; under DDP each of the ``W`` processes takes every
    W-th sample of each global batch, so the batches do not depend on ``W``.
    The loss backpropagated is the relative L2 *summed* over the global
    batch (the authors' ``LpLoss(size_average=False)``; DDP averages the
    ranks' gradients, hence the factor ``W``); the recorded training loss is
    its mean over the epoch's samples, the validation value the mean
    relative L2 on the validation pairs.
    """

    unit = "epoch"

    def __init__(self, predictor: NormalizedOperator, a_tr, u_tr, val, *, batch_size: int, lr: float,
                 weight_decay: float, step_size: int, gamma: float, seed: int, bf16: bool = False,
                 schedule: str = "step", epochs: int | None = None):
        self.predictor, self.a_tr, self.u_tr, self.val = predictor, a_tr, u_tr, val
        self.bf16 = bool(bf16)
        self.schedule, self.epochs = schedule, epochs
        self.batch_size, self.lr, self.weight_decay = batch_size, lr, weight_decay
        self.step_size, self.gamma, self.seed = step_size, gamma, seed
        self.desc = f"train {predictor.kind}"

    def setup(self) -> NormalizedOperator:
        dev, world = self.dist.device, self.dist.world_size
        if self.bf16 and dev.type == "cpu" and cpu_has_native_bf16() is False:
            warnings.warn("bf16: this CPU has no native bfloat16 (AVX-512 BF16 or AMX), so autocast is emulated; "
                          "a training step took about 8x the float32 time on such a CPU. Train without bf16.",
                          RuntimeWarning, stacklevel=2)
        self.predictor.to(dev)
        if self.dist.enabled and dev.type == "cuda":
            self.predictor.net = nn.SyncBatchNorm.convert_sync_batchnorm(self.predictor.net)
        self.a_dev, self.u_dev = self.a_tr.to(dev), self.u_tr.to(dev)
        n = len(self.a_tr)
        self.n_batches = n // self.batch_size + (1 if n % self.batch_size >= world else 0)
        if self.n_batches == 0:
            raise ValueError(f"a_train has {n} samples, fewer than the {world} processes")
        return self.predictor

    def make_optimizer(self, model):
        optimizer = torch.optim.Adam(model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        return optimizer, make_scheduler(optimizer, self.schedule, epochs=self.epochs, step_size=self.step_size,
                                         gamma=self.gamma)

    def settings(self) -> dict:
        out = {"batch_size": self.batch_size, "step_size": self.step_size, "gamma": self.gamma}
        if self.bf16:  # only when set, so that checkpoints written before the option still resume
            out["bf16"] = True
        if self.schedule != "step":  # the schedule spans the run: resuming needs the same length
            out.update(schedule=self.schedule, schedule_epochs=self.epochs)
        return out

    def data(self):
        return (self.a_tr, self.u_tr) + (tuple(self.val) if self.val is not None else ())

    def batches(self, round: int):
        dev, rank, world = self.dist.device, self.dist.rank, self.dist.world_size
        perm = torch.randperm(len(self.a_tr), generator=torch.Generator().manual_seed(self.seed * 1_000_003 + round))
        self.total = torch.zeros(2, dtype=torch.float64, device=dev)
        for b in range(self.n_batches):
            yield perm[b * self.batch_size:(b + 1) * self.batch_size][rank::world].to(dev)

    def loss(self, module, idx) -> torch.Tensor:
        with torch.autocast(self.dist.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            out = module(self.a_dev[idx])
        per = relative_l2(out.float(), self.u_dev[idx], "none")
        self.total += torch.stack([per.detach().sum().double(), torch.tensor(len(idx), device=self.dist.device)])
        return per.sum() * self.dist.world_size

    def end_round(self, round: int, losses: list[float]) -> float:
        if self.dist.enabled:
            torch.distributed.all_reduce(self.total)
            for buf in self.predictor.buffers():  # BatchNorm running stats: use rank 0's everywhere
                torch.distributed.broadcast(buf, 0)
        return float(self.total[0] / self.total[1])

    def validate(self, model) -> float | None:
        if self.val is None:
            return None
        dev = self.dist.device
        idx = torch.arange(len(self.val[0]))[self.dist.rank::self.dist.world_size]
        s = torch.tensor(error_sum(model, self.val[0], self.val[1], idx, self.batch_size, dev),
                         dtype=torch.float64, device=dev)
        if self.dist.enabled:
            torch.distributed.all_reduce(s)
        return float(s[0] / s[1])


def check_optimizer_args(lr, weight_decay, gamma) -> None:
    """``ValueError`` naming the first of ``lr > 0``, ``weight_decay >= 0``, ``0 < gamma <= 1`` that fails."""
    for name, v, ok, need in (("lr", lr, lambda v: v > 0, "> 0"), ("weight_decay", weight_decay, lambda v: v >= 0,
                              ">= 0"), ("gamma", gamma, lambda v: 0 < v <= 1, "in (0, 1]")):
        if not (isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) and ok(v)):
            raise ValueError(f"{name} must be {need}, got {v!r}")


def _check_args(epochs, batch_size, step_size, checkpoint_every, lr, weight_decay, gamma, a_val, u_val,
                schedule="step") -> None:
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    for name, v in (("epochs", epochs), ("batch_size", batch_size), ("step_size", step_size),
                    ("checkpoint_every", checkpoint_every)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    check_optimizer_args(lr, weight_decay, gamma)
    if (a_val is None) != (u_val is None):
        raise ValueError("give both a_val and u_val, or neither")


def _pairs(a, u, names, cin, cout):
    a, u = as_fields(a, names[0], cin), as_fields(u, names[1], cout)
    if len(a) != len(u) or a.shape[-2:] != u.shape[-2:]:
        raise ValueError(f"{names[0]} and {names[1]} must hold the same samples and grid, "
                         f"got {tuple(a.shape)} and {tuple(u.shape)}")
    return a, u


def train_operator(model: nn.Module, a_train, u_train, a_val=None, u_val=None, *, epochs: int,
                   batch_size: int = 20, lr: float = 5e-4, weight_decay: float = 1e-4, step_size: int = 100,
                   gamma: float = 0.5, seed: int = 0, normalize: bool = True, checkpoint=None,
                   checkpoint_every: int = 1, resume: bool = True, device=None, progress: bool = True,
                   log=None, max_minutes: float | None = None, bf16: bool = False, schedule: str = "step") -> dict:
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
        Global batch size (see :class:`OperatorTask` for DDP).
    lr, weight_decay, step_size, gamma, schedule :
        Adam (L2 ``weight_decay`` added to the gradient) and the per-epoch
        schedule (:func:`make_scheduler`; ``step_size``, ``gamma``: StepLR's).
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
        same network, hyper-parameters and data (``epochs`` may grow).
    device : optional
        Default CUDA when available.  Under ``torchrun`` (``WORLD_SIZE > 1``)
        the processes join a DDP group (gloo on CPU, nccl on CUDA).
    progress : bool
        A tqdm bar over the epochs (main process only).
    log : callable or path, optional
        Called with each epoch's record (``epoch``, ``loss``, ``val``, ``lr``,
        ``seconds``), or a JSON-lines file of them rewritten atomically each epoch.
    max_minutes : float, optional
        Wall-time budget: save and stop after the first epoch past it.
    bf16 : bool
        bfloat16 autocast in the training forward pass (float32 weights, loss
        and validation); warns on a CPU without native bfloat16 (:func:`cpu_has_native_bf16`).

    Returns
    -------
    dict
        ``train_loss``, ``val_loss`` (lists of mean relative L2 per epoch; val
        ``None`` without validation data), ``lr`` (per epoch), ``best_epoch``
        (1-based), ``best_val``, ``epochs``, ``seconds`` (wall time, summed
        over resumed runs), ``world_size``, ``predictor`` (the
        :class:`NormalizedOperator` with the kept weights, in eval mode).
    """
    _check_args(epochs, batch_size, step_size, checkpoint_every, lr, weight_decay, gamma, a_val, u_val, schedule)
    net = model.net if isinstance(model, NormalizedOperator) else model
    cin, cout = model_channels(net)
    a_tr, u_tr = _pairs(a_train, u_train, ("a_train", "u_train"), cin, cout)
    val = _pairs(a_val, u_val, ("a_val", "u_val"), cin, cout) if a_val is not None else None
    if isinstance(model, NormalizedOperator):
        predictor = model
    elif normalize:
        predictor = NormalizedOperator(model, UnitGaussianNormalizer.fit(a_tr), UnitGaussianNormalizer.fit(u_tr))
    else:
        predictor = NormalizedOperator(model)
    task = OperatorTask(predictor, a_tr, u_tr, val, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                        step_size=step_size, gamma=gamma, seed=seed, bf16=bf16, schedule=schedule, epochs=epochs)
    result = Trainer(task, rounds=epochs, seed=seed, device=device, checkpoint=checkpoint,
                     checkpoint_every=checkpoint_every, resume=resume, val_every=1, log=log, log_every=1,
                     max_minutes=max_minutes, progress=progress).fit()
    hist = result.history
    return {"train_loss": [h["loss"] for h in hist], "val_loss": [h["val"] for h in hist],
            "lr": [h["lr"] for h in hist], "best_epoch": result.best_round, "best_val": result.best_val,
            "epochs": result.rounds, "seconds": result.seconds, "world_size": result.world_size,
            "predictor": result.model}
