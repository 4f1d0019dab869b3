"""The ``krylearn`` command line: demo, solve, bench, data, train, eval, reconstruct."""

from __future__ import annotations
from ..utils.version import __version__

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

from .args import DEFAULT_OUT, add_run_options as _add_run_options, add_stopping as _add_stopping, floats as _floats, int_list, method_list as _method_list

def _add_problem(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("problem (a generated smoke-simulation frame, or a file)")
    g.add_argument("--scene", default="smoke-obstacle", help="smoke-plume | smoke-obstacle (default smoke-obstacle)")
    g.add_argument("--dim", type=int, default=2, choices=(2, 3), help="2 or 3 (default 2)")
    g.add_argument("--n", type=int, default=128, help="cells per side (default 128)")
    g.add_argument("--frames", type=int, default=10, help="simulate this many frames, take the last (default 10)")
    g.add_argument("--seed", type=int, default=0, help="scene seed (default 0)")
    g.add_argument("--file", default=None, help="krylearn HDF5 systems file or Matrix Market .mtx instead")
    g.add_argument("--index", type=int, default=-1, help="system index in --file (default: last)")


def _problem(args):
    from ..benchmarks.poisson import file_problem, smoke_problem

    if args.file:
        return file_problem(args.file, args.index)
    if args.n < 4:
        raise ValueError(f"--n must be >= 4, got {args.n}")
    return smoke_problem(args.scene, args.dim, args.n, args.frames, args.seed, progress=not args.quiet)


def _default_methods() -> list[str]:
    from ..solvers.api import available_methods

    return available_methods()


# --------------------------------------------------------------- commands
def cmd_demo(args) -> int:
    from ..benchmarks.poisson import format_table, run_benchmark

    problem = _problem(args)
    methods = args.methods or _default_methods()
    # stationary methods get a bounded budget and a sensible omega so the demo stays short
    options = {"sor": {"omega": 1.9}, "ssor": {"omega": 1.5}, "pcg-ssor": {"omega": 1.5}}
    maxiter = args.maxiter
    print(f"krylearn demo: {problem.name}: {problem.unknowns} unknowns "
          f"({problem.A.shape[0]} grid cells, nnz {problem.A.nnz})")
    rows_all, report = [], None
    for group, mi in (([m for m in methods if not _is_stationary(m)], maxiter),
                      ([m for m in methods if _is_stationary(m)], maxiter or args.relax_maxiter)):
        if not group:
            continue
        r = run_benchmark(problem, group, rtol=args.rtol, atol=args.atol, maxiter=mi, repeats=args.repeats,
                          warmup=1, out_dir=None, options=options, progress=not args.quiet)
        rows_all += r["rows"]
        if report is None:
            report = r
        else:
            report["residuals"].update(r["residuals"])
    report["rows"] = rows_all
    out = Path(args.out)
    _write_report(report, out, problem.name, args.rtol)
    print(format_table(rows_all, rtol=args.rtol, atol=args.atol))
    print(f"\nwrote {out / (problem.name + '.json')} and {out / (problem.name + '.png')}")
    return 0


def _is_stationary(m: str) -> bool:
    from ..solvers.api import RELAXATION_METHODS

    return m in RELAXATION_METHODS


def _write_report(report: dict, out: Path, name: str, rtol: float) -> None:
    from ..benchmarks.poisson import plot_residuals
    from ..utils.atomic import atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / f"{name}.json", json.dumps(report, indent=1))
    plot_residuals(report["residuals"], out / f"{name}.png", title=name, rtol=rtol)


def cmd_solve(args) -> int:
    import numpy as np

    from ..solvers.api import solve
    from ..utils.atomic import atomic_path

    path = Path(args.matrix)
    if not path.exists():
        raise FileNotFoundError(f"matrix file not found: {path}")
    if path.suffix == ".mtx":
        from ..datasets.matrix_market import read_mtx

        A = read_mtx(path)
        b = None
    else:
        from ..datasets.systems import SystemsFile

        with SystemsFile(path) as f:
            s = f[args.index % len(f)]
        A, b = s.A, np.asarray(s.b)[0]
    if args.rhs:
        b = _read_vector(args.rhs, A.shape[0])
    elif b is None:
        b = np.ones(A.shape[0]) * (np.diff(A.indptr) > 0)
        print("no --rhs given: using b = 1 on nonzero rows")
    opts = {}
    if args.omega is not None:
        opts["omega"] = args.omega
    res = solve(A, b, method=args.method, rtol=args.rtol, atol=args.atol, maxiter=args.maxiter, **opts)
    if res.reason == "indefinite":
        raise ValueError(f"{path.name}: A is not symmetric positive definite ({args.method} found p.Ap <= 0 "
                         f"at iteration {res.iterations + 1}); CG-type methods need an SPD matrix")
    print(res)
    if args.output:
        out = Path(args.output)
        with atomic_path(out) as tmp, open(tmp, "wb") as fh:
            np.save(fh, np.asarray(res.x))
        print(f"wrote {out}")
    return 0 if res.converged else 1


def _read_vector(path, n):
    import numpy as np

    p = Path(path)
    if p.suffix == ".npy":
        v = np.load(p, allow_pickle=False)
    elif p.suffix == ".mtx":
        from ..datasets.matrix_market import read_mtx

        v = read_mtx(p)
        v = v.toarray() if hasattr(v, "toarray") else np.asarray(v)
    else:
        v = np.loadtxt(p)
    v = np.asarray(v, dtype=np.float64).reshape(-1)
    if v.shape[0] != n:
        raise ValueError(f"--rhs has {v.shape[0]} entries, the matrix has {n} rows")
    return v


def cmd_bench_poisson(args) -> int:
    from ..benchmarks.poisson import format_table, run_benchmark

    if args.sequence:
        return _bench_frames(args)
    problem = _problem(args)
    methods = args.methods or ["cg", "pcg-ic", "pcg-amg"]
    report = run_benchmark(problem, methods, rtol=args.rtol, atol=args.atol, maxiter=args.maxiter,
                           repeats=args.repeats, warmup=1, out_dir=args.out, progress=not args.quiet)
    print(f"{problem.name}: {problem.unknowns} unknowns, nnz {problem.A.nnz}")
    print(format_table(report["rows"], rtol=args.rtol, atol=args.atol))
    print("\nwrote " + " and ".join(report["files"]))
    return 0


def _bench_frames(args) -> int:
    from ..benchmarks.frames import format_frames_table, record_frames, run_frames
    from ..benchmarks.poisson import machine
    from ..utils.atomic import atomic_write_text

    if args.file:
        raise ValueError("--sequence simulates its frames; it cannot be combined with --file")
    seq = record_frames(args.scene, args.dim, args.n, args.sequence, args.seed, progress=not args.quiet)
    methods = args.methods or ["cg", "pcg-ic", "pcg-amg", "dcdm"]
    report = run_frames(seq, methods, rtol=args.rtol, maxiter=args.maxiter, progress=not args.quiet)
    report["machine"] = machine()
    report["command"] = args.command_line
    table = format_frames_table(report)
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = report["problem"]["name"]
    atomic_write_text(out / f"{name}.json", json.dumps(report, indent=1))
    atomic_write_text(out / f"{name}.md", table + "\n")
    print(f"\nwrote {out / (name + '.json')} and {out / (name + '.md')}")
    return 0


def cmd_bench_baselines(args) -> int:
    from ..benchmarks.baselines import (
        compare_cg,
        compare_spmv,
        format_cg_table,
        format_spmv_table,
    )
    from ..benchmarks.poisson import machine
    from ..utils.atomic import atomic_write_text

    problem = _problem(args)
    print(f"{problem.name}: {problem.unknowns} unknowns, nnz {problem.A.nnz}")
    cg_rows = compare_cg(problem, rtol=args.rtol, repeats=args.repeats)
    spmv_rows = compare_spmv(problem)
    print(format_cg_table(cg_rows, args.rtol))
    print()
    print(format_spmv_table(spmv_rows))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"baselines-{problem.name}.json"
    atomic_write_text(path, json.dumps({"problem": problem.name, "unknowns": problem.unknowns,
                                        "meta": problem.meta, "rtol": args.rtol, "machine": machine(),
                                        "cg": cg_rows, "spmv": spmv_rows}, indent=1))
    print(f"\nwrote {path}")
    return 0


def cmd_data_poisson(args) -> int:
    from ..problems.smoke import generate_poisson_systems

    if args.n < 4:
        raise ValueError(f"--n must be >= 4, got {args.n}")
    if args.frames < 1:
        raise ValueError(f"--frames must be >= 1, got {args.frames}")
    path = generate_poisson_systems(args.output, scene=args.scene, dim=args.dim, n=args.n, frames=args.frames,
                                    seed=args.seed, progress=not args.quiet)
    print(f"wrote {path}")
    return 0


def _sequence_kinds(s: str) -> list[str]:
    from ..benchmarks.relax import SEQUENCE_KINDS

    kinds = [k.strip() for k in s.split(",") if k.strip()]
    bad = [k for k in kinds if k not in SEQUENCE_KINDS]
    if not kinds or bad:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(SEQUENCE_KINDS)}, got {s!r}")
    return kinds


def cmd_bench_relax(args) -> int:
    from ..benchmarks.relax import (
        format_table,
        make_sequence,
        run_relax,
        write_report,
    )

    if args.T is not None and args.T < 1:
        raise ValueError(f"--T must be >= 1, got {args.T}")
    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    if args.file:
        from ..problems.sequences import read_sequence

        seq = read_sequence(args.file)
        sequences = [seq if args.T is None or args.T >= len(seq) else seq[: args.T]]
    else:
        sequences = [make_sequence(k, args.T or 1000, args.n, args.seed, progress=not args.quiet)
                     for k in args.sequence]
    out = Path(args.out)
    for seq in sequences:
        if len(seq) == 0:
            raise ValueError(f"{seq.name}: the sequence is empty")
        report = run_relax(seq, solver=args.solver, warm_start=args.warm_start, rtol=args.rtol,
                           maxiter=args.maxiter, seeds=args.seeds, cache_dir=None if args.no_cache else out,
                           progress=not args.quiet)
        files = write_report(report, out)
        print(format_table(report))
        print("\nwrote " + ", ".join(files) + "\n")
    return 0


def cmd_data_sequence(args) -> int:
    from ..problems.sequences import heat2d, shifted_laplacian, write_sequence

    if args.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")
    if args.kind == "heat2d":
        n = 64 if args.n is None else args.n
        if n < 2:
            raise ValueError(f"--n must be >= 2, got {n}")
        seq = heat2d(n, args.steps, dt=args.dt, seed=args.seed, progress=not args.quiet)
    else:
        n = 10 if args.n is None else args.n
        if not 1 <= n <= 11:
            raise ValueError(f"--n must be in [1, 11] for {args.kind} (larger grids make L + c I indefinite), got {n}")
        seq = shifted_laplacian(args.steps, variance=args.kind.split("-")[1], grid=n, seed=args.seed)
    path = write_sequence(args.output, seq, progress=not args.quiet)
    print(f"wrote {path}: {seq.name}, {len(seq)} systems of {seq[0].n} unknowns, contexts in {seq.context_range}")
    return 0


def cmd_bench_dcdm(args) -> int:
    from ..benchmarks.dcdm import format_dcdm_table, run_dcdm_benchmark

    if args.sizes is None:
        args.sizes = [128, 256, 512] if args.dim == 2 else [32, 64, 128]
    if not args.sizes or min(args.sizes) < 8:
        raise ValueError(f"--sizes must be integers >= 8, got {args.sizes}")
    report = run_dcdm_benchmark(dim=args.dim, sizes=args.sizes,
                                scenes=[s.strip() for s in args.scenes.split(",") if s.strip()], seed=args.seed,
                                frames=args.frames, methods=args.methods, rtol=args.rtol,
                                rtol_coarse=args.rtol_coarse, repeats=args.repeats, warmup=args.warmup,
                                model=args.model,
                                out_dir=args.out, progress=not args.quiet)
    print(format_dcdm_table(report))
    print("\nwrote " + ", ".join(report["files"]))
    return 0


def cmd_data_darcy(args) -> int:
    from ..problems.darcy import generate_darcy

    path = generate_darcy(args.output, args.n, res=args.res, sub=args.sub, seed=args.seed, workers=args.workers,
                          method=args.method, grid=args.grid, rtol=args.rtol, compression=args.compression,
                          progress=not args.quiet)
    print(f"wrote {path}")
    return 0


def _lsm_config(args) -> dict:
    cfg = json.loads(args.config) if args.config else {}
    if not isinstance(cfg, dict):
        raise ValueError(f"--config must be a JSON object, got {args.config!r}")
    for key in ("width", "num_basis", "num_token", "patch", "levels", "modes", "layers"):
        v = getattr(args, key, None)
        if v is not None:
            cfg[key] = v
    return cfg


def cmd_train_lsm(args) -> int:
    from ..pipelines.lsm import train

    card = train(args.kind, args.data, args.test, sub=args.sub, ntrain=args.ntrain, nval=args.nval,
                 ntest=args.ntest, config=_lsm_config(args), epochs=args.epochs, batch_size=args.batch_size,
                 lr=args.lr, weight_decay=args.weight_decay, step_size=args.step_size, gamma=args.gamma,
                 seed=args.seed, checkpoint=args.checkpoint or f"{args.out}.ckpt", resume=not args.no_resume,
                 device=args.device, out=args.out, half=args.half, progress=not args.quiet,
                 command=args.command_line)
    if card:
        m = card["metrics"]
        print(f"{card['name']}: {card['parameters']} parameters, {card['epochs']} epochs in {card['seconds']:.0f} s; "
              f"test relative L2 {m['test_rel_l2']:.4g} (best validation {m['best_val_rel_l2']:.4g} at epoch "
              f"{m['best_epoch']})\nwrote {args.out}.safetensors and {args.out}.json")
    return 0


def cmd_eval_lsm(args) -> int:
    from ..pipelines.lsm import evaluate

    resample = {"no": False, "yes": True, "native": "native"}[args.resample]
    r = evaluate(args.model, args.data, start=args.start, count=args.count, sub=args.sub,
                 batch_size=args.batch_size, resample=resample, device=args.device)
    print(f"{args.model} on {args.data}: relative L2 mean {r['rel_l2_mean']:.4g}, median {r['rel_l2_median']:.4g}, "
          f"max {r['rel_l2_max']:.4g}; {r['seconds_per_sample'] * 1e3:.2f} ms per sample")
    return 0


def cmd_bench_darcy(args) -> int:
    from ..benchmarks.darcy import format_darcy_table, run_darcy_benchmark

    report = run_darcy_benchmark(args.data, models=args.models, start=args.start, count=args.count, sub=args.sub,
                                 out_dir=args.out, warm_start=not args.no_warm_start, warm_count=args.warm_count,
                                 rtol=args.rtol, repeats=args.repeats, batch_size=args.batch_size,
                                 methods=args.methods, device=args.device, progress=not args.quiet)
    print(format_darcy_table(report))
    if report.get("files"):
        print("\nwrote " + ", ".join(report["files"]))
    return 0


def cmd_train_dcdm(args) -> int:
    from ..pipelines.dcdm import train

    for name in ("n", "steps", "batch", "ritz", "frame", "width", "blocks"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise ValueError(f"--{name} must be >= 1, got {v}")
    if args.levels < 0:
        raise ValueError(f"--levels must be >= 0 (0: automatic depth), got {args.levels}")
    if not args.lr > 0:
        raise ValueError(f"--lr must be > 0, got {args.lr}")
    config = {"width": args.width, "levels": args.levels, "blocks": args.blocks, "geometry": args.geometry,
              "shared": args.shared or args.levels == 0, "upsample": args.upsample}
    card = train(dim=args.dim, n=args.n, out=args.out, name=args.name, data=args.data,
                 scenes=[s.strip() for s in args.scenes.split(",") if s.strip()], data_seed=args.data_seed,
                 frame=args.frame, ritz=args.ritz, steps=args.steps, batch=args.batch, lr=args.lr,
                 schedule=args.schedule,
                 seed=args.seed, config=config, save=args.save, resume=not args.no_resume, device=args.device,
                 init=args.init, progress=not args.quiet)
    if card:
        m = card["metrics"]
        print(f"{card['name']}: {card['training']['steps']} steps in {card['seconds']['training']:.0f} s; "
              f"held-out loss {m['final_val_loss']:.4g} (best {m['best_val_loss']:.4g} at step {m['best_step']})")
        target = args.save or str(Path(args.out) / card["name"])
        print(f"wrote {target}.safetensors and {target}.json")
    return 0


# ----------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:

    p = argparse.ArgumentParser(prog="krylearn", description="Learned and classical solvers for PDEs and inverse problems.")
    p.add_argument("--version", action="version", version=f"krylearn {__version__}")
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    d = sub.add_parser("demo", help="solve a generated fluid-simulation pressure system with every method",
                       description="Simulate smoke on a MAC grid, take one frame's pressure system, solve it with "
                                   "every available method, print the comparison table and write a residual plot.")
    _add_problem(d)
    _add_stopping(d)
    d.add_argument("--methods", type=_method_list, default=None, help="comma-separated (default: all available)")
    d.add_argument("--relax-maxiter", type=int, default=5000, help="iteration cap for SOR/SSOR/GS/Jacobi (default 5000)")
    _add_run_options(d, out="demo", repeats=1)
    d.set_defaults(func=cmd_demo)

    s = sub.add_parser("solve", help="solve a system from a Matrix Market or krylearn HDF5 file",
                       description="Solve A x = b. A from a .mtx file or a krylearn HDF5 systems file (--index).")
    s.add_argument("matrix", help="A.mtx or systems.h5")
    s.add_argument("--rhs", default=None, help="b as .npy, .mtx or text (default: from the .h5 file, or ones)")
    s.add_argument("--index", type=int, default=0, help="system index in an .h5 file (default 0)")
    s.add_argument("--method", default="pcg-amg", help="solver method (default pcg-amg)")
    s.add_argument("--omega", type=_floats, default=None, help="relaxation factor for sor/ssor/pcg-ssor/jacobi")
    _add_stopping(s)
    s.add_argument("-o", "--output", default=None, help="write x to this .npy file")
    s.set_defaults(func=cmd_solve)

    b = sub.add_parser("bench", help="benchmarks: poisson, baselines, relax, dcdm, darcy, mri, ct")
    bsub = b.add_subparsers(dest="bench", metavar="BENCH")
    bp = bsub.add_parser("poisson", help="iterations and seconds of several methods on one Poisson system",
                         description="Prints a table (method, iterations, setup s, solve s, final relative "
                                     "residual, converged) and writes JSON + a residual-vs-iteration PNG.")
    _add_problem(bp)
    _add_stopping(bp)
    bp.add_argument("--methods", type=_method_list, default=None,
                    help="comma-separated (default cg,pcg-ic,pcg-amg; with --sequence also dcdm)")
    bp.add_argument("--sequence", type=int, default=0, metavar="N",
                    help="solve N consecutive frames of the scene instead of one: a fresh krylearn.solve per "
                         "frame against one Solver warm-started from the previous frame")
    _add_run_options(bp, out="bench", repeats=3)
    bp.set_defaults(func=cmd_bench_poisson)
    bb = bsub.add_parser("baselines", help="krylearn cg / pcg-amg / SpMV against scipy and pyamg on one system")
    _add_problem(bb)
    bb.add_argument("--rtol", type=_floats, default=1e-6, help="relative tolerance (default 1e-6)")
    _add_run_options(bb, out="bench", repeats=3)
    bb.set_defaults(func=cmd_bench_baselines)
    bd = bsub.add_parser(
        "dcdm", help="DCDM against CG / IC-PCG / AMG-PCG on held-out smoke frames across grid sizes",
        description="For each scene and size: simulate --frames frames with scene seed --seed (training used "
                    "seeds >= 100), solve the last frame's pressure system with every method to --rtol, read the "
                    "iterations to --rtol-coarse off the same history; print a markdown table with iteration "
                    "growth and write JSON, markdown, residual plots and an iterations-vs-size plot. Simulated "
                    "systems are cached in --out as .npz.")
    bd.add_argument("--dim", type=int, default=2, choices=(2, 3))
    bd.add_argument("--sizes", type=int_list, default=None, help="cells per side, comma-separated "
                    "(default 128,256,512 in 2D; 32,64,128 in 3D)")
    bd.add_argument("--scenes", default="smoke-plume,smoke-obstacle", help="default both")
    bd.add_argument("--seed", type=int, default=0, help="scene seed (default 0; held out from training)")
    bd.add_argument("--frames", type=int, default=10, help="frame to take (default 10)")
    bd.add_argument("--methods", type=_method_list, default=["cg", "pcg-ic", "pcg-amg", "dcdm"],
                    help="default cg,pcg-ic,pcg-amg,dcdm")
    bd.add_argument("--model", default=None, help="DCDM weights (default dcdm-<dim>d)")
    bd.add_argument("--rtol", type=_floats, default=1e-6, help="relative tolerance of the runs (default 1e-6)")
    bd.add_argument("--rtol-coarse", type=_floats, default=1e-4, help="also report iterations to this (default 1e-4)")
    bd.add_argument("--warmup", type=int, default=1, help="untimed runs before the timed ones (default 1)")
    _add_run_options(bd, out="dcdm", repeats=1)
    bd.set_defaults(func=cmd_bench_dcdm)
    br = bsub.add_parser(
        "relax", help="bandit-tuned SOR omega across a sequence of systems (Learning to Relax)",
        description="Runs omega=1, omega=1.5, YoungSpectral, TsallisINF, ChebCB (with contexts), Young and the "
                    "best-fixed / instance-optimal oracles (grid search over the tuners' 20 omegas on [1, 1.95]) "
                    "over each sequence; prints a table (totals, ratios, regret, seconds; bandits over --seeds "
                    "seeds) and writes JSON, markdown and PNG (cumulative cost, regret, omegas) into --out. "
                    "Defaults: shifted Laplacians with plain SOR from x0 = 0; heat2d with SSOR-PCG warm-started; "
                    "rtol 1e-8, cap 10,000 iterations.")
    src = br.add_mutually_exclusive_group()
    src.add_argument("--sequence", type=_sequence_kinds, default=["shifted-low", "shifted-high"],
                     help="comma-separated: shifted-low, shifted-high, heat2d (default shifted-low,shifted-high)")
    src.add_argument("--file", default=None, help="a krylearn HDF5 systems file read as a sequence instead")
    br.add_argument("--T", type=int, default=None, help="instances (default 1000; with --file: the whole file)")
    br.add_argument("--n", type=int, default=None, help="grid points per side (default 10 for shifted-*, 64 for heat2d)")
    br.add_argument("--seed", type=int, default=0, help="sequence seed (default 0)")
    br.add_argument("--seeds", type=int, default=5, help="seeds of the randomized tuners (default 5)")
    br.add_argument("--solver", default=None, help="sor | ssor | pcg-ssor (default: sor; pcg-ssor for heat2d)")
    br.add_argument("--warm-start", action=argparse.BooleanOptionalAction, default=None,
                    help="start each instance from the previous solution (default: on for heat2d only)")
    br.add_argument("--rtol", type=_floats, default=None, help="relative tolerance (default 1e-8)")
    br.add_argument("--maxiter", type=int, default=None, help="iteration cap (default 10000)")
    br.add_argument("--no-cache", action="store_true", help="recompute the grid costs even if cached in --out")
    br.add_argument("--out", default=os.path.join(DEFAULT_OUT, "relax"), help=f"results folder (default {DEFAULT_OUT}/relax)")
    br.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    br.set_defaults(func=cmd_bench_relax)

    dt = sub.add_parser("data", help="dataset generators: poisson, sequence, darcy, mri, ct")
    dsub = dt.add_subparsers(dest="data", metavar="GENERATOR")
    dp = dsub.add_parser("poisson", help="pressure systems from a smoke simulation, one per frame, to HDF5")
    dp.add_argument("--scene", default="smoke-plume", help="smoke-plume | smoke-obstacle (default smoke-plume)")
    dp.add_argument("--dim", type=int, default=2, choices=(2, 3))
    dp.add_argument("--n", type=int, default=64, help="cells per side (default 64)")
    dp.add_argument("--frames", type=int, default=20, help="frames to simulate and write (default 20)")
    dp.add_argument("--seed", type=int, default=0)
    dp.add_argument("-o", "--output", required=True, help="output .h5 path (written atomically)")
    dp.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    dp.set_defaults(func=cmd_data_poisson)
    ds = dsub.add_parser("sequence", help="a sequence of related systems (Learning to Relax) to HDF5",
                         description="heat2d: Crank-Nicolson steps of a 2D heat equation with time-varying "
                                     "diffusion (reference solutions stored); shifted-low / shifted-high: "
                                     "10x10 grid Laplacian + c I with Beta-distributed shifts. One matrix is "
                                     "stored, with per-system scale/shift attributes.")
    ds.add_argument("--kind", required=True, choices=("heat2d", "shifted-low", "shifted-high"))
    ds.add_argument("--n", type=int, default=None, help="grid points per side (default 64 for heat2d, 10 for shifted-*)")
    ds.add_argument("--steps", type=int, default=1000, help="instances / time steps (default 1000)")
    ds.add_argument("--dt", type=_floats, default=1e-3, help="heat2d time step (default 1e-3)")
    ds.add_argument("--seed", type=int, default=0)
    ds.add_argument("-o", "--output", required=True, help="output .h5 path (written atomically)")
    ds.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    ds.set_defaults(func=cmd_data_sequence)

    dd = dsub.add_parser("darcy", help="Darcy flow coefficient/solution pairs (the FNO/LSM benchmark) to HDF5",
                         description="-div(a grad u) = 1 on the unit square, u = 0 on the boundary; a = 12 where a "
                                     "Gaussian random field ((-Lap + 9)^-2, Neumann) is >= 0, else 3; 5-point finite "
                                     "differences on a --res grid, subsampled by --sub; PDEBench layout (nu, tensor, "
                                     "x-coordinate, y-coordinate), written atomically, in parallel over samples.")
    dd.add_argument("--n", type=int, default=1200, help="samples (default 1200)")
    dd.add_argument("--res", type=int, default=421, help="solver grid nodes per side (default 421)")
    dd.add_argument("--sub", type=int, default=5, help="subsampling (default 5: 421 -> 85)")
    dd.add_argument("--seed", type=int, default=0)
    dd.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    dd.add_argument("--method", default="direct", help="direct | pcg-amg | any krylearn.solve method (default direct)")
    dd.add_argument("--grid", default="fno", choices=("fno", "node"),
                    help="fno: FNO's centre/node spline interpolation (default); node: coefficient on the nodes")
    dd.add_argument("--rtol", type=_floats, default=1e-10, help="iterative solver tolerance (default 1e-10)")
    dd.add_argument("--compression", default=None, choices=("gzip", "lzf"), help="HDF5 compression (default none)")
    dd.add_argument("-o", "--output", required=True, help="output .h5 path (written atomically)")
    dd.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    dd.set_defaults(func=cmd_data_darcy)

    bz = bsub.add_parser("darcy", help="LSM / FNO / U-Net on held-out Darcy samples, and LSM-warm-started CG",
                         description="Test relative L2, parameters, training and inference seconds per sample against "
                                     "one AMG-PCG solve; the warm-start study solves the discretised system from x0 = 0 "
                                     "and from the network's prediction. Writes JSON, markdown and figures.")
    bz.add_argument("--data", required=True, help="Darcy file (ours, PDEBench or FNO .mat)")
    bz.add_argument("--models", type=_method_list, default=["lsm-darcy"], help="names or weight paths (default lsm-darcy)")
    bz.add_argument("--start", type=int, default=None, help="first sample (default: the first model's test range)")
    bz.add_argument("--count", type=int, default=200)
    bz.add_argument("--sub", type=int, default=1)
    bz.add_argument("--warm-count", type=int, default=20, help="samples in the warm-start study (default 20)")
    bz.add_argument("--no-warm-start", action="store_true")
    bz.add_argument("--methods", type=_method_list, default=["cg", "pcg-amg"])
    bz.add_argument("--rtol", type=_floats, default=1e-8)
    bz.add_argument("--batch-size", type=int, default=20)
    bz.add_argument("--device", default=None)
    _add_run_options(bz, out="darcy", repeats=3)
    bz.set_defaults(func=cmd_bench_darcy)

    tr = sub.add_parser("train", help="train a learned method: dcdm, lsm, diffusion")
    tsub = tr.add_subparsers(dest="train", metavar="METHOD")
    td = tsub.add_parser(
        "dcdm", help="train a DCDM network on Ritz right-hand sides of smoke-simulation matrices",
        description="Simulates one frame per scene (seeds --data-seed, --data-seed+1, ...; the benchmark uses 0-9), "
                    "computes --ritz Ritz vectors of each pressure matrix (Lanczos, full re-orthogonalisation) "
                    "into OUT/ritz-<dim>d-<n>.h5, trains with the unsupervised DCDM loss (Adam), checkpoints to "
                    "OUT/checkpoint.pt (resumed when present) and writes safetensors weights + a JSON card. "
                    "Under torchrun (WORLD_SIZE > 1) it trains with DistributedDataParallel.")
    td.add_argument("--dim", type=int, default=2, choices=(2, 3))
    td.add_argument("--n", type=int, default=128, help="training grid cells per side (default 128)")
    td.add_argument("--scenes", default="smoke-plume,smoke-obstacle", help="training scenes (default both)")
    td.add_argument("--data-seed", type=int, default=100, help="scene seed of the first training matrix (default 100)")
    td.add_argument("--frame", type=int, default=8, help="simulation frame of the training matrices (default 8)")
    td.add_argument("--ritz", type=int, default=800, help="Lanczos steps / Ritz vectors per matrix (default 800)")
    td.add_argument("--data", default=None, help="existing Ritz HDF5 file (skips the data step)")
    td.add_argument("--steps", type=int, default=2000, help="optimiser steps (default 2000)")
    td.add_argument("--batch", type=int, default=10, help="right-hand sides per step (default 10, as the paper)")
    td.add_argument("--lr", type=_floats, default=1e-4, help="Adam learning rate (default 1e-4, as the paper)")
    td.add_argument("--schedule", default="constant", choices=("constant", "cosine"),
                    help="learning-rate schedule (cosine: decay to lr/10; default constant)")
    td.add_argument("--seed", type=int, default=0)
    td.add_argument("--width", type=int, default=16, help="channels (default 16, as the paper)")
    td.add_argument("--levels", type=int, default=3,
                    help="resolution levels (paper: 2; 0: as deep as the grid allows, shared blocks; default 3)")
    td.add_argument("--blocks", type=int, default=1, help="residual blocks per level and direction (default 1)")
    td.add_argument("--geometry", action="store_true",
                    help="feed the fluid-cell mask as a second input channel (off: it did not help in our ablation)")
    td.add_argument("--shared", action="store_true", help="one set of blocks for all levels (implied by --levels 0)")
    td.add_argument("--upsample", default="linear", choices=("linear", "nearest"), help="default linear")
    td.add_argument("--init", default=None, help="start from these weights (a shipped name or a path)")
    td.add_argument("--name", default=None, help="model name in the card (default dcdm-<dim>d)")
    td.add_argument("--save", default=None, help="weights path without suffix (default OUT/NAME)")
    td.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    td.add_argument("--no-resume", action="store_true", help="ignore OUT/checkpoint.pt")
    td.add_argument("--out", default=os.path.join(DEFAULT_OUT, "train-dcdm"),
                    help=f"work folder (default {DEFAULT_OUT}/train-dcdm)")
    td.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    td.set_defaults(func=cmd_train_dcdm)

    tl = tsub.add_parser("lsm", help="train LSM (or the FNO / U-Net baselines) on Darcy data",
                         description="The paper's recipe: relative L2 loss, Adam (lr 5e-4, L2 weight decay 1e-4), "
                                     "StepLR x0.5 every 100 epochs, batch 20, pointwise Gaussian normalisation; plus a "
                                     "validation split for model selection, resumable checkpoints, DDP under torchrun.")
    tl.add_argument("--data", required=True, help="training Darcy file (train = first --ntrain, val = next --nval)")
    tl.add_argument("--test", default=None, help="test file (first --ntest); default: samples after train + val")
    tl.add_argument("--kind", default="lsm", choices=("lsm", "fno", "unet"))
    tl.add_argument("--sub", type=int, default=1, help="extra subsampling of the files (default 1)")
    tl.add_argument("--ntrain", type=int, default=1000)
    tl.add_argument("--nval", type=int, default=100)
    tl.add_argument("--ntest", type=int, default=200)
    tl.add_argument("--epochs", type=int, default=501)
    tl.add_argument("--batch-size", type=int, default=20)
    tl.add_argument("--lr", type=_floats, default=5e-4)
    tl.add_argument("--weight-decay", type=_floats, default=1e-4)
    tl.add_argument("--step-size", type=int, default=100)
    tl.add_argument("--gamma", type=_floats, default=0.5)
    tl.add_argument("--seed", type=int, default=0)
    tl.add_argument("--config", default=None, help="network options as JSON (overrides the kind's defaults)")
    for key, kind in (("width", int), ("num-basis", int), ("num-token", int), ("patch", int), ("levels", int),
                      ("modes", int), ("layers", int)):
        tl.add_argument(f"--{key}", type=kind, default=None)
    tl.add_argument("--out", required=True, help="weights stem (writes OUT.safetensors, OUT.json, logs, plot)")
    tl.add_argument("--checkpoint", default=None, help="resumable checkpoint (default OUT.ckpt)")
    tl.add_argument("--no-resume", action="store_true")
    tl.add_argument("--half", action="store_true", help="store float16 weights")
    tl.add_argument("--device", default=None)
    tl.add_argument("-q", "--quiet", action="store_true")
    tl.set_defaults(func=cmd_train_lsm)

    ev = sub.add_parser("eval", help="evaluate a trained model: lsm")
    esub = ev.add_subparsers(dest="eval", metavar="METHOD")
    el = esub.add_parser("lsm", help="relative L2 of an LSM/FNO/U-Net on Darcy samples")
    el.add_argument("model", help="shipped name or weights path")
    el.add_argument("--data", required=True)
    el.add_argument("--start", type=int, default=0)
    el.add_argument("--count", type=int, default=None)
    el.add_argument("--sub", type=int, default=1)
    el.add_argument("--batch-size", type=int, default=20)
    el.add_argument("--resample", default="no", choices=("no", "yes", "native"),
                    help="grid differs from training: no = error, yes = predict on the training grid and "
                         "interpolate, native = run on the data's grid")
    el.add_argument("--device", default=None)
    el.set_defaults(func=cmd_eval_lsm)

    from .imaging import (
        add_bench_parsers,
        add_data_parsers,
        add_reconstruct_parser,
        add_train_parser,
    )

    add_bench_parsers(bsub)
    add_data_parsers(dsub)
    add_train_parser(tsub)
    add_reconstruct_parser(sub)

    for parser in (b, dt, tr, ev):  # "krylearn bench" / "krylearn data" alone: show their help
        parser.set_defaults(func=lambda a, _p=parser: (_p.print_help(), 2)[1])
    return p


def main(argv=None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    args = parser.parse_args(argv)
    args.command_line = shlex.join(["krylearn", *argv])  # recorded in weight cards
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("krylearn: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one line for the user; --debug shows the traceback
        if args.debug:
            raise
        from ..utils.errors import FormatError

        known = (ValueError, TypeError, FileNotFoundError, FormatError, OSError, KeyError)
        kind = "error" if isinstance(exc, known) else f"internal error ({type(exc).__name__})"
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"krylearn: {kind}: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
