"""How far the learned V-cycle is from what its smoother and transfers allow (benchmarks/README.md,
"DCDM's learned V-cycle against mgpcg": "Why not half of mgpcg's iterations").

On the learned cycle's 2D validation frames (192^2, smoke-plume and smoke-obstacle, scene seeds 150/151,
frame 11), PCG iterations to rtol 1e-6 from zero with, as preconditioner:

* ``mgpcg``: the V-cycle of ``method="mgpcg"`` (damped Jacobi, 2 sweeps each side);
* ``learned V``: the shipped learned cycle (``dcdm-mg-2d``), as ``method="dcdm"`` runs it;
* ``learned W``: the same with two coarse corrections per level below the finest (a W-cycle);
* ``two-grid``: the finest level's smoothing and transfers, with the coarse problem solved exactly,
  either the re-discretised coarse stencil the cycle uses or the Galerkin product ``P^T A P``;
  for both the damped-Jacobi and the learned smoother.

Run: ``OMP_NUM_THREADS=1 python benchmarks/scripts/dcdm_two_grid_bound.py`` (about 2 minutes).
"""

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from krylearn.solvers.dcdm.pretrained import load_model
from krylearn.solvers.dcdm.recipe_multigrid import pressure_systems
from krylearn.solvers.multigrid import MultigridPreconditioner
from krylearn.solvers.nullspace import grid_nullspace


def pcg(op, b, prec, rtol=1e-6, maxit=200):
    """Iterations of PCG from zero with ``prec`` (rows of a (1, n) tensor) until ``||r|| <= rtol ||b||``."""
    ns = grid_nullspace(op)
    b = torch.from_numpy(b)[None].double()
    if ns is not None:
        ns.project(b)

    def M(r):
        z = prec(r).clone()
        if ns is not None:
            ns.project(z)
        return z

    x, r = torch.zeros_like(b), b.clone()
    z = M(r)
    p, rz = z, (r * z).sum()
    for it in range(1, maxit + 1):
        Ap = op._apply(p)
        a = rz / (p * Ap).sum()
        x, r = x + a * p, r - a * Ap
        if r.norm() <= rtol * b.norm():
            return it
        z = M(r)
        rz_new = (r * z).sum()
        p, rz = z + rz_new / rz * p, rz_new
    return maxit


def v_or_w(M, gamma):
    """``M``'s torch cycle with ``gamma`` coarse corrections on every level below the finest."""
    def cycle(level, b):
        lv = M._levels[level]
        if level == M.levels - 1 or lv.sweep_w is None:
            return MultigridPreconditioner._cycle(M, level, b)
        x = lv.sweep_w[0] * b
        for w in lv.sweep_w[1:]:
            x = x + w * (b - lv.apply(x))
        for _ in range(gamma if level > 0 else 1):
            e = cycle(level + 1, lv.scale * M._restrict(b - lv.apply(x), level))
            x = x + M._prolong(lv.scale * e, level)
        for w in reversed(lv.sweep_w):
            x = x + w * (b - lv.apply(x))
        return x
    shape = M._levels[0].shape
    return lambda r: cycle(0, r.reshape((1,) + shape)).reshape(1, -1)


def prolongation(M) -> sp.csr_matrix:
    """The cycle's finest-level interpolation as a matrix (fine cells x coarse unknowns)."""
    c = M._levels[1]
    nc = int(np.prod(c.shape))
    cols = []
    for s in range(0, nc, 2048):
        E = torch.eye(nc, dtype=torch.float64)[s:s + 2048]
        cols.append(M._prolong(E.reshape((-1,) + c.shape), 0).reshape(E.shape[0], -1).numpy())
    return sp.csr_matrix(np.concatenate(cols).T)[:, c.mask.reshape(-1).numpy() > 0]


def two_grid(M, op, galerkin):
    """The finest level's smoothing + transfers around an exact coarse solve."""
    f, c, dim = M._levels[0], M._levels[1], len(M._levels[0].shape)
    P = prolongation(M)
    if galerkin:
        Ac, scale = (P.T @ op.to_sparse().tocsr() @ P), 1.0
    else:
        keep = c.mask.reshape(-1).numpy() > 0
        Ac = c.op.to_sparse().tocsr()[keep][:, keep] * 2 ** dim  # R = P^T / 2^d, as the cycle restricts
        scale = f.scale.reshape(-1).numpy()[keep] if f.scale is not None else 1.0
    lu = spla.splu((Ac + 1e-10 * sp.eye(Ac.shape[0])).tocsc())
    W = f.sweep_w if f.sweep_w is not None else [f.wd] * M.sweeps

    def apply(r):
        b = r.reshape((1,) + f.shape)
        x = W[0] * b
        for w in W[1:]:
            x = x + w * (b - f.apply(x))
        res = (b - f.apply(x)).reshape(-1).numpy()
        e = scale * lu.solve(scale * (P.T @ res))
        x = x + torch.from_numpy(P @ e).reshape(x.shape)
        for w in reversed(W):
            x = x + w * (b - f.apply(x))
        return x.reshape(1, -1)
    return apply


def main():
    torch.set_num_threads(1)
    net = load_model("dcdm-mg-2d").net.double()
    systems = pressure_systems(("smoke-plume", "smoke-obstacle"), 2, 192, 150, take=(11,))
    print("| frame | mgpcg | learned V | learned W | two-grid Jacobi, re-discretised | two-grid Jacobi, Galerkin "
          "| two-grid learned, re-discretised | two-grid learned, Galerkin |\n|---|" + "---:|" * 7)
    for name, (op, b) in zip(("plume", "obstacle"), systems):
        plain = MultigridPreconditioner(op, precision="double")
        learned = MultigridPreconditioner(op, learned=net, precision="double")
        shape = plain._levels[0].shape
        row = [pcg(op, b, lambda r: plain._cycle(0, r.reshape((1,) + shape)).reshape(1, -1)),
               pcg(op, b, v_or_w(learned, 1)), pcg(op, b, v_or_w(learned, 2))]
        row += [pcg(op, b, two_grid(M, op, g)) for M in (plain, learned) for g in (False, True)]
        print(f"| {name} 192² | " + " | ".join(map(str, row)) + " |", flush=True)


if __name__ == "__main__":
    main()
