"""DCDM models by name, a path, or a module, for the solver.

Shipped: the learned V-cycles ``"dcdm-mg-2d"``/``"dcdm-mg-3d"`` (the default)
and the paper's CNNs ``"dcdm-2d"``/``"dcdm-3d"``.

Weights follow the package's one convention
(:func:`~krylearn.solvers.learned.load_pretrained`,
:func:`~krylearn.solvers.learned.save_pretrained`,
:func:`~krylearn.solvers.learned.available` with ``method="dcdm"``).
"""

from __future__ import annotations

import torch

from ..learned import Pretrained, load_pretrained

from .model import DCDMModel

__all__ = ["load_model", "default_model_name"]


def default_model_name(dim: int, kind: str = "multigrid") -> str:
    """The shipped model for a 2D or 3D grid: the learned V-cycle, or the CNN (``kind="cnn"``)."""
    return f"dcdm-mg-{dim}d" if kind == "multigrid" else f"dcdm-{dim}d"


def load_model(model, device="cpu") -> Pretrained:
    """A DCDM network and its card from a shipped name, a weights path, or a module.

    Parameters
    ----------
    model : str, Path, DCDMNet or DCDMMultigrid
        A shipped name (see ``available("dcdm")``), a path to weights written
        by ``save_pretrained``, or a model (used as is).
    device : str or torch.device

    Returns
    -------
    Pretrained
        ``(net, card)``: the network in eval mode on ``device`` (shared
        between calls; do not train it) and its card (empty for a module).
    """
    if isinstance(model, DCDMModel):
        return Pretrained(model.to(device), {})
    if isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a DCDMNet or DCDMMultigrid, a shipped name or a path, got "
                        f"{type(model).__name__}")
    return load_pretrained(model, method="dcdm", device=device)
