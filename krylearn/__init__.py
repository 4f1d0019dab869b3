"""krylearn: learned and classical solvers for PDEs and inverse problems."""

__version__ = "0.1.0"

from krylearn.solvers.result import SolveResult  # noqa: E402
from krylearn.solvers.api import solve  # noqa: E402

__all__ = ["solve", "SolveResult", "__version__"]
