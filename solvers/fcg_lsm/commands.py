"""FCG-LSM's CLI subcommands: ``krylearn train fcg-lsm`` and ``krylearn bench fcg-lsm``."""

from __future__ import annotations

import os
from pathlib import Path

from ...cli.args import DEFAULT_OUT, add_quiet, add_run_options, floats, int_list, method_list, writable_folder
from .bench import DEFAULT_METHODS, format_fcg_lsm_table, run_fcg_lsm_benchmark
from .recipe import train_fcg_lsm_recipe

__all__ = ["add_commands"]


def add_commands(verbs: dict) -> None:
    """Add ``train fcg-lsm`` and ``bench fcg-lsm``."""
    _add_train(verbs["train"])
    _add_bench(verbs["bench"])


def _add_train(train_verb) -> None:
    t = train_verb.add_parser(
        "fcg-lsm", help="train the LSM preconditioner of method fcg-lsm on Darcy operators",
        description="Draws --fields Darcy coefficient fields (seed --data-seed) at each of --sizes nodes per "
                    "side and 4 validation fields (seed +1) at --val-sizes, trains the LSM preconditioner to map "
                    "random residuals to their exact errors (energy-norm loss, AdamW, one-cycle), "
                    "checkpoints to OUT/checkpoint.pt (resumed when present) and writes safetensors weights + "
                    "a JSON card with the validation iterations of fcg-lsm and pcg-ic to rtol 1e-8.")
    t.add_argument("--sizes", type=int_list, default=[43, 65, 85],
                   help="training grids, nodes per side, comma-separated (default 43,65,85)")
    t.add_argument("--val-sizes", type=int_list, default=[65, 85],
                   help="validation grids, nodes per side (default 65,85)")
    t.add_argument("--fields", type=int, default=48, help="training coefficient fields per size (default 48)")
    t.add_argument("--data-seed", type=int, default=200, help="seed of the training fields (default 200)")
    t.add_argument("--width", type=int, default=16, help="LSM width, a multiple of 8 (default 16)")
    t.add_argument("--pre", type=int, default=2, help="Jacobi sweeps before the network (default 2)")
    t.add_argument("--post", type=int, default=2, help="Jacobi sweeps after the network (default 2)")
    t.add_argument("--steps", type=int, default=3000, help="optimiser steps (default 3000)")
    t.add_argument("--batch", type=int, default=8, help="random errors per step (default 8)")
    t.add_argument("--lr", type=floats, default=2e-3, help="peak learning rate (default 2e-3)")
    t.add_argument("--seed", type=int, default=0, help="initial weights and error draws (default 0)")
    t.add_argument("--name", default="fcg-lsm-darcy", help="model name in the card (default fcg-lsm-darcy)")
    t.add_argument("--save", default=None, help="weights path without suffix (default OUT/NAME)")
    t.add_argument("--no-resume", action="store_true", help="ignore OUT/checkpoint.pt (default: resume from it)")
    t.add_argument("--max-minutes", type=floats, default=None,
                   help="wall-time budget of the training loop; stops and saves after it (default: none)")
    t.add_argument("--out", default=os.path.join(DEFAULT_OUT, "train-fcg-lsm"),
                   help=f"work folder (default {DEFAULT_OUT}/train-fcg-lsm)")
    add_quiet(t)
    t.set_defaults(func=cmd_train)


def cmd_train(args) -> int:
    if not args.sizes or not args.val_sizes or min(args.sizes + args.val_sizes) < 9:
        raise ValueError(f"--sizes and --val-sizes must be integers >= 9, got {args.sizes} and {args.val_sizes}")
    for name in ("fields", "steps", "batch", "width"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if not args.lr > 0:
        raise ValueError(f"--lr must be > 0, got {args.lr}")
    if args.max_minutes is not None and not args.max_minutes > 0:
        raise ValueError(f"--max-minutes must be > 0, got {args.max_minutes}")
    card = train_fcg_lsm_recipe(out=args.out, name=args.name, save=args.save, sizes=tuple(args.sizes),
                                val_sizes=tuple(args.val_sizes), fields=args.fields,
                                data_seed=args.data_seed, width=args.width, pre=args.pre, post=args.post,
                                steps=args.steps, batch=args.batch, lr=args.lr, seed=args.seed,
                                resume=not args.no_resume, progress=not args.quiet, command=args.command_line,
                                max_minutes=args.max_minutes)
    if card:
        m = card["metrics"]
        its = ", ".join(f"{v['size']}: {v['fcg_lsm']} (pcg-ic {v['pcg_ic']})"
                        for v in m["validation_iterations_rtol_1e-8"])
        print(f"{card['name']}: {card['training']['steps']} steps in {card['seconds']['training']:.0f} s; "
              f"validation loss {m['best_val_loss']:.4g} (untrained {m['untrained_val_loss']:.4g}); "
              f"fcg-lsm iterations to 1e-8 on the validation fields: {its}")
        target = args.save or str(Path(args.out) / card["name"])
        print(f"wrote {target}.safetensors and {target}.json")
    return 0


def _add_bench(bench_verb) -> None:
    b = bench_verb.add_parser(
        "fcg-lsm", help="fcg-lsm against CG / IC-PCG / AMG-PCG / mgpcg on held-out Darcy fields across sizes",
        description="For each size and each of --fields coefficient fields of seed --seed (training used 200 "
                    "and 201), solves the Darcy system to --rtol with every method; prints a markdown table "
                    "(median over fields; iterations over IC-PCG's, growth, time over the fastest classical "
                    "method) and writes JSON, markdown and an iterations-vs-size plot.")
    b.add_argument("--sizes", type=int_list, default=[85, 170, 340],
                   help="nodes per side, comma-separated (default 85,170,340)")
    b.add_argument("--fields", type=int, default=3, help="coefficient fields per size (default 3)")
    b.add_argument("--seed", type=int, default=999, help="seed of the fields (default 999; held out)")
    b.add_argument("--methods", type=method_list, default=list(DEFAULT_METHODS),
                   help=f"comma-separated (default {','.join(DEFAULT_METHODS)})")
    b.add_argument("--model", default=None, help="fcg-lsm weights, a shipped name or a path (default fcg-lsm-darcy)")
    b.add_argument("--rtol", type=floats, default=1e-8, help="relative tolerance (default 1e-8)")
    b.add_argument("--warmup", type=int, default=1, help="untimed runs before the timed ones (default 1)")
    add_run_options(b, out="fcg-lsm", repeats=1)
    b.set_defaults(func=cmd_bench)


def cmd_bench(args) -> int:
    if not args.sizes or min(args.sizes) < 5:
        raise ValueError(f"--sizes must be integers >= 5, got {args.sizes}")
    if args.fields < 1:
        raise ValueError(f"--fields must be >= 1, got {args.fields}")
    out = writable_folder(args.out, "--out")
    report = run_fcg_lsm_benchmark(sizes=args.sizes, fields=args.fields, seed=args.seed, methods=args.methods,
                                   rtol=args.rtol, repeats=args.repeats, warmup=args.warmup, model=args.model,
                                   out_dir=out, progress=not args.quiet)
    print(format_fcg_lsm_table(report))
    print("\nwrote " + ", ".join(report["files"]))
    return 0
