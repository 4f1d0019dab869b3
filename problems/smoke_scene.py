"""The scene of a smoke simulation: argument checks, the source, obstacles and the fluid cells.

Positions are in domain units, array-axis order (see :mod:`krylearn.problems.smoke`).
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import scipy.ndimage

from ..operators.stencil import FLUID, SOLID

__all__ = [
    "BOUNDARIES",
    "DEFAULT_SOURCE",
    "SCENES",
    "axis_coords",
    "ball_mask",
    "check_obstacle",
    "draw_obstacles",
    "fluid_flags",
    "real_number",
    "resolve_source",
    "vector",
]

#: Scenes :class:`~krylearn.problems.smoke.SmokeSimulation` knows.
SCENES = ("smoke-plume", "smoke-obstacle")
#: Domain boundary kinds.
BOUNDARIES = ("open", "closed")

#: Default smoke source: ``center`` None = the scene default (horizontally
#: centred with a seeded jitter, at 10% of the height), ``radius`` in domain
#: units (at least 1.5 cells), injected ``density`` and upward ``velocity``.
DEFAULT_SOURCE = {"center": None, "radius": 0.06, "density": 1.0, "velocity": 1.0}
_SOURCE_JITTER = 0.05  # +- horizontal jitter of the default source centre (domain units)


def real_number(value, name, *, positive=False, nonneg=False):
    """``value`` as a finite float (``> 0`` / ``>= 0`` when asked); errors name ``name``."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.number)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if positive and v <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    if nonneg and v < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return v


def vector(value, dim, name):
    """``value`` as a list of ``dim`` finite floats; errors name ``name``."""
    try:
        vals = [float(v) for v in value]
    except TypeError:
        raise TypeError(f"{name} must be a sequence of {dim} numbers, got {value!r}") from None
    if len(vals) != dim or not all(math.isfinite(v) for v in vals):
        raise ValueError(f"{name} must be {dim} finite numbers (array-axis order), got {value!r}")
    return vals


def check_obstacle(ob, dim, k):
    """Obstacle ``k`` (a dict) checked and normalised: ``kind``, ``center`` and ``radius`` or ``half_size``."""
    if not isinstance(ob, dict):
        raise TypeError(f"obstacles[{k}] must be a dict, got {type(ob).__name__}")
    kind = ob.get("kind")
    if kind not in ("sphere", "box"):
        raise ValueError(f"obstacles[{k}]['kind'] must be 'sphere' or 'box', got {kind!r}")
    if "center" not in ob:
        raise ValueError(f"obstacles[{k}] needs a 'center' ({dim} numbers, array-axis order)")
    out = {"kind": kind, "center": vector(ob["center"], dim, f"obstacles[{k}]['center']")}
    if kind == "sphere":
        if "radius" not in ob:
            raise ValueError(f"obstacles[{k}] (sphere) needs a 'radius'")
        out["radius"] = real_number(ob["radius"], f"obstacles[{k}]['radius']", positive=True)
    else:
        if "half_size" not in ob:
            raise ValueError(f"obstacles[{k}] (box) needs a 'half_size' (a number or {dim} numbers)")
        hs = ob["half_size"]
        if isinstance(hs, (numbers.Real, np.number)) and not isinstance(hs, bool):
            hs = [hs] * dim
        hs = vector(hs, dim, f"obstacles[{k}]['half_size']")
        if any(v <= 0 for v in hs):
            raise ValueError(f"obstacles[{k}]['half_size'] must be > 0, got {hs}")
        out["half_size"] = hs
    extra = set(ob) - {"kind", "center", "radius", "half_size"}
    if extra:
        raise ValueError(f"obstacles[{k}] has unknown keys {sorted(extra)}")
    return out


def draw_obstacles(rng: np.random.Generator, extent, up_axis: int, source_center, max_count: int = 3):
    """Draw 1..``max_count`` non-overlapping boxes/spheres above the source.

    The first obstacle sits within +-0.1 (horizontally) of the source so the
    plume hits it; the others anywhere between 35% and 75% of the height,
    keeping 0.06 from the walls and 0.05 from each other.

    Parameters
    ----------
    rng : numpy.random.Generator
    extent : sequence of float
        Domain size per axis (array-axis order).
    up_axis : int
    source_center : sequence of float

    Returns
    -------
    list of dict
        ``{"kind": "sphere", "center": [...], "radius": r}`` or
        ``{"kind": "box", "center": [...], "half_size": [...]}``.
    """
    dim = len(extent)
    count = int(rng.integers(1, max_count + 1))
    out, bounds = [], []
    for k in range(count):
        for _ in range(100):
            if rng.integers(2) == 0:
                radius = float(rng.uniform(0.07, 0.13))
                shape_spec = {"radius": radius}
                half, bound = [radius] * dim, radius
            else:
                half = [float(v) for v in rng.uniform(0.05, 0.12, size=dim)]
                shape_spec = {"half_size": half}
                bound = float(np.linalg.norm(half))
            center = []
            for a in range(dim):
                lo, hi = half[a] + 0.06, extent[a] - half[a] - 0.06
                if a == up_axis:
                    c = rng.uniform(0.35, 0.75) * extent[a]
                elif k == 0:
                    c = source_center[a] + rng.uniform(-0.1, 0.1)
                else:
                    c = rng.uniform(0.15, 0.85) * extent[a]
                center.append(float(min(max(c, lo), hi)))
            if all(math.dist(center, o["center"]) > bound + bo + 0.05 for o, bo in zip(out, bounds)):
                kind = "sphere" if "radius" in shape_spec else "box"
                out.append({"kind": kind, "center": center, **shape_spec})
                bounds.append(bound)
                break
    return out


def check_source(source) -> dict:
    """The ``source`` overrides (a dict with keys of :data:`DEFAULT_SOURCE`), or ``{}`` for None."""
    if source is None:
        return {}
    if not isinstance(source, dict):
        raise TypeError(f"source must be a dict, got {type(source).__name__}")
    unknown = set(source) - set(DEFAULT_SOURCE)
    if unknown:
        raise ValueError(f"source has unknown keys {sorted(unknown)}; allowed: {sorted(DEFAULT_SOURCE)}")
    return source


def resolve_source(source: dict, extent, up_axis: int, h: float, rng: np.random.Generator) -> dict:
    """:data:`DEFAULT_SOURCE` with ``source``'s overrides, checked; the default centre is jittered with ``rng``.

    One draw of ``rng`` happens either way, so the obstacles drawn next do not
    depend on whether the centre was given.
    """
    dim = len(extent)
    src = dict(DEFAULT_SOURCE, **source)
    if src["center"] is None:
        jitter = rng.uniform(-_SOURCE_JITTER, _SOURCE_JITTER, size=dim)
        src["center"] = [0.1 * extent[a] if a == up_axis else 0.5 * extent[a] + float(jitter[a]) for a in range(dim)]
    else:
        rng.uniform(size=dim)
    src["center"] = vector(src["center"], dim, "source['center']")
    src["radius"] = max(real_number(src["radius"], "source['radius']", positive=True), 1.5 * h)
    src["density"] = real_number(src["density"], "source['density']", nonneg=True)
    src["velocity"] = real_number(src["velocity"], "source['velocity']")
    return src


def axis_coords(shape, h: float) -> list[np.ndarray]:
    """Cell-centre positions per axis, shaped for broadcasting against ``shape``."""
    out = []
    for a, s in enumerate(shape):
        c = (np.arange(s, dtype=np.float64) + 0.5) * h
        out.append(c.reshape([s if b == a else 1 for b in range(len(shape))]))
    return out


def ball_mask(shape, h: float, center, radius: float) -> np.ndarray:
    """Bool array ``shape``: cells whose centre lies within ``radius`` of ``center``."""
    r2 = sum((c - c0) ** 2 for c, c0 in zip(axis_coords(shape, h), center))
    return np.broadcast_to(r2 <= radius * radius, shape).copy()


def _rasterize(shape, h: float, obstacles) -> np.ndarray:
    solid = np.zeros(shape, dtype=bool)
    coords = axis_coords(shape, h)
    for ob in obstacles:
        if ob["kind"] == "sphere":
            solid |= ball_mask(shape, h, ob["center"], ob["radius"])
        else:
            inside = np.ones(shape, dtype=bool)
            for c, c0, hs in zip(coords, ob["center"], ob["half_size"]):
                inside &= np.abs(c - c0) <= hs
            solid |= inside
    return solid


def fluid_flags(shape, h: float, obstacles, src_mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Cell flags (read-only uint8, FLUID/SOLID) and the number of fluid cells sealed off.

    Cells inside obstacles are SOLID; of the fluid regions left, the one the
    source touches (the largest such, or the largest overall when the source
    touches none) stays FLUID and every other fluid cell becomes SOLID, so the
    fluid is one connected region.
    """
    fluid = ~_rasterize(shape, h, obstacles)
    labels, count = scipy.ndimage.label(fluid)
    if count == 0:
        raise ValueError("obstacles cover the whole domain: no fluid cell left")
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    keep_ids = np.unique(labels[src_mask & fluid])
    if keep_ids.size:
        keep = int(keep_ids[np.argmax(sizes[keep_ids])])
    else:
        sizes[0] = 0
        keep = int(np.argmax(sizes))
    sealed = fluid & (labels != keep)
    fluid &= labels == keep
    flags = np.where(fluid, FLUID, SOLID).astype(np.uint8)
    flags.setflags(write=False)
    return flags, int(sealed.sum())
