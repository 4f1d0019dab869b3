"""krylearn: learned and classical solvers for PDEs and inverse problems.

The public entry points: :func:`solve` (one call), :class:`Solver` (set up
once, solve many right-hand sides) and :class:`SolveResult`.
"""

import os as _os

# numba's OpenMP threading layer leaves spinning OpenMP threads that stall
# torch's own pool (5-250x slower torch ops after a parallel numba kernel, seen
# on 2-core machines); the workqueue layer does not, and is as fast here.
_os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")

from .solvers.api import solve  # noqa: E402
from .solvers.result import SolveResult  # noqa: E402
from .solvers.solver import Solver  # noqa: E402
from .utils.version import __version__  # noqa: E402

__all__ = ["solve", "Solver", "SolveResult", "__version__"]
