"""krylearn: learned and classical solvers for PDEs and inverse problems."""

from .utils.version import __version__

import os as _os

# numba's OpenMP threading layer leaves spinning OpenMP threads that stall
# torch's own pool (5-250x slower torch ops after a parallel numba kernel, seen
# on 2-core machines); the workqueue layer does not, and is as fast here.
_os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")

from .solvers.result import SolveResult  # noqa: E402
from .solvers.api import solve  # noqa: E402

__all__ = ["solve", "SolveResult", "__version__"]
