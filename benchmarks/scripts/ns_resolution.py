"""How much does solving the Navier-Stokes benchmark at 64^2 instead of FNO's 256^2 change the data?

One initial field (``ns_initial`` of seed 0, sample 0, drawn at 256^2) is
truncated spectrally to 128^2 and 64^2 (the modes a coarser grid holds) and
solved to T = 20 with nu = 1e-5, dt = 1e-4 at each resolution; the finer
solutions are read at every 2nd / 4th point, as FNO stores them.  Printed
per frame: the relative L2 difference of the 64^2 and 128^2 runs against the
256^2 run on the 64^2 points, and, for scale, the difference between the
64^2 run in float32 and in float64 (the same grid and scheme: pure round-off
amplified by the chaotic dynamics).  Writes JSON next to ``--out``.

    OMP_NUM_THREADS=1 python benchmarks/scripts/ns_resolution.py --out benchmarks/results/ns/resolution.json
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from krylearn.problems.navier_stokes import navier_stokes_2d, ns_forcing, ns_initial
from krylearn.utils.atomic import atomic_write_text


def truncate(w: np.ndarray, s: int) -> np.ndarray:
    """The field on an ``s x s`` grid keeping the Fourier modes |kx|, |ky| < s/2 of ``w`` (n x n)."""
    n = w.shape[-1]
    w_h = np.fft.fft2(w)
    k = np.fft.fftfreq(n, 1.0 / n)
    keep = np.abs(k) < s // 2
    low = w_h[..., keep, :][..., :, keep]
    out_k = np.fft.fftfreq(s, 1.0 / s)
    out = np.zeros(w.shape[:-2] + (s, s), dtype=complex)
    idx = np.array([np.nonzero(out_k == kk)[0][0] for kk in k[keep]])
    out[..., idx[:, None], idx[None, :]] = low
    return np.fft.ifft2(out).real * (s / n) ** 2


def run(w0: np.ndarray, dtype, T: float) -> tuple[np.ndarray, float]:
    s = w0.shape[-1]
    t0 = time.perf_counter()
    w, _ = navier_stokes_2d(torch.as_tensor(w0[None], dtype=dtype), ns_forcing(s), 1e-5, T, 1e-4, 1.0)
    return w[0].double().numpy(), time.perf_counter() - t0


def rel(a, b) -> list[float]:
    return [float(np.linalg.norm(x - y) / np.linalg.norm(y)) for x, y in zip(a, b)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--T", type=float, default=20.0)
    p.add_argument("--fine", type=int, default=256)
    args = p.parse_args()
    torch.set_num_threads(1)
    w_fine0 = ns_initial(0, [0], args.fine)[0]
    runs, seconds = {}, {}
    for s, dtype in ((64, torch.float32), (64, torch.float64), (128, torch.float64), (args.fine, torch.float64)):
        name = f"{s}-{str(dtype)[6:]}"
        w0 = w_fine0 if s == args.fine else truncate(w_fine0, s)
        runs[name], seconds[name] = run(w0, dtype, args.T)
        runs[name] = runs[name][:, :: s // 64, :: s // 64]
        print(name, f"{seconds[name]:.1f} s", flush=True)
    ref = runs[f"{args.fine}-float64"]
    report = {
        "T": args.T, "nu": 1e-5, "dt": 1e-4, "fine": args.fine, "seconds": seconds,
        "rel_l2_vs_fine": {k: rel(v, ref) for k, v in runs.items() if not k.startswith(str(args.fine))},
        "rel_l2_64_float32_vs_float64": rel(runs["64-float32"], runs["64-float64"]),
        "enstrophy_mean_w2": {k: [float((f ** 2).mean()) for f in v] for k, v in runs.items()},
        "torch_threads": torch.get_num_threads(),
    }
    for t in range(len(ref)):
        print(f"t={t + 1:2d}  64 vs {args.fine}: {report['rel_l2_vs_fine']['64-float64'][t]:.3g}  "
              f"128 vs {args.fine}: {report['rel_l2_vs_fine']['128-float64'][t]:.3g}  "
              f"64 f32 vs f64: {report['rel_l2_64_float32_vs_float64'][t]:.3g}")
    atomic_write_text(args.out, json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
