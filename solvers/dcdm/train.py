"""Unsupervised DCDM training (Kaneda et al., ICML 2023, section 3).

For a unit right-hand side ``b`` and ``q = f(b)`` the loss is the residual
after one exact line-search step from zero,

    loss = || b - A q (q.b) / (q.A q) ||^2,

averaged over the batch: no reference solutions are needed, and the scale of
``q`` does not matter.  Right-hand sides come from :class:`RitzSampler`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse
import torch

from ...operators.sparse import SparseMatrix
from ...operators.stencil import FLUID

from ..training import (cleanup_distributed, load_checkpoint, run_fingerprint, save_checkpoint, seed_everything,
                        setup_distributed)
from .model import DCDMNet
from .ritz import RitzSampler

__all__ = ["TrainingSystem", "dcdm_loss", "train_dcdm"]


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


def _prepare(system: TrainingSystem, device, seed: int, val: int):
    op = SparseMatrix(system.A.astype(np.float32)).to(device)
    fluid = torch.as_tensor(np.asarray(system.flags).reshape(system.grid_shape) == FLUID,
                            dtype=torch.float32, device=device)
    sampler = RitzSampler(system.vectors, seed=seed, device=device)
    val_b = RitzSampler(system.vectors, seed=seed + 7919, device=device).sample(val)
    return op, fluid, sampler, val_b


def train_dcdm(systems: list[TrainingSystem], *, config: dict | None = None, steps: int = 1000,
               batch: int = 10, lr: float = 1e-4, schedule: str = "constant", seed: int = 0, out=None,
               checkpoint_every: int = 50,
               val_every: int = 50, val_size: int = 16, resume: bool = True, device=None,
               progress: bool = True, net: DCDMNet | None = None) -> dict:
    """Train a :class:`DCDMNet` on the Ritz right-hand sides of ``systems``.

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
        run resumes from it when ``resume``).
    val_every, val_size : int
        Held-out loss on ``val_size`` fixed right-hand sides per system.
    device : str, optional
        Default CUDA when available.
    net : DCDMNet, optional
        Start from this network instead of a fresh one.

    Returns
    -------
    dict
        ``net`` (the weights with the lowest validation loss, on CPU),
        ``log`` (step, train loss, validation loss, seconds), ``best_step``,
        ``best_val``, ``final_val``, ``seconds``.
    """
    if not systems:
        raise ValueError("systems must hold at least one TrainingSystem")
    dims = {len(s.grid_shape) for s in systems}
    if len(dims) != 1:
        raise ValueError(f"all training grids must have the same dimension, got {sorted(dims)}")
    for name, v in (("steps", steps), ("batch", batch), ("checkpoint_every", checkpoint_every),
                    ("val_every", val_every), ("val_size", val_size)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    dist = setup_distributed(device)
    dev = dist.device
    seed_everything(seed)
    cfg = dict(config or {})
    cfg["dim"] = dims.pop()
    model = net if net is not None else DCDMNet(**cfg)
    model.to(dev).train()
    ddp = model
    if dist.enabled:
        from torch.nn.parallel import DistributedDataParallel

        ddp = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    if schedule not in ("constant", "cosine"):
        raise ValueError(f"schedule must be 'constant' or 'cosine', got {schedule!r}")
    sched = None
    if schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=lr / 10)
    prepared = [_prepare(s, dev, seed + 1000 * dist.rank + 17 * i, val_size) for i, s in enumerate(systems)]

    fingerprint = run_fingerprint(model, batch=batch, lr=lr, schedule=schedule, seed=seed,
                                  systems=[s.name for s in systems], world_size=dist.world_size)
    state = {"step": 0, "log": [], "best_val": float("inf"), "best_step": 0, "seconds": 0.0}
    best = {k: v.detach().clone() for k, v in model.state_dict().items()}
    ckpt = Path(out) / "checkpoint.pt" if out is not None else None
    if ckpt is not None and resume and ckpt.is_file():
        extra = load_checkpoint(ckpt, model=model, optimizer=opt, scheduler=sched, map_location=dev,
                                fingerprint=fingerprint)
        state.update({k: extra[k] for k in state if k in extra})
        best = extra.get("best", best)
        for (_, _, sampler, _), s in zip(prepared, extra.get("samplers", [])):
            sampler.set_state(s)

    def validate() -> float:
        model.eval()
        with torch.no_grad():
            vals = [dcdm_loss(model, vb, fl, op, s.grid_shape).item()
                    for (op, fl, _, vb), s in zip(prepared, systems)]
        model.train()
        return float(np.mean(vals))

    def checkpoint():
        if ckpt is not None and dist.is_main:
            save_checkpoint(ckpt, model=model, optimizer=opt, scheduler=sched, best=best, fingerprint=fingerprint,
                            samplers=[p[2].state() for p in prepared], **state)

    bar = None
    if progress and dist.is_main:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, initial=state["step"], desc="training DCDM", unit="step")
    t0 = time.perf_counter() - state["seconds"]
    running = []
    while state["step"] < steps:
        i = state["step"] % len(systems)
        op, fluid, sampler, _ = prepared[i]
        b = sampler.sample(batch)
        loss = dcdm_loss(ddp, b, fluid, op, systems[i].grid_shape)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        state["step"] += 1
        running.append(loss.item())
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(running[-20:]):.4f}")
        if state["step"] % val_every == 0 or state["step"] == steps:
            v = validate()
            state["seconds"] = time.perf_counter() - t0
            state["log"].append({"step": state["step"], "train_loss": float(np.mean(running)),
                                 "val_loss": v, "seconds": state["seconds"]})
            running = []
            if v < state["best_val"]:
                state["best_val"], state["best_step"] = v, state["step"]
                best = {k: t.detach().clone() for k, t in model.state_dict().items()}
        if state["step"] % checkpoint_every == 0 or state["step"] == steps:
            state["seconds"] = time.perf_counter() - t0
            checkpoint()
    if bar is not None:
        bar.close()
    final_val = state["log"][-1]["val_loss"] if state["log"] else validate()
    model.load_state_dict(best)
    cleanup_distributed()
    return {"net": model.cpu().eval(), "log": state["log"], "best_step": state["best_step"],
            "best_val": state["best_val"], "final_val": final_val, "seconds": state["seconds"],
            "rank": dist.rank, "world_size": dist.world_size}
