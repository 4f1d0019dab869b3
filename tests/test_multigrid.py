"""``method="mgpcg"``: the geometric-multigrid V-cycle and CG preconditioned by it.

Properties: the hierarchy keeps what the fine stencil says (symmetric,
diagonally dominant levels; a pure-Neumann grid stays singular on every
level); the V-cycle is symmetric positive definite, identical on its
compiled and torch paths; MGPCG converges in a bounded number of
iterations as the grid is refined, on stored matrices as on the grid
operator, with pure-Neumann regions handled as ``cg`` handles them.
"""

import json

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg
import torch

import krylearn
from krylearn.benchmarks.frames import held_bytes
from krylearn.cli.main import main
from krylearn.operators.stencil import EMPTY, FLUID, SOLID, PoissonGrid
from krylearn.solvers import _mg_kernels as K
from krylearn.solvers.multigrid import MultigridPreconditioner, coarsen, grid_stencil
from krylearn.solvers.nullspace import detect_constant_nullspace, grid_nullspace


def scene(shape, seed=0, top="empty", obstacles=3, air=True):
    """A tank: solid walls, ``top`` side open to air or closed, random solid boxes, a pocket of air cells."""
    rng = np.random.default_rng(seed)
    flags = np.full(shape, FLUID, dtype=np.uint8)
    for _ in range(obstacles):
        lo = [int(rng.integers(1, s // 2)) for s in shape]
        hi = [lo_ + int(rng.integers(2, max(3, s // 4))) for lo_, s in zip(lo, shape)]
        flags[tuple(slice(a, b) for a, b in zip(lo, hi))] = SOLID
    if air:
        flags[tuple(slice(0, 2) for _ in shape)] = EMPTY
    sides = ["solid"] * (2 * len(shape))
    sides[1] = top  # the high side of the first axis
    return PoissonGrid(shape, flags, boundary=sides)


def rhs_for(A, seed=1):
    b = np.random.default_rng(seed).standard_normal(A.shape[0])
    b[A.flags.cpu().numpy().reshape(-1) != FLUID] = 0.0
    return b


def vcycle(M, R):
    return M @ torch.from_numpy(R)


@pytest.mark.parametrize("shape", [(24, 20), (9, 14, 11)])
def test_levels_are_symmetric_dominant_laplacians(shape):
    A = scene(shape)
    d, w = grid_stencil(A, None)
    while d.size > 8:
        d, w = coarsen(d, w)
        C = PoissonGrid.from_weights(d, w).to_sparse()
        assert abs(C - C.T).max() == 0
        off = np.asarray(abs(C).sum(axis=1)).ravel() - 2 * C.diagonal()
        assert np.all(off <= 1e-12 * C.diagonal().max())  # A_ii >= sum |A_ij|
        assert np.all(C.data[C.indices != np.repeat(np.arange(C.shape[0]), np.diff(C.indptr))] < 0)


def test_pure_neumann_stays_singular_on_every_level():
    d, w = grid_stencil(PoissonGrid((16, 12), boundary="solid"), None)
    while d.size > 4:
        d, w = coarsen(d, w)
        C = PoissonGrid.from_weights(d, w).to_sparse()
        assert np.abs(C @ np.ones(C.shape[0])).max() < 1e-12 * C.diagonal().max()


@pytest.mark.parametrize("smoother", ["jacobi", "rbgs"])
@pytest.mark.parametrize("shape", [(32, 28), (12, 16, 10)])
@pytest.mark.parametrize("compiled", [True, False])
def test_vcycle_is_symmetric_positive_definite(shape, compiled, smoother):
    A = scene(shape, top="solid", air=False)  # singular: a closed tank
    M = MultigridPreconditioner(A, coarse_size=16, smoother=smoother)
    M._use_numba = compiled
    fluid = A.flags.cpu().numpy().reshape(-1) == FLUID
    R = np.random.default_rng(0).standard_normal((6, A.shape[0])) * fluid
    Z = vcycle(M, R).numpy()
    G = R @ Z.T
    assert np.abs(G - G.T).max() <= 1e-12 * np.abs(G).max()
    assert np.linalg.eigvalsh(0.5 * (G + G.T)).min() > 0
    assert np.all(Z[:, ~fluid] == 0)


@pytest.mark.parametrize("smoother", ["jacobi", "rbgs"])
@pytest.mark.parametrize("shape", [(33, 30), (12, 9, 15)])
def test_compiled_and_torch_cycles_agree(shape, smoother):
    A = scene(shape)
    M = MultigridPreconditioner(A, coarse_size=20, smoother=smoother)
    R = np.random.default_rng(2).standard_normal((3, A.shape[0]))
    fast = vcycle(M, R).numpy()
    M._use_numba = False
    slow = vcycle(M, R).numpy()
    assert M.levels >= 3
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-12 * np.abs(slow).max())


@pytest.mark.parametrize("dim,sizes", [(2, (32, 64, 128)), (3, (16, 32))])
def test_iterations_bounded_as_the_grid_is_refined(dim, sizes):
    its = []
    for n in sizes:
        A = scene((n,) * dim, seed=n)
        res = krylearn.solve(A, rhs_for(A), method="mgpcg", rtol=1e-6)
        assert res.converged
        r = rhs_for(A) - A.to_sparse() @ res.x
        assert np.linalg.norm(r) <= 1e-6 * np.linalg.norm(rhs_for(A))
        its.append(res.iterations)
    plain = krylearn.solve(A, rhs_for(A), method="cg", rtol=1e-6).iterations
    assert max(its) <= 20
    assert its[-1] <= 1.5 * its[0] + 2
    assert its[-1] * 5 < plain


def test_stored_matrix_with_grid_shape_matches_the_grid_operator():
    A = scene((20, 24), seed=4)
    b = rhs_for(A)
    on_grid = krylearn.solve(A, b, method="mgpcg", rtol=1e-8)
    flags = A.flags.cpu().numpy()
    stored = krylearn.solve(A.to_sparse(), b, method="mgpcg", grid_shape=(20, 24), flags=flags, rtol=1e-8)
    assert stored.converged and on_grid.converged
    assert stored.iterations == on_grid.iterations
    np.testing.assert_allclose(stored.x, on_grid.x, atol=1e-10 * np.abs(on_grid.x).max())


def test_solver_on_a_grid_builds_no_matrix_and_updates_per_frame():
    A = scene((24, 24), seed=1)
    S = krylearn.Solver(A, "mgpcg", rtol=1e-7)
    assert S.csr is None
    x = S.solve(rhs_for(A)).x
    B = scene((24, 24), seed=2)  # next frame: other obstacles
    S.update(B)
    res = S.solve(rhs_for(B), x0=None)
    assert res.converged
    assert np.linalg.norm(rhs_for(B) - B.to_sparse() @ res.x) <= 1e-7 * np.linalg.norm(rhs_for(B))
    assert x.shape == res.x.shape


def test_pure_neumann_consistent_and_inconsistent_like_cg():
    A = scene((24, 20), top="solid", air=False)
    fluid = A.flags.cpu().numpy().reshape(-1) == FLUID
    b = rhs_for(A)
    res = krylearn.solve(A, b, method="mgpcg", rtol=1e-8)
    ref = krylearn.solve(A.to_sparse(), b, method="cg", rtol=1e-8)
    assert res.reason == ref.reason == "least_squares"
    assert res.info["inconsistency"] == pytest.approx(ref.info["inconsistency"], rel=1e-6)
    ns = krylearn.Solver(A, "mgpcg").impl.nullspace
    assert ns is not None and ns.count >= 1
    bc = ns.project(torch.from_numpy(b[None].copy()))[0].numpy()  # zero mean on each closed region
    res = krylearn.solve(A, bc, method="mgpcg", rtol=1e-8)
    assert res.converged and res.iterations <= 25
    assert np.linalg.norm(bc - A.to_sparse() @ res.x) <= 1e-8 * np.linalg.norm(bc)
    assert np.all(res.x[~fluid] == 0)


def test_float32_grid_batch_and_single_precision_cycle():
    A = scene((40, 36), seed=5)
    A32 = PoissonGrid((40, 36), A.flags.cpu().numpy(), boundary=["solid", "empty", "solid", "solid"],
                      dtype=torch.float32)
    B = np.stack([rhs_for(A, s) for s in range(3)])
    for op, opts in ((A32, {}), (A, {"precision": "single"})):
        res = krylearn.solve(op, B, method="mgpcg", rtol=1e-6, **opts)
        assert np.all(res.converged)
        R = B - (A.to_sparse() @ np.asarray(res.x, dtype=np.float64).T).T
        assert np.all(np.linalg.norm(R, axis=1) <= 1e-6 * np.linalg.norm(B, axis=1))


def test_bad_input_names_the_problem():
    A = scene((16, 16))
    csr = A.to_sparse()
    with pytest.raises(ValueError, match="grid_shape"):
        krylearn.solve(csr, rhs_for(A), method="mgpcg")
    with pytest.raises(ValueError, match="grid_shape"):
        krylearn.solve(csr, rhs_for(A), method="mgpcg", grid_shape=(16, 15))
    nine = csr + sp.diags([-0.1, -0.1], [17, -17], shape=csr.shape) + sp.eye(csr.shape[0])
    with pytest.raises(ValueError, match="face neighbours"):
        krylearn.solve(nine.tocsr(), np.ones(256), method="mgpcg", grid_shape=(16, 16), check_symmetry=False)
    skew = csr.tolil()
    i = int(np.flatnonzero(csr.diagonal())[20])
    skew[i, i + 1] *= 1.5  # an existing coupling, made one-sided
    with pytest.raises(ValueError, match="not symmetric"):
        krylearn.solve(skew.tocsr(), np.ones(256), method="mgpcg", grid_shape=(16, 16), check_symmetry=False)
    pos = PoissonGrid.from_weights(A.weights()[0], [-wa for wa in A.weights()[1]])
    with pytest.raises(ValueError, match="off-diagonal"):
        MultigridPreconditioner(pos)
    with pytest.raises(ValueError, match="flags"):
        krylearn.solve(csr, rhs_for(A), method="mgpcg", grid_shape=(16, 16), flags=np.zeros((16, 16), np.uint8))
    for opt, bad in (("sweeps", 0), ("omega", 1.5), ("coarse_size", -1), ("precision", "half")):
        with pytest.raises(ValueError, match=opt):
            krylearn.solve(A, rhs_for(A), method="mgpcg", **{opt: bad})
    with pytest.raises(TypeError, match="PoissonGrid"):
        krylearn.solve(scipy.sparse.linalg.aslinearoperator(csr), rhs_for(A), method="mgpcg", grid_shape=(16, 16))
    for bad in ({"smoother": "sor"}, {"smoother": "rbgs", "omega": 2.0}, {"smoother": "rbgs", "omega": 0.0}):
        with pytest.raises(ValueError, match=next(iter(bad)) if len(bad) == 1 else "omega"):
            krylearn.solve(A, rhs_for(A), method="mgpcg", **bad)


def _red_black_reference(A: PoissonGrid, wr, x, rhs, colour, zero):
    """One red-black sweep written out with whole-grid operator products: cells of ``colour`` first."""
    x = np.zeros_like(x) if zero else x.copy()
    parity = np.indices(wr.shape).sum(axis=0) % 2
    for c in (colour, 1 - colour):
        Ax = A._apply(torch.from_numpy(x.reshape(len(x), -1))).numpy().reshape(x.shape)
        x = x + (parity == c) * wr * (rhs - Ax)
    return x


@pytest.mark.parametrize("shape", [(13, 9), (7, 6, 11)])
def test_red_black_sweep_kernel_is_gauss_seidel_in_colour_order(shape):
    """The one-pass kernel (both colours fused, in blocks of rows/planes) equals two colour half-sweeps."""
    A = scene(shape, seed=3)
    d, w = A.weights()
    wr = np.where(d > 0, 1.3 / np.where(d > 0, d, 1.0), 0.0)  # SOR weights: any positive values
    rng = np.random.default_rng(0)
    x0, rhs = rng.standard_normal((2,) + shape) * (d > 0), rng.standard_normal((2,) + shape)
    for colour, zero in ((0, False), (1, False), (0, True)):
        ref = _red_black_reference(A, wr, x0, rhs, colour, zero)
        for build, chunks in ((0, 1), (0, 2), (0, 3), (0, 5), (1, 1), (1, 4)):  # parallel and serial builds
            x = np.full_like(x0, np.nan) if zero else x0.copy()  # zero: what x held is never read
            K.KERNELS[f"rbgs{len(shape)}d"][build](d, *w, wr, x, rhs, colour, zero, chunks)
            np.testing.assert_allclose(np.where(d > 0, x, 0.0), ref, rtol=0, atol=1e-12 * np.abs(ref).max())


@pytest.mark.parametrize("shape", [(64, 64), (24, 24, 24)])
def test_red_black_smoother_saves_iterations(shape):
    """Gauss-Seidel smooths better than damped Jacobi: no more iterations, with SOR weights too."""
    A = scene(shape, seed=2)
    b = rhs_for(A)
    its = {}
    for opts in ({"smoother": "jacobi"}, {"smoother": "rbgs"}, {"smoother": "rbgs", "omega": 1.2}):
        res = krylearn.solve(A, b, method="mgpcg", rtol=1e-8, **opts)
        assert res.converged and res.info["preconditioner"]["smoother"] == opts["smoother"]
        assert np.linalg.norm(b - A.to_sparse() @ res.x) <= 1e-8 * np.linalg.norm(b)
        its[tuple(opts.values())] = res.iterations
    assert its[("rbgs",)] < its[("jacobi",)]
    assert its[("rbgs", 1.2)] <= its[("jacobi",)]


def test_frames_benchmark_reports_per_frame_ratios_memory_and_plot(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["bench", "poisson", "--sequence", "4", "--scene", "smoke-obstacle", "--n", "24",
                 "--methods", "cg,mgpcg", "--sim-solver", "mgpcg", "--out", str(out), "-q"]) == 0
    name = "smoke-obstacle-2d-24-4frames"
    report = json.loads((out / f"{name}.json").read_text())
    rows = {r["method"]: r for r in report["rows"]}
    for r in rows.values():
        for path in ("fresh", "solver"):
            assert r[path]["converged"] == 4 and len(r[path]["per_frame_s"]) == 4
    assert rows["mgpcg"]["solver"]["vs_mgpcg"] == pytest.approx(1.0)
    assert rows["mgpcg"]["solver"]["iterations"] * 5 < rows["cg"]["solver"]["iterations"]
    assert rows["mgpcg"]["solver"]["held_bytes"] > rows["cg"]["solver"]["held_bytes"] >= 0
    assert (out / f"{name}.png").stat().st_size > 0
    assert "× mgpcg" in capsys.readouterr().out
    a = np.zeros(10)
    assert held_bytes({"x": a, "y": a[2:], "z": [a]}) == a.nbytes  # shared buffers counted once


def test_grid_null_space_is_the_matrix_one():
    """The matrix-free null-space detection finds the same singular regions as the CSR one, on random scenes."""
    rng = np.random.default_rng(0)
    singular = 0
    for _ in range(30):
        shape = tuple(int(s) for s in rng.integers(5, 14, size=rng.integers(2, 4)))
        flags = rng.choice([FLUID, SOLID, EMPTY], p=[0.7, 0.25, 0.05], size=shape).astype(np.uint8)
        sides = [str(rng.choice(["solid", "empty"], p=[0.8, 0.2])) for _ in range(2 * len(shape))]
        A = PoissonGrid(shape, flags, boundary=sides)
        a, b = grid_nullspace(A), detect_constant_nullspace(A.to_sparse())
        assert (a is None) == (b is None)
        if a is not None:
            singular += 1
            assert a.count == b.count and torch.equal(a.index, b.index)
            assert len(set(zip(a.labels.tolist(), b.labels.tolist()))) == a.count  # the same partition
    assert singular >= 5


@pytest.mark.parametrize("shape", [(3, 2000), (1, 3000), (3, 40, 900)])
def test_thin_grids_keep_coarsening(shape):
    """An axis of 1-3 cells does not stop the hierarchy: the coarsest level stays small (no huge dense solve)."""
    A = PoissonGrid(shape, boundary="empty")
    b = np.random.default_rng(0).standard_normal(A.shape[0])
    M = MultigridPreconditioner(A)
    assert M.info["unknowns"][-1] <= 128
    res = krylearn.solve(A, b, method="mgpcg", rtol=1e-8)
    assert res.converged and res.iterations <= 20
