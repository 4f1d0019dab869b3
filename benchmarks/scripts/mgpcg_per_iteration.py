"""mgpcg's time per iteration against CG's, on the stored matrix and on the PoissonGrid itself.

Frame 10 of the smoke-obstacle scene (seed 0, simulated with mgpcg) at 2D
256², 2D 512² and 3D 64³; each method solves to rtol 1e-6 four times and
the best ``solve_seconds / iterations`` is kept.  ``cg`` and ``mgpcg`` get
the CSR matrix (``mgpcg`` with ``grid_shape``) and then a ``PoissonGrid``
built from the same stencil.  One thread.  Run:
``OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 python benchmarks/scripts/mgpcg_per_iteration.py``
(about a minute; benchmarks/README.md, "mgpcg after the kernel rewrite").
"""

import torch

import krylearn
from krylearn.benchmarks.poisson import smoke_problem
from krylearn.operators import PoissonGrid, as_operator
from krylearn.solvers.multigrid import grid_stencil


def per_iteration_ms(A, b, method, **options):
    best = float("inf")
    for _ in range(4):
        r = krylearn.solve(A, b, method=method, rtol=1e-6, **options)
        best = min(best, r.solve_seconds / r.iterations)
    return 1e3 * best


def main():
    torch.set_num_threads(1)
    print("| grid | cg ms/it, CSR | mgpcg ms/it, CSR + grid_shape | ratio | cg ms/it, PoissonGrid | "
          "mgpcg ms/it, PoissonGrid | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for dim, n in ((2, 256), (2, 512), (3, 64)):
        p = smoke_problem("smoke-obstacle", dim, n, frames=10, sim_solver="mgpcg")
        grid = PoissonGrid.from_weights(*grid_stencil(as_operator(p.A), p.A, p.grid_shape))
        cg, mg = per_iteration_ms(p.A, p.b, "cg"), per_iteration_ms(p.A, p.b, "mgpcg", grid_shape=p.grid_shape)
        cgg, mgg = per_iteration_ms(grid, p.b, "cg"), per_iteration_ms(grid, p.b, "mgpcg")
        print(f"| {n}^{dim} | {cg:.3f} | {mg:.3f} | {mg / cg:.2f} | {cgg:.3f} | {mgg:.3f} | {mgg / cgg:.2f} |")


if __name__ == "__main__":
    main()
