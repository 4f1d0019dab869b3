"""DDS: the Decomposed Diffusion Sampler (Chung, Lee, Ye, ICLR 2024) and its DPS baseline.

A diffusion prior (an epsilon-prediction :class:`UNet`, VP schedule) plus a
few conjugate-gradient steps per sampling step for multi-coil MRI and CT.

>>> from krylearn.solvers.dds import dds_sample, load_prior          # doctest: +SKIP
>>> x = dds_sample(load_prior("dds-mri"), SenseOperator(maps, mask), kspace, nfe=49)  # doctest: +SKIP
"""

from .prior import GaussianDenoiser, available_priors, load_prior, save_prior
from .sampler import (
    SamplingError,
    cg_fixed,
    crop,
    data_consistency,
    dds_sample,
    dds_sample_volume,
    dps_sample,
    pad_to_multiple,
)
from .schedule import VPSchedule, time_grid, tweedie
from .train import evaluate_loss, train_diffusion
from .unet import DEFAULT_CONFIG, UNet

__all__ = [
    "DEFAULT_CONFIG",
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
