"""LSM's Navier–Stokes commands: ``data ns``, ``train lsm --task ns``, ``eval lsm`` on NS models, ``bench ns``."""

from __future__ import annotations

import json

from ...cli.args import add_quiet, add_run_options, device, floats, method_list, writable_file, writable_folder
from ...problems.navier_stokes import DTYPES, generate_navier_stokes
from ..learned import find_weights, load_pretrained
from .bench_ns import format_ns_table, run_ns_benchmark
from .recipe_ns import NS_CONFIGS, evaluate_ns, train_ns

__all__ = ["add_ns_commands"]


def add_ns_commands(verbs: dict) -> None:
    """Add ``data ns``, ``bench ns`` and the NS options of ``train lsm`` / ``eval lsm`` (added before)."""
    _add_data(verbs["data"])
    _extend_train(verbs["train"])
    _extend_eval(verbs["eval"])
    _add_bench(verbs["bench"])


# ------------------------------------------------------------------ data ns
def _add_data(data_verb) -> None:
    dn = data_verb.add_parser(
        "ns", help="2D Navier-Stokes vorticity trajectories (the FNO/LSM benchmark) to HDF5",
        description="dw/dt + u.grad w = nu Lap w + f on the unit torus, f = 0.1 (sin 2pi(x+y) + cos 2pi(x+y)), "
                    "w0 from a Gaussian random field (covariance 7^3 (-Lap + 49)^-2.5); FNO's pseudo-spectral "
                    "solver (2/3 dealiasing, Crank-Nicolson viscosity, dt 1e-4). Writes tensor (N, steps+1, s, s) "
                    "with the initial field first, t-/x-/y-coordinate and forcing, atomically.")
    dn.add_argument("--n", type=int, default=1200, help="samples (default 1200, as the benchmark)")
    dn.add_argument("--steps", type=int, default=20, help="recorded frames after the initial one (default 20)")
    dn.add_argument("--record-every", type=floats, default=1.0, help="time between frames (default 1.0)")
    dn.add_argument("--size", type=int, default=64, help="stored points per side (default 64)")
    dn.add_argument("--res", type=int, default=None,
                    help="solve points per side, a multiple of --size (default: --size; FNO solved at 256)")
    dn.add_argument("--nu", type=floats, default=1e-5, help="viscosity (default 1e-5)")
    dn.add_argument("--dt", type=floats, default=1e-4, help="time step (default 1e-4)")
    dn.add_argument("--seed", type=int, default=0, help="random-field seed (default 0)")
    dn.add_argument("--batch", type=int, default=50, help="samples solved together (default 50)")
    dn.add_argument("--dtype", default="float32", choices=sorted(DTYPES),
                    help="arithmetic of the solve; the file stores float32 (default float32, as FNO)")
    dn.add_argument("--device", type=device, default=None, help="cpu | cuda (default cpu)")
    dn.add_argument("--compression", default=None, choices=("gzip", "lzf"), help="HDF5 compression (default none)")
    dn.add_argument("-o", "--out", "--output", dest="output", required=True,
                    help="output .h5 path (required; written atomically)")
    add_quiet(dn)
    dn.set_defaults(func=cmd_data_ns)


def cmd_data_ns(args) -> int:
    writable_file(args.output, "--out")
    path = generate_navier_stokes(args.output, args.n, size=args.size, res=args.res, seed=args.seed,
                                  steps=args.steps, record_every=args.record_every, nu=args.nu, dt=args.dt,
                                  batch=args.batch, dtype=args.dtype, device=args.device,
                                  compression=args.compression, progress=not args.quiet)
    print(f"wrote {path}")
    return 0


# ------------------------------------------------------------------ train lsm --task ns, eval lsm on NS
def _extend_train(train_verb) -> None:
    """Add ``--task``, ``--t-in``, ``--rollout`` to ``train lsm``; ``--task ns`` runs :func:`train_ns`."""
    tl = train_verb.choices["lsm"]
    tl.add_argument("--task", default="darcy", choices=("darcy", "ns"),
                    help="darcy: coefficient -> solution; ns: vorticity frames -> next frame, trained through a "
                         "rollout (--data an NS file: ours or FNO's NavierStokes_*.mat; test = its last --ntest "
                         "samples unless --test; use --nval 0 for the paper's 1000/200 split) (default darcy)")
    tl.add_argument("--t-in", type=int, default=10, help="ns: input frames (default 10)")
    tl.add_argument("--rollout", dest="steps", type=int, default=10,
                    help="ns: predicted frames per rollout (default 10)")
    darcy = tl.get_default("func")
    tl.set_defaults(func=lambda args: cmd_train_ns(args) if args.task == "ns" else darcy(args))


#: Network options of ``train lsm`` (flag, config key, what it sets).
NETWORK_OPTIONS = (("--width", "width", "channels"), ("--num-basis", "num_basis", "LSM latent basis size"),
                   ("--num-token", "num_token", "LSM latent tokens"), ("--patch", "patch", "LSM patch size"),
                   ("--levels", "levels", "LSM / U-Net resolution levels"),
                   ("--modes", "modes", "FNO Fourier modes"), ("--layers", "layers", "FNO layers"))
_FLAGS = {key: flag for flag, key, _ in NETWORK_OPTIONS}


def network_config(args, defaults: dict) -> dict:
    """``--config`` (a JSON object) updated by the network flags given; ``defaults``: the kind's settings.

    A flag that ``--kind`` does not take (``--levels`` with ``--kind fno``) is an error naming it.
    """
    try:
        cfg = json.loads(args.config) if args.config else {}
    except json.JSONDecodeError as e:
        raise ValueError(f"--config is not valid JSON ({e.msg} at character {e.pos}): {args.config!r}") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"--config must be a JSON object, got {args.config!r}")
    for key, flag in _FLAGS.items():
        if getattr(args, key, None) is None:
            continue
        if key not in defaults:
            takes = ", ".join(_FLAGS[k] for k in defaults if k in _FLAGS)
            raise ValueError(f"{flag} does not apply to --kind {args.kind} (its network flags: {takes})")
        cfg[key] = getattr(args, key)
    return cfg


def cmd_train_ns(args) -> int:
    for flag, given in (("--half", args.half), ("--bf16", args.bf16)):
        if given:
            raise ValueError(f"{flag} applies to --task darcy only; --task ns trains and stores float32")
    card = train_ns(args.kind, args.data, args.test, sub=args.sub, ntrain=args.ntrain, nval=args.nval,
                    ntest=args.ntest, t_in=args.t_in, steps=args.steps,
                    config=network_config(args, NS_CONFIGS[args.kind]),
                    epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                    step_size=args.step_size, gamma=args.gamma, seed=args.seed,
                    checkpoint=args.checkpoint or f"{args.out}.ckpt", resume=not args.no_resume, device=args.device,
                    out=args.out, progress=not args.quiet, command=args.command_line, max_minutes=args.max_minutes,
                    schedule=args.schedule)
    if card:
        m = card["metrics"]
        print(f"{card['name']}: {card['parameters']} parameters, {card['epochs']} epochs in {card['seconds']:.0f} s; "
              f"test relative L2 of the {card['rollout']['steps']}-step rollout {m['test_l2_full']:.4g}\n"
              f"wrote {args.out}.safetensors and {args.out}.json")
    return 0


def _extend_eval(eval_verb) -> None:
    """``eval lsm`` on a model whose card says ``task: ns`` runs :func:`evaluate_ns`."""
    el = eval_verb.choices["lsm"]
    darcy = el.get_default("func")
    el.set_defaults(func=lambda args: cmd_eval_ns(args) if _task(args.model) == "ns" else darcy(args))


def _task(model) -> str:
    try:
        return load_pretrained(model, method="lsm").card.get("task", "darcy")
    except (ValueError, OSError):
        return "darcy"  # the Darcy command reports the problem


def cmd_eval_ns(args) -> int:
    r = evaluate_ns(args.model, args.data, start=args.start, count=args.count, sub=args.sub,
                    batch_size=args.batch_size, device=args.device)
    steps = ", ".join(f"{v:.3g}" for v in r["per_step"])
    print(f"{args.model} on {args.data} ({r['n']} samples, frames {r['first']}..{r['first'] + r['t_in'] - 1} in, "
          f"{r['steps']} rolled out): relative L2 {r['test_l2_full']:.4g}; per step {steps}; "
          f"{r['seconds_per_sample'] * 1e3:.1f} ms per sample")
    return 0


# ------------------------------------------------------------------ bench ns
def _add_bench(bench_verb) -> None:
    bn = bench_verb.add_parser(
        "ns", help="trained Navier-Stokes models side by side on held-out trajectories, with a rollout figure",
        description="Rolls every model out on the same samples and reports the relative L2 of the whole predicted "
                    "sequence (mean, median, max), the error of the first and last predicted frames, parameters, "
                    "training seconds and inference ms per sample, beside two references that need no training "
                    "(persistence: the last input frame repeated; zero). Writes ns.json, ns.md, ns-rollout.png.")
    bn.add_argument("--data", required=True, help="NS file (required; ours, PDEBench-style or FNO .mat)")
    bn.add_argument("--models", type=method_list, required=True,
                    help="weights stems of models trained with `train lsm --task ns`, comma-separated (required)")
    bn.add_argument("--start", type=int, default=None,
                    help="first sample (default: the test range in the first model's card when it names this "
                         "file, else 0)")
    bn.add_argument("--count", type=int, default=None, help="samples (default: to the end of the file)")
    bn.add_argument("--batch-size", type=int, default=20, help="samples per forward pass (default 20)")
    bn.add_argument("--figure-sample", type=int, default=0,
                    help="which benchmark sample the figure shows, counted from --start (default 0)")
    bn.add_argument("--device", type=device, default=None, help="cpu | cuda (default: cuda when available)")
    add_run_options(bn, out="ns", repeats=3)
    bn.set_defaults(func=cmd_bench_ns)


def cmd_bench_ns(args) -> int:
    for m in args.models:
        try:
            find_weights(m, "lsm")
        except ValueError as e:
            raise ValueError(f"--models: {e}") from None
    out = writable_folder(args.out, "--out")
    report = run_ns_benchmark(args.data, models=args.models, start=args.start, count=args.count, out_dir=out,
                              batch_size=args.batch_size, repeats=args.repeats, figure_sample=args.figure_sample,
                              device=args.device, command=args.command_line)
    print(format_ns_table(report))
    print("\nwrote " + ", ".join(report["files"].values()))
    return 0
