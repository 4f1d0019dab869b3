"""The deep conjugate direction method (Kaneda et al., ICML 2023) as a krylearn solver method.

Each iteration feeds the normalised residual ``r/||r||`` to a CNN ``f``,
A-orthogonalises ``q = f(r/||r||)`` against the last ``history`` search
directions and takes the exact line-search step ``alpha = q.r / q.Aq``.  The
network only has to be right up to scale: the line search fixes it.

:class:`DCDM` is the setup (grid, flags, network, Jacobi diagonal, null
space), :class:`DCDMStepper` one iteration; the shared driver
(:mod:`krylearn.solvers.driver`) owns the stopping rule and confirms
convergence on the true residual.  Beyond the authors' code:

* the outer loop runs in fp64 while the network runs in fp32;
* the residual is updated by recurrence and the true residual is recomputed
  every ``refresh`` steps (and by the driver before convergence is declared);
* a safeguard replaces a network direction that is non-finite, (nearly)
  orthogonal to the residual, or not A-positive, with the Jacobi-preconditioned
  residual for that step; and when the residual has not halved within
  ``patience`` steps the system switches to Jacobi-preconditioned CG from its
  current iterate (single fallback steps between network steps would not do:
  they cannot rebuild CG's global conjugacy, and a poor network stalls).  So
  DCDM converges on any SPD system, even with an untrained network, and the
  fallback steps are counted;
* batched right-hand sides, CPU and CUDA, solid/empty cells masked out of the
  network's input and output.
"""

from __future__ import annotations

import math
import numbers
import time
import warnings
from collections import deque

import numpy as np
import torch

from ...operators.stencil import FLUID, PoissonGrid, flags_from_matrix
from ..base import IterativeMethod
from ..driver import Stepper
from ..flexible import track_halving
from ..krylov import CGStepper, _projected
from ..multigrid import MultigridPreconditioner, grid_stencil
from ..nullspace import detect_constant_nullspace, grid_nullspace
from ..solver import Solver
from .multigrid_model import DCDMMultigrid
from .pretrained import default_model_name, load_model

__all__ = ["DCDM", "DCDMStepper", "dcdm", "dcdm_pure"]


def _dot(a, b):
    return (a * b).sum(dim=1)


def _check_grid(grid_shape, n: int) -> tuple:
    if isinstance(grid_shape, (str, bytes)) or not hasattr(grid_shape, "__len__"):
        raise TypeError(f"grid_shape must be a tuple of ints, got {grid_shape!r}")
    if not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in grid_shape):
        raise ValueError(f"grid_shape must hold whole numbers of cells, got {tuple(grid_shape)!r}")
    grid = tuple(int(s) for s in grid_shape)
    if len(grid) not in (2, 3) or min(grid) < 1:
        raise ValueError(f"grid_shape must be (ny, nx) or (nz, ny, nx) with positive sides, got {grid}")
    if math.prod(grid) != n:
        raise ValueError(f"grid_shape {grid} has {math.prod(grid)} cells but A has {n} rows")
    return grid


def _grid_and_flags(op, grid_shape, flags, n, csr):
    inner = getattr(op, "op", op)  # a multi-dimensional operator comes wrapped flat
    if isinstance(inner, PoissonGrid):
        if grid_shape is not None and tuple(grid_shape) != tuple(inner.grid_shape):
            raise ValueError(f"grid_shape {tuple(grid_shape)} does not match the PoissonGrid's "
                             f"{tuple(inner.grid_shape)}")
        f = inner.flags
        return tuple(inner.grid_shape), f.cpu().numpy() if isinstance(f, torch.Tensor) else np.asarray(f)
    if grid_shape is None:
        raise ValueError("grid_shape is required for DCDM on a matrix: pass grid_shape=(ny, nx) or (nz, ny, nx) "
                         "(rows are the grid cells in C order)")
    grid = _check_grid(grid_shape, n)
    if flags is None:
        if csr is None:
            raise ValueError("flags is required for a matrix-free operator (its fluid cells cannot be read off a matrix)")
        return grid, flags_from_matrix(csr, grid)
    arr = np.asarray(flags.cpu() if isinstance(flags, torch.Tensor) else flags)
    if arr.size != n or arr.ndim == 0:
        raise ValueError(f"flags must be an array with one entry per grid cell ({n}), got shape {arr.shape}")
    if arr.dtype.kind not in "iub":
        raise TypeError(f"flags must hold integer cell types (FLUID = 0), got dtype {arr.dtype}")
    return grid, arr.reshape(grid)


def _positive_int(name: str, v, lo: int) -> int:
    if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    return int(v)


class DCDM(IterativeMethod):
    """DCDM's setup: grid and flags, the model, the null space; the Jacobi diagonal for a CNN.

    With a learned V-cycle (:class:`~.multigrid_model.DCDMMultigrid`, the
    default model) the search directions are CG's, preconditioned by the
    cycle; with a CNN (:class:`~.model.DCDMNet`), the network's, with the
    safeguards below.  Matrix-free on a :class:`~krylearn.operators.PoissonGrid`.
    Options as in :func:`dcdm`.
    """

    name = "dcdm"
    dtype = torch.float64
    default_kind = "multigrid"
    uses_matrix = False
    options = {"model": None, "grid_shape": None, "flags": None, "history": 20, "refresh": 50,
               "fallback": "jacobi", "cos_tol": 1e-6, "patience": 50, "smoother": 1,
               "net_dtype": torch.float32}

    def __init__(self, op, csr, **options):
        super().__init__(op, csr, **options)
        o = self.opts
        for name, lo in (("history", 1), ("refresh", 1), ("patience", 1), ("smoother", 0)):
            o[name] = _positive_int(name, o[name], lo)
        if o["fallback"] not in ("jacobi", "residual"):
            raise ValueError(f"fallback must be 'jacobi' or 'residual', got {o['fallback']!r}")
        if not (isinstance(o["cos_tol"], numbers.Real) and 0 <= o["cos_tol"] < 1):
            raise ValueError(f"cos_tol must be in [0, 1), got {o['cos_tol']!r}")
        if op.dtype.is_complex:
            raise TypeError("DCDM solves real SPD systems; got a complex matrix")
        n = op.shape[0]
        dev = op.device
        self.grid, flag_arr = _grid_and_flags(op, o["grid_shape"], o["flags"], n, csr)
        name = o["model"] if o["model"] is not None else default_model_name(len(self.grid), self.default_kind)
        self.net, card = load_model(name, device=dev)
        if self.net.dim != len(self.grid):
            raise ValueError(f"model is {self.net.dim}-D but the grid {self.grid} is {len(self.grid)}-D")
        self.model_name = card.get("name", str(o["model"]) if o["model"] is not None else name)
        inner = getattr(op, "op", op)
        if self.empty is None and isinstance(inner, PoissonGrid):
            self.empty = (inner.weights()[0] == 0).reshape(-1)
        self.multigrid = isinstance(self.net, DCDMMultigrid)
        if self.multigrid:
            try:
                self._setup_multigrid(op, csr, inner)
                return
            except ValueError as e:  # not a grid Laplacian the V-cycle can coarsen
                if o["model"] is not None:
                    raise
                cnn = default_model_name(len(self.grid), "cnn")
                warnings.warn(f"dcdm: the default learned V-cycle does not apply ({e}); using the CNN {cnn!r}",
                              stacklevel=4)
                self.net, card = load_model(cnn, device=dev)
                self.model_name, self.multigrid = card.get("name", cnn), False
        fluid = torch.as_tensor(np.asarray(flag_arr).reshape(self.grid) == FLUID, device=dev)
        self.fluid_net = fluid.to(o["net_dtype"])
        self.fluid_vec = fluid.reshape(-1).to(torch.float64)
        self.dinv = None
        if o["fallback"] == "jacobi":
            diag = op.diagonal().reshape(-1).to(device=dev, dtype=torch.float64)
            self.dinv = torch.where(diag != 0, 1.0 / torch.where(diag != 0, diag, torch.ones_like(diag)),
                                    torch.zeros_like(diag))
        self.nullspace = (grid_nullspace(inner) if csr is None and isinstance(inner, PoissonGrid)
                          else detect_constant_nullspace(csr, device=dev))

    def _setup_multigrid(self, op, csr, inner) -> None:
        stencil = None
        if csr is None and isinstance(inner, PoissonGrid):
            self.nullspace = grid_nullspace(inner)
        else:
            stencil = grid_stencil(op, csr, self.grid, "dcdm")
            self.nullspace = grid_nullspace(PoissonGrid.from_weights(*stencil, device=op.device))
        self.M = MultigridPreconditioner(op, csr=csr, grid_shape=None if stencil is None else self.grid,
                                         flags=self.opts["flags"],
                                         stencil=stencil, learned=self.net, method="dcdm")
        self._apply_M = _projected(self.M, self.nullspace)

    def default_maxiter(self, n):
        return max(1000, n // 10)

    def check_rhs(self, rhs):
        if rhs.b.is_complex():
            raise TypeError("DCDM solves real SPD systems; got complex data")
        super().check_rhs(rhs)

    def stepper(self, op, rhs):
        if self.multigrid:
            return CGStepper(op._apply, self._apply_M, self.nullspace)
        return DCDMStepper(self, op._apply)

    def preconditioner(self):
        return self._apply_M if self.multigrid else None

    def info(self):
        out = {"model": self.model_name, "grid_shape": self.grid,
               "null_space": self.nullspace.count if self.nullspace is not None else 0}
        if self.multigrid:
            out["preconditioner"] = dict(self.M.info)
        else:
            out["history"] = self.opts["history"]
        return out


class DCDMStepper(Stepper):
    """One DCDM iteration (network direction, safeguards, smoothing steps) for every active system."""

    def __init__(self, method: DCDM, apply_A):
        self.m = method
        self.o = method.opts
        self.apply_A = apply_A
        self.ns = method.nullspace
        self.matvecs = 0
        self.net_seconds = 0.0

    def start(self, x, r, b):
        self.x, self.r, self.b = x, r, b
        k, dev = x.shape[0], x.device
        self.k = k
        self.rnorm = torch.linalg.vector_norm(r, dim=1)
        self.fallbacks = torch.zeros(k, dtype=torch.int64)
        self.smoother_steps = torch.zeros(k, dtype=torch.int64)
        self.switched_at = [None] * k
        self.pcg = torch.zeros(k, dtype=torch.bool, device=dev)  # rows that gave up on the network
        self.pcg_started = torch.zeros_like(self.pcg)
        self.anchor = self.rnorm.clone()  # residual the next halving is measured from
        self.since = torch.zeros(k, dtype=torch.int64, device=dev)
        self.p_prev = torch.zeros_like(r)
        self.rz_prev = torch.ones(k, dtype=r.dtype, device=dev)
        self.dirs: deque = deque(maxlen=self.o["history"])
        self.it = 0

    def _orthogonalize(self, q):
        for p_j, Ap_j, pAp_j in self.dirs:
            q = q - (_dot(q, Ap_j) / pAp_j).unsqueeze(1) * p_j
        if self.ns is not None:
            self.ns.project(q)
        return q

    def _precondition(self, v):
        z = v * self.m.dinv if self.m.dinv is not None else v * self.m.fluid_vec
        if self.ns is not None:
            self.ns.project(z)
        return z

    def _network(self, use_net, z):
        r, rnorm = self.r, self.rnorm
        scale = torch.where(rnorm > 0, rnorm, torch.ones_like(rnorm)).unsqueeze(1)
        tn = time.perf_counter()
        with torch.no_grad():
            q = self.m.net((r / scale).to(self.o["net_dtype"]).reshape((self.k,) + self.m.grid), self.m.fluid_net)
        q = q.reshape(self.k, -1).to(torch.float64)
        self.net_seconds += time.perf_counter() - tn
        bad = use_net & ~torch.isfinite(q).all(dim=1)
        return self._orthogonalize(torch.where(bad.unsqueeze(1), z, q)), bad

    def _direction(self, act):
        """The search direction of every row: network, or Jacobi-PCG for rows that gave up on it."""
        use_net = act & ~self.pcg
        z = self._precondition(self.r)
        if use_net.any():
            q, bad = self._network(use_net, z)
        else:
            q, bad = z, torch.zeros_like(use_net)
        rz = _dot(self.r, z)
        fresh = self.pcg & ~self.pcg_started
        beta = torch.where(self.pcg & ~fresh, rz / self.rz_prev, torch.zeros_like(rz)).unsqueeze(1)
        q = torch.where(self.pcg.unsqueeze(1), z + beta * self.p_prev, q)
        q = torch.where(act.unsqueeze(1), q, torch.zeros_like(q))  # finished systems take no step
        return q, z, rz, use_net, bad

    def _safeguard(self, q, z, use_net, bad):
        """Replace weak network directions (non-finite curvature, not A-positive, orthogonal to r)."""
        Aq = self.apply_A(q)
        self.matvecs += 1
        qAq, qr = _dot(q, Aq), _dot(q, self.r)
        qn = torch.linalg.vector_norm(q, dim=1)
        weak = use_net & ~bad & (~torch.isfinite(qAq) | (qAq <= 0) | (qr.abs() <= self.o["cos_tol"] * qn * self.rnorm))
        if weak.any():
            qf = self._orthogonalize(z)
            Aqf = self.apply_A(qf)
            self.matvecs += 1
            w = weak.unsqueeze(1)
            q, Aq = torch.where(w, qf, q), torch.where(w, Aqf, Aq)
            qAq, qr = torch.where(weak, _dot(qf, Aqf), qAq), torch.where(weak, _dot(qf, self.r), qr)
        return q, Aq, qAq, qr, weak

    def _smooth(self, active_dev):
        """Conjugate Jacobi steps after the network's step (``smoother`` of them)."""
        for _ in range(self.o["smoother"]):
            act = active_dev & ~self.pcg
            if not act.any():
                break
            zs = self._orthogonalize(self._precondition(self.r))
            Azs = self.apply_A(zs)
            self.matvecs += 1
            zAz, zr = _dot(zs, Azs), _dot(zs, self.r)
            ok = act & torch.isfinite(zAz) & (zAz > 0)
            zs = torch.where(ok.unsqueeze(1), zs, torch.zeros_like(zs))
            Azs = torch.where(ok.unsqueeze(1), Azs, torch.zeros_like(Azs))
            safe = torch.where(ok, zAz, torch.ones_like(zAz))
            a = torch.where(ok, zr / safe, torch.zeros_like(zr)).unsqueeze(1)
            self.x.addcmul_(a, zs)
            self.r.addcmul_(a, Azs, value=-1)
            self.dirs.append((zs, Azs, safe))
            self.smoother_steps += ok.cpu().long()

    def step(self, active):
        self.it += 1
        act = active.to(self.x.device)
        q, z, rz, use_net, bad = self._direction(act)
        q, Aq, qAq, qr, weak = self._safeguard(q, z, use_net, bad)
        self.fallbacks += ((bad | weak | self.pcg) & act).cpu().long()
        flags = {"nonfinite": (act & ~torch.isfinite(qAq)).cpu(),
                 "indefinite": (act & torch.isfinite(qAq) & (qAq < 0)).cpu(),
                 "breakdown": (act & ((qAq == 0) | (qr == 0))).cpu()}
        ok = act & torch.isfinite(qAq) & (qAq > 0) & (qr != 0)
        safe = torch.where(ok, qAq, torch.ones_like(qAq))
        alpha = torch.where(ok, qr / safe, torch.zeros_like(qr)).unsqueeze(1)
        self.x.addcmul_(alpha, torch.where(ok.unsqueeze(1), q, torch.zeros_like(q)))
        self.r.addcmul_(alpha, torch.where(ok.unsqueeze(1), Aq, torch.zeros_like(Aq)), value=-1)
        self.dirs.append((q, Aq, safe))
        self.p_prev = torch.where(self.pcg.unsqueeze(1), q, self.p_prev)
        self.pcg_started = self.pcg_started | self.pcg
        self.rz_prev = torch.where(self.pcg, torch.where(rz != 0, rz, torch.ones_like(rz)), self.rz_prev)
        self._smooth(ok)
        if self.it % self.o["refresh"] == 0:
            self.r.copy_(torch.where(ok.unsqueeze(1), self.b - self.apply_A(self.x), self.r))
            self.matvecs += 1
        if self.ns is not None:
            self.ns.project(self.r)
        self.rnorm = torch.linalg.vector_norm(self.r, dim=1)
        self._watch_stagnation(ok)
        return self.rnorm, flags

    def _watch_stagnation(self, ok):
        """A row whose residual has not halved within ``patience`` steps continues as Jacobi-PCG."""
        self.anchor, self.since = track_halving(self.rnorm, self.anchor, self.since)
        give_up = ~self.pcg & (self.since >= self.o["patience"]) & ok
        if give_up.any():
            for i in torch.nonzero(give_up).flatten().tolist():
                self.switched_at[i] = self.it
            self.pcg = self.pcg | give_up

    def replace(self, rows, r_true):
        m = rows.to(self.r.device)
        self.r.copy_(torch.where(m.unsqueeze(1), r_true, self.r))
        self.rnorm = torch.linalg.vector_norm(self.r, dim=1)

    def info(self):
        one = self.k == 1
        return {"fallback_steps": int(self.fallbacks[0]) if one else self.fallbacks.tolist(),
                "switched_to_pcg_at": self.switched_at[0] if one else self.switched_at,
                "smoother_steps": int(self.smoother_steps[0]) if one else self.smoother_steps.tolist(),
                "network_seconds": self.net_seconds}


def dcdm(A, b, x0=None, *, model=None, grid_shape=None, flags=None, rtol: float = 1e-6,
         atol: float = 0.0, maxiter: int | None = None, history: int = 20, refresh: int = 50,
         fallback: str = "jacobi", cos_tol: float = 1e-6, patience: int = 50, smoother: int = 1,
         net_dtype: torch.dtype = torch.float32, callback=None):
    """Solve the SPD system ``A x = b`` with the deep conjugate direction method.

    Parameters
    ----------
    A : Operator, scipy sparse matrix or array, (n, n)
        Symmetric positive (semi-)definite, rows = grid cells in C order.
        Full-grid convention allowed: identically zero rows/columns for
        solid/empty cells.  A :class:`~krylearn.operators.PoissonGrid`
        carries its grid and flags itself.
    b : numpy.ndarray or torch.Tensor, (n,) or (k, n)
        Right-hand side(s), zero on non-fluid cells; ``k`` systems are solved
        at once (one batched network call per iteration).
    x0 : like ``b``, optional
    model : str, Path, DCDMMultigrid or DCDMNet, optional
        Shipped name, a weights path, or a model.  Default: the learned
        V-cycle ``"dcdm-mg-2d"``/``"dcdm-mg-3d"`` by grid dimension (CG
        preconditioned by it; ``history``, ``refresh``, ``fallback``,
        ``cos_tol``, ``patience``, ``smoother`` and ``net_dtype`` concern
        only a CNN).  The paper's CNNs are ``"dcdm-2d"``/``"dcdm-3d"``.
    grid_shape : tuple of int, optional
        ``(ny, nx)`` or ``(nz, ny, nx)``; required unless ``A`` is a PoissonGrid.
    flags : array, optional
        Cell flags (FLUID = 0); default: FLUID where ``A``'s row is nonzero.
    rtol, atol : float
        Stop when ``||b - A x|| <= max(rtol ||b||, atol)`` (checked on the
        true residual).
    maxiter : int, optional
        Default ``max(1000, n // 10)``.
    history : int
        Previous directions each new one is A-orthogonalised against.  The
        paper uses 2; with 2 our trained networks stall near 1e-2..1e-3
        (the directions lose conjugacy), with 20 they converge (measured in
        the benchmarks), at ``2 * history`` stored vectors per system.
    refresh : int
        Recompute the true residual every ``refresh`` iterations.
    fallback : {"jacobi", "residual"}
        Direction used by the safeguard.
    cos_tol : float
        A network direction with ``|q.r| <= cos_tol ||q|| ||r||`` is replaced.
    patience : int
        When the residual has not halved within this many steps, the system
        gives up on the network and continues with Jacobi-preconditioned CG
        from its current iterate (``info["switched_to_pcg_at"]``).
    smoother : int
        Conjugate Jacobi-preconditioned steps after each network step (0:
        the paper's method, also registered as ``method="dcdm-pure"``).
    net_dtype : torch.dtype
        Network precision (float32; bfloat16 on GPU).
    callback : callable, optional
        ``callback(x)`` after every iteration.

    Returns
    -------
    SolveResult
        ``info`` holds ``fallback_steps`` (per system), ``network_seconds``,
        ``model`` and ``history``; ``reason`` as for :func:`krylearn.solvers.cg`.

    Examples
    --------
    >>> import numpy as np, krylearn
    >>> from krylearn.operators.stencil import PoissonGrid
    >>> A = PoissonGrid((32, 32), boundary="empty")
    >>> res = krylearn.solve(A, np.ones(32 * 32), method="dcdm", rtol=1e-8)
    >>> res.converged
    True
    """
    return _solve("dcdm", A, b, x0, callback, rtol=rtol, atol=atol, maxiter=maxiter, model=model,
                  grid_shape=grid_shape, flags=flags, history=history, refresh=refresh, fallback=fallback,
                  cos_tol=cos_tol, patience=patience, smoother=smoother, net_dtype=net_dtype)


class DCDMPure(DCDM):
    """The paper's method: the CNN by default, no smoothing steps, every direction from the network."""

    name = "dcdm-pure"
    default_kind = "cnn"
    options = {**DCDM.options, "smoother": 0}


def dcdm_pure(A, b, x0=None, **options):
    """The paper's DCDM: the CNN (``"dcdm-2d"``/``"dcdm-3d"`` by default), no smoothing steps (``smoother=0``)."""
    options.setdefault("smoother", 0)
    callback = options.pop("callback", None)
    return _solve("dcdm-pure", A, b, x0, callback, **options)


def _solve(method, A, b, x0, callback, *, rtol=1e-6, atol=0.0, maxiter=None, **options):
    return Solver(A, method, rtol=rtol, atol=atol, maxiter=maxiter, **options).solve(b, x0, callback=callback)
