"""Baselines trained and evaluated with the same loop and data as the LSM.

- :class:`FNO2d`: a compact Fourier Neural Operator (Li et al., ICLR 2021),
  written here with ``torch.fft.rfft2`` (no neuraloperator dependency).
- :class:`UNet2d`: the LSM's U-Net without Neural Spectral Blocks.

Both take channel-first ``(B, in_channels, H, W)``, add the two grid channels
inside, and carry a JSON-serialisable ``config`` dict.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import UNetBackbone
from .model import check_input, grid_channels, pointwise

__all__ = ["SpectralConv2d", "FNO2d", "UNet2d"]


def _positive(**kw) -> None:
    for name, v in kw.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")


class SpectralConv2d(nn.Module):
    """Fourier layer: rfft2, multiply the lowest ``modes x modes`` frequencies by learned complex weights, irfft2.

    Weights are stored as real tensors ``(Cin, Cout, modes, modes, 2)`` (real,
    imaginary), one for the non-negative and one for the negative row
    frequencies, so safetensors and fp16 storage need no complex support.
    On grids too small for ``modes``, the available frequencies are used.
    """

    def __init__(self, in_channels: int, out_channels: int, modes: int):
        super().__init__()
        self.modes = modes
        scale = 1.0 / (in_channels * out_channels)
        self.weights_pos = nn.Parameter(scale * torch.rand(in_channels, out_channels, modes, modes, 2))
        self.weights_neg = nn.Parameter(scale * torch.rand(in_channels, out_channels, modes, modes, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W = x.shape[0], x.shape[-2], x.shape[-1]
        dtype = x.dtype
        xf = torch.fft.rfft2(x.float(), norm="backward")
        m1, m2 = min(self.modes, H // 2), min(self.modes, W // 2 + 1)
        wp = torch.view_as_complex(self.weights_pos.float()[:, :, :m1, :m2].contiguous())
        wn = torch.view_as_complex(self.weights_neg.float()[:, :, :m1, :m2].contiguous())
        out = torch.zeros(B, wp.shape[1], H, W // 2 + 1, dtype=xf.dtype, device=x.device)
        out[:, :, :m1, :m2] = torch.einsum("bixy,ioxy->boxy", xf[:, :, :m1, :m2], wp)
        out[:, :, H - m1:, :m2] = torch.einsum("bixy,ioxy->boxy", xf[:, :, H - m1:, :m2], wn)
        return torch.fft.irfft2(out, s=(H, W), norm="backward").to(dtype)


class FNO2d(nn.Module):
    """Fourier Neural Operator: ``(B, in_channels, H, W) -> (B, out_channels, H, W)``.

    Lift ``[x, grid] -> width`` (linear), zero-pad bottom/right (the
    non-periodic Darcy problem), ``layers`` x (spectral conv + 1x1 conv, GELU
    between layers), crop, linear 128 -> GELU -> linear to ``out_channels``.

    Parameters
    ----------
    modes : int
        Retained Fourier modes per axis (12 in the FNO paper's Darcy setup).
    width : int
        Channels of the Fourier layers (32).
    layers : int
        Fourier layers (4).
    in_channels, out_channels : int
    padding : int, optional
        Zero padding (cells) on the bottom and right.  ``None``: ``ceil(n/10)``
        per axis (9 at 85, the FNO code's choice).
    """

    kind = "fno"

    def __init__(self, modes: int = 12, width: int = 32, layers: int = 4, in_channels: int = 1,
                 out_channels: int = 1, padding: int | None = None):
        super().__init__()
        _positive(modes=modes, width=width, layers=layers, in_channels=in_channels, out_channels=out_channels)
        if padding is not None and (not isinstance(padding, int) or padding < 0):
            raise ValueError(f"padding must be None or a non-negative integer, got {padding!r}")
        self.config = dict(modes=modes, width=width, layers=layers, in_channels=in_channels,
                           out_channels=out_channels, padding=padding)
        self.in_channels, self.padding = in_channels, padding
        self.fc0 = nn.Linear(in_channels + 2, width)
        self.spectral = nn.ModuleList(SpectralConv2d(width, width, modes) for _ in range(layers))
        self.pointwise = nn.ModuleList(nn.Conv2d(width, width, 1) for _ in range(layers))
        self.fc1 = nn.Linear(width, 128)
        self.fc2 = nn.Linear(128, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels)
        H, W = x.shape[-2:]
        ph = math.ceil(H / 10) if self.padding is None else self.padding
        pw = math.ceil(W / 10) if self.padding is None else self.padding
        x = pointwise(self.fc0, torch.cat([x, grid_channels(x)], dim=1))
        x = F.pad(x, [0, pw, 0, ph])
        n = len(self.spectral)
        for i, (spec, conv) in enumerate(zip(self.spectral, self.pointwise)):
            x = spec(x) + conv(x)
            if i < n - 1:
                x = F.gelu(x)
        x = x[..., :H, :W]
        return pointwise(self.fc2, F.gelu(pointwise(self.fc1, x)))


class UNet2d(nn.Module):
    """The LSM's U-Net without Neural Spectral Blocks: ``(B, in, H, W) -> (B, out, H, W)``.

    Lift ``[x, grid] -> width``, zero-pad bottom/right to a multiple of
    ``2**(levels-1)``, U-Net (channels ``w, 2w, ...``, last repeated), crop,
    linear 128 -> GELU -> linear.

    Parameters
    ----------
    width : int
    levels : int
        U-Net scales.
    in_channels, out_channels : int
    """

    kind = "unet"

    def __init__(self, width: int = 32, levels: int = 4, in_channels: int = 1, out_channels: int = 1):
        super().__init__()
        _positive(width=width, levels=levels, in_channels=in_channels, out_channels=out_channels)
        self.config = dict(width=width, levels=levels, in_channels=in_channels, out_channels=out_channels)
        self.in_channels, self.levels = in_channels, levels
        self.fc0 = nn.Linear(in_channels + 2, width)
        self.unet = UNetBackbone(width, levels)
        self.fc1 = nn.Linear(width, 128)
        self.fc2 = nn.Linear(128, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels)
        H, W = x.shape[-2:]
        f = 2 ** (self.levels - 1)
        Hp, Wp = math.ceil(H / f) * f, math.ceil(W / f) * f
        x = pointwise(self.fc0, torch.cat([x, grid_channels(x)], dim=1))
        x = F.pad(x, [0, Wp - W, 0, Hp - H])
        x = self.unet(x)[..., :H, :W]
        return pointwise(self.fc2, F.gelu(pointwise(self.fc1, x)))
