"""The deep conjugate direction method (Kaneda et al., ICML 2023).

Each iteration feeds the normalised residual ``r/||r||`` to a CNN ``f``,
A-orthogonalises ``q = f(r/||r||)`` against the last ``history`` search
directions and takes the exact line-search step ``alpha = q.r / q.Aq``.  The
network only has to be right up to scale: the line search fixes it.

Beyond the authors' code:

* the outer loop runs in fp64 while the network runs in fp32;
* the residual is updated by recurrence and the true residual is recomputed
  every ``refresh`` steps and before convergence is declared;
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
import time
from collections import deque

import numpy as np
import torch

from ...operators.stencil import FLUID, PoissonGrid, flags_from_matrix

from .._common import initial_status, make_result, prepare, relative
from ..nullspace import detect_constant_nullspace, matrix_form
from ..result import SolveResult
from .pretrained import default_model_name, load_model

__all__ = ["dcdm", "dcdm_pure"]


def _dot(a, b):
    return (a * b).sum(dim=1)


def _grid_and_flags(op, grid_shape, flags, n, csr):
    inner = getattr(op, "op", op)  # prepare() wraps multi-dimensional operators
    if isinstance(inner, PoissonGrid):
        if grid_shape is not None and tuple(grid_shape) != tuple(inner.grid_shape):
            raise ValueError(f"grid_shape {tuple(grid_shape)} does not match the PoissonGrid's "
                             f"{tuple(inner.grid_shape)}")
        return tuple(inner.grid_shape), inner.flags.cpu().numpy() if isinstance(inner.flags, torch.Tensor) \
            else np.asarray(inner.flags)
    if grid_shape is None:
        raise ValueError("grid_shape is required for DCDM on a matrix: pass grid_shape=(ny, nx) or (nz, ny, nx) "
                         "(rows are the grid cells in C order)")
    try:
        grid = tuple(int(s) for s in grid_shape)
    except TypeError:
        raise TypeError(f"grid_shape must be a tuple of ints, got {grid_shape!r}") from None
    if len(grid) not in (2, 3) or min(grid) < 1:
        raise ValueError(f"grid_shape must be (ny, nx) or (nz, ny, nx) with positive sides, got {grid}")
    if math.prod(grid) != n:
        raise ValueError(f"grid_shape {grid} has {math.prod(grid)} cells but A has {n} rows")
    if flags is None:
        if csr is None:
            raise ValueError("flags is required for a matrix-free operator (its fluid cells cannot be read off a matrix)")
        flags = flags_from_matrix(csr, grid)
    else:
        flags = np.asarray(flags.cpu() if isinstance(flags, torch.Tensor) else flags)
        if flags.size != n:
            raise ValueError(f"flags must have one entry per grid cell ({n}), got shape {flags.shape}")
        flags = flags.reshape(grid)
    return grid, flags


def dcdm(A, b, x0=None, *, model=None, grid_shape=None, flags=None, rtol: float = 1e-6,
         atol: float = 0.0, maxiter: int | None = None, history: int = 20, refresh: int = 50,
         fallback: str = "jacobi", cos_tol: float = 1e-6, patience: int = 50, smoother: int = 1,
         net_dtype: torch.dtype = torch.float32, callback=None) -> SolveResult:
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
    model : str, Path or DCDMNet, optional
        Shipped name (``"dcdm-2d"``, ``"dcdm-3d"``; default by grid
        dimension), a weights path, or a network.
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
        the README), at ``2 * history`` stored vectors per system.
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
        the paper's method, also registered as ``method="dcdm-pure"``).  They
        damp the error the network handles worst, at one SpMV each; without
        them our 2D network stalled on the 512^2 obstacle frame (README).
    net_dtype : torch.dtype
        Network precision (float32; bfloat16 on GPU).
    callback : callable, optional
        ``callback(x)`` after every iteration.

    Returns
    -------
    SolveResult
        ``info`` holds ``fallback_steps`` (per system), ``network_seconds``,
        ``model`` and ``history``; ``reason`` as for :func:`~krylearn.solvers.krylov.cg`.

    Examples
    --------
    >>> import numpy as np, krylearn
    >>> from krylearn.operators.stencil import PoissonGrid
    >>> A = PoissonGrid((32, 32), boundary="empty")
    >>> res = krylearn.solve(A, np.ones(32 * 32), method="dcdm", rtol=1e-8)
    >>> res.converged
    True
    """
    t_setup = time.perf_counter()
    for name, v, lo in (("history", history, 1), ("refresh", refresh, 1), ("patience", patience, 1),
                        ("smoother", smoother, 0)):
        if not isinstance(v, int) or isinstance(v, bool) or v < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    if fallback not in ("jacobi", "residual"):
        raise ValueError(f"fallback must be 'jacobi' or 'residual', got {fallback!r}")
    if not (isinstance(cos_tol, (int, float)) and 0 <= cos_tol < 1):
        raise ValueError(f"cos_tol must be in [0, 1), got {cos_tol!r}")
    sys_ = prepare(A, b, x0, rtol=rtol, atol=atol, maxiter=maxiter,
                   default_maxiter=lambda n: max(1000, n // 10), dtype=torch.float64)
    if sys_.b.is_complex():
        raise TypeError("DCDM solves real SPD systems; got complex data")
    op, k, n, dev = sys_.op, sys_.k, sys_.n, sys_.op.device
    csr = matrix_form(op)  # built once: flags and the null-space check both read it
    grid, flag_arr = _grid_and_flags(op, grid_shape, flags, n, csr)
    fluid = torch.as_tensor(np.asarray(flag_arr).reshape(grid) == FLUID, device=dev)
    net, card = load_model(model if model is not None else default_model_name(len(grid)), device=dev)
    if net.dim != len(grid):
        raise ValueError(f"model is {net.dim}-D but the grid {grid} is {len(grid)}-D")
    fluid_net = fluid.to(net_dtype)
    fluid_vec = fluid.reshape(-1).to(torch.float64)
    diag = op.diagonal().reshape(-1).to(torch.float64) if fallback == "jacobi" else None
    dinv = None
    if diag is not None:
        dinv = torch.where(diag > 0, 1.0 / torch.where(diag > 0, diag, torch.ones_like(diag)),
                           torch.zeros_like(diag))
    ns = detect_constant_nullspace(op, A=csr)
    bvec = ns.project(sys_.b.clone()) if ns is not None else sys_.b
    apply_A, tol = op._apply, sys_.tol
    setup_seconds = time.perf_counter() - t_setup

    t0 = time.perf_counter()
    net_seconds = 0.0
    x = sys_.x0
    nonzero_x0 = bool(x.any())
    r = bvec - apply_A(x) if nonzero_x0 else bvec.clone()
    rnorm = torch.linalg.vector_norm(r, dim=1)
    hist = [relative(rnorm, sys_)]
    iterations = torch.zeros(k, dtype=torch.int64)
    reasons, active = initial_status(sys_, x, rnorm)
    fallbacks = torch.zeros(k, dtype=torch.int64)
    smoother_steps = torch.zeros(k, dtype=torch.int64)
    switched_at = [None] * k
    pcg = torch.zeros(k, dtype=torch.bool, device=dev)  # rows that gave up on the network
    pcg_started = torch.zeros_like(pcg)
    anchor = rnorm.clone()  # residual the next halving is measured from
    since = torch.zeros(k, dtype=torch.int64, device=dev)
    p_prev = torch.zeros_like(r)
    rz_prev = torch.ones(k, dtype=r.dtype, device=dev)
    dirs: deque = deque(maxlen=history)
    matvecs = int(nonzero_x0)

    def stop(mask, why):
        for i in torch.nonzero(mask & active).flatten().tolist():
            reasons[i] = why
        active.copy_(active & ~mask)

    def orthogonalize(q):
        for p_j, Ap_j, pAp_j in dirs:
            q = q - (_dot(q, Ap_j) / pAp_j).unsqueeze(1) * p_j
        if ns is not None:
            ns.project(q)
        return q

    def precondition(v):
        z = v * dinv if dinv is not None else v * fluid_vec
        if ns is not None:
            ns.project(z)
        return z

    it = 0
    while active.any() and it < sys_.maxiter:
        it += 1
        act = active.to(dev)
        use_net = act & ~pcg
        z = precondition(r)
        if use_net.any():
            scale = torch.where(rnorm > 0, rnorm, torch.ones_like(rnorm)).unsqueeze(1)
            tn = time.perf_counter()
            with torch.no_grad():
                q = net((r / scale).to(net_dtype).reshape((k,) + grid), fluid_net)
            q = q.reshape(k, n).to(torch.float64)
            net_seconds += time.perf_counter() - tn
            bad = use_net & ~torch.isfinite(q).all(dim=1)
            q = torch.where(bad.unsqueeze(1), z, q)
            q = orthogonalize(q)
        else:
            bad = torch.zeros_like(use_net)
            q = z
        # rows that gave up on the network run Jacobi-PCG from where they are
        rz = _dot(r, z)
        fresh = pcg & ~pcg_started
        beta = torch.where(pcg & ~fresh, rz / rz_prev, torch.zeros_like(rz)).unsqueeze(1)
        q = torch.where(pcg.unsqueeze(1), z + beta * p_prev, q)
        q = torch.where(act.unsqueeze(1), q, torch.zeros_like(q))  # finished systems take no step
        Aq = apply_A(q)
        matvecs += 1
        qAq, qr = _dot(q, Aq), _dot(q, r)
        qn = torch.linalg.vector_norm(q, dim=1)
        weak = use_net & ~bad & (~torch.isfinite(qAq) | (qAq <= 0) | (qr.abs() <= cos_tol * qn * rnorm))
        if weak.any():
            qf = orthogonalize(z)
            Aqf = apply_A(qf)
            matvecs += 1
            w = weak.unsqueeze(1)
            q, Aq = torch.where(w, qf, q), torch.where(w, Aqf, Aq)
            qAq, qr = torch.where(weak, _dot(qf, Aqf), qAq), torch.where(weak, _dot(qf, r), qr)
        fallbacks += ((bad | weak | pcg) & act).cpu().long()
        stop(~torch.isfinite(qAq).cpu(), "nonfinite")
        stop((qAq < 0).cpu(), "indefinite")
        stop(((qAq == 0) | (qr == 0)).cpu(), "breakdown")
        act = active.to(dev)
        safe = torch.where(act & (qAq > 0), qAq, torch.ones_like(qAq))
        alpha = torch.where(act, qr / safe, torch.zeros_like(qr)).unsqueeze(1)
        x.addcmul_(alpha, q)
        r.addcmul_(alpha, Aq, value=-1)
        dirs.append((q, Aq, safe))
        p_prev = torch.where(pcg.unsqueeze(1), q, p_prev)
        pcg_started = pcg_started | pcg
        rz_prev = torch.where(pcg, torch.where(rz != 0, rz, torch.ones_like(rz)), rz_prev)
        for _ in range(smoother):  # conjugate Jacobi steps after the network's step
            act = active.to(dev) & ~pcg
            if not act.any():
                break
            zs = orthogonalize(precondition(r))
            Azs = apply_A(zs)
            matvecs += 1
            zAz, zr = _dot(zs, Azs), _dot(zs, r)
            ok = act & torch.isfinite(zAz) & (zAz > 0)
            zs = torch.where(ok.unsqueeze(1), zs, torch.zeros_like(zs))
            Azs = torch.where(ok.unsqueeze(1), Azs, torch.zeros_like(Azs))
            safe_s = torch.where(ok, zAz, torch.ones_like(zAz))
            a_s = torch.where(ok, zr / safe_s, torch.zeros_like(zr)).unsqueeze(1)
            x.addcmul_(a_s, zs)
            r.addcmul_(a_s, Azs, value=-1)
            dirs.append((zs, Azs, safe_s))
            smoother_steps += ok.cpu().long()
        if it % refresh == 0:
            r = bvec - apply_A(x)
            matvecs += 1
        if ns is not None:
            ns.project(r)
        rnorm = torch.linalg.vector_norm(r, dim=1)
        iterations += active.long()
        stop(~torch.isfinite(rnorm).cpu(), "nonfinite")
        done = (rnorm <= tol) & active.to(dev)
        if done.any():  # confirm on the true residual before stopping
            r = bvec - apply_A(x)
            matvecs += 1
            if ns is not None:
                ns.project(r)
            rnorm = torch.linalg.vector_norm(r, dim=1)
            stop((rnorm <= tol).cpu(), "converged")
        hist.append(torch.where(active.to(dev) | done, relative(rnorm, sys_), hist[-1]))
        # stagnation: the residual has not halved within `patience` steps -> PCG from here on
        halved = rnorm <= 0.5 * anchor
        anchor = torch.where(halved, rnorm, anchor)
        since = torch.where(halved, torch.zeros_like(since), since + 1)
        give_up = ~pcg & (since >= patience) & active.to(dev)
        if give_up.any():
            for i in torch.nonzero(give_up).flatten().tolist():
                switched_at[i] = it
            pcg = pcg | give_up
        if callback is not None:
            callback(x.reshape(sys_.shape))
    if ns is not None:
        ns.project(x)
    solve_seconds = time.perf_counter() - t0
    info = {
        "fallback_steps": fallbacks.tolist() if sys_.batched else int(fallbacks[0]),
        "switched_to_pcg_at": switched_at if sys_.batched else switched_at[0],
        "smoother_steps": smoother_steps.tolist() if sys_.batched else int(smoother_steps[0]),
        "network_seconds": net_seconds,
        "matvecs": matvecs,
        "model": card.get("name", str(model) if model is not None else default_model_name(len(grid))),
        "history": history,
        "grid_shape": grid,
        "null_space": ns.count if ns is not None else 0,
    }
    return make_result(sys_, x, hist, iterations.numpy(), reasons, method="dcdm",
                       setup_seconds=setup_seconds, solve_seconds=solve_seconds, info=info)


def dcdm_pure(A, b, x0=None, **options) -> SolveResult:
    """:func:`dcdm` without smoothing steps (``smoother=0``): every direction comes from the network."""
    options.setdefault("smoother", 0)
    res = dcdm(A, b, x0, **options)
    res.method = "dcdm-pure"
    return res
