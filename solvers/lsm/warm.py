"""A trained operator's prediction as the initial guess of a Krylov solve of the Darcy system.

A neural operator answers in one forward pass with no error control; CG or
AMG-PCG gives a controlled answer.  Starting the solver from the network's
prediction keeps the control and can save iterations::

    import krylearn
    from krylearn.operators.darcy import darcy_system, embed_interior
    from krylearn.solvers.lsm.warm import warm_start

    A, b = darcy_system(a)                     # a: (s, s) coefficient at the nodes
    x0 = warm_start(a, model="lsm-darcy")      # ((s-2)*(s-2),) interior unknowns
    res = krylearn.solve(A, b, method="pcg-amg", x0=x0, rtol=1e-8)
    u = embed_interior(res.x, a.shape)         # (s, s), zero on the boundary

What to expect: the network learns the data it was trained on (the
benchmark's solutions, computed on a 421-point grid and sub-sampled), which
differ from the solution of the ``s x s`` system by the discretisation
error; below that distance a warm start cannot help, so CG still has to
remove roughly ``log(err_x0 / rtol)`` worth of error (``krylearn bench darcy``
measures it).
"""

from __future__ import annotations

import numpy as np
from ...operators.darcy import interior

from .predict import predict

__all__ = ["warm_start"]


def warm_start(a, model="lsm-darcy", *, batch_size: int = 16, device=None, resample: bool = True) -> np.ndarray:
    """Initial guess(es) for ``darcy_system(a)`` from a trained operator's prediction.

    Parameters
    ----------
    a : numpy.ndarray or torch.Tensor
        Coefficient ``(s1, s2)`` or a batch ``(N, s1, s2)`` at the grid nodes
        (boundary included), physical units, positive; the grid on which
        :func:`~krylearn.operators.darcy.darcy_system` builds the system.
    model : str, Path or NormalizedOperator
        As :func:`~krylearn.solvers.lsm.predict` (default the shipped ``"lsm-darcy"``).
    batch_size : int
        Fields per forward pass.
    device : optional
        Where the network runs (default CUDA when available).
    resample : bool
        At a grid other than the model's training grid: ``True`` (default)
        predicts on the training grid and interpolates back; ``False`` runs
        the network on ``a``'s grid, with a warning (see ``predict``).

    Returns
    -------
    numpy.ndarray, float64
        ``((s1-2)*(s2-2),)`` for one field, ``(N, (s1-2)*(s2-2))`` for a batch:
        the prediction at the interior nodes in :func:`darcy_system`'s order
        (``u[1:-1, 1:-1].ravel()``), ready as ``x0`` for
        ``krylearn.solve(A, b, method=..., x0=x0)``.

    Raises
    ------
    ValueError
        ``a`` not of shape ``(s1, s2)`` / ``(N, s1, s2)`` with ``s1, s2 >= 3``,
        non-finite or not strictly positive.
    TypeError
        ``a`` neither a numpy array nor a torch tensor.
    """
    if hasattr(a, "detach") and hasattr(a, "cpu"):
        arr = a.detach().cpu().numpy()
    elif isinstance(a, np.ndarray):
        arr = a
    else:
        raise TypeError(f"a must be a numpy array or a torch tensor, got {type(a).__name__}")
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"a must be a real numeric array, got dtype {arr.dtype}")
    if arr.ndim not in (2, 3) or min(arr.shape[-2:]) < 3 or (arr.ndim == 3 and arr.shape[0] == 0):
        raise ValueError(f"a must have shape (s1, s2) or (N, s1, s2) with s1, s2 >= 3, got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("a contains NaN or Inf")
    if arr.min() <= 0:
        raise ValueError(f"a must be strictly positive (a Darcy coefficient), min(a) = {arr.min():g}")
    u = predict(arr, model=model, batch_size=batch_size, device=device, resample=resample)
    return interior(np.asarray(u, dtype=np.float64))
