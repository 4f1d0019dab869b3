"""FCG-LSM's declaration: its solve method, network, shipped weights and CLI subcommands."""

from ..registry import Method

METHOD = Method(
    name="fcg_lsm",
    summary="flexible CG preconditioned by a Latent Spectral Model trained to map residuals to errors "
            "(Darcy and other 2D grid Laplacians)",
    solvers={"fcg-lsm": "solve:FCGLSM"},
    network="model:LSMPreconditioner",
    commands="commands:add_commands",
)
