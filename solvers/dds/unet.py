"""A small epsilon-prediction UNet (an ADM/guided-diffusion layout, scaled down).

Layout: sinusoidal time embedding -> MLP; a 3x3 input convolution; per
resolution level ``num_res_blocks`` residual blocks (GroupNorm, SiLU, 3x3
convolutions, the time embedding injected as a scale and shift of the second
normalisation) and a strided-convolution downsample; a middle block
(residual, self-attention, residual); the mirrored up path with skip
connections and nearest-neighbour upsampling + convolution; GroupNorm, SiLU
and a zero-initialised 3x3 output convolution (so an untrained net predicts
``eps = 0``, i.e. ``x0 = x_t / sqrt(abar)``).  Multi-head self-attention runs
at the levels listed in ``attention_levels`` (default: the coarsest only).

Input sizes: ``H`` and ``W`` must be multiples of :attr:`UNet.size_multiple`
``= 2 ** (len(channel_mult) - 1)``; the samplers pad other sizes (see
:func:`~krylearn.solvers.dds.pad_to_multiple`).

Channels: 2 (real, imaginary) for complex MRI images, 1 for CT; the output
has ``out_channels`` (default ``in_channels``) channels of predicted noise.
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DEFAULT_CONFIG", "UNet", "timestep_embedding"]

#: The default configuration (1.63 M parameters; any size that is a multiple of 8).
DEFAULT_CONFIG = {
    "in_channels": 2,
    "out_channels": None,
    "base_channels": 32,
    "channel_mult": (1, 2, 2, 2),
    "num_res_blocks": 1,
    "attention_levels": None,
    "num_heads": 4,
    "dropout": 0.0,
    "groups": 8,
}


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding ``[cos(t w_k), sin(t w_k)]``, ``w_k = max_period^(-k / (dim/2))``.

    Parameters
    ----------
    t : torch.Tensor, (B,)
        Time steps (integers 0..T-1 or floats).
    dim : int
        Embedding width (even).

    Returns
    -------
    torch.Tensor, float32, (B, dim)
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


def _norm(ch: int, groups: int) -> nn.GroupNorm:
    g = math.gcd(ch, groups)
    return nn.GroupNorm(g, ch)


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """``x + conv(SiLU(GN(conv(SiLU(GN(x)))) * (1 + scale) + shift))`` with ``(scale, shift)`` from the time embedding."""

    def __init__(self, cin: int, cout: int, emb_dim: int, groups: int, dropout: float):
        super().__init__()
        self.norm1 = _norm(cin, groups)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * cout)
        self.norm2 = _norm(cout, groups)
        self.drop = nn.Dropout(dropout)
        self.conv2 = _zero(nn.Conv2d(cout, cout, 3, padding=1))
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.drop(F.silu(h)))
        return self.skip(x) + h


class Attention(nn.Module):
    """Multi-head self-attention over the pixels, with a residual connection."""

    def __init__(self, ch: int, heads: int, groups: int):
        super().__init__()
        if ch % heads:
            raise ValueError(f"num_heads={heads} must divide the channel count {ch}")
        self.heads = heads
        self.norm = _norm(ch, groups)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = _zero(nn.Conv2d(ch, ch, 1))

    def forward(self, x, emb=None):
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w)
        q, k, v = (qkv[:, i].transpose(-1, -2) for i in range(3))  # (b, heads, hw, d)
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(-1, -2).reshape(b, c, h, w)
        return x + self.proj(out)


class Downsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=1)

    def forward(self, x, emb=None):
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x, emb=None):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Seq(nn.ModuleList):
    def forward(self, x, emb):
        for m in self:
            x = m(x, emb)
        return x


class UNet(nn.Module):
    """Epsilon-prediction UNet ``eps = net(x_t, t)``.

    Parameters
    ----------
    in_channels : int
        2 for complex images (real, imaginary), 1 for real ones.
    out_channels : int, optional
        Default ``in_channels``.
    base_channels : int
        Width of the first level (multiplied by ``channel_mult`` per level).
    channel_mult : tuple of int
        One entry per resolution level; ``len - 1`` downsamplings.
    num_res_blocks : int
        Residual blocks per level on the way down (one more on the way up).
    attention_levels : tuple of int, optional
        Levels (0 = full resolution) with self-attention after each residual
        block; default the coarsest level.  The middle block always has one.
    num_heads : int
        Attention heads (must divide each attended level's width).
    dropout : float
    groups : int
        GroupNorm groups (reduced to ``gcd(groups, channels)`` per layer).

    Attributes
    ----------
    config : dict
        The constructor arguments (JSON-serialisable), stored in weight cards.
    size_multiple : int
        ``2 ** (len(channel_mult) - 1)``: ``H`` and ``W`` must be multiples of it.
    kind : str
        ``"dds-unet"``, recorded in weight cards.

    Examples
    --------
    >>> net = UNet(in_channels=1, base_channels=8, channel_mult=(1, 2))
    >>> net(torch.zeros(3, 1, 16, 12), torch.tensor([0, 10, 999])).shape
    torch.Size([3, 1, 16, 12])
    """

    kind = "dds-unet"

    def __init__(self, in_channels: int = 2, out_channels: int | None = None, base_channels: int = 32,
                 channel_mult=(1, 2, 2, 2), num_res_blocks: int = 1, attention_levels=None, num_heads: int = 4,
                 dropout: float = 0.0, groups: int = 8):
        super().__init__()
        for name, v in (("in_channels", in_channels), ("base_channels", base_channels),
                        ("num_res_blocks", num_res_blocks), ("num_heads", num_heads), ("groups", groups)):
            if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        out_channels = in_channels if out_channels is None else out_channels
        if not isinstance(out_channels, numbers.Integral) or out_channels < 1:
            raise ValueError(f"out_channels must be a positive integer, got {out_channels!r}")
        try:
            mult = tuple(int(m) for m in channel_mult)
        except TypeError:
            raise TypeError(f"channel_mult must be a sequence of ints, got {channel_mult!r}") from None
        if not mult or min(mult) < 1:
            raise ValueError(f"channel_mult must be a non-empty sequence of positive ints, got {channel_mult!r}")
        levels = len(mult)
        attn = (levels - 1,) if attention_levels is None else tuple(int(a) for a in attention_levels)
        if any(not 0 <= a < levels for a in attn):
            raise ValueError(f"attention_levels must lie in [0, {levels - 1}], got {attention_levels!r}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")
        self.config = {"in_channels": int(in_channels), "out_channels": int(out_channels),
                       "base_channels": int(base_channels), "channel_mult": list(mult),
                       "num_res_blocks": int(num_res_blocks), "attention_levels": list(attn),
                       "num_heads": int(num_heads), "dropout": float(dropout), "groups": int(groups)}
        self.size_multiple = 2 ** (levels - 1)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)

        ch = base_channels
        emb_dim = 4 * base_channels
        self.base_channels = base_channels
        self.time_mlp = nn.Sequential(nn.Linear(base_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)

        self.down = nn.ModuleList()
        skips = [ch]
        for lvl, m in enumerate(mult):
            for _ in range(num_res_blocks):
                block = [ResBlock(ch, m * base_channels, emb_dim, groups, dropout)]
                ch = m * base_channels
                if lvl in attn:
                    block.append(Attention(ch, num_heads, groups))
                self.down.append(_Seq(block))
                skips.append(ch)
            if lvl != levels - 1:
                self.down.append(_Seq([Downsample(ch)]))
                skips.append(ch)

        self.mid = _Seq([ResBlock(ch, ch, emb_dim, groups, dropout), Attention(ch, num_heads, groups),
                         ResBlock(ch, ch, emb_dim, groups, dropout)])

        self.up = nn.ModuleList()
        for lvl in reversed(range(levels)):
            m = mult[lvl]
            for i in range(num_res_blocks + 1):
                block = [ResBlock(ch + skips.pop(), m * base_channels, emb_dim, groups, dropout)]
                ch = m * base_channels
                if lvl in attn:
                    block.append(Attention(ch, num_heads, groups))
                if lvl != 0 and i == num_res_blocks:
                    block.append(Upsample(ch))
                self.up.append(_Seq(block))

        self.out = nn.Sequential(_norm(ch, groups), nn.SiLU(), _zero(nn.Conv2d(ch, out_channels, 3, padding=1)))

    def forward(self, x: torch.Tensor, t) -> torch.Tensor:
        """Predict the noise.

        Parameters
        ----------
        x : torch.Tensor, (B, in_channels, H, W)
            ``H``, ``W`` multiples of :attr:`size_multiple`.
        t : torch.Tensor (B,) or (), or a number
            Time steps in ``[0, T)``.

        Returns
        -------
        torch.Tensor, (B, out_channels, H, W)
        """
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"x must have shape (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        m = self.size_multiple
        if x.shape[-1] % m or x.shape[-2] % m:
            raise ValueError(f"x has spatial size {tuple(x.shape[-2:])}; H and W must be multiples of {m} "
                             "(pad with krylearn.solvers.dds.pad_to_multiple)")
        t = torch.as_tensor(t, device=x.device)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        if t.shape != (x.shape[0],):
            raise ValueError(f"t must be a scalar or have shape ({x.shape[0]},), got {tuple(t.shape)}")
        emb = self.time_mlp(timestep_embedding(t, self.base_channels).to(x.dtype))
        h = self.conv_in(x)
        hs = [h]
        for block in self.down:
            h = block(h, emb)
            hs.append(h)
        h = self.mid(h, emb)
        for block in self.up:
            h = block(torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
