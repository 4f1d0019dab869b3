"""Linear operators: the abstraction every krylearn solver works on."""

from .base import Compose, Dense, Diagonal, FunctionOperator, Identity, Operator, Scaled, Sum, aslinearoperator
from .convert import as_operator
from .interop import ScipyOperator, from_sigpy, to_sigpy
from .sparse import SparseMatrix
from .stencil import EMPTY, FLUID, SOLID, Laplacian, PoissonGrid, flags_from_matrix

__all__ = [
    "Operator",
    "Sum",
    "Scaled",
    "Compose",
    "Identity",
    "Diagonal",
    "Dense",
    "FunctionOperator",
    "SparseMatrix",
    "PoissonGrid",
    "Laplacian",
    "FLUID",
    "SOLID",
    "EMPTY",
    "flags_from_matrix",
    "as_operator",
    "aslinearoperator",
    "from_sigpy",
    "to_sigpy",
    "ScipyOperator",
]
