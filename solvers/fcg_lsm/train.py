"""Training the LSM preconditioner: residuals in, the exact errors out, in the energy norm.

For a training operator ``A`` and a random residual ``r`` the target is
the exact error ``e = A^-1 r`` (a sparse LU solve; the factorisation of
each training operator is made once), and the loss is
``log(||e - M(r)||_A^2 / ||e||_A^2)``, averaged over the batch: how much of
the error one application leaves, in the norm CG minimises.  The residuals
are random sine series with zero boundary values,
``sum_kl c_kl sin(k pi x) sin(l pi y)``, ``c_kl ~ N(0, 1) (k^2 + l^2)^(-alpha/2)``,
``alpha`` uniform in ``[-1, 3]``: from grid-scale noise to smooth loads
like a constant source.

Why residuals and not errors: drawing ``e`` first and setting ``r = A e``
(no solve needed) gives residuals dominated by spikes along the
coefficient jumps, unlike any residual CG meets; trained that way the
network reduced the error of random draws well and that of the actual
Darcy solve (``b = 1``) by only 10%.

:class:`PreconditionerTask` is this recipe for the shared
:class:`~krylearn.solvers.learned.Trainer`; :mod:`.recipe` builds the
Darcy operators and runs it.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import scipy.sparse.linalg
import torch

from ..learned import TrainTask
from .model import LSMPreconditioner, Stencil, grid_apply, stencil_tensors

__all__ = ["PreconditionerTask", "energy_loss", "random_fields"]


@functools.lru_cache(maxsize=8)
def _sine_basis(n: int, dtype) -> torch.Tensor:
    i = torch.arange(1, n + 1, dtype=torch.float64)
    return torch.sin(math.pi * i[:, None] * i[None, :] / (n + 1)).to(dtype)


def random_fields(count: int, shape, gen: torch.Generator, alpha=(-1.0, 3.0), dtype=torch.float32) -> torch.Tensor:
    """``count`` random sine-series fields on a ``(ny, nx)`` grid, unit RMS (see the module docstring)."""
    ny, nx = shape
    Sy, Sx = _sine_basis(ny, dtype), _sine_basis(nx, dtype)
    ky = torch.arange(1, ny + 1, dtype=dtype)[:, None]
    kx = torch.arange(1, nx + 1, dtype=dtype)[None, :]
    k2 = ky ** 2 + kx ** 2
    a = alpha[0] + (alpha[1] - alpha[0]) * torch.rand(count, 1, 1, generator=gen, dtype=dtype)
    c = torch.randn(count, ny, nx, generator=gen, dtype=dtype) * k2 ** (-a / 2)
    e = Sy @ c @ Sx.T
    return e / e.pow(2).mean(dim=(1, 2), keepdim=True).sqrt()


def energy_loss(model, st: Stencil, r: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """Mean of ``log(||e - M(r)||_A^2 / ||e||_A^2)`` over the batch (``e = A^-1 r``)."""
    dz = e - model(st, r)
    num = (dz * grid_apply(st, dz)).sum(dim=(1, 2))
    den = (e * r).sum(dim=(1, 2))
    return torch.log(num.clamp_min(1e-30) / den).mean()


class _Systems:
    """Operators of one grid size: stencils as one torch batch, and sparse LU factors for the exact errors."""

    def __init__(self, items, device):
        self.st = Stencil.stack([stencil_tensors(d, w, device=device) for _, (d, w) in items])
        self.lu = [scipy.sparse.linalg.splu(A.tocsc()) for A, _ in items]

    def pairs(self, idx, r: torch.Tensor):
        """``(stencils, r, e)`` for operators ``idx``, both scaled so that ``e`` has unit RMS."""
        shape = r.shape[1:]
        e = torch.stack([torch.from_numpy(self.lu[int(i)].solve(rj.double().reshape(-1).cpu().numpy())).reshape(shape)
                         for i, rj in zip(idx, r)]).to(r)
        scale = e.pow(2).mean(dim=(1, 2), keepdim=True).sqrt()
        st = Stencil(self.st.d[idx], self.st.wy[idx], self.st.wx[idx])
        return st, r / scale, e / scale


class PreconditionerTask(TrainTask):
    """:class:`LSMPreconditioner` for the shared Trainer; one round = one optimiser step.

    Parameters
    ----------
    train, val : dict[int, list of (A, (diag, [w_y, w_x]))]
        Operators (scipy sparse) and their stencils (numpy), grouped by grid
        size; each round trains on one size, in turn.
    config : dict
        :class:`LSMPreconditioner` arguments.
    batch : int
        Errors per step (each on a random training operator of the size).
    """

    unit = "step"
    desc = "training fcg-lsm"

    def __init__(self, train: dict, val: dict, *, config: dict, batch: int, lr: float, steps: int, seed: int,
                 val_errors: int = 4):
        self.train_np, self.val_np = train, val
        self.config, self.batch, self.lr, self.steps, self.seed = dict(config), batch, lr, steps, seed
        self.val_errors = val_errors

    def setup(self) -> LSMPreconditioner:
        dev = self.dist.device
        self.sizes = sorted(self.train_np)
        self.train = {s: _Systems(v, dev) for s, v in self.train_np.items()}
        gen = torch.Generator().manual_seed(self.seed + 7919)
        self.val = []
        for s, v in sorted(self.val_np.items()):
            systems = _Systems(v, dev)
            idx = torch.arange(len(v)).repeat_interleave(self.val_errors)
            self.val.append(systems.pairs(idx, random_fields(len(idx), systems.st.shape, gen).to(dev)))
        self.gen = torch.Generator().manual_seed(self.seed + 1000 * self.dist.rank)
        return LSMPreconditioner(**self.config)

    def make_optimizer(self, model):
        opt = torch.optim.AdamW(model.parameters(), lr=self.lr, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.lr, total_steps=self.steps, pct_start=0.1)
        return opt, sched

    def settings(self) -> dict:
        return {"config": self.config, "batch": self.batch, "steps": self.steps}

    def data(self):
        return [np.asarray(d) for v in (*self.train_np.values(), *self.val_np.values()) for _, (d, _) in v]

    def batches(self, round: int):
        s = self.sizes[round % len(self.sizes)]
        pool = self.train[s]
        idx = torch.randint(0, len(pool.lu), (self.batch,), generator=self.gen)
        yield pool.pairs(idx, random_fields(self.batch, pool.st.shape, self.gen).to(pool.st.d.device))

    def loss(self, module, batch) -> torch.Tensor:
        return energy_loss(module, *batch)

    def validate(self, model) -> float:
        with torch.no_grad():
            return float(np.mean([energy_loss(model, *v).item() for v in self.val]))

    def state_dict(self) -> dict:
        return {"gen": self.gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        if "gen" in state:
            self.gen.set_state(state["gen"])
