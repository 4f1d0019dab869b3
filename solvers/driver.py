"""The one iteration driver every krylearn solver runs under.

A method supplies a :class:`Stepper` (one iteration on ``(k, n)`` iterates);
:func:`iterate` owns everything around it, identically for CG, the PCG
family, relaxation and DCDM:

* **the stopping rule** ``||b - A x|| <= max(rtol ||b||, atol)`` (scipy's),
  per system of a batch;
* **true-residual confirmation**: a stepper whose residual is a recurrence
  (CG, DCDM, multicolour SOR) is only declared converged after ``b - A x`` is
  recomputed and meets the rule; if it misses, the stepper restarts from the
  true residual, and a system whose true residual stops improving ends with
  reason ``"stagnated"`` (or ``"unreachable"`` when the tolerance is below the
  rounding floor of the working precision, ``~ eps || |A| |x| ||``);
* **singular systems**: with a null space, the iterations run on the
  consistent part of ``b``; ``converged`` still means the rule holds for the
  caller's ``b``, and an inconsistent system whose least-squares residual
  misses it ends with reason ``"least_squares"`` (``converged=False``) and
  ``info["inconsistency"]``, the share of ``b`` no ``x`` can match;
* the residual history, iteration counts, reasons, the callback and the
  final true residual (``info["true_residual"]``, relative).

Inputs arrive scaled by powers of two (:mod:`.inputs`), so norms never under-
or overflow, whatever the magnitude of ``b``.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from .inputs import Rhs
from .result import SolveResult

__all__ = ["Stepper", "iterate", "STALL_CONFIRMATIONS", "STALL_FACTOR"]

#: Failed confirmations in a row without a 10% gain in the true residual before "stagnated".
STALL_CONFIRMATIONS = 3
#: A failed confirmation must bring the true residual below this share of the best so far to count as progress.
STALL_FACTOR = 0.9


class Stepper:
    """One iteration of a method on iterates the driver owns.

    Attributes
    ----------
    exact_residual : bool
        Whether :meth:`step` returns the norm of the true residual ``b - A x``
        (then no confirmation is needed).
    divergence : float or None
        Stop with ``"diverged"`` when the residual exceeds this multiple of the
        initial one.
    matvecs : int
        Products with ``A`` the stepper made.
    """

    exact_residual = False
    divergence: float | None = None
    matvecs = 0

    def start(self, x: torch.Tensor, r: torch.Tensor, b: torch.Tensor) -> None:
        """Begin at ``x`` with residual ``r = b - A x`` (all ``(k, n)``; updated in place afterwards)."""
        raise NotImplementedError

    def step(self, active: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """One iteration of the rows where ``active`` (CPU bool, (k,)) holds.

        Updates ``x`` (and ``r``) in place for those rows only and returns
        ``(rnorm, flags)``: residual norms (k,) and ``{reason: CPU bool (k,)}``
        for rows that cannot continue (``"indefinite"``, ``"breakdown"``,
        ``"nonfinite"``); a flagged row's ``x`` must be its last good iterate.
        """
        raise NotImplementedError

    def replace(self, rows: torch.Tensor, r_true: torch.Tensor) -> None:
        """Restart ``rows`` (CPU bool, (k,)) from the true residual ``r_true`` (k, n)."""
        raise NotImplementedError

    def info(self) -> dict:
        """Method-specific extras for ``SolveResult.info``."""
        return {}


class _Rows:
    """Per-system bookkeeping: reasons, the active mask, iterations, stagnation."""

    def __init__(self, k: int):
        self.reasons = ["maxiter"] * k
        self.active = np.ones(k, dtype=bool)
        self.iterations = np.zeros(k, dtype=np.int64)
        self.best_true = np.full(k, np.inf)
        self.stall = np.zeros(k, dtype=np.int64)
        self.true_norm = np.full(k, np.nan)  # ||b - A x|| where known at the end

    def stop(self, mask: np.ndarray, why: str) -> None:
        for i in np.nonzero(mask & self.active)[0]:
            self.reasons[i] = why
        self.active &= ~mask


def _norms(v: torch.Tensor) -> np.ndarray:
    return torch.linalg.vector_norm(v, dim=1).detach().to("cpu", torch.float64).numpy()


def _mask(m) -> np.ndarray:
    return m.detach().cpu().numpy().astype(bool) if isinstance(m, torch.Tensor) else np.asarray(m, dtype=bool)


def iterate(op, rhs: Rhs, stepper: Stepper, *, maxiter: int, method: str, callback=None, nullspace=None,
            floor=None, setup_seconds: float = 0.0, info: dict | None = None, check_op=None,
            error=None) -> SolveResult:
    """Run ``stepper`` on ``A x = b`` under the shared stopping rule (see the module docstring).

    Parameters
    ----------
    op : Operator
        Square, on flat vectors, in the working dtype.
    rhs : Rhs
        Scaled right-hand sides and initial guesses (:func:`.inputs.prepare_rhs`).
    stepper : Stepper
    maxiter : int
    method : str
        Name recorded in the result.
    callback : callable, optional
        ``callback(xk)`` after every iteration, ``xk`` in the caller's array
        type and shape.
    nullspace : ConstantNullSpace, optional
        Singular components of ``A``: iterations run on the consistent part.
    floor : callable, optional
        ``floor(x) -> (k,)`` estimate of the rounding floor of ``||b - A x||``
        (scaled units), to tell ``"unreachable"`` from ``"stagnated"``.
    error : callable, optional
        ``error(x) -> (k,)``, the typical rounding error of the computed true
        residual (``eps (|| |A| |x| || + ||b||)``): a system converges only when
        its true residual plus this error meets the rule.
    check_op : Operator, optional
        ``A`` in double precision, for single-precision solves: the true
        residual that decides convergence is then computed in float64
        (complex128), where the caller's float32 data are exact, so
        ``converged`` holds for the system given, not only to float32 rounding.
    setup_seconds : float
        Recorded in the result.
    info : dict, optional
        Extras merged into ``SolveResult.info``.
    """
    t0 = time.perf_counter()
    x = rhs.x0
    info = dict(info or {})
    checker = _Checker(op if check_op is None else check_op, rhs, nullspace)
    b, r, matvecs = _begin(op, rhs, nullspace, info)
    tol = rhs.tol.detach().to("cpu", torch.float64).numpy()
    denom = np.maximum(rhs.bnorm.detach().to("cpu", torch.float64).numpy(), 0)
    denom = np.where(denom > 0, denom, 1.0)
    rows = _Rows(rhs.k)
    zero = rhs.bnorm.detach().cpu().numpy() == 0
    if zero.any():
        x[torch.from_numpy(np.nonzero(zero)[0]).to(x.device)] = 0
        rows.stop(zero, "zero_rhs")
    r0 = _norms(r)
    rows.true_norm[:] = r0
    rows.stop(r0 <= tol, "converged")
    history = [r0 / denom]
    stepper.start(x, r, b)
    it = 0
    while rows.active.any() and it < maxiter:
        it += 1
        stepping = rows.active.copy()
        rn, flags = stepper.step(torch.from_numpy(stepping))
        rn = rn.detach().to("cpu", torch.float64).numpy().copy()
        counted = _account(rows, stepping, rn, flags, stepper.exact_residual)
        cand = rows.active & (rn <= tol)
        if cand.any():
            if stepper.exact_residual and check_op is None:
                rows.stop(cand, "converged")
            else:
                matvecs += _confirm(checker, x, rn, tol, cand, rows, stepper, floor, error)
        if stepper.divergence is not None:
            rows.stop(rows.active & (rn > stepper.divergence * r0), "diverged")
        if rhs.k > 1 or counted[0]:
            history.append(np.where(counted & np.isfinite(rn), rn / denom, history[-1]))
        if callback is not None:
            callback(rhs.give_back(x))
    matvecs += _finish(checker, rhs, x, rows, nullspace, info)
    info.update(stepper.info())
    info["matvecs"] = info.get("matvecs", 0) + matvecs + stepper.matvecs
    return _result(rhs, x, history, rows, method, setup_seconds, time.perf_counter() - t0, info)


class _Checker:
    """True residuals ``b - A x``: in the working precision, or in double precision for single-precision solves."""

    def __init__(self, op, rhs: Rhs, nullspace):
        self.op = op
        self.nullspace = nullspace
        self.b_user = rhs.b.to(op.dtype) if rhs.b.dtype != op.dtype else rhs.b
        self.b = self.b_user if nullspace is None else nullspace.project(self.b_user.clone())

    def residual(self, x, user: bool = False):
        """``(r, norms)``; ``user``: against the caller's ``b`` (not its consistent part)."""
        xx = x.to(self.op.dtype) if x.dtype != self.op.dtype else x
        r = (self.b_user if user else self.b) - self.op._apply(xx)
        if self.nullspace is not None and not user:
            self.nullspace.project(r)
        return r, _norms(r)


def _begin(op, rhs: Rhs, nullspace, info: dict):
    """``(b, r, matvecs)``: the right-hand side iterations run on and the initial residual."""
    x, b = rhs.x0, rhs.b
    if nullspace is not None:
        b = nullspace.project(b.clone())
        nullspace.project(x)
        bnorm = rhs.bnorm.detach().to("cpu", torch.float64).numpy()
        removed = _norms(rhs.b - b) / np.where(bnorm > 0, bnorm, 1.0)
        info["null_space"] = nullspace.count
        info["inconsistency"] = float(removed.max()) if not rhs.batched else removed.tolist()
    if rhs.nonzero_x0:
        return b, b - op._apply(x), 1
    return b, b.clone(), 0


def _account(rows: _Rows, stepping: np.ndarray, rn: np.ndarray, flags: dict, exact: bool) -> np.ndarray:
    """Apply a step's flags and count it for the rows that took it; returns those rows."""
    for why, m in flags.items():
        rows.stop(_mask(m), why)
    counted = stepping & rows.active
    rows.iterations[counted] += 1
    rows.true_norm[counted] = rn[counted] if exact else np.nan
    rows.stop(~np.isfinite(rn), "nonfinite")
    return counted


def _confirm(checker: _Checker, x, rn, tol, cand, rows: _Rows, stepper: Stepper, floor, error) -> int:
    """Check candidates on the true residual; restart the ones that miss; return the matvecs spent.

    A true residual within its own rounding error of the tolerance (``error(x)``)
    does not confirm: another evaluation of ``b - A x`` could exceed it.
    """
    r_true, tn = checker.residual(x)
    rows.true_norm[cand] = tn[cand]
    ok = cand & (tn <= tol)
    if error is not None and ok.any():
        ok &= tn + error(x) <= tol
    rows.stop(ok, "converged")
    miss = cand & ~ok
    rn[cand] = tn[cand]
    if miss.any():
        stepper.replace(torch.from_numpy(miss), r_true.to(x.dtype))
        gained = tn < STALL_FACTOR * rows.best_true
        rows.stall = np.where(miss, np.where(gained, 0, rows.stall + 1), rows.stall)
        rows.best_true = np.where(miss, np.minimum(rows.best_true, tn), rows.best_true)
        stuck = miss & (rows.stall >= STALL_CONFIRMATIONS)
        if stuck.any():
            below = floor(x) if floor is not None else np.zeros_like(tn)
            rows.stop(stuck & (tol < below), "unreachable")
            rows.stop(stuck, "stagnated")
    return 1


def _finish(checker: _Checker, rhs: Rhs, x, rows: _Rows, nullspace, info: dict) -> int:
    """Minimum-norm projection, the final true residual on the caller's ``b``, least-squares reasons."""
    matvecs = 0
    if nullspace is not None:
        nullspace.project(x)
    tn = rows.true_norm
    if nullspace is not None or np.isnan(tn).any():
        tn = checker.residual(x, user=True)[1]
        matvecs = 1
    tol = rhs.tol.detach().to("cpu", torch.float64).numpy()
    bnorm = rhs.bnorm.detach().to("cpu", torch.float64).numpy()
    if nullspace is not None:
        for i, why in enumerate(rows.reasons):
            if why == "converged" and not tn[i] <= tol[i]:
                rows.reasons[i] = "least_squares"
    rel = tn / np.where(bnorm > 0, bnorm, 1.0)
    info["true_residual"] = float(rel[0]) if not rhs.batched else rel.tolist()
    return matvecs


def _result(rhs: Rhs, x, history, rows: _Rows, method: str, setup_seconds: float, solve_seconds: float,
            info: dict) -> SolveResult:
    hist = np.stack(history)
    converged = np.array([r in ("converged", "zero_rhs") for r in rows.reasons])
    xo = rhs.give_back(x)
    if rhs.batched:
        return SolveResult(xo, converged, rows.iterations, hist, list(rows.reasons), setup_seconds,
                           solve_seconds, method, info)
    it = int(rows.iterations[0])
    return SolveResult(xo, bool(converged[0]), it, hist[: it + 1, 0], rows.reasons[0], setup_seconds,
                       solve_seconds, method, info)
