"""``krylearn data poisson``: pressure systems of a smoke simulation, one per frame, to a krylearn HDF5 file.

The learned methods add their own generators (``data darcy``, ``data sequence``,
``data mri|ct``) from their folders.
"""

from __future__ import annotations

from ..problems.smoke import SCENES, generate_poisson_systems
from .args import add_quiet, writable_file

__all__ = ["add_data_parsers"]


def add_data_parsers(data) -> None:
    """``krylearn data poisson`` under the ``data`` subparsers."""
    dp = data.add_parser("poisson", help="pressure systems from a smoke simulation, one per frame, to HDF5",
                         description="Simulates smoke on a MAC grid and writes every frame's pressure system "
                                     "(A, b, grid shape, cell flags) to a krylearn HDF5 systems file.")
    dp.add_argument("--scene", default="smoke-plume", choices=SCENES, help="simulated scene (default smoke-plume)")
    dp.add_argument("--dim", type=int, default=2, choices=(2, 3), help="2 or 3 (default 2)")
    dp.add_argument("--n", type=int, default=64, help="cells per side (default 64)")
    dp.add_argument("--frames", type=int, default=20, help="frames to simulate and write (default 20)")
    dp.add_argument("--seed", type=int, default=0, help="scene seed (default 0)")
    dp.add_argument("-o", "--output", required=True, help="output .h5 path (required; written atomically)")
    add_quiet(dp)
    dp.set_defaults(func=cmd_data_poisson)


def cmd_data_poisson(args) -> int:
    if args.n < 4:
        raise ValueError(f"--n must be >= 4, got {args.n}")
    if args.frames < 1:
        raise ValueError(f"--frames must be >= 1, got {args.frames}")
    writable_file(args.output, "--output")
    path = generate_poisson_systems(args.output, scene=args.scene, dim=args.dim, n=args.n, frames=args.frames,
                                    seed=args.seed, progress=not args.quiet)
    print(f"wrote {path}")
    return 0
