"""Poisson pressure systems from an incompressible smoke simulation.

:class:`SmokeSimulation` is a small, stable MAC-grid smoke solver (the
"stable fluids" recipe) in 2D and 3D, written with torch ops so that it runs
on CPU and CUDA. Each :meth:`SmokeSimulation.step` ends with a pressure
projection whose linear system ``A p = b`` is returned, and
:func:`generate_poisson_systems` streams those systems into an HDF5 file with
:class:`krylearn.datasets.systems.SystemsWriter` -- the training and test data
of DCDM-style learned pressure solvers.

Conventions
-----------
* Arrays are indexed ``[j, i] = [y, x]`` in 2D and ``[k, j, i] = [z, y, x]``
  in 3D. "Up" is ``+y`` (gravity points to ``-y``): axis 0 in 2D, axis 1 in
  3D, i.e. :attr:`SmokeSimulation.up_axis` ``= dim - 2``.
* Cells have size ``h = 1 / max(shape)``; the domain spans
  ``[0, shape[a] * h]`` along axis ``a`` (the unit square/cube for cubic
  grids). Positions (source and obstacle centres, radii) are given in these
  physical units, in array-axis order (``(y, x)`` / ``(z, y, x)``).
* Velocities are staggered: ``velocity[a]`` holds the component along axis
  ``a`` on the faces normal to ``a``; it has ``shape`` with axis ``a``
  extended by one, entry ``k`` along ``a`` being the face between cells
  ``k-1`` and ``k`` (entries 0 and ``shape[a]`` lie on the domain sides).
  Density lives at cell centres. Units: domain lengths and seconds, fluid
  density 1.
* Boundaries: ``"open"`` (default) has solid walls on every side except the
  top (``+y``) side, which is an ``"empty"`` side (air, ``p = 0``);
  ``"closed"`` has solid walls on every side, so the pressure system is
  singular with a constant null space, which :func:`krylearn.solve` projects
  out. Fluid cells cut off from the main fluid region by obstacles are
  turned SOLID, so the fluid is one connected region and a closed system has
  exactly one null vector (constant over the fluid cells).

Pressure system
---------------
With ``D(u)_c = sum_a (u_a[c + 1/2] - u_a[c - 1/2])`` (``h`` times the
divergence of cell ``c``) and ``A = PoissonGrid(shape, flags, boundary)``
(unit spacing: ``A_ii`` = number of non-solid faces, ``A_ij = -1`` per fluid
neighbour),

    b = -(h / dt) * D(u*)          (= -(h^2/dt) div u*;  0 at solid cells)
    A p = b                        (p: the physical pressure, density 1)
    u_a -= (dt / h) * (p[c] - p[c - 1])   on every non-solid face

so that ``D(u) = (dt/h) (A p - b)`` after the update: the projected
divergence equals the solver's residual, relative to ``b``.
"""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.ndimage
import torch
import torch.nn.functional as F

from ..datasets.systems import LinearSystem, SystemsWriter
from ..operators.stencil import FLUID, SOLID, PoissonGrid
from ..solvers.api import PCG_METHODS, solve
from ..solvers.preconditioners import make_preconditioner
from ..solvers.result import SolveResult

__all__ = [
    "SCENES",
    "BOUNDARIES",
    "SmokeSimulation",
    "StepOutput",
    "draw_obstacles",
    "generate_poisson_systems",
]

#: Scenes :class:`SmokeSimulation` knows.
SCENES = ("smoke-plume", "smoke-obstacle")
#: Domain boundary kinds.
BOUNDARIES = ("open", "closed")

#: Default smoke source: ``center`` None = the scene default (horizontally
#: centred with a seeded jitter, at 10% of the height), ``radius`` in domain
#: units (at least 1.5 cells), injected ``density`` and upward ``velocity``.
DEFAULT_SOURCE = {"center": None, "radius": 0.06, "density": 1.0, "velocity": 1.0}
_SOURCE_JITTER = 0.05  # +- horizontal jitter of the default source centre (domain units)


# --------------------------------------------------------------------- output
@dataclass
class StepOutput:
    """One frame's pressure projection.

    Attributes
    ----------
    A : scipy.sparse.csr_matrix, (n, n), float64
        ``PoissonGrid(grid_shape, flags, boundary).to_sparse()``, full-grid
        convention (``n = prod(grid_shape)``, zero rows/columns at solid cells).
    b : numpy.ndarray, (n,), float64
        ``-(h/dt) * D(u*)`` (see the module docstring); 0 at solid cells.
    x : numpy.ndarray, (n,), float64
        The pressure ``krylearn.solve`` returned (0 at solid cells; the
        minimum-norm solution for a closed box).
    flags : numpy.ndarray, uint8, grid_shape
        Cell flags (FLUID=0, SOLID=1); read-only, shared between frames.
    grid_shape : tuple of int
    result : SolveResult
        The pressure solve's result.
    divergence_before, divergence_after : float
        ``max |div u|`` over fluid cells (units 1/s) before and after the
        projection; see :attr:`relative_divergence`.
    frame : int
        Index of this frame (0 for the first step).
    dt : float
        Time step of this frame (seconds).
    scene : str
    """

    A: object
    b: np.ndarray
    x: np.ndarray
    flags: np.ndarray
    grid_shape: tuple
    result: SolveResult
    divergence_before: float
    divergence_after: float
    frame: int
    dt: float
    scene: str = ""
    attrs: dict = field(default_factory=dict)

    @property
    def relative_divergence(self) -> float:
        """``divergence_after / divergence_before`` (0 when nothing was divergent)."""
        if self.divergence_before == 0:
            return 0.0
        return self.divergence_after / self.divergence_before

    def to_system(self) -> LinearSystem:
        """The frame as a :class:`~krylearn.datasets.systems.LinearSystem` (attrs frame, dt, scene)."""
        attrs = {"frame": int(self.frame), "dt": float(self.dt), "scene": self.scene, **self.attrs}
        return LinearSystem(
            self.A, self.b, x=self.x, grid_shape=tuple(self.grid_shape), flags=self.flags, attrs=attrs
        )


# --------------------------------------------------------------------- helpers
def _sample(fld: torch.Tensor, offset, coords: torch.Tensor) -> torch.Tensor:
    """Multilinear interpolation of a grid field.

    Parameters
    ----------
    fld : tensor, shape S (2 or 3 dims)
        ``fld[idx]`` lives at cell-index coordinate ``idx + offset``.
    offset : sequence of float, length dim
    coords : tensor, shape (*P, dim), P with dim dims
        Query points in cell-index coordinates (cell ``c``'s centre is ``c``),
        array-axis order. Points outside the field's samples are clamped.

    Returns
    -------
    tensor, shape P
    """
    dim = fld.ndim
    g = torch.empty_like(coords)
    for a in range(dim):
        k = dim - 1 - a  # grid_sample wants (x, y[, z]): reversed axis order
        size = fld.shape[a]
        scale = 2.0 / (size - 1) if size > 1 else 0.0
        torch.sub(coords[..., a], offset[a], out=g[..., k])
        g[..., k].mul_(scale).sub_(1.0)
    out = F.grid_sample(fld[None, None], g[None], mode="bilinear", padding_mode="border", align_corners=True)
    return out[0, 0]


def _base_coords(shape, offset, dtype, device) -> torch.Tensor:
    """Cell-index coordinates ``idx + offset`` of every sample of a field of ``shape``: (*shape, dim)."""
    axes = [torch.arange(s, dtype=dtype, device=device).add_(o) for s, o in zip(shape, offset)]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)


def _face_shape(shape, a):
    return tuple(s + 1 if i == a else s for i, s in enumerate(shape))


def _real(value, name, *, positive=False, nonneg=False):
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


def _vector(value, dim, name):
    try:
        vals = [float(v) for v in value]
    except TypeError:
        raise TypeError(f"{name} must be a sequence of {dim} numbers, got {value!r}") from None
    if len(vals) != dim or not all(math.isfinite(v) for v in vals):
        raise ValueError(f"{name} must be {dim} finite numbers (array-axis order), got {value!r}")
    return vals


def _check_obstacle(ob, dim, k):
    if not isinstance(ob, dict):
        raise TypeError(f"obstacles[{k}] must be a dict, got {type(ob).__name__}")
    kind = ob.get("kind")
    if kind not in ("sphere", "box"):
        raise ValueError(f"obstacles[{k}]['kind'] must be 'sphere' or 'box', got {kind!r}")
    if "center" not in ob:
        raise ValueError(f"obstacles[{k}] needs a 'center' ({dim} numbers, array-axis order)")
    out = {"kind": kind, "center": _vector(ob["center"], dim, f"obstacles[{k}]['center']")}
    if kind == "sphere":
        if "radius" not in ob:
            raise ValueError(f"obstacles[{k}] (sphere) needs a 'radius'")
        out["radius"] = _real(ob["radius"], f"obstacles[{k}]['radius']", positive=True)
    else:
        if "half_size" not in ob:
            raise ValueError(f"obstacles[{k}] (box) needs a 'half_size' (a number or {dim} numbers)")
        hs = ob["half_size"]
        if isinstance(hs, (numbers.Real, np.number)) and not isinstance(hs, bool):
            hs = [hs] * dim
        hs = _vector(hs, dim, f"obstacles[{k}]['half_size']")
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


# ------------------------------------------------------------------ simulation
class SmokeSimulation:
    """Incompressible smoke on a MAC grid; every step yields a pressure system.

    Each :meth:`step`: choose ``dt`` (CFL), advect velocity and density
    (semi-Lagrangian, RK2 backtrace, multilinear interpolation), inject the
    source (density ``max``-ed up to ``source['density']``, upward face
    velocity set to ``source['velocity']`` inside the source ball), add
    buoyancy ``dt * buoyancy * density`` to the upward velocity, zero the
    velocity on solid faces, and project (see the module docstring).

    Parameters
    ----------
    shape : tuple of int
        ``(ny, nx)`` or ``(nz, ny, nx)``, each size >= 8.
    scene : {"smoke-plume", "smoke-obstacle"}
        ``smoke-obstacle`` draws 1-3 boxes/spheres from ``seed`` unless
        ``obstacles`` is given.
    boundary : {"open", "closed"}
        See the module docstring.
    seed : int
        Seeds the source's horizontal jitter and the obstacle placement.
    dt : float, optional
        Fixed time step; None (default) = adaptive
        ``min(dt_max, cfl * h / max(max|u|, source velocity))``.
    cfl, dt_max : float
        Adaptive-``dt`` policy (cells per step, seconds).
    buoyancy : float
        Upward acceleration per unit density (domain units / s^2).
    source : dict, optional
        Overrides of :data:`DEFAULT_SOURCE` (``center``, ``radius``,
        ``density``, ``velocity``).
    obstacles : list of dict, optional
        ``{"kind": "sphere", "center": [...], "radius": r}`` or
        ``{"kind": "box", "center": [...], "half_size": h or [...]}`` in
        domain units, array-axis order; ``[]`` for none. Default: none for
        ``smoke-plume``, drawn from ``seed`` for ``smoke-obstacle``.
    solver : str
        ``krylearn.solve`` method for the pressure (default ``"pcg-amg"``).
    rtol : float
        Pressure-solve tolerance ``||b - A p|| <= rtol ||b||``.
    reuse_preconditioner : bool
        For the ``pcg-*`` solvers, build the preconditioner once (the matrix
        never changes: obstacles are static) and pass it to every solve as
        ``krylearn.solve(A, b, method="cg", M=M)``; ``result.method`` still
        names ``solver`` and ``result.info["preconditioner_reused"]`` is set.
        Default True; False rebuilds it every frame.
    dtype : torch.dtype
        ``torch.float64`` (default) or ``torch.float32`` for the fields; the
        written system is always float64.
    device : str or torch.device

    Attributes
    ----------
    velocity : list of tensors
        ``velocity[a]``: component along axis ``a`` on the faces normal to
        ``a``, shape ``shape`` with axis ``a`` extended by one.
    density : tensor, shape ``shape``
    flags : tensor, uint8, shape ``shape``
        FLUID (0) or SOLID (1).
    frame : int
        Number of steps taken.
    time : float
        Simulated time (seconds).
    operator : PoissonGrid
    A : scipy.sparse.csr_matrix
        ``operator.to_sparse()`` (constant: the obstacles do not move).
    parameters : dict
        JSON-ready provenance (scene, shape, boundary, dt policy, buoyancy,
        source, obstacles, solver, rtol, seed, sealed cells).

    Examples
    --------
    >>> sim = SmokeSimulation((32, 32), "smoke-obstacle", seed=3)
    >>> out = sim.step()
    >>> out.result.converged, out.relative_divergence < 1e-6
    (True, True)
    """

    def __init__(
        self,
        shape,
        scene: str = "smoke-plume",
        *,
        boundary: str = "open",
        seed: int = 0,
        dt: float | None = None,
        cfl: float = 1.0,
        dt_max: float = 0.1,
        buoyancy: float = 1.0,
        source: dict | None = None,
        obstacles=None,
        solver: str = "pcg-amg",
        rtol: float = 1e-8,
        reuse_preconditioner: bool = True,
        dtype: torch.dtype = torch.float64,
        device="cpu",
    ):
        # ---------------------------------------------------------- checks
        try:
            shape = tuple(shape)
        except TypeError:
            raise TypeError(f"shape must be a tuple of 2 or 3 ints, got {shape!r}") from None
        if len(shape) not in (2, 3) or not all(
            isinstance(s, (numbers.Integral, np.integer)) and not isinstance(s, bool) for s in shape
        ):
            raise ValueError(f"shape must be a tuple of 2 or 3 ints, got {shape!r}")
        shape = tuple(int(s) for s in shape)
        if min(shape) < 8:
            raise ValueError(f"shape sizes must be >= 8, got {shape}")
        if scene not in SCENES:
            raise ValueError(f"scene must be one of {SCENES}, got {scene!r}")
        if boundary not in BOUNDARIES:
            raise ValueError(f"boundary must be one of {BOUNDARIES}, got {boundary!r}")
        if isinstance(seed, bool) or not isinstance(seed, (numbers.Integral, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        if dt is not None:
            dt = _real(dt, "dt", positive=True)
        cfl = _real(cfl, "cfl", positive=True)
        dt_max = _real(dt_max, "dt_max", positive=True)
        buoyancy = _real(buoyancy, "buoyancy")
        if not isinstance(solver, str):
            raise TypeError(f"solver must be a method name (str), got {type(solver).__name__}")
        rtol = _real(rtol, "rtol", positive=True)
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
        if source is None:
            source = {}
        if not isinstance(source, dict):
            raise TypeError(f"source must be a dict, got {type(source).__name__}")
        unknown = set(source) - set(DEFAULT_SOURCE)
        if unknown:
            raise ValueError(f"source has unknown keys {sorted(unknown)}; allowed: {sorted(DEFAULT_SOURCE)}")

        dim = len(shape)
        self.shape = shape
        self.dim = dim
        self.scene = scene
        self.boundary = boundary
        self.seed = int(seed)
        self.up_axis = dim - 2
        self.h = 1.0 / max(shape)
        self.dt_fixed, self.cfl, self.dt_max = dt, cfl, dt_max
        self.buoyancy = buoyancy
        self.solver, self.rtol = solver, rtol
        self.reuse_preconditioner = bool(reuse_preconditioner)
        self._M = None
        self.dtype = dtype
        self.device = torch.device(device)
        self.frame = 0
        self.time = 0.0
        extent = [s * self.h for s in shape]
        rng = np.random.default_rng(self.seed)

        # ---------------------------------------------------------- source
        src = dict(DEFAULT_SOURCE, **source)
        if src["center"] is None:
            jitter = rng.uniform(-_SOURCE_JITTER, _SOURCE_JITTER, size=dim)
            src["center"] = [
                0.1 * extent[a] if a == self.up_axis else 0.5 * extent[a] + float(jitter[a]) for a in range(dim)
            ]
        else:
            rng.uniform(size=dim)  # keep the obstacle draw independent of this choice
        src["center"] = _vector(src["center"], dim, "source['center']")
        src["radius"] = max(_real(src["radius"], "source['radius']", positive=True), 1.5 * self.h)
        src["density"] = _real(src["density"], "source['density']", nonneg=True)
        src["velocity"] = _real(src["velocity"], "source['velocity']")
        self.source = src

        # ------------------------------------------------------- obstacles
        if obstacles is None:
            obstacles = draw_obstacles(rng, extent, self.up_axis, src["center"]) if scene == "smoke-obstacle" else []
        if not isinstance(obstacles, (list, tuple)):
            raise TypeError(f"obstacles must be a list of dicts, got {type(obstacles).__name__}")
        self.obstacles = [_check_obstacle(ob, dim, k) for k, ob in enumerate(obstacles)]

        # ----------------------------------------------------------- flags
        solid = self._rasterize_obstacles()  # numpy bool, shape
        fluid = ~solid
        src_mask = self._ball_mask(src["center"], src["radius"])
        labels, count = scipy.ndimage.label(fluid)
        if count == 0:
            raise ValueError("obstacles cover the whole domain: no fluid cell left")
        keep_ids = np.unique(labels[src_mask & fluid])
        if keep_ids.size:
            sizes = np.bincount(labels.ravel(), minlength=count + 1)
            keep = int(keep_ids[np.argmax(sizes[keep_ids])])
        else:
            sizes = np.bincount(labels.ravel(), minlength=count + 1)
            sizes[0] = 0
            keep = int(np.argmax(sizes))
        sealed = fluid & (labels != keep)
        self.sealed_cells = int(sealed.sum())
        fluid &= labels == keep
        flags_np = np.where(fluid, FLUID, SOLID).astype(np.uint8)
        flags_np.setflags(write=False)
        self._flags_np = flags_np
        self.flags = torch.from_numpy(flags_np.copy()).to(self.device)
        self._fluid = self.flags == FLUID
        self._solid = ~self._fluid

        # --------------------------------------------------------- sides
        sides = []
        for a in range(dim):
            sides += ["solid", "empty" if (boundary == "open" and a == self.up_axis) else "solid"]
        self.sides = tuple(sides)
        self.operator = PoissonGrid(shape, flags_np, boundary=self.sides, dtype=torch.float64)
        self.A = self.operator.to_sparse()

        # fixed (zero-velocity) faces: touching a solid cell or on a solid side
        solid_t = self._solid
        self._fixed = []
        for a in range(dim):
            n = shape[a]
            fx = torch.empty(_face_shape(shape, a), dtype=torch.bool, device=self.device)
            torch.logical_or(solid_t.narrow(a, 0, n - 1), solid_t.narrow(a, 1, n - 1), out=fx.narrow(a, 1, n - 1))
            for side, face, cell in ((0, 0, 0), (1, n, n - 1)):
                if self.sides[2 * a + side] == "solid":
                    fx.narrow(a, face, 1).fill_(True)
                else:
                    fx.narrow(a, face, 1).copy_(solid_t.narrow(a, cell, 1))
            self._fixed.append(fx)

        # source indices (flat): cells and the up-faces bordering them
        src_fluid = torch.from_numpy(src_mask).to(self.device) & self._fluid
        self._src_cells = torch.nonzero(src_fluid.reshape(-1)).flatten()
        up, nu = self.up_axis, shape[self.up_axis]
        src_faces = torch.zeros(_face_shape(shape, up), dtype=torch.bool, device=self.device)
        src_faces.narrow(up, 0, nu).logical_or_(src_fluid)
        src_faces.narrow(up, 1, nu).logical_or_(src_fluid)
        src_faces.logical_and_(~self._fixed[up])
        self._src_faces = torch.nonzero(src_faces.reshape(-1)).flatten()

        # -------------------------------------------------------- fields
        self.velocity = [torch.zeros(_face_shape(shape, a), dtype=dtype, device=self.device) for a in range(dim)]
        self.density = torch.zeros(shape, dtype=dtype, device=self.device)
        self._face_offset = [tuple(-0.5 if b == a else 0.0 for b in range(dim)) for a in range(dim)]
        self._cell_offset = (0.0,) * dim

    # ------------------------------------------------------------ geometry
    def _axis_coords(self):
        """Cell-centre positions per axis, shaped for broadcasting (numpy)."""
        out = []
        for a, s in enumerate(self.shape):
            c = (np.arange(s, dtype=np.float64) + 0.5) * self.h
            out.append(c.reshape([s if b == a else 1 for b in range(self.dim)]))
        return out

    def _ball_mask(self, center, radius):
        r2 = sum((c - c0) ** 2 for c, c0 in zip(self._axis_coords(), center))
        return np.broadcast_to(r2 <= radius * radius, self.shape).copy()

    def _rasterize_obstacles(self):
        solid = np.zeros(self.shape, dtype=bool)
        coords = self._axis_coords()
        for ob in self.obstacles:
            if ob["kind"] == "sphere":
                solid |= self._ball_mask(ob["center"], ob["radius"])
            else:
                inside = np.ones(self.shape, dtype=bool)
                for c, c0, hs in zip(coords, ob["center"], ob["half_size"]):
                    inside &= np.abs(c - c0) <= hs
                solid |= inside
        return solid

    # ------------------------------------------------------------ properties
    @property
    def parameters(self) -> dict:
        """JSON-ready provenance of this simulation."""
        return {
            "scene": self.scene,
            "dim": self.dim,
            "shape": list(self.shape),
            "boundary": self.boundary,
            "sides": list(self.sides),
            "spacing": self.h,
            "dt_policy": (
                {"kind": "fixed", "dt": self.dt_fixed}
                if self.dt_fixed is not None
                else {"kind": "cfl", "cfl": self.cfl, "dt_max": self.dt_max}
            ),
            "buoyancy": self.buoyancy,
            "source": {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in self.source.items()},
            "obstacles": [dict(ob) for ob in self.obstacles],
            "sealed_cells": self.sealed_cells,
            "solver": self.solver,
            "rtol": self.rtol,
            "reuse_preconditioner": self.reuse_preconditioner,
            "seed": self.seed,
            "advection": "semi-Lagrangian RK2, multilinear",
            "rhs": "b = -(h/dt) * sum_a (u_a[c+1/2] - u_a[c-1/2])",
        }

    @property
    def fluid_mask(self) -> torch.Tensor:
        """Bool tensor, shape ``shape``: True at fluid cells."""
        return self._fluid

    def max_speed(self) -> float:
        """``max_a max |velocity[a]|`` (domain units / s)."""
        return max(float(u.abs().max()) for u in self.velocity)

    def divergence(self) -> torch.Tensor:
        """Cell divergence ``div u`` (1/s), shape ``shape``; 0 at solid cells."""
        return self._face_sum().div_(self.h)

    def _face_sum(self) -> torch.Tensor:
        D = torch.zeros(self.shape, dtype=self.dtype, device=self.device)
        for a, u in enumerate(self.velocity):
            D.add_(torch.diff(u, dim=a))
        return D.masked_fill_(self._solid, 0.0)

    # ------------------------------------------------------------------ step
    def _choose_dt(self) -> float:
        if self.dt_fixed is not None:
            return self.dt_fixed
        umax = self.max_speed()
        if not math.isfinite(umax):
            raise FloatingPointError(f"velocity became non-finite at frame {self.frame}")
        umax = max(umax, abs(self.source["velocity"]), 1e-12)
        return min(self.dt_max, self.cfl * self.h / umax)

    def _velocity_at(self, coords: torch.Tensor) -> torch.Tensor:
        return torch.stack(
            [_sample(u, self._face_offset[a], coords) for a, u in enumerate(self.velocity)], dim=-1
        )

    def _backtrace(self, coords: torch.Tensor, dt: float) -> torch.Tensor:
        """RK2 (midpoint) backtrace of ``coords`` (cell-index units), in place."""
        s = dt / self.h
        v = self._velocity_at(coords)
        mid = torch.add(coords, v, alpha=-0.5 * s)
        del v
        v = self._velocity_at(mid)
        del mid
        return coords.add_(v, alpha=-s)

    def _advect(self, dt: float) -> None:
        new_vel = []
        for a, u in enumerate(self.velocity):
            c = self._backtrace(_base_coords(u.shape, self._face_offset[a], self.dtype, self.device), dt)
            new_vel.append(_sample(u, self._face_offset[a], c))
            del c
        c = self._backtrace(_base_coords(self.shape, self._cell_offset, self.dtype, self.device), dt)
        self.density = _sample(self.density, self._cell_offset, c)
        del c
        self.velocity = new_vel

    def _forces(self, dt: float) -> None:
        d = self.density
        d.masked_fill_(self._solid, 0.0)
        flat = d.view(-1)
        flat[self._src_cells] = flat[self._src_cells].clamp_min(self.source["density"])
        up, n = self.up_axis, self.shape[self.up_axis]
        uu = self.velocity[up]
        if self.buoyancy != 0.0:
            # interior up-faces get the average density of their two cells
            uu.narrow(up, 1, n - 1).add_(d.narrow(up, 0, n - 1) + d.narrow(up, 1, n - 1), alpha=0.5 * dt * self.buoyancy)
        uu.view(-1)[self._src_faces] = self.source["velocity"]
        for u, fx in zip(self.velocity, self._fixed):
            u.masked_fill_(fx, 0.0)

    def _solve(self, b: np.ndarray) -> SolveResult:
        if not (self.reuse_preconditioner and self.solver in PCG_METHODS):
            return solve(self.A, b, method=self.solver, rtol=self.rtol)
        built = 0.0
        if self._M is None:
            self._M = make_preconditioner(PCG_METHODS[self.solver], self.A)
            built = float(getattr(self._M, "setup_seconds", 0.0))
        res = solve(self.A, b, method="cg", M=self._M, rtol=self.rtol)
        res.method = self.solver
        res.setup_seconds += built
        res.info["preconditioner_reused"] = built == 0.0
        return res

    def _project(self, dt: float):
        h = self.h
        D = self._face_sum()
        div_before = float(D.abs().max()) / h
        b = (D.to(torch.float64).mul_(-h / dt)).reshape(-1).cpu().numpy()
        del D
        res = self._solve(b)
        x = np.asarray(res.x, dtype=np.float64)
        x[self._flags_np.reshape(-1) != FLUID] = 0.0
        p = torch.from_numpy(x).to(device=self.device, dtype=self.dtype).view(self.shape)
        s = dt / h
        for a, u in enumerate(self.velocity):
            n = self.shape[a]
            fx = self._fixed[a]
            g = torch.diff(p, dim=a).mul_(s).masked_fill_(fx.narrow(a, 1, n - 1), 0.0)
            u.narrow(a, 1, n - 1).sub_(g)
            del g
            # an empty side: the outside pressure is 0
            if self.sides[2 * a] == "empty":
                u.narrow(a, 0, 1).sub_(p.narrow(a, 0, 1).mul(s).masked_fill_(fx.narrow(a, 0, 1), 0.0))
            if self.sides[2 * a + 1] == "empty":
                u.narrow(a, n, 1).add_(p.narrow(a, n - 1, 1).mul(s).masked_fill_(fx.narrow(a, n, 1), 0.0))
        div_after = float(self._face_sum().abs().max()) / h
        return b, x, res, div_before, div_after

    def step(self) -> StepOutput:
        """Advance one frame and return its pressure system.

        Returns
        -------
        StepOutput

        Raises
        ------
        FloatingPointError
            If the velocity became non-finite.
        """
        dt = self._choose_dt()
        self._advect(dt)
        self._forces(dt)
        b, x, res, div_before, div_after = self._project(dt)
        if not bool(np.all(res.converged)):
            warnings.warn(
                f"pressure solve of frame {self.frame} did not converge ({res.reason}, "
                f"{res.iterations} iterations, residual {float(np.max(res.final_residual)):.2e})",
                RuntimeWarning,
                stacklevel=2,
            )
        out = StepOutput(
            A=self.A,
            b=b,
            x=x,
            flags=self._flags_np,
            grid_shape=self.shape,
            result=res,
            divergence_before=div_before,
            divergence_after=div_after,
            frame=self.frame,
            dt=dt,
            scene=self.scene,
        )
        self.frame += 1
        self.time += dt
        return out

    def __repr__(self) -> str:
        return (
            f"<SmokeSimulation scene={self.scene!r} shape={self.shape} boundary={self.boundary!r} "
            f"obstacles={len(self.obstacles)} frame={self.frame} device={self.device}>"
        )


# ------------------------------------------------------------------ generator
def generate_poisson_systems(
    path,
    *,
    scene: str,
    dim: int,
    n: int,
    frames: int,
    seed: int = 0,
    solver: str = "pcg-amg",
    boundary: str = "open",
    rtol: float = 1e-8,
    progress: bool = True,
    warmup: int = 0,
    device="cpu",
    **sim_options,
):
    """Run a smoke simulation and write each frame's pressure system to HDF5.

    Parameters
    ----------
    path : str or os.PathLike
        Output file (written atomically by ``SystemsWriter``).
    scene : {"smoke-plume", "smoke-obstacle"}
    dim : {2, 3}
    n : int
        Grid size per axis (grid ``(n,) * dim``), >= 8.
    frames : int
        Number of systems written (>= 1).
    seed : int
        Source jitter and obstacle placement.
    solver : str
        ``krylearn.solve`` method for the pressure solves.
    boundary : {"open", "closed"}
    rtol : float
        Pressure-solve tolerance.
    progress : bool
        Show a tqdm bar.
    warmup : int
        Frames simulated before the first written one (>= 0).
    device : str or torch.device
    **sim_options
        Passed to :class:`SmokeSimulation` (``dt``, ``cfl``, ``dt_max``,
        ``buoyancy``, ``source``, ``obstacles``, ``dtype``).

    Returns
    -------
    path
        The ``path`` argument.
    """
    from tqdm.auto import tqdm

    if dim not in (2, 3) or isinstance(dim, bool):
        raise ValueError(f"dim must be 2 or 3, got {dim!r}")
    if isinstance(n, bool) or not isinstance(n, (numbers.Integral, np.integer)) or n < 8:
        raise ValueError(f"n must be an int >= 8, got {n!r}")
    if isinstance(frames, bool) or not isinstance(frames, (numbers.Integral, np.integer)) or frames < 1:
        raise ValueError(f"frames must be an int >= 1, got {frames!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, (numbers.Integral, np.integer)) or warmup < 0:
        raise ValueError(f"warmup must be an int >= 0, got {warmup!r}")
    sim = SmokeSimulation(
        (int(n),) * dim, scene, boundary=boundary, seed=seed, solver=solver, rtol=rtol, device=device, **sim_options
    )
    params = dict(sim.parameters, n=int(n), frames=int(frames), warmup=int(warmup))
    total = int(warmup) + int(frames)
    with SystemsWriter(path, generator="krylearn.problems.smoke", parameters=params, seed=int(seed)) as writer:
        for k in tqdm(range(total), disable=not progress, desc=f"{scene} {dim}D n={n}", unit="frame"):
            out = sim.step()
            if k >= warmup:
                writer.append(out.to_system())
    return path
