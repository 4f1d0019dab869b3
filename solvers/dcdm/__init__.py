"""DCDM: the deep conjugate direction method (Kaneda et al., ICML 2023).

``krylearn.solve(A, b, method="dcdm", grid_shape=(ny, nx))`` runs :func:`dcdm`
with the shipped learned V-cycle (``model="dcdm-2d"``: the paper's CNN);
``krylearn train dcdm`` trains new models (:mod:`.recipe_multigrid`, or
:func:`~.train.train_dcdm` for the CNN); weights load with
``krylearn.solvers.learned.load_pretrained`` like every learned method's.

The folder is the method's whole room: ``method.py`` (its declaration),
``model.py``, ``multigrid_model.py`` (the learned V-cycle), ``solve.py``,
``train.py`` and ``train_multigrid.py`` (their training tasks), ``ritz.py``,
``recipe.py`` (Ritz data -> trained weights and card), ``recipe_multigrid.py``
(smoke frames -> trained V-cycle and card), ``bench.py``
(``krylearn bench dcdm``), ``commands.py`` (its CLI subcommands) and
``weights/`` (shipped weights and cards).
"""

from .model import DCDMNet
from .multigrid_model import DCDMMultigrid
from .pretrained import load_model
from .solve import dcdm

__all__ = ["DCDMNet", "DCDMMultigrid", "dcdm", "load_model"]
