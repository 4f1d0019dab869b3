"""The Latent Spectral Model (LSM) for 2D fields, channel-first.

Pipeline (as the authors' ``LSM_2D.py``): input ``(B, C, H, W)`` plus two
grid channels ``x = linspace(0, 1, H)`` (along H) and ``y = linspace(0, 1, W)``
(along W) -> pointwise linear lift to ``width`` -> zero padding on the
bottom/right -> U-Net of ``levels`` scales with one Neural Spectral Block per
encoder scale -> crop -> linear 128 -> GELU -> linear to ``out_channels``.

Padding and patch rule (the authors pick both by hand per resolution)
---------------------------------------------------------------------
With ``f = 2**(levels - 1)`` (the coarsest scale's down-sampling factor):

- ``patch=None`` (default): per axis, ``patch = ceil(n / f)``, and the axis is
  padded to ``f * patch``.  The coarsest scale is then exactly one patch and
  every scale holds ``f x f`` patches, so a patch always covers the same
  fraction (about ``1/f`` per side) of the domain, whatever the grid.  At 85
  with 5 levels: patch ``ceil(85/16) = 6``, padded to 96 (the authors'
  Darcy setting); it also reproduces their 64 -> (4, 64), 129 -> (9, 144),
  41 -> (3, 48) and 221x51 -> (14x4, 224x64).
- ``patch=p`` (int or pair): fixed patch; each axis is padded up to the
  smallest multiple of ``f * p``.

At a resolution the model was not trained at
--------------------------------------------
The network runs on any H x W (padding and, with ``patch=None``, the patch
follow the rule above), but it is *not* discretisation invariant: the 3x3
convolutions see a fixed number of grid cells, so their physical receptive
field shrinks on finer grids, and the zero-padded margin is a different
fraction of the domain.  Expect the error to grow away from the training
resolution (the authors' users report this at 421 for Darcy).  The NSB with
``patch=None`` keeps its patches at a fixed physical size, which is the part
that transfers.  :func:`krylearn.solvers.lsm.predict` can instead resample the
input to the training grid and the output back (``resample=True``).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import UNetBackbone, _pair

__all__ = ["LSM2d", "grid_channels", "lsm_plan", "check_input"]


def grid_channels(x: torch.Tensor) -> torch.Tensor:
    """Two channels ``(B, 2, H, W)``: ``linspace(0, 1, H)`` along H and ``linspace(0, 1, W)`` along W."""
    B, _, H, W = x.shape
    gx = torch.linspace(0, 1, H, device=x.device, dtype=x.dtype).view(1, 1, H, 1).expand(B, 1, H, W)
    gy = torch.linspace(0, 1, W, device=x.device, dtype=x.dtype).view(1, 1, 1, W).expand(B, 1, H, W)
    return torch.cat([gx, gy], dim=1)


def pointwise(linear: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """Apply a ``nn.Linear`` over the channel axis of ``(B, C, H, W)``."""
    return linear(x.movedim(1, -1)).movedim(-1, 1)


def check_input(x, in_channels: int, name: str = "x") -> None:
    """Raise ``ValueError`` unless ``x`` is a ``(B, in_channels, H, W)`` floating tensor."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4 or x.shape[1] != in_channels:
        raise ValueError(f"{name} must have shape (B, {in_channels}, H, W) (channel-first), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {x.dtype}")


def lsm_plan(size, levels: int = 5, patch=None) -> tuple[tuple[int, int], tuple[int, int]]:
    """Patch and padded size for a grid, by the rule in the module docstring.

    Parameters
    ----------
    size : int or (int, int)
        Grid (H, W).
    levels : int
    patch : None, int or (int, int)

    Returns
    -------
    ((ph, pw), (Hp, Wp))

    Examples
    --------
    >>> lsm_plan(85)
    ((6, 6), (96, 96))
    >>> lsm_plan((221, 51))
    ((14, 4), (224, 64))
    """
    H, W = _pair(size, "size")
    f = 2 ** (levels - 1)
    if f > 2 * min(H, W):  # the coarsest scale would be coarser than the grid: padding, not information
        fit = int(math.log2(2 * min(H, W))) + 1
        raise ValueError(f"levels = {levels} down-samples by {f}, more than twice the {H}x{W} grid; use levels <= {fit}")
    if patch is None:
        ph, pw = math.ceil(H / f), math.ceil(W / f)
    else:
        ph, pw = _pair(patch, "patch")
    return (ph, pw), (math.ceil(H / (f * ph)) * f * ph, math.ceil(W / (f * pw)) * f * pw)


class LSM2d(nn.Module):
    """Latent Spectral Model on 2D grids: ``(B, in_channels, H, W) -> (B, out_channels, H, W)``.

    Parameters
    ----------
    in_channels, out_channels : int
        Physical input and output channels (Darcy: 1 -> 1).  The two grid
        channels are added inside.
    width : int
        Lifted width ``w``; the U-Net has ``w, 2w, 4w, 8w, 8w`` channels
        (5 levels).  Must be divisible by 8 (attention heads).
    num_basis : int
        Frequencies of the NSB's latent sin/cos series.
    num_token : int
        Latent tokens per head in each NSB.
    patch : None, int or (int, int)
        NSB patch size; ``None`` picks it from the grid (see module docstring).
    levels : int
        U-Net scales (the paper: 5).
    norm : {"batch", "group", "none"}
        BatchNorm in the U-Net's convolution blocks (the paper), per-sample
        GroupNorm, or none.

    Attributes
    ----------
    config : dict
        Constructor arguments (JSON-serialisable), to rebuild from a card.

    Notes
    -----
    The Darcy configuration of the paper (``width=64, num_basis=12,
    num_token=4``, 5 levels, patch 6 at 85 padded to 96) has 19,187,457
    parameters, the same as the authors' model.  Runs on any device; nothing
    is placed on CUDA by the constructor.
    """

    kind = "lsm"

    def __init__(self, in_channels: int = 1, out_channels: int = 1, width: int = 64, num_basis: int = 12,
                 num_token: int = 4, patch=None, levels: int = 5, norm: str = "batch"):
        super().__init__()
        for name, v in (("in_channels", in_channels), ("out_channels", out_channels), ("width", width),
                        ("num_basis", num_basis), ("num_token", num_token), ("levels", levels)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if width % 8:
            raise ValueError(f"width must be divisible by 8 (attention heads), got {width}")
        if patch is not None:
            patch = list(_pair(patch, "patch"))
        self.config = dict(in_channels=in_channels, out_channels=out_channels, width=width,
                           num_basis=num_basis, num_token=num_token, patch=patch, levels=levels)
        if norm != "batch":  # cards written before the option keep their exact config
            self.config["norm"] = norm
        self.in_channels, self.out_channels, self.levels, self.patch = in_channels, out_channels, levels, patch
        self.fc0 = nn.Linear(in_channels + 2, width)
        self.unet = UNetBackbone(width, levels, num_basis=num_basis, num_token=num_token, norm=norm)
        self.fc1 = nn.Linear(width, 128)
        self.fc2 = nn.Linear(128, out_channels)

    def plan(self, H: int, W: int):
        """``((ph, pw), (Hp, Wp))``: the patch and padded size used for an ``H x W`` input."""
        return lsm_plan((H, W), self.levels, self.patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels)
        H, W = x.shape[-2:]
        patch, (Hp, Wp) = self.plan(H, W)
        x = pointwise(self.fc0, torch.cat([x, grid_channels(x)], dim=1))
        if (Hp, Wp) != (H, W):
            x = F.pad(x, [0, Wp - W, 0, Hp - H])
        x = self.unet(x, patch)[..., :H, :W]
        return pointwise(self.fc2, F.gelu(pointwise(self.fc1, x)))
