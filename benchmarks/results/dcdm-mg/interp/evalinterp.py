import sys, time, numpy as np, torch
from krylearn.benchmarks.frames import record_frames
from krylearn.solvers.api import solve
from krylearn.solvers.learned import load_pretrained
torch.set_num_threads(1)
dim, n, F = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
cand = sys.argv[4]
models = {"shipped": f"dcdm-mg-{dim}d", "interp": cand}
for scene in ("smoke-obstacle", "smoke-plume"):
    seq = record_frames(scene, dim, n, F, sim_solver="mgpcg")
    out = {}
    for name, m in models.items():
        net = load_pretrained(m, method="dcdm", cache=False)[0] if name == "interp" else m
        its, secs = [], []
        for A, b in zip(seq["ops"], seq["b"]):
            best = 1e9
            for _ in range(2):
                r = solve(A, b, method="dcdm", model=net, rtol=1e-6); assert r.converged
                best = min(best, r.setup_seconds + r.solve_seconds)
            its.append(r.iterations); secs.append(best)
        out[name] = (np.mean(its), np.sum(secs))
    print(scene, n, dim, {k: (round(v[0], 2), round(v[1], 3)) for k, v in out.items()}, flush=True)
