"""Darcy flow: FD assembly, GRF, solver, generator and the PDE data readers."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest
import scipy.io
import scipy.sparse
from krylearn.problems.darcy import (
    _centres,
    darcy_coefficient,
    darcy_sample,
    generate_darcy,
    grf_neumann,
    sample_rng,
    solve_darcy,
)
from krylearn.utils.errors import FormatError
from krylearn.datasets.pde_formats import detect_darcy_format, read_darcy, write_darcy
from krylearn.operators.darcy import darcy_system, embed_interior, interior


# ---------------------------------------------------------------------------
# assembly
# ---------------------------------------------------------------------------
def _solve_gwf_matrix(coef):
    """The matrix of the benchmark's solve_gwf.m, transcribed block by block (MATLAB's column-major order)."""
    K = coef.shape[0]
    m = K - 2
    c = coef  # MATLAB coef(r, j) is c[r-1, j-1]
    A = np.zeros((m * m, m * m))
    for j in range(2, K):  # block column j (1-based), rows r = 2..K-1
        blk = slice((j - 2) * m, (j - 1) * m)
        r = np.arange(2, K)
        diag = ((c[r - 2, j - 1] + c[r - 1, j - 1]) / 2 + (c[r, j - 1] + c[r - 1, j - 1]) / 2
                + (c[r - 1, j - 2] + c[r - 1, j - 1]) / 2 + (c[r - 1, j] + c[r - 1, j - 1]) / 2)
        off = -(c[np.arange(1, K - 2), j - 1] + c[np.arange(2, K - 1), j - 1]) / 2  # rows 2..K-2 with 3..K-1
        A[blk, blk] = np.diag(diag) + np.diag(off, 1) + np.diag(off, -1)
        if j != K - 1:
            nxt = slice((j - 1) * m, j * m)
            cpl = np.diag(-(c[r - 1, j - 1] + c[r - 1, j]) / 2)
            A[blk, nxt] = cpl
            A[nxt, blk] = cpl
    return A * (K - 1) ** 2


def test_system_equals_solve_gwf_up_to_ordering():
    rng = np.random.default_rng(1)
    K = 8
    coef = rng.uniform(1.0, 5.0, (K, K))
    A, b = darcy_system(coef)
    ref = _solve_gwf_matrix(coef)
    m = K - 2
    # our unknown (i, j) -> row i*m + j ; MATLAB's -> i + j*m
    perm = np.array([i + j * m for i in range(m) for j in range(m)])
    np.testing.assert_allclose(A.toarray(), ref[np.ix_(perm, perm)], rtol=1e-14, atol=0)
    np.testing.assert_array_equal(b, np.ones(m * m))


@pytest.mark.parametrize("shape", [(9, 9), (6, 11), (3, 7)])
def test_system_symmetric_positive_definite(shape):
    a = np.random.default_rng(2).uniform(0.1, 10.0, shape)
    A, _ = darcy_system(a)
    assert isinstance(A, scipy.sparse.csr_matrix)
    assert A.shape == ((shape[0] - 2) * (shape[1] - 2),) * 2
    assert abs(A - A.T).max() == 0.0
    assert np.linalg.eigvalsh(A.toarray()).min() > 0
    np.linalg.cholesky(A.toarray())
    assert A.has_sorted_indices and (A.data != 0).all()


def test_system_rejects_bad_coefficient():
    with pytest.raises(ValueError, match="a must be strictly positive"):
        darcy_system(np.zeros((5, 5)))
    with pytest.raises(ValueError, match="NaN"):
        darcy_system(np.full((5, 5), np.nan))
    with pytest.raises(ValueError, match="s must be >= 3"):
        darcy_system(np.ones((2, 5)))
    with pytest.raises(ValueError, match="f must be"):
        darcy_system(np.ones((5, 5)), np.ones((4, 4)))
    with pytest.raises(ValueError, match="a must be a 2-D"):
        darcy_system(np.ones(25))


def test_interior_embed_roundtrip():
    u = np.random.default_rng(3).standard_normal((2, 3, 7, 6))
    v = interior(u)
    assert v.shape == (2, 3, 20)
    w = embed_interior(v, (7, 6))
    np.testing.assert_array_equal(w[..., 1:-1, 1:-1], u[..., 1:-1, 1:-1])
    assert (w[..., 0, :] == 0).all() and (w[..., :, -1] == 0).all()
    with pytest.raises(ValueError, match="u_int must have shape"):
        embed_interior(v, 8)


def _manufactured(s):
    """u = sin(pi x) sin(pi y), a = 2 + sin(2 pi x) cos(3 pi y): f = -div(a grad u) at the nodes."""
    x = np.linspace(0, 1, s)
    X, Y = np.meshgrid(x, x, indexing="ij")
    pi = np.pi
    u = np.sin(pi * X) * np.sin(pi * Y)
    a = 2 + np.sin(2 * pi * X) * np.cos(3 * pi * Y)
    ax, ay = 2 * pi * np.cos(2 * pi * X) * np.cos(3 * pi * Y), -3 * pi * np.sin(2 * pi * X) * np.sin(3 * pi * Y)
    ux, uy = pi * np.cos(pi * X) * np.sin(pi * Y), pi * np.sin(pi * X) * np.cos(pi * Y)
    lap = -2 * pi ** 2 * u
    f = -(ax * ux + ay * uy + a * lap)
    return a, f, u


def test_second_order_convergence():
    errors = []
    for s in (17, 33, 65):
        a, f, u = _manufactured(s)
        A, b = darcy_system(a, f)
        uh = embed_interior(scipy.sparse.linalg.spsolve(A.tocsc(), b), s)
        errors.append(np.abs(uh - u).max())
    ratios = [errors[0] / errors[1], errors[1] / errors[2]]
    assert all(3.6 < r < 4.4 for r in ratios), (errors, ratios)


# ---------------------------------------------------------------------------
# solve
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def coefficient65():
    return darcy_coefficient(grf_neumann(65, sample_rng(0, 0)))


def test_solve_darcy_residual_and_methods_agree(coefficient65):
    a = coefficient65
    u, info = solve_darcy(a, rtol=1e-10, method="pcg-amg", return_info=True)
    A, b = darcy_system(a)
    assert np.linalg.norm(b - A @ interior(u)) <= 1e-10 * np.linalg.norm(b)
    assert info["iterations"] > 0 and info["residual"] <= 1e-10
    assert (u[0] == 0).all() and (u[-1] == 0).all() and (u[:, 0] == 0).all() and (u[:, -1] == 0).all()
    assert u[1:-1, 1:-1].min() > 0  # maximum principle, f = 1 > 0
    ud = solve_darcy(a, rtol=1e-10, method="direct")
    np.testing.assert_allclose(u, ud, rtol=0, atol=1e-8 * np.abs(ud).max())


def test_solve_darcy_warm_start_saves_iterations(coefficient65):
    a = coefficient65
    exact = solve_darcy(a, method="direct")
    _, cold = solve_darcy(a, method="cg", rtol=1e-8, return_info=True)
    guess = exact * (1 + 1e-4 * np.random.default_rng(5).standard_normal(exact.shape))
    uw, warm = solve_darcy(a, method="cg", rtol=1e-8, x0=guess, return_info=True)
    assert warm["iterations"] < cold["iterations"]
    np.testing.assert_allclose(uw, exact, atol=1e-6 * np.abs(exact).max())
    with pytest.raises(ValueError, match="x0 must have the shape"):
        solve_darcy(a, method="cg", x0=np.zeros((3, 3)))


def test_solve_darcy_fno_grid_is_second_order_at_cell_centres():
    # smooth coefficient given at the cell centres: the spline round trip of the benchmark adds O(h^2)
    pi = np.pi
    errs = []
    for s in (33, 65):
        c = _centres(s)
        X, Y = np.meshgrid(c, c, indexing="ij")
        a = 2 + np.sin(2 * pi * X) * np.cos(3 * pi * Y)
        u_ex = np.sin(pi * X) * np.sin(pi * Y)
        ax, ay = 2 * pi * np.cos(2 * pi * X) * np.cos(3 * pi * Y), -3 * pi * np.sin(2 * pi * X) * np.sin(3 * pi * Y)
        ux, uy = pi * np.cos(pi * X) * np.sin(pi * Y), pi * np.sin(pi * X) * np.cos(pi * Y)
        f = -(ax * ux + ay * uy + a * (-2 * pi ** 2 * u_ex))
        u = solve_darcy(a, method="direct", f=f, grid="fno")
        errs.append(np.abs(u - u_ex).max())
    assert errs[0] / errs[1] > 3.0, errs


def test_solve_darcy_fno_grid_handles_spline_overshoot():
    a = darcy_coefficient(grf_neumann(101, sample_rng(3, 1)))
    u, info = solve_darcy(a, method="pcg-amg", grid="fno", return_info=True)
    assert info["residual"] <= 1e-10
    assert info["nonpositive_nodes"] > 0 and info["method"] == "direct"  # this seed overshoots
    un = solve_darcy(a, method="direct", grid="node")
    # same problem on a grid shifted by half a cell: close, not equal
    assert 0 < np.linalg.norm(u - un) / np.linalg.norm(un) < 0.05


def test_solve_darcy_bad_arguments(coefficient65):
    with pytest.raises(ValueError, match="grid must be one of"):
        solve_darcy(coefficient65, grid="cell")
    with pytest.raises(ValueError, match="a must be a square"):
        solve_darcy(np.ones((5, 6)))
    with pytest.raises(ValueError, match="method must be one of"):
        solve_darcy(coefficient65, method="nope")


# ---------------------------------------------------------------------------
# random field and coefficient
# ---------------------------------------------------------------------------
def test_grf_matches_matlab_idct2_definition():
    s = 12
    field = grf_neumann(s, np.random.default_rng(7))
    # rebuild GRF.m by hand with MATLAB's idct: x(n) = sum_k w(k) X(k) cos(pi (2n+1) k / (2N))
    xi = np.random.default_rng(7).standard_normal((s, s))
    k = np.arange(s)
    coef = 3.0 * (np.pi ** 2 * (k[:, None] ** 2 + k[None, :] ** 2) + 9.0) ** -1.0
    L = s * coef * xi
    L[0, 0] = 0
    w = np.where(k == 0, np.sqrt(1 / s), np.sqrt(2 / s))
    C = w[None, :] * np.cos(np.pi * (2 * k[:, None] + 1) * k[None, :] / (2 * s))  # C[n, k]
    np.testing.assert_allclose(field, C @ L @ C.T, rtol=1e-12, atol=1e-14)


def test_grf_statistics():
    s, m = 24, 400
    rng = np.random.default_rng(11)
    fields = np.stack([grf_neumann(s, rng) for _ in range(m)])
    np.testing.assert_allclose(fields.mean(axis=(1, 2)), 0, atol=1e-12)  # constant mode removed
    # E[mean_x field^2] = sum_{k != 0} coef_k^2 (orthonormal basis, L = s coef xi)
    k = np.arange(s)
    coef = 3.0 / (np.pi ** 2 * (k[:, None] ** 2 + k[None, :] ** 2) + 9.0)
    coef[0, 0] = 0
    expected = (coef ** 2).sum()
    assert abs((fields ** 2).mean() / expected - 1) < 0.1
    pointwise = fields.mean(axis=0)
    assert np.abs(pointwise).max() < 5 * fields.std() / np.sqrt(m)
    # covariance decays with distance
    c = s // 2
    center = fields[:, c, c]
    near = np.mean(center * fields[:, c, c + 1])
    far = np.mean(center * fields[:, c, 0])
    assert near > 0.8 * np.mean(center ** 2)
    assert abs(far) < 0.5 * near


def test_grf_reproducible_and_checked():
    np.testing.assert_array_equal(grf_neumann(16, 3), grf_neumann(16, np.random.default_rng(3)))
    assert not np.array_equal(grf_neumann(16, 3), grf_neumann(16, 4))
    with pytest.raises(ValueError, match="tau"):
        grf_neumann(16, 0, tau=-1)
    with pytest.raises(TypeError, match="rng"):
        grf_neumann(16, "seed")


def test_coefficient_two_values():
    field = np.array([[-1.0, 0.0], [2.0, -1e-300]])
    a = darcy_coefficient(field)
    np.testing.assert_array_equal(a, [[3.0, 12.0], [12.0, 3.0]])
    a = darcy_coefficient(grf_neumann(40, 0), hi=12, lo=3)
    assert set(np.unique(a)) == {3.0, 12.0}
    with pytest.raises(ValueError, match="lo"):
        darcy_coefficient(field, lo=0)


def test_sample_rng_is_spawn_child():
    children = np.random.SeedSequence(5).spawn(4)
    for i, child in enumerate(children):
        expect = np.random.default_rng(child).standard_normal(3)
        np.testing.assert_array_equal(sample_rng(5, i).standard_normal(3), expect)


# ---------------------------------------------------------------------------
# generator
# ---------------------------------------------------------------------------
def test_generate_layout_reproducible_worker_independent(tmp_path):
    p1, p2, p3 = tmp_path / "w1.h5", tmp_path / "w2.h5", tmp_path / "n2.h5"
    generate_darcy(p1, 4, res=41, sub=5, seed=3, workers=1, progress=False)
    generate_darcy(p2, 4, res=41, sub=5, seed=3, workers=2, progress=False)
    generate_darcy(p3, 2, res=41, sub=5, seed=3, workers=1, progress=False, compression="gzip")
    with h5py.File(p1, "r") as f, h5py.File(p2, "r") as g:
        assert f["nu"].shape == (4, 9, 9) and f["nu"].dtype == np.float32
        assert f["tensor"].shape == (4, 1, 9, 9) and f["tensor"].dtype == np.float32
        assert f["nu"].chunks == (1, 9, 9) and f["tensor"].chunks == (1, 1, 9, 9)
        np.testing.assert_allclose(f["x-coordinate"][:], _centres(41)[::5], rtol=1e-6)
        np.testing.assert_array_equal(f["x-coordinate"][:], f["y-coordinate"][:])
        for key in ("generator", "version", "seed", "res", "sub", "alpha", "tau", "hi", "lo", "rtol", "solver",
                    "grid", "seed_scheme"):
            assert key in f.attrs, key
        assert f.attrs["seed"] == 3 and f.attrs["res"] == 41 and f.attrs["sub"] == 5
        np.testing.assert_array_equal(f["nu"][:], g["nu"][:])
        np.testing.assert_allclose(f["tensor"][:], g["tensor"][:], rtol=1e-6, atol=1e-12)
    d1, d3 = read_darcy(p1), read_darcy(p3)
    assert d1.source == "krylearn" and len(d1) == 4 and d1.attrs["seed"] == 3
    np.testing.assert_array_equal(d3.a, d1.a[:2])  # a sample does not depend on n
    np.testing.assert_allclose(d3.u, d1.u[:2], rtol=1e-6, atol=1e-12)
    # sample 2 computed alone equals the stored one
    a2, u2, _ = darcy_sample(3, 2, res=41, sub=5, method="direct")
    np.testing.assert_array_equal(d1.a[2], a2)
    np.testing.assert_allclose(d1.u[2], u2, rtol=1e-6, atol=1e-12)
    assert set(np.unique(d1.a)) <= {3.0, 12.0}
    assert (d1.u.max(axis=(1, 2)) > 0).all()
    # another seed gives other data
    generate_darcy(p3, 2, res=41, sub=5, seed=4, workers=1, progress=False)
    assert not np.array_equal(read_darcy(p3).a, d1.a[:2])


def test_generate_node_grid_matches_solve(tmp_path):
    p = tmp_path / "node.h5"
    generate_darcy(p, 2, res=21, sub=2, seed=0, workers=1, progress=False, grid="node", method="pcg-amg")
    d = read_darcy(p)
    assert d.a.shape == (2, 11, 11)
    np.testing.assert_allclose(d.x, np.linspace(0, 1, 21)[::2], rtol=1e-6)
    a = darcy_coefficient(grf_neumann(21, sample_rng(0, 1)))
    u = solve_darcy(a, method="direct")
    np.testing.assert_allclose(d.u[1], u[::2, ::2], rtol=1e-6, atol=1e-9)
    assert (d.u[:, 0, :] == 0).all()


def test_generate_failure_leaves_nothing(tmp_path):
    p = tmp_path / "bad.h5"
    with pytest.raises(ValueError, match="method"):
        generate_darcy(p, 2, res=21, sub=2, workers=1, progress=False, grid="node", method="nope")
    assert os.listdir(tmp_path) == []
    with pytest.raises(ValueError, match="sub"):
        generate_darcy(p, 2, res=21, sub=20, progress=False)
    with pytest.raises(ValueError, match="grid"):
        generate_darcy(p, 2, res=21, grid="centre", progress=False)


# ---------------------------------------------------------------------------
# readers
# ---------------------------------------------------------------------------
def _fields(n=5, s=7, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.choice([3.0, 12.0], size=(n, s, s)).astype(np.float32)
    u = rng.standard_normal((n, s, s)).astype(np.float32)  # not symmetric: catches transposes
    return a, u


def _pdebench(path, a, u, **extra):
    with h5py.File(path, "w") as f:
        f["nu"] = extra.pop("nu", a)
        f["tensor"] = extra.pop("tensor", u[:, None])
        f["x-coordinate"] = (np.arange(a.shape[1]) + 0.5) / a.shape[1]
        f["y-coordinate"] = (np.arange(a.shape[2]) + 0.5) / a.shape[2]
        f.attrs["beta"] = 1.0
        for k, v in extra.items():
            f[k] = v


def test_read_pdebench_slice_and_sub(tmp_path):
    a, u = _fields()
    p = tmp_path / "2D_DarcyFlow_beta1.0_Train.hdf5"
    _pdebench(p, a, u)
    d = read_darcy(p)
    assert d.source == "pdebench" and d.attrs["beta"] == 1.0
    np.testing.assert_array_equal(d.a, a)
    np.testing.assert_array_equal(d.u, u)
    np.testing.assert_allclose(d.x, (np.arange(7) + 0.5) / 7)
    part = read_darcy(p, start=1, count=2, sub=3)
    np.testing.assert_array_equal(part.a, a[1:3, ::3, ::3])
    np.testing.assert_array_equal(part.u, u[1:3, ::3, ::3])
    assert part.x.shape == (3,) and part.start == 1
    with pytest.raises(ValueError, match="start"):
        read_darcy(p, start=9)
    with pytest.raises(ValueError, match="count"):
        read_darcy(p, count=-1)
    with pytest.raises(ValueError, match="start \\+ count"):
        read_darcy(p, start=3, count=5)


def test_read_only_checks_the_slice(tmp_path):
    a, u = _fields()
    a[4, 2, 2] = np.nan
    p = tmp_path / "nan.h5"
    _pdebench(p, a, u)
    assert len(read_darcy(p, count=4)) == 4
    with pytest.raises(FormatError, match=r"nu: non-finite.*sample 4"):
        read_darcy(p)


def test_read_fno_mat_v5(tmp_path):
    a, u = _fields(n=4, s=6, seed=1)
    p = tmp_path / "piececonst_small.mat"
    scipy.io.savemat(p, {"coeff": a.astype(np.float64), "sol": u, "Kcoeff": a})
    assert detect_darcy_format(p) == "fno-mat-v5"
    d = read_darcy(p, start=1, count=2)
    np.testing.assert_array_equal(d.a, a[1:3])
    np.testing.assert_array_equal(d.u, u[1:3])
    np.testing.assert_allclose(d.x, np.linspace(0, 1, 6))
    scipy.io.savemat(p, {"coeff": a})
    with pytest.raises(FormatError, match="sol: missing variable"):
        read_darcy(p)
    scipy.io.savemat(p, {"coeff": a, "sol": u[:, :5]})
    with pytest.raises(FormatError, match="sol: shape"):
        read_darcy(p)


def _mat73(path, **arrays):
    """A MATLAB v7.3-like file: 512-byte MATLAB header block, column-major arrays (axes reversed)."""
    with h5py.File(path, "w", userblock_size=512) as f:
        for k, v in arrays.items():
            f.create_dataset(k, data=np.asarray(v).T)  # .T reverses all axes, as MATLAB's layout does
            f[k].attrs["MATLAB_class"] = np.bytes_("single" if v.dtype == np.float32 else "double")
    with open(path, "r+b") as fh:
        fh.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 .")


def test_read_fno_mat_v73(tmp_path):
    a, u = _fields(n=5, s=8, seed=2)
    p = tmp_path / "piececonst_v73.mat"
    _mat73(p, coeff=a.astype(np.float64), sol=u)
    assert detect_darcy_format(p) == "fno-mat-v7.3"
    d = read_darcy(p)
    np.testing.assert_array_equal(d.a, a)
    np.testing.assert_array_equal(d.u, u)
    d = read_darcy(p, start=2, count=3, sub=2)
    np.testing.assert_array_equal(d.u, u[2:5, ::2, ::2])
    _mat73(p, coeff=a, sol=u[:4])
    with pytest.raises(FormatError, match="sol: MATLAB shape"):
        read_darcy(p)


def test_write_darcy_roundtrip(tmp_path):
    a, u = _fields(n=3, s=5)
    p = tmp_path / "mine.h5"
    write_darcy(p, a, u, attrs={"note": "hand"})
    d = read_darcy(p)
    assert d.source == "krylearn" and d.attrs["note"] == "hand"
    np.testing.assert_array_equal(d.a, a)
    np.testing.assert_array_equal(d.u, u)
    with pytest.raises(ValueError, match="u must have the shape"):
        write_darcy(p, a, u[:2])


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"tensor": np.zeros((5, 2, 7, 7), np.float32)}, r"tensor: expected shape \(N, 1, s1, s2\)"),
        ({"tensor": np.zeros((4, 1, 7, 7), np.float32)}, "tensor: 4 samples, but 'nu' has 5"),
        ({"tensor": np.zeros((5, 1, 6, 7), np.float32)}, "tensor: grid"),
        ({"tensor": np.zeros((5, 7, 7), np.float32)}, "tensor: expected 4 dimensions"),
        ({"nu": np.array([b"x"] * 5)}, "nu: expected a real numeric dataset"),
    ],
)
def test_malformed_pdebench_names_key(tmp_path, extra, message):
    a, u = _fields()
    p = tmp_path / "bad.h5"
    _pdebench(p, a, u, **extra)
    with pytest.raises(FormatError, match=message) as e:
        read_darcy(p)
    assert str(p) in str(e.value)


def test_missing_and_foreign_files(tmp_path):
    p = tmp_path / "missing_tensor.h5"
    with h5py.File(p, "w") as f:
        f["nu"] = np.ones((2, 4, 4))
    with pytest.raises(FormatError, match="tensor: missing dataset"):
        read_darcy(p)
    p = tmp_path / "other.h5"
    with h5py.File(p, "w") as f:
        f["kspace"] = np.ones(3)
    with pytest.raises(FormatError, match="nu: no Darcy data"):
        read_darcy(p)
    p = tmp_path / "darcy_train_16.pt"
    p.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(FormatError, match="pickled torch file"):
        read_darcy(p)
    p = tmp_path / "noise.bin"
    p.write_bytes(os.urandom(256).replace(b"\x80", b"\x00").replace(b"PK", b"pk").replace(b"\x89HDF", b"xxxx"))
    with pytest.raises(FormatError, match="neither an HDF5 file nor a MATLAB"):
        read_darcy(p)
    with pytest.raises(FileNotFoundError):
        read_darcy(tmp_path / "nope.h5")
