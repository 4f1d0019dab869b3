"""DDS: the Decomposed Diffusion Sampler (Chung, Lee, Ye, ICLR 2024) and its DPS baseline.

A diffusion prior (an epsilon-prediction :class:`UNet`, VP schedule) plus a
few conjugate-gradient steps per sampling step for multi-coil MRI and CT.
Priors train on the shared :class:`~krylearn.solvers.learned.Trainer`
(:func:`train_diffusion`) and load with the package's one weights convention:

>>> from krylearn.solvers.learned import load_pretrained             # doctest: +SKIP
>>> from krylearn.solvers.dds import dds_sample                      # doctest: +SKIP
>>> prior, card = load_pretrained("dds-mri")                          # doctest: +SKIP
>>> x = dds_sample(prior, SenseOperator(maps, mask), kspace, nfe=49)  # doctest: +SKIP
"""

from .dds_sampler import dds_sample
from .dps import dps_sample
from .images import crop, pad_to_multiple
from .prior import GaussianDenoiser, available_priors, load_prior, save_prior
from .problem import data_consistency
from .sampler import SamplingError, cg_fixed
from .schedule import VPSchedule, time_grid, tweedie
from .train import DiffusionTask, StreamingDiffusionTask, evaluate_loss, train_diffusion
from .unet import DEFAULT_CONFIG, UNet
from .volume import dds_sample_volume

__all__ = [
    "DEFAULT_CONFIG",
    "DiffusionTask",
    "StreamingDiffusionTask",
    "GaussianDenoiser",
    "SamplingError",
    "UNet",
    "VPSchedule",
    "available_priors",
    "cg_fixed",
    "crop",
    "data_consistency",
    "dds_sample",
    "dds_sample_volume",
    "dps_sample",
    "evaluate_loss",
    "load_prior",
    "pad_to_multiple",
    "save_prior",
    "time_grid",
    "train_diffusion",
    "tweedie",
]
