"""Two DDS priors on the same scans, from two ``dds_auto.py`` reports: each alone, and the prior chosen per scan.

Both reports must hold the same sets, levels and slices (run with the same
``--sets``/``--count``, one with ``--prior``); the classical rows are taken
from the first.  "Per scan" picks, for each slice, the prior whose best
candidate had the lower held-out error in :func:`choose_options` (the same
folds for both, as every draw is seeded), so its PSNR is that prior's
``--auto`` image: what ``--auto`` gives when both priors are candidates.

Run: ``python benchmarks/scripts/dds_prior_compare.py A.json B.json --names template,broad --out T.md``.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from krylearn.utils.atomic import atomic_write_text


def _best_error(row) -> float:
    return min(s["heldout_error"] for s in row["choice"]["scores"])


def compare(a: dict, b: dict, names) -> str:
    kind = a["kind"]
    cg = "cg-sense" if kind == "mri" else "cg"
    others = [m for m in dict.fromkeys(r["method"] for r in a["rows"]) if m != "dds"]
    key = lambda r: (r["set"], r["level"], r["slice"])  # noqa: E731
    dds_a = {key(r): r for r in a["rows"] if r["method"] == "dds"}
    dds_b = {key(r): r for r in b["rows"] if r["method"] == "dds"}
    if set(dds_a) != set(dds_b):
        raise SystemExit("the two reports do not hold the same slices")
    unit = "x" if kind == "mri" else " views"
    head = (f"| set | level | best classical (auto) | DDS {names[0]}: defaults / auto | DDS {names[1]}: "
            f"defaults / auto | DDS, prior chosen per scan | {names[1]} chosen | per scan − best classical | "
            f"slices below {cg} |")
    lines = [f"DDS-49 PSNR (dB), mean over slices. `{a['command']}` and `{b['command']}`", "", head,
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in dict.fromkeys(r["set"] for r in a["rows"]):
        for lv in a["levels"]:
            ks = [k for k in dds_a if k[0] == s and k[1] == lv]
            if not ks:
                continue
            classical = {m: np.mean([r["psnr_auto"] for r in a["rows"] if key(r) in ks and r["method"] == m])
                         for m in others}
            pick_b = [_best_error(dds_b[k]) < _best_error(dds_a[k]) for k in ks]
            chosen = [dds_b[k]["psnr_auto"] if p else dds_a[k]["psnr_auto"] for k, p in zip(ks, pick_b)]
            cg_rows = {key(r): r["psnr_default"] for r in a["rows"] if r["method"] == cg}
            below = sum(c < cg_rows[k] for k, c in zip(ks, chosen))
            best = max(classical.values())
            mean = lambda d, f: np.mean([d[k][f] for k in ks])  # noqa: E731
            lines.append(f"| {s} | {lv:g}{unit} | {best:.2f} ({max(classical, key=classical.get)}) | "
                         f"{mean(dds_a, 'psnr_default'):.2f} / {mean(dds_a, 'psnr_auto'):.2f} | "
                         f"{mean(dds_b, 'psnr_default'):.2f} / {mean(dds_b, 'psnr_auto'):.2f} | "
                         f"{np.mean(chosen):.2f} | {sum(pick_b)} of {len(ks)} | {np.mean(chosen) - best:+.2f} | "
                         f"{below} of {len(ks)} |")
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--names", default="A,B")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    text = compare(json.loads(Path(args.a).read_text()), json.loads(Path(args.b).read_text()),
                   args.names.split(","))
    text += f"\n(`{' '.join(sys.argv)}`)\n"
    if args.out:
        atomic_write_text(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
