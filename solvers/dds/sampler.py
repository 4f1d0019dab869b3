"""The CG kernel of the DDS data-consistency step, and the samplers' error type.

:func:`cg_fixed` runs exactly ``iters`` conjugate-gradient steps on a batch
of independent Hermitian positive (semi)definite systems; the DDS samplers
(:mod:`.dds_sampler`, :mod:`.volume`) call it once per diffusion step.
"""

from __future__ import annotations

import torch

from ..krylov import cg_batch

__all__ = ["SamplingError", "cg_fixed"]


class SamplingError(RuntimeError):
    """A sampler produced non-finite values (the message names the step and the stage)."""



def cg_fixed(apply, b: torch.Tensor, x0: torch.Tensor, iters: int, what: str = "CG") -> torch.Tensor:
    """``iters`` conjugate-gradient steps on ``K`` independent Hermitian PSD systems.

    Parameters
    ----------
    apply : callable
        ``v -> M v`` on tensors shaped like ``b``, Hermitian positive
        (semi)definite per row.
    b, x0 : torch.Tensor, (K, ...)
        Right-hand sides and starting points; row ``k`` is system ``k``.
    iters : int
        Steps (no early stop: only a row whose residual has fallen to
        rounding level, ``||r|| <= 10 eps ||b||`` confirmed on the true
        residual, or stagnates there, stays put).
    what : str
        Names the step in error messages.

    Returns
    -------
    torch.Tensor, like ``b``

    Raises
    ------
    SamplingError
        When a curvature ``Re <p, M p>`` or the iterate becomes non-finite.

    Notes
    -----
    Runs :func:`krylearn.solvers.krylov.cg_batch`, the package's one CG
    driver.  Inner products are conjugated (``Re <r, r>``, ``Re <p, M p>``):
    the Hermitian CG, not the complex-symmetric COCG of the authors' code.
    """
    if iters == 0:
        return x0.clone()
    eps = torch.finfo(b.real.dtype if b.is_complex() else b.dtype).eps
    res = cg_batch(apply, b, x0, maxiter=iters, rtol=10 * eps)
    if "nonfinite" in res.reason:
        raise SamplingError(f"{what}: non-finite curvature p^H M p")
    if not bool(torch.isfinite(res.x).all()):
        raise SamplingError(f"{what}: non-finite iterate")
    return res.x
