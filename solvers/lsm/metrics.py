"""Operator fields and the error measure of LSM and its baselines: relative L2, per sample.

:func:`as_fields` turns user arrays into the channel-first float32 tensors
the networks take; :func:`relative_l2` is the training loss and the
reported metric; :func:`evaluate` measures a model on pairs ``a -> u``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

__all__ = ["relative_l2", "as_fields", "evaluate", "error_sum", "model_channels", "unwrap"]


def relative_l2(pred: torch.Tensor, true: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Relative L2 error per sample, ``||pred_i - true_i||_2 / ||true_i||_2``, over all but the first axis.

    Parameters
    ----------
    pred, true : torch.Tensor
        Same shape ``(B, ...)``.
    reduction : {"mean", "sum", "none"}

    Returns
    -------
    torch.Tensor
        A scalar, or ``(B,)`` for ``"none"``.
    """
    if pred.shape != true.shape:
        raise ValueError(f"pred and true must have the same shape, got {tuple(pred.shape)} and {tuple(true.shape)}")
    if pred.ndim < 1 or pred.shape[0] == 0:
        raise ValueError(f"pred must have a non-empty batch axis, got shape {tuple(pred.shape)}")
    b = pred.shape[0]
    err = torch.linalg.vector_norm((pred - true).reshape(b, -1), dim=1)
    rel = err / torch.linalg.vector_norm(true.reshape(b, -1), dim=1)
    if reduction == "mean":
        return rel.mean()
    if reduction == "sum":
        return rel.sum()
    if reduction == "none":
        return rel
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def as_fields(x, name: str, channels: int | None = None) -> torch.Tensor:
    """Fields as a float32 CPU tensor ``(N, C, H, W)`` from numpy/torch ``(N, H, W)`` or ``(N, C, H, W)``.

    Raises ``ValueError`` naming ``name`` for a wrong rank, channel count,
    empty input or non-finite values, ``TypeError`` for a non-numeric input.
    """
    if isinstance(x, torch.Tensor):
        t = x.detach().to("cpu")
    else:
        arr = np.asarray(x)
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise TypeError(f"{name} must be a numeric array or tensor, got dtype {arr.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.is_complex():
        raise TypeError(f"{name} must be real, got {t.dtype}")
    if t.ndim == 3:
        t = t.unsqueeze(1)
    if t.ndim != 4:
        raise ValueError(f"{name} must have shape (N, H, W) or (N, C, H, W), got {tuple(t.shape)}")
    if t.shape[0] == 0 or t.shape[-1] == 0 or t.shape[-2] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)})")
    if channels is not None and t.shape[1] != channels:
        raise ValueError(f"{name} must have {channels} channel(s), got shape {tuple(t.shape)}")
    t = t.to(torch.float32)
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return t.contiguous()


def unwrap(model):
    """``model`` without its DistributedDataParallel wrapper."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def model_channels(model) -> tuple[int | None, int | None]:
    """``(in_channels, out_channels)`` from the network's ``config`` (``None`` where not recorded)."""
    cfg = getattr(unwrap(model), "config", {}) or {}
    return cfg.get("in_channels"), cfg.get("out_channels")


@torch.no_grad()
def error_sum(model, a, u, idx, batch_size, device) -> tuple[float, int]:
    """``(sum of the relative L2 errors, count)`` of ``model`` on samples ``idx`` of ``a -> u``."""
    total, count = 0.0, 0
    for s in range(0, len(idx), batch_size):
        j = idx[s:s + batch_size]
        pred = model(a[j].to(device))
        total += float(relative_l2(pred, u[j].to(device), "sum"))
        count += len(j)
    return total, count


def evaluate(model: nn.Module, a, u, batch_size: int = 20, device=None) -> float:
    """Mean relative L2 error of ``model(a)`` against ``u``.

    Parameters
    ----------
    model : nn.Module
        Physical in, physical out (e.g. a :class:`NormalizedOperator`), on ``(B, C, H, W)``.
    a, u : array or tensor, (N, H, W) or (N, C, H, W)
    batch_size : int
    device : optional
        Default: the model's device.

    The model runs in eval mode under ``torch.no_grad``; its train/eval mode
    is restored afterwards.
    """
    cin, cout = model_channels(model)
    a, u = as_fields(a, "a", cin), as_fields(u, "u", cout)
    if len(a) != len(u) or a.shape[-2:] != u.shape[-2:]:
        raise ValueError(f"a and u must hold the same samples and grid, got {tuple(a.shape)} and {tuple(u.shape)}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if device is None:
        p = next(iter(model.parameters()), None)
        device = p.device if p is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        total, count = error_sum(model, a, u, torch.arange(len(a)), batch_size, device)
    finally:
        model.train(was_training)
    return total / count
