"""File-side helpers of :mod:`.reconstruct`: slice selections, cropping, PSNR against a file's reference, previews."""

from __future__ import annotations

import numbers
from pathlib import Path

import h5py
import numpy as np

from ..solvers.imaging import psnr
from ..utils.atomic import atomic_path

__all__ = ["center_crop", "num_slices", "parse_slices", "preview_path", "psnr_against", "slice_indices",
           "write_previews"]


def parse_slices(text):
    """``"5"`` -> 5, ``"3:9"`` -> slice(3, 9), ``"1,4,7"`` -> [1, 4, 7]; None and parsed values pass through."""
    if text is None or isinstance(text, (numbers.Integral, slice, list, tuple, np.ndarray)):
        return list(text) if isinstance(text, tuple) else text
    if not isinstance(text, str):
        raise TypeError(f"slices must be a string like '5', '3:9' or '1,4,7', got {type(text).__name__}")
    t = text.strip()
    try:
        if ":" in t:
            parts = [int(p) if p.strip() else None for p in t.split(":")]
            if len(parts) > 3:
                raise ValueError
            return slice(*parts)
        if "," in t:
            return [int(p) for p in t.split(",") if p.strip()]
        return int(t)
    except ValueError:
        raise ValueError(f"slices must look like '5', '3:9' or '1,4,7', got {text!r}") from None


def slice_indices(slices, n) -> np.ndarray:
    """The file's slice numbers that a parsed selection picks out of ``n`` slices."""
    if slices is None:
        return np.arange(n)
    if isinstance(slices, numbers.Integral):
        return np.array([int(slices) % n])
    if isinstance(slices, slice):
        return np.arange(n)[slices]
    return np.mod(np.asarray(slices, dtype=np.int64), n)


def num_slices(path, key):
    """The length of ``path[key]``'s first axis, or None when it cannot be read (the reader reports why)."""
    try:
        with h5py.File(path, "r") as f:
            return f[key].shape[0] if key in f and hasattr(f[key], "shape") else None
    except OSError:
        return None


def center_crop(x, shape):
    """The centre ``shape = (cy, cx)`` of ``x (..., ny, nx)``; ``x`` itself when it is smaller."""
    ny, nx = x.shape[-2:]
    cy, cx = shape
    if cy > ny or cx > nx:
        return x
    y0, x0 = (ny - cy) // 2, (nx - cx) // 2
    return x[..., y0:y0 + cy, x0:x0 + cx]


def preview_path(out) -> Path:
    out = Path(out)
    return out.with_name(out.stem + "_preview.png")


def write_previews(out, images, index, title, reference=None) -> list[str]:
    """One PNG beside ``out``: up to 4 evenly spaced slices (and the reference below, if any).

    The grey scale runs from 0 (or the 0.1% quantile of a signed image) to
    the 99.9% quantile of the images, so it follows their scale.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = images.shape[0]
    pick = np.unique(np.linspace(0, n - 1, min(4, n)).round().astype(int))
    rows = 2 if reference is not None else 1
    fig = Figure(figsize=(3 * len(pick), 3.2 * rows + 0.4))
    FigureCanvasAgg(fig)
    lo = 0.0 if images.min() >= 0 else float(np.quantile(images, 0.001))
    hi = float(np.quantile(images, 0.999)) or 1.0
    for j, i in enumerate(pick):
        ax = fig.add_subplot(rows, len(pick), j + 1)
        ax.imshow(images[i], cmap="gray", vmin=lo, vmax=hi)
        ax.set_title(f"slice {int(index[i])}", fontsize=9)
        ax.axis("off")
        if reference is not None:
            ax = fig.add_subplot(rows, len(pick), len(pick) + j + 1)
            ax.imshow(reference[i], cmap="gray", vmin=lo, vmax=hi)
            ax.set_title("reference", fontsize=9)
            ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = preview_path(out)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return [str(path)]


def psnr_against(images, reference):
    """PSNR of ``images`` against a file's ``reference`` of the same shape, else None."""
    if reference is None or reference.shape != images.shape:
        return None
    return psnr(images, reference)
