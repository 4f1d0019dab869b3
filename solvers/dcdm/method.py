"""DCDM's declaration: its solve methods, network and shipped weights."""

from ..registry import Method

METHOD = Method(
    name="dcdm",
    summary="deep conjugate direction method: a CNN proposes search directions for SPD Poisson systems",
    solvers={"dcdm": "solve:DCDM", "dcdm-pure": "solve:DCDMPure"},
    network="model:DCDMNet",
)
