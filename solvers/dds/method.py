"""DDS's declaration: its diffusion prior network, shipped priors, reconstruction methods and CLI subcommands."""

from ..registry import Method

METHOD = Method(
    name="dds",
    summary="decomposed diffusion sampler: a diffusion prior plus Krylov CG steps for MRI and CT",
    reconstructors={"dds": "reconstruct:DDS", "dps": "reconstruct:DPS"},
    network="unet:UNet",
    commands="commands:add_commands",
)
