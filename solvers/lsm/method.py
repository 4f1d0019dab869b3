"""LSM's declaration: its network (with the normalisers it ships with) and shipped weights."""

from ..registry import Method

METHOD = Method(
    name="lsm",
    summary="Latent Spectral Models: a neural operator from PDE inputs to solutions (FNO / U-Net baselines)",
    network="normalizer:NormalizedOperator",
)
