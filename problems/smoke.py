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
import torch

from ..datasets.systems import LinearSystem, SystemsWriter
from ..operators.stencil import FLUID, PoissonGrid
from ..solvers.api import solve
from ..solvers.solver import Solver, matrix_free
from ..solvers.result import SolveResult
from .smoke_grid import face_shape, fixed_faces, grid_coords, sample_field, source_indices
from .smoke_scene import (
    BOUNDARIES,
    DEFAULT_SOURCE,
    SCENES,
    ball_mask,
    check_obstacle,
    check_source,
    draw_obstacles,
    fluid_flags,
    real_number,
    resolve_source,
)

__all__ = [
    "SCENES",
    "BOUNDARIES",
    "DEFAULT_SOURCE",
    "SmokeSimulation",
    "StepOutput",
    "draw_obstacles",
    "generate_poisson_systems",
]


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


# ------------------------------------------------------------------ simulation
def _check_shape(shape) -> tuple:
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
    return shape


def _check_options(scene, boundary, seed, dt, cfl, dt_max, buoyancy, solver, rtol, dtype) -> dict:
    """The checked scalar options of :class:`SmokeSimulation` (errors name the argument)."""
    if scene not in SCENES:
        raise ValueError(f"scene must be one of {SCENES}, got {scene!r}")
    if boundary not in BOUNDARIES:
        raise ValueError(f"boundary must be one of {BOUNDARIES}, got {boundary!r}")
    if isinstance(seed, bool) or not isinstance(seed, (numbers.Integral, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    out = {"dt": None if dt is None else real_number(dt, "dt", positive=True),
           "cfl": real_number(cfl, "cfl", positive=True),
           "dt_max": real_number(dt_max, "dt_max", positive=True),
           "buoyancy": real_number(buoyancy, "buoyancy")}
    if not isinstance(solver, str):
        raise TypeError(f"solver must be a method name (str), got {type(solver).__name__}")
    out["rtol"] = real_number(rtol, "rtol", positive=True)
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
    return out


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
        Set the pressure solver up once (the matrix never changes: obstacles
        are static) as a :class:`~krylearn.solvers.Solver` and reuse it every
        frame; ``result.info["preconditioner_reused"]`` is set from the second
        frame on.  Default True; False calls ``krylearn.solve`` every frame.
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
        shape = _check_shape(shape)
        opts = _check_options(scene, boundary, seed, dt, cfl, dt_max, buoyancy, solver, rtol, dtype)
        source = check_source(source)
        dim = len(shape)
        self.shape, self.dim, self.scene, self.boundary = shape, dim, scene, boundary
        self.seed = int(seed)
        self.up_axis = dim - 2
        self.h = 1.0 / max(shape)
        self.dt_fixed, self.cfl, self.dt_max = opts["dt"], opts["cfl"], opts["dt_max"]
        self.buoyancy = opts["buoyancy"]
        self.solver, self.rtol = solver, opts["rtol"]
        self.reuse_preconditioner = bool(reuse_preconditioner)
        self._solver = None
        self.dtype = dtype
        self.device = torch.device(device)
        self.frame = 0
        self.time = 0.0
        extent = [s * self.h for s in shape]
        rng = np.random.default_rng(self.seed)
        self.source = resolve_source(source, extent, self.up_axis, self.h, rng)
        if obstacles is None:
            obstacles = draw_obstacles(rng, extent, self.up_axis, self.source["center"]) \
                if scene == "smoke-obstacle" else []
        if not isinstance(obstacles, (list, tuple)):
            raise TypeError(f"obstacles must be a list of dicts, got {type(obstacles).__name__}")
        self.obstacles = [check_obstacle(ob, dim, k) for k, ob in enumerate(obstacles)]
        self._setup_grid()
        self.velocity = [torch.zeros(face_shape(shape, a), dtype=dtype, device=self.device) for a in range(dim)]
        self.density = torch.zeros(shape, dtype=dtype, device=self.device)
        self._face_offset = [tuple(-0.5 if b == a else 0.0 for b in range(dim)) for a in range(dim)]
        self._cell_offset = (0.0,) * dim

    def _setup_grid(self) -> None:
        """Cell flags, the pressure operator, the fixed faces and the source's cells and faces."""
        src_mask = ball_mask(self.shape, self.h, self.source["center"], self.source["radius"])
        self._flags_np, self.sealed_cells = fluid_flags(self.shape, self.h, self.obstacles, src_mask)
        self.flags = torch.from_numpy(self._flags_np.copy()).to(self.device)
        self._fluid = self.flags == FLUID
        self._solid = ~self._fluid
        sides = []
        for a in range(self.dim):
            sides += ["solid", "empty" if (self.boundary == "open" and a == self.up_axis) else "solid"]
        self.sides = tuple(sides)
        self.operator = PoissonGrid(self.shape, self._flags_np, boundary=self.sides, dtype=torch.float64)
        self.A = self.operator.to_sparse()
        self._fixed = fixed_faces(self._solid, self.sides)
        src_fluid = torch.from_numpy(src_mask).to(self.device) & self._fluid
        self._src_cells, self._src_faces = source_indices(src_fluid, self._fixed[self.up_axis], self.up_axis)

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
            [sample_field(u, self._face_offset[a], coords) for a, u in enumerate(self.velocity)], dim=-1
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
            c = self._backtrace(grid_coords(u.shape, self._face_offset[a], self.dtype, self.device), dt)
            new_vel.append(sample_field(u, self._face_offset[a], c))
            del c
        c = self._backtrace(grid_coords(self.shape, self._cell_offset, self.dtype, self.device), dt)
        self.density = sample_field(self.density, self._cell_offset, c)
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
        A = self.operator if matrix_free(self.solver) else self.A  # mgpcg works on the grid itself
        if not self.reuse_preconditioner:
            return solve(A, b, method=self.solver, rtol=self.rtol)
        reused = self._solver is not None
        if not reused:
            self._solver = Solver(A, self.solver, rtol=self.rtol)
        res = self._solver.solve(b)
        res.info["preconditioner_reused"] = reused
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
