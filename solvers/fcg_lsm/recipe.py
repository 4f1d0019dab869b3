"""FCG-LSM's training recipe: Darcy coefficient fields -> trained :class:`~.model.LSMPreconditioner` + card.

Operators are the package's Darcy discretisation
(:func:`~krylearn.operators.darcy.darcy_system`) of coefficient fields
drawn as in the FNO/LSM Darcy benchmark (a Gaussian random field
thresholded to 12 / 3, :func:`~krylearn.problems.darcy.darcy_coefficient`),
sampled directly at each grid size.  Training fields use ``data_seed`` at
each of ``sizes`` (nodes per side), validation fields ``data_seed + 1`` at
``val_sizes``; the benchmark (:mod:`.bench`) uses another seed.
``krylearn train fcg-lsm`` runs :func:`train_fcg_lsm_recipe`.
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

import torch

from ...operators.darcy import darcy_system
from ...problems.darcy import darcy_coefficient, grf_neumann, sample_rng
from ..api import solve
from ..learned import Trainer, check_writable, digest, hardware, save_log_run
from ..multigrid import grid_stencil
from .model import LSMPreconditioner
from .train import PreconditionerTask

__all__ = ["darcy_operator", "darcy_stencils", "train_fcg_lsm", "train_fcg_lsm_recipe"]


def darcy_operator(s: int, seed: int, index: int):
    """``(A, b)`` of Darcy field ``index`` of ``seed`` on ``s x s`` nodes (``(s - 2)^2`` unknowns, ``f = 1``)."""
    a = darcy_coefficient(grf_neumann(s, sample_rng(seed, index)))
    return darcy_system(a)


def darcy_stencils(s: int, seed: int, count: int) -> list:
    """``count`` Darcy operators on ``s x s`` nodes as ``(A, (diag, [w_y, w_x]))``."""
    out = []
    for i in range(count):
        A = darcy_operator(s, seed, i)[0]
        out.append((A, grid_stencil(None, A, (s - 2, s - 2))))
    return out


def _iterations(A, b, s, model, rtol=1e-8) -> int:
    res = solve(A, b, method="fcg-lsm", model=model, grid_shape=(s - 2, s - 2), rtol=rtol, maxiter=2000)
    return int(res.iterations)


def train_fcg_lsm(*, sizes=(43, 65, 85), val_sizes=(65, 85), fields: int = 48, val_fields: int = 4,
                  data_seed: int = 200, width: int = 16, pre: int = 2, post: int = 2, omega: float = 0.8,
                  steps: int = 3000, batch: int = 8,
                  lr: float = 2e-3, seed: int = 0, out=None, resume: bool = True, progress: bool = True,
                  max_minutes: float | None = None) -> dict:
    """Train an :class:`LSMPreconditioner` on Darcy operators (see the module docstring).

    Parameters
    ----------
    sizes, val_sizes : sequence of int
        Training and validation grids, nodes per side (``>= 9``); steps cycle
        through the training sizes.  The default covers the grids the
        network meets inside :class:`~.cycle.NetworkCycle` (at most 96^2 cells).
    fields, val_fields : int
        Coefficient fields per training / validation size.
    width, pre, post, omega
        The :class:`LSMPreconditioner` configuration.
    steps, batch, lr : int, int, float
        AdamW steps (one-cycle schedule peaking at ``lr``), errors per step.
    out : path, optional
        Folder for ``checkpoint.pt`` (resumed when ``resume`` and from the same run).
    max_minutes : float, optional
        Wall-time budget.

    Returns
    -------
    dict
        ``net`` (float32, CPU, best validation), ``log``, ``best_step``,
        ``best_val``, ``untrained_val``, ``seconds``, ``steps``, ``data``, ``rank``.
    """
    sizes, val_sizes = tuple(sizes), tuple(val_sizes)
    if not sizes or not val_sizes or any(not isinstance(m, int) or m < 9 for m in sizes + val_sizes):
        raise ValueError(f"sizes and val_sizes must be integers >= 9, got {sizes} and {val_sizes}")
    for name, v, lo in (("fields", fields, 1), ("val_fields", val_fields, 1), ("steps", steps, 1),
                        ("batch", batch, 1), ("width", width, 8)):
        if not isinstance(v, int) or isinstance(v, bool) or v < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    train = {m: darcy_stencils(m, data_seed, fields) for m in sizes}
    val = {m: darcy_stencils(m, data_seed + 1, val_fields) for m in val_sizes}
    config = dict(width=width, pre=pre, post=post, omega=omega)
    task = PreconditionerTask(train, val, config=config, batch=batch, lr=lr, steps=steps, seed=seed)
    result = Trainer(task, rounds=steps, seed=seed, device="cpu",
                     checkpoint=Path(out) / "checkpoint.pt" if out is not None else None,
                     checkpoint_every=50, resume=resume, val_every=50, log_every=50, max_minutes=max_minutes,
                     progress=progress).fit()
    log = [{"step": r["step"], "train_loss": r["loss"], "val_loss": r["val"], "seconds": r["seconds"]}
           for r in result.log]
    torch.manual_seed(seed)
    untrained_val = task.validate(LSMPreconditioner(**config))
    data = {"generator": "krylearn.problems.darcy.grf_neumann + darcy_coefficient (12 / 3)",
            "train_sizes": list(sizes), "val_sizes": list(val_sizes), "fields": fields, "val_fields": val_fields,
            "data_seed": data_seed, "digest": digest([d for v in train.values() for _, (d, _) in v])}
    return {"net": result.model.cpu().float().eval(), "log": log, "best_step": result.best_round,
            "best_val": result.best_val, "untrained_val": untrained_val, "seconds": result.seconds,
            "steps": result.rounds, "rank": result.rank, "data": data, "config": config}


def train_fcg_lsm_recipe(*, out, name: str = "fcg-lsm-darcy", save=None, command: str | None = None,
                         progress: bool = True, **kwargs) -> dict:
    """:func:`train_fcg_lsm`, then weights + card at ``save`` (default ``out/NAME``), a log and a loss plot.

    The card records the FCG iterations to rtol 1e-8 on the validation
    fields with the trained network and with pcg-ic, for reference.
    Returns the card as written.
    """
    out = check_writable(out, "out")
    target = Path(save) if save is not None else out / name
    check_writable(target.parent, "save")
    result = train_fcg_lsm(out=out, progress=progress, **kwargs)
    if result["rank"] != 0:
        return {}
    val = []
    for m in result["data"]["val_sizes"]:
        for i in range(result["data"]["val_fields"]):
            A, b = darcy_operator(m, result["data"]["data_seed"] + 1, i)
            val.append({"size": m, "field": i, "fcg_lsm": _iterations(A, b, m, result["net"]),
                        "pcg_ic": int(solve(A, b, method="pcg-ic", rtol=1e-8, check_symmetry=False).iterations)})
    log = result["log"]
    card = {
        "name": name,
        "paper": "Latent Spectral Models (Wu et al., ICML 2023) as the preconditioner of flexible CG, "
                 "the FCG-NO idea (Rudikov et al., 2024)",
        "command": command or " ".join(shlex.quote(a) for a in sys.argv),
        "data": result["data"],
        "training": {"steps": result["steps"], "optimizer": "AdamW (weight decay 1e-4), one-cycle",
                     "loss": "mean log(||e - M(r)||_A^2 / ||e||_A^2), r random sine series, e = A^-1 r (sparse LU)",
                     **{k: v for k, v in kwargs.items() if k in ("steps", "lr", "batch", "seed")}},
        "seconds": {"training": round(result["seconds"], 1)},
        "hardware": hardware("cpu"),
        "metrics": {"untrained_val_loss": result["untrained_val"], "best_val_loss": result["best_val"],
                    "best_step": result["best_step"], "validation_iterations_rtol_1e-8": val},
        "torch": torch.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    return save_log_run(result["net"], card, target, out, log,
                        title=f"{name}: energy-norm error left by one application",
                        ylabel="||e - M(r)||_A^2 / ||e||_A^2")
