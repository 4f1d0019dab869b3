"""LSM: Latent Spectral Models (Wu et al., ICML 2023) and their FNO / U-Net baselines.

``krylearn.solvers.lsm.predict(a, model="lsm-darcy")`` maps coefficient
fields ``(N, s, s)`` (numpy or torch, physical units) to solutions
``(N, s, s)``.  :func:`train_operator` trains :class:`LSM2d`,
:class:`FNO2d` or :class:`UNet2d` (all channel-first ``(B, C, H, W)``);
:func:`save_pretrained` / :func:`load_pretrained` write and read
safetensors weights with a JSON card.
"""

from pathlib import Path as _Path

from ..weights import list_weights as _list_weights

from .baselines import FNO2d, UNet2d
from .layers import NeuralSpectralBlock2d
from .model import LSM2d
from .normalizer import NormalizedOperator, UnitGaussianNormalizer

# imported eagerly so that the package attribute ``predict`` is the function, not the submodule
from .predict import predict
from .train import (
    build_network,
    evaluate,
    load_pretrained,
    relative_l2,
    save_pretrained,
    train_operator,
)

__all__ = ["LSM2d", "FNO2d", "UNet2d", "NeuralSpectralBlock2d", "UnitGaussianNormalizer", "NormalizedOperator",
           "predict", "train_operator", "evaluate", "relative_l2", "save_pretrained", "load_pretrained",
           "build_network", "available_models"]


def available_models() -> list[str]:
    """Names of the shipped weights (usable as ``predict(..., model=name)``)."""
    return _list_weights(_Path(__file__).parent / "weights")
