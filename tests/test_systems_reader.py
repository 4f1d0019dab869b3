"""Systems files: index checks naming the valid range, empty files, and a dataset whose file changed under it."""

from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch.utils.data import DataLoader

from krylearn.datasets import FileChangedError, SystemsDataset, SystemsFile, read_system, write_systems
from krylearn.datasets.systems import LinearSystem, check_index
from krylearn.problems.sequences import read_sequence


def _systems(count, n=6, k=2, seed=0):
    rng = np.random.default_rng(seed)
    A = sp.csr_matrix(sp.diags([-np.ones(n - 1), 3 * np.ones(n), -np.ones(n - 1)], [-1, 0, 1]))
    return [LinearSystem(A, rng.standard_normal((k, n)), attrs={"frame": i}) for i in range(count)]


def _write(path, count, **kw):
    write_systems(path, _systems(count, **kw), generator="test", parameters={"count": count}, seed=0)
    return path


def test_index_out_of_range_names_the_valid_range(tmp_path):
    path = _write(tmp_path / "four.h5", 4)
    with pytest.raises(IndexError, match=r"system index 9 is out of range: .*four.h5' holds 4 systems "
                                         r"\(valid indices: 0 to 3\)"):
        read_system(path, 9)
    with pytest.raises(IndexError, match=r"system index -5 is out of range.*0 to 3, or -4 to -1"):
        SystemsFile(path)[-5]
    with pytest.raises(IndexError, match=r"system index -1 is out of range.*\(valid indices: 0 to 3\)"):
        read_system(path, -1)  # negative indices only when asked for
    assert read_system(path, -1, allow_negative=True).attrs["frame"] == 3
    assert read_system(path, 2).attrs["frame"] == 2
    with SystemsFile(path) as f:
        assert f[-1].attrs["frame"] == 3  # f[i] follows Python's rule, as a list
        assert f.system(0).attrs["frame"] == 0
        with pytest.raises(IndexError, match="valid indices: 0 to 3"):
            f.system(-2)
        with pytest.raises(TypeError, match="system index must be an int"):
            f.system(1.0)
        assert f.grid_shape(0) is None


def test_a_file_with_no_systems_says_so(tmp_path):
    path = tmp_path / "empty.h5"
    write_systems(path, [], generator="test", parameters={})
    with SystemsFile(path) as f:
        assert len(f) == 0 and f.rhs_counts().shape == (0,)
        with pytest.raises(IndexError, match=r"system index 0 requested, but .*empty.h5' holds no systems"):
            f[0]
        with pytest.raises(IndexError, match="holds no systems"):
            f.system(-1, allow_negative=True)
    with pytest.raises(IndexError, match="holds no systems"):
        read_system(path, 0)
    ds = SystemsDataset(path)
    assert len(ds) == 0 and ds.num_systems == 0
    with pytest.raises(IndexError, match="holds no items"):
        ds[0]
    assert list(DataLoader(ds, batch_size=2)) == []


def test_check_index_rules():
    assert check_index(2, 3) == 2 and check_index(-1, 3) == 2
    with pytest.raises(IndexError, match="-3 to -1"):
        check_index(-4, 3)
    with pytest.raises(IndexError, match="valid indices: 0 to 2\\)"):
        check_index(-1, 3, allow_negative=False)
    with pytest.raises(TypeError):
        check_index(True, 3)


def test_files_record_an_id_and_older_files_without_it_still_read(tmp_path):
    a, b = _write(tmp_path / "a.h5", 2), _write(tmp_path / "b.h5", 2)
    with SystemsFile(a) as fa, SystemsFile(b) as fb:
        assert isinstance(fa.attrs["file_id"], str) and len(fa.attrs["file_id"]) == 32
        assert fa.attrs["file_id"] != fb.attrs["file_id"]
    with h5py.File(a, "a") as h:
        del h.attrs["file_id"]  # as written by krylearn before the attribute existed
    with SystemsFile(a) as f:
        assert f.attrs["file_id"] is None
        np.testing.assert_array_equal(f[1].b, _systems(2)[1].b)
    assert len(SystemsDataset(a)) == 4


def test_dataset_detects_a_file_replaced_after_indexing(tmp_path):
    path = _write(tmp_path / "data.h5", 5)  # 10 items
    ds = SystemsDataset(path, dtype=torch.float64)
    first = ds[0]["b"]
    copy = pickle.loads(pickle.dumps(ds))  # what a spawned worker gets
    _write(path, 2, n=9, seed=1)  # atomically replaced: another n, fewer items
    torch.testing.assert_close(ds[0]["b"], first)  # an open handle still reads the file it opened
    ds.close()
    with pytest.raises(FileChangedError, match=r"data.h5' changed on disk after this SystemsDataset indexed it"
                                               r".*indexed 5 systems / 10 right-hand sides.*now holds 2 / 4"):
        ds[0]
    with pytest.raises(FileChangedError, match="create the SystemsDataset again"):
        copy[7]
    loader = DataLoader(SystemsDataset(path), batch_size=2, num_workers=1, multiprocessing_context="fork")
    assert sum(len(batch["b"]) for batch in loader) == 4  # a new dataset reads the new content


def test_dataset_workers_refuse_a_rewritten_file(tmp_path):
    path = _write(tmp_path / "data.h5", 3)
    ds = SystemsDataset(path)
    _write(path, 3, seed=2)  # same shapes, other numbers: still another file
    loader = DataLoader(ds, batch_size=2, num_workers=1, multiprocessing_context="fork")
    with pytest.raises(FileChangedError, match="file_id"):
        list(loader)


def test_dataset_over_an_older_file_compares_size_and_time(tmp_path):
    path = _write(tmp_path / "old.h5", 3)
    with h5py.File(path, "a") as h:
        del h.attrs["file_id"]
    ds = SystemsDataset(path)
    ds.close()
    assert ds[5]["system"] == 2  # reopening an unchanged file is fine
    ds.close()
    _write(path, 1)
    with h5py.File(path, "a") as h:
        del h.attrs["file_id"]
    with pytest.raises(FileChangedError, match="old.h5"):
        ds[0]


def test_file_backed_sequence_detects_a_replaced_file(tmp_path):
    path = _write(tmp_path / "seq.h5", 4)
    seq = read_sequence(path)
    assert seq[3].attrs["frame"] == 3
    seq.close()  # the next access reopens the file
    _write(path, 2)
    with pytest.raises(FileChangedError, match="read_sequence"):
        seq[0]
