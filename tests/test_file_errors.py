"""Readers say what is wrong with a file, and refuse declared sizes the file cannot hold before allocating."""

from __future__ import annotations

import gzip
import os

import h5py
import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp

from krylearn.datasets import fileio
from krylearn.datasets.fastmri import read_kspace, write_kspace
from krylearn.datasets.matrix_market import read_mtx, read_mtx_header, read_vector_mtx, write_mtx
from krylearn.datasets.pde_formats import read_darcy, write_darcy
from krylearn.datasets.systems import LinearSystem, SystemsFile, write_systems
from krylearn.utils.errors import FormatError

BANNER = "%%MatrixMarket matrix coordinate real general\n"


def _deny_reads(monkeypatch):
    """Make every file this process opens through the readers unreadable (the tests may run as root)."""
    def denied(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(fileio, "open", denied, raising=False)


# ------------------------------------------------------------ Matrix Market
def test_mtx_errors_say_what_is_wrong(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_mtx(tmp_path / "nope.mtx")
    (tmp_path / "folder.mtx").mkdir()
    with pytest.raises(IsADirectoryError, match="folder"):
        read_mtx(tmp_path / "folder.mtx")
    (tmp_path / "empty.mtx").write_bytes(b"")
    with pytest.raises(FormatError, match=r"empty.mtx: line 1: empty file"):
        read_mtx(tmp_path / "empty.mtx")
    (tmp_path / "hello.mtx").write_text("hello\n1 1 1\n")
    with pytest.raises(FormatError, match=r"hello.mtx: line 1: missing banner.*'hello'"):
        read_mtx(tmp_path / "hello.mtx")
    (tmp_path / "field.mtx").write_text("%%MatrixMarket matrix coordinate quaternion general\n1 1 0\n")
    with pytest.raises(FormatError, match="line 1: unknown field 'quaternion'"):
        read_mtx(tmp_path / "field.mtx")
    (tmp_path / "size.mtx").write_text(BANNER + "% a comment\n\n3 3 two\n1 1 1.0\n")
    with pytest.raises(FormatError, match=r"size.mtx: line 4: expected the size line .*'3 3 two'"):
        read_mtx(tmp_path / "size.mtx")
    good = tmp_path / "good.mtx"
    write_mtx(good, sp.eye(3, format="csr"))
    _deny_reads(monkeypatch)
    with pytest.raises(PermissionError, match="permission denied: cannot read .*good.mtx"):
        read_mtx(good)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads any file")
def test_mtx_without_read_permission(tmp_path):
    good = tmp_path / "locked.mtx"
    write_mtx(good, sp.eye(3, format="csr"))
    good.chmod(0)
    with pytest.raises(PermissionError, match="permission denied"):
        read_mtx(good)


def test_mtx_declaring_more_entries_than_its_bytes_is_refused_before_reading(tmp_path, monkeypatch):
    bomb = tmp_path / "bomb.mtx"
    bomb.write_text(BANNER + "100000 100000 100000000000\n1 1 1.0\n")
    assert bomb.stat().st_size < 200

    def must_not_run(*args, **kwargs):
        raise AssertionError("the entries were read although the header cannot be right")

    monkeypatch.setattr(scipy.io, "mmread", must_not_run)
    with pytest.raises(FormatError, match=r"bomb.mtx: line 2: declares 100000000000 entries") as info:
        read_mtx(bomb)
    assert "truncated" in str(info.value)
    with pytest.raises(FormatError, match="100000000000 entries"):
        read_vector_mtx(bomb)


def test_mtx_max_entries_limits_what_is_allocated(tmp_path, monkeypatch):
    huge_rows = tmp_path / "rows.mtx"  # one entry, but a CSR row pointer of 10^12 entries
    huge_rows.write_text(BANNER + "1000000000000 3 1\n1 1 1.0\n")
    with pytest.raises(FormatError, match=r"rows.mtx: line 2: .*max_entries=1073741824"):
        read_mtx(huge_rows)
    A = sp.random(20, 20, density=0.3, format="csr", random_state=np.random.default_rng(0))
    path = tmp_path / "A.mtx"
    write_mtx(path, A)
    np.testing.assert_array_equal(read_mtx(path).toarray(), A.toarray())
    with pytest.raises(FormatError, match="max_entries=10;"):
        read_mtx(path, max_entries=10)
    np.testing.assert_array_equal(read_mtx(path, max_entries=None).toarray(), A.toarray())
    with pytest.raises(TypeError, match="max_entries"):
        read_mtx(path, max_entries=2.5)


def test_compressed_mtx_header_and_data(tmp_path):
    A = sp.csr_matrix(np.array([[2.0, -1.0], [-1.0, 2.0]]))
    plain = tmp_path / "A.mtx"
    write_mtx(plain, A)
    gz = tmp_path / "A.mtx.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    header = read_mtx_header(gz)
    assert (header.format, header.field, header.symmetry, header.rows, header.cols) == \
        ("coordinate", "real", "symmetric", 2, 2)
    np.testing.assert_array_equal(read_mtx(gz).toarray(), A.toarray())


# ------------------------------------------------------------ HDF5 readers
def test_hdf5_open_errors_say_what_is_wrong(tmp_path, monkeypatch):
    (tmp_path / "empty.h5").write_bytes(b"")
    (tmp_path / "text.h5").write_text("not hdf5 at all\n" * 10)
    (tmp_path / "dir.h5").mkdir()
    for reader in (SystemsFile, read_kspace, read_darcy):
        with pytest.raises(FileNotFoundError, match="no such file"):
            reader(tmp_path / "nope.h5")
        with pytest.raises(IsADirectoryError, match="folder"):
            reader(tmp_path / "dir.h5")
    for reader in (SystemsFile, read_kspace):
        with pytest.raises(FormatError, match="empty.h5: empty file"):
            reader(tmp_path / "empty.h5")
        with pytest.raises(FormatError, match="text.h5: not an HDF5 file"):
            reader(tmp_path / "text.h5")
    good = tmp_path / "good.h5"
    write_systems(good, [LinearSystem(sp.eye(2, format="csr"), np.ones(2))], generator="t", parameters={})
    _deny_reads(monkeypatch)
    with pytest.raises(PermissionError, match="good.h5"):
        SystemsFile(good)


def _systems_file_with_declared_b(path, shape):
    """A valid systems file whose system 0 then declares ``b`` of ``shape`` (never written)."""
    n = shape[1]
    write_systems(path, [LinearSystem(sp.eye(n, format="csr"), np.ones(n))], generator="t", parameters={})
    with h5py.File(path, "a") as h:
        del h["systems/000000/b"]
        h["systems/000000"].create_dataset("b", shape=shape, dtype="f8", chunks=(1, n), compression="gzip")


def test_systems_file_declaring_a_huge_b_is_refused_on_open(tmp_path):
    bomb = tmp_path / "bomb.h5"
    _systems_file_with_declared_b(bomb, (10**8, 1024))
    assert bomb.stat().st_size < 200_000
    with pytest.raises(FormatError, match=r"bomb.h5: systems/000000/b: declares shape \(100000000, 1024\)") \
            as info:
        SystemsFile(bomb)
    assert "819.2 GB" in str(info.value)


def test_partly_written_dataset_is_refused_but_compressed_zeros_are_not(tmp_path):
    partial = tmp_path / "partial.h5"
    _systems_file_with_declared_b(partial, (64, 1024))  # 512 kB declared, nothing stored
    with pytest.raises(FormatError, match="systems/000000/b"):
        SystemsFile(partial)
    zeros = tmp_path / "zeros.h5"
    b = np.zeros((64, 1024))  # compresses by hundreds, which the rule allows
    write_systems(zeros, [LinearSystem(sp.eye(1024, format="csr"), b)], generator="t", parameters={})
    with SystemsFile(zeros) as f:
        np.testing.assert_array_equal(f[0].b, b)


def test_fastmri_and_darcy_readers_refuse_declared_sizes_the_file_cannot_hold(tmp_path):
    mri = tmp_path / "k.h5"
    write_kspace(mri, np.ones((1, 2, 8, 8), dtype=np.complex64))
    with h5py.File(mri, "a") as h:
        del h["kspace"]
        h.create_dataset("kspace", shape=(10**6, 16, 320, 320), dtype="c8", chunks=(1, 1, 320, 320))
    with pytest.raises(FormatError, match=r"k.h5: kspace: declares shape \(1000000, 16, 320, 320\)"):
        read_kspace(mri, slices=0)
    darcy = tmp_path / "d.h5"
    write_darcy(darcy, np.ones((2, 5, 5)), np.ones((2, 5, 5)))
    with h5py.File(darcy, "a") as h:
        del h["nu"]
        h.create_dataset("nu", shape=(10**7, 5, 5), dtype="f4", chunks=(1, 5, 5))
    with pytest.raises(FormatError, match=r"d.h5: nu: declares shape \(10000000, 5, 5\)"):
        read_darcy(darcy, count=1)


def test_nifti_reader_names_the_argument_and_what_is_wrong(tmp_path):
    from krylearn.problems.brain import mni152_volume

    with pytest.raises(IsADirectoryError, match="path: expected a file, got a folder"):
        mni152_volume(tmp_path)
    with pytest.raises(FileNotFoundError, match="path: no such file"):
        mni152_volume(tmp_path / "missing.nii.gz")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_mtx_from_a_pipe_is_read_once(tmp_path):
    import threading

    text = "%%MatrixMarket matrix coordinate real general\n% a comment\n2 2 2\n1 1 3.0\n2 2 4.0\n"
    fifo = tmp_path / "A.mtx"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_text(text))
    writer.start()
    try:
        A = read_mtx(fifo)  # no size check on a pipe, but the header is parsed and replayed to the reader
    finally:
        writer.join(timeout=10)
    np.testing.assert_array_equal(A.toarray(), [[3.0, 0.0], [0.0, 4.0]])


def test_mtx_with_a_long_comment_line(tmp_path):
    path = tmp_path / "long.mtx"
    path.write_text(BANNER + "%" + "x" * 10_000 + "\n2 2 1\n2 1 5.0\n")
    header = read_mtx_header(path)
    assert (header.rows, header.cols, header.entries, header.size_line) == (2, 2, 1, 3)
    assert header.header_bytes == len(BANNER) + 10_002 + len("2 2 1\n")
    np.testing.assert_array_equal(read_mtx(path).toarray(), [[0.0, 0.0], [5.0, 0.0]])
