"""Geometric multigrid on cell grids: the V-cycle that preconditions CG in ``method="mgpcg"``.

The fine level is the pressure Laplacian itself, a 5-point (2D) or 7-point
(3D) stencil on the cell grid: a :class:`~krylearn.operators.PoissonGrid`, or
a stored matrix with ``grid_shape`` whose entries are such a stencil.  In
the spirit of McAdams, Sifakis and Teran (2010), the hierarchy is
matrix-free and its setup is a few array sums:

* **coarsening**: each coarse cell aggregates ``2^d`` fine cells; its face
  weights are the sums of the fine faces across the coarse face and its
  diagonal the aggregate's row sum, both scaled by ``1 / 2^(d+1)``, which
  is the stencil re-discretised at twice the spacing.  Because the diagonal
  carries the faces to air, Dirichlet (air) and Neumann (walls) conditions,
  obstacles, and any face coefficients coarsen without flags: a coarse cell
  is an unknown wherever one of its children is;
* **transfers**: cell-centred (bi/tri)linear prolongation ``P`` (weights
  ``3/4, 1/4`` per axis) from the coarse unknowns only, renormalised so the
  weights reaching a fine cell sum to one (a constant is interpolated
  exactly next to walls and obstacles, where plain interpolation would pull
  it towards zero), and restriction ``R = P^T / 2^d``; separable strided
  convolutions;
* **smoothing**: ``sweeps`` damped-Jacobi sweeps (``smoother="jacobi"``)
  or red-black Gauss-Seidel sweeps (``"rbgs"``: red then black before the
  coarse correction, black then red after it) on each side of the coarse
  correction, with the same ``omega``, so the V-cycle is a symmetric
  positive definite operator (a valid CG preconditioner); the coarsest
  level (at most ``coarse_size`` unknowns) is solved exactly with a
  precomputed pseudo-inverse, which also handles pure-Neumann regions.

Everything is torch on the device of the operator; on the CPU the cycle
runs the compiled kernels of :mod:`._mg_kernels` (sweep, residual,
restriction, interpolation), serial builds on small levels and on one thread;
a red-black sweep there is one pass over memory for both colours.
"""

from __future__ import annotations

import math
import numbers
import time

import numba
import numpy as np
import torch
import torch.nn.functional as F

from ..operators.stencil import FLUID, PoissonGrid
from . import _mg_kernels as K
from .preconditioners import Preconditioner

__all__ = ["MultigridPreconditioner", "grid_stencil", "coarsen"]


# ------------------------------------------------------------------ stencils
def _check_grid(grid_shape, n: int) -> tuple:
    if isinstance(grid_shape, (str, bytes)) or not hasattr(grid_shape, "__len__"):
        raise TypeError(f"grid_shape must be a tuple of ints, got {grid_shape!r}")
    if not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 1 for s in grid_shape):
        raise ValueError(f"grid_shape must hold positive whole numbers of cells, got {tuple(grid_shape)!r}")
    grid = tuple(int(s) for s in grid_shape)
    if len(grid) not in (2, 3):
        raise ValueError(f"grid_shape must be (ny, nx) or (nz, ny, nx), got {grid}")
    if math.prod(grid) != n:
        raise ValueError(f"grid_shape {grid} has {math.prod(grid)} cells but A has {n} rows")
    return grid


def grid_stencil(op, csr, grid_shape=None, method: str = "mgpcg") -> tuple[np.ndarray, list]:
    """``(diag, face_weights)`` of the grid Laplacian behind ``op`` (see :meth:`PoissonGrid.from_weights`).

    A :class:`PoissonGrid` gives its own arrays; a stored matrix (``csr``)
    needs ``grid_shape`` and must be a symmetric 5-/7-point stencil on it
    (``ValueError`` otherwise, naming ``method``: the solver that needs it).
    """
    inner = getattr(op, "op", op)
    if isinstance(inner, PoissonGrid):
        if grid_shape is not None and tuple(grid_shape) != inner.grid_shape:
            raise ValueError(f"grid_shape {tuple(grid_shape)} does not match the PoissonGrid's {inner.grid_shape}")
        d, w = inner.weights()
        return d, list(w)
    if csr is None:
        raise TypeError(f"{method} needs a PoissonGrid or a stored matrix with grid_shape=(ny, nx) or (nz, ny, nx)")
    if grid_shape is None:
        raise ValueError(f"grid_shape is required for {method} on a matrix: pass grid_shape=(ny, nx) or (nz, ny, nx) "
                         "(rows are the grid cells in C order)")
    grid = _check_grid(grid_shape, csr.shape[0])
    g3 = grid if len(grid) == 3 else (1,) + grid
    d = np.zeros(g3)
    up = [np.zeros(_face_shape(g3, a)) for a in range(3)]
    lo = [np.zeros(_face_shape(g3, a)) for a in range(3)]
    data = np.ascontiguousarray(np.asarray(csr.data).real, dtype=np.float64)
    stray = K.csr_stencil(csr.indptr.astype(np.int64, copy=False), csr.indices.astype(np.int64, copy=False), data,
                          *g3, d, *up, *lo)
    if stray:
        raise ValueError(f"A is not a 5-/7-point stencil on the grid {grid}: {stray} of its entries "
                         f"couple cells that are not face neighbours ({method} needs a grid Laplacian)")
    scale = np.abs(data).max(initial=0.0)
    if any(np.abs(u - m).max(initial=0.0) > 1e-12 * scale for u, m in zip(up, lo)):
        raise ValueError(f"A is not symmetric: {method} needs a symmetric grid Laplacian")
    w = [0.5 * (u + m) for u, m in zip(up, lo)]
    if len(grid) == 2:
        return d[0], [w[1][0], w[2][0]]
    return d, w


def _face_shape(grid, a):
    return tuple(s + 1 if i == a else s for i, s in enumerate(grid))


def _check_laplacian(d: np.ndarray, w: list, method: str = "mgpcg") -> None:
    """``ValueError`` unless ``A`` is a weighted graph Laplacian plus a non-negative diagonal (an M-matrix)."""
    if not (np.isfinite(d).all() and all(np.isfinite(wa).all() for wa in w)):
        raise ValueError("A has non-finite entries")
    if any((wa < 0).any() for wa in w):
        raise ValueError(f"A has positive off-diagonal entries: {method} needs a grid Laplacian (A_ij <= 0 for i != j)")
    offsum = np.zeros_like(d)
    for a, wa in enumerate(w):
        n = d.shape[a]
        lead = (slice(None),) * a
        offsum += wa[lead + (slice(0, n),)]  # views: the faces below and above each cell along a
        offsum += wa[lead + (slice(1, n + 1),)]
    short = d < offsum * (1 - 1e-12)
    if short.any():
        raise ValueError(f"A is not diagonally dominant in {int(short.sum())} row(s): {method} needs a grid Laplacian "
                         "(A_ii >= sum_j |A_ij|; Dirichlet faces add to the diagonal)")


def coarsen(d: np.ndarray, w: list) -> tuple[np.ndarray, list]:
    """The stencil of the next coarser level (see the module docstring): one compiled pass."""
    f64 = [np.ascontiguousarray(a, dtype=np.float64) for a in (d, *w)]
    out = K.coarsen2d(*f64) if d.ndim == 2 else K.coarsen3d(*f64)
    return out[0], list(out[1:])


# ------------------------------------------------------------------ V-cycle
def _exact_in_float32(a: np.ndarray) -> bool:
    return bool(np.array_equal(a.astype(np.float32).astype(np.float64), a))


class _Level:
    """One level: its stencil as an operator (torch path) and as 3D-form arrays (compiled path)."""

    def __init__(self, d: np.ndarray, w: list, dtype, device):
        self._op = None if device.type == "cpu" else PoissonGrid.from_weights(d, w, dtype=dtype, device=device)
        self.d, self.w = d, w
        self.shape = d.shape
        self.sweep_w = self.scale = None  # learned smoother weights / coarse-correction scales
        self.dtype, self.device = dtype, device
        self.mask = torch.from_numpy(d > 0).to(device=device, dtype=dtype)
        self.unknowns = int((d > 0).sum())
        self.d_size = d.size
        # the compiled smoother is memory-bound: float32 stencil arrays where that loses nothing
        self.narrow = all(_exact_in_float32(a) for a in (d, *w))
        self.wd = self.omega_inv = None  # the smoother weights omega / diag: set_omega
        if device.type == "cpu":
            npt = np.float32 if dtype == torch.float32 else np.float64
            self.stencil = tuple(np.ascontiguousarray(a, dtype=np.float32 if self.narrow else npt) for a in (d, *w))
            self.shape3 = d.shape if d.ndim == 3 else (d.shape[0], 1, d.shape[1])
            self.mask3 = self.mask.cpu().numpy().reshape(self.shape3)
            self.pick_kernels(serial=False)

    def set_omega(self, omega: float) -> None:
        """Damped-Jacobi weights ``omega / diag`` (0 off the unknowns), the same values on both code paths.

        Rounded to float32 with a float32 stencil: the sweep reads them every
        pass, and any positive weights keep the cycle symmetric.
        """
        d = self.d
        wd = np.where(d > 0, omega / np.where(d > 0, d, 1.0), 0.0)
        if self.narrow:
            wd = wd.astype(np.float32)
        self.wd = torch.from_numpy(wd.astype(np.float64)).to(device=self.device, dtype=self.dtype)
        if self.device.type == "cpu":
            self.omega_inv = np.ascontiguousarray(wd if self.narrow else wd.astype(self.stencil[0].dtype))

    def pick_kernels(self, serial: bool) -> None:
        """The compiled builds: serial ones on small levels, or everywhere when ``serial`` (one thread)."""
        serial = serial or self.d_size < K.SERIAL_BELOW
        self.kernels = {name: builds[serial] for name, builds in K.KERNELS.items()}
        self.stencil_pass = self.kernels["pass3d" if len(self.shape) == 3 else "pass2d"]
        self.rb_sweep = self.kernels["rbgs3d" if len(self.shape) == 3 else "rbgs2d"]
        self.chunks = 1 if serial else numba.get_num_threads()

    def colours(self) -> list:
        """The red and black cell masks (torch path): colour ``(sum of the indices) % 2``."""
        if getattr(self, "_colours", None) is None:
            parity = torch.from_numpy(np.indices(self.shape).sum(axis=0) % 2).to(self.device)
            self._colours = [(parity == c).to(self.dtype) * self.mask for c in (0, 1)]
        return self._colours

    @property
    def op(self) -> PoissonGrid:
        """The level as an operator (torch path); built on first use on the CPU, from the exact stencil copies."""
        if self._op is None:
            self._op = PoissonGrid.from_weights(self.stencil[0], self.stencil[1:], dtype=self.dtype,
                                                device=self.device)
        return self._op

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        B = x.shape[0]
        return self.op._apply(x.reshape(B, -1)).reshape(x.shape)


class MultigridPreconditioner(Preconditioner):
    """One geometric-multigrid V-cycle from zero, ``z = M^-1 r``, on the grid of ``A``.

    Parameters
    ----------
    A : PoissonGrid, or a stored 5-/7-point grid Laplacian (with ``grid_shape``)
    grid_shape : tuple of int, optional
        Required for a stored matrix (cells in C order).
    smoother : {"jacobi", "rbgs"}
        Damped Jacobi (default) or red-black Gauss-Seidel.
    omega : float
        Relaxation weight: in (0, 1] for Jacobi (default 2/3 in 2D, 6/7 in
        3D: the classical smoothing optima of the 5- and 7-point stencils),
        in (0, 2) for red-black Gauss-Seidel (default 1).
    sweeps : int, optional
        Sweeps before and after each coarse correction.  Default: 3 for
        Jacobi in 2D, 2 otherwise (what measured fastest per smoke frame:
        in 3D a third sweep paid with fresh solves but not with a
        warm-started ``Solver``).
    coarse_size : int
        Coarsen until a level has at most this many unknowns (default 128);
        that level is solved exactly (a dense pseudo-inverse: larger values
        cost setup and time per cycle, and saved at most one iteration in
        our measurements).
    csr : scipy.sparse.csr_matrix, optional
        ``A``'s canonical CSR form when the caller already has it.
    stencil : tuple, optional
        ``(diag, face_weights)`` from :func:`grid_stencil`, when already extracted.
    method : str
        The solver named in error messages about ``A`` (default ``"mgpcg"``).
    learned : object, optional
        Learned cycle parameters (:class:`~krylearn.solvers.dcdm.multigrid_model.DCDMMultigrid`):
        its ``sweeps``, ``smoother`` if any (else Jacobi) and ``level_arrays(level, fine, coarse)``, which gives
        per-cell smoother weights ``W_s`` (one array per sweep, the sweep
        ``x += W_s (b - A x)``) and per-coarse-cell scales ``s`` (the coarse
        correction becomes ``P S M_c S R``).  Pre-sweeps run ``W_0 .. W_{S-1}``
        and post-sweeps the reverse, so the cycle stays symmetric.

    Attributes
    ----------
    levels : int
    info : dict
        ``levels``, ``unknowns`` per level, ``smoother``, ``omega``, ``sweeps``.
    """

    name = "mg"

    def __init__(self, A, *, grid_shape=None, flags=None, smoother: str = "jacobi", omega=None, sweeps=None,
                 coarse_size: int = 128, csr=None, precision=None, stencil=None, learned=None, method: str = "mgpcg"):
        t0 = time.perf_counter()
        op = A
        dtype = op.dtype if op.dtype in (torch.float32, torch.float64) else torch.float64
        if precision not in (None, "single", "double"):
            raise ValueError(f"precision must be 'single', 'double' or None (A's), got {precision!r}")
        if precision is not None:
            dtype = torch.float32 if precision == "single" else torch.float64
        super().__init__(op.shape[0], dtype, op.device)
        if sweeps is not None and (not isinstance(sweeps, numbers.Integral) or isinstance(sweeps, bool) or sweeps < 1):
            raise ValueError(f"sweeps must be an integer >= 1, got {sweeps!r}")
        if not isinstance(coarse_size, numbers.Integral) or isinstance(coarse_size, bool) or coarse_size < 1:
            raise ValueError(f"coarse_size must be an integer >= 1, got {coarse_size!r}")
        d, w = stencil if stencil is not None else grid_stencil(op, csr, grid_shape, method)
        _check_laplacian(d, w, method)
        if flags is not None:
            f = np.asarray(flags.cpu() if isinstance(flags, torch.Tensor) else flags)
            if f.shape != d.shape and f.size != d.size:
                raise ValueError(f"flags has shape {f.shape}; expected the grid {d.shape}")
            if not np.array_equal(f.reshape(d.shape) == FLUID, d > 0):
                raise ValueError("flags do not match A: FLUID cells must be exactly the rows with a nonzero diagonal")
        self.dim = d.ndim
        if learned is not None:
            smoother = getattr(learned, "smoother", "jacobi")
        if smoother not in ("jacobi", "rbgs"):
            raise ValueError(f"smoother must be 'jacobi' or 'rbgs', got {smoother!r}")
        self.smoother = smoother
        if omega is None:
            omega = 1.0 if smoother == "rbgs" else 2.0 / 3.0 if self.dim == 2 else 6.0 / 7.0
        real = isinstance(omega, numbers.Real) and not isinstance(omega, bool)
        if not (real and (0 < omega < 2 if smoother == "rbgs" else 0 < omega <= 1)):
            span = "(0, 2)" if smoother == "rbgs" else "(0, 1]"
            raise ValueError(f"omega must be a number in {span} for smoother={smoother!r}, got {omega!r}")
        if sweeps is None:
            sweeps = 3 if smoother == "jacobi" and self.dim == 2 else 2
        self.omega, self.sweeps = float(omega), int(sweeps)
        self._levels = [_Level(d, w, dtype, self.device)]
        while self._levels[-1].unknowns > coarse_size and max(self._levels[-1].shape) > 2:
            d, w = coarsen(d, w)
            self._levels.append(_Level(d, w, dtype, self.device))
        self._setup_coarse()
        for lv in self._levels:
            lv.set_omega(self.omega)
        self.learned = learned is not None
        if learned is not None:
            self.sweeps = int(learned.sweeps)
            for i, (fine, coarse) in enumerate(zip(self._levels, self._levels[1:])):
                sw, sc = learned.level_arrays(i, fine, coarse)
                # float32 values (half the traffic of the compiled sweep), the same on both code paths
                fine.sweep_np = [np.asarray(a, dtype=np.float32) for a in sw]
                fine.scale_np = np.asarray(sc, dtype=np.float32)
                fine.sweep_w = [torch.from_numpy(a).to(device=self.device, dtype=dtype) for a in fine.sweep_np]
                fine.scale = torch.from_numpy(fine.scale_np).to(device=self.device, dtype=dtype)
        k = torch.tensor([1.0, 3.0, 3.0, 1.0], dtype=dtype, device=self.device) / 4.0
        kernel = k[:, None] * k[None, :] if self.dim == 2 else k[:, None, None] * k[None, :, None] * k[None, None, :]
        self._kernel = kernel[None, None]
        self._norm = [self._weights_sum(f, c) for f, c in zip(self._levels, self._levels[1:])]
        self._use_numba = self.device.type == "cpu"
        if self._use_numba:
            self._norm3 = [nm.cpu().numpy().reshape(f.shape3) for nm, f in zip(self._norm, self._levels)]
            self._normg = [nm.reshape(f.shape) for nm, f in zip(self._norm3, self._levels)]
            self._cinv_np = self._cinv.cpu().numpy()
            self._cidx_np = self._cidx.cpu().numpy()
            self._work = {}
            self._serial = False
            for fine, coarse in zip(self._levels, self._levels[1:]):
                if fine.sweep_w is not None:
                    fine.sweep_np = [a.reshape(fine.shape3) for a in fine.sweep_np]
                    fine.scale_np = fine.scale_np.reshape(coarse.shape3)
                    fine.restrict_mask = fine.scale_np * coarse.mask3
        for lv in self._levels:
            lv.d = lv.w = None  # float64 copies: only the setup of a learned cycle reads them
        self.levels = len(self._levels)
        self.info.update(levels=self.levels, unknowns=[lv.unknowns for lv in self._levels], smoother=self.smoother,
                         omega=self.omega, sweeps=self.sweeps, learned=self.learned)
        self.setup_seconds = time.perf_counter() - t0

    def _setup_coarse(self) -> None:
        """The pseudo-inverse of the coarsest level on its unknowns."""
        lv = self._levels[-1]
        A = lv.op.to_sparse().toarray()
        self._cidx = torch.from_numpy(np.flatnonzero(np.diag(A) > 0)).to(self.device)
        sub = A[np.ix_(self._cidx.cpu().numpy(), self._cidx.cpu().numpy())]
        self._cinv = torch.from_numpy(np.linalg.pinv(sub, hermitian=True)).to(device=self.device, dtype=self.dtype)

    # ----------------------------------------------------------- transfers
    def _conv(self, x, transpose: bool):
        x = x.unsqueeze(1)
        if self.dim == 2:
            y = (F.conv_transpose2d if transpose else F.conv2d)(x, self._kernel, stride=2, padding=1)
        else:
            y = (F.conv_transpose3d if transpose else F.conv3d)(x, self._kernel, stride=2, padding=1)
        return y.squeeze(1)

    def _weights_sum(self, fine: _Level, coarse: _Level) -> torch.Tensor:
        """``P 1_c`` on the fine grid: the interpolation weight that reaches each fine cell from unknowns."""
        if self.device.type == "cpu":  # the compiled interpolation; torch's transposed convolution is slower
            y = np.zeros((1,) + fine.shape3)
            K.KERNELS["prolong_add"][0](coarse.mask3[None].astype(np.float64), np.ones(fine.shape3), True,
                                        self.dim == 3, y)
            y = torch.from_numpy(y.reshape(fine.shape)).to(self.dtype) * fine.mask
        else:
            y = self._conv(coarse.mask.unsqueeze(0), transpose=True)[0]
            y = y[tuple(slice(0, s) for s in fine.shape)] * fine.mask
        return torch.where(y > 0, 1.0 / torch.where(y > 0, y, torch.ones_like(y)), torch.zeros_like(y))

    def _restrict(self, r: torch.Tensor, level: int) -> torch.Tensor:
        r = r * self._norm[level]
        pad = []
        for s in reversed(r.shape[1:]):
            pad += [0, s % 2]
        rc = self._conv(F.pad(r, pad), transpose=False) / 2 ** self.dim
        return rc * self._levels[level + 1].mask

    def _prolong(self, e: torch.Tensor, level: int) -> torch.Tensor:
        fine = self._levels[level]
        y = self._conv(e * self._levels[level + 1].mask, transpose=True)
        y = y[(slice(None),) + tuple(slice(0, s) for s in fine.shape)]
        return y * self._norm[level]

    # -------------------------------------------------------------- cycle
    def _presmooth(self, lv: _Level, b, W: list):
        """The sweeps before the coarse correction, from zero, with weights ``W[0] .. W[-1]``."""
        if self.smoother == "rbgs":
            red, black = lv.colours()
            x = torch.zeros_like(b)
            for w in W:
                x = x + red * w * (b - lv.apply(x))
                x = x + black * w * (b - lv.apply(x))
            return x
        x = W[0] * b
        for w in W[1:]:
            x = x + w * (b - lv.apply(x))
        return x

    def _postsmooth(self, lv: _Level, x, b, W: list):
        """The sweeps after the coarse correction: :meth:`_presmooth`'s in the reverse order (a symmetric cycle)."""
        colours = tuple(reversed(lv.colours())) if self.smoother == "rbgs" else (None,)
        for w in reversed(W):
            for m in colours:
                x = x + (w if m is None else m * w) * (b - lv.apply(x))
        return x

    def _cycle(self, level: int, b: torch.Tensor) -> torch.Tensor:
        if level == len(self._levels) - 1:
            B = b.shape[0]
            x = torch.zeros_like(b).reshape(B, -1)
            x[:, self._cidx] = b.reshape(B, -1)[:, self._cidx] @ self._cinv.T
            return x.reshape(b.shape)
        lv = self._levels[level]
        W = lv.sweep_w if lv.sweep_w is not None else [lv.wd] * self.sweeps
        x = self._presmooth(lv, b, W)
        rc = self._restrict(b - lv.apply(x), level)
        e = self._cycle(level + 1, rc if lv.scale is None else lv.scale * rc)
        x = x + self._prolong(e if lv.scale is None else lv.scale * e, level)
        return self._postsmooth(lv, x, b, W)

    # ----------------------------------------------- compiled CPU cycle
    def _buffers(self, level: int, B: int, dtype) -> list:
        """Work arrays ``[x, tmp, r, coarse rhs]`` of a level, kept between cycles (no page faults per call)."""
        key = (level, B, np.dtype(dtype).str)
        if key not in self._work:
            lv = self._levels[level]
            coarse = self._levels[min(level + 1, len(self._levels) - 1)]
            self._work[key] = [np.empty((B,) + lv.shape3, dtype) for _ in range(3)] + [
                np.empty((B,) + coarse.shape3, dtype)]
        return self._work[key]

    def _cycle_np(self, level: int, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The V-cycle from ``level`` down; returns ``out`` (the last sweep writes there) or a work array."""
        B = b.shape[0]
        x, tmp, r, rc = self._buffers(level, B, b.dtype)
        if level == len(self._levels) - 1:
            x.fill(0.0)
            xf = x.reshape(B, -1)
            xf[:, self._cidx_np] = b.reshape(B, -1)[:, self._cidx_np] @ self._cinv_np.T
            return x
        lv = self._levels[level]
        if self.smoother == "rbgs":
            return self._cycle_np_rb(level, b, out if out is not None else x, r, rc)
        if lv.sweep_w is not None:
            return self._cycle_np_learned(level, b, x, tmp, r, rc, out)
        grid = (B,) + lv.shape
        x, tmp, r, bv = x.reshape(grid), tmp.reshape(grid), r.reshape(grid), b.reshape(grid)
        wd = lv.omega_inv
        np.multiply(wd, bv, out=x)  # the first sweep from zero
        for _ in range(self.sweeps - 1):
            lv.stencil_pass(*lv.stencil, wd, x, bv, True, tmp)
            x, tmp = tmp, x
        lv.stencil_pass(*lv.stencil, self._normg[level], x, bv, False, r)  # the weighted residual
        sy = self.dim == 3
        lv.kernels["restrict"](r.reshape((B,) + lv.shape3), self._levels[level + 1].mask3, True, sy,
                               1.0 / 2 ** self.dim, rc)
        lv.kernels["prolong_add"](self._cycle_np(level + 1, rc), self._norm3[level], True, sy,
                                  x.reshape((B,) + lv.shape3))
        for i in range(self.sweeps):
            dst = out.reshape(grid) if out is not None and i == self.sweeps - 1 else tmp
            lv.stencil_pass(*lv.stencil, wd, x, bv, True, dst)
            x, tmp = dst, x
        return x.reshape((B,) + lv.shape3)

    def _cycle_np_learned(self, level, b, x, tmp, r, rc, out):
        """:meth:`_cycle_np` with the learned sweep weights and coarse-correction scales."""
        lv = self._levels[level]
        B = b.shape[0]
        grid, grid3 = (B,) + lv.shape, (B,) + lv.shape3
        x, tmp, r, bv = x.reshape(grid), tmp.reshape(grid), r.reshape(grid), b.reshape(grid)
        W = [w.reshape(lv.shape) for w in lv.sweep_np]
        np.multiply(W[0], bv, out=x)
        for w in W[1:]:
            lv.stencil_pass(*lv.stencil, w, x, bv, True, tmp)
            x, tmp = tmp, x
        lv.stencil_pass(*lv.stencil, self._normg[level], x, bv, False, r)  # the weighted residual
        sy = self.dim == 3
        lv.kernels["restrict"](r.reshape(grid3), lv.restrict_mask, True, sy, 1.0 / 2 ** self.dim, rc)
        e = self._cycle_np(level + 1, rc)
        np.multiply(e, lv.scale_np, out=e)
        lv.kernels["prolong_add"](e, self._norm3[level], True, sy, x.reshape(grid3))
        for i, w in enumerate(reversed(W)):
            dst = out.reshape(grid) if out is not None and i == len(W) - 1 else tmp
            lv.stencil_pass(*lv.stencil, w, x, bv, True, dst)
            x, tmp = dst, x
        return x.reshape(grid3)

    def _cycle_np_rb(self, level, b, x, r, rc):
        """:meth:`_cycle_np` with red-black Gauss-Seidel sweeps (in place on ``x``), learned weights or not."""
        lv = self._levels[level]
        B = b.shape[0]
        grid, grid3 = (B,) + lv.shape, (B,) + lv.shape3
        x, r, bv = x.reshape(grid), r.reshape(grid), b.reshape(grid)
        learned = lv.sweep_w is not None
        W = [w.reshape(lv.shape) for w in lv.sweep_np] if learned else [lv.omega_inv] * self.sweeps
        for s, w in enumerate(W):
            lv.rb_sweep(*lv.stencil, w, x, bv, 0, s == 0, lv.chunks)
        lv.stencil_pass(*lv.stencil, self._normg[level], x, bv, False, r)  # the weighted residual
        sy = self.dim == 3
        mask = lv.restrict_mask if learned else self._levels[level + 1].mask3
        lv.kernels["restrict"](r.reshape(grid3), mask, True, sy, 1.0 / 2 ** self.dim, rc)
        e = self._cycle_np(level + 1, rc)
        if learned:
            np.multiply(e, lv.scale_np, out=e)
        lv.kernels["prolong_add"](e, self._norm3[level], True, sy, x.reshape(grid3))
        for w in reversed(W):
            lv.rb_sweep(*lv.stencil, w, x, bv, 1, False, lv.chunks)
        return x.reshape(grid3)

    def _solve(self, x):
        B = x.shape[0]
        if self._use_numba and x.device.type == "cpu" and x.dtype == self.dtype:
            serial = numba.get_num_threads() == 1  # a parallel launch on one thread only adds its overhead
            if serial != self._serial:
                self._serial = serial
                for lv in self._levels:
                    lv.pick_kernels(serial)
            b = np.ascontiguousarray(x.detach().numpy()).reshape((B,) + self._levels[0].shape3)
            out = np.empty_like(b)  # the last sweep writes here: no copy out of the work arrays
            z = self._cycle_np(0, b, out)
            if not np.may_share_memory(z, out):  # a one-level hierarchy
                np.copyto(out, z.reshape(out.shape))
            return torch.from_numpy(out.reshape(B, -1))
        grid = self._levels[0].shape
        return self._cycle(0, x.reshape((B,) + grid)).reshape(B, -1)
