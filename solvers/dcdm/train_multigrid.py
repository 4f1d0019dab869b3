"""Training the learned V-cycle (:class:`~.multigrid_model.DCDMMultigrid`) through PCG.

The loss is what the solver does with the cycle: ``k`` iterations of CG
preconditioned by it, from zero, on a batch of right-hand sides per
training system (the frame's own ``b`` and Gaussian ones, zero off the
fluid cells); the loss is the mean of ``log(||r_k|| / ||b||)``.  The cycle
runs in torch (float64) and autograd goes through every CG step, so the
weights are tuned for the preconditioned spectrum, not for one smoothing
step.  No reference solutions are needed.

:class:`MultigridTask` is this recipe for the shared
:class:`~krylearn.solvers.learned.Trainer` (checkpoints, resume,
``max_minutes``, progress bar); :mod:`.recipe_multigrid` makes the training
systems and runs it.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..learned import TrainTask
from ..multigrid import MultigridPreconditioner, coarsen, grid_stencil
from ..nullspace import grid_nullspace
from .multigrid_model import DCDMMultigrid

__all__ = ["pcg_log_reduction", "MultigridTask"]


class _Prepared:
    """A training system with its (unlearned) hierarchy, null space and fluid mask."""

    def __init__(self, op, b):
        self.op = op
        self.M = MultigridPreconditioner(op, precision="double")
        d, w = grid_stencil(op, None)
        self.stencils = [(d, w)]
        for _ in range(self.M.levels - 1):  # the hierarchy's own stencils (it keeps only float32 copies)
            d, w = coarsen(d, w)
            self.stencils.append((d, w))
        self.ns = grid_nullspace(op)
        self.fluid = self.M._levels[0].mask.reshape(-1)
        b = torch.from_numpy(b)
        self.b = b / torch.linalg.vector_norm(b) * math.sqrt(float(self.fluid.sum()))
        if self.ns is not None:
            self.ns.project(self.b[None])

    def attach(self, model: DCDMMultigrid) -> None:
        """Put the model's (differentiable) weights into the hierarchy's torch cycle."""
        for i, (fine, (d, w), (dc, wc)) in enumerate(zip(self.M._levels, self.stencils, self.stencils[1:])):
            fine.sweep_w, fine.scale = model.tensors(i, d, w, dc, wc)

    def precondition(self, r: torch.Tensor) -> torch.Tensor:
        shape = self.M._levels[0].shape
        z = self.M._cycle(0, r.reshape((r.shape[0],) + shape)).reshape(r.shape[0], -1)
        if self.ns is not None:
            z = z.clone()
            self.ns.project(z)
        return z


def pcg_log_reduction(model: DCDMMultigrid, sys: _Prepared, B: torch.Tensor, k: int) -> torch.Tensor:
    """Mean of ``log(||r_k|| / ||b||)`` over the rows of ``B`` after ``k`` PCG steps from zero."""
    sys.attach(model)
    apply = sys.op._apply
    x = torch.zeros_like(B)
    r = B.clone()
    z = sys.precondition(r)
    p = z
    rz = (r * z).sum(1)
    for it in range(k):
        Ap = apply(p)
        a = rz / (p * Ap).sum(1)
        x = x + a[:, None] * p
        r = r - a[:, None] * Ap
        if it == k - 1:
            break
        z = sys.precondition(r)
        rz_new = (r * z).sum(1)
        p = z + (rz_new / rz)[:, None] * p
        rz = rz_new
    ratio = torch.linalg.vector_norm(r, dim=1) / torch.linalg.vector_norm(B, dim=1)
    return torch.log(ratio.clamp_min(1e-300)).mean()


class MultigridTask(TrainTask):
    """:class:`DCDMMultigrid` for the shared Trainer: one round = one step over every training system."""

    unit = "step"
    desc = "training DCDM (multigrid)"

    def __init__(self, systems, val_systems, *, dim: int, sweeps: int, lr: float, steps: int, k: int,
                 rhs: int, seed: int, groups: int = 3, knots=(5, 4)):
        self.systems, self.val_systems = systems, val_systems
        self.groups, self.knots = groups, tuple(knots)
        self.dim, self.sweeps, self.lr, self.steps, self.k, self.rhs, self.seed = dim, sweeps, lr, steps, k, rhs, seed

    def setup(self) -> DCDMMultigrid:
        self.prepared = [_Prepared(op, b) for op, b in self.systems]
        self.val = [_Prepared(op, b) for op, b in self.val_systems]
        self.gen = torch.Generator().manual_seed(self.seed + 1000 * self.dist.rank)
        return DCDMMultigrid(self.dim, sweeps=self.sweeps, groups=self.groups, knots=self.knots).to(torch.float64)

    def make_optimizer(self, model):
        opt = torch.optim.Adam(model.parameters(), lr=self.lr)
        return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.steps, eta_min=self.lr / 10)

    def settings(self) -> dict:
        return {"k": self.k, "rhs": self.rhs, "sweeps": self.sweeps, "steps": self.steps, "groups": self.groups,
                "knots": list(self.knots)}

    def data(self):
        return [(np.asarray(op.flags.cpu()), b) for op, b in self.systems + self.val_systems]

    def _batch(self, s: _Prepared) -> torch.Tensor:
        noise = torch.randn((self.rhs - 1, s.b.numel()), generator=self.gen, dtype=torch.float64) * s.fluid
        B = torch.cat([s.b[None], noise])
        if s.ns is not None:
            s.ns.project(B)
        return B

    def batches(self, round: int):
        yield [self._batch(s) for s in self.prepared]

    def loss(self, module, batch) -> torch.Tensor:
        model = getattr(module, "module", module)
        return sum(pcg_log_reduction(model, s, B, self.k) for s, B in zip(self.prepared, batch)) / len(batch)

    def validate(self, model) -> float:
        with torch.no_grad():
            return float(np.mean([pcg_log_reduction(model, s, s.b[None], self.k).item() for s in self.val]))

    def state_dict(self) -> dict:
        return {"gen": self.gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        if "gen" in state:
            self.gen.set_state(state["gen"])
