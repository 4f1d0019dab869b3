"""Finite-difference Darcy systems ``-div(a grad u) = f`` on the unit square.

The discretisation is the one of the FNO benchmark's ``solve_gwf.m``
(``data_generation/darcy/`` in ``neuraloperator/neuraloperator``): a node grid
of ``s1 x s2`` points ``x_i = i / (s1 - 1)``, ``y_j = j / (s2 - 1)`` including the
boundary, ``u = 0`` on the boundary nodes, the 5-point stencil on every
interior node with the face coefficient between two neighbouring nodes equal
to the arithmetic mean of their two values of ``a``, multiplied by
``(s - 1)**2`` (that is ``1 / h**2``)::

    (A u)_ij = (s1-1)^2 [ a_{i-1/2,j} (u_ij - u_{i-1,j}) + a_{i+1/2,j} (u_ij - u_{i+1,j}) ]
             + (s2-1)^2 [ a_{i,j-1/2} (u_ij - u_{i,j-1}) + a_{i,j+1/2} (u_ij - u_{i,j+1}) ],
    a_{i+1/2,j} = (a_ij + a_{i+1,j}) / 2.

**Unknowns are the interior nodes only**: ``(s1 - 2) * (s2 - 2)`` of them, in
C (row-major) order of the ``(s1 - 2, s2 - 2)`` interior block, so
``u_int = u[1:-1, 1:-1].ravel()``. The boundary values are zero and do not
appear in ``A`` (their couplings would move to ``b`` times zero). ``A`` is
symmetric positive definite whenever ``a > 0``, which is what CG wants.
:func:`interior` and :func:`embed_interior` move between ``(s1, s2)`` fields
and unknown vectors.

For a square grid this is exactly ``solve_gwf.m``'s matrix up to the order of
the unknowns (MATLAB orders them column-major: a symmetric permutation).
"""

from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse

__all__ = ["darcy_system", "embed_interior", "interior"]


def _as_numpy(name: str, v) -> np.ndarray:
    if hasattr(v, "detach") and hasattr(v, "cpu"):  # a torch tensor, without importing torch
        v = v.detach().cpu().numpy()
    v = np.asarray(v)
    if v.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be a real numeric array, got dtype {v.dtype}")
    return v


def _grid_shape(s) -> tuple[int, int]:
    if isinstance(s, numbers.Integral) and not isinstance(s, bool):
        shape = (int(s), int(s))
    else:
        try:
            shape = tuple(int(v) for v in s)
        except (TypeError, ValueError):
            raise TypeError(f"s must be an int or a pair of ints, got {s!r}") from None
        if len(shape) != 2:
            raise ValueError(f"s must be an int or a pair of ints, got {s!r}")
    if min(shape) < 3:
        raise ValueError(f"s must be >= 3 in every direction (one interior node at least), got {shape}")
    return shape


def darcy_system(a, f=1.0, *, check_positive: bool = True) -> tuple[scipy.sparse.csr_matrix, np.ndarray]:
    """Assemble ``A u_int = b`` for ``-div(a grad u) = f``, ``u = 0`` on the boundary.

    Parameters
    ----------
    a : array_like, shape (s1, s2)
        Coefficient at the nodes of the unit-square grid (boundary nodes
        included), ``s1, s2 >= 3``; finite and strictly positive. numpy array
        (or a torch tensor, converted).
    f : float or array_like of shape (s1, s2)
        Source term at the nodes (only interior values are used). Default 1,
        as in the benchmark.
    check_positive : bool
        Reject ``a <= 0`` (default). ``False`` assembles anyway (the matrix is
        then symmetric but possibly indefinite): only for reproducing the
        benchmark's spline-interpolated coefficients, solved directly.

    Returns
    -------
    A : scipy.sparse.csr_matrix, shape (n, n), float64, n = (s1-2)*(s2-2)
        Symmetric (positive definite for ``a > 0``) 5-point matrix (canonical CSR: sorted,
        no duplicates, no stored zeros).
    b : numpy.ndarray, shape (n,), float64
        ``f`` at the interior nodes, C order (see :func:`interior`).

    Examples
    --------
    >>> import numpy as np
    >>> A, b = darcy_system(np.ones((5, 5)))
    >>> A.shape, float(A[0, 0])            # 4 faces of coefficient 1, h = 1/4
    ((9, 9), 64.0)
    """
    a = _as_numpy("a", a)
    if a.ndim != 2:
        raise ValueError(f"a must be a 2-D (s1, s2) array of node values, got shape {a.shape}")
    s1, s2 = _grid_shape(a.shape)
    a = a.astype(np.float64, copy=False)
    if not np.isfinite(a).all():
        raise ValueError("a contains NaN or Inf")
    if check_positive and a.min() <= 0:
        raise ValueError(f"a must be strictly positive (the operator is then SPD), min(a) = {a.min():g}")
    n1, n2 = s1 - 2, s2 - 2
    n = n1 * n2
    # face coefficients times 1/h^2: ax between rows i and i+1, ay between columns j and j+1
    ax = 0.5 * (a[:-1, :] + a[1:, :]) * float(s1 - 1) ** 2  # (s1-1, s2)
    ay = 0.5 * (a[:, :-1] + a[:, 1:]) * float(s2 - 1) ** 2  # (s1, s2-1)
    diag = ax[:-1, 1:-1] + ax[1:, 1:-1] + ay[1:-1, :-1] + ay[1:-1, 1:]  # (n1, n2)

    # coupling of interior node (i, j) with (i, j+1): -ay at the face between them
    right = -ay[1:-1, 1:-1].copy()  # (n1, n2 - 1) faces between interior columns, padded below
    right = np.concatenate([right, np.zeros((n1, 1))], axis=1).ravel()[:-1]  # zero at row ends
    # coupling of (i, j) with (i+1, j): -ax between interior rows
    down = -ax[1:-1, 1:-1].ravel()  # (n1 - 1) * n2 entries

    offsets, bands = [0], [diag.ravel()]
    if n2 > 1:
        offsets += [1, -1]
        bands += [right, right]
    if n1 > 1:
        offsets += [n2, -n2]
        bands += [down, down]
    A = scipy.sparse.diags(bands, offsets, shape=(n, n), format="csr", dtype=np.float64)
    A.eliminate_zeros()
    A.sort_indices()
    A.sum_duplicates()

    if isinstance(f, numbers.Real) and not isinstance(f, bool):
        if not np.isfinite(f):
            raise ValueError(f"f must be finite, got {f!r}")
        b = np.full(n, float(f))
    else:
        f = _as_numpy("f", f)
        if f.shape != (s1, s2):
            raise ValueError(f"f must be a number or an array of shape {(s1, s2)} like a, got shape {f.shape}")
        if not np.isfinite(f).all():
            raise ValueError("f contains NaN or Inf")
        b = np.ascontiguousarray(f[1:-1, 1:-1], dtype=np.float64).ravel()
    return A, b


def interior(u) -> np.ndarray:
    """The unknown vector(s) of field(s) ``u``: ``u[..., 1:-1, 1:-1]`` flattened.

    Parameters
    ----------
    u : array_like, shape (..., s1, s2)
        Node values, boundary included (any leading batch dims).

    Returns
    -------
    numpy.ndarray, shape (..., (s1-2)*(s2-2))
        Same dtype as ``u``; the order of :func:`darcy_system`'s unknowns.
    """
    u = _as_numpy("u", u)
    if u.ndim < 2:
        raise ValueError(f"u must have shape (..., s1, s2), got {u.shape}")
    s1, s2 = _grid_shape(u.shape[-2:])
    return np.ascontiguousarray(u[..., 1:-1, 1:-1]).reshape(*u.shape[:-2], (s1 - 2) * (s2 - 2))


def embed_interior(u_int, s) -> np.ndarray:
    """Fields with zero boundary from unknown vector(s); inverse of :func:`interior`.

    Parameters
    ----------
    u_int : array_like, shape (..., (s1-2)*(s2-2))
        Interior values in :func:`darcy_system`'s order (leading batch dims allowed).
    s : int or (int, int)
        Grid size ``s`` (square) or ``(s1, s2)``, boundary nodes included.

    Returns
    -------
    numpy.ndarray, shape (..., s1, s2)
        Same dtype as ``u_int`` (float64 for integer input); zero on the boundary.
    """
    s1, s2 = _grid_shape(s)
    u_int = _as_numpy("u_int", u_int)
    n = (s1 - 2) * (s2 - 2)
    if u_int.ndim < 1 or u_int.shape[-1] != n:
        raise ValueError(f"u_int must have shape (..., {n}) for s = {(s1, s2)}, got {u_int.shape}")
    dtype = u_int.dtype if u_int.dtype.kind == "f" else np.float64
    out = np.zeros((*u_int.shape[:-1], s1, s2), dtype=dtype)
    out[..., 1:-1, 1:-1] = u_int.reshape(*u_int.shape[:-1], s1 - 2, s2 - 2)
    return out
