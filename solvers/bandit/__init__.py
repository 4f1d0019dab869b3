"""Bandit-tuned relaxation: learn a solver parameter (SOR's omega) across a sequence of systems.

Khodak, Chow, Balcan, Talwalkar, "Learning to Relax: Setting Solver
Parameters Across a Sequence of Linear System Instances", ICLR 2024.

Tuners (one interface, :class:`Tuner`: ``suggest(context=None, instance=None)``
and ``update(value, result, context=None)``):

* :class:`TsallisINF` — the paper's non-contextual bandit;
* :class:`ChebCB` — the paper's contextual bandit (Chebyshev features, SquareCB);
* :class:`Young` — beyond the paper: Young's relation applied to the
  convergence factor read off each SOR residual history (no extra matvecs),
  with a bandit fallback;
* :class:`Fixed`, :class:`YoungSpectral` — baselines.

Drivers: :func:`tune` (run a tuner over a sequence), :func:`grid_costs`,
:func:`best_fixed`, :func:`instance_optimal` (grid-search oracles).

Beside the tuners the folder holds ``method.py`` (its declaration: CLI
subcommands only, no solve method or weights of its own), ``bench.py`` and
``bench_report.py`` (``krylearn bench relax``) and ``commands.py``
(``bench relax``, ``data sequence``).

Examples
--------
>>> import numpy as np, pyamg, scipy.sparse as sp
>>> from krylearn.datasets.systems import LinearSystem
>>> from krylearn.solvers.bandit import TsallisINF, tune
>>> A0 = pyamg.gallery.poisson((10, 10), format="csr")
>>> rng = np.random.default_rng(0)
>>> seq = [LinearSystem(A=A0 + c * sp.eye(100), b=rng.standard_normal(100), attrs={"context": c})
...        for c in rng.uniform(-0.1, 0.3, 50)]
>>> res = tune(seq, TsallisINF(seed=0), progress=False)
>>> res.iterations.shape
(50,)
"""

from .base import DEFAULT_GRID, Tuner
from .baselines import Fixed, YoungSpectral
from .chebcb import ChebCB
from .tsallis import TsallisINF
from .tune import TuneResult, best_fixed, grid_costs, instance_optimal, tune
from .young import Young

__all__ = [
    "DEFAULT_GRID",
    "ChebCB",
    "Fixed",
    "TsallisINF",
    "TuneResult",
    "Tuner",
    "Young",
    "YoungSpectral",
    "best_fixed",
    "grid_costs",
    "instance_optimal",
    "tune",
]
