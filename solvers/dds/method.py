"""DDS's declaration: its diffusion prior network and shipped priors."""

from ..registry import Method

METHOD = Method(
    name="dds",
    summary="decomposed diffusion sampler: a diffusion prior plus Krylov CG steps for MRI and CT",
    network="unet:UNet",
    commands="commands:add_commands",
)
