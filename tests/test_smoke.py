"""Tests of krylearn.problems.smoke: the smoke simulation and its pressure systems."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse
import torch

from krylearn.problems.smoke import SCENES, SmokeSimulation, generate_poisson_systems
from krylearn.datasets.systems import SystemsFile
from krylearn.operators.stencil import FLUID, SOLID, PoissonGrid

SHAPES = {2: (32, 32), 3: (12, 12, 12)}


def _fluid_divergence(sim: SmokeSimulation) -> float:
    """max |div u| over fluid cells, recomputed from the faces here."""
    D = torch.zeros(sim.shape, dtype=torch.float64)
    for a, u in enumerate(sim.velocity):
        D += torch.diff(u.to(torch.float64), dim=a)
    return float(D[sim.flags == FLUID].abs().max()) / sim.h


# -------------------------------------------------------------- projection
@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("scene", SCENES)
@pytest.mark.parametrize("boundary", ["open", "closed"])
def test_projection_removes_divergence(dim, scene, boundary):
    sim = SmokeSimulation(SHAPES[dim], scene, boundary=boundary, seed=1)
    for _ in range(4 if dim == 2 else 3):
        out = sim.step()
        assert out.result.converged
        assert out.divergence_before > 0
        assert out.relative_divergence < 1e-6
        # independent recomputation from the velocity faces after the step
        assert _fluid_divergence(sim) <= 1e-6 * out.divergence_before
        assert np.isclose(_fluid_divergence(sim), out.divergence_after, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("scene", SCENES)
@pytest.mark.parametrize("boundary", ["open", "closed"])
def test_stable_over_30_frames_2d(scene, boundary):
    sim = SmokeSimulation((48, 48), scene, boundary=boundary, seed=2)
    speeds = []
    for _ in range(30):
        out = sim.step()
        assert out.relative_divergence < 1e-6
        for u in sim.velocity:
            assert torch.isfinite(u).all()
        speeds.append(sim.max_speed())
        # CFL policy: dt never exceeds cfl * h / source velocity, nor dt_max
        assert 0 < out.dt <= min(sim.dt_max, sim.cfl * sim.h / sim.source["velocity"]) + 1e-15
    assert max(speeds) < 5.0  # source speed 1, buoyancy 1: a few domain lengths/s at most
    # multilinear semi-Lagrangian advection is monotone: density stays in [0, source density]
    assert float(sim.density.min()) >= -1e-12
    assert float(sim.density.max()) <= sim.source["density"] + 1e-12
    assert (sim.density[sim.flags == SOLID] == 0).all()


def test_smoke_rises():
    sim = SmokeSimulation((32, 32), "smoke-plume", seed=0)
    up = sim.up_axis
    heights = []
    for _ in range(25):
        sim.step()
        d = sim.density.sum(dim=1 - up)  # profile along y
        y = (torch.arange(32, dtype=torch.float64) + 0.5) * sim.h
        heights.append(float((d * y).sum() / d.sum()))
    assert heights[-1] > heights[0] + 0.1  # the centre of mass went up by > 10% of the box
    assert heights[-1] > sim.source["center"][up] + 0.1


def test_preconditioner_reuse_matches_rebuild():
    a = SmokeSimulation((24, 24), "smoke-obstacle", seed=6)
    b = SmokeSimulation((24, 24), "smoke-obstacle", seed=6, reuse_preconditioner=False)
    for k in range(3):
        oa, ob = a.step(), b.step()
        assert oa.result.method == ob.result.method == "pcg-amg"
        assert oa.result.info["preconditioner_reused"] == (k > 0)
        assert "preconditioner_reused" not in ob.result.info
        assert np.abs(oa.x - ob.x).max() <= 1e-6 * np.abs(ob.x).max()


def test_other_solver_method():
    out = SmokeSimulation((16, 16), solver="cg", rtol=1e-10).step()
    assert out.result.method == "cg" and out.result.converged
    assert out.relative_divergence < 1e-8


def test_fixed_dt_and_float32():
    sim = SmokeSimulation((16, 16), dt=0.01, dtype=torch.float32)
    outs = [sim.step() for _ in range(3)]
    assert all(o.dt == 0.01 for o in outs)
    assert sim.velocity[0].dtype == torch.float32
    assert outs[-1].b.dtype == np.float64 and outs[-1].x.dtype == np.float64
    assert outs[-1].relative_divergence < 1e-5  # float32 faces
    assert sim.time == pytest.approx(0.03)


# ----------------------------------------------------------- the system
@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("boundary", ["open", "closed"])
def test_written_matrix_is_the_stencil(dim, boundary):
    sim = SmokeSimulation(SHAPES[dim], "smoke-obstacle", boundary=boundary, seed=4)
    out = sim.step()
    out = sim.step()
    A = out.A
    n = int(np.prod(SHAPES[dim]))
    assert isinstance(A, scipy.sparse.csr_matrix) and A.shape == (n, n)
    assert (A != A.T).nnz == 0  # exactly symmetric
    expected_sides = ["solid"] * (2 * dim)
    if boundary == "open":
        expected_sides[2 * (dim - 2) + 1] = "empty"  # the +y side
    ref = PoissonGrid(SHAPES[dim], out.flags, boundary=tuple(expected_sides)).to_sparse()
    assert (A != ref).nnz == 0
    assert np.array_equal(A.indptr, ref.indptr) and np.array_equal(A.indices, ref.indices)
    solid = out.flags.reshape(-1) == SOLID
    assert solid.any()
    row_nnz = np.diff(A.indptr)
    assert (row_nnz[solid] == 0).all() and (row_nnz[~solid] > 0).all()
    assert abs(A[:, np.flatnonzero(solid)]).sum() == 0  # columns too
    assert (out.b[solid] == 0).all() and (out.x[solid] == 0).all()
    assert out.b.shape == out.x.shape == (n,) and out.grid_shape == SHAPES[dim]
    # x solves the written system to the requested tolerance
    r = np.linalg.norm(A @ out.x - out.b) / np.linalg.norm(out.b)
    if boundary == "closed":  # b is consistent: it sums to 0 over the (one) fluid region
        assert abs(out.b.sum()) <= 1e-10 * np.abs(out.b).sum()
    assert r <= 1e-8 * 1.01


@pytest.mark.parametrize("dim", [2, 3])
def test_closed_box_is_singular_and_solves(dim):
    sim = SmokeSimulation(SHAPES[dim], "smoke-obstacle", boundary="closed", seed=5)
    out = sim.step()
    fluid = (out.flags.reshape(-1) == FLUID).astype(np.float64)
    assert np.abs(out.A @ fluid).max() == 0  # constant on the fluid is a null vector
    assert out.result.converged
    assert out.result.info["null_space"] == 1
    assert out.relative_divergence < 1e-6
    # open box: the +y side is Dirichlet, no null space
    out_open = SmokeSimulation(SHAPES[dim], "smoke-obstacle", boundary="open", seed=5).step()
    assert out_open.result.info.get("null_space", 0) == 0
    assert np.abs(out_open.A @ fluid).max() > 0


# ------------------------------------------------------------- obstacles
def _rasterize(shape, obstacles):
    h = 1.0 / max(shape)
    centres = np.meshgrid(*[(np.arange(s) + 0.5) * h for s in shape], indexing="ij")
    solid = np.zeros(shape, dtype=bool)
    for ob in obstacles:
        d = [c - c0 for c, c0 in zip(centres, ob["center"])]
        if ob["kind"] == "sphere":
            solid |= sum(x * x for x in d) <= ob["radius"] ** 2
        else:
            inside = np.ones(shape, dtype=bool)
            for x, hs in zip(d, ob["half_size"]):
                inside &= np.abs(x) <= hs
            solid |= inside
    return solid


@pytest.mark.parametrize("dim", [2, 3])
def test_explicit_obstacles_are_solid(dim):
    shape = (16,) * dim
    obstacles = [
        {"kind": "sphere", "center": [0.5] * dim, "radius": 0.15},
        {"kind": "box", "center": [0.75] + [0.3] * (dim - 1), "half_size": 0.1},
    ]
    sim = SmokeSimulation(shape, "smoke-plume", obstacles=obstacles)
    flags = sim.flags.cpu().numpy()
    assert sim.obstacles[1]["half_size"] == [0.1] * dim  # scalar half-size broadcast
    solid = _rasterize(shape, sim.obstacles)
    assert solid.sum() > 10
    assert (flags[solid] == SOLID).all()
    assert (flags[~solid] == FLUID).all()  # nothing sealed off here
    assert sim.sealed_cells == 0
    out = sim.step()
    assert (out.flags == flags).all()
    for u, fx in zip(sim.velocity, sim._fixed):  # velocity is zero on every solid face
        assert (u[fx] == 0).all()


def test_plume_has_no_obstacles_and_obstacle_scene_has_some():
    assert SmokeSimulation((16, 16), "smoke-plume", seed=3).obstacles == []
    sim = SmokeSimulation((32, 32), "smoke-obstacle", seed=3)
    assert 1 <= len(sim.obstacles) <= 3
    flags = sim.flags.cpu().numpy()
    solid = _rasterize((32, 32), sim.obstacles)
    assert (flags[solid] == SOLID).all()
    assert (flags == SOLID).sum() == solid.sum() + sim.sealed_cells


def test_seeds_give_different_placements():
    def flags(seed, dim=2):
        return SmokeSimulation(SHAPES[dim], "smoke-obstacle", seed=seed).flags.cpu().numpy()

    base = flags(0)
    assert np.array_equal(base, flags(0))  # reproducible
    assert all(not np.array_equal(base, flags(s)) for s in (1, 2, 3))
    assert not np.array_equal(flags(0, 3), flags(1, 3))
    a = SmokeSimulation((32, 32), "smoke-obstacle", seed=7).obstacles
    b = SmokeSimulation((32, 32), "smoke-obstacle", seed=8).obstacles
    assert a != b


def test_sealed_fluid_becomes_solid():
    # a ring of boxes around a fluid pocket: the pocket is cut off and turned SOLID
    ring = [
        {"kind": "box", "center": [0.6, 0.5], "half_size": [0.03, 0.2]},
        {"kind": "box", "center": [0.9, 0.5], "half_size": [0.03, 0.2]},
        {"kind": "box", "center": [0.75, 0.33], "half_size": [0.18, 0.03]},
        {"kind": "box", "center": [0.75, 0.67], "half_size": [0.18, 0.03]},
    ]
    sim = SmokeSimulation((32, 32), "smoke-plume", boundary="closed", obstacles=ring)
    assert sim.sealed_cells > 0
    assert sim.flags[24, 16] == SOLID  # inside the ring
    out = sim.step()
    assert out.result.info["null_space"] == 1 and out.result.converged


# -------------------------------------------------------------- the file
def test_generate_writes_readable_file(tmp_path):
    path = tmp_path / "smoke.h5"
    ret = generate_poisson_systems(
        path, scene="smoke-obstacle", dim=2, n=16, frames=3, seed=11, warmup=2, progress=False
    )
    assert ret == path and path.exists()
    with SystemsFile(path, verify=True) as f:
        assert len(f) == 3
        params = f.attrs["parameters"]
        assert f.attrs["seed"] == 11
        assert params["scene"] == "smoke-obstacle" and params["dim"] == 2 and params["n"] == 16
        assert params["frames"] == 3 and params["warmup"] == 2 and params["boundary"] == "open"
        assert params["obstacles"] and params["dt_policy"]["kind"] == "cfl"
        ref = SmokeSimulation((16, 16), "smoke-obstacle", seed=11)
        assert params["obstacles"] == ref.obstacles
        for k, s in enumerate(f):
            assert s.grid_shape == (16, 16)
            assert s.attrs["frame"] == 2 + k and s.attrs["scene"] == "smoke-obstacle"
            assert s.attrs["dt"] > 0
            assert (s.A != ref.A).nnz == 0
            assert np.array_equal(s.flags, ref.flags.cpu().numpy())
            assert s.x is not None and s.b.shape == (1, 256)
            r = np.linalg.norm(s.A @ s.x[0] - s.b[0]) / np.linalg.norm(s.b[0])
            assert r <= 1.01e-8
    # the same run again gives the same systems (up to the AMG setup's roundoff:
    # pyamg's spectral-radius estimate starts from a random vector)
    path2 = tmp_path / "again.h5"
    generate_poisson_systems(path2, scene="smoke-obstacle", dim=2, n=16, frames=3, seed=11, warmup=2, progress=False)
    with SystemsFile(path) as f, SystemsFile(path2) as g:
        for k in range(3):
            bf, bg = f.rhs(k), g.rhs(k)
            assert np.abs(bf - bg).max() <= 1e-9 * np.abs(bf).max()


def test_generate_3d_closed(tmp_path):
    path = tmp_path / "smoke3d.h5"
    generate_poisson_systems(path, scene="smoke-plume", dim=3, n=10, frames=2, boundary="closed", progress=False)
    with SystemsFile(path) as f:
        assert len(f) == 2
        assert f.attrs["parameters"]["boundary"] == "closed"
        s = f[1]
        assert s.grid_shape == (10, 10, 10) and s.attrs["frame"] == 1


# ----------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "kwargs, exc, word",
    [
        (dict(shape=(16,)), ValueError, "shape"),
        (dict(shape=(4, 16)), ValueError, "shape"),
        (dict(shape=(16, 16), scene="smoke"), ValueError, "scene"),
        (dict(shape=(16, 16), boundary="periodic"), ValueError, "boundary"),
        (dict(shape=(16, 16), dt=-1.0), ValueError, "dt"),
        (dict(shape=(16, 16), rtol=0.0), ValueError, "rtol"),
        (dict(shape=(16, 16), dtype=torch.int32), TypeError, "dtype"),
        (dict(shape=(16, 16), source={"speed": 1.0}), ValueError, "source"),
        (dict(shape=(16, 16), obstacles=[{"kind": "cone", "center": [0.5, 0.5]}]), ValueError, "kind"),
        (dict(shape=(16, 16), obstacles=[{"kind": "sphere", "center": [0.5]}]), ValueError, "center"),
        (dict(shape=(16, 16), obstacles=[{"kind": "box", "center": [0.5, 0.5]}]), ValueError, "half_size"),
        (dict(shape=(16, 16), obstacles="box"), TypeError, "obstacles"),
        (dict(shape=(16, 16), seed=-1), ValueError, "seed"),
    ],
)
def test_bad_arguments(kwargs, exc, word):
    shape = kwargs.pop("shape")
    with pytest.raises(exc, match=word):
        SmokeSimulation(shape, **kwargs)


def test_generate_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="dim"):
        generate_poisson_systems(tmp_path / "a.h5", scene="smoke-plume", dim=4, n=16, frames=1)
    with pytest.raises(ValueError, match="frames"):
        generate_poisson_systems(tmp_path / "a.h5", scene="smoke-plume", dim=2, n=16, frames=0)
    with pytest.raises(ValueError, match="n must"):
        generate_poisson_systems(tmp_path / "a.h5", scene="smoke-plume", dim=2, n=4, frames=1)
    assert not (tmp_path / "a.h5").exists()
