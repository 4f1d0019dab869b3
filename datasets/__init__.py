"""Datasets: file formats (bottom layer) and generators (``krylearn.problems.smoke``).

Only the formats are imported here; generators run solvers and are imported
explicitly (``from krylearn.problems.smoke import SmokeSimulation``).
"""

from ..utils.errors import FormatError
from .matrix_market import read_mtx, read_vector_mtx, write_mtx, write_vector_mtx
from .systems import LinearSystem, SystemsDataset, SystemsFile, SystemsWriter, read_systems, write_systems

__all__ = [
    "FormatError",
    "LinearSystem",
    "SystemsWriter",
    "SystemsFile",
    "SystemsDataset",
    "read_systems",
    "write_systems",
    "read_mtx",
    "write_mtx",
    "read_vector_mtx",
    "write_vector_mtx",
]
