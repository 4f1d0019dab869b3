"""Where a training process runs: device, DDP group, seeds, and a one-line hardware description.

Training runs under ``torchrun`` with DistributedDataParallel when the
environment sets ``WORLD_SIZE > 1`` (gloo on CPU, nccl on CUDA); otherwise it
runs in one process.
"""

from __future__ import annotations

import os
import platform
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed

__all__ = ["Dist", "setup_distributed", "cleanup_distributed", "seed_everything", "pick_device", "hardware",
           "cpu_name"]


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
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be a torch device such as 'cpu', 'cuda' or 'cuda:0', got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device = {device!r} was asked for but CUDA is not available")
    return dev


def group_initialized() -> bool:
    """Whether a ``torch.distributed`` process group exists in this process."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def setup_distributed(device=None) -> Dist:
    """Join the process group when launched by ``torchrun`` (``WORLD_SIZE > 1``).

    Returns a :class:`Dist`; with one process nothing is initialised.  Under
    ``torchrun`` a CUDA device becomes ``cuda:LOCAL_RANK``.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dev = pick_device(device)
    if world <= 1:
        return Dist(device=dev)
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if dev.type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    if not group_initialized():
        torch.distributed.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Dist(rank, world, local, dev)


def cleanup_distributed() -> None:
    """Tear down the process group if one was initialised."""
    if group_initialized():
        torch.distributed.destroy_process_group()


def seed_everything(seed: int, *, deterministic: bool = True) -> None:
    """Seed python, numpy and torch (all devices); ask for deterministic kernels."""
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def cpu_name() -> str:
    """The CPU model from ``/proc/cpuinfo`` (the platform's name elsewhere)."""
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
