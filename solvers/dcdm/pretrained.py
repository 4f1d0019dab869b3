"""Shipped DCDM weights and loading by name (``"dcdm-2d"``, ``"dcdm-3d"``)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..weights import list_weights, load_network, save_weights, weights_path

from .model import DCDMNet

__all__ = ["WEIGHTS_DIR", "available_models", "load_model", "save_model", "default_model_name"]

#: Folder of the shipped weights (package data).
WEIGHTS_DIR = Path(__file__).parent / "weights"


def available_models() -> list[str]:
    """Names of the shipped DCDM weights."""
    return list_weights(WEIGHTS_DIR)


def default_model_name(dim: int) -> str:
    """The shipped model for a 2D or 3D grid."""
    return f"dcdm-{dim}d"


def load_model(model, device="cpu") -> tuple[DCDMNet, dict]:
    """A DCDM network and its card from a shipped name, a weights path, or a module.

    Parameters
    ----------
    model : str, Path or DCDMNet
        ``"dcdm-2d"``/``"dcdm-3d"`` (see :func:`available_models`), a path to
        weights written by :func:`save_model`, or a network (used as is).
    device : str or torch.device

    Returns
    -------
    (DCDMNet, dict)
        The network in eval mode on ``device`` (shared between calls; do not
        train it) and its card (empty for a module).
    """
    if isinstance(model, DCDMNet):
        return model.to(device), {}
    if isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a DCDMNet, a shipped name or a path, got {type(model).__name__}")
    path = weights_path(model, WEIGHTS_DIR)
    return load_network(path, DCDMNet, device)


def save_model(net: DCDMNet, card: dict, path, *, half: bool = False):
    """Write ``net``'s weights and ``card`` (its ``config`` added) to ``path``."""
    card = {**card, "config": net.config}
    return save_weights(net.state_dict(), card, path, half=half)
