"""DCDM networks by name (``"dcdm-2d"``, ``"dcdm-3d"``), a path, or a module, for the solver.

Weights follow the package's one convention
(:func:`~krylearn.solvers.learned.load_pretrained`,
:func:`~krylearn.solvers.learned.save_pretrained`,
:func:`~krylearn.solvers.learned.available` with ``method="dcdm"``).
"""

from __future__ import annotations

import torch

from ..learned import Pretrained, load_pretrained

from .model import DCDMNet

__all__ = ["load_model", "default_model_name"]


def default_model_name(dim: int) -> str:
    """The shipped model for a 2D or 3D grid."""
    return f"dcdm-{dim}d"


def load_model(model, device="cpu") -> Pretrained:
    """A DCDM network and its card from a shipped name, a weights path, or a module.

    Parameters
    ----------
    model : str, Path or DCDMNet
        ``"dcdm-2d"``/``"dcdm-3d"`` (see ``available("dcdm")``), a path to
        weights written by ``save_pretrained``, or a network (used as is).
    device : str or torch.device

    Returns
    -------
    Pretrained
        ``(net, card)``: the network in eval mode on ``device`` (shared
        between calls; do not train it) and its card (empty for a module).
    """
    if isinstance(model, DCDMNet):
        return Pretrained(model.to(device), {})
    if isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a DCDMNet, a shipped name or a path, got {type(model).__name__}")
    return load_pretrained(model, method="dcdm", device=device)
