"""``krylearn train dcdm``: smoke frames -> Ritz right-hand sides (HDF5) -> trained, shipped weights.

The training data file is a krylearn systems container: one system per
training matrix, whose ``b`` rows are the Ritz vectors (ascending Ritz
values, stored in the system attribute ``ritz_values``), with the grid and
cell flags.  Right-hand sides are drawn from it on the fly during training.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from ..utils.atomic import atomic_write_text

__all__ = ["make_training_data", "load_training_data", "train"]

DEFAULT_SCENES = ("smoke-plume", "smoke-obstacle")


def make_training_data(path, *, dim: int, n: int, scenes=DEFAULT_SCENES, seed: int = 100, frame: int = 8,
                       ritz: int = 800, progress: bool = True) -> Path:
    """Simulate one frame per scene, compute ``ritz`` Ritz pairs of each matrix, write them to ``path``.

    Seeds differ from the benchmark's (0-9), so the benchmark's obstacle
    placements and plume sources are never seen in training.
    """
    from ..problems.smoke import SmokeSimulation
    from ..datasets.systems import LinearSystem, SystemsWriter
    from ..solvers.dcdm.ritz import lanczos_ritz

    if dim not in (2, 3):
        raise ValueError(f"dim must be 2 or 3, got {dim!r}")
    if n < 8:
        raise ValueError(f"n must be >= 8, got {n}")
    params = {"dim": dim, "n": n, "scenes": list(scenes), "seed": seed, "frame": frame, "ritz": ritz,
              "lanczos": "full re-orthogonalisation, start A @ randn(seed)", "ritz_min_value": 1e-8}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with SystemsWriter(path, generator="dcdm-ritz", parameters=params, seed=seed) as w:
        for i, scene in enumerate(scenes):
            sim = SmokeSimulation((n,) * dim, scene=scene, seed=seed + i)
            out = None
            for _ in range(frame):
                out = sim.step()
            values, vectors = lanczos_ritz(out.A, ritz, seed=seed + i, progress=progress)
            w.append(LinearSystem(out.A, vectors, grid_shape=tuple(out.grid_shape), flags=np.asarray(out.flags),
                                  attrs={"ritz_values": values, "scene": scene, "frame": frame,
                                         "scene_seed": seed + i}))
    return path


def load_training_data(path) -> list:
    """The :class:`~krylearn.solvers.dcdm.train.TrainingSystem` list stored in ``path``."""
    from ..utils.errors import FormatError
    from ..datasets.systems import SystemsFile
    from ..solvers.dcdm.train import TrainingSystem

    systems = []
    with SystemsFile(path) as f:
        if f.attrs.get("generator") != "dcdm-ritz":
            raise FormatError(f"generator is {f.attrs.get('generator')!r}, expected 'dcdm-ritz' "
                              "(make one with krylearn train dcdm)", path=path, key="generator")
        for i in range(len(f)):
            s = f[i]
            if s.grid_shape is None or s.flags is None:
                raise FormatError("training systems need grid_shape and flags", path=path, key=f"systems/{i:06d}")
            systems.append(TrainingSystem(s.A, s.grid_shape, s.flags, np.asarray(s.b, dtype=np.float32),
                                          name=str(s.attrs.get("scene", i)), attrs=dict(s.attrs)))
    return systems


def _plot_log(log, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..utils.atomic import atomic_path

    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    steps = [e["step"] for e in log]
    ax.semilogy(steps, [e["train_loss"] for e in log], label="train (mean since last point)")
    ax.semilogy(steps, [e["val_loss"] for e in log], label="held-out right-hand sides")
    ax.set_xlabel("step")
    ax.set_ylabel("loss ||b - A q (q.b)/(q.Aq)||^2")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def train(*, dim: int, n: int, out, name: str | None = None, data=None, scenes=DEFAULT_SCENES,
          data_seed: int = 100, frame: int = 8, ritz: int = 800, steps: int = 2000, batch: int = 10,
          lr: float = 1e-4, schedule: str = "constant", seed: int = 0, config: dict | None = None, save=None, resume: bool = True,
          device=None, init=None, progress: bool = True, command: str | None = None) -> dict:
    """The whole pipeline; returns the card written beside the weights."""
    import torch

    from ..solvers.dcdm.pretrained import load_model, save_model
    from ..solvers.dcdm.train import train_dcdm
    from ..solvers.training import hardware

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    name = name or f"dcdm-{dim}d"
    t0 = time.perf_counter()
    if data is None:
        data = out / f"ritz-{dim}d-{n}.h5"
        if not data.is_file():
            make_training_data(data, dim=dim, n=n, scenes=scenes, seed=data_seed, frame=frame, ritz=ritz,
                               progress=progress)
    data_seconds = time.perf_counter() - t0
    systems = load_training_data(data)
    if len(systems[0].grid_shape) != dim:
        raise ValueError(f"--data holds {len(systems[0].grid_shape)}-D grids, but --dim is {dim}")
    net = None
    if init is not None:
        net, _ = load_model(init)
        net = type(net)(**net.config)
        net.load_state_dict(load_model(init)[0].state_dict())
        for p in net.parameters():
            p.requires_grad_(True)
    result = train_dcdm(systems, config=config, steps=steps, batch=batch, lr=lr, schedule=schedule,
                        seed=seed, out=out,
                        resume=resume, device=device, progress=progress, net=net)
    if result["rank"] != 0:
        return {}
    card = {
        "name": name,
        "method": "dcdm",
        "paper": "Kaneda et al., A Deep Conjugate Direction Method for Iteratively Solving Linear Systems, ICML 2023",
        "command": command or " ".join(shlex.quote(a) for a in sys.argv),
        "data": {
            "file": str(data),
            "training_matrices": [{"scene": s.name, "grid_shape": list(s.grid_shape),
                                   "frame": int(s.attrs.get("frame", -1)),
                                   "scene_seed": int(s.attrs.get("scene_seed", -1)),
                                   "ritz_vectors": int(s.vectors.shape[0]),
                                   "unknowns": int(np.count_nonzero(np.diff(s.A.indptr)))} for s in systems],
            "rhs": "b = sum_j c_j v_j / ||.||, c_j ~ 9 N(0,1) for the lowest m/2 + m/20 Ritz vectors, "
                   "N(0,1) above; drawn fresh per batch",
            "samples_seen": steps * batch * result["world_size"],
        },
        "training": {"steps": steps, "batch": batch, "lr": lr, "schedule": schedule, "optimizer": "Adam",
                     "seed": seed,
                     "loss": "||b - A q (q.b)/(q.Aq)||^2, batch mean", "world_size": result["world_size"],
                     "init": str(init) if init is not None else None},
        "seconds": {"data": round(data_seconds, 1), "training": round(result["seconds"], 1)},
        "hardware": hardware(device),
        "metrics": {"final_val_loss": result["final_val"], "best_val_loss": result["best_val"],
                    "best_step": result["best_step"],
                    "final_train_loss": result["log"][-1]["train_loss"] if result["log"] else None},
        "torch": torch.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    if init is not None:
        prev = Path(str(init)).with_suffix(".json")
        if prev.is_file():
            card["previous"] = json.loads(prev.read_text())
    target = Path(save) if save is not None else out / name
    save_model(result["net"], card, target)
    atomic_write_text(out / "log.json", json.dumps({"card": card, "log": result["log"]}, indent=1))
    _plot_log(result["log"], out / "loss.png", f"{name}: training loss")
    return card
