"""LSM's CLI subcommands: ``krylearn train lsm``, ``eval lsm``, ``bench darcy``, ``data darcy`` (and ``data ns``)."""

from __future__ import annotations

from ...cli.args import add_quiet, add_run_options, device, floats, method_list, writable_file, writable_folder
from ...problems.darcy import generate_darcy
from ..learned import available, find_weights
from .bench import DEFAULT_MODELS, format_darcy_table, run_darcy_benchmark
from .bench_layout import format_layout_table, layout_study, write_layout_report
from .commands_ns import NETWORK_OPTIONS, add_ns_commands, network_config
from .recipe import DEFAULT_CONFIGS, evaluate, train
from .train import SCHEDULES

__all__ = ["add_commands"]

_BASELINES_HINT = ("the FNO / U-Net baselines are not shipped: train one with `krylearn train lsm --kind fno "
                   "--data TRAIN.h5 --out DIR/fno-darcy` and pass its path, e.g. --models lsm-darcy,DIR/fno-darcy")


def add_commands(verbs: dict) -> None:
    """Add ``train lsm``, ``eval lsm``, ``bench darcy``, ``data darcy``, ``data ns``; ``verbs`` maps verbs to subparsers."""
    _add_train(verbs["train"])
    _add_eval(verbs["eval"])
    _add_bench(verbs["bench"])
    _add_bench_layout(verbs["bench"])
    _add_data(verbs["data"])
    add_ns_commands(verbs)


# ------------------------------------------------------------------ train lsm
def _kind_defaults(key: str) -> str:
    found = [f"{kind} {'planned from the grid' if cfg[key] is None else cfg[key]}"
             for kind, cfg in DEFAULT_CONFIGS.items() if key in cfg]
    return "default " + ", ".join(found)


def _add_train(train_verb) -> None:
    tl = train_verb.add_parser(
        "lsm", help="train LSM (or the FNO / U-Net baselines) on Darcy data",
        description="The paper's recipe: relative L2 loss, Adam (lr 5e-4, L2 weight decay 1e-4), StepLR x0.5 every "
                    "100 epochs, batch 20, pointwise Gaussian normalisation; plus a validation split for model "
                    "selection, resumable checkpoints, DDP under torchrun.")
    tl.add_argument("--data", required=True,
                    help="training Darcy file (required): train = its first --ntrain samples, val = the next --nval")
    tl.add_argument("--test", default=None,
                    help="test file, its first --ntest samples (default: the samples after train + val in --data)")
    tl.add_argument("--kind", default="lsm", choices=("lsm", "fno", "unet"), help="network (default lsm)")
    tl.add_argument("--sub", type=int, default=1, help="extra subsampling of the files (default 1)")
    tl.add_argument("--ntrain", type=int, default=1000, help="training samples (default 1000)")
    tl.add_argument("--nval", type=int, default=100, help="validation samples; 0 keeps the last epoch (default 100)")
    tl.add_argument("--ntest", type=int, default=200, help="test samples (default 200)")
    tl.add_argument("--epochs", type=int, default=501, help="epochs (default 501, as the paper)")
    tl.add_argument("--batch-size", type=int, default=20, help="samples per step (default 20)")
    tl.add_argument("--lr", type=floats, default=5e-4, help="Adam learning rate (default 5e-4)")
    tl.add_argument("--weight-decay", type=floats, default=1e-4, help="L2 weight decay (default 1e-4)")
    tl.add_argument("--step-size", type=int, default=100, help="StepLR period in epochs (default 100)")
    tl.add_argument("--gamma", type=floats, default=0.5, help="StepLR factor (default 0.5)")
    tl.add_argument("--schedule", choices=SCHEDULES, default="step",
                    help="learning-rate schedule per epoch: step (StepLR, the paper's), cosine (to 0 over --epochs) "
                         "or onecycle (warm-up, then cosine; for a short fixed budget) (default step)")
    tl.add_argument("--seed", type=int, default=0, help="initial weights and batch order (default 0)")
    tl.add_argument("--config", default=None,
                    help="network options as a JSON object, overriding the kind's defaults (default: none)")
    for flag, key, what in NETWORK_OPTIONS:
        tl.add_argument(flag, type=int, default=None, help=f"{what} ({_kind_defaults(key)})")
    tl.add_argument("--out", required=True,
                    help="weights stem (required): writes OUT.safetensors, OUT.json, OUT-log.json, OUT-loss.png")
    tl.add_argument("--checkpoint", default=None, help="resumable checkpoint (default OUT.ckpt)")
    tl.add_argument("--no-resume", action="store_true", help="ignore the checkpoint (default: resume from it)")
    tl.add_argument("--half", action="store_true", help="store float16 weights (default float32)")
    tl.add_argument("--bf16", action="store_true",
                    help="bfloat16 autocast in the training forward pass; float32 weights, loss and validation "
                         "(a step took 0.52 of float32's time on a CPU with AVX-512 BF16, 8x on an AVX2-only CPU, "
                         "which gets a warning; default off)")
    tl.add_argument("--max-minutes", type=floats, default=None,
                    help="wall-time budget of the training loop; stops and saves after it (default: none)")
    tl.add_argument("--device", type=device, default=None, help="cpu | cuda (default: cuda when available)")
    add_quiet(tl)
    tl.set_defaults(func=cmd_train_lsm)


def _lsm_config(args) -> dict:
    return network_config(args, DEFAULT_CONFIGS[args.kind])


def cmd_train_lsm(args) -> int:
    card = train(args.kind, args.data, args.test, sub=args.sub, ntrain=args.ntrain, nval=args.nval,
                 ntest=args.ntest, config=_lsm_config(args), epochs=args.epochs, batch_size=args.batch_size,
                 lr=args.lr, weight_decay=args.weight_decay, step_size=args.step_size, gamma=args.gamma,
                 seed=args.seed, checkpoint=args.checkpoint or f"{args.out}.ckpt", resume=not args.no_resume,
                 device=args.device, out=args.out, half=args.half, progress=not args.quiet,
                 command=args.command_line, max_minutes=args.max_minutes, bf16=args.bf16, schedule=args.schedule)
    if card:
        m = card["metrics"]
        print(f"{card['name']}: {card['parameters']} parameters, {card['epochs']} epochs in {card['seconds']:.0f} s; "
              f"test relative L2 {m['test_rel_l2']:.4g} (best validation {m['best_val_rel_l2']:.4g} at epoch "
              f"{m['best_epoch']})\nwrote {args.out}.safetensors and {args.out}.json")
    return 0


# ------------------------------------------------------------------ eval lsm
def _add_eval(eval_verb) -> None:
    el = eval_verb.add_parser("lsm", help="relative L2 of an LSM/FNO/U-Net on Darcy samples")
    el.add_argument("model", help="shipped name (e.g. lsm-darcy) or weights path")
    el.add_argument("--data", required=True, help="Darcy file (required; ours, PDEBench or FNO .mat)")
    el.add_argument("--start", type=int, default=0, help="first sample (default 0)")
    el.add_argument("--count", type=int, default=None, help="samples (default: to the end of the file)")
    el.add_argument("--sub", type=int, default=1, help="spatial subsampling while reading (default 1)")
    el.add_argument("--batch-size", type=int, default=20, help="fields per forward pass (default 20)")
    el.add_argument("--resample", default="no", choices=("no", "yes", "native"),
                    help="when the grid differs from training (size, or points: the file's coordinates): no = error, "
                         "yes = predict on the training grid and interpolate by the coordinates, native = run on "
                         "the data's grid (default no)")
    el.add_argument("--device", type=device, default=None, help="cpu | cuda (default: cuda when available)")
    el.set_defaults(func=cmd_eval_lsm)


def cmd_eval_lsm(args) -> int:
    resample = {"no": False, "yes": True, "native": "native"}[args.resample]
    r = evaluate(args.model, args.data, start=args.start, count=args.count, sub=args.sub,
                 batch_size=args.batch_size, resample=resample, device=args.device)
    grid = f"{r['resolution'][0]}x{r['resolution'][1]} {r['layout']} grid"
    print(f"{args.model} on {args.data} ({grid}, {r['n']} samples): relative L2 mean {r['rel_l2_mean']:.4g}, "
          f"median {r['rel_l2_median']:.4g}, max {r['rel_l2_max']:.4g}; {r['seconds_per_sample'] * 1e3:.2f} ms "
          "per sample")
    return 0


# ------------------------------------------------------------------ bench darcy
def _add_bench(bench_verb) -> None:
    bz = bench_verb.add_parser(
        "darcy", help="LSM / FNO / U-Net on held-out Darcy samples, and LSM-warm-started CG",
        description="Test relative L2, parameters, training and inference seconds per sample against one AMG-PCG "
                    "solve; the warm-start study solves the discretised system from x0 = 0 and from the network's "
                    "prediction. Writes JSON, markdown and figures. Shipped models: "
                    f"{', '.join(available('lsm')) or 'none'}; {_BASELINES_HINT}.")
    bz.add_argument("--data", required=True, help="Darcy file (required; ours, PDEBench or FNO .mat)")
    bz.add_argument("--models", type=method_list, default=list(DEFAULT_MODELS),
                    help=f"shipped names or weights paths, comma-separated (default {','.join(DEFAULT_MODELS)})")
    bz.add_argument("--start", type=int, default=None,
                    help="first sample (default: the test range in the first model's card when it names this "
                         "file, else 0)")
    bz.add_argument("--count", type=int, default=200, help="samples evaluated (default 200)")
    bz.add_argument("--sub", type=int, default=1, help="spatial subsampling while reading (default 1)")
    bz.add_argument("--warm-count", type=int, default=20, help="samples in the warm-start study (default 20)")
    bz.add_argument("--no-warm-start", action="store_true",
                    help="skip the warm-start study, time only pcg-amg from zero (default: run it)")
    bz.add_argument("--methods", type=method_list, default=["cg", "pcg-amg"],
                    help="solvers of the warm-start study (default cg,pcg-amg)")
    bz.add_argument("--rtol", type=floats, default=1e-8, help="relative tolerance of every solve (default 1e-8)")
    bz.add_argument("--batch-size", type=int, default=20, help="inference batch (default 20)")
    bz.add_argument("--device", type=device, default=None,
                    help="where the networks run: cpu | cuda (default: cuda when available)")
    add_run_options(bz, out="darcy", repeats=3)
    bz.set_defaults(func=cmd_bench_darcy)


def cmd_bench_darcy(args) -> int:
    for m in args.models:
        try:
            find_weights(m, "lsm")
        except ValueError as e:
            raise ValueError(f"--models: {e}; {_BASELINES_HINT}") from None
    out = writable_folder(args.out, "--out")
    report = run_darcy_benchmark(args.data, models=args.models, start=args.start, count=args.count, sub=args.sub,
                                 out_dir=out, warm_start=not args.no_warm_start, warm_count=args.warm_count,
                                 rtol=args.rtol, repeats=args.repeats, batch_size=args.batch_size,
                                 methods=args.methods, device=args.device, progress=not args.quiet)
    print(format_darcy_table(report))
    if report.get("files"):
        print("\nwrote " + ", ".join(report["files"]))
    return 0


# ------------------------------------------------------------------ bench darcy-layout
def _add_bench_layout(bench_verb) -> None:
    bl = bench_verb.add_parser(
        "darcy-layout", help="a Darcy model on its node grid against a cell-centred 128^2 grid (PDEBench's layout)",
        description="Paired samples (one fine benchmark-recipe solve each, sampled at the model's node grid and at "
                    "128^2 cell centres): relative L2 on the node grid, on the cell-centred grid placed by its "
                    "coordinates, and on the cell-centred grid under the node assumption.")
    bl.add_argument("--model", default="lsm-darcy", help="shipped name or weights path (default lsm-darcy)")
    bl.add_argument("--n", type=int, default=16, help="samples (default 16)")
    bl.add_argument("--seed", type=int, default=7, help="sample seed (default 7: in none of lsm-darcy's files)")
    bl.add_argument("--res", type=int, default=640, help="fine solve, cell centres per side (default 640)")
    bl.add_argument("--sub", type=int, default=5, help="stride of the cell-centred grid in the fine one (default 5)")
    bl.add_argument("--offset", type=int, default=2, help="its first point (default 2: 640 -> 128 centres)")
    bl.add_argument("--device", type=device, default=None, help="cpu | cuda (default: cuda when available)")
    bl.add_argument("--out", default=None, help="results folder for darcy-layout.json and .md (default: print only)")
    bl.set_defaults(func=cmd_bench_layout)


def cmd_bench_layout(args) -> int:
    out = writable_folder(args.out, "--out") if args.out else None
    r = layout_study(args.model, n=args.n, seed=args.seed, res=args.res, sub=args.sub, offset=args.offset,
                     device=args.device)
    print(format_layout_table(r))
    if out is not None:
        print("\nwrote " + ", ".join(write_layout_report(r, out)))
    return 0


# ------------------------------------------------------------------ data darcy
def _add_data(data_verb) -> None:
    dd = data_verb.add_parser(
        "darcy", help="Darcy flow coefficient/solution pairs (the FNO/LSM benchmark) to HDF5",
        description="-div(a grad u) = 1 on the unit square, u = 0 on the boundary; a = 12 where a Gaussian random "
                    "field ((-Lap + 9)^-2, Neumann) is >= 0, else 3; 5-point finite differences on a --res grid, "
                    "subsampled by --sub; PDEBench layout (nu, tensor, x-coordinate, y-coordinate), written "
                    "atomically, in parallel over samples.")
    dd.add_argument("--n", type=int, default=1200, help="samples (default 1200)")
    dd.add_argument("--res", type=int, default=421, help="solver grid nodes per side (default 421)")
    dd.add_argument("--sub", type=int, default=5, help="subsampling (default 5: 421 -> 85)")
    dd.add_argument("--offset", type=int, default=0,
                    help="first point kept, 0 <= OFFSET < SUB (default 0); cell centres of a 128^2 grid: "
                         "--res 640 --sub 5 --offset 2")
    dd.add_argument("--seed", type=int, default=0, help="random-field seed (default 0)")
    dd.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    dd.add_argument("--method", default="direct", help="direct | pcg-amg | any krylearn.solve method (default direct)")
    dd.add_argument("--grid", default="fno", choices=("fno", "node"),
                    help="fno: FNO's centre/node spline interpolation; node: coefficient on the nodes (default fno)")
    dd.add_argument("--rtol", type=floats, default=1e-10, help="iterative solver tolerance (default 1e-10)")
    dd.add_argument("--compression", default=None, choices=("gzip", "lzf"), help="HDF5 compression (default none)")
    dd.add_argument("-o", "--output", required=True, help="output .h5 path (required; written atomically)")
    add_quiet(dd)
    dd.set_defaults(func=cmd_data_darcy)


def cmd_data_darcy(args) -> int:
    writable_file(args.output, "--output")
    path = generate_darcy(args.output, args.n, res=args.res, sub=args.sub, offset=args.offset, seed=args.seed,
                          workers=args.workers, method=args.method, grid=args.grid, rtol=args.rtol,
                          compression=args.compression, progress=not args.quiet)
    print(f"wrote {path}")
    return 0
