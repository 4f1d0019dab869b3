"""Flexible conjugate gradients: CG whose preconditioner may change from one iteration to the next.

A learned preconditioner (a neural operator mapping residuals to errors) is
neither linear nor symmetric, and plain PCG then loses the conjugacy its
short recurrence relies on.  Flexible CG (Notay 2000, "FCG(m)") keeps it
explicitly: each new direction is made ``A``-orthogonal to the last
``history`` directions, and the step length uses ``p . r``, which stays
right whatever the preconditioner did::

    z = M(r);   p = z - sum_j (z . A p_j) / (p_j . A p_j) p_j;   alpha = (p . r) / (p . A p)

:class:`FCGStepper` adds the safeguards a learned ``M`` needs, so that a
useless (random, or out-of-distribution) network still converges:

* ``z`` non-finite, or at an angle of nearly 90 degrees or more to ``r``
  (``r . z <= cos_tol ||r|| ||z||``): that iteration uses the fallback
  preconditioner (Jacobi) instead;
* ``p . A p <= 0`` or non-finite for the learned direction: the same;
* the residual has not halved within ``patience`` iterations: the row keeps
  the fallback for the rest of the solve (flexible CG with Jacobi, which
  converges for any SPD ``A``).
"""

from __future__ import annotations

from collections import deque

import torch

from .driver import Stepper

__all__ = ["FCGStepper", "track_halving"]


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum(dim=1)


def track_halving(rnorm: torch.Tensor, anchor: torch.Tensor, since: torch.Tensor):
    """``(anchor, since)`` after a step: ``since`` counts the steps since the residual last halved from ``anchor``."""
    halved = rnorm <= 0.5 * anchor
    return torch.where(halved, rnorm, anchor), torch.where(halved, torch.zeros_like(since), since + 1)


class FCGStepper(Stepper):
    """One flexible-CG iteration per call on ``(k, n)`` iterates.

    Parameters
    ----------
    apply_A : callable
        ``(k, n) -> (k, n)``, symmetric positive (semi-)definite.
    apply_M : callable
        The (possibly nonlinear) preconditioner ``r -> z``, ``(k, n) -> (k, n)``.
    fallback : callable
        A symmetric positive definite preconditioner used where ``apply_M``
        fails (see the module docstring), e.g. Jacobi.
    history : int
        Directions kept for the ``A``-orthogonalisation (``m`` of FCG(m)).
    cos_tol : float
        Smallest accepted cosine between ``r`` and ``M(r)``.
    patience : int
        Iterations without halving the residual before a row switches to
        the fallback for good.
    nullspace : ConstantNullSpace, optional
        Projected out of ``z`` and ``r``.
    """

    def __init__(self, apply_A, apply_M, fallback, *, history: int = 8, cos_tol: float = 1e-3,
                 patience: int = 50, nullspace=None):
        self.apply_A, self.apply_M, self.fallback = apply_A, apply_M, fallback
        self.history, self.cos_tol, self.patience = history, cos_tol, patience
        self.ns = nullspace
        self.matvecs = 0

    def start(self, x, r, b):
        self.x, self.r = x, r
        k = x.shape[0]
        self.dirs: deque = deque(maxlen=self.history)
        self.gave_up = torch.zeros(k, dtype=torch.bool, device=x.device)
        self.rnorm = torch.linalg.vector_norm(r, dim=1)
        self.anchor = self.rnorm.clone()
        self.since = torch.zeros(k, dtype=torch.int64, device=x.device)
        self.fallback_steps = torch.zeros(k, dtype=torch.int64)
        self.switched_at = [None] * k
        self.it = 0

    def _project(self, v):
        if self.ns is not None:
            self.ns.project(v)
        return v

    def _orthogonalize(self, z):
        p = z.clone()
        for p_j, q_j, pq_j in self.dirs:
            p -= (_dot(z, q_j) / pq_j).unsqueeze(1) * p_j
        return self._project(p)

    def _learned(self, act):
        """``M(r)`` where it is usable; the rows where it is not (or gave up) are marked ``weak``."""
        use = act & ~self.gave_up
        z = torch.zeros_like(self.r)
        if use.any():
            z = self._project(self.apply_M(self.r))
        zn = torch.linalg.vector_norm(z, dim=1)
        rz = _dot(self.r, z)
        good = torch.isfinite(zn) & torch.isfinite(rz) & (rz > self.cos_tol * zn * self.rnorm)
        return torch.where(good.unsqueeze(1), z, torch.zeros_like(z)), use & ~good | ~use

    def step(self, active):
        self.it += 1
        act = active.to(self.x.device)
        z, weak = self._learned(act)
        if weak.any():
            zf = self._project(self.fallback(self.r))
            z = torch.where(weak.unsqueeze(1), zf, z)
        p = self._orthogonalize(z)
        q = self.apply_A(p)
        self.matvecs += 1
        pq = _dot(p, q)
        redo = act & ~weak & (~torch.isfinite(pq) | (pq <= 0))
        if redo.any():  # the learned direction has no positive curvature: take the fallback's
            pf = self._orthogonalize(self._project(self.fallback(self.r)))
            qf = self.apply_A(pf)
            self.matvecs += 1
            m = redo.unsqueeze(1)
            p, q = torch.where(m, pf, p), torch.where(m, qf, q)
            pq = torch.where(redo, _dot(pf, qf), pq)
            weak = weak | redo
        self.fallback_steps += (weak & act & ~self.gave_up).cpu().long()
        pr = _dot(p, self.r)
        flags = {"nonfinite": (act & ~(torch.isfinite(pq) & torch.isfinite(pr))).cpu(),
                 "indefinite": (act & torch.isfinite(pq) & (pq < 0)).cpu(),
                 "breakdown": (act & ((pq == 0) | (pr == 0))).cpu()}
        ok = act & torch.isfinite(pq) & torch.isfinite(pr) & (pq > 0) & (pr != 0)
        safe = torch.where(ok, pq, torch.ones_like(pq))
        alpha = torch.where(ok, pr / safe, torch.zeros_like(pr)).unsqueeze(1)
        self.x.addcmul_(alpha, torch.where(ok.unsqueeze(1), p, torch.zeros_like(p)))
        self.r.addcmul_(alpha, torch.where(ok.unsqueeze(1), q, torch.zeros_like(q)), value=-1)
        self._project(self.r)
        self.dirs.append((p, q, safe))
        self.rnorm = torch.linalg.vector_norm(self.r, dim=1)
        self._watch_stagnation(ok)
        return self.rnorm, flags

    def _watch_stagnation(self, ok):
        self.anchor, self.since = track_halving(self.rnorm, self.anchor, self.since)
        give_up = ~self.gave_up & (self.since >= self.patience) & ok
        if give_up.any():
            for i in torch.nonzero(give_up).flatten().tolist():
                self.switched_at[i] = self.it
            self.gave_up = self.gave_up | give_up
            self.dirs.clear()  # the directions of another preconditioner: start the recurrence afresh

    def replace(self, rows, r_true):
        m = rows.to(self.r.device)
        self.r.copy_(torch.where(m.unsqueeze(1), r_true, self.r))
        self.rnorm = torch.linalg.vector_norm(self.r, dim=1)
        self.dirs.clear()

    def info(self):
        one = self.x.shape[0] == 1
        steps = self.fallback_steps.tolist()
        return {"fallback_steps": steps[0] if one else steps,
                "switched_to_fallback_at": self.switched_at[0] if one else self.switched_at}
