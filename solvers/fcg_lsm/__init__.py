"""FCG-LSM: flexible CG preconditioned by a Latent Spectral Model (the FCG-NO idea).

``krylearn.solve(A, b, method="fcg-lsm", grid_shape=(ny, nx))`` on a 2D
5-point grid Laplacian (Darcy flow, Poisson).  The folder: ``method.py``
(its declaration), ``model.py`` (:class:`LSMPreconditioner`, the stencil in
torch), ``solve.py`` (the method), ``train.py`` / ``recipe.py``
(``krylearn train fcg-lsm``), ``bench.py`` (``krylearn bench fcg-lsm``),
``commands.py`` and ``weights/``.
"""

from .model import LSMPreconditioner, Stencil, grid_apply, stencil_tensors
from .solve import FCGLSM, fcg_lsm

__all__ = ["LSMPreconditioner", "Stencil", "grid_apply", "stencil_tensors", "FCGLSM", "fcg_lsm"]
