"""The operator networks by the ``kind`` their weight cards record."""

from __future__ import annotations

import torch.nn as nn

from .baselines import FNO2d, UNet2d
from .model import LSM2d

__all__ = ["KINDS", "build_network"]

#: Network classes by the ``kind`` stored in weight cards.
KINDS = {"lsm": LSM2d, "fno": FNO2d, "unet": UNet2d}


def build_network(kind: str, config: dict) -> nn.Module:
    """A fresh network of ``kind`` (``"lsm"``, ``"fno"``, ``"unet"``) from its ``config`` dict."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict, got {type(config).__name__}")
    return KINDS[kind](**config)
