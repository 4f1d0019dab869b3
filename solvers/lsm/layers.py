"""Building blocks of the Latent Spectral Model (Wu et al., ICML 2023).

All blocks work on channel-first feature maps ``(B, C, H, W)``.

- :class:`DoubleConv`, :class:`Down`, :class:`Up`: the U-Net pieces (bias-free
  3x3 convolutions with BatchNorm and ReLU, 2x2 max-pooling, bilinear
  up-sampling with ``align_corners=True``).
- :class:`NeuralSpectralBlock2d`: the NSB.  Split the map into patches;
  ``num_token`` learned latent tokens (8 heads) attend to each patch's
  positions; each latent scalar goes through a learned per-channel sin/cos
  series with ``num_basis`` frequencies (plus a residual); the positions
  attend back to the tokens (plus a residual).
- :class:`UNetBackbone`: the U-Net of ``levels`` scales, optionally with one
  NSB per encoder scale applied before the skip joins the decoder (LSM) or
  none (the plain U-Net baseline).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["DoubleConv", "Down", "Up", "NeuralSpectralBlock2d", "UNetBackbone", "encoder_channels"]


def _pair(p, name: str) -> tuple[int, int]:
    if isinstance(p, int) and not isinstance(p, bool):
        p = (p, p)
    try:
        ph, pw = (int(v) for v in p)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an int or a pair of ints, got {p!r}") from None
    if ph < 1 or pw < 1:
        raise ValueError(f"{name} must be >= 1, got {p!r}")
    return ph, pw


NORMS = ("batch", "group", "none")


def _check_norm(norm: str) -> str:
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    return norm


class DoubleConv(nn.Sequential):
    """(Conv3x3 without bias -> BatchNorm -> ReLU) twice; keeps H and W.

    Parameters
    ----------
    in_channels, out_channels : int
    mid_channels : int, optional
        Channels between the two convolutions (default ``out_channels``).
    norm : {"batch", "group", "none"}
        ``"group"``: GroupNorm with one group (statistics of each sample alone),
        ``"none"``: no normalisation (the convolutions get biases).  Both make
        the map independent of what else is in the batch, which a
        preconditioner needs.
    """

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int | None = None, norm: str = "batch"):
        mid = mid_channels or out_channels
        norm = _check_norm(norm)

        def block(cin, cout):
            conv = nn.Conv2d(cin, cout, kernel_size=3, padding=1, bias=norm == "none")
            if norm == "none":
                return [conv]
            return [conv, nn.BatchNorm2d(cout) if norm == "batch" else nn.GroupNorm(1, cout)]

        super().__init__(*block(in_channels, mid), nn.ReLU(inplace=True),
                         *block(mid, out_channels), nn.ReLU(inplace=True))


class Down(nn.Sequential):
    """MaxPool2d(2) then :class:`DoubleConv`: ``(B, Cin, H, W) -> (B, Cout, H//2, W//2)``."""

    def __init__(self, in_channels: int, out_channels: int, norm: str = "batch"):
        super().__init__(nn.MaxPool2d(2), DoubleConv(in_channels, out_channels, norm=norm))


class Up(nn.Module):
    """Bilinear x2 up-sampling, concatenation with the skip, :class:`DoubleConv`.

    ``forward(x, skip)``: ``x`` (B, C1, h, w) is up-sampled (``align_corners=True``),
    zero-padded to the skip's size, concatenated as ``[skip, x]`` and mapped by
    ``DoubleConv(in_channels, out_channels, in_channels // 2)``, where
    ``in_channels = C1 + C_skip``.
    """

    def __init__(self, in_channels: int, out_channels: int, norm: str = "batch"):
        super().__init__()
        self.conv = DoubleConv(in_channels, out_channels, in_channels // 2, norm=norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        dh, dw = skip.shape[-2] - x.shape[-2], skip.shape[-1] - x.shape[-1]
        if dh or dw:
            x = F.pad(x, [dw // 2, dw - dw // 2, dh // 2, dh - dh // 2])
        return self.conv(torch.cat([skip, x], dim=1))


class NeuralSpectralBlock2d(nn.Module):
    """Neural Spectral Block on patches of a ``(B, C, H, W)`` map; output has the same shape.

    Parameters
    ----------
    width : int
        Channels C; must be divisible by ``heads``.
    num_basis : int
        Frequencies k = 0..num_basis-1 of the latent sin/cos series
        ``sin(k*pi*z/num_basis)``, ``cos(k*pi*z/num_basis)``.
    num_token : int
        Learned latent tokens per head.
    heads : int
        Attention heads (8 in the paper).

    Notes
    -----
    Parameters do not depend on the patch size, so the patch is an argument of
    :meth:`forward`: ``H`` and ``W`` must be divisible by ``patch``.  The
    attention has no ``1/sqrt(d)`` scaling, as in the authors' code; the
    channel order of the key/value projection is theirs too (key and value
    interleaved per channel), so their checkpoints map onto these weights by
    renaming keys.  Cost is O(H*W*num_token*C).
    """

    def __init__(self, width: int, num_basis: int = 12, num_token: int = 4, heads: int = 8):
        super().__init__()
        if width % heads:
            raise ValueError(f"width must be divisible by heads={heads}, got width={width}")
        if num_basis < 1 or num_token < 1:
            raise ValueError(f"num_basis and num_token must be >= 1, got {num_basis}, {num_token}")
        self.width, self.num_basis, self.num_token, self.heads = width, num_basis, num_token, heads
        # frequencies k*pi/num_basis: a constant, not saved (rebuilt on any device)
        self.register_buffer("freqs", torch.arange(num_basis, dtype=torch.float32) * (math.pi / num_basis),
                             persistent=False)
        self.weights = nn.Parameter(torch.rand(width, 2 * num_basis) / width)
        self.latent = nn.Parameter(torch.rand(heads, num_token, width // heads) / width)
        self.encoder_attn = nn.Conv2d(width, 2 * width, kernel_size=1)
        self.decoder_attn = nn.Conv2d(width, width, kernel_size=1)

    def forward(self, x: torch.Tensor, patch) -> torch.Tensor:
        B, C, H, W = x.shape
        ph, pw = _pair(patch, "patch")
        if H % ph or W % pw:
            raise ValueError(f"feature map {H}x{W} is not divisible by patch {ph}x{pw}")
        nh, nw, h, d = H // ph, W // pw, self.heads, C // self.heads
        L = ph * pw
        # patchify: (B, C, H, W) -> (P, C, ph, pw) with P = B * nh * nw
        xp = x.reshape(B, C, nh, ph, nw, pw).permute(0, 2, 4, 1, 3, 5).reshape(-1, C, ph, pw)
        P = xp.shape[0]
        # (1) positions -> latent tokens: tokens are queries, positions keys/values
        kv = self.encoder_attn(xp).reshape(P, h, d, 2, L)
        k, v = kv[..., 0, :], kv[..., 1, :]                        # (P, h, d, L)
        q = self.latent                                            # (h, T, d)
        attn = torch.softmax(torch.einsum("htd,phdl->phtl", q, k), dim=-1)
        z = torch.einsum("phtl,phdl->phtd", attn, v) + q           # (P, h, T, d)
        z = z.permute(0, 1, 3, 2).reshape(P, C, self.num_token)    # channel c = head*d + j
        # (2) latent transition: learned per-channel trigonometric series + residual
        arg = z.unsqueeze(-1) * self.freqs.to(z.dtype)             # (P, C, T, nb)
        basis = torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1)
        z = torch.einsum("pctm,cm->pct", basis, self.weights) + z
        # (3) latent tokens -> positions: positions are queries, tokens keys and values
        zt = z.reshape(P, h, d, self.num_token).transpose(2, 3)    # (P, h, T, d)
        qx = self.decoder_attn(xp).reshape(P, h, d, L)
        # softmax over the tokens (axis 2); keeping positions last is ~3x faster on CPU than tokens last
        attn = torch.softmax(torch.einsum("phdl,phtd->phtl", qx, zt), dim=2)
        out = torch.einsum("phtl,phtd->phdl", attn, zt).reshape(P, C, ph, pw) + xp
        # de-patchify
        return out.reshape(B, nh, nw, C, ph, pw).permute(0, 3, 1, 4, 2, 5).reshape(B, C, H, W)


def encoder_channels(width: int, levels: int) -> list[int]:
    """Channels of the U-Net's encoder scales: w, 2w, 4w, ..., and the last repeats the one before.

    ``levels=5`` gives ``[w, 2w, 4w, 8w, 8w]`` (the paper's U-Net with bilinear up-sampling).
    """
    if levels < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    ch = [width * 2 ** i for i in range(max(levels - 1, 1))]
    if levels > 1:
        ch.append(ch[-1])
    return ch


class UNetBackbone(nn.Module):
    """U-Net on ``(B, width, H, W)`` maps, H and W divisible by ``2**(levels-1)``.

    Encoder: ``DoubleConv(w, w)`` then ``levels - 1`` :class:`Down` blocks with
    channels from :func:`encoder_channels`; decoder: ``levels - 1`` :class:`Up`
    blocks back to ``w`` channels; a final 1x1 convolution.

    Parameters
    ----------
    width : int
    levels : int
        Number of scales (5 in the paper).
    num_basis, num_token : int, optional
        Give both to put one :class:`NeuralSpectralBlock2d` on every encoder
        scale (the LSM); leave them out for a plain U-Net.
    norm : {"batch", "group", "none"}
        Normalisation in the convolution blocks (see :class:`DoubleConv`).
    """

    def __init__(self, width: int, levels: int = 5, num_basis: int | None = None, num_token: int | None = None,
                 norm: str = "batch"):
        super().__init__()
        ch = encoder_channels(width, levels)
        self.levels = levels
        self.inc = DoubleConv(width, ch[0], norm=norm)
        self.downs = nn.ModuleList(Down(ch[i - 1], ch[i], norm) for i in range(1, levels))
        ups, cur = [], ch[-1]
        for j in range(levels - 2, -1, -1):
            out = ch[max(j - 1, 0)]
            ups.append(Up(cur + ch[j], out, norm))
            cur = out
        self.ups = nn.ModuleList(ups)
        self.outc = nn.Conv2d(cur, width, kernel_size=1)
        if (num_basis is None) != (num_token is None):
            raise ValueError("give both num_basis and num_token (LSM) or neither (plain U-Net)")
        self.process = None if num_basis is None else nn.ModuleList(
            NeuralSpectralBlock2d(c, num_basis, num_token) for c in ch)

    def forward(self, x: torch.Tensor, patch=None) -> torch.Tensor:
        """``x`` (B, width, H, W) -> (B, width, H, W); ``patch`` is needed with NSBs."""
        feats = [self.inc(x)]
        for down in self.downs:
            feats.append(down(feats[-1]))
        if self.process is not None:
            feats = [blk(f, patch) for blk, f in zip(self.process, feats)]
        y = feats[-1]
        for up, skip in zip(self.ups, reversed(feats[:-1])):
            y = up(y, skip)
        return self.outc(y)
