"""``krylearn train dcdm``: smoke frames -> Ritz right-hand sides (HDF5) -> trained, shipped weights.

The training data file is a krylearn systems container: one system per
training matrix, whose ``b`` rows are the Ritz vectors (ascending Ritz
values, stored in the system attribute ``ritz_values``), with the grid and
cell flags.  Right-hand sides are drawn from it on the fly during training.

Without ``data``, the file is made once and cached in ``out`` under a name
that carries a digest of everything it is made from (grid, scenes, seed,
frame, Ritz count), so changing any of them makes a new file; a cached file
is also checked against the parameters recorded inside it.  The training
checkpoint ``out/checkpoint.pt`` is tied to the data's content: resuming on
other data is refused.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ...datasets.systems import LinearSystem, SystemsFile, SystemsWriter
from ...problems.smoke import SmokeSimulation
from ...utils.atomic import atomic_write_text
from ...utils.errors import FormatError
from ..learned import check_writable, digest, hardware, load_pretrained, plot_losses, save_pretrained
from ..learned.checkpoint import json_clean
from ..learned.weights import sha256_file
from .ritz import lanczos_ritz
from .train import TrainingSystem, train_dcdm

__all__ = ["make_training_data", "load_training_data", "cached_data_path", "train"]

DEFAULT_SCENES = ("smoke-plume", "smoke-obstacle")
PAPER = "Kaneda et al., A Deep Conjugate Direction Method for Iteratively Solving Linear Systems, ICML 2023"


def _data_parameters(*, dim: int, n: int, scenes, seed: int, frame: int, ritz: int) -> dict:
    """What a Ritz training file is made from (recorded in the file, keyed in its cache name)."""
    return {"dim": dim, "n": n, "scenes": list(scenes), "seed": seed, "frame": frame, "ritz": ritz,
            "lanczos": "full re-orthogonalisation, start A @ randn(seed)", "ritz_min_value": 1e-8}


def cached_data_path(out, *, dim: int, n: int, scenes=DEFAULT_SCENES, seed: int = 100, frame: int = 8,
                     ritz: int = 800) -> Path:
    """The cache file in ``out`` for these data parameters: ``ritz-{dim}d-{n}-{digest}.h5``."""
    params = _data_parameters(dim=dim, n=n, scenes=scenes, seed=seed, frame=frame, ritz=ritz)
    return Path(out) / f"ritz-{dim}d-{n}-{digest(params)[:12]}.h5"


def make_training_data(path, *, dim: int, n: int, scenes=DEFAULT_SCENES, seed: int = 100, frame: int = 8,
                       ritz: int = 800, progress: bool = True) -> Path:
    """Simulate one frame per scene, compute ``ritz`` Ritz pairs of each matrix, write them to ``path``.

    Seeds differ from the benchmark's (0-9), so the benchmark's obstacle
    placements and plume sources are never seen in training.
    """
    if dim not in (2, 3):
        raise ValueError(f"dim must be 2 or 3, got {dim!r}")
    if n < 8:
        raise ValueError(f"n must be >= 8, got {n}")
    params = _data_parameters(dim=dim, n=n, scenes=scenes, seed=seed, frame=frame, ritz=ritz)
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


def load_training_data(path, *, parameters: dict | None = None) -> list:
    """The :class:`~krylearn.solvers.dcdm.train.TrainingSystem` list stored in ``path``.

    With ``parameters`` (see :func:`make_training_data`), a file made from
    other parameters raises ``FormatError`` naming the ones that differ.
    """
    systems = []
    with SystemsFile(path) as f:
        if f.attrs.get("generator") != "dcdm-ritz":
            raise FormatError(f"generator is {f.attrs.get('generator')!r}, expected 'dcdm-ritz' "
                              "(make one with krylearn train dcdm)", path=path, key="generator")
        if parameters is not None:
            stored, want = f.attrs.get("parameters") or {}, json_clean(parameters)
            diff = sorted(k for k in set(stored) | set(want) if stored.get(k) != want.get(k))
            if diff:
                raise FormatError(f"made from other parameters than asked for ({', '.join(diff)} differ)",
                                  path=path, key="parameters")
        for i in range(len(f)):
            s = f[i]
            if s.grid_shape is None or s.flags is None:
                raise FormatError("training systems need grid_shape and flags", path=path, key=f"systems/{i:06d}")
            systems.append(TrainingSystem(s.A, s.grid_shape, s.flags, np.asarray(s.b, dtype=np.float32),
                                          name=str(s.attrs.get("scene", i)), attrs=dict(s.attrs)))
    return systems


def _training_data(out: Path, data, *, dim, n, scenes, data_seed, frame, ritz, progress) -> tuple[Path, list]:
    """``(data file, systems)``: ``data`` as given, else the cached (or newly made) Ritz file in ``out``."""
    if data is not None:
        systems = load_training_data(data)
    else:
        kw = dict(dim=dim, n=n, scenes=scenes, seed=data_seed, frame=frame, ritz=ritz)
        data = cached_data_path(out, **kw)
        if not data.is_file():
            make_training_data(data, progress=progress, **kw)
        systems = load_training_data(data, parameters=_data_parameters(**kw))
    if len(systems[0].grid_shape) != dim:
        raise ValueError(f"--data holds {len(systems[0].grid_shape)}-D grids, but --dim is {dim}")
    return Path(data), systems


def _initial_net(init):
    """``(trainable private copy of the DCDM weights init, their card)``, or ``(None, None)``."""
    if init is None:
        return None, None
    net, card = load_pretrained(init, method="dcdm", cache=False)
    for p in net.parameters():
        p.requires_grad_(True)
    return net.train(), card


def _card(*, name, data, systems, result, steps, batch, lr, schedule, seed, init, init_card, device, command,
          data_seconds) -> dict:
    log = result["log"]
    card = {
        "name": name,
        "method": "dcdm",
        "paper": PAPER,
        "command": command or " ".join(shlex.quote(a) for a in sys.argv),
        "data": {
            "file": str(data),
            "file_sha256": sha256_file(data),
            "training_matrices": [{"scene": s.name, "grid_shape": list(s.grid_shape),
                                   "frame": int(s.attrs.get("frame", -1)),
                                   "scene_seed": int(s.attrs.get("scene_seed", -1)),
                                   "ritz_vectors": int(s.vectors.shape[0]),
                                   "unknowns": int(np.count_nonzero(np.diff(s.A.indptr)))} for s in systems],
            "rhs": "b = sum_j c_j v_j / ||.||, c_j ~ 9 N(0,1) for the lowest m/2 + m/20 Ritz vectors, "
                   "N(0,1) above; drawn fresh per batch",
            "samples_seen": result["steps"] * batch * result["world_size"],
        },
        "training": {"steps": result["steps"], "steps_requested": steps, "batch": batch, "lr": lr,
                     "schedule": schedule, "optimizer": "Adam", "seed": seed,
                     "loss": "||b - A q (q.b)/(q.Aq)||^2, batch mean", "world_size": result["world_size"],
                     "init": str(init) if init is not None else None},
        "seconds": {"data": round(data_seconds, 1), "training": round(result["seconds"], 1)},
        "hardware": hardware(device),
        "metrics": {"final_val_loss": result["final_val"], "best_val_loss": result["best_val"],
                    "best_step": result["best_step"], "final_train_loss": log[-1]["train_loss"] if log else None},
        "torch": torch.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    if init_card is not None:
        card["previous"] = init_card
    return card


def _write_outputs(out: Path, target: Path, net, card: dict, log: list, name: str) -> dict:
    """Weights + card at ``target``, ``out/log.json``, ``out/loss.png``; returns the card as written."""
    _, cpath = save_pretrained(net, card, target)
    card = json.loads(cpath.read_text())
    atomic_write_text(out / "log.json", json.dumps({"card": card, "log": log}, indent=1))
    records = [{"step": r["step"], "loss": r["train_loss"], "val": r["val_loss"]} for r in log]
    plot_losses(records, out / "loss.png", title=f"{name}: training loss", unit="step",
                ylabel="loss ||b - A q (q.b)/(q.Aq)||^2", best=card["metrics"]["best_step"])
    return card


def train(*, dim: int, n: int, out, name: str | None = None, data=None, scenes=DEFAULT_SCENES,
          data_seed: int = 100, frame: int = 8, ritz: int = 800, steps: int = 2000, batch: int = 10,
          lr: float = 1e-4, schedule: str = "constant", seed: int = 0, config: dict | None = None, save=None,
          resume: bool = True, device=None, init=None, progress: bool = True, command: str | None = None,
          max_minutes: float | None = None) -> dict:
    """The whole pipeline; returns the card written beside the weights (``{}`` on ranks other than 0).

    ``out`` (and the folder of ``save``) must be writable: checked before
    any data is made or training starts.  ``max_minutes`` is a wall-time
    budget for the training loop (the card records the steps done).
    """
    out = check_writable(out, "out")
    target = Path(save) if save is not None else out / (name or f"dcdm-{dim}d")
    check_writable(target.parent, "save")
    name = name or f"dcdm-{dim}d"
    t0 = time.perf_counter()
    data, systems = _training_data(out, data, dim=dim, n=n, scenes=scenes, data_seed=data_seed, frame=frame,
                                   ritz=ritz, progress=progress)
    data_seconds = time.perf_counter() - t0
    net, init_card = _initial_net(init)
    result = train_dcdm(systems, config=config, steps=steps, batch=batch, lr=lr, schedule=schedule, seed=seed,
                        out=out, resume=resume, device=device, progress=progress, net=net, max_minutes=max_minutes)
    if result["rank"] != 0:
        return {}
    card = _card(name=name, data=data, systems=systems, result=result, steps=steps, batch=batch, lr=lr,
                 schedule=schedule, seed=seed, init=init, init_card=init_card, device=device, command=command,
                 data_seconds=data_seconds)
    return _write_outputs(out, target, result["net"], card, result["log"], name)
