"""Sequences of linear systems (Learning to Relax): generators, HDF5 round trip, scale/shift schema, CLI."""

import math

import h5py
import numpy as np
import pytest
import scipy.sparse as sp

from krylearn.cli.main import main
from krylearn.datasets import FormatError
from krylearn.problems.sequences import (
    Sequence,
    heat2d,
    heat_kappa,
    laplacian_2d,
    read_sequence,
    shifted_laplacian,
    write_sequence,
)
from krylearn.datasets.systems import LinearSystem, SystemsFile, SystemsWriter, affine_matrix, write_systems


def _lap1d(m):
    return sp.diags([-np.ones(m - 1), 2 * np.ones(m), -np.ones(m - 1)], [-1, 0, 1])


def _delsq(m):
    """Independent 5-point Laplacian (MATLAB delsq(numgrid('S', m + 2)))."""
    I = sp.identity(m)
    return (sp.kron(I, _lap1d(m)) + sp.kron(_lap1d(m), I)).toarray()


# ----------------------------------------------------------------- synthetic
def test_laplacian_matches_delsq():
    L = laplacian_2d(10)
    assert L.shape == (100, 100) and L.has_canonical_format
    np.testing.assert_array_equal(L.toarray(), _delsq(10))
    assert np.all(L.diagonal() == 4.0)
    np.testing.assert_allclose(laplacian_2d(5, h=0.5).toarray(), _delsq(5) / 0.25, rtol=0, atol=0)


@pytest.mark.parametrize("variance", ["low", "high"])
def test_shifted_statistics_and_spd(variance):
    seq = shifted_laplacian(300, variance=variance, seed=3)
    assert len(seq) == 300 and seq.context_range == (-0.15, 0.45)
    c = seq.contexts
    assert c.shape == (300,) and np.all((c >= -0.15) & (c <= 0.45))
    # both Beta laws give E[c] = -0.15 + 0.6 * 1/4 = 0
    assert abs(c.mean()) < 0.03
    L = _delsq(10)
    lam_L = np.linalg.eigvalsh(L)
    for t, s in enumerate(seq):
        assert s.attrs["context"] == c[t] and s.attrs["step"] == t
        assert s.x is None and s.b.shape == (1, 100)
        assert np.linalg.norm(s.b[0]) <= math.sqrt(100)
        A = s.A.toarray()
        np.testing.assert_array_equal(A, L + c[t] * np.eye(100))
        if t % 10 == 0:  # SPD: smallest eigenvalue > 0 (checked densely on a subset, through the shift on all)
            assert np.linalg.eigvalsh(A)[0] > 0
    assert np.all(lam_L[0] + c > 0)
    assert seq.meta["seed"] == 3 and seq.meta["variance"] == variance and seq.meta["n"] == 100


def test_shifted_variances_differ():
    lo = shifted_laplacian(2000, variance="low", seed=0).contexts
    hi = shifted_laplacian(2000, variance="high", seed=0).contexts
    # Var = 0.36 * ab / ((a+b)^2 (a+b+1)): low 0.0075, high 0.0225
    assert 0.006 < lo.var() < 0.009
    assert 0.018 < hi.var() < 0.027


def test_shifted_reproducible():
    a, b = shifted_laplacian(50, seed=7), shifted_laplacian(50, seed=7)
    c = shifted_laplacian(50, seed=8)
    np.testing.assert_array_equal(a.contexts, b.contexts)
    for t in (0, 17, 49):
        np.testing.assert_array_equal(a[t].b, b[t].b)
        assert (a[t].A != b[t].A).nnz == 0
    assert not np.array_equal(a.contexts, c.contexts)
    assert a.name == b.name != c.name


def test_shifted_bad_arguments():
    with pytest.raises(ValueError, match="variance"):
        shifted_laplacian(10, variance="medium")
    with pytest.raises(ValueError, match="T must be"):
        shifted_laplacian(0)
    with pytest.raises(ValueError, match="grid"):
        shifted_laplacian(10, grid=12)  # lambda_min(L) < 0.15: indefinite
    with pytest.raises(ValueError, match="seed"):
        shifted_laplacian(10, seed=-1)


def test_sequence_protocol():
    seq = shifted_laplacian(20, seed=1)
    assert [s.attrs["step"] for s in seq] == list(range(20))
    np.testing.assert_array_equal(seq[-1].b, seq[19].b)
    sub = seq[5:15]
    assert len(sub) == 10 and sub[0].attrs["step"] == 5
    np.testing.assert_array_equal(sub.contexts, seq.contexts[5:15])
    assert sub.context_range == seq.context_range
    with pytest.raises(IndexError):
        seq[20]
    with pytest.raises(TypeError):
        seq["a"]
    with pytest.raises(ValueError, match="context_range"):
        Sequence("x", 2, lambda t: None, contexts=[0.0, 1.0])
    lst = Sequence.from_systems([LinearSystem(sp.identity(3), np.ones(3), attrs={"context": c}) for c in (1.0, 2.0)])
    assert lst.context_range == (1.0, 2.0) and len(lst) == 2


# ---------------------------------------------------------------------- heat
def _bump(X, Y, cx, cy, r):
    q = ((X - cx) ** 2 + (Y - cy) ** 2) / r**2
    with np.errstate(divide="ignore"):
        return np.where(q < 1, np.exp(1 - 1 / (1 - np.minimum(q, 0.999999))), 0.0)


@pytest.fixture(scope="module")
def heat():
    # dt = 0.02 over 50 steps spans t in [0, 1]: both the kappa = 0.1 sin and the kappa = -10 sin phases
    return heat2d(8, 50, dt=0.02)


def test_heat_reference_and_matrices(heat):
    n, dt, h = 8, 0.02, 1 / 9
    lap = -_delsq(n) / h**2  # Lap_h, negative definite
    xs = np.arange(1, n + 1) * h
    X, Y = np.meshgrid(xs, xs, indexing="ij")
    X, Y = X.ravel(), Y.ravel()
    u_prev = _bump(X, Y, 0.5, 0.5, 0.25)
    assert heat.meta["reference_max_rel_residual"] <= 1e-11
    assert heat.context_range[0] < 0.1 and 5 < heat.context_range[1] <= 10
    for t, s in enumerate(heat):
        th = (t + 0.5) * dt
        kappa = max(0.1 * math.sin(2 * math.pi * th), -10 * math.sin(2 * math.pi * th))
        assert s.attrs["context"] == pytest.approx(kappa, rel=1e-14, abs=1e-15) == heat.contexts[t]
        A_ref = np.eye(n * n) - 0.5 * kappa * dt * lap
        A = s.A.toarray()
        assert np.max(np.abs(A - A_ref)) <= 1e-12 * np.max(np.abs(A_ref))
        f = 32 * _bump(X, Y, 0.5 + math.cos(16 * math.pi * th) / 4, 0.5 + math.sin(16 * math.pi * th) / 4, 0.125)
        b_ref = (np.eye(n * n) + 0.5 * kappa * dt * lap) @ u_prev + dt * f
        np.testing.assert_allclose(s.b[0], b_ref, rtol=1e-11, atol=1e-13)
        x = s.x[0]
        assert np.linalg.norm(s.b[0] - s.A @ x) <= 1e-10 * np.linalg.norm(s.b[0])
        assert np.linalg.eigvalsh(A)[0] > 0
        u_prev = x


def test_heat_reproducible_and_kappa(heat):
    again = heat2d(8, 50, dt=0.02)
    for t in (0, 25, 49):
        np.testing.assert_array_equal(again[t].x, heat[t].x)
        np.testing.assert_array_equal(again[t].b, heat[t].b)
    assert heat_kappa(0.25) == pytest.approx(0.1) and heat_kappa(0.75) == pytest.approx(10.0)
    assert heat_kappa(0.0) == 0.0
    with pytest.raises(ValueError, match="n must be"):
        heat2d(1, 5)
    with pytest.raises(ValueError, match="dt"):
        heat2d(4, 5, dt=-1.0)


# ---------------------------------------------------------------------- HDF5
def test_roundtrip_shifted(tmp_path):
    seq = shifted_laplacian(25, variance="high", seed=2)
    path = write_sequence(tmp_path / "s.h5", seq)
    with SystemsFile(path) as f:
        assert len(f) == 25 and f.num_matrices() == 1
        assert f.matrix_transform(4) == (1.0, float(seq.contexts[4]))
        assert "matrix_shift" not in f.system_attrs(4) and f.system_attrs(4)["context"] == seq.contexts[4]
    with read_sequence(path) as back:
        assert back.name == seq.name and len(back) == 25
        assert back.context_range == seq.context_range
        np.testing.assert_array_equal(back.contexts, seq.contexts)
        for k in ("kind", "variance", "grid", "seed", "T"):
            assert back.meta[k] == seq.meta[k]
        for t in (0, 11, 24):
            a, b = seq[t], back[t]
            assert (a.A != b.A).nnz == 0 and np.array_equal(a.A.data, b.A.data)  # bitwise
            np.testing.assert_array_equal(a.b, b.b)
            assert b.attrs == a.attrs and b.grid_shape == (10, 10)
        # re-writing a read-back sequence keeps the single matrix
        write_sequence(tmp_path / "s2.h5", back)
    with SystemsFile(tmp_path / "s2.h5") as f:
        assert f.num_matrices() == 1 and f.matrix_transform(24) == (1.0, float(seq.contexts[24]))


def test_roundtrip_heat(tmp_path, heat):
    path = write_sequence(tmp_path / "h.h5", heat)
    with read_sequence(path) as back:
        np.testing.assert_array_equal(back.contexts, heat.contexts)
        for t in (0, 30, 49):
            a, b = heat[t], back[t]
            np.testing.assert_array_equal(a.A.toarray(), b.A.toarray())
            np.testing.assert_array_equal(a.x, b.x)
            np.testing.assert_array_equal(a.b, b.b)
    with SystemsFile(path) as f:
        scale, shift = f.matrix_transform(30)
        assert shift == 1.0 and scale == pytest.approx(0.5 * heat.contexts[30] * 0.02)
        M = f.stored_matrix(0)
        np.testing.assert_array_equal(f.matrix(30).toarray(), affine_matrix(M, scale, shift).toarray())


def test_old_files_read_as_sequences(tmp_path):
    """A file without the new attributes (transform 1, 0); a smoke file reads with frame contexts."""
    A = sp.csr_matrix(_delsq(3))
    write_systems(tmp_path / "plain.h5", [LinearSystem(A, np.ones(9) * k) for k in range(3)], generator="t",
                  parameters={})
    with SystemsFile(tmp_path / "plain.h5") as f:
        assert f.matrix_transform(2) == (1.0, 0.0) and f.matrix(2) is f.stored_matrix(0)
    with read_sequence(tmp_path / "plain.h5") as s:
        assert len(s) == 3 and s.contexts is None and s.context_range is None and s.name == "plain"
        np.testing.assert_array_equal(s[2].A.toarray(), A.toarray())
    from krylearn.problems.smoke import generate_poisson_systems

    generate_poisson_systems(tmp_path / "smoke.h5", scene="smoke-plume", dim=2, n=8, frames=3, progress=False)
    with read_sequence(tmp_path / "smoke.h5") as s:
        assert len(s) == 3
        np.testing.assert_array_equal(s.contexts, [s[t].attrs["frame"] for t in range(3)])
        assert s[1].attrs["context"] == s[1].attrs["frame"]  # what the contextual tuners read
        assert s.meta["generator"] == "krylearn.problems.smoke"


def test_affine_matrix_without_stored_diagonal():
    M = sp.csr_matrix(np.array([[0.0, 1.0, 0.0], [1.0, 2.0, 0.0], [0.0, 0.0, 0.0]]))
    M.eliminate_zeros()
    out = affine_matrix(M, 2.0, 0.5)
    np.testing.assert_array_equal(out.toarray(), 2 * M.toarray() + 0.5 * np.eye(3))
    assert affine_matrix(M) is not None and affine_matrix(M, 1.0, 0.0).nnz == M.nnz
    with pytest.raises(ValueError, match="shift"):
        affine_matrix(M, 1.0, float("nan"))
    with pytest.raises(TypeError, match="scale"):
        affine_matrix(M, "2")


def test_writer_scale_shift_checks(tmp_path):
    M = sp.csr_matrix(_delsq(3))
    ok = LinearSystem(affine_matrix(M, 2.0, 1.0), np.ones(9))
    with SystemsWriter(tmp_path / "w.h5", generator="t", parameters={}, seed=None) as w:
        with pytest.raises(ValueError, match="differs from scale"):
            w.append(ok, base=M, scale=2.0, shift=0.5)
        with pytest.raises(ValueError, match="need base"):
            w.append(ok, scale=2.0)
        with pytest.raises(ValueError, match="scale must be finite"):
            w.append(ok, base=M, scale=float("inf"))
        with pytest.raises(ValueError, match="base must have the shape"):
            w.append(ok, base=sp.identity(4), scale=2.0, shift=1.0)
        w.append(ok, base=M, scale=2.0, shift=1.0)
        w.append(LinearSystem(M, np.ones(9)), base=M)
    with pytest.raises(ValueError, match="reserved"):
        LinearSystem(M, np.ones(9), attrs={"matrix_scale": 2.0})
    with SystemsFile(tmp_path / "w.h5") as f:
        assert f.num_matrices() == 1 and f.matrix_transform(0) == (2.0, 1.0) and f.matrix_transform(1) == (1.0, 0.0)
        np.testing.assert_array_equal(f[0].A.toarray(), 2 * M.toarray() + np.eye(9))


@pytest.mark.parametrize("key,value,match", [
    ("matrix_scale", "two", "expected a real number"),
    ("matrix_shift", np.float64("nan"), "expected a finite number"),
    ("matrix_scale", np.array([1.0, 2.0]), "expected a real number"),
    ("matrix_shift", True, "expected a real number"),
])
def test_reader_schema_errors(tmp_path, key, value, match):
    path = write_sequence(tmp_path / "s.h5", shifted_laplacian(3, seed=0))
    with h5py.File(path, "r+") as h:
        h["systems/000001"].attrs[key] = value
    with pytest.raises(FormatError, match=match) as e:
        SystemsFile(path)
    assert f"systems/000001/{key}" in str(e.value) and e.value.key == f"systems/000001/{key}"


# ----------------------------------------------------------------------- CLI
def test_cli_data_sequence(tmp_path, capsys):
    out = tmp_path / "seq.h5"
    assert main(["data", "sequence", "--kind", "shifted-low", "--steps", "12", "--seed", "4", "-o", str(out),
                 "-q"]) == 0
    with read_sequence(out) as s:
        assert len(s) == 12 and s.meta["seed"] == 4 and s.contexts.shape == (12,)
        np.testing.assert_array_equal(s[3].b, shifted_laplacian(12, seed=4)[3].b)
    out2 = tmp_path / "heat.h5"
    assert main(["data", "sequence", "--kind", "heat2d", "--n", "6", "--steps", "8", "-o", str(out2), "-q"]) == 0
    with read_sequence(out2) as s:
        assert len(s) == 8 and s[0].n == 36 and s[7].x is not None
        r = s[7]
        assert np.linalg.norm(r.b[0] - r.A @ r.x[0]) <= 1e-10 * np.linalg.norm(r.b[0])
    assert "wrote" in capsys.readouterr().out
    assert main(["data", "sequence", "--kind", "shifted-high", "--n", "20", "-o", str(tmp_path / "x.h5"), "-q"]) == 2
