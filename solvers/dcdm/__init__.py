"""DCDM: the deep conjugate direction method (Kaneda et al., ICML 2023).

``krylearn.solve(A, b, method="dcdm", model="dcdm-2d", grid_shape=(ny, nx))``
runs :func:`dcdm` with shipped weights; :func:`~.train.train_dcdm` trains new
ones (``krylearn train dcdm``); weights load with
``krylearn.solvers.learned.load_pretrained`` like every learned method's.

The folder is the method's whole room: ``method.py`` (its declaration),
``model.py``, ``solve.py``, ``train.py`` (its ``TrainTask``), ``ritz.py``,
``recipe.py`` (Ritz data -> trained weights and card), ``bench.py``
(``krylearn bench dcdm``), ``commands.py`` (its CLI subcommands) and
``weights/`` (shipped weights and cards).
"""

from .model import DCDMNet
from .pretrained import load_model
from .solve import dcdm

__all__ = ["DCDMNet", "dcdm", "load_model"]
