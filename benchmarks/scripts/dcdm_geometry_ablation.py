"""DCDM geometry-channel ablation (README, DCDM): two V-cycle networks, with and without the
fluid-mask input, trained identically at 64^2 (600 steps) and run on the held-out 128^2/256^2 frames.
Run from the repository root: OMP_NUM_THREADS=1 python benchmarks/scripts/dcdm_geometry_ablation.py (about 10 min)."""
import json
import time
from pathlib import Path

from krylearn.solvers.dcdm.recipe import load_training_data, make_training_data
from krylearn.solvers.dcdm.train import train_dcdm
from krylearn.solvers.dcdm import dcdm
from krylearn.solvers.dcdm.bench import _cached_problem
data = Path("krylearn-results/ablation/ritz-2d-64.h5")
if not data.is_file():
    make_training_data(data, dim=2, n=64, ritz=400, progress=False)  # seeds 100/101, frame 8
systems = load_training_data(data)
out = Path("benchmarks/results/dcdm")
probs = [_cached_problem(s, 2, n, 10, 0, out, False) for n in (128, 256) for s in ("smoke-plume", "smoke-obstacle")]
res = {}
for geometry in (True, False):
    cfg = {"levels": 0, "shared": True, "blocks": 2, "geometry": geometry}
    t = time.time()
    o = train_dcdm(systems, config=cfg, steps=600, batch=10, lr=1e-3, schedule="cosine", seed=0, progress=False, val_every=100)
    row = {"val_loss": o["best_val"], "train_s": round(time.time() - t)}
    for p in probs:
        r = dcdm(p.A, p.b, model=o["net"], grid_shape=p.grid_shape, rtol=1e-6, maxiter=400)
        row[p.name] = int(r.iterations)
    res[str(geometry)] = row
    print("geometry", geometry, row, flush=True)
(out / "ablation-geometry.json").write_text(json.dumps(res, indent=1))
