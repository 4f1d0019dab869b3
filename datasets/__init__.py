"""File formats and loaders: linear systems (HDF5), Matrix Market, PDEBench/FNO Darcy data, fastMRI/CT HDF5.

Generators that produce data by running solvers live in :mod:`krylearn.problems`.
"""

from ..utils.errors import FileChangedError, FormatError
from .matrix_market import read_mtx, read_vector_mtx, write_mtx, write_vector_mtx
from .systems import (
    LinearSystem,
    SystemsDataset,
    SystemsFile,
    SystemsWriter,
    read_system,
    read_systems,
    write_systems,
)

__all__ = [
    "FileChangedError",
    "FormatError",
    "LinearSystem",
    "SystemsWriter",
    "SystemsFile",
    "SystemsDataset",
    "read_system",
    "read_systems",
    "write_systems",
    "read_mtx",
    "write_mtx",
    "read_vector_mtx",
    "write_vector_mtx",
]
