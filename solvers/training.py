"""Plumbing shared by the training loops: seeds, devices, DDP, checkpoints.

Training runs under ``torchrun`` with DistributedDataParallel when the
environment sets ``WORLD_SIZE > 1`` (gloo on CPU, nccl on CUDA); otherwise it
runs in one process.  Checkpoints are written atomically and read back with
``torch.load(weights_only=True)``, which refuses to execute pickled code.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..utils.atomic import atomic_path

__all__ = ["Dist", "setup_distributed", "cleanup_distributed", "seed_everything", "pick_device",
           "save_checkpoint", "load_checkpoint", "run_fingerprint", "hardware", "cpu_name"]


@dataclass
class Dist:
    """Where this process sits in a (possibly one-process) training job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def pick_device(device=None) -> torch.device:
    """``device`` as a ``torch.device``; ``None``/``"auto"`` picks CUDA when available."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was asked for but CUDA is not available")
    return dev


def setup_distributed(device=None) -> Dist:
    """Initialise the process group when launched by ``torchrun`` (``WORLD_SIZE > 1``).

    Returns a :class:`Dist`; with one process nothing is initialised.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dev = pick_device(device)
    if world <= 1:
        return Dist(device=dev)
    import torch.distributed as dist

    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if dev.type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Dist(rank, world, local, dev)


def cleanup_distributed() -> None:
    """Tear down the process group if one was initialised."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def seed_everything(seed: int, *, deterministic: bool = True) -> None:
    """Seed python, numpy and torch (all devices); ask for deterministic kernels."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def save_checkpoint(path, *, model: torch.nn.Module, optimizer=None, scheduler=None, **extra) -> Path:
    """Atomically write model/optimizer/scheduler state plus ``extra`` (step, epoch, RNG, ...)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = model.module if hasattr(model, "module") else model
    payload = {"model": module.state_dict(), **extra}
    if optimizer is not None:
        payload["optimizer"] = optimizer.state_dict()
    if scheduler is not None:
        payload["scheduler"] = scheduler.state_dict()
    payload["torch_rng"] = torch.get_rng_state()
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def run_fingerprint(model: torch.nn.Module, **settings) -> dict:
    """What identifies a training run: the network's ``config`` (and ``kind``) plus ``settings``.

    Stored in checkpoints as ``fingerprint=`` so that :func:`load_checkpoint`
    refuses to resume a different run.  JSON round-tripped (tuples become lists).
    """
    import json

    module = model.module if hasattr(model, "module") else model
    ident = {"config": getattr(module, "config", None), **settings}
    if getattr(module, "kind", None) is not None:
        ident["kind"] = module.kind
    return json.loads(json.dumps(ident))


def load_checkpoint(path, *, model: torch.nn.Module, optimizer=None, scheduler=None,
                    map_location="cpu", fingerprint: dict | None = None) -> dict:
    """Restore a checkpoint written by :func:`save_checkpoint`; return its ``extra`` entries.

    Uses ``torch.load(weights_only=True)``: tensors, numbers, strings and
    containers only, no code execution.  With ``fingerprint`` (see
    :func:`run_fingerprint`), a checkpoint written by a run with other
    settings raises ``ValueError`` naming the settings that differ, before
    anything is restored.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    payload = torch.load(path, map_location=map_location, weights_only=True)
    if fingerprint is not None:
        old = payload.get("fingerprint") or {}
        if old != fingerprint:
            diff = sorted(k for k in set(fingerprint) | set(old) if old.get(k) != fingerprint.get(k))
            raise ValueError(f"checkpoint {path} was written by a different run (differs in {', '.join(diff)}); "
                             "pass resume=False or another checkpoint path")
    module = model.module if hasattr(model, "module") else model
    module.load_state_dict(payload.pop("model"))
    if optimizer is not None and "optimizer" in payload:
        optimizer.load_state_dict(payload.pop("optimizer"))
    if scheduler is not None and "scheduler" in payload:
        scheduler.load_state_dict(payload.pop("scheduler"))
    rng = payload.pop("torch_rng", None)
    if rng is not None:
        torch.set_rng_state(rng.cpu() if isinstance(rng, torch.Tensor) else rng)
    return payload


def cpu_name() -> str:
    """The CPU model from ``/proc/cpuinfo`` (the platform's name elsewhere)."""
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def hardware(device=None) -> str:
    """One line naming the CPU (and GPU) a run used, for weight cards."""
    text = f"{cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"
    dev = pick_device(device) if device is not None else None
    if dev is not None and dev.type == "cuda":
        text += f", GPU {torch.cuda.get_device_name(dev)}"
    return text
