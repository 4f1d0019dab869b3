"""Network-side images: padding to the UNet's size multiple, and complex images as 2 real channels."""

from __future__ import annotations

import numbers

import torch

__all__ = ["pad_to_multiple", "crop", "to_channels", "from_channels"]


def pad_to_multiple(x: torch.Tensor, multiple: int, value: float = 0.0):
    """Pad the last two axes of ``x`` symmetrically up to multiples of ``multiple``.

    Parameters
    ----------
    x : torch.Tensor, (..., H, W)
    multiple : int
    value : float
        Fill value.

    Returns
    -------
    (torch.Tensor (..., H', W'), tuple pads)
        ``pads = (top, bottom, left, right)``; :func:`crop` undoes it.  An odd
        excess puts the extra row/column at the bottom/right.
    """
    if not isinstance(multiple, numbers.Integral) or multiple < 1:
        raise ValueError(f"multiple must be a positive integer, got {multiple!r}")
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    pads = (ph // 2, ph - ph // 2, pw // 2, pw - pw // 2)
    if ph == 0 and pw == 0:
        return x, pads
    out = x.new_full(tuple(x.shape[:-2]) + (h + ph, w + pw), value)
    out[..., pads[0]:pads[0] + h, pads[2]:pads[2] + w] = x
    return out, pads


def crop(x: torch.Tensor, pads) -> torch.Tensor:
    """Undo :func:`pad_to_multiple` (``pads = (top, bottom, left, right)``)."""
    t, b, l, r = pads
    return x[..., t:x.shape[-2] - b, l:x.shape[-1] - r]


def to_channels(img: torch.Tensor, complex_data: bool, dtype=torch.float32) -> torch.Tensor:
    """``(N, H, W)`` image -> ``(N, C, H, W)`` real network input (C = 2: real, imaginary; C = 1)."""
    if complex_data:
        if not img.is_complex():
            img = img.to(torch.complex128 if img.dtype == torch.float64 else torch.complex64)
        return torch.stack([img.real, img.imag], dim=1).to(dtype)
    if img.is_complex():
        raise TypeError("a complex image needs complex_data=True")
    return img.unsqueeze(1).to(dtype)


def from_channels(x: torch.Tensor, complex_data: bool, dtype: torch.dtype) -> torch.Tensor:
    """Inverse of :func:`to_channels`: ``(N, C, H, W)`` -> ``(N, H, W)`` in ``dtype`` (complex or real)."""
    if complex_data:
        real = torch.float64 if dtype == torch.complex128 else torch.float32
        return torch.complex(x[:, 0].to(real), x[:, 1].to(real))
    return x[:, 0].to(dtype)
