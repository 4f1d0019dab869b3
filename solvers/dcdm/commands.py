"""DCDM's CLI subcommands: ``krylearn train dcdm`` and ``krylearn bench dcdm``."""

from __future__ import annotations

import os
from pathlib import Path

from ...cli.args import (DEFAULT_OUT, add_quiet, add_run_options, comma_list, device, floats, int_list, method_list,
                         writable_folder)
from .bench import DEFAULT_METHODS, format_dcdm_table, run_dcdm_benchmark
from .recipe import DEFAULT_SCENES, train
from .recipe_multigrid import train_multigrid_recipe

__all__ = ["add_commands"]


def add_commands(verbs: dict) -> None:
    """Add ``train dcdm`` and ``bench dcdm``; ``verbs`` maps "train", "eval", "bench", "data" to subparsers."""
    _add_train(verbs["train"])
    _add_bench(verbs["bench"])


# ------------------------------------------------------------------ train dcdm
def _add_train(train_verb) -> None:
    td = train_verb.add_parser(
        "dcdm", help="train a DCDM model: the learned V-cycle (default) or the paper's CNN (--arch cnn)",
        description="--arch multigrid (default): simulates frames 6 and 11 of each scene at --n and 2n cells per "
                    "side (seeds --data-seed.., +10 at 2n; validation: seeds +50 at 4n in 2D, 2n in 3D), trains "
                    "the learned V-cycle's smoother weights and coarse-correction scales through --k PCG steps "
                    "(Adam, cosine), checkpoints to OUT/checkpoint.pt and writes safetensors weights + a JSON "
                    "card. --arch cnn: simulates one frame per scene (seeds --data-seed, --data-seed+1, ...; the "
                    "benchmark uses 0-9), computes --ritz Ritz vectors of each pressure matrix (Lanczos, full "
                    "re-orthogonalisation) into OUT/ritz-<dim>d-<n>-<digest>.h5, trains with the unsupervised "
                    "DCDM loss (Adam), checkpoints to OUT/checkpoint.pt (resumed when present) and writes "
                    "safetensors weights + a JSON card. Under torchrun (WORLD_SIZE > 1) it trains with "
                    "DistributedDataParallel.")
    td.add_argument("--arch", default="multigrid", choices=("multigrid", "cnn"),
                    help="multigrid: the learned V-cycle (the shipped default model); cnn: the paper's network "
                         "(default multigrid)")
    td.add_argument("--dim", type=int, default=2, choices=(2, 3), help="2 or 3 (default 2)")
    td.add_argument("--n", type=int, default=None,
                    help="training grid cells per side (default 48 for multigrid in 2D, 16 in 3D; 128 for cnn)")
    td.add_argument("--k", type=int, default=6, help="multigrid: PCG steps the loss looks through (default 6)")
    td.add_argument("--sweeps", type=int, default=2, help="multigrid: smoothing sweeps each side (default 2)")
    td.add_argument("--scenes", type=comma_list, default=list(DEFAULT_SCENES),
                    help=f"training scenes, comma-separated (default {','.join(DEFAULT_SCENES)})")
    td.add_argument("--data-seed", type=int, default=100, help="scene seed of the first training matrix (default 100)")
    td.add_argument("--frame", type=int, default=8, help="simulation frame of the training matrices (default 8)")
    td.add_argument("--ritz", type=int, default=800, help="Lanczos steps / Ritz vectors per matrix (default 800)")
    td.add_argument("--data", default=None, help="existing Ritz HDF5 file (skips the data step; default: make one)")
    td.add_argument("--steps", type=int, default=None, help="optimiser steps (default 150 multigrid, 2000 cnn)")
    td.add_argument("--batch", type=int, default=10, help="right-hand sides per step (default 10, as the paper)")
    td.add_argument("--lr", type=floats, default=None,
                    help="Adam learning rate (default 0.02 multigrid; 1e-4 cnn, as the paper)")
    td.add_argument("--schedule", default="constant", choices=("constant", "cosine"),
                    help="learning-rate schedule (cosine: decay to lr/10; default constant)")
    td.add_argument("--seed", type=int, default=0, help="initial weights and right-hand-side draws (default 0)")
    td.add_argument("--width", type=int, default=16, help="channels (default 16, as the paper)")
    td.add_argument("--levels", type=int, default=3,
                    help="resolution levels (paper: 2; 0: as deep as the grid allows, shared blocks; default 3)")
    td.add_argument("--blocks", type=int, default=1, help="residual blocks per level and direction (default 1)")
    td.add_argument("--geometry", action="store_true",
                    help="feed the fluid-cell mask as a second input channel (default off: it did not help in "
                         "our ablation)")
    td.add_argument("--shared", action="store_true",
                    help="one set of blocks for all levels (default off; implied by --levels 0)")
    td.add_argument("--upsample", default="linear", choices=("linear", "nearest"),
                    help="upsampling between levels (default linear)")
    td.add_argument("--init", default=None, help="start from these weights, a shipped name or a path (default: fresh)")
    td.add_argument("--name", default=None, help="model name in the card (default dcdm-mg-<dim>d, cnn: dcdm-<dim>d)")
    td.add_argument("--save", default=None, help="weights path without suffix (default OUT/NAME)")
    td.add_argument("--device", type=device, default=None, help="cpu | cuda (default: cuda when available)")
    td.add_argument("--no-resume", action="store_true", help="ignore OUT/checkpoint.pt (default: resume from it)")
    td.add_argument("--max-minutes", type=floats, default=None,
                    help="wall-time budget of the training loop; stops and saves after it (default: none)")
    td.add_argument("--out", default=os.path.join(DEFAULT_OUT, "train-dcdm"),
                    help=f"work folder (default {DEFAULT_OUT}/train-dcdm)")
    add_quiet(td)
    td.set_defaults(func=cmd_train_dcdm)


def _check_train_args(args) -> None:
    multigrid = args.arch == "multigrid"
    if args.n is None:
        args.n = (48 if args.dim == 2 else 16) if multigrid else 128
    if args.steps is None:
        args.steps = 150 if multigrid else 2000
    if args.lr is None:
        args.lr = 0.02 if multigrid else 1e-4
    for name in ("n", "steps", "batch", "ritz", "frame", "width", "blocks", "k", "sweeps"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise ValueError(f"--{name} must be >= 1, got {v}")
    if args.levels < 0:
        raise ValueError(f"--levels must be >= 0 (0: automatic depth), got {args.levels}")
    if not args.lr > 0:
        raise ValueError(f"--lr must be > 0, got {args.lr}")
    if args.max_minutes is not None and not args.max_minutes > 0:
        raise ValueError(f"--max-minutes must be > 0, got {args.max_minutes}")
    if not args.scenes:
        raise ValueError("--scenes must name at least one scene")


def cmd_train_dcdm(args) -> int:
    _check_train_args(args)
    if args.arch == "multigrid":
        card = train_multigrid_recipe(dim=args.dim, n=args.n, out=args.out, name=args.name, save=args.save,
                                      scenes=tuple(args.scenes), data_seed=args.data_seed, steps=args.steps,
                                      lr=args.lr, k=args.k, sweeps=args.sweeps, seed=args.seed,
                                      resume=not args.no_resume, progress=not args.quiet,
                                      command=args.command_line, max_minutes=args.max_minutes)
        if card:
            m = card["metrics"]
            its = ", ".join(f"{v['untrained_iterations']} -> {v['iterations']}" for v in m["validation_frames"])
            print(f"{card['name']}: {card['training']['steps']} steps in {card['seconds']['training']:.0f} s; "
                  f"held-out loss {m['final_val_loss']:.4g} (best {m['best_val_loss']:.4g} at step "
                  f"{m['best_step']}); validation iterations to 1e-6, untrained -> trained: {its}")
            target = args.save or str(Path(args.out) / card["name"])
            print(f"wrote {target}.safetensors and {target}.json")
        return 0
    config = {"width": args.width, "levels": args.levels, "blocks": args.blocks, "geometry": args.geometry,
              "shared": args.shared or args.levels == 0, "upsample": args.upsample}
    card = train(dim=args.dim, n=args.n, out=args.out, name=args.name, data=args.data, scenes=args.scenes,
                 data_seed=args.data_seed, frame=args.frame, ritz=args.ritz, steps=args.steps, batch=args.batch,
                 lr=args.lr, schedule=args.schedule, seed=args.seed, config=config, save=args.save,
                 resume=not args.no_resume, device=args.device, init=args.init, progress=not args.quiet,
                 command=args.command_line, max_minutes=args.max_minutes)
    if card:
        m = card["metrics"]
        print(f"{card['name']}: {card['training']['steps']} steps in {card['seconds']['training']:.0f} s; "
              f"held-out loss {m['final_val_loss']:.4g} (best {m['best_val_loss']:.4g} at step {m['best_step']})")
        target = args.save or str(Path(args.out) / card["name"])
        print(f"wrote {target}.safetensors and {target}.json")
    return 0


# ------------------------------------------------------------------ bench dcdm
def _add_bench(bench_verb) -> None:
    bd = bench_verb.add_parser(
        "dcdm", help="DCDM against CG / IC-PCG / AMG-PCG / mgpcg on held-out smoke frames across grid sizes",
        description="For each scene and size: simulate --frames frames with scene seed --seed (training used "
                    "seeds >= 100), solve the last frame's pressure system with every method to --rtol, read the "
                    "iterations to --rtol-coarse off the same history; print a markdown table with iteration "
                    "growth and write JSON, markdown, residual plots and an iterations-vs-size plot. Simulated "
                    "systems are cached in --out as .npz.")
    bd.add_argument("--dim", type=int, default=2, choices=(2, 3), help="2 or 3 (default 2)")
    bd.add_argument("--sizes", type=int_list, default=None, help="cells per side, comma-separated "
                    "(default 128,256,512 in 2D; 32,64,128 in 3D)")
    bd.add_argument("--scenes", type=comma_list, default=list(DEFAULT_SCENES),
                    help=f"comma-separated (default {','.join(DEFAULT_SCENES)})")
    bd.add_argument("--seed", type=int, default=0, help="scene seed (default 0; held out from training)")
    bd.add_argument("--frames", type=int, default=10, help="frame to take (default 10)")
    bd.add_argument("--methods", type=method_list, default=list(DEFAULT_METHODS),
                    help=f"comma-separated (default {','.join(DEFAULT_METHODS)})")
    bd.add_argument("--model", default=None,
                    help="DCDM weights, a shipped name or a path (default dcdm-mg-<dim>d; dcdm-pure: dcdm-<dim>d)")
    bd.add_argument("--rtol", type=floats, default=1e-6, help="relative tolerance of the runs (default 1e-6)")
    bd.add_argument("--rtol-coarse", type=floats, default=1e-4, help="also report iterations to this (default 1e-4)")
    bd.add_argument("--warmup", type=int, default=1, help="untimed runs before the timed ones (default 1)")
    bd.add_argument("--sim-solver", default="pcg-amg",
                    help="the method the simulation solves its own pressure with (default pcg-amg; mgpcg for "
                         "large grids)")
    add_run_options(bd, out="dcdm", repeats=1)
    bd.set_defaults(func=cmd_bench_dcdm)


def cmd_bench_dcdm(args) -> int:
    sizes = args.sizes if args.sizes is not None else ([128, 256, 512] if args.dim == 2 else [32, 64, 128])
    if not sizes or min(sizes) < 8:
        raise ValueError(f"--sizes must be integers >= 8, got {sizes}")
    if not args.scenes:
        raise ValueError("--scenes must name at least one scene")
    out = writable_folder(args.out, "--out")
    report = run_dcdm_benchmark(dim=args.dim, sizes=sizes, scenes=args.scenes, seed=args.seed, frames=args.frames,
                                methods=args.methods, rtol=args.rtol, rtol_coarse=args.rtol_coarse,
                                repeats=args.repeats, warmup=args.warmup, model=args.model,
                                out_dir=out, progress=not args.quiet, sim_solver=args.sim_solver)
    print(format_dcdm_table(report))
    print("\nwrote " + ", ".join(report["files"]))
    return 0
