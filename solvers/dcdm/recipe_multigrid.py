"""The learned V-cycle's training recipe: smoke frames -> trained :class:`~.multigrid_model.DCDMMultigrid` + card.

Training systems are pressure systems of the package's smoke simulation
(:class:`~krylearn.problems.smoke.SmokeSimulation`) at two grid sizes, with
scene seeds kept apart from the benchmarks' (seed 0); validation frames use
other seeds at a larger size.  The loss and the task are in
:mod:`.train_multigrid`.  ``krylearn train dcdm`` (``--arch multigrid``,
the default) runs :func:`train_multigrid_recipe`.
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ...problems.smoke import SmokeSimulation
from ..api import solve
from ..learned import Trainer, check_writable, digest, hardware, save_log_run
from .multigrid_model import DCDMMultigrid
from .train_multigrid import MultigridTask

__all__ = ["pressure_systems", "train_multigrid", "train_multigrid_recipe", "pcg_iterations"]


def pressure_systems(scenes, dim: int, n: int, seed: int, frames: int = 12, take=(6, 11)) -> list[tuple]:
    """``(PoissonGrid, b)`` pressure systems from the smoke simulation: frames ``take`` of each scene.

    Scene ``i`` uses seed ``seed + i``.
    """
    out = []
    for i, scene in enumerate(scenes):
        sim = SmokeSimulation((n,) * dim, scene=scene, seed=seed + i, solver="mgpcg")
        for t in range(frames):
            step = sim.step()
            if t in take:
                out.append((sim.operator, np.asarray(step.b, dtype=np.float64).reshape(-1)))
    return out




def pcg_iterations(op, b, model: DCDMMultigrid | None, rtol: float = 1e-6) -> int:
    """Iterations of ``method="dcdm"`` with ``model`` (None: the untrained cycle, i.e. damped Jacobi) to ``rtol``."""
    net = model if model is not None else DCDMMultigrid(len(op.grid_shape))
    res = solve(op, b, method="dcdm", model=net, rtol=rtol)  # any dtype: the cycle reads its tables in float64
    return int(res.iterations)


def train_multigrid(*, dim: int, n: int = 48, scenes=("smoke-plume", "smoke-obstacle"), data_seed: int = 100,
                    steps: int = 150, lr: float = 0.02, k: int = 6, rhs: int = 4, sweeps: int = 2, seed: int = 0,
                    groups: int = 3, knots=(5, 4),
                    out=None, resume: bool = True, progress: bool = True, max_minutes: float | None = None) -> dict:
    """Train a :class:`DCDMMultigrid` (see the module docstring).

    Parameters
    ----------
    dim : {2, 3}
    n : int
        Training grids are ``n`` and ``2n`` cells per side; validation ``4n``.
    scenes : sequence of str
        Smoke scenes; scene ``i`` at size ``m`` uses seed ``data_seed + i``
        (``+ 10`` at ``2n``); validation ``data_seed + 50 + i``.
    steps : int
        Optimiser steps (Adam, cosine decay to ``lr / 10``).
    k : int
        PCG steps the loss looks through.
    rhs : int
        Right-hand sides per system and step (the frame's ``b`` and ``rhs - 1`` Gaussian).
    sweeps, groups, knots : int, int, (int, int)
        The :class:`~.multigrid_model.DCDMMultigrid` configuration.
    out : path, optional
        Folder for ``checkpoint.pt`` (resumed when ``resume`` and from the same run).
    max_minutes : float, optional
        Wall-time budget.

    Returns
    -------
    dict
        ``net`` (float32, CPU, best validation), ``log``, ``best_step``,
        ``best_val``, ``final_val``, ``seconds``, ``steps``, ``systems``
        (what was trained and validated on), ``rank``.
    """
    for name, v in (("dim", dim), ("n", n), ("steps", steps), ("k", k), ("rhs", rhs)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    if dim not in (2, 3):
        raise ValueError(f"dim must be 2 or 3, got {dim!r}")
    if n < 8:
        raise ValueError(f"n must be at least 8 cells, got {n}")
    train = (pressure_systems(scenes, dim, n, data_seed) + pressure_systems(scenes, dim, 2 * n, data_seed + 10))
    val = pressure_systems(scenes, dim, 4 * n if dim == 2 else 2 * n, data_seed + 50, take=(11,))
    task = MultigridTask(train, val, dim=dim, sweeps=sweeps, lr=lr, steps=steps, k=k, rhs=rhs, seed=seed,
                         groups=groups, knots=knots)
    result = Trainer(task, rounds=steps, seed=seed, device="cpu",
                     checkpoint=Path(out) / "checkpoint.pt" if out is not None else None,
                     checkpoint_every=25, resume=resume, val_every=10, log_every=10, max_minutes=max_minutes,
                     progress=progress).fit()
    log = [{"step": r["step"], "train_loss": r["loss"], "val_loss": r["val"], "seconds": r["seconds"]}
           for r in result.log]
    untrained_val = task.validate(DCDMMultigrid(dim, sweeps=sweeps, groups=groups, knots=knots).to(torch.float64))
    sizes = {"train": [n, 2 * n], "val": 4 * n if dim == 2 else 2 * n}
    return {"net": result.model.cpu().float().eval(), "log": log, "best_step": result.best_round,
            "best_val": result.best_val, "final_val": log[-1]["val_loss"] if log else None,
            "untrained_val": untrained_val, "seconds": result.seconds, "steps": result.rounds, "rank": result.rank,
            "systems": {"scenes": list(scenes), "sizes": sizes, "data_seed": data_seed, "frames": [6, 11],
                        "digest": digest([b for _, b in train])},
            "val_systems": val}


def train_multigrid_recipe(*, dim: int, out, name: str | None = None, save=None, command: str | None = None,
                           progress: bool = True, **kwargs) -> dict:
    """:func:`train_multigrid`, then weights + card at ``save`` (default ``out/NAME``), a log and a loss plot.

    The log is ``out/log.json``, the plot ``out/loss.png``.

    The card records the PCG iterations to rtol 1e-6 on the validation frames
    with the untrained cycle (damped Jacobi, as ``mgpcg``) and the trained one.
    Returns the card as written.
    """
    out = check_writable(out, "out")
    name = name or f"dcdm-mg-{dim}d"
    target = Path(save) if save is not None else out / name
    check_writable(target.parent, "save")
    result = train_multigrid(dim=dim, out=out, progress=progress, **kwargs)
    if result["rank"] != 0:
        return {}
    val = [{"unknowns": int(np.count_nonzero(np.asarray(op.flags.cpu()) == 0)),
            "untrained_iterations": pcg_iterations(op, b, None), "iterations": pcg_iterations(op, b, result["net"])}
           for op, b in result["val_systems"]]
    log = result["log"]
    card = {
        "name": name,
        "paper": "Kaneda et al., ICML 2023 (DCDM); learned V-cycle in the line of Greenfeld et al., ICML 2019, "
                 "and neural multigrid preconditioners for CG",
        "command": command or " ".join(shlex.quote(a) for a in sys.argv),
        "data": {**result["systems"], "rhs": "the frame's b and Gaussian vectors on the fluid cells"},
        "training": {"steps": result["steps"], "optimizer": "Adam, cosine decay to lr/10",
                     "loss": "mean log(||r_k|| / ||b||) after k PCG steps from zero",
                     **{k: v for k, v in kwargs.items() if k in ("steps", "lr", "k", "rhs", "sweeps", "seed", "n")}},
        "seconds": {"training": round(result["seconds"], 1)},
        "hardware": hardware("cpu"),
        "metrics": {"untrained_val_loss": result["untrained_val"], "best_val_loss": result["best_val"],
                    "best_step": result["best_step"],
                    "final_val_loss": result["final_val"], "validation_frames": val},
        "torch": torch.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    return save_log_run(result["net"], card, target, out, log,
                        title=f"{name}: residual reduction after k PCG steps",
                        ylabel="geometric mean of ||r_k|| / ||b||")
