"""DCDM's declaration: its solve methods, network, shipped weights and CLI subcommands."""

from ..registry import Method

METHOD = Method(
    name="dcdm",
    summary="deep conjugate direction method: a learned V-cycle (default) or a CNN gives the search "
            "directions for SPD Poisson systems",
    solvers={"dcdm": "solve:DCDM", "dcdm-pure": "solve:DCDMPure"},
    network="model:DCDMModel",
    commands="commands:add_commands",
)
