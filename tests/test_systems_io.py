"""Tests for the dataset formats layer: atomic writes, the linear-systems HDF5
container, its torch Dataset, and Matrix Market I/O."""

from __future__ import annotations

import os
import pickle

import h5py
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch.utils.data import DataLoader

from krylearn.utils.atomic import atomic_path, atomic_write_text
from krylearn.utils.errors import FormatError
from krylearn.datasets.matrix_market import read_mtx, read_vector_mtx, write_mtx, write_vector_mtx
from krylearn.datasets.systems import (
    FORMAT_NAME,
    FORMAT_VERSION,
    LinearSystem,
    SystemsDataset,
    SystemsFile,
    SystemsWriter,
    read_systems,
    write_systems,
)


def poisson2d(ny, nx, shift=0.0):
    def lap(m):
        return sp.diags([-np.ones(m - 1), 2 * np.ones(m), -np.ones(m - 1)], [-1, 0, 1])

    A = sp.kronsum(lap(nx), lap(ny)) + shift * sp.eye(nx * ny)
    return sp.csr_matrix(A)


def make_systems(rng, frames=4, ny=5, nx=6):
    A = poisson2d(ny, nx)
    out = []
    for f in range(frames):
        k = 1 + f % 3
        b = rng.standard_normal((k, ny * nx))
        x = rng.standard_normal((k, ny * nx))
        flags = rng.integers(0, 3, size=(ny, nx), dtype=np.uint8)
        out.append(LinearSystem(A, b, x=x, flags=flags, attrs={"frame": f, "dt": 0.1 * f, "name": f"f{f}", "ok": True}))
    return out


def leftovers(folder):
    return [p for p in os.listdir(folder) if ".tmp-" in p]


# ------------------------------------------------------------------ atomic
def test_atomic_path_commit_and_rollback(tmp_path):
    target = tmp_path / "a.txt"
    atomic_write_text(target, "first")
    assert target.read_text() == "first"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            assert os.path.basename(tmp).startswith(".a.txt.tmp-")
            with open(tmp, "w") as f:
                f.write("second")
            raise RuntimeError("boom")
    assert target.read_text() == "first"
    assert leftovers(tmp_path) == []


# ------------------------------------------------------------- round trip
def test_round_trip_and_provenance(tmp_path):
    rng = np.random.default_rng(0)
    systems = make_systems(rng)
    systems.append(LinearSystem(poisson2d(3, 4, shift=1.0), rng.standard_normal(12), grid_shape=(3, 4)))
    path = tmp_path / "s.h5"
    params = {"nx": 6, "ny": 5, "dt": np.float64(0.1), "arr": np.arange(3)}
    write_systems(path, systems, generator="smoke", parameters=params, seed=7)
    back = read_systems(path)
    assert len(back) == len(systems)
    for s, r in zip(systems, back):
        assert isinstance(r.A, sp.csr_matrix)
        assert r.A.shape == s.A.shape and r.A.dtype == s.A.dtype
        assert (r.A != s.A).nnz == 0
        np.testing.assert_array_equal(r.A.indptr, s.A.indptr)
        np.testing.assert_array_equal(r.A.indices, s.A.indices)
        np.testing.assert_array_equal(r.A.data, s.A.data)
        np.testing.assert_array_equal(r.b, s.b)
        if s.x is None:
            assert r.x is None and r.flags is None
        else:
            np.testing.assert_array_equal(r.x, s.x)
            np.testing.assert_array_equal(r.flags, s.flags)
            assert r.flags.dtype == np.uint8
        assert r.grid_shape == s.grid_shape
        assert r.attrs == s.attrs
    assert back[0].attrs == {"frame": 0, "dt": 0.0, "name": "f0", "ok": True}
    assert type(back[0].attrs["frame"]) is int and type(back[0].attrs["ok"]) is bool
    assert back[-1].b.shape == (1, 12)  # 1-D b stored as (1, n)

    with SystemsFile(path) as f:
        assert len(f) == len(systems)
        a = f.attrs
        assert a["format"] == FORMAT_NAME and a["format_version"] == FORMAT_VERSION
        assert a["generator"] == "smoke" and a["seed"] == 7
        assert a["parameters"] == {"nx": 6, "ny": 5, "dt": 0.1, "arr": [0, 1, 2]}
        import krylearn

        assert a["version"] == krylearn.__version__
        assert a["created"].startswith("20")
        np.testing.assert_array_equal(f.rhs_counts(), [s.num_rhs for s in systems])
        np.testing.assert_array_equal(f[-1].b, systems[-1].b)
        with pytest.raises(IndexError):
            f[len(systems)]
    with h5py.File(path) as h:
        assert h["systems/000000/b"].chunks is not None
        assert h["systems/000000/b"].compression == "gzip"


def test_seed_none_and_no_compression(tmp_path):
    path = tmp_path / "s.h5"
    s = LinearSystem(poisson2d(2, 2), np.ones(4))
    write_systems(path, [s], generator="g", parameters={}, seed=None, compression=None)
    with SystemsFile(path) as f:
        assert f.attrs["seed"] is None
        np.testing.assert_array_equal(f[0].b, np.ones((1, 4)))


def test_linear_system_validation():
    A = poisson2d(2, 3)
    with pytest.raises(ValueError, match="square"):
        LinearSystem(sp.csr_matrix(np.ones((2, 3))), np.ones(2))
    with pytest.raises(ValueError, match="b must have shape"):
        LinearSystem(A, np.ones(5))
    with pytest.raises(ValueError, match="x must have the shape of b"):
        LinearSystem(A, np.ones((2, 6)), x=np.ones(6))
    with pytest.raises(ValueError, match="NaN"):
        LinearSystem(A, np.full(6, np.nan))
    with pytest.raises(ValueError, match="prod"):
        LinearSystem(A, np.ones(6), grid_shape=(2, 2))
    with pytest.raises(ValueError, match="flags"):
        LinearSystem(A, np.ones(6), grid_shape=(2, 3), flags=np.zeros((3, 2), np.uint8))
    with pytest.raises(ValueError, match="reserved"):
        LinearSystem(A, np.ones(6), attrs={"matrix": 1})
    with pytest.raises(TypeError, match="attrs"):
        LinearSystem(A, np.ones(6), attrs={"d": {"nested": 1}})
    s = LinearSystem(A, np.ones(6), flags=np.zeros((2, 3), bool))
    assert s.grid_shape == (2, 3) and s.flags.dtype == np.uint8


# ------------------------------------------------------------------ dedup
def test_identical_matrices_stored_once(tmp_path):
    rng = np.random.default_rng(1)
    A1, A2 = poisson2d(4, 4), poisson2d(4, 4, shift=0.5)
    seq = [A1, A1.copy(), A2, A1, A2.copy()]
    path = tmp_path / "d.h5"
    with SystemsWriter(path, generator="seq", parameters={}, seed=0) as w:
        for A in seq:
            w.append(LinearSystem(A, rng.standard_normal(16)))
        assert w.num_matrices == 2
    with h5py.File(path) as h:
        assert len(h["matrices"]) == 2
        assert len(h["systems"]) == 5
        assert [int(h[f"systems/{i:06d}"].attrs["matrix"]) for i in range(5)] == [0, 0, 1, 0, 1]
    for s, A in zip(read_systems(path), seq):
        assert (s.A != A).nnz == 0


# ------------------------------------------------------------- atomicity
def test_writer_exception_leaves_nothing(tmp_path):
    path = tmp_path / "x.h5"
    rng = np.random.default_rng(2)
    with pytest.raises(RuntimeError, match="mid-write"):
        with SystemsWriter(path, generator="g", parameters={}, seed=1) as w:
            w.append(make_systems(rng, frames=1)[0])
            raise RuntimeError("mid-write")
    assert not path.exists()
    assert os.listdir(tmp_path) == []


def test_writer_exception_keeps_existing_file(tmp_path):
    path = tmp_path / "x.h5"
    rng = np.random.default_rng(3)
    old = make_systems(rng, frames=2)
    write_systems(path, old, generator="old", parameters={"v": 1}, seed=1)
    before = path.read_bytes()
    with pytest.raises(ValueError):
        with SystemsWriter(path, generator="new", parameters={}, seed=2) as w:
            w.append(make_systems(rng, frames=1)[0])
            w.append(LinearSystem(poisson2d(2, 2), np.ones(3)))  # bad b -> ValueError
    assert path.read_bytes() == before
    assert leftovers(tmp_path) == []
    assert read_systems(path)[0].attrs["frame"] == 0


def test_writer_abort_and_close(tmp_path):
    path = tmp_path / "x.h5"
    w = SystemsWriter(path, generator="g", parameters={}, seed=None)
    w.append(LinearSystem(poisson2d(2, 2), np.ones(4)))
    w.abort()
    assert os.listdir(tmp_path) == []
    w = SystemsWriter(path, generator="g", parameters={}, seed=None)
    w.append(LinearSystem(poisson2d(2, 2), np.ones(4)))
    w.close()
    w.close()
    assert len(read_systems(path)) == 1
    with pytest.raises(ValueError, match="closed"):
        w.append(LinearSystem(poisson2d(2, 2), np.ones(4)))


def test_writer_argument_errors(tmp_path):
    with pytest.raises(TypeError, match="parameters"):
        SystemsWriter(tmp_path / "a.h5", generator="g", parameters={"f": object()}, seed=0)
    with pytest.raises(TypeError, match="seed"):
        SystemsWriter(tmp_path / "a.h5", generator="g", parameters={}, seed=1.5)
    with pytest.raises(ValueError, match="compression"):
        SystemsWriter(tmp_path / "a.h5", generator="g", parameters={}, seed=0, compression="zstd")
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------ bad files
@pytest.fixture
def good_file(tmp_path):
    path = tmp_path / "good.h5"
    write_systems(path, make_systems(np.random.default_rng(4), frames=3), generator="smoke", parameters={}, seed=0)
    return path


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        SystemsFile(tmp_path / "nope.h5")
    with pytest.raises(FileNotFoundError):
        read_mtx(tmp_path / "nope.mtx")


def test_truncated_file(good_file):
    data = good_file.read_bytes()
    for cut in (len(data) // 2, 600):
        good_file.write_bytes(data[:cut])
        with pytest.raises(FormatError, match="good.h5"):
            read_systems(good_file)


def test_random_bytes_file(tmp_path):
    path = tmp_path / "noise.h5"
    path.write_bytes(np.random.default_rng(5).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(FormatError, match="noise.h5"):
        SystemsFile(path)
    assert issubclass(FormatError, ValueError)


def test_missing_dataset_named(good_file):
    with h5py.File(good_file, "a") as h:
        del h["systems/000000/b"]
    with pytest.raises(FormatError, match="systems/000000/b") as info:
        SystemsFile(good_file)
    assert str(good_file) in str(info.value)
    assert info.value.key == "systems/000000/b"


def test_missing_format_attribute(good_file):
    with h5py.File(good_file, "a") as h:
        del h.attrs["format"]
    with pytest.raises(FormatError, match="format: missing attribute"):
        SystemsFile(good_file)


def test_newer_format_version(good_file):
    with h5py.File(good_file, "a") as h:
        h.attrs["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(FormatError, match="upgrade krylearn"):
        SystemsFile(good_file)


def test_plain_hdf5_without_schema(tmp_path):
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as h:
        h["x"] = np.arange(3)
    with pytest.raises(FormatError, match="plain.h5: format"):
        read_systems(path)


def test_inconsistent_indptr(good_file):
    with h5py.File(good_file, "a") as h:
        ip = h["matrices/000000/indptr"]
        v = ip[...]
        v[3], v[4] = v[4], v[3]  # no longer monotone
        ip[...] = v
    with pytest.raises(FormatError, match="matrices/000000/indptr"):
        read_systems(good_file)


def test_indptr_wrong_length(good_file):
    with h5py.File(good_file, "a") as h:
        v = h["matrices/000000/indptr"][...]
        del h["matrices/000000/indptr"]
        h["matrices/000000/indptr"] = v[:-1]
    with pytest.raises(FormatError, match="matrices/000000/indptr: length"):
        SystemsFile(good_file)


def test_shape_mismatches_named(good_file):
    with h5py.File(good_file, "a") as h:
        del h["systems/000001/x"]
        h["systems/000001/x"] = np.zeros((7, 3))
    with pytest.raises(FormatError, match="systems/000001/x"):
        SystemsFile(good_file)


def test_grid_shape_mismatch(good_file):
    with h5py.File(good_file, "a") as h:
        h["systems/000002"].attrs["grid_shape"] = np.array([2, 2])
    with pytest.raises(FormatError, match="systems/000002/grid_shape"):
        SystemsFile(good_file)


def test_dangling_matrix_reference(good_file):
    with h5py.File(good_file, "a") as h:
        h["systems/000001"].attrs["matrix"] = 9
    with pytest.raises(FormatError, match="systems/000001/matrix.*matrices/000009"):
        SystemsFile(good_file)


def test_nonfinite_values(good_file):
    with h5py.File(good_file, "a") as h:
        h["systems/000001/b"][0, 2] = np.nan
    with SystemsFile(good_file) as f:  # metadata fine; content checked on read
        f[0]
        with pytest.raises(FormatError, match="systems/000001/b: contains NaN"):
            f[1]
    with pytest.raises(FormatError, match="systems/000001/b"):
        SystemsFile(good_file, verify=True)
    with h5py.File(good_file, "a") as h:
        h["matrices/000000/data"][0] = np.inf
    with pytest.raises(FormatError, match="matrices/000000/data"):
        read_systems(good_file)


# ------------------------------------------------------------ torch dataset
@pytest.fixture
def dataset_file(tmp_path):
    path = tmp_path / "ds.h5"
    rng = np.random.default_rng(6)
    systems = make_systems(rng, frames=5)  # k = 1, 2, 3, 1, 2 -> 9 right-hand sides
    write_systems(path, systems, generator="smoke", parameters={}, seed=0)
    return path, systems


def test_dataset_items(dataset_file):
    path, systems = dataset_file
    ds = SystemsDataset(path, dtype=torch.float64)
    assert len(ds) == sum(s.num_rhs for s in systems) == 9
    item = ds[4]
    assert (item["system"], item["index"]) == (2, 1)
    torch.testing.assert_close(item["b"], torch.from_numpy(systems[2].b[1]))
    torch.testing.assert_close(item["x"], torch.from_numpy(systems[2].x[1]))
    assert ds[-1]["system"] == 4
    with pytest.raises(IndexError):
        ds[9]
    nd = SystemsDataset(path, dtype=torch.float64, normalize=True)
    it = nd[4]
    assert abs(float(it["b"].norm()) - 1.0) < 1e-12
    torch.testing.assert_close(it["x"] * it["scale"], item["x"])
    assert ds[0]["b"].dtype == torch.float64 and SystemsDataset(path)[0]["b"].dtype == torch.float32
    # a used dataset (open handle) still pickles, and reopens after unpickling
    ds2 = pickle.loads(pickle.dumps(ds))
    torch.testing.assert_close(ds2[4]["b"], item["b"])


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_dataloader_two_workers(dataset_file, context):
    path, systems = dataset_file
    ds = SystemsDataset(path, dtype=torch.float64)
    ds[0]  # parent opens a handle before the workers start
    loader = DataLoader(ds, batch_size=2, shuffle=True, num_workers=2, multiprocessing_context=context,
                        generator=torch.Generator().manual_seed(0))
    seen = {}
    for batch in loader:
        for s, i, b in zip(batch["system"].tolist(), batch["index"].tolist(), batch["b"]):
            assert (s, i) not in seen
            seen[(s, i)] = b
    expected = {(s, i) for s, sys_ in enumerate(systems) for i in range(sys_.num_rhs)}
    assert set(seen) == expected
    for (s, i), b in seen.items():
        np.testing.assert_array_equal(b.numpy(), systems[s].b[i])


# ------------------------------------------------------------ matrix market
def test_mtx_sparse_round_trip(tmp_path):
    rng = np.random.default_rng(7)
    general = sp.random(7, 5, density=0.4, format="csr", random_state=rng)
    general.data = rng.standard_normal(general.nnz) * 1e-7 + np.pi  # full-precision values
    spd = poisson2d(3, 4, shift=1 / 3)
    for name, A in [("g.mtx", general), ("spd.mtx", spd)]:
        write_mtx(tmp_path / name, A, comment="krylearn test\nsecond line")
        B = read_mtx(tmp_path / name)
        assert isinstance(B, sp.csr_matrix) and B.shape == A.shape
        np.testing.assert_array_equal(B.toarray(), A.toarray())  # exact
    assert "krylearn test" in (tmp_path / "g.mtx").read_text()
    assert leftovers(tmp_path) == []
    assert sorted(os.listdir(tmp_path)) == ["g.mtx", "spd.mtx"]


def test_mtx_array_round_trip(tmp_path):
    rng = np.random.default_rng(8)
    b = rng.standard_normal(11)
    write_vector_mtx(tmp_path / "b.mtx", b)
    assert (tmp_path / "b.mtx").read_text().startswith("%%MatrixMarket matrix array")
    np.testing.assert_array_equal(read_vector_mtx(tmp_path / "b.mtx"), b)
    B = rng.standard_normal((11, 3))
    write_vector_mtx(tmp_path / "B.mtx", B)
    np.testing.assert_array_equal(read_vector_mtx(tmp_path / "B.mtx"), B)
    # read_mtx on an array file gives CSR with the same values
    np.testing.assert_array_equal(read_mtx(tmp_path / "B.mtx").toarray(), B)


def test_mtx_malformed(tmp_path):
    bad = {
        "banner.mtx": "hello\n1 2 3\n",
        "short.mtx": "%%MatrixMarket matrix coordinate real general\n3 3 2\n1 1 1.0\n",
        "value.mtx": "%%MatrixMarket matrix coordinate real general\n3 3 2\n1 1 1.0\n2 2 abc\n",
        "range.mtx": "%%MatrixMarket matrix coordinate real general\n3 3 1\n4 1 1.0\n",
        "nan.mtx": "%%MatrixMarket matrix coordinate real general\n2 2 1\n1 1 nan\n",
    }
    for name, text in bad.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(FormatError, match=name):
            read_mtx(tmp_path / name)
    with pytest.raises(FormatError, match="banner.mtx"):
        read_vector_mtx(tmp_path / "banner.mtx")


def test_mtx_write_atomic_on_error(tmp_path):
    target = tmp_path / "A.mtx"
    write_mtx(target, poisson2d(2, 2))
    before = target.read_bytes()
    with pytest.raises(ValueError, match="NaN"):
        write_mtx(target, sp.csr_matrix(np.array([[np.nan]])))
    assert target.read_bytes() == before
    assert leftovers(tmp_path) == []
