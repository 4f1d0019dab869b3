"""Unsupervised DCDM training (Kaneda et al., ICML 2023, section 3).

For a unit right-hand side ``b`` and ``q = f(b)`` the loss is the residual
after one exact line-search step from zero,

    loss = || b - A q (q.b) / (q.A q) ||^2,

averaged over the batch: no reference solutions are needed, and the scale of
``q`` does not matter.  Right-hand sides come from :class:`RitzSampler`.

:class:`DCDMTask` is this recipe for the shared
:class:`~krylearn.solvers.learned.Trainer` (one round = one optimiser step);
:func:`train_dcdm` runs it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse
import torch

from ...operators.sparse import SparseMatrix
from ...operators.stencil import FLUID

from ..learned import Trainer, TrainTask, digest
from .model import DCDMNet
from .ritz import RitzSampler

__all__ = ["TrainingSystem", "DCDMTask", "dcdm_loss", "train_dcdm"]


@dataclass
class TrainingSystem:
    """One training matrix with its grid and Ritz basis.

    Attributes
    ----------
    A : scipy.sparse.csr_matrix, (n, n)
        Full-grid SPD matrix (zero rows on non-fluid cells).
    grid_shape : tuple of int
    flags : numpy.ndarray, uint8, grid_shape
    vectors : numpy.ndarray, (m, n) float32
        Ritz vectors, ascending Ritz values.
    name : str
    """

    A: scipy.sparse.csr_matrix
    grid_shape: tuple
    flags: np.ndarray
    vectors: np.ndarray
    name: str = ""
    attrs: dict = field(default_factory=dict)

    def __post_init__(self):
        n = self.A.shape[0]
        if math.prod(self.grid_shape) != n:
            raise ValueError(f"grid_shape {self.grid_shape} does not match A of size {n}")
        if self.vectors.ndim != 2 or self.vectors.shape[1] != n:
            raise ValueError(f"vectors must have shape (m, {n}), got {self.vectors.shape}")


class _SymmetricProduct(torch.autograd.Function):
    """``y = A x`` for symmetric ``A``; the backward pass is another product with ``A``."""

    @staticmethod
    def forward(ctx, x, op):
        ctx.op = op
        return op._apply(x)

    @staticmethod
    def backward(ctx, g):
        return ctx.op._apply(g.contiguous()), None


def dcdm_loss(net: torch.nn.Module, b: torch.Tensor, fluid: torch.Tensor, op, grid_shape) -> torch.Tensor:
    """Mean over the batch of ``||b - A q (q.b)/(q.Aq)||^2`` with ``q = net(b)``.

    ``b`` is ``(B, n)`` float32 with unit rows, ``op`` a symmetric operator on
    ``(B, n)`` float32 tensors.
    """
    q = net(b.reshape((b.shape[0],) + tuple(grid_shape)), fluid).reshape(b.shape)
    Aq = _SymmetricProduct.apply(q, op)
    qb = (q * b).sum(dim=1, keepdim=True)
    qAq = (q * Aq).sum(dim=1, keepdim=True).clamp_min(1e-30)
    res = b - Aq * (qb / qAq)
    return (res * res).sum(dim=1).mean()


class DCDMTask(TrainTask):
    """DCDM training for the :class:`~krylearn.solvers.learned.Trainer`: one round is one Adam step.

    Batches cycle through ``systems`` (system ``k % len(systems)`` at step
    ``k``); the right-hand sides of system ``i`` on rank ``r`` come from a
    :class:`RitzSampler` seeded ``seed + 1000 r + 17 i``, the validation ones
    (``val_size`` per system, fixed) from one seeded 7919 higher.  The
    validation value is the mean of :func:`dcdm_loss` over the systems.
    """

    unit = "step"
    desc = "training DCDM"

    def __init__(self, systems, *, config: dict, batch: int, lr: float, schedule: str, steps: int, seed: int,
                 val_size: int, net: DCDMNet | None = None):
        self.systems, self.config, self.batch, self.lr = systems, config, batch, lr
        self.schedule, self.steps, self.seed, self.val_size, self.net = schedule, steps, seed, val_size, net
        self.init = None if net is None else digest(list(net.state_dict().values()))

    def setup(self) -> DCDMNet:
        dev = self.dist.device
        model = self.net if self.net is not None else DCDMNet(**self.config)
        self.prepared = []
        for i, s in enumerate(self.systems):
            seed = self.seed + 1000 * self.dist.rank + 17 * i
            op = SparseMatrix(s.A.astype(np.float32)).to(dev)
            fluid = torch.as_tensor(np.asarray(s.flags).reshape(s.grid_shape) == FLUID, dtype=torch.float32,
                                    device=dev)
            val_b = RitzSampler(s.vectors, seed=seed + 7919, device=dev).sample(self.val_size)
            self.prepared.append((op, fluid, RitzSampler(s.vectors, seed=seed, device=dev), val_b))
        return model.to(dev)

    def make_optimizer(self, model):
        opt = torch.optim.Adam(model.parameters(), lr=self.lr)
        sched = None
        if self.schedule == "cosine":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.steps, eta_min=self.lr / 10)
        return opt, sched

    def settings(self) -> dict:
        return {"batch": self.batch, "schedule": self.schedule, "val_size": self.val_size,
                "cosine_steps": self.steps if self.schedule == "cosine" else None,
                "world_size": self.dist.world_size, "init": self.init}

    def data(self):
        return [(s.A, np.asarray(s.flags), s.vectors, list(s.grid_shape)) for s in self.systems]

    def batches(self, round: int):
        i = round % len(self.systems)
        yield i, self.prepared[i][2].sample(self.batch)

    def loss(self, module, batch) -> torch.Tensor:
        i, b = batch
        op, fluid, _, _ = self.prepared[i]
        return dcdm_loss(module, b, fluid, op, self.systems[i].grid_shape)

    def validate(self, model) -> float:
        return float(np.mean([dcdm_loss(model, vb, fl, op, s.grid_shape).item()
                              for (op, fl, _, vb), s in zip(self.prepared, self.systems)]))

    def state_dict(self) -> dict:
        return {"samplers": [p[2].state() for p in self.prepared]}

    def load_state_dict(self, state: dict) -> None:
        for p, s in zip(self.prepared, state.get("samplers", [])):
            p[2].set_state(s)


def _check_args(systems, schedule, **ints) -> int:
    if not systems:
        raise ValueError("systems must hold at least one TrainingSystem")
    dims = {len(s.grid_shape) for s in systems}
    if len(dims) != 1:
        raise ValueError(f"all training grids must have the same dimension, got {sorted(dims)}")
    for name, v in ints.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    if schedule not in ("constant", "cosine"):
        raise ValueError(f"schedule must be 'constant' or 'cosine', got {schedule!r}")
    return dims.pop()


def train_dcdm(systems: list[TrainingSystem], *, config: dict | None = None, steps: int = 1000,
               batch: int = 10, lr: float = 1e-4, schedule: str = "constant", seed: int = 0, out=None,
               checkpoint_every: int = 50, val_every: int = 50, val_size: int = 16, resume: bool = True,
               device=None, progress: bool = True, net: DCDMNet | None = None,
               max_minutes: float | None = None) -> dict:
    """Train a :class:`DCDMNet` on the Ritz right-hand sides of ``systems`` (see :class:`DCDMTask`).

    Parameters
    ----------
    systems : list of TrainingSystem
        Batches cycle through the systems (one system per batch).
    config : dict, optional
        :class:`DCDMNet` arguments (``dim`` taken from the grids).
    steps : int
        Optimiser steps (each on ``batch`` right-hand sides per process).
    batch : int
        Paper: 10.
    lr : float
        Adam learning rate (paper: 1e-4).
    schedule : {"constant", "cosine"}
        ``"cosine"`` decays the rate to ``lr / 10`` over ``steps``.
    seed : int
        Seeds the initial weights and the right-hand-side draws (rank r of a
        DDP job draws from ``seed + 1000 r``).
    out : path, optional
        Folder for ``checkpoint.pt`` (every ``checkpoint_every`` steps; the
        run resumes from it when ``resume`` and it comes from the same run:
        same data, network and settings).
    val_every, val_size : int
        Held-out loss on ``val_size`` fixed right-hand sides per system.
    device : str, optional
        Default CUDA when available.
    net : DCDMNet, optional
        Start from this network instead of a fresh one.
    max_minutes : float, optional
        Wall-time budget: save and stop at the first step past it.

    Returns
    -------
    dict
        ``net`` (the weights with the lowest validation loss, on CPU),
        ``log`` (step, train loss, validation loss, seconds), ``best_step``,
        ``best_val``, ``final_val``, ``seconds``, ``steps`` (done),
        ``rank``, ``world_size``.
    """
    dim = _check_args(systems, schedule, steps=steps, batch=batch, checkpoint_every=checkpoint_every,
                      val_every=val_every, val_size=val_size)
    task = DCDMTask(systems, config={**(config or {}), "dim": dim}, batch=batch, lr=lr, schedule=schedule,
                    steps=steps, seed=seed, val_size=val_size, net=net)
    result = Trainer(task, rounds=steps, seed=seed, device=device,
                     checkpoint=Path(out) / "checkpoint.pt" if out is not None else None,
                     checkpoint_every=checkpoint_every, resume=resume, val_every=val_every, log_every=val_every,
                     max_minutes=max_minutes, progress=progress).fit()
    log = [{"step": r["step"], "train_loss": r["loss"], "val_loss": r["val"], "seconds": r["seconds"]}
           for r in result.log]
    return {"net": result.model.cpu().eval(), "log": log, "best_step": result.best_round,
            "best_val": result.best_val, "final_val": log[-1]["val_loss"] if log else None,
            "seconds": result.seconds, "steps": result.rounds, "rank": result.rank,
            "world_size": result.world_size}
