"""Seconds per LSM training step on this machine under the CPU speed-ups the Darcy recipe could use.

One step = forward, relative-L2 loss, backward and an Adam update of the
Darcy LSM (``LSM2d(1, 1, width)``, BatchNorm as the paper) on a batch of
85^2 fields.  Variants: intra-op threads (1, 2), two gloo DDP ranks of one
thread each (the batch split between them), channels-last memory format,
bfloat16 autocast, and ``torch.compile``.  Each variant runs ``warmup``
untimed steps, then reports the median of ``steps`` timed ones; the table
gives each variant's time over the 1-thread float32 baseline, measured in
the same run.  Run: ``python benchmarks/scripts/lsm_train_speed.py
[--width 16] [--batch 20]``.
"""

import argparse
import os
import statistics
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from krylearn.solvers.lsm.model import LSM2d


def _step_fn(model, opt, x, y, bf16):
    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
        loss = ((out.float() - y).flatten(1).norm(dim=1) / y.flatten(1).norm(dim=1)).mean()
        loss.backward()
        opt.step()
    return step


def _time(step, warmup, steps):
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def single(width, batch, threads, warmup, steps, channels_last=False, bf16=False, compile_=False):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = LSM2d(1, 1, width=width)
    x, y = torch.randn(batch, 1, 85, 85), torch.randn(batch, 1, 85, 85)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    if compile_:
        model = torch.compile(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    return _time(_step_fn(model, opt, x, y, bf16), warmup, steps)


def _ddp_worker(rank, world, width, batch, warmup, steps, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = torch.nn.parallel.DistributedDataParallel(LSM2d(1, 1, width=width))
    x, y = torch.randn(batch // world, 1, 85, 85), torch.randn(batch // world, 1, 85, 85)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    t = _time(_step_fn(model, opt, x, y, False), warmup, steps)
    if rank == 0:
        out.put(t)
    dist.destroy_process_group()


def ddp(width, batch, warmup, steps, world=2):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    mp.start_processes(_ddp_worker, args=(world, width, batch, warmup, steps, 29571, q), nprocs=world,
                       join=True, start_method="spawn")
    return q.get()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--batch", type=int, default=20)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--skip-compile", action="store_true")
    a = p.parse_args()
    kw = dict(width=a.width, batch=a.batch, warmup=a.warmup, steps=a.steps)
    rows = [("1 thread, float32 (baseline)", single(threads=1, **kw)),
            ("2 threads", single(threads=2, **kw)),
            ("2 DDP ranks (gloo) x 1 thread", ddp(**kw)),
            ("2 threads, channels-last", single(threads=2, channels_last=True, **kw)),
            ("2 threads, bfloat16 autocast", single(threads=2, bf16=True, **kw))]
    if not a.skip_compile:
        rows.append(("2 threads, torch.compile", single(threads=2, compile_=True, **{**kw, "warmup": a.warmup + 2})))
    base = rows[0][1]
    print(f"LSM width {a.width}, batch {a.batch} at 85^2; median of {a.steps} steps after {a.warmup} warm-up; "
          f"torch {torch.__version__}, {os.cpu_count()} cores\n")
    print("| variant | s / step | time / baseline |\n|---|---:|---:|")
    for name, t in rows:
        print(f"| {name} | {t:.3f} | {t / base:.2f} |")


if __name__ == "__main__":
    main()
