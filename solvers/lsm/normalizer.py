"""Pointwise Gaussian normalisation and the physical-units wrapper around a network.

:class:`UnitGaussianNormalizer` keeps the per-point mean and standard
deviation of the training fields as buffers, so they are saved with the
model's ``state_dict`` (and in its safetensors file).  :class:`NormalizedOperator`
chains ``encode -> network -> decode``: physical coefficient in, physical
solution out.

At a grid other than the training grid, the mean and std fields are
resampled bilinearly (``align_corners=True``, i.e. the grid's end points are
the domain's edges, as in the models' ``linspace(0, 1)`` grid channels) to
the input's H x W before use.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ...datasets.grids import check_coordinates, classify_coordinates, grid_coordinates
from .networks import KINDS, build_network

__all__ = ["UnitGaussianNormalizer", "NormalizedOperator"]


class UnitGaussianNormalizer(nn.Module):
    """``encode(x) = (x - mean) / (std + eps)``, ``decode(y) = y * (std + eps) + mean``, per point.

    Parameters
    ----------
    mean, std : torch.Tensor
        Per-point statistics of shape ``(C, H, W)``.
    eps : float
        Added to ``std`` (1e-5, as the FNO/LSM code).

    Notes
    -----
    Fields passed to :meth:`encode` / :meth:`decode` are ``(B, C, H', W')``;
    when ``(H', W') != (H, W)`` the statistics are resampled bilinearly to
    ``(H', W')`` (a smooth mean/std field transfers well; expect the network,
    not the normaliser, to limit accuracy at a new resolution).
    """

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, eps: float = 1e-5):
        super().__init__()
        mean, std = torch.as_tensor(mean, dtype=torch.float32), torch.as_tensor(std, dtype=torch.float32)
        if mean.ndim != 3 or mean.shape != std.shape:
            raise ValueError(f"mean and std must both have shape (C, H, W), got {tuple(mean.shape)} "
                             f"and {tuple(std.shape)}")
        if not (eps > 0):
            raise ValueError(f"eps must be positive, got {eps!r}")
        self.register_buffer("mean", mean.clone())
        self.register_buffer("std", std.clone())
        self.register_buffer("eps", torch.tensor(float(eps)))

    @classmethod
    def fit(cls, x: torch.Tensor, eps: float = 1e-5) -> "UnitGaussianNormalizer":
        """Statistics over the sample axis of ``x`` (N, H, W) or (N, C, H, W); std is unbiased (N-1).

        Computed in float64, stored in float32.
        """
        x = torch.as_tensor(x)
        if x.ndim == 3:
            x = x.unsqueeze(1)
        if x.ndim != 4 or x.shape[0] < 2:
            raise ValueError(f"x must have shape (N, H, W) or (N, C, H, W) with N >= 2, got {tuple(x.shape)}")
        x = x.to(torch.float64)
        return cls(x.mean(0).float(), x.std(0).float(), eps)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the training fields."""
        return tuple(self.mean.shape)

    def _stats(self, x: torch.Tensor):
        if x.ndim != 4 or x.shape[1] != self.mean.shape[0]:
            raise ValueError(f"field must have shape (B, {self.mean.shape[0]}, H, W), got {tuple(x.shape)}")
        mean, scale = self.mean, self.std + self.eps
        if x.shape[-2:] != mean.shape[-2:]:
            size = tuple(x.shape[-2:])
            mean = F.interpolate(mean[None], size=size, mode="bilinear", align_corners=True)[0]
            scale = F.interpolate(self.std[None], size=size, mode="bilinear", align_corners=True)[0] + self.eps
        return mean.to(x.dtype), scale.to(x.dtype)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Physical ``(B, C, H, W)`` -> normalised."""
        mean, scale = self._stats(x)
        return (x - mean) / scale

    def decode(self, y: torch.Tensor) -> torch.Tensor:
        """Normalised ``(B, C, H, W)`` -> physical."""
        mean, scale = self._stats(y)
        return y * scale + mean

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)

    def extra_repr(self) -> str:
        return f"shape={self.shape}, eps={float(self.eps):g}"


class NormalizedOperator(nn.Module):
    """Physical units in and out: ``decode_y(net(encode_x(a)))``.

    Parameters
    ----------
    net : nn.Module
        ``(B, Cin, H, W) -> (B, Cout, H, W)`` with a ``config`` dict and a ``kind``.
    x_normalizer, y_normalizer : UnitGaussianNormalizer, optional
        ``None`` skips that side.

    ``forward(a)``: ``a`` (B, Cin, H, W) in physical units -> (B, Cout, H, W)
    in physical units.  Its ``state_dict`` holds ``net.*``,
    ``x_normalizer.*`` and ``y_normalizer.*``.

    It is LSM's network in the weights convention
    (:func:`~krylearn.solvers.learned.save_pretrained` /
    :func:`~krylearn.solvers.learned.load_pretrained`): the card records the
    inner network's ``kind`` and ``config``, the training ``resolution`` and
    the training ``grid`` (its layout on the unit square, and its
    coordinates when they are neither nodes nor cell centres).
    """

    def __init__(self, net: nn.Module, x_normalizer: UnitGaussianNormalizer | None = None,
                 y_normalizer: UnitGaussianNormalizer | None = None):
        super().__init__()
        self.net = net
        self.x_normalizer = x_normalizer
        self.y_normalizer = y_normalizer
        self._coords = None

    @property
    def kind(self) -> str:
        return getattr(self.net, "kind", type(self.net).__name__.lower())

    @property
    def config(self) -> dict:
        return dict(getattr(self.net, "config", {}))

    @property
    def in_channels(self) -> int:
        return int(self.config.get("in_channels", 1))

    @property
    def resolution(self) -> tuple[int, int] | None:
        """The training grid ``(H, W)`` as recorded by the normalisers, or ``None``."""
        for n in (self.x_normalizer, self.y_normalizer):
            if n is not None:
                return tuple(n.shape[-2:])
        return None

    @property
    def coordinates(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The training grid's coordinates ``(x (H,), y (W,))`` float64, or ``None`` without a resolution.

        As set by :meth:`set_coordinates` (the training data's coordinates),
        else the nodes ``linspace(0, 1, s)``.
        """
        res = self.resolution
        if res is None:
            return None
        if self._coords is not None:
            return self._coords
        return grid_coordinates(res[0]), grid_coordinates(res[1])

    def set_coordinates(self, x, y) -> None:
        """Record the training grid's coordinates (``(H,)`` and ``(W,)``, strictly monotone)."""
        res = self.resolution
        if res is None:
            raise ValueError("set_coordinates needs a training resolution (the normalisers record it)")
        self._coords = (check_coordinates("x", x, res[0]), check_coordinates("y", y, res[1]))

    @property
    def layout(self) -> str | None:
        """The training grid's layout on the unit square (``"node"``, ``"cell"``, ``"general"``), or ``None``."""
        grid = self._grid_card()
        return grid["layout"] if grid else None

    def _grid_card(self) -> dict | None:
        coords = self.coordinates
        if coords is None:
            return None
        layouts = {classify_coordinates(c) for c in coords}
        layout = layouts.pop() if len(layouts) == 1 else "general"
        grid = {"layout": layout, "domain": [0.0, 1.0]}
        if layout == "general":
            grid.update(x=[float(v) for v in coords[0]], y=[float(v) for v in coords[1]])
        return grid

    def card_fields(self) -> dict:
        """Card entries beside ``config`` and ``kind``: the training grid's size and coordinates."""
        res = self.resolution
        return {"resolution": list(res) if res is not None else None, "grid": self._grid_card()}

    def _coordinates_from_card(self, grid) -> None:
        """Set the training coordinates from a card's ``grid`` entry (``ValueError`` naming it when malformed)."""
        if grid is None or self.resolution is None:
            return
        layout = grid.get("layout") if isinstance(grid, dict) else None
        if layout in ("node", "cell"):
            self.set_coordinates(*(grid_coordinates(s, layout) for s in self.resolution))
        elif layout == "general" and "x" in grid and "y" in grid:
            try:
                self.set_coordinates(grid["x"], grid["y"])
            except ValueError as e:
                raise ValueError(f"grid: {e}") from None
        else:
            raise ValueError(f"grid must be {{'layout': 'node' | 'cell'}} or {{'layout': 'general', 'x': [...], "
                             f"'y': [...]}}, got {grid!r}")

    @classmethod
    def from_card(cls, card: dict, state: dict) -> "NormalizedOperator":
        """Rebuild from a weight card (``kind``, ``config``) and its tensors (the normalisers' statistics).

        Raises ``ValueError`` naming ``kind`` or ``config`` when the card
        describes no network of :data:`~.networks.KINDS`, and naming ``grid``
        when its training grid is malformed.  A card without ``grid`` means
        the nodes ``linspace(0, 1, s)``.
        """
        kind = card.get("kind")
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
        try:
            net = build_network(kind, card["config"])
        except TypeError as e:
            raise ValueError(f"config does not build a {kind} network ({e})") from None
        norms = []
        for side in ("x_normalizer", "y_normalizer"):
            keys = [f"{side}.{k}" for k in ("mean", "std", "eps")]
            has = all(k in state for k in keys)
            norms.append(UnitGaussianNormalizer(state[keys[0]], state[keys[1]], float(state[keys[2]])) if has
                         else None)
        op = cls(net, *norms)
        op._coordinates_from_card(card.get("grid"))
        return op

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        x = self.x_normalizer.encode(a) if self.x_normalizer is not None else a
        y = self.net(x)
        return self.y_normalizer.decode(y) if self.y_normalizer is not None else y
