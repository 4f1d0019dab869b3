"""LSM: Latent Spectral Models (Wu et al., ICML 2023) and their FNO / U-Net baselines.

``krylearn.solvers.lsm.predict(a, model="lsm-darcy")`` maps coefficient
fields ``(N, s, s)`` (numpy or torch, physical units) to solutions
``(N, s, s)``.  :func:`train_operator` trains :class:`LSM2d`,
:class:`FNO2d` or :class:`UNet2d` (all channel-first ``(B, C, H, W)``) on
the shared :class:`~krylearn.solvers.learned.Trainer`; a trained
:class:`NormalizedOperator` is saved and loaded with the package's one
weights convention (``save_pretrained`` / ``load_pretrained`` /
``available("lsm")``, re-exported here).

The folder is the method's whole room: ``method.py`` (its declaration), the
networks, ``train.py`` (its ``TrainTask``), ``predict.py``, ``warm.py``,
``recipe.py`` (Darcy files -> trained weights and card; ``krylearn train|eval
lsm``), ``bench.py`` and ``bench_warm.py`` (``krylearn bench darcy``),
``commands.py`` (its CLI subcommands) and ``weights/``.
"""

from ..learned import available, load_pretrained, save_pretrained
from .baselines import FNO2d, UNet2d
from .layers import NeuralSpectralBlock2d
from .metrics import as_fields, evaluate, relative_l2
from .model import LSM2d
from .networks import KINDS, build_network
from .normalizer import NormalizedOperator, UnitGaussianNormalizer

# imported eagerly so that the package attribute ``predict`` is the function, not the submodule
from .predict import predict
from .train import OperatorTask, train_operator

__all__ = ["LSM2d", "FNO2d", "UNet2d", "NeuralSpectralBlock2d", "UnitGaussianNormalizer", "NormalizedOperator",
           "KINDS", "OperatorTask", "predict", "train_operator", "evaluate", "relative_l2", "as_fields",
           "build_network", "save_pretrained", "load_pretrained", "available"]
