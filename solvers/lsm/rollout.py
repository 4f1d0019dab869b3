"""Autoregressive training and rollout on vorticity time series (the LSM / FNO Navier–Stokes benchmark).

A network with ``in_channels = t_in`` and ``out_channels = 1`` maps the last
``t_in`` frames (as channels) to the next one; a rollout of ``steps`` frames
feeds each prediction back in place of the oldest frame.  The recipe of the
authors' ``exp_ns.py`` (and FNO's ``fourier_2d_time.py``):

* input frames ``first .. first + t_in - 1``, targets the ``steps`` frames
  after them (the benchmark: frames t = 1..10 in, t = 11..20 out; in the
  layout of :mod:`krylearn.datasets.ns_formats` frame 0 is the initial field,
  so ``first = 1``);
* the loss of a batch is the relative L2 of each predicted frame, summed over
  the batch and over the rollout steps, with gradients through the whole
  rollout; no normalisation;
* the reported error (``test_l2_full``) is the relative L2 of the whole
  predicted sequence (all ``steps`` frames together) per sample, averaged.

:class:`RolloutTask` states this for the shared
:class:`~krylearn.solvers.learned.Trainer` (one round = one epoch), which
adds validation-based selection, checkpoints, progress and DDP, as for Darcy.
"""

from __future__ import annotations

import torch
import torch.distributed
import torch.nn as nn

from ..learned import Trainer
from .metrics import model_channels, relative_l2
from .normalizer import NormalizedOperator
from .train import SCHEDULES, OperatorTask

__all__ = ["RolloutTask", "rollout", "rollout_errors", "split_frames", "train_rollout"]


def split_frames(w, t_in: int, steps: int, first: int = 1, name: str = "w") -> tuple[torch.Tensor, torch.Tensor]:
    """``(inputs (N, t_in, H, W), targets (N, steps, H, W))`` float32 from frames ``w`` (N, F, H, W).

    Raises ``ValueError`` naming ``name`` when ``w`` has too few frames or is not finite.
    """
    w = torch.as_tensor(w)
    if w.ndim != 4 or w.is_complex():
        raise ValueError(f"{name} must be a real (N, frames, H, W) array, got shape {tuple(w.shape)}")
    for label, v in (("t_in", t_in), ("steps", steps)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{label} must be a positive integer, got {v!r}")
    if not isinstance(first, int) or first < 0 or first + t_in + steps > w.shape[1]:
        raise ValueError(f"{name} has {w.shape[1]} frames; first + t_in + steps = {first} + {t_in} + {steps} "
                         "must not exceed them")
    w = w.to(torch.float32)
    if not torch.isfinite(w).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return w[:, first:first + t_in].contiguous(), w[:, first + t_in:first + t_in + steps].contiguous()


def rollout(model: nn.Module, x: torch.Tensor, steps: int) -> torch.Tensor:
    """Predict ``steps`` frames ``(B, steps, H, W)`` from ``x`` ``(B, t_in, H, W)``, each fed back in."""
    preds = []
    for _ in range(steps):
        y = model(x)                       # (B, 1, H, W)
        preds.append(y)
        x = torch.cat([x[:, 1:], y], dim=1)
    return torch.cat(preds, dim=1)


@torch.no_grad()
def rollout_errors(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 20,
                   device=None) -> dict:
    """Per-sample errors of a rollout of ``y.shape[1]`` steps from ``x``.

    Returns
    -------
    dict
        ``full`` (N,) float64: relative L2 of all predicted frames together;
        ``per_step`` (steps,) float64: mean over samples of each frame's relative L2.
    """
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    full, per_step = [], []
    try:
        for s in range(0, len(x), batch_size):
            xb, yb = x[s:s + batch_size].to(device), y[s:s + batch_size].to(device)
            pred = rollout(model, xb, yb.shape[1])
            full.append(relative_l2(pred, yb, "none").double().cpu())
            per_step.append(torch.stack([relative_l2(pred[:, k], yb[:, k], "none") for k in range(yb.shape[1])],
                                        dim=1).double().cpu())
    finally:
        model.train(was_training)
    return {"full": torch.cat(full), "per_step": torch.cat(per_step).mean(0)}


class RolloutTask(OperatorTask):
    """Autoregressive operator learning for the Trainer: one round is one epoch (see the module docstring).

    The data, batches, optimiser and epoch bookkeeping are :class:`~.train.OperatorTask`'s, with the
    input windows ``x`` (N, t_in, s, s) as its ``a`` and the target frames ``y`` (N, steps, s, s) as its ``u``.
    """

    def __init__(self, predictor: NormalizedOperator, x_tr, y_tr, val, **options):
        super().__init__(predictor, x_tr, y_tr, val, **options)
        self.desc = f"train {predictor.kind} (rollout {y_tr.shape[1]})"

    def settings(self) -> dict:
        return {**super().settings(), "t_in": int(self.a_tr.shape[1]), "steps": int(self.u_tr.shape[1]),
                "loss": "rollout"}

    def loss(self, module, idx) -> torch.Tensor:
        y = self.u_dev[idx]
        pred = rollout(module, self.a_dev[idx], y.shape[1])
        per_step = torch.stack([relative_l2(pred[:, k], y[:, k], "sum") for k in range(y.shape[1])])
        full = relative_l2(pred.detach(), y, "none")
        self.total += torch.stack([full.sum().double(), torch.tensor(len(idx), device=self.dist.device)])
        return per_step.sum() * self.dist.world_size

    def validate(self, model) -> float | None:
        if self.val is None:
            return None
        dev = self.dist.device
        idx = torch.arange(len(self.val[0]))[self.dist.rank::self.dist.world_size]
        err = rollout_errors(model, self.val[0][idx], self.val[1][idx], self.batch_size, dev)["full"]
        s = torch.tensor([float(err.sum()), len(idx)], dtype=torch.float64, device=dev)
        if self.dist.enabled:
            torch.distributed.all_reduce(s)
        return float(s[0] / s[1])


def train_rollout(model: nn.Module, w_train, w_val=None, *, t_in: int = 10, steps: int = 10, first: int = 1,
                  epochs: int, batch_size: int = 20, lr: float = 5e-4, weight_decay: float = 1e-4,
                  step_size: int = 100, gamma: float = 0.5, seed: int = 0, checkpoint=None, resume: bool = True,
                  device=None, progress: bool = True, log=None, max_minutes: float | None = None,
                  schedule: str = "step") -> dict:
    """Train ``model`` to advance vorticity by one frame, with the loss summed over a ``steps``-frame rollout.

    Parameters
    ----------
    model : nn.Module
        :class:`LSM2d` / :class:`FNO2d` / :class:`UNet2d` with ``in_channels
        = t_in`` and ``out_channels = 1`` (or a :class:`NormalizedOperator`
        around one).  Trained in place; wrapped without normalisers.
    w_train, w_val : array or tensor, (N, frames, H, W)
        Vorticity time series (:class:`~krylearn.datasets.ns_formats.NSData` ``.w``).
        The epoch with the lowest mean validation ``test_l2_full`` gives the
        returned weights; without ``w_val`` the last epoch is kept.
    t_in, steps, first : int
        Frames in, frames rolled out, index of the first input frame.
    epochs, batch_size, lr, weight_decay, step_size, gamma, seed, checkpoint, resume, device, progress, log,
    max_minutes, schedule
        As :func:`~krylearn.solvers.lsm.train_operator`.

    Returns
    -------
    dict
        ``train_loss`` (mean full-sequence relative L2 per epoch), ``val_loss``,
        ``lr``, ``best_epoch``, ``best_val``, ``epochs``, ``seconds``,
        ``world_size``, ``predictor`` (eval mode).
    """
    for name, v in (("epochs", epochs), ("batch_size", batch_size), ("step_size", step_size)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    net = model.net if isinstance(model, NormalizedOperator) else model
    cin, cout = model_channels(net)
    if cin != t_in or cout != 1:
        raise ValueError(f"model must map t_in = {t_in} channels to 1, its config says {cin} -> {cout}")
    x_tr, y_tr = split_frames(w_train, t_in, steps, first, "w_train")
    val = split_frames(w_val, t_in, steps, first, "w_val") if w_val is not None else None
    predictor = model if isinstance(model, NormalizedOperator) else NormalizedOperator(model)
    task = RolloutTask(predictor, x_tr, y_tr, val, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                       step_size=step_size, gamma=gamma, seed=seed, schedule=schedule, epochs=epochs)
    result = Trainer(task, rounds=epochs, seed=seed, device=device, checkpoint=checkpoint, checkpoint_every=1,
                     resume=resume, val_every=1, log=log, log_every=1, max_minutes=max_minutes,
                     progress=progress).fit()
    hist = result.history
    return {"train_loss": [h["loss"] for h in hist], "val_loss": [h["val"] for h in hist],
            "lr": [h["lr"] for h in hist], "best_epoch": result.best_round, "best_val": result.best_val,
            "epochs": result.rounds, "seconds": result.seconds, "world_size": result.world_size,
            "predictor": result.model}
