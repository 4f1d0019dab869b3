"""The denoiser side of the samplers: its device and dtype, padding multiple, checked calls, seeded noise."""

from __future__ import annotations

import numbers

import torch

from .sampler import SamplingError

__all__ = ["net_info", "size_multiple", "call_denoiser", "seeded_generator"]


def net_info(denoiser, device):
    """``(device, floating dtype)`` of the denoiser's parameters (``device``, float32 for a plain callable)."""
    if isinstance(denoiser, torch.nn.Module):
        p = next(iter(denoiser.parameters()), None)
        if p is not None:
            return p.device, p.dtype if p.dtype.is_floating_point else torch.float32
    return torch.device(device), torch.float32


def size_multiple(denoiser, multiple):
    """The padding multiple: ``multiple``, else the denoiser's ``size_multiple`` (1 when it has none)."""
    if multiple is None:
        multiple = getattr(denoiser, "size_multiple", 1)
    if not isinstance(multiple, numbers.Integral) or multiple < 1:
        raise ValueError(f"multiple must be a positive integer, got {multiple!r}")
    return int(multiple)


def call_denoiser(denoiser, x, t: int, net_batch, step, what):
    """``eps = denoiser(x, t)`` in chunks of ``net_batch``; checks the shape and finiteness of the result."""
    tt = torch.full((x.shape[0],), int(t), dtype=torch.long, device=x.device)
    if net_batch is None or net_batch >= x.shape[0]:
        eps = denoiser(x, tt)
    else:
        eps = torch.cat([denoiser(x[i:i + net_batch], tt[i:i + net_batch])
                         for i in range(0, x.shape[0], net_batch)])
    if not isinstance(eps, torch.Tensor) or eps.shape != x.shape:
        raise ValueError(f"the denoiser must return a tensor of shape {tuple(x.shape)}, got "
                         f"{getattr(eps, 'shape', type(eps).__name__)}")
    if not bool(torch.isfinite(eps).all()):
        raise SamplingError(f"{what} step {step} (t={t}): the denoiser returned non-finite values")
    return eps


def seeded_generator(seed, device):
    """A ``torch.Generator`` on ``device`` seeded with ``seed`` (``None`` for ``seed=None``)."""
    if seed is None:
        return None
    if not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
    return torch.Generator(device=device).manual_seed(int(seed))
