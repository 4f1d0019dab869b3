"""HDF5 containers of linear systems ``A x = b``.

One file holds a sequence of systems, for instance one pressure system per
frame of a smoke simulation. Each system has a sparse matrix, ``k`` right-hand
sides, optionally ``k`` reference solutions, the grid the unknowns live on and
its cell flags. Identical matrices are stored once.

File layout (``format = "krylearn.linear_systems"``, ``format_version = 1``)::

    /                      attrs: format, format_version, generator,
                                  parameters (JSON string), seed (int, or an
                                  empty int64 attribute for "no seed"),
                                  krylearn_version, created (ISO 8601, UTC),
                                  file_id (random hex; optional, absent
                                  in files written before it existed)
    /matrices/{j:06d}/     datasets indptr (n+1,), indices (nnz,), data (nnz,)
                           attr shape = (n, n)
    /systems/{i:06d}/      attr matrix = j; dataset b (k, n) chunked by row;
                           optional datasets x (k, n), flags (grid_shape, uint8);
                           optional attr grid_shape; optional float attrs
                           matrix_scale (default 1) and matrix_shift (default 0);
                           the system's own attrs

A system's matrix is ``A_i = matrix_scale * M_j + matrix_shift * I`` where
``M_j`` is the stored matrix (``A_i = M_j`` without the two attributes, as in
files written before they existed). A sequence of shifted or scaled copies of
one matrix (``A_t = L + c_t I``, Crank–Nicolson steps ``I + s_t L``) is so
stored with a single matrix; see :meth:`SystemsWriter.append` (``base=``).

Writers go through :func:`~krylearn.utils.atomic.atomic_path`, so a crash
never leaves a half-written file under the final name. Readers check the
schema and raise :class:`~krylearn.utils.errors.FormatError` naming the file
and the missing or malformed key; a dataset that declares more data than the
file stores is refused before anything is allocated.

Modules: :mod:`.schema` (:class:`LinearSystem`, :func:`affine_matrix`, the
format constants), :mod:`.writer` (:class:`SystemsWriter`,
:func:`write_systems`), :mod:`.layout` (schema checks of an open file),
:mod:`.reader` (:class:`SystemsFile`, :func:`read_systems`,
:func:`read_system`, :func:`check_index`) and :mod:`.dataset`
(:class:`SystemsDataset`). Everything public is importable from here.
"""

from .dataset import SystemsDataset
from .reader import SystemsFile, check_index, read_system, read_systems
from .schema import FORMAT_NAME, FORMAT_VERSION, LinearSystem, affine_matrix
from .writer import SystemsWriter, write_systems

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "LinearSystem",
    "SystemsWriter",
    "SystemsFile",
    "SystemsDataset",
    "check_index",
    "write_systems",
    "read_system",
    "read_systems",
    "affine_matrix",
]
