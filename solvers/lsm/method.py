"""LSM's declaration: its network (with the normalisers it ships with), shipped weights and CLI subcommands."""

from ..registry import Method

METHOD = Method(
    name="lsm",
    summary="Latent Spectral Models: a neural operator from PDE inputs to solutions (FNO / U-Net baselines)",
    network="normalizer:NormalizedOperator",
    commands="commands:add_commands",
)
