"""DCDM: the deep conjugate direction method (Kaneda et al., ICML 2023).

``krylearn.solve(A, b, method="dcdm", model="dcdm-2d", grid_shape=(ny, nx))``
runs :func:`dcdm` with shipped weights; :mod:`.train` trains new ones.
"""

from .model import DCDMNet
from .pretrained import available_models, load_model, save_model
from .solve import dcdm

__all__ = ["DCDMNet", "dcdm", "load_model", "save_model", "available_models"]
